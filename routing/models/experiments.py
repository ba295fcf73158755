"""A/B experiments: a key's or a team's traffic split among policies by weight, sticky per end user."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from routing.choices import ExperimentStatus
from routing.models.keys import ApiKey
from routing.models.policies import Policy


class Experiment(models.Model):
    """Splits the traffic of one API key, or of every key of a team, among its arms.

    An end user always lands in the same arm (a hash of the experiment and the end user);
    requests without an end user are split per request. See docs/experiments.md.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    api_key = models.ForeignKey(
        ApiKey, models.CASCADE, null=True, blank=True, related_name="experiments", help_text="The key whose traffic."
    )
    team = models.CharField(max_length=100, blank=True, help_text="Or: every key of this team.")
    status = models.CharField(max_length=10, choices=ExperimentStatus.choices, default=ExperimentStatus.RUNNING)
    min_samples = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1)],
        help_text="Requests each arm needs before the comparison calls a difference.",
    )
    winner = models.ForeignKey(
        "ExperimentArm", models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    started = models.DateTimeField(auto_now_add=True)
    ended = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-started"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if (self.api_key_id is None) == (not self.team):
            raise ValidationError("Give either an API key or a team, not both.")


class ExperimentArm(models.Model):
    """One side of an experiment: a policy (or one stored version of it) and its share of the traffic."""

    experiment = models.ForeignKey(Experiment, models.CASCADE, related_name="arms")
    name = models.CharField(max_length=50)
    policy = models.ForeignKey(Policy, models.PROTECT, related_name="experiment_arms")
    policy_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="A stored version of the policy to route with (empty: its current one)."
    )
    weight = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["experiment", "name"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "name"], name="experimentarm_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment}: {self.name}"
