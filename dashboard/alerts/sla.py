"""SLA targets against what the rollups measured: one check per target, pure functions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common import numbers
from dashboard.rollups.compute import Totals


@dataclass(frozen=True)
class Targets:
    """A policy's service levels (MangaAssist's by default)."""

    p50_ms: float = 1000
    p95_ms: float = 2500
    p99_ms: float = 3000
    min_quality: float = 0.90
    max_cost_per_request: Decimal = Decimal("0.006")
    min_availability_pct: float = 99.9
    max_escalation_rate_pct: float = 15.0

    @classmethod
    def from_row(cls, row: Any) -> Targets:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Check:
    """One target, the measured value and whether the target holds (None: no data)."""

    name: str
    target: str
    actual: str
    holds: bool | None


def _check(name: str, target: str, actual: float | Decimal | None, fmt: Callable[[Any], str], ok: bool) -> Check:
    if actual is None:
        return Check(name, target, "no data", None)
    return Check(name, target, fmt(actual), ok)


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _pct(value: float) -> str:
    # Two places: availability targets such as 99.9 % need the second to be judged.
    return numbers.percent(value, places=2)


def _usd(value: Decimal) -> str:
    return numbers.usd(value)


def compliance(targets: Targets, totals: Totals) -> list[Check]:
    """Every target of `targets` against the measured `totals`, in the dashboard's order."""
    p50, p95, p99 = totals.quantile(0.50), totals.quantile(0.95), totals.quantile(0.99)
    quality, cost = totals.mean_quality, totals.cost_per_request
    availability, escalation = totals.availability, totals.escalation_rate
    t = targets
    return [
        _check("p50 latency", f"≤ {_ms(t.p50_ms)}", p50, _ms, p50 is not None and p50 <= t.p50_ms),
        _check("p95 latency", f"≤ {_ms(t.p95_ms)}", p95, _ms, p95 is not None and p95 <= t.p95_ms),
        _check("p99 latency", f"≤ {_ms(t.p99_ms)}", p99, _ms, p99 is not None and p99 <= t.p99_ms),
        _check("Quality", f"≥ {t.min_quality:.2f}", quality, "{:.3f}".format, (quality or 0) >= t.min_quality),
        _check(
            "Cost per request",
            f"≤ {_usd(t.max_cost_per_request)}",
            cost,
            _usd,
            cost is not None and cost <= t.max_cost_per_request,
        ),
        _check(
            "Availability",
            f"≥ {t.min_availability_pct:g} %",
            availability,
            _pct,
            (availability or 0) >= t.min_availability_pct,
        ),
        _check(
            "Escalation rate",
            f"≤ {t.max_escalation_rate_pct:g} %",
            escalation,
            _pct,
            escalation is not None and escalation <= t.max_escalation_rate_pct,
        ),
    ]
