"""Rollups in plain Python: what a batch of records adds, and what merged rows measure.

`services.rollups_record` writes the deltas computed here; `selectors` read rows back
into `Totals` (one bag of counters and a latency sketch, with the rates and percentiles
the charts, SLA targets and alert rules need) and `Point`s (the totals of one bucket).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.utils import timezone

from dashboard.choices import Resolution, SpendKind
from dashboard.rollups.sketch import Sketch, sketch_add, sketch_count, sketch_merge, sketch_quantile
from routing.records.payload import RecordPayload as Payload
from routing.records.refusals import refusal_of

# (resolution, bucket, policy id, tier, model): the unique key of a `Rollup` row.
RollupKey = tuple[str, datetime, int, int, str]
# (day, scope, kind, name): the unique key of a `SpendRollup` row.
SpendKey = tuple[date, int, str, str]
ALL_POLICIES = 0  # SpendRollup.scope for spend across every policy
FAILED_TIER = -1
# Refused requests' rows: no tier answered, and `model` holds the reason (`429 budget_exceeded`).
REFUSED_TIER = -2

COUNTERS = (
    "requests",
    "escalated",
    "escalations",
    "errors",
    "refused",
    "cache_hits",
    "input_tokens",
    "output_tokens",
    "cost",
    "baseline_cost",
    "score_sum",
    "score_count",
    "quality_sum",
    "quality_count",
)


class RowLike(Protocol):
    """A `Rollup` row, or anything with its counters, tier and sketch."""

    requests: int
    refused: int
    tier: int
    model: str
    latency: Sketch


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


@dataclass
class Totals:
    """Counters of any number of requests (a batch, a bucket, a window) and their latencies."""

    requests: int = 0
    escalated: int = 0
    escalations: int = 0
    errors: int = 0
    refused: int = 0  # turned away before routing; not in `requests`
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)
    baseline_cost: Decimal = field(default_factory=Decimal)
    score_sum: float = 0.0
    score_count: int = 0
    quality_sum: float = 0.0
    quality_count: int = 0
    latency: Sketch = field(default_factory=dict)
    cheap_accepted: int = 0  # answered by tier 0; derived from the rows' tier, not stored
    refusals: dict[str, int] = field(default_factory=dict)  # reason → refused requests

    def add_payload(self, p: Payload) -> None:
        """Count one request record payload (`routing.records.recorder.record_payload`)."""
        reason = refusal_of(p)
        if reason is not None:
            self.refused += 1
            self.refusals[reason] = self.refusals.get(reason, 0) + 1
            return
        self.requests += 1
        self.escalated += bool(p["escalated"])
        self.escalations += p["escalations"]
        self.errors += p["status"] == "failed"
        self.cache_hits += bool(p.get("cache"))  # "exact" or "semantic" (routing.cache.exact)
        self.baseline_cost += Decimal(p.get("baseline_cost") or 0)
        self.input_tokens += p["input_tokens"]
        self.output_tokens += p["output_tokens"]
        self.cost += Decimal(p["cost"])
        self.cheap_accepted += tier_of(p) == 0
        score, label = p.get("score"), p.get("quality_label")
        if score is not None:
            self.score_sum += score
            self.score_count += 1
        if label is not None:
            self.quality_sum += label
            self.quality_count += 1
        sketch_add(self.latency, p["latency_ms"])

    def add_row(self, row: RowLike) -> None:
        """Count a stored rollup row."""
        self._add_counters(row)
        self.cheap_accepted += row.requests if row.tier == 0 else 0
        if row.tier == REFUSED_TIER:
            self._add_refusals({row.model: row.refused})

    def merge(self, other: Totals) -> None:
        """Count another bag of totals."""
        self._add_counters(other)
        self.cheap_accepted += other.cheap_accepted
        self._add_refusals(other.refusals)

    def _add_refusals(self, refusals: dict[str, int]) -> None:
        for reason, count in refusals.items():
            if count:
                self.refusals[reason] = self.refusals.get(reason, 0) + count

    def _add_counters(self, source: Any) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(source, name))
        sketch_merge(self.latency, source.latency)

    @property
    def escalation_rate(self) -> float | None:
        return _pct(self.escalated, self.requests)

    @property
    def received(self) -> int:
        """Every request with a valid key: routed ones and refused ones."""
        return self.requests + self.refused

    @property
    def error_rate(self) -> float | None:
        """Routed requests every tier failed, in % of the routed ones (availability)."""
        return _pct(self.errors, self.requests)

    @property
    def failed_rate(self) -> float | None:
        """Requests not answered, refused or failed, in % of every request received."""
        return _pct(self.errors + self.refused, self.received)

    def refusal_rate(self, reason: str = "") -> float | None:
        """Refused requests (of one reason, or any), in % of every request received."""
        return _pct(self.refusals_of(reason), self.received)

    def refusals_of(self, reason: str = "") -> int:
        """Refused requests whose reason contains `reason` (`429`, `budget_exceeded`); all for ""."""
        if not reason:
            return self.refused
        return sum(count for name, count in self.refusals.items() if reason in name)

    @property
    def availability(self) -> float | None:
        rate = self.error_rate
        return None if rate is None else 100.0 - rate

    @property
    def cache_hit_rate(self) -> float | None:
        return _pct(self.cache_hits, self.requests)

    @property
    def cheap_acceptance(self) -> float | None:
        return _pct(self.cheap_accepted, self.requests)

    @property
    def mean_score(self) -> float | None:
        return self.score_sum / self.score_count if self.score_count else None

    @property
    def mean_quality(self) -> float | None:
        return self.quality_sum / self.quality_count if self.quality_count else None

    @property
    def cost_per_request(self) -> Decimal | None:
        return self.cost / self.requests if self.requests else None

    @property
    def latency_count(self) -> int:
        return sketch_count(self.latency)

    def quantile(self, q: float) -> float | None:
        return sketch_quantile(self.latency, q)


@dataclass
class Point:
    """The totals of one bucket, and how many answers each (tier, model) gave."""

    bucket: datetime
    totals: Totals = field(default_factory=Totals)
    tiers: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))


def minute_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def hour_start(moment: datetime) -> datetime:
    return minute_start(moment).replace(minute=0)


def bucket_start(moment: datetime, resolution: str) -> datetime:
    return hour_start(moment) if resolution == Resolution.HOUR else minute_start(moment)


def local_day_start(moment: datetime) -> datetime:
    """Midnight of `moment`'s local date (TIME_ZONE), as an aware datetime."""
    local = timezone.localtime(moment)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def tier_of(p: Payload) -> int:
    if refusal_of(p) is not None:
        return REFUSED_TIER
    return FAILED_TIER if p["final_tier"] is None or p["status"] == "failed" else int(p["final_tier"])


