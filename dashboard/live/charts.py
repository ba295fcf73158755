"""Plotly figures from rollup points: pure functions, no database.

Each trace carries, in its `meta`, the key of the value it plots in `point_values()`.
The page draws the figures built here, and the live pushes send `point_values()` of the
buckets that changed; `static/dashboard/live.js` puts each value into the trace whose
`meta` names it, so the server decides what a chart shows and the browser only merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go
from django.utils import timezone

from common.charts import chart_text
from dashboard.alerts.sla import Targets
from dashboard.rollups.compute import Point, Window, bucket_start, local_day_start

Figure = dict[str, Any]
TIER_PREFIX = "tier:"
REFUSED_PREFIX = "refused:"
COLOURS = {
    "cost": "#2e90fa",
    "baseline": "#98a2b3",
    "budget": "#d92d20",
    "p50": "#12b76a",
    "p95": "#f79009",
    "p99": "#d92d20",
    "target": "#667085",
    "marker": "#6941c6",
}
# By tier number, so a tier keeps its colour whichever tiers answered in the window
# (static/dashboard/live.js picks the same way).
TIER_COLOURS = ["#53b1fd", "#7a5af8", "#ee46bc", "#f79009", "#15b79e", "#667085"]
REFUSED_COLOURS = ["#f79009", "#dc6803", "#b54708", "#93370d", "#7a2e0e"]
HEIGHT = 260
BAR_FILL = 0.8  # of a bucket's width


@dataclass(frozen=True)
class Frame:
    """The time axis of a page's charts: the window's buckets, and today's for the running total."""

    step: str  # "minute" or "hour"
    step_ms: int
    x_range: tuple[str, str]
    today_range: tuple[str, str]
    buckets: tuple[str, ...] = ()  # every bucket of the window, oldest first

    @classmethod
    def of(cls, window: Window, now: datetime) -> Frame:
        end = bucket_start(now, window.resolution) + window.step
        midnight = local_day_start(now)
        since = window.since(now)
        return cls(
            step=str(window.resolution),
            step_ms=int(window.step.total_seconds() * 1000),
            x_range=(x_label(since), x_label(end)),
            today_range=(x_label(midnight), x_label(midnight + timedelta(days=1))),
            buckets=tuple(x_label(since + window.step * i) for i in range(window.buckets)),
        )


@dataclass(frozen=True)
class Marker:
    """A configuration change to show on every chart: when, and what changed."""

    at: datetime
    text: str


def with_gaps(values: Sequence[dict[str, Any]], frame: Frame) -> list[dict[str, Any]]:
    """`values` with an empty entry for every idle bucket, so lines break there instead of
    being drawn straight across (Plotly leaves a gap at a null)."""
    by_x = {v["x"]: v for v in values}
    filled = [by_x.pop(x) if x in by_x else {"x": x} for x in frame.buckets]
    return sorted(filled + list(by_x.values()), key=lambda v: v["x"])


def marker_shapes(markers: Sequence[Marker]) -> list[dict[str, Any]]:
    """A dotted vertical line, labelled at the top, for each change."""
    return [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": x_label(m.at),
            "x1": x_label(m.at),
            "y0": 0,
            "y1": 1,
            "line": {"color": COLOURS["marker"], "dash": "dot", "width": 1},
            "label": {
                "text": chart_text(m.text),
                "textposition": "end",
                "font": {"size": 9, "color": COLOURS["marker"]},
            },
        }
        for m in markers
    ]


def x_label(bucket: datetime) -> str:
    """A bucket as Plotly reads dates: local time (TIME_ZONE), no offset."""
    return timezone.localtime(bucket).strftime("%Y-%m-%d %H:%M")


