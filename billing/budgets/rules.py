"""Budget enforcement that holds under concurrency: reserve before the call, settle after.

The hot path reserves a request's worst-case cost on every budget that applies in one
atomic step (a Lua script in Redis, or a locked transaction in embedded mode); a blocking
budget that cannot cover it rejects the request. Holds of a dead worker expire after
`HOLD_TTL_S`. Amounts are whole micro-dollars, rounded so a budget only gets stricter.
See docs/limits.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from billing.choices import BudgetPeriod, BudgetScope, HardAction, SoftAction
from common.lua import lua_script

UNIT = Decimal("1e-6")
# Longer than any cascade may take (every tier's read timeout), short enough that a dead
# worker's holds stop blocking others soon.
HOLD_TTL_S = 300


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A budget as the hot path sees it (built from `billing.models.Budget`)."""

    id: int
    name: str
    scope: str
    scope_value: str
    period: str
    limit: Decimal
    soft_limit_percent: int
    soft_action: str
    degraded_threshold: float
    hard_action: str

    @property
    def blocks(self) -> bool:
        """Whether reaching the limit rejects requests (else it only degrades them)."""
        return self.hard_action == HardAction.REJECT

    def describe(self) -> str:
        scope = "all traffic" if self.scope == BudgetScope.GLOBAL else f"{self.scope} '{self.scope_value}'"
        return f"budget '{self.name}' ({scope}, per {self.period})"


@dataclass(frozen=True, slots=True)
class Requester:
    """Who a request is for: what budget scopes match against."""

    team: str
    app: str
    api_key_prefix: str
    policy: str
    end_user: str


def applicable(rules: Iterable[BudgetRule], who: Requester) -> list[BudgetRule]:
    values: dict[str, str] = {
        BudgetScope.TEAM: who.team,
        BudgetScope.APP: who.app,
        BudgetScope.API_KEY: who.api_key_prefix,
        BudgetScope.POLICY: who.policy,
        BudgetScope.END_USER: who.end_user,
    }
    return [r for r in rules if r.scope == BudgetScope.GLOBAL or (values.get(r.scope) or None) == r.scope_value]


