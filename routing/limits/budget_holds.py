"""Budgets on the hot path: which apply, how they change the routing, the hold around the call.

Applies billing's rules and counters (`billing.budgets.rules`, `billing.budgets.store`) to a
request: a degraded snapshot past a soft (or non-blocking hard) limit, a reservation of the
worst case before the cascade and its settlement after, the 429 when a blocking budget
cannot cover it. A request no budget applies to touches no counter. See docs/limits.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from billing.budgets.rules import (
    HOLD_TTL_S,
    BudgetExhausted,
    BudgetRule,
    BudgetStore,
    Degrade,
    Hold,
    Usage,
    WorstCase,
    limit_units,
    may_go_cheap,
    to_units,
)
from billing.budgets.store import budget_store
from billing.budgets.tasks import budget_alert_raise as budget_alert_raise_task
from routing import metrics
from routing.config.snapshots import KeyInfo
from routing.engine.costing import resolve_max_tokens, start_tier, worst_case_cost
from routing.engine.types import ChatRequest, PolicySnapshot
from routing.exceptions import BudgetExceeded, BudgetRequestTooLarge, BudgetUnavailable, RateLimited
from routing.limits import admission, ratelimit

logger = logging.getLogger(__name__)
NO_DEGRADE = Degrade()
CHEAP_ONLY = Degrade(cheap_only=True)
# A cascade is cut off this long after it starts, so it never outlives its budget hold:
# an expired hold would let other requests spend what this one is about to be billed.
CASCADE_DEADLINE_S = HOLD_TTL_S - 30


@dataclass
class BudgetPlan:
    """How to route a request under its budgets; `actual` is set once the cascade ran."""

    policy: PolicySnapshot
    degrade: Degrade = NO_DEGRADE
    actual: Decimal = Decimal(0)
    hold: Hold | None = None  # None: no budget applies
    # Set by whoever settled the hold already (the recorder, in the record's round trip).
    settled: bool = False


def degraded_policy(policy: PolicySnapshot, degrade: Degrade) -> PolicySnapshot:
    """Cheap-only: the first tier alone. Lower threshold: every tier accepts more answers."""
    if degrade.cheap_only:
        return dataclasses.replace(policy, tiers=policy.tiers[:1], task_rules=(), max_escalations=0)
    if degrade.threshold is not None:
        tiers = tuple(dataclasses.replace(t, threshold=min(t.threshold, degrade.threshold)) for t in policy.tiers)
        return dataclasses.replace(policy, tiers=tiers)
    return policy


@asynccontextmanager
async def budget_hold(
    rules: list[BudgetRule],
    policy: PolicySnapshot,
    chat: ChatRequest,
    hold_id: str,
    first_tier: int | None = None,
    *,
    key: KeyInfo | None = None,
) -> AsyncIterator[BudgetPlan]:
    """Reserve the request's worst case on every budget in `rules`; settle on the way out.

    `first_tier` is where a prompt router starts the cascade (None: the task rules say),
    so the reservation covers the tiers that will really run. The caller sets
    `plan.actual`, also when the cascade is interrupted (what it has been billed).
    With `key`, its rate limits are charged first, in the same round trip where both
    live in Redis (`routing.limits.admission`); a refusal there is a `RateLimited`.
    """
    if not rules:
        if key is not None:
            await ratelimit.admit(key, policy, chat)
        yield BudgetPlan(policy=policy)
        return
    store = budget_store()
    now = timezone.now()
    try:
        worst = worst_cases(rules, policy, chat, first_tier)
        if key is None:
            admitted = await store.admit(rules, worst, hold_id, now)
        else:
            admitted = await admission.admit(key, policy, chat, store, rules, worst=worst, hold_id=hold_id, now=now)
    except RateLimited:
        raise
    except BudgetExhausted as exc:
        raise budget_refused(exc, degraded_policy(policy, exc.degrade), chat, first_tier) from exc
    except Exception as exc:
        # Failing closed: a budget nobody can check could be overspent without limit.
        logger.exception("The budget store cannot be reached; request %s is refused", hold_id)
        raise BudgetUnavailable(budget_store_down_message(rules)) from exc
    hold = admitted.hold
    plan = BudgetPlan(policy=degraded_policy(policy, admitted.degrade), degrade=admitted.degrade, hold=hold)
    alerts_raise(hold.usages)
    try:
        yield plan
    finally:
        if not plan.settled:
            await settle(store, hold, plan.actual)


def worst_cases(
    rules: Sequence[BudgetRule], policy: PolicySnapshot, chat: ChatRequest, first_tier: int | None
) -> WorstCase:
    """The request's worst case as configured, and cheap-only when a budget may call for that."""
    full = worst_case_cost(policy, chat, first_tier)
    if not any(may_go_cheap(rule) for rule in rules):
        return WorstCase(full=full, cheap_only=full)
    return WorstCase(full=full, cheap_only=worst_case_cost(degraded_policy(policy, CHEAP_ONLY), chat, first_tier))


