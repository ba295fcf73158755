"""The shared budget counters: Redis (production) and the database (embedded mode).

Both implement `billing.budgets.BudgetStore` with the same rules; see that module's
docstring for the reserve/settle protocol. A counter that does not exist yet (a new
period, or Redis lost its data) starts from the ledger's spend for the period so far.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from redis.commands.core import AsyncScript

from cascadeops import redis as shared_redis

from .budgets import (
    HOLD_TTL_S,
    RESERVE_LUA,
    SETTLE_LUA,
    USAGE_LUA,
    BudgetExhausted,
    BudgetRule,
    BudgetStore,
    Hold,
    Usage,
    from_units,
    hold_keys,
    key_ttl_s,
    limit_units,
    period_bounds,
    to_units,
)
from .choices import BudgetScope
from .models import Budget, BudgetCounter, BudgetReservation, LedgerEntry

LEDGER_FIELD: dict[str, str] = {
    BudgetScope.TEAM: "team",
    BudgetScope.APP: "app",
    BudgetScope.API_KEY: "api_key_prefix",
    BudgetScope.POLICY: "policy",
    BudgetScope.END_USER: "end_user",
}


def ledger_spend(rule: BudgetRule, start: datetime, end: datetime) -> Decimal:
    """What the ledger has recorded for this budget's scope in [start, end) (billing days)."""
    rows = LedgerEntry.objects.filter(day__gte=start.date(), day__lt=end.date())
    if rule.scope in LEDGER_FIELD:
        rows = rows.filter(**{LEDGER_FIELD[rule.scope]: rule.scope_value})
    return rows.aggregate(total=Sum("cost"))["total"] or Decimal(0)


def _bounds(rules: Sequence[BudgetRule], now: datetime) -> list[tuple[datetime, datetime]]:
    return [period_bounds(r.period, now, settings.BILLING_TIME_ZONE) for r in rules]


class RedisBudgetStore:
    """Counters in Redis hashes, changed only by Lua scripts, so each step is atomic."""

    SCRIPTS = {"reserve": RESERVE_LUA, "settle": SETTLE_LUA, "usage": USAGE_LUA}

    def __init__(self) -> None:
        self._scripts: weakref.WeakKeyDictionary[object, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()

    def _script(self, name: str) -> AsyncScript:
        """The script registered on this event loop's client (EVALSHA, loaded on first use)."""
        client = shared_redis.async_client()
        scripts = self._scripts.get(client)
        if scripts is None:
            scripts = self._scripts[client] = {n: client.register_script(lua) for n, lua in self.SCRIPTS.items()}
        return scripts[name]

    async def usage(self, rules: Sequence[BudgetRule], now: datetime) -> list[Usage]:
        bounds = _bounds(rules, now)
        keys = hold_keys(rules, [b[0] for b in bounds])
        raw = await self._script("usage")(keys=keys, args=[int(now.timestamp())])
        usages = []
        for i, (rule, (start, end)) in enumerate(zip(rules, bounds, strict=True)):
            spent_raw, held_raw = raw[2 * i], raw[2 * i + 1]
            spent = from_units(spent_raw) if spent_raw else await self._initialise(rule, start, end, keys[2 * i], now)
            usages.append(Usage(rule, start, end, spent, from_units(held_raw)))
        return usages

    async def _initialise(self, rule: BudgetRule, start: datetime, end: datetime, key: str, now: datetime) -> Decimal:
        spent = await sync_to_async(ledger_spend)(rule, start, end)
        client = shared_redis.async_client()
        # HSETNX: if another worker initialised it meanwhile, its value (and any spend
        # settled since) wins.
        await client.hsetnx(key, "spent", to_units(spent))
        await client.expire(key, key_ttl_s(end, now))
        return from_units(await client.hget(key, "spent") or 0)

    async def reserve(self, rules: Sequence[BudgetRule], amount: Decimal, hold_id: str, now: datetime) -> Hold:
        bounds = _bounds(rules, now)
        args: list[str | int] = [int(now.timestamp()), to_units(amount), hold_id, HOLD_TTL_S]
        for rule, (_, end) in zip(rules, bounds, strict=True):
            args += [limit_units(rule.limit), int(rule.blocks), key_ttl_s(end, now)]
        raw = await self._script("reserve")(keys=hold_keys(rules, [b[0] for b in bounds]), args=args)
        if int(raw[0]) == 0:
            index = int(raw[1]) - 1
            start, end = bounds[index]
            usage = Usage(rules[index], start, end, from_units(raw[2]), from_units(raw[3]))
            raise BudgetExhausted(usage, amount)
        usages = tuple(
            Usage(rule, start, end, from_units(raw[1 + 2 * i]), from_units(raw[2 + 2 * i]))
            for i, (rule, (start, end)) in enumerate(zip(rules, bounds, strict=True))
        )
        return Hold(hold_id=hold_id, usages=usages, amount=amount)

    async def settle(self, hold: Hold, actual: Decimal, now: datetime) -> None:
        rules = [u.rule for u in hold.usages]
        keys = hold_keys(rules, [u.period_start for u in hold.usages])
        await self._script("settle")(keys=keys, args=[hold.hold_id, to_units(actual)])


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

    def _usage(self, rules: Sequence[BudgetRule], now: datetime) -> list[Usage]:
        with transaction.atomic():
            return [
                self._locked_usage(rule, start, end, now)
                for rule, (start, end) in zip(rules, _bounds(rules, now), strict=True)
            ]

    def _reserve(self, rules: Sequence[BudgetRule], amount: Decimal, hold_id: str, now: datetime) -> Hold:
        with transaction.atomic():
            usages = [self._locked_usage(r, s, e, now) for r, (s, e) in zip(rules, _bounds(rules, now), strict=True)]
            for usage in usages:
                if usage.rule.blocks and usage.committed + amount > usage.rule.limit:
                    raise BudgetExhausted(usage, amount)
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
            held = tuple(Usage(u.rule, u.period_start, u.period_end, u.spent, u.held + amount) for u in usages)
            return Hold(hold_id=hold_id, usages=held, amount=amount)

    def _settle(self, hold: Hold, actual: Decimal) -> None:
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