def period_bounds(period: str, now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The start and end of the budget period containing `now`, in the billing time zone."""
    local = now.astimezone(ZoneInfo(tz))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return start, start + timedelta(days=1)
    start = start.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@dataclass(frozen=True, slots=True)
class Usage:
    """A budget's spend and held amount in the current period."""

    rule: BudgetRule
    period_start: datetime
    period_end: datetime
    spent: Decimal
    held: Decimal

    @property
    def committed(self) -> Decimal:
        return self.spent + self.held

    @property
    def soft_reached(self) -> bool:
        return self.rule.limit > 0 and self.committed * 100 >= self.rule.limit * self.rule.soft_limit_percent

    @property
    def hard_reached(self) -> bool:
        return self.committed >= self.rule.limit


@dataclass(frozen=True, slots=True)
class Degrade:
    """How a request is routed because of its budgets: the strictest action wins."""

    cheap_only: bool = False
    threshold: float | None = None  # every tier's threshold is lowered to this
    because: str = ""

    @property
    def any(self) -> bool:
        return self.cheap_only or self.threshold is not None


def degrade_for(usages: Sequence[Usage]) -> Degrade:
    """The strictest degradation the budgets' current usage calls for."""
    cheap = [
        u
        for u in usages
        if (u.hard_reached and not u.rule.blocks) or (u.soft_reached and u.rule.soft_action == SoftAction.CHEAP_ONLY)
    ]
    if cheap:
        return Degrade(cheap_only=True, because=cheap[0].rule.name)
    lowered = [u for u in usages if u.soft_reached and u.rule.soft_action == SoftAction.LOWER_THRESHOLD]
    if lowered:
        strictest = min(lowered, key=lambda u: u.rule.degraded_threshold)
        return Degrade(threshold=strictest.rule.degraded_threshold, because=strictest.rule.name)
    return Degrade()


@dataclass(frozen=True, slots=True)
class Hold:
    """A successful reservation, to settle after the call."""

    hold_id: str
    usages: tuple[Usage, ...]
    amount: Decimal


class BudgetExhausted(Exception):
    """A blocking budget cannot cover the request's worst case (under `degrade`, the routing the budgets called for)."""

    def __init__(self, usage: Usage, amount: Decimal, degrade: Degrade | None = None) -> None:
        super().__init__(usage.rule.describe())
        self.usage = usage
        self.amount = amount
        self.degrade = degrade or Degrade()


class BudgetStore(Protocol):
    """The shared counters: Redis in production, the database in embedded mode."""

    async def usage(self, rules: Sequence[BudgetRule], now: datetime) -> list[Usage]: ...

    async def reserve(self, rules: Sequence[BudgetRule], amount: Decimal, hold_id: str, now: datetime) -> Hold: ...

    async def settle(self, hold: Hold, actual: Decimal, now: datetime) -> None: ...

    async def admit(self, rules: Sequence[BudgetRule], worst: WorstCase, hold_id: str, now: datetime) -> Admitted:
        """`usage`, `degrade_for` and `reserve` in one atomic step: the hold is of the worst
        case of the routing the usage calls for (cheap-only, or as configured)."""
        ...


@dataclass(frozen=True, slots=True)
class WorstCase:
    """A request's worst-case cost as configured, and on the cheap tier alone."""

    full: Decimal
    cheap_only: Decimal

    def under(self, degrade: Degrade) -> Decimal:
        return self.cheap_only if degrade.cheap_only else self.full


@dataclass(frozen=True, slots=True)
class Admitted:
    """A reservation made: how the budgets degrade the routing, and the hold to settle."""

    degrade: Degrade
    hold: Hold


def may_go_cheap(rule: BudgetRule) -> bool:
    """Whether this budget can make a request cheap-only (a non-blocking hard limit, a cheap-only soft action)."""
    return not rule.blocks or rule.soft_action == SoftAction.CHEAP_ONLY


def soft_limit_units(rule: BudgetRule) -> int:
    """The committed micro-dollars at which the soft limit is reached (`Usage.soft_reached`, in units)."""
    return -(-limit_units(rule.limit) * rule.soft_limit_percent // 100)


def to_units(amount: Decimal) -> int:
    """Micro-dollars, rounded up: what a hold or a settlement counts."""
    return int(amount.quantize(UNIT, rounding=ROUND_CEILING) / UNIT)


def limit_units(limit: Decimal) -> int:
    """Micro-dollars, rounded down: what a limit allows."""
    return int(limit.quantize(UNIT, rounding=ROUND_FLOOR) / UNIT)


def from_units(units: int | str | bytes) -> Decimal:
    return (Decimal(int(units)) * UNIT).quantize(UNIT)


# Every script runs on Redis's clock (TIME), not the worker's: hold expiry must mean the
# same instant to every replica, whatever their clocks say. (Redis 7 replicates scripts by
# their effects, so reading the clock before writing is allowed.)
#
# A counter is the hash field "spent"; its presence is the marker that the period's spend
# is known (it may legitimately be 0). A missing counter (a new period, or Redis lost it:
# a restart without persistence, an eviction) is never created at 0 here: every script
# first returns {-1, i, ...} naming the missing counters, without writing anything, and
# the store seeds them from the ledger (HSETNX) and runs the script again.
_PRELUDE = lua_script("billing.budgets", "budget_prelude")

# Returned by a script when counters are missing: {MISSING, index (1-based), ...}.
MISSING = -1

# KEYS: per budget, its counter hash (field "spent") then its holds hash (hold id → "amount expiry").
# ARGV: amount units, hold id, hold ttl, then per budget: limit units, blocks (1/0), key ttl.
# Returns {0, index, spent, held} when budget `index` (1-based) blocks, else {1, spent1, held1, spent2, ...}.
RESERVE_LUA = _PRELUDE + lua_script("billing.budgets", "budget_reserve")

# KEYS as for RESERVE_LUA. ARGV: full and cheap-only amount units, hold id, hold ttl, then per
# budget: limit units, blocks (1/0), key ttl, soft limit units, soft action cheap-only (1/0),
# hard limit makes it cheap-only (1/0). `degrade_for` on the usage before the reservation, as
# far as the amount goes: the cheap-only amount when a budget calls for cheap-only routing.
# Returns {0, cheap (1/0), index, spent, held} when budget `index` blocks, else
# {1, cheap, spent1, held1, spent2, ...} with the held amounts before this hold.
ADMIT_LUA = _PRELUDE + lua_script("billing.budgets", "budget_admit")

# KEYS as for RESERVE_LUA; ARGV: hold id, actual units. Drops the hold and adds the actual
# cost. A hold that expired meanwhile (a very slow request) is gone already; its actual
# cost is added all the same, since the call was made and paid for. Returns {1}.
SETTLE_LUA = _PRELUDE + lua_script("billing.budgets", "budget_settle")

# KEYS as for RESERVE_LUA; no ARGV. Returns {1, spent1, held1, spent2, ...}.
USAGE_LUA = _PRELUDE + lua_script("billing.budgets", "budget_usage")


def counter_key(rule: BudgetRule, period_start: datetime) -> str:
    return f"cascadeops:budget:{rule.id}:{int(period_start.timestamp())}"


def hold_keys(rules: Sequence[BudgetRule], starts: Sequence[datetime]) -> list[str]:
    keys: list[str] = []
    for rule, start in zip(rules, starts, strict=True):
        base = counter_key(rule, start)
        keys += [base, f"{base}:holds"]
    return keys


def key_ttl_s(period_end: datetime, now: datetime) -> int:
    # Keep a period's counter a day past its end, for requests that straddle midnight.
    return int((period_end - now).total_seconds()) + 86_400