def model_of(p: Payload) -> str:
    """The row's `model`: the endpoint that answered, nothing for a failure, a refusal's reason."""
    tier = tier_of(p)
    if tier == REFUSED_TIER:
        return refusal_of(p) or ""
    return "" if tier == FAILED_TIER else p["final_model"]


def rollup_deltas(payloads: Iterable[Payload]) -> dict[RollupKey, tuple[str, Totals]]:
    """What each minute and hour row gains from these records: key → (policy name, totals)."""
    deltas: dict[RollupKey, tuple[str, Totals]] = {}
    for p in payloads:
        created = datetime.fromisoformat(p["created"])
        model = model_of(p)
        for resolution in (Resolution.MINUTE, Resolution.HOUR):
            key = (str(resolution), bucket_start(created, resolution), p["policy_id"], tier_of(p), model)
            _, totals = deltas.setdefault(key, (p["policy_name"], Totals()))
            totals.add_payload(p)
    return deltas


def spend_deltas(payloads: Iterable[Payload]) -> dict[SpendKey, tuple[int, Decimal]]:
    """What each day's spender row gains: key → (requests, cost), per policy and across all."""
    deltas: dict[SpendKey, tuple[int, Decimal]] = {}
    for p in payloads:
        if refusal_of(p) is not None:  # nothing spent
            continue
        day = timezone.localdate(datetime.fromisoformat(p["created"]))
        names = [(SpendKind.APP, f"{p['team']}/{p['app']}")]
        if p.get("end_user"):
            names.append((SpendKind.END_USER, p["end_user"][:200]))
        for scope in (ALL_POLICIES, p["policy_id"]):
            for kind, name in names:
                key = (day, scope, str(kind), name)
                requests, cost = deltas.get(key, (0, Decimal(0)))
                deltas[key] = (requests + 1, cost + Decimal(p["cost"]))
    return deltas


