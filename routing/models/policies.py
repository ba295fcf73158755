"""Policies: ordered tiers with thresholds, task rules, the scorer and caching."""

from __future__ import annotations

from typing import Any

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from routing.choices import EndpointKind, Extractor, OptimisationGoal, ScorerKind, UnknownFields
from routing.models.registry import ModelEndpoint
from routing.models.validators import FINITE_UNIT_INTERVAL, SLUG, TEMPERATURE, validate_patterns

# More cheap samples than this cost more than they tell.
MAX_SAMPLES = 10


class Policy(models.Model):
    """An ordered cascade of tiers with thresholds, task rules and limits; versioned."""

    name = models.CharField(max_length=100, unique=True, validators=[SLUG], help_text="Apps pass this as `model`.")
    description = models.TextField(blank=True)
    scorer = models.CharField(max_length=20, choices=ScorerKind.choices, default=ScorerKind.HEURISTIC)
    max_escalations = models.PositiveSmallIntegerField(default=1)
    short_prompt_tokens = models.PositiveIntegerField(
        default=0, help_text="Prompts under this many tokens start on the cheapest tier (0: off)."
    )
    optimisation_goal = models.CharField(
        max_length=20,
        choices=OptimisationGoal.choices,
        default=OptimisationGoal.BALANCED,
        help_text="Which weights rank the tiers a request may start on (see Goal weights).",
    )
    latency_budget_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Tiers whose measured p95 latency is over this are skipped (empty: no budget).",
    )
    sample_rate = models.FloatField(
        default=0.0,
        validators=FINITE_UNIT_INTERVAL,
        help_text="Share of requests whose prompt and answer text are kept, to train and replay scorers (0: none).",
    )
    shadow_rate = models.FloatField(
        default=0.0,
        validators=FINITE_UNIT_INTERVAL,
        help_text="Share of requests answered by a cheaper tier that the strongest tier re-checks off the answer "
        "path, at extra cost (0: off).",
    )
    router_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=FINITE_UNIT_INTERVAL,
        help_text="With an active prompt-only router: requests it rates at least this likely to need the "
        "strongest tier start there, the rest on the cheapest (empty: the task rules choose).",
    )
    cache_ttl_s = models.PositiveIntegerField(
        default=3600, help_text="Seconds an exact-match answer is served from the cache (0: no caching)."
    )
    semantic_cache = models.BooleanField(
        default=False, help_text="Also answer from the nearest earlier prompt by embedding similarity."
    )
    semantic_threshold = models.FloatField(
        default=0.95, validators=FINITE_UNIT_INTERVAL, help_text="Cosine similarity a semantic match needs."
    )
    semantic_multi_turn = models.BooleanField(
        default=False, help_text="Let conversations with earlier turns use the semantic cache."
    )
    semantic_verify_rate = models.FloatField(
        default=0.05,
        validators=FINITE_UNIT_INTERVAL,
        help_text="Share of semantic hits re-asked to the model off the answer path, to measure false hits.",
    )
    # The request log (docs/request-log.md): off by default, since prompts may hold personal data.
    store_text = models.BooleanField(
        default=False, help_text="Keep every request's prompt and each tier's answer, for the request log."
    )
    text_retention_days = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Days a kept prompt and its answers are stored."
    )
    text_redact_patterns = models.TextField(
        blank=True,
        validators=[validate_patterns],
        help_text="Regular expressions, one per line: what they match is replaced by [redacted] before text is kept.",
    )
    # The chat API's edges (docs/api.md).
    unknown_fields = models.CharField(
        max_length=10,
        choices=UnknownFields.choices,
        default=UnknownFields.REFUSE,
        help_text="Request fields the API does not know: refuse them (400), or pass them to OpenAI-compatible "
        "providers as sent.",
    )
    tools_first_tier = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Requests with tools start on at least this tier (empty: wherever the task rules say).",
    )
    embeddings_endpoint = models.ForeignKey(
        ModelEndpoint,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="embeddings_of_policies",
        limit_choices_to={"kind": EndpointKind.EMBEDDINGS},
        help_text="Where /v1/embeddings requests through this policy go (empty: the policy serves none).",
    )
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Every save of an existing policy is a new version (records name the one they ran)."""
        adding = self._state.adding
        if not adding:
            self.version = models.F("version") + 1
        super().save(*args, **kwargs)
        if not adding:
            self.refresh_from_db(fields=["version"])


class PolicyTier(models.Model):
    """One rung of a policy's cascade, cheapest first."""

    policy = models.ForeignKey(Policy, models.CASCADE, related_name="tiers")
    position = models.PositiveSmallIntegerField()
    endpoint = models.ForeignKey(ModelEndpoint, models.PROTECT, related_name="tiers")
    threshold = models.FloatField(
        default=0.7,
        validators=FINITE_UNIT_INTERVAL,
        help_text="An answer scored below this escalates to the next tier (ignored on the last).",
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Token limit for this tier; empty: the endpoint's."
    )
    # The quality gate (see docs/quality.md): every extra call is paid for and recorded.
    samples = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_SAMPLES)],
        help_text="Answers drawn from this tier in all; above 1 the score is their agreement (consistency).",
    )
    sample_temperature = models.FloatField(
        default=0.7,
        validators=TEMPERATURE,
        help_text="Temperature of the extra samples (the first answer keeps the request's).",
    )
    extractor = models.CharField(
        max_length=16,
        choices=Extractor.choices,
        default=Extractor.AUTO,
        help_text="How answers are compared for agreement.",
    )
    peers = models.ManyToManyField(
        ModelEndpoint,
        blank=True,
        related_name="peer_of_tiers",
        help_text="Other cheap models asked the same; their agreement with this tier's answer scores it.",
    )
    judge = models.ForeignKey(
        ModelEndpoint,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="judge_of_tiers",
        help_text="A model that grades this tier's answer (yes/no) before it is accepted.",
    )

    class Meta:
        ordering = ["policy", "position"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="policytier_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.policy} tier {self.position}: {self.endpoint}"


class TaskRule(models.Model):
    """Prompt pattern → task category → the tier such requests start on."""

    policy = models.ForeignKey(Policy, models.CASCADE, related_name="task_rules")
    position = models.PositiveSmallIntegerField()
    # A task category's name (routing.models.categories.TaskCategory): operators add their own.
    category = models.CharField(max_length=50)
    pattern = models.CharField(max_length=500, help_text="Regular expression, case-insensitive.")
    first_tier = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["policy", "position"]

    def __str__(self) -> str:
        return f"{self.category}: {self.pattern}"
