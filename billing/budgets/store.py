"""The shared budget counters: Redis (production) and the database (embedded mode).

Both implement `billing.budgets.rules.BudgetStore` with the same rules (the reserve/settle
protocol is in docs/limits.md). A counter that does not exist yet (a new period, or Redis
lost its data) starts from the ledger's spend for the period so far.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Sum
from redis.commands.core import AsyncScript

from billing.budgets.rules import (
    ADMIT_LUA,
    HOLD_TTL_S,
    MISSING,
    RESERVE_LUA,
    SETTLE_LUA,
    USAGE_LUA,
    Admitted,
    BudgetExhausted,
    BudgetRule,
    BudgetStore,
    Degrade,
    Hold,
    Usage,
    WorstCase,
    degrade_for,
    from_units,
    hold_keys,
    key_ttl_s,
    limit_units,
    period_bounds,
    soft_limit_units,
    to_units,
)
from billing.choices import BudgetScope, SoftAction
from billing.models import Budget, BudgetCounter, BudgetReservation, LedgerEntry
from common import redis as shared_redis

logger = logging.getLogger(__name__)

LEDGER_FIELD: dict[str, str] = {
    BudgetScope.TEAM: "team",
    BudgetScope.APP: "app",
    BudgetScope.API_KEY: "api_key_prefix",
    BudgetScope.POLICY: "policy",
    BudgetScope.END_USER: "end_user",
}
# How often a script is re-run after seeding missing counters. Seeding writes them, so the
# second run finds them; only a Redis evicting keys as fast as they are written fails this.
SEED_ATTEMPTS = 3


class BudgetCounterUnavailable(Exception):
    """Redis keeps losing a budget counter as soon as it is rebuilt (memory pressure)."""


def discard_stale_connections() -> None:
    """Close database connections past their age or broken, as `request_finished` would.

    The budget stores reach the database from the routing API's worker threads, which
    send no request signals, so they clean up for themselves (billing's twin of
    `routing.config.version.discard_stale_connections`: billing imports no routing).
    Never inside a transaction: that connection is in use (in tests, the test's own).
    """
    if not connection.in_atomic_block:
        close_old_connections()


def ledger_spend(rule: BudgetRule, start: datetime, end: datetime) -> Decimal:
    """What the ledger has recorded for this budget's scope in [start, end) (billing days)."""
    rows = LedgerEntry.objects.filter(day__gte=start.date(), day__lt=end.date())
    if rule.scope in LEDGER_FIELD:
        rows = rows.filter(**{LEDGER_FIELD[rule.scope]: rule.scope_value})
    return rows.aggregate(total=Sum("cost"))["total"] or Decimal(0)


def _ledger_spend_from_thread(rule: BudgetRule, start: datetime, end: datetime) -> Decimal:
    discard_stale_connections()
    return ledger_spend(rule, start, end)


def _bounds(rules: Sequence[BudgetRule], now: datetime) -> list[tuple[datetime, datetime]]:
    return [period_bounds(r.period, now, settings.BILLING_TIME_ZONE) for r in rules]


class RedisBudgetStore:
    """Counters in Redis hashes, changed only by Lua scripts, so each step is atomic.

    A counter Redis does not have is rebuilt from the ledger before any script uses it
    (`_seed`), so losing Redis's data never restarts a period's spend at 0. What the
    ledger cannot know is the spend settled in the last seconds whose records are still
    in the record buffer; a budget may overspend by that much once, after a loss.
    """

    SCRIPTS = {"reserve": RESERVE_LUA, "settle": SETTLE_LUA, "usage": USAGE_LUA, "admit": ADMIT_LUA}

    def __init__(self) -> None:
        self._scripts: weakref.WeakKeyDictionary[object, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()

    def _script(self, name: str) -> AsyncScript:
        """The script registered on this event loop's client (EVALSHA, loaded on first use)."""
        client = shared_redis.async_client()
        scripts = self._scripts.get(client)
        if scripts is None:
            scripts = self._scripts[client] = {n: client.register_script(lua) for n, lua in self.SCRIPTS.items()}
        return scripts[name]

    async def _run(self, name: str, usages: Sequence[Usage], args: list[str | int], now: datetime) -> list[Any]:
        """Run a script; seed the counters it reports missing from the ledger and run it again."""
        keys = hold_keys([u.rule for u in usages], [u.period_start for u in usages])
        for _ in range(SEED_ATTEMPTS):
            raw: list[Any] = await self._script(name)(keys=keys, args=args)
            if not await self.seeded_missing(raw, usages, keys, now):
                return raw
        raise counters_lost(usages)

    async def seeded_missing(
        self, raw: Sequence[Any], usages: Sequence[Usage], keys: Sequence[str], now: datetime
    ) -> bool:
        """Seed the counters a script's reply names as missing; whether it named any (run it again)."""
        if not raw or int(raw[0]) != MISSING:
            return False
        for index in (int(i) - 1 for i in raw[1:]):
            await self._seed(usages[index], keys[2 * index], now)
        return True

    async def _seed(self, usage: Usage, key: str, now: datetime) -> None:
        spent = await sync_to_async(_ledger_spend_from_thread)(usage.rule, usage.period_start, usage.period_end)
        client = shared_redis.async_client()
        async with client.pipeline(transaction=True) as pipe:
            # HSETNX: if another worker seeded it meanwhile, its value (and any spend
            # settled on it since) wins.
            pipe.hsetnx(key, "spent", to_units(spent))
            pipe.expire(key, key_ttl_s(usage.period_end, now))
            created, _ = await pipe.execute()
        if created:
            logger.info("Budget counter %s started from the ledger's spend, $%s", key, spent)

    async def usage(self, rules: Sequence[BudgetRule], now: datetime) -> list[Usage]:
        periods = _periods(rules, now)
        raw = await self._run("usage", periods, [], now)
        return [
            Usage(p.rule, p.period_start, p.period_end, from_units(raw[1 + 2 * i]), from_units(raw[2 + 2 * i]))
            for i, p in enumerate(periods)
        ]

    async def reserve(self, rules: Sequence[BudgetRule], amount: Decimal, hold_id: str, now: datetime) -> Hold:
        periods = _periods(rules, now)
        args: list[str | int] = [to_units(amount), hold_id, HOLD_TTL_S]
        for period in periods:
            args += [limit_units(period.rule.limit), int(period.rule.blocks), key_ttl_s(period.period_end, now)]
        raw = await self._run("reserve", periods, args, now)
        if int(raw[0]) == 0:
            period = periods[int(raw[1]) - 1]
            usage = Usage(period.rule, period.period_start, period.period_end, from_units(raw[2]), from_units(raw[3]))
            raise BudgetExhausted(usage, amount)
        usages = tuple(
            Usage(p.rule, p.period_start, p.period_end, from_units(raw[1 + 2 * i]), from_units(raw[2 + 2 * i]))
            for i, p in enumerate(periods)
        )
        return Hold(hold_id=hold_id, usages=usages, amount=amount)

    async def settle(self, hold: Hold, actual: Decimal, now: datetime) -> None:
        await self._run("settle", hold.usages, [hold.hold_id, to_units(actual)], now)

    def settle_queued(self, pipe: Any, hold: Hold, actual: Decimal) -> None:
        """Queue the settle on `pipe`, a pipeline of this event loop's client; `settled_by` reads its reply.

        EVALSHA alone: a pipeline that registers its scripts asks Redis for them first, one
        more round trip. A script Redis does not have yet, or a counter it lost, comes back
        as not settled, and the caller settles with `settle`, which handles both.
        """
        keys = hold_keys([u.rule for u in hold.usages], [u.period_start for u in hold.usages])
        pipe.evalsha(self._script("settle").sha, len(keys), *keys, hold.hold_id, to_units(actual))

    @staticmethod
    def settled_by(reply: Any) -> bool:
        return not isinstance(reply, Exception) and int(reply[0]) != MISSING

    async def admit(self, rules: Sequence[BudgetRule], worst: WorstCase, hold_id: str, now: datetime) -> Admitted:
        """One round trip: the usage, the routing it calls for, and the hold (`ADMIT_LUA`)."""
        call = AdmitCall.of(rules, worst, hold_id, now)
        return call.admitted(await self._run("admit", call.periods, call.args, now))


@dataclass(frozen=True)
class AdmitCall:
    """`ADMIT_LUA`'s keys and arguments for a request, and the reading of its reply.

    Public so that the hot path can run the same admission inside a script of its own
    (`routing.limits.admission`: the key's rate limits and its budgets in one round trip).
    """

    periods: list[Usage]
    keys: list[str]
    args: list[str | int]
    worst: WorstCase
    hold_id: str

    @classmethod
    def of(cls, rules: Sequence[BudgetRule], worst: WorstCase, hold_id: str, now: datetime) -> AdmitCall:
        periods = _periods(rules, now)
        args: list[str | int] = [to_units(worst.full), to_units(worst.cheap_only), hold_id, HOLD_TTL_S]
        for p in periods:
            rule = p.rule
            args += [limit_units(rule.limit), int(rule.blocks), key_ttl_s(p.period_end, now), soft_limit_units(rule),
                     int(rule.soft_action == SoftAction.CHEAP_ONLY), int(not rule.blocks)]  # fmt: skip
        return cls(periods, hold_keys(rules, [p.period_start for p in periods]), args, worst, hold_id)

    def admitted(self, raw: Sequence[Any]) -> Admitted:
        """The hold the script made; raises `BudgetExhausted` when a blocking budget refused."""
        periods, worst = self.periods, self.worst
        if int(raw[0]) == 0:
            period = periods[int(raw[2]) - 1]
            usage = Usage(period.rule, period.period_start, period.period_end, from_units(raw[3]), from_units(raw[4]))
            amount = worst.cheap_only if int(raw[1]) else worst.full
            raise BudgetExhausted(usage, amount, Degrade(cheap_only=True) if int(raw[1]) else None)
        before = [
            Usage(p.rule, p.period_start, p.period_end, from_units(raw[2 + 2 * i]), from_units(raw[3 + 2 * i]))
            for i, p in enumerate(periods)
        ]
        return _admitted(before, worst, self.hold_id)


def counters_lost(usages: Sequence[Usage]) -> BudgetCounterUnavailable:
    return BudgetCounterUnavailable(f"Redis lost the counters of {', '.join(u.rule.describe() for u in usages)}")


def _admitted(before: Sequence[Usage], worst: WorstCase, hold_id: str) -> Admitted:
    """The hold on usages as they were before it, and the routing they call for."""
    degrade = degrade_for(before)
    amount = worst.under(degrade)
    held = tuple(Usage(u.rule, u.period_start, u.period_end, u.spent, u.held + amount) for u in before)
    return Admitted(degrade=degrade, hold=Hold(hold_id=hold_id, usages=held, amount=amount))


def _periods(rules: Sequence[BudgetRule], now: datetime) -> list[Usage]:
    """Each rule's current period, as a usage with nothing counted yet."""
    return [
        Usage(r, start, end, Decimal(0), Decimal(0)) for r, (start, end) in zip(rules, _bounds(rules, now), strict=True)
    ]


class DatabaseBudgetStore:
    """Counters and holds in tables, changed under row locks (embedded mode).

    SQLite runs these transactions as IMMEDIATE (settings), so processes take turns.
    """

    async def usage(self, rules: Sequence[BudgetRule], now: datetime) -> list[Usage]:
        return await sync_to_async(self._usage)(rules, now)

    async def reserve(self, rules: Sequence[BudgetRule], amount: Decimal, hold_id: str, now: datetime) -> Hold:
        return await sync_to_async(self._reserve)(rules, amount, hold_id, now)

    async def settle(self, hold: Hold, actual: Decimal, now: datetime) -> None:
        await sync_to_async(self._settle)(hold, actual)

    async def admit(self, rules: Sequence[BudgetRule], worst: WorstCase, hold_id: str, now: datetime) -> Admitted:
        return await sync_to_async(self._admit)(rules, worst, hold_id, now)

    def _admit(self, rules: Sequence[BudgetRule], worst: WorstCase, hold_id: str, now: datetime) -> Admitted:
        discard_stale_connections()
        with transaction.atomic():
            usages = [self._locked_usage(r, s, e, now) for r, (s, e) in zip(rules, _bounds(rules, now), strict=True)]
            degrade = degrade_for(usages)
            amount = worst.under(degrade)
            for usage in usages:
                if usage.rule.blocks and usage.committed + amount > usage.rule.limit:
                    raise BudgetExhausted(usage, amount, degrade)
            self._hold(usages, amount, hold_id, now)
            return _admitted(usages, worst, hold_id)

    def _usage(self, rules: Sequence[BudgetRule], now: datetime) -> list[Usage]:
        discard_stale_connections()
        with transaction.atomic():
            return [
                self._locked_usage(rule, start, end, now)
                for rule, (start, end) in zip(rules, _bounds(rules, now), strict=True)
            ]

    def _reserve(self, rules: Sequence[BudgetRule], amount: Decimal, hold_id: str, now: datetime) -> Hold:
        discard_stale_connections()
        with transaction.atomic():
            usages = [self._locked_usage(r, s, e, now) for r, (s, e) in zip(rules, _bounds(rules, now), strict=True)]
            for usage in usages:
                if usage.rule.blocks and usage.committed + amount > usage.rule.limit:
                    raise BudgetExhausted(usage, amount)
            self._hold(usages, amount, hold_id, now)
            held = tuple(Usage(u.rule, u.period_start, u.period_end, u.spent, u.held + amount) for u in usages)
            return Hold(hold_id=hold_id, usages=held, amount=amount)

    def _hold(self, usages: Sequence[Usage], amount: Decimal, hold_id: str, now: datetime) -> None:
        expires = now + timedelta(seconds=HOLD_TTL_S)
        BudgetReservation.objects.bulk_create(
            BudgetReservation(
                counter=self._counter(u.rule, u.period_start, u.period_end),
                hold_id=hold_id,
                amount=amount,
                expires_at=expires,
            )
            for u in usages
        )

    def _settle(self, hold: Hold, actual: Decimal) -> None:
        discard_stale_connections()
        with transaction.atomic():
            for usage in hold.usages:
                counter = self._counter(usage.rule, usage.period_start, usage.period_end)
                BudgetReservation.objects.filter(counter=counter, hold_id=hold.hold_id).delete()
                BudgetCounter.objects.filter(id=counter.id).update(spent=F("spent") + actual)

    def _locked_usage(self, rule: BudgetRule, start: datetime, end: datetime, now: datetime) -> Usage:
        counter = self._counter(rule, start, end)
        BudgetReservation.objects.filter(counter=counter, expires_at__lt=now).delete()
        held = counter.reservations.aggregate(total=Sum("amount"))["total"] or Decimal(0)
        return Usage(rule, start, end, counter.spent, held)

    def _counter(self, rule: BudgetRule, start: datetime, end: datetime) -> BudgetCounter:
        # The row is the marker: a period at $0 is a row at 0, read as it is; a missing row
        # (a new period, or one deleted) starts from the ledger.
        counter = BudgetCounter.objects.select_for_update().filter(budget_id=rule.id, period_start=start).first()
        if counter is None:
            counter, _ = BudgetCounter.objects.get_or_create(
                budget_id=rule.id, period_start=start, defaults={"spent": ledger_spend(rule, start, end)}
            )
        return counter


_redis_store = RedisBudgetStore()


def budget_store() -> BudgetStore:
    """The store for this mode."""
    return _redis_store if settings.REDIS_URL else DatabaseBudgetStore()


def budget_rules_load() -> list[BudgetRule]:
    """Every enabled budget, as the hot path's rules (read when configuration changes)."""
    return [
        BudgetRule(
            id=b.id,
            name=b.name,
            scope=b.scope,
            scope_value=b.scope_value,
            period=b.period,
            limit=b.limit,
            soft_limit_percent=b.soft_limit_percent,
            soft_action=b.soft_action,
            degraded_threshold=b.degraded_threshold,
            hard_action=b.hard_action,
        )
        for b in Budget.objects.filter(enabled=True)
    ]
