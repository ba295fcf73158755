"""Offline what-if: cost and quality of a two-tier cascade at every threshold, no provider called.

Each `ReplayRow` is one labelled request: the confidence some scorer (or router) gave
the cheap answer, how good the cheap and the strong answers were, and what each call
cost. `sweep` replays the rows at many thresholds at once: a row escalates when its
score is below the threshold, and then pays for both calls and gets the strong answer;
otherwise it pays for the cheap call and keeps the cheap answer. The baseline is every
row on the strong tier alone. With `cascade=False` the rows below the threshold go
straight to the strong tier instead (a prompt-only router), paying for that call only.

`routing_metrics` condenses a sweep into the routing literature's numbers (RouteLLM,
Ong et al. 2024): PGR = (quality - weak) / (strong - weak), the share of strong calls
(or of cost) needed to reach a PGR (CPT), the area under PGR over that share (APGR),
and the savings at 95% of the strong model's quality. `threshold_for_target` picks the
cheapest point that meets an operator's target, which is what auto-tuning needs;
`calibrate_threshold` does it from labelled rows and a target share of the strong
tier's quality (what shadow evaluations give a policy early on).
Money stays `Decimal` throughout.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

# Float tolerance when comparing a PGR or a quality with a target.
EPSILON = 1e-9
QUALITY_SHARE_FOR_SAVINGS = 0.95

Num = TypeVar("Num", float, Decimal)


@dataclass(frozen=True)
class ReplayRow:
    """One labelled request: the cheap answer's score, both answers' quality, both calls' cost."""

    score: float
    cheap_quality: float
    strong_quality: float
    cheap_cost: Decimal
    strong_cost: Decimal


@dataclass(frozen=True)
class SweepPoint:
    """The replayed outcome of one threshold over all rows (totals, not per request)."""

    threshold: float
    strong_share: float  # share of rows that call the strong tier
    cost: Decimal
    baseline_cost: Decimal  # every row on the strong tier alone
    savings: Decimal
    savings_share: float  # savings / baseline_cost
    quality: float  # mean quality of the answers returned
    escalation_rate: float  # share of rows scored below the threshold (= strong_share here)
    pgr: float
    requests: int = 0

    @property
    def cost_per_request(self) -> Decimal:
        return self.cost / self.requests if self.requests else self.cost

    @property
    def cost_share(self) -> float:
        """Cost as a share of the baseline."""
        return float(self.cost / self.baseline_cost) if self.baseline_cost else 0.0


@dataclass(frozen=True)
class _Totals:
    """Running sums over the rows in score order: index k covers the k lowest-scored rows."""

    scores: list[float]
    cheap_quality: list[float]
    strong_quality: list[float]
    cheap_cost: list[Decimal]
    strong_cost: list[Decimal]

    @classmethod
    def of(cls, rows: Sequence[ReplayRow]) -> _Totals:
        ordered = sorted(rows, key=lambda row: row.score)
        return cls(
            scores=[row.score for row in ordered],
            cheap_quality=running([row.cheap_quality for row in ordered], 0.0),
            strong_quality=running([row.strong_quality for row in ordered], 0.0),
            cheap_cost=running([row.cheap_cost for row in ordered], Decimal(0)),
            strong_cost=running([row.strong_cost for row in ordered], Decimal(0)),
        )


def running(values: list[Num], zero: Num) -> list[Num]:
    """[0, v0, v0+v1, ...]: prefix sums, so any threshold costs one lookup, not a pass."""
    sums = [zero]
    sums.extend(itertools.accumulate(values))
    return sums


def sweep(
    rows: Sequence[ReplayRow],
    thresholds: Sequence[float] | None = None,
    *,
    cascade: bool = True,
) -> list[SweepPoint]:
    """One point per threshold, in threshold order.

    By default the thresholds are 0, 1 and every distinct score (escalating exactly the
    rows scored below it), plus one just above the highest score when that is 1 or
    more, so the curve is exact and runs from no escalation to escalating every row.
    """
    if not rows:
        return []
    totals = _Totals.of(rows)
    chosen = sorted(set(thresholds if thresholds is not None else default_thresholds(totals.scores)))
    return [_point(totals, threshold, cascade=cascade) for threshold in chosen]