def points_from_rows(rows: Iterable[Any]) -> list[Point]:
    """Merge rollup rows (any policies, tiers and models) into one point per bucket, in order."""
    points: dict[datetime, Point] = {}
    for row in rows:
        point = points.setdefault(row.bucket, Point(row.bucket))
        point.totals.add_row(row)
        if row.tier >= 0:
            point.tiers[(row.tier, row.model)] += row.requests
    return [points[bucket] for bucket in sorted(points)]


def totals_of(points: Iterable[Point]) -> Totals:
    totals = Totals()
    for point in points:
        totals.merge(point.totals)
    return totals


def rows_by_policy(rows: Iterable[Any]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.policy_id].append(row)
    return dict(grouped)


@dataclass(frozen=True)
class Window:
    """A span of time the dashboard shows, and the rollup resolution it reads."""

    key: str
    label: str
    resolution: str
    span: timedelta

    @property
    def step(self) -> timedelta:
        return timedelta(hours=1) if self.resolution == Resolution.HOUR else timedelta(minutes=1)

    @property
    def buckets(self) -> int:
        return int(self.span / self.step)

    def since(self, now: datetime) -> datetime:
        """Start of the oldest bucket in the window; the current, partial bucket is the newest."""
        return bucket_start(now, self.resolution) - self.span + self.step


WINDOWS = {
    w.key: w
    for w in (
        Window("1h", "last hour", Resolution.MINUTE, timedelta(hours=1)),
        Window("6h", "last 6 hours", Resolution.MINUTE, timedelta(hours=6)),
        Window("24h", "last 24 hours", Resolution.HOUR, timedelta(hours=24)),
        Window("7d", "last 7 days", Resolution.HOUR, timedelta(days=7)),
    )
}
DEFAULT_WINDOW = "1h"


def window_get(key: str | None) -> Window:
    return WINDOWS.get(key or DEFAULT_WINDOW, WINDOWS[DEFAULT_WINDOW])


# A custom range reads minute rollups up to this span, hour rollups beyond it, and at most
# a month of them.
CUSTOM_MINUTES_UP_TO = timedelta(hours=6)
CUSTOM_MAX_SPAN = timedelta(days=31)


def window_between(since: datetime, until: datetime) -> Window:
    """A custom window from `since` to `until` (whole buckets); ValueError for an empty or too long one."""
    span = until - since
    if span <= timedelta(0) or span > CUSTOM_MAX_SPAN:
        raise ValueError("A custom range must end after it starts and span at most 31 days.")
    resolution = Resolution.MINUTE if span <= CUSTOM_MINUTES_UP_TO else Resolution.HOUR
    step = timedelta(minutes=1) if resolution == Resolution.MINUTE else timedelta(hours=1)
    steps = -(-span // step)  # whole buckets, rounded up
    label = f"{timezone.localtime(since):%Y-%m-%d %H:%M} to {timezone.localtime(until):%Y-%m-%d %H:%M}"
    return Window("custom", label, resolution, step * steps)
