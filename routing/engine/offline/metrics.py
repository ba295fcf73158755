"""Routing figures with bootstrap confidence intervals, in numpy, for the offline benchmark.

The same figures as `replay.routing_metrics` (RouteLLM's CPT and APGR, and the savings
at 95% of the strong model's quality), computed from arrays so that a few hundred
bootstrap resamples of a few thousand rows take seconds. Three differences, all needed
once scorers return the majority answer of several cheap calls:

- each row carries the quality of the answer the cheap tier *returns* (a majority vote
  can be right where the preferred model's own answer was wrong) and, separately, the
  anchor: the preferred model's single answer. PGR is measured from that anchor to the
  strong model, the same for every scorer of a data set, so a cheap tier that returns
  better answers starts above 0;
- each row's cheap cost is whatever that scorer's cheap tier called (k samples, a panel
  of models), so CPT by cost counts the extra calls;
- rows with equal scores escalate in random order: between two thresholds the curve is
  the straight line that random tie-breaking gives on average (a vote share of k=5
  samples has only six values). CPT(x) is read off that piecewise-linear curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

EPSILON: Final = 1e-9
QUALITY_SHARE_FOR_SAVINGS: Final = 0.95
FIGURES: Final = ("cpt50", "cpt80", "cpt50_cost", "cpt80_cost", "apgr", "savings_at_95")
DEFAULT_RESAMPLES: Final = 200
CONFIDENCE: Final = 0.95


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per row: the scorer's score, the returned and anchor answers' quality, both tiers' costs."""

    score: FloatArray
    quality: FloatArray  # of the answer the cheap tier returns
    anchor: FloatArray  # of the preferred cheap model's single answer: PGR's 0
    strong: FloatArray
    cheap_cost: FloatArray  # every cheap call the scorer needed
    strong_cost: FloatArray
    cascade: bool = True  # False: a router, which skips the cheap call of a routed row

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def take(self, rows: NDArray[np.int64]) -> Outcomes:
        return Outcomes(
            self.score[rows],
            self.quality[rows],
            self.anchor[rows],
            self.strong[rows],
            self.cheap_cost[rows],
            self.strong_cost[rows],
            self.cascade,
        )


@dataclass(frozen=True, eq=False)
class Curve:
    """The cascade at every threshold between tied blocks of scores, lowest first."""

    share: FloatArray  # of rows escalated
    cost_share: FloatArray  # cost / all-strong cost
    quality: FloatArray
    pgr: FloatArray


def curve(outcomes: Outcomes) -> Curve:
    """Escalating the lowest-scored rows first, a block of equal scores at a time."""
    order = np.argsort(outcomes.score, kind="stable")
    scores = outcomes.score[order]
    n = len(scores)
    ks = np.concatenate([[0], np.flatnonzero(np.diff(scores) != 0) + 1, [n]]).astype(np.int64)

    def prefix(values: FloatArray) -> FloatArray:
        return np.concatenate([[0.0], np.cumsum(values[order])])

    returned, strong = prefix(outcomes.quality), prefix(outcomes.strong)
    cheap_cost, strong_cost = prefix(outcomes.cheap_cost), prefix(outcomes.strong_cost)
    quality = (returned[n] - returned[ks] + strong[ks]) / n
    cheap_paid = cheap_cost[n] if outcomes.cascade else cheap_cost[n] - cheap_cost[ks]
    baseline = strong_cost[n]
    cost_share = (cheap_paid + strong_cost[ks]) / baseline if baseline > 0 else np.zeros(len(ks))
    weak, best = float(outcomes.anchor.mean()), float(outcomes.strong.mean())
    gap = best - weak
    pgr = (quality - weak) / gap if abs(gap) > EPSILON else np.full(len(ks), math.nan)
    return Curve(ks / n, np.asarray(cost_share, dtype=np.float64), quality, pgr)


def figures(outcomes: Outcomes) -> dict[str, float]:
    """CPT(50%), CPT(80%) by share of strong calls and by cost, APGR, savings at 95%.

    Fractions, not percents; NaN where the figure is undefined (no quality gap).
    """
    if len(outcomes) == 0:
        return dict.fromkeys(FIGURES, math.nan)
    c = curve(outcomes)
    target = QUALITY_SHARE_FOR_SAVINGS * float(outcomes.strong.mean())
    return {
        "cpt50": first_crossing(c.pgr, c.share, 0.5),
        "cpt80": first_crossing(c.pgr, c.share, 0.8),
        "cpt50_cost": first_crossing(c.pgr, c.cost_share, 0.5),
        "cpt80_cost": first_crossing(c.pgr, c.cost_share, 0.8),
        "apgr": float(np.trapezoid(c.pgr, c.share)) if not np.isnan(c.pgr).any() else math.nan,
        "savings_at_95": 1.0 - first_crossing(c.quality, c.cost_share, target),
    }


def first_crossing(values: FloatArray, axis: FloatArray, target: float) -> float:
    """Where the piecewise-linear curve (axis, values) first reaches `target`; NaN if never."""
    if np.isnan(values).any():
        return math.nan
    reached = np.flatnonzero(values >= target - EPSILON)
    if not len(reached):
        return math.nan
    j = int(reached[0])
    if j == 0:
        return float(axis[0])
    rise = values[j] - values[j - 1]
    t = (target - values[j - 1]) / rise if rise > 0 else 1.0
    return float(axis[j - 1] + min(1.0, max(0.0, t)) * (axis[j] - axis[j - 1]))


def bootstrap(
    outcomes: Outcomes, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every figure over `resamples` resamples of the rows."""
    n = len(outcomes)
    if n == 0 or resamples <= 0:
        return {name: (math.nan, math.nan) for name in FIGURES}
    rng = np.random.default_rng(seed)
    draws = np.asarray(
        [[figures(outcomes.take(rng.integers(0, n, n)))[name] for name in FIGURES] for _ in range(resamples)]
    )
    tail = (1.0 - confidence) / 2.0 * 100.0
    intervals: dict[str, tuple[float, float]] = {}
    for column, name in enumerate(FIGURES):
        values = draws[:, column][~np.isnan(draws[:, column])]
        # A figure most resamples cannot reach has no interval worth printing.
        if len(values) < resamples / 2:
            intervals[name] = (math.nan, math.nan)
        else:
            intervals[name] = (float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail)))
    return intervals


def with_intervals(
    point: Mapping[str, float], intervals: Mapping[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """{figure: {"value", "low", "high"}}."""
    return {
        name: {"value": point[name], "low": intervals[name][0], "high": intervals[name][1]}
        for name in FIGURES
        if name in point
    }