def _round(value: float | Decimal | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def tier_key(tier: int, model: str) -> str:
    return f"{TIER_PREFIX}{tier}:{model}"


def point_values(point: Point) -> dict[str, Any]:
    """Every value the charts plot for one bucket, keyed as the traces' `meta`."""
    t = point.totals
    answered = sum(point.tiers.values())
    values: dict[str, Any] = {
        "x": x_label(point.bucket),
        "requests": t.requests,
        "cost": _round(t.cost, 8),
        "baseline_cost": _round(t.baseline_cost, 8),
        "escalation_rate": _round(t.escalation_rate, 2),
        "cache_hit_rate": _round(t.cache_hit_rate, 2),
        "error_rate": _round(t.error_rate, 2),
        "failed_rate": _round(t.failed_rate, 2),
        "refused": t.refused,
        "p50": _round(t.quantile(0.50), 1),
        "p95": _round(t.quantile(0.95), 1),
        "p99": _round(t.quantile(0.99), 1),
        "quality": _round(t.mean_quality, 3),
        "score": _round(t.mean_score, 3),
    }
    for (tier, model), requests in point.tiers.items():
        values[tier_key(tier, model)] = round(100.0 * requests / answered, 2) if answered else None
    for reason in t.refusals:
        values[REFUSED_PREFIX + reason] = _round(t.refusal_rate(reason), 2)
    return values


def tier_colour(tier: int) -> str:
    return TIER_COLOURS[tier % len(TIER_COLOURS)]


def cumulative(points: Sequence[Point]) -> dict[str, list[Any]]:
    """Today's running total of cost, bucket by bucket."""
    xs, ys, total = [], [], Decimal(0)
    for point in points:
        total += point.totals.cost
        xs.append(x_label(point.bucket))
        ys.append(round(float(total), 6))
    return {"x": xs, "y": ys}


def _layout(title: str, y_title: str, x_range: tuple[str, str], **extra: Any) -> go.Layout:
    # An explicit range: one bucket of data would otherwise zoom the axis to milliseconds.
    return go.Layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        height=HEIGHT,
        margin={"l": 56, "r": 16, "t": 36, "b": 36},
        template="none",
        xaxis={"type": "date", "gridcolor": "#eaecf0", "range": list(x_range)},
        yaxis={"title": {"text": y_title}, "gridcolor": "#eaecf0", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.2},
        showlegend=True,
        uirevision="keep",  # live updates keep the operator's zoom
        **extra,
    )


def _line(values: Sequence[dict[str, Any]], key: str, name: str, colour: str | None = None, **extra: Any) -> go.Scatter:
    return go.Scatter(
        x=[v["x"] for v in values],
        y=[v.get(key) for v in values],
        name=name,
        meta=key,
        mode="lines+markers",
        marker={"size": 4},
        line={"color": colour, "width": 2} if colour else {"width": 2},
        **extra,
    )


def _target(y: float, label: str) -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "y0": y,
        "y1": y,
        "line": {"color": COLOURS["target"], "dash": "dash", "width": 1},
        # At the left: the newest data, which matters most, is at the right.
        # Under the line: a target at the top of the axis would cut off a label above it.
        "label": {
            "text": label,
            "textposition": "start",
            "yanchor": "top",
            "font": {"size": 10, "color": COLOURS["target"]},
        },
    }


def _figure(data: list[Any], layout: go.Layout) -> Figure:
    figure: Figure = go.Figure(data=data, layout=layout).to_plotly_json()
    return figure


def cost_figure(values: Sequence[dict[str, Any]], frame: Frame) -> Figure:
    data: list[Any] = [
        go.Bar(
            x=[v["x"] for v in values],
            y=[v.get("cost") for v in values],
            name="cost",
            meta="cost",
            width=frame.step_ms * BAR_FILL,
            marker={"color": COLOURS["cost"]},
        ),
        _line(values, "baseline_cost", "baseline (strongest tier only)", COLOURS["baseline"]),
    ]
    return _figure(data, _layout(f"Cost per {frame.step}", "USD", frame.x_range))


def today_figure(today: dict[str, list[Any]], budget: Decimal | None, frame: Frame) -> Figure:
    trace = go.Scatter(
        x=today["x"], y=today["y"], name="spent today", meta="today", mode="lines+markers", fill="tozeroy"
    )
    shapes = [_target(float(budget), f"budget ${budget:,.2f}")] if budget else []
    title = "Today's cumulative cost" + (" against the budget" if budget else " (no budget set)")
    return _figure([trace], _layout(title, "USD", frame.today_range, shapes=shapes))


def escalation_figure(values: Sequence[dict[str, Any]], targets: Targets, frame: Frame) -> Figure:
    trace = _line(values, "escalation_rate", "escalated", "#7a5af8")
    shapes = [_target(targets.max_escalation_rate_pct, f"SLA ≤ {targets.max_escalation_rate_pct:g} %")]
    return _figure([trace], _layout("Escalation rate", "% of requests", frame.x_range, shapes=shapes))