def budget_store_down_message(rules: Sequence[BudgetRule]) -> str:
    budgets = ", ".join(rule.describe() for rule in rules)
    return (
        f"The budget store cannot be reached, so {budgets} cannot be checked; the request is refused "
        "rather than risk overspending a hard limit. Retry shortly."
    )


async def settle(store: BudgetStore, hold: Hold, actual: Decimal) -> None:
    """Settle the hold to what the request cost; never fails the request.

    Shielded: a client that disconnects must still release the hold now, not leave it to
    expire. The request has been answered and recorded by now, so a store that fails
    here must not turn it into an error: the settle is tried again in the background
    (`SETTLE_RETRY_DELAYS_S`), so the spend reaches the counter once the store is back,
    also after the hold expired. Should every retry fail (or the process stop first), the
    counter misses this request's spend until its period ends; the ledger has it.
    """
    try:
        await asyncio.shield(store.settle(hold, actual, timezone.now()))
    except Exception:
        logger.warning(
            "Could not settle hold %s at $%s; retrying in the background", hold.hold_id, actual, exc_info=True
        )
        retry = asyncio.get_running_loop().create_task(_settle_retry(store, hold, actual))
        _settles_retrying.add(retry)  # a task nothing refers to may be collected mid-flight
        retry.add_done_callback(_settles_retrying.discard)


# Seconds between a failed settle's retries: over five minutes in all, longer than a hold
# lives, so a store that is down for a moment loses no spend. Two cases count the request
# twice, stricter, never looser: a first attempt that did reach the store (its reply lost
# in flight), and a Redis that lost its data meanwhile (the counter is rebuilt from a
# ledger that may already hold the request).
SETTLE_RETRY_DELAYS_S: tuple[float, ...] = (1.0, 4.0, 15.0, 60.0, 240.0)
_settles_retrying: set[asyncio.Task[None]] = set()


async def settle_retries_finished() -> None:
    """Wait for this event loop's settle retries: call it before a loop that is about to end ends.

    A Celery task's quality check runs in a loop of its own (`async_to_sync`), which
    cancels whatever is still pending when it returns.
    """
    loop = asyncio.get_running_loop()
    mine = [task for task in _settles_retrying if task.get_loop() is loop]
    await asyncio.gather(*mine, return_exceptions=True)


async def _settle_retry(store: BudgetStore, hold: Hold, actual: Decimal) -> None:
    try:
        for delay in SETTLE_RETRY_DELAYS_S:
            await asyncio.sleep(delay)
            try:
                await store.settle(hold, actual, timezone.now())
            except Exception:
                continue
            logger.info("Settled hold %s at $%s on a retry", hold.hold_id, actual)
            return
    except asyncio.CancelledError:
        logger.error("Stopped before settling hold %s at $%s; its budget's counter misses it", hold.hold_id, actual)
        raise
    logger.error("Gave up settling hold %s at $%s; its budget's counter misses it", hold.hold_id, actual)


# (budget id, period start, level) already announced by this process: the task is
# idempotent anyway (one BudgetAlert per level and period), this only saves the enqueue.
_announced: set[tuple[int, datetime, str]] = set()


def alerts_raise(usages: tuple[Usage, ...]) -> None:
    """Announce, once per budget period and level, a soft limit crossed or a limit reached."""
    for usage in usages:
        level = "hard" if usage.hard_reached else "soft" if usage.soft_reached else None
        if level is not None:
            alert_raise(usage, level)


