"""What selection weighs: the goal profiles operators edit, and the measured figures of each endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models

from routing.choices import OptimisationGoal
from routing.models.registry import ModelEndpoint
from routing.models.validators import FINITE_UNIT_INTERVAL, finite

NOT_NEGATIVE_FLOAT: list[Callable[[Any], None]] = [finite, MinValueValidator(0.0)]


class GoalWeights(models.Model):
    """How much cost, quality, latency and task fit count when a policy with this goal ranks its tiers.

    One row per goal, seeded with defaults (see docs/selection.md); the weights need not add up
    to 1, only their ratios matter.
    """

    goal = models.CharField(max_length=20, choices=OptimisationGoal.choices, unique=True)
    cost = models.FloatField(default=1.0, validators=NOT_NEGATIVE_FLOAT)
    quality = models.FloatField(default=1.0, validators=NOT_NEGATIVE_FLOAT)
    latency = models.FloatField(default=1.0, validators=NOT_NEGATIVE_FLOAT)
    fit = models.FloatField("task fit", default=1.0, validators=NOT_NEGATIVE_FLOAT)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["goal"]
        verbose_name = "goal weights"
        verbose_name_plural = "goal weights"

    def __str__(self) -> str:
        return f"{self.goal}: cost {self.cost}, quality {self.quality}, latency {self.latency}, fit {self.fit}"


class EndpointMeasure(models.Model):
    """What traffic measured about an endpoint: its p95 latency, and its quality per task category.

    Written by the dashboard's `measures_refresh` from the rollups and the labelled records;
    the config snapshot carries it to the engine as data. `category` "" holds the latency
    and the quality over every category.
    """

    endpoint = models.ForeignKey(ModelEndpoint, models.CASCADE, related_name="measures")
    category = models.CharField(max_length=50, blank=True)
    p95_latency_ms = models.FloatField(null=True, blank=True)
    latency_samples = models.PositiveIntegerField(default=0)
    quality = models.FloatField(null=True, blank=True, validators=FINITE_UNIT_INTERVAL)
    quality_samples = models.PositiveIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["endpoint", "category"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "category"], name="endpointmeasure_unique_category"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.category or 'all'}"