def tiers_figure(values: Sequence[dict[str, Any]], frame: Frame) -> Figure:
    keys = sorted({k for v in values for k in v if k.startswith(TIER_PREFIX)}, key=lambda k: (int(k.split(":")[1]), k))
    data = [
        go.Bar(
            x=[v["x"] for v in values],
            y=[v.get(key) for v in values],
            name=f"tier {key.split(':')[1]} · {chart_text(key.split(':', 2)[2])}",
            meta=key,
            width=frame.step_ms * BAR_FILL,
            marker={"color": tier_colour(int(key.split(":")[1]))},
        )
        for key in keys
    ]
    return _figure(data, _layout("Tier mix (who answered)", "% of answers", frame.x_range, barmode="stack"))


def cache_figure(values: Sequence[dict[str, Any]], frame: Frame) -> Figure:
    trace = _line(values, "cache_hit_rate", "cache hits", "#15b79e")
    return _figure([trace], _layout("Cache hit rate", "% of requests", frame.x_range))


def latency_figure(values: Sequence[dict[str, Any]], targets: Targets, frame: Frame) -> Figure:
    data = [_line(values, key, key, COLOURS[key]) for key in ("p50", "p95", "p99")]
    shapes = [
        _target(targets.p50_ms, f"SLA p50 {targets.p50_ms:,.0f} ms"),
        _target(targets.p95_ms, f"SLA p95 {targets.p95_ms:,.0f} ms"),
        _target(targets.p99_ms, f"SLA p99 {targets.p99_ms:,.0f} ms"),
    ]
    return _figure(data, _layout("Latency", "ms", frame.x_range, shapes=shapes))


def quality_figure(values: Sequence[dict[str, Any]], targets: Targets, frame: Frame) -> Figure:
    data = [
        _line(values, "quality", "quality (labelled)", "#12b76a"),
        _line(values, "score", "scorer confidence", "#98a2b3"),
    ]
    shapes = [_target(targets.min_quality, f"SLA ≥ {targets.min_quality:.2f}")]
    layout = _layout("Quality", "0–1", frame.x_range, shapes=shapes)
    layout.yaxis.range = [0, 1.05]
    return _figure(data, layout)


def errors_figure(values: Sequence[dict[str, Any]], targets: Targets, frame: Frame) -> Figure:
    """Routed requests every tier failed, and refused ones by reason (a budget, a rate limit, bad input)."""
    reasons = sorted({k for v in values for k in v if k.startswith(REFUSED_PREFIX)})
    data = [_line(values, "error_rate", "every tier failed", "#d92d20")]
    data += [
        _line(values, key, f"refused: {chart_text(key.removeprefix(REFUSED_PREFIX))}", colour)
        for key, colour in zip(reasons, _cycle(REFUSED_COLOURS, len(reasons)), strict=True)
    ]
    budget = round(100.0 - targets.min_availability_pct, 4)
    shapes = [_target(budget, f"SLA availability {targets.min_availability_pct:g} %")]
    return _figure(data, _layout("Failed and refused requests", "% of requests", frame.x_range, shapes=shapes))


def _cycle(colours: Sequence[str], n: int) -> list[str]:
    return [colours[i % len(colours)] for i in range(n)]


def figures(
    points: Sequence[Point],
    *,
    today: Sequence[Point],
    targets: Targets,
    budget: Decimal | None,
    frame: Frame,
    markers: Sequence[Marker] = (),
) -> dict[str, Figure]:
    """Every chart of a dashboard page, keyed by the id of the element that shows it.

    Idle buckets are gaps in the lines; `markers` (policy, threshold and experiment
    changes) are drawn on every chart.
    """
    values = with_gaps([point_values(p) for p in points], frame)
    figures = {
        "cost": cost_figure(values, frame),
        "today": today_figure(cumulative(today), budget, frame),
        "escalation": escalation_figure(values, targets, frame),
        "tiers": tiers_figure(values, frame),
        "cache": cache_figure(values, frame),
        "latency": latency_figure(values, targets, frame),
        "quality": quality_figure(values, targets, frame),
        "errors": errors_figure(values, targets, frame),
    }
    shapes = marker_shapes(markers)
    for figure in figures.values():
        figure["layout"]["shapes"] = [*figure["layout"].get("shapes", []), *shapes]
    return figures