def alert_raise(usage: Usage, level: str) -> None:
    """Announce a budget's level once per period (per process; the task itself is idempotent)."""
    if (usage.rule.id, usage.period_start, level) in _announced:
        return
    _announced.add((usage.rule.id, usage.period_start, level))
    args = (usage.rule.id, usage.period_start.isoformat(), level, str(usage.committed))
    # Publishing is blocking I/O; it happens once per budget period, off the loop.
    asyncio.get_running_loop().run_in_executor(None, _enqueue_alert, args)


def _enqueue_alert(args: tuple[int, str, str, str]) -> None:
    try:
        budget_alert_raise_task.delay(*args)
    except Exception:
        # An alert must never fail a request; the next period's crossing tries again.
        logger.exception("Could not enqueue the budget alert %s", args)


def budget_refused(
    exc: BudgetExhausted, policy: PolicySnapshot, chat: ChatRequest, first_tier: int | None
) -> BudgetExceeded:
    """The 429 for a request a blocking budget refused; counted, and its hard alert raised.

    A refusal raises the budget's hard alert (once per period) whether or not its
    counter reached the limit: a reservation that would pass the limit is refused
    before the counter can reach it, and a refusing budget is what the alert is for.
    """
    usage = exc.usage
    metrics.budget_refused(usage.rule.id, "exhausted" if usage.hard_reached else "too_large")
    alert_raise(usage, "hard")
    if usage.hard_reached:
        return budget_exceeded(usage)
    return budget_too_small(usage, exc.amount, max_tokens_within(policy, chat, first_tier, room_left(usage)))


def budget_exceeded(usage: Usage) -> BudgetExceeded:
    """Spent and held reach the limit: nothing fits until the period resets."""
    rule = usage.rule
    reset = usage.period_end.isoformat()
    message = (
        f"The {rule.describe()} is exhausted: ${usage.spent:.4f} spent and ${usage.held:.4f} held by requests "
        f"in flight, of its ${rule.limit:.4f} limit. It resets at {reset}."
    )
    retry_after = int((usage.period_end - timezone.now()).total_seconds())
    return BudgetExceeded(message, retry_after_s=retry_after)


def budget_too_small(usage: Usage, worst_case: Decimal, fits: int | None) -> BudgetRequestTooLarge:
    """The budget has room, but not for this request's worst case: say what would fit."""
    rule = usage.rule
    advice = (
        f"A max_tokens of {fits} or less would fit."
        if fits is not None
        else "No max_tokens would fit: the prompt alone, on the tiers it may run on, costs more than is left."
    )
    return BudgetRequestTooLarge(
        f"This request's worst case, ${worst_case:.4f}, does not fit the {rule.describe()}: "
        f"${max(rule.limit - usage.committed, Decimal(0)):.4f} of its ${rule.limit:.4f} limit is left "
        f"(${usage.spent:.4f} spent, ${usage.held:.4f} held by requests in flight). {advice}"
    )


def room_left(usage: Usage) -> int:
    """What the budget can still hold, in the store's micro-dollars (rounded as the store rounds)."""
    return limit_units(usage.rule.limit) - to_units(usage.committed)


def max_tokens_within(policy: PolicySnapshot, chat: ChatRequest, first_tier: int | None, room: int) -> int | None:
    """The largest `max_tokens` whose worst case fits `room` micro-dollars; None if not even one token does.

    The worst case grows with `max_tokens` (every tier's cap is the tightest of the
    request's, the tier's and the endpoint's), so a binary search below the request's
    own allowance finds it, with the very rule the reservation applies.
    """
    tiers = policy.tiers[start_tier(policy, chat, first_tier) :]
    allowed = max((resolve_max_tokens(chat, tier) for tier in tiers), default=0)

    def fits(max_tokens: int) -> bool:
        return to_units(worst_case_cost(policy, dataclasses.replace(chat, max_tokens=max_tokens), first_tier)) <= room

    low, high = 0, allowed  # fits(low) holds (or low is 0); fits(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low or None
