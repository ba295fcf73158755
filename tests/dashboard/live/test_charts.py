"""Figures and SLA checks from rollup points: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from dashboard.alerts import sla
from dashboard.live import charts
from dashboard.rollups.compute import WINDOWS, Point, Totals
from dashboard.rollups.sketch import sketch_of

NOW = datetime(2025, 3, 4, 10, 30, 20, tzinfo=UTC)


def point(minute: int, *, requests: int = 10, escalated: int = 2, latency: float = 300.0) -> Point:
    totals = Totals(
        requests=requests,
        escalated=escalated,
        cost=Decimal("0.01"),
        latency=sketch_of([latency] * requests),
        quality_sum=7.0,
        quality_count=8,
    )
    p = Point(NOW.replace(minute=minute, second=0), totals)
    p.tiers[(0, "cheap")] = requests - escalated
    p.tiers[(1, "strong")] = escalated
    return p


def figures(points: list[Point], budget: Decimal | None = None, targets: sla.Targets | None = None) -> dict:
    frame = charts.Frame.of(WINDOWS["1h"], NOW)
    return charts.figures(points, today=points, targets=targets or sla.Targets(), budget=budget, frame=frame)


def test_every_trace_names_the_value_it_plots_so_ticks_can_be_merged():
    values = charts.point_values(point(29))
    for figure in figures([point(29)]).values():
        for trace in figure["data"]:
            assert trace["meta"] == "today" or trace["meta"] in values


def test_a_point_holds_rates_percentiles_and_the_tier_shares():
    values = charts.point_values(point(29))

    assert values["x"] == "2025-03-04 10:29"
    assert values["escalation_rate"] == 20.0
    assert values["quality"] == 0.875
    assert values["p95"] == pytest.approx(300, rel=0.011)
    assert values["tier:0:cheap"] == 80.0 and values["tier:1:strong"] == 20.0


def test_the_time_axis_spans_the_window_up_to_the_current_minute():
    layout = figures([point(29)])["cost"]["layout"]

    assert layout["xaxis"]["range"] == ["2025-03-04 09:31", "2025-03-04 10:31"]


def test_latency_has_the_sla_lines_and_cost_today_the_budget_line():
    figs = figures([point(29)], budget=Decimal("25"), targets=sla.Targets(p95_ms=2000))

    assert [s["y0"] for s in figs["latency"]["layout"]["shapes"]] == [1000, 2000, 3000]
    assert figs["today"]["layout"]["shapes"][0]["y0"] == 25.0
    assert figs["today"]["layout"]["title"]["text"] == "Today's cumulative cost against the budget"


def test_without_a_budget_there_is_no_budget_line():
    figs = figures([point(29)])

    assert figs["today"]["layout"].get("shapes", []) == []
    assert "no budget set" in figs["today"]["layout"]["title"]["text"]


def test_today_is_a_running_total():
    assert charts.cumulative([point(10), point(11), point(12)])["y"] == [0.01, 0.02, 0.03]


def test_tiers_are_stacked_cheapest_first():
    tiers = figures([point(28), point(29)])["tiers"]

    assert [t["meta"] for t in tiers["data"]] == ["tier:0:cheap", "tier:1:strong"]
    assert tiers["layout"]["barmode"] == "stack"


def test_compliance_says_which_targets_hold_and_which_have_no_data():
    totals = Totals(
        requests=100,
        escalated=20,
        errors=1,
        cost=Decimal("0.3"),
        latency=sketch_of([200.0] * 100),
    )

    checks = {c.name: c for c in sla.compliance(sla.Targets(), totals)}

    assert checks["p99 latency"].holds is True
    assert checks["Escalation rate"].holds is False and checks["Escalation rate"].actual == "20.00 %"
    assert checks["Availability"].holds is False  # 99 % < 99.9 %
    assert checks["Cost per request"].actual == "$0.003" and checks["Cost per request"].holds is True
    assert checks["Quality"].holds is None and checks["Quality"].actual == "no data"


def test_the_windows_read_minutes_up_to_six_hours_and_hours_beyond():
    assert [(w.key, w.resolution, w.buckets) for w in WINDOWS.values()] == [
        ("1h", "minute", 60),
        ("6h", "minute", 360),
        ("24h", "hour", 24),
        ("7d", "hour", 168),
    ]
    assert WINDOWS["24h"].since(NOW) == NOW.replace(minute=0, second=0) - timedelta(hours=23)


def test_idle_buckets_leave_gaps_instead_of_lines_across_them() -> None:
    from datetime import UTC, datetime, timedelta

    from dashboard.live.charts import Frame, with_gaps
    from dashboard.rollups.compute import window_get

    now = datetime(2025, 3, 4, 10, 30, 20, tzinfo=UTC)
    frame = Frame.of(window_get("1h"), now)
    busy = [{"x": frame.buckets[10], "cost": 1.0}, {"x": frame.buckets[12], "cost": 2.0}]

    values = with_gaps(busy, frame)

    assert len(values) == 60 and [v["x"] for v in values] == list(frame.buckets)
    assert [v.get("cost") for v in values[10:13]] == [1.0, None, 2.0]
    assert frame.buckets[-1] < frame.x_range[1] and timedelta(minutes=59) == window_get("1h").step * 59
