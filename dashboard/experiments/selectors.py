"""The comparison of an experiment's arms: figures with 95% confidence intervals.

Cost per request, latency and quality (from labels) are means with a normal interval;
escalation and error shares are proportions with a Wilson interval. Below the experiment's
minimum sample an arm's figures are shown but not compared. See docs/experiments.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from routing.choices import RecordStatus
from routing.models import Experiment, ExperimentArm, RequestRecord

Z95 = 1.96


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure and its 95% interval; None when there is nothing to estimate from."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0


@dataclass(frozen=True, slots=True)
class ArmFigures:
    arm: ExperimentArm
    requests: int
    cost_per_request: Estimate
    escalation_share: Estimate
    error_share: Estimate
    quality: Estimate
    latency_ms: Estimate
    enough: bool  # at least the experiment's minimum sample

    @property
    def total_cost(self) -> Decimal:
        return Decimal(str(self.cost_per_request.value or 0)) * self.requests


def experiment_comparison(*, experiment: Experiment) -> list[ArmFigures]:
    """Each arm's figures over the records it routed (one query per arm)."""
    return [arm_figures(arm, experiment.min_samples) for arm in experiment.arms.select_related("policy")]


def arm_figures(arm: ExperimentArm, min_samples: int) -> ArmFigures:
    rows = list(
        RequestRecord.objects.filter(experiment_arm=arm, cache="").values_list(
            "cost", "escalated", "status", "quality_label", "latency_ms"
        )
    )
    answered = [r for r in rows if r[2] == RecordStatus.ANSWERED]
    return ArmFigures(
        arm=arm,
        requests=len(rows),
        # Money stays Decimal until here: an interval is a statistic, not an amount billed.
        cost_per_request=mean_interval([float(r[0]) for r in rows]),
        escalation_share=wilson(sum(1 for r in answered if r[1]), len(answered)),
        error_share=wilson(sum(1 for r in rows if r[2] == RecordStatus.FAILED), len(rows)),
        quality=mean_interval([r[3] for r in rows if r[3] is not None]),
        latency_ms=mean_interval([r[4] for r in answered]),
        enough=len(rows) >= min_samples,
    )


def mean_interval(values: list[float]) -> Estimate:
    n = len(values)
    if n == 0:
        return Estimate(None)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, None, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = Z95 * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def wilson(successes: int, n: int) -> Estimate:
    """The share and its Wilson score interval (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return Estimate(None)
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)
