"""Task categories operators define, and the ladder of tiers each one climbs on a policy."""

from __future__ import annotations

from django.db import models

from routing.models.policies import Policy
from routing.models.registry import ModelEndpoint
from routing.models.validators import FINITE_UNIT_INTERVAL, SLUG, validate_patterns

# The name migration 0002 refers to; one check for every list of patterns.
validate_regex_lines = validate_patterns


class TaskCategory(models.Model):
    """A kind of request: found by keywords, regular expressions or similar examples.

    Tried in `position` order after a policy's own task rules; the first whose keyword or
    pattern is in the prompt names it. When none does, the prompt's embedding is compared
    with every category's examples and the most similar one above its threshold wins. See
    docs/selection.md#categories.
    """

    name = models.CharField(max_length=50, unique=True, validators=[SLUG])
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=100, help_text="Lower is tried first.")
    keywords = models.TextField(blank=True, help_text="Words or phrases, one per line, matched as whole words.")
    patterns = models.TextField(
        blank=True, validators=[validate_patterns], help_text="Regular expressions, one per line, case-insensitive."
    )
    examples = models.TextField(
        blank=True, help_text="Example prompts, one per line, matched by meaning (embedding similarity)."
    )
    similarity_threshold = models.FloatField(
        default=0.6, validators=FINITE_UNIT_INTERVAL, help_text="Cosine similarity to an example that names it."
    )
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "task categories"

    def __str__(self) -> str:
        return self.name


class CategoryLadder(models.Model):
    """A policy's own ladder for one category: its requests climb these tiers, not the policy's."""

    policy = models.ForeignKey(Policy, models.CASCADE, related_name="ladders")
    category = models.ForeignKey(TaskCategory, models.CASCADE, related_name="ladders")

    class Meta:
        ordering = ["policy", "category"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "category"], name="categoryladder_unique_category"),
        ]

    def __str__(self) -> str:
        return f"{self.policy}: {self.category} ladder"


class LadderTier(models.Model):
    """One rung of a category's ladder, cheapest first."""

    ladder = models.ForeignKey(CategoryLadder, models.CASCADE, related_name="tiers")
    position = models.PositiveSmallIntegerField()
    endpoint = models.ForeignKey(ModelEndpoint, models.PROTECT, related_name="ladder_tiers")
    threshold = models.FloatField(
        default=0.7,
        validators=FINITE_UNIT_INTERVAL,
        help_text="An answer scored below this escalates to the next rung (ignored on the last).",
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Token limit for this rung; empty: the endpoint's."
    )

    class Meta:
        ordering = ["ladder", "position"]
        constraints = [
            models.UniqueConstraint(fields=["ladder", "position"], name="laddertier_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.ladder} rung {self.position}: {self.endpoint}"
