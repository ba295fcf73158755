"""Offline what-if replay: the sweep, the routing metrics and target-driven thresholds, by hand."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from routing.engine.offline.replay import (
    ReplayRow,
    SweepPoint,
    calibrate_threshold,
    routing_metrics,
    sweep,
    threshold_for_target,
)

CHEAP = Decimal("0.01")
STRONG = Decimal("1.00")


def row(score: float, cheap: float, strong: float) -> ReplayRow:
    return ReplayRow(score=score, cheap_quality=cheap, strong_quality=strong, cheap_cost=CHEAP, strong_cost=STRONG)


# Five requests in score order. The strong model wins A, B and D, loses C, and both get E
# right. Weak quality 2/5 = 0.4, strong 4/5 = 0.8: a gap of 0.4.
TABLE = (
    row(0.1, 0.0, 1.0),  # A: escalating it gains
    row(0.3, 0.0, 1.0),  # B: gains
    row(0.5, 1.0, 0.0),  # C: escalating it loses
    row(0.7, 0.0, 1.0),  # D: gains
    row(0.9, 1.0, 1.0),  # E: no difference
)


def by_share(points: list[SweepPoint]) -> dict[float, SweepPoint]:
    return {point.strong_share: point for point in points}


def test_the_default_sweep_has_every_score_plus_zero_and_one() -> None:
    points = sweep(TABLE)

    assert [p.threshold for p in points] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    assert [p.strong_share for p in points] == [0.0, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_a_row_escalates_only_when_its_score_is_below_the_threshold() -> None:
    (at_b,) = sweep(TABLE, [0.3])  # A escalates; B, scored exactly 0.3, does not

    assert at_b.strong_share == 0.2
    assert at_b.quality == pytest.approx(0.6)


def test_quality_and_pgr_follow_the_hand_computed_curve() -> None:
    points = by_share(sweep(TABLE))

    # k escalated: A → 0.6, A+B → 0.8, +C → 0.6, +D → 0.8, +E → 0.8
    assert [points[s].quality for s in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)] == pytest.approx([0.4, 0.6, 0.8, 0.6, 0.8, 0.8])
    assert [points[s].pgr for s in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 1.0, 1.0])


def test_a_cascade_pays_both_calls_for_every_escalated_row_in_exact_decimals() -> None:
    points = by_share(sweep(TABLE))

    assert points[0.4].cost == Decimal("2.05")  # five cheap calls + two strong ones
    assert points[0.4].baseline_cost == Decimal("5.00")
    assert points[0.4].savings == Decimal("2.95")
    assert points[1.0].savings == Decimal("-0.05")  # escalating everything costs more than the baseline
    assert all(isinstance(p.cost, Decimal) and isinstance(p.savings, Decimal) for p in points.values())
    assert points[0.4].savings_share == pytest.approx(0.59)
    assert points[0.4].cost_per_request == Decimal("0.41")


def test_a_router_pays_only_the_strong_call_for_a_routed_row() -> None:
    points = by_share(sweep(TABLE, cascade=False))

    assert points[0.4].cost == Decimal("2.03")  # three cheap calls + two strong ones
    assert points[1.0].cost == points[1.0].baseline_cost == Decimal("5.00")


def test_routing_metrics_match_the_hand_computed_figures() -> None:
    metrics = routing_metrics(sweep(TABLE), weak_quality=0.4, strong_quality=0.8)

    assert metrics["cpt50"] == pytest.approx(0.2)  # A alone recovers half the gap
    assert metrics["cpt80"] == pytest.approx(0.4)  # A and B recover all of it
    assert metrics["cpt50_cost"] == pytest.approx(1.05 / 5)
    assert metrics["cpt80_cost"] == pytest.approx(2.05 / 5)
    # Trapezoids of width 0.2 over PGR 0, .5, 1, .5, 1, 1: .05 + .15 + .15 + .15 + .2
    assert metrics["apgr"] == pytest.approx(0.7)
    # Quality >= 0.95 * 0.8 = 0.76 first at A+B, saving (5.00 - 2.05) / 5.00.
    assert metrics["savings_at_95"] == pytest.approx(0.59)


def test_apgr_of_a_random_like_diagonal_is_one_half() -> None:
    diagonal = [row(i / 10, 0.0, 1.0) for i in range(10)]

    assert routing_metrics(sweep(diagonal), weak_quality=0.0, strong_quality=1.0)["apgr"] == pytest.approx(0.5)


def test_apgr_anchors_a_partial_curve_at_nothing_and_everything_escalated() -> None:
    partial = sweep(TABLE, [0.3, 0.5])  # shares 0.2 (PGR 0.5) and 0.4 (PGR 1) only

    # (0, 0) → (.2, .5) → (.4, 1) → (1, 1): .05 + .15 + .6
    assert routing_metrics(partial, weak_quality=0.4, strong_quality=0.8)["apgr"] == pytest.approx(0.8)


def test_a_target_no_point_reaches_is_nan() -> None:
    (none_escalated,) = sweep(TABLE, [0.0])

    metrics = routing_metrics([none_escalated], weak_quality=0.4, strong_quality=0.8)

    assert math.isnan(metrics["cpt50"])
    assert math.isnan(metrics["savings_at_95"])


def test_scores_of_one_still_get_an_escalate_everything_point() -> None:
    points = sweep([row(1.0, 0.0, 1.0), row(0.5, 1.0, 1.0)])

    assert points[-1].threshold > 1.0
    assert points[-1].strong_share == 1.0
    assert by_share(points)[0.5].threshold == 1.0  # 1.0 itself escalates only the 0.5


def test_no_rows_no_points() -> None:
    assert sweep([]) == []


def test_threshold_for_target_picks_the_cheapest_point_meeting_the_quality() -> None:
    chosen = threshold_for_target(sweep(TABLE), min_quality=0.8)

    assert chosen is not None
    assert (chosen.threshold, chosen.cost) == (0.5, Decimal("2.05"))  # not 0.9 or 1.0, which also reach 0.8


def test_threshold_for_target_honours_every_limit_given() -> None:
    points = sweep(TABLE)

    capped = threshold_for_target(points, min_quality=0.6, max_escalation_rate=0.3)
    cheapest = threshold_for_target(points, max_escalation_rate=0.3)

    assert capped is not None and capped.threshold == 0.3
    assert cheapest is not None and cheapest.threshold == 0.0  # ties in cost go to the lower threshold


def test_threshold_for_target_checks_the_cost_per_request() -> None:
    points = sweep(TABLE)

    within = threshold_for_target(points, min_quality=0.8, max_cost_per_request=Decimal("0.45"))
    too_tight = threshold_for_target(points, min_quality=0.8, max_cost_per_request=0.40)

    assert within is not None and within.cost_per_request == Decimal("0.41")
    assert too_tight is None


def test_a_calibrated_threshold_reaches_the_target_share_of_strong_quality_at_the_lowest_cost() -> None:
    # Strong quality 0.8: 95% of it is 0.76, first reached by escalating A and B (quality 0.8).
    assert calibrate_threshold(TABLE, quality_share=0.95) == 0.5
    # 75% of it is 0.6: escalating A alone is enough.
    assert calibrate_threshold(TABLE, quality_share=0.75) == 0.3


def test_no_labelled_rows_calibrate_nothing() -> None:
    assert calibrate_threshold([], quality_share=0.95) is None