def default_thresholds(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    above = [math.nextafter(top, math.inf)] if top >= 1.0 else []
    return sorted({0.0, 1.0, *scores, *above})


def _point(totals: _Totals, threshold: float, *, cascade: bool) -> SweepPoint:
    n = len(totals.scores)
    k = bisect.bisect_left(totals.scores, threshold)  # rows scored below the threshold
    cheap_paid = totals.cheap_cost[n] if cascade else totals.cheap_cost[n] - totals.cheap_cost[k]
    cost = cheap_paid + totals.strong_cost[k]
    baseline = totals.strong_cost[n]
    quality = (totals.cheap_quality[n] - totals.cheap_quality[k] + totals.strong_quality[k]) / n
    savings = baseline - cost
    return SweepPoint(
        threshold=threshold,
        strong_share=k / n,
        cost=cost,
        baseline_cost=baseline,
        savings=savings,
        savings_share=float(savings / baseline) if baseline else 0.0,
        quality=quality,
        escalation_rate=k / n,
        pgr=pgr(quality, weak=totals.cheap_quality[n] / n, strong=totals.strong_quality[n] / n),
        requests=n,
    )


def pgr(quality: float, *, weak: float, strong: float) -> float:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong one's.

    0 when there is no gap to recover.
    """
    gap = strong - weak
    return (quality - weak) / gap if abs(gap) > EPSILON else 0.0


def routing_metrics(points: Sequence[SweepPoint], *, weak_quality: float, strong_quality: float) -> dict[str, float]:
    """CPT(50%), CPT(80%) by strong-call share and by cost share, APGR, savings at 95% quality.

    CPT(x) is the smallest share at which PGR >= x; APGR the trapezoid area under PGR
    over the strong-call share from 0 to 1. Fractions, not percents. A figure no point
    reaches is NaN.
    """
    gained = [(point, pgr(point.quality, weak=weak_quality, strong=strong_quality)) for point in points]
    return {
        "cpt50": cpt(gained, 0.5, lambda p: p.strong_share),
        "cpt80": cpt(gained, 0.8, lambda p: p.strong_share),
        "cpt50_cost": cpt(gained, 0.5, lambda p: p.cost_share),
        "cpt80_cost": cpt(gained, 0.8, lambda p: p.cost_share),
        "apgr": apgr([(point.strong_share, value) for point, value in gained]),
        "savings_at_95": savings_at_quality(points, QUALITY_SHARE_FOR_SAVINGS * strong_quality),
    }


def cpt(gained: Sequence[tuple[SweepPoint, float]], target: float, share: Callable[[SweepPoint], float]) -> float:
    return min((share(point) for point, value in gained if value >= target - EPSILON), default=math.nan)


def apgr(curve: Sequence[tuple[float, float]]) -> float:
    """Area under PGR over the strong-call share, anchored at (0, 0) and (1, 1) when missing.

    The anchors are what sending nothing, or everything, to the strong model gives.
    """
    if not curve:
        return math.nan
    best: dict[float, float] = {}
    for share, value in curve:
        best[share] = max(value, best.get(share, -math.inf))
    best.setdefault(0.0, 0.0)
    best.setdefault(1.0, 1.0)
    ordered = sorted(best.items())
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(ordered))


def savings_at_quality(points: Sequence[SweepPoint], quality: float) -> float:
    """The largest savings share among points whose quality reaches `quality`."""
    return max((p.savings_share for p in points if p.quality >= quality - EPSILON), default=math.nan)


def threshold_for_target(
    points: Sequence[SweepPoint],
    *,
    min_quality: float | None = None,
    max_escalation_rate: float | None = None,
    max_cost_per_request: Decimal | float | None = None,
) -> SweepPoint | None:
    """The cheapest point meeting every given target, or None when none does.

    Ties in cost go to the higher quality, then to the lower threshold.
    """
    cap = None if max_cost_per_request is None else Decimal(str(max_cost_per_request))
    meeting = [
        point
        for point in points
        if (min_quality is None or point.quality >= min_quality - EPSILON)
        and (max_escalation_rate is None or point.escalation_rate <= max_escalation_rate + EPSILON)
        and (cap is None or point.cost_per_request <= cap)
    ]
    return min(meeting, key=lambda p: (p.cost, -p.quality, p.threshold), default=None)


def calibrate_threshold(
    rows: Sequence[ReplayRow], *, quality_share: float = QUALITY_SHARE_FOR_SAVINGS, cascade: bool = True
) -> float | None:
    """The threshold at which labelled `rows` reach `quality_share` of the strong tier's
    mean quality at the lowest cost, or None without rows.

    The rows' scores should come from a scorer that was not fitted on them (out-of-fold
    scores for one that was): scores a model has memorised make any threshold look good.
    """
    if not rows:
        return None
    target = quality_share * sum(row.strong_quality for row in rows) / len(rows)
    point = threshold_for_target(sweep(rows, cascade=cascade), min_quality=target)
    return point.threshold if point is not None else None
