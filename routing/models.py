"""Routing's tables: the model registry, policies, API keys and request records."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from routing.choices import (
    AttemptOutcome,
    CacheKind,
    JudgeMethod,
    LabelSource,
    OptimisationGoal,
    ProviderKind,
    RecordStatus,
    ScorerKind,
    ScorerVersionKind,
    ShadowStatus,
    TaskCategory,
)

# Money fields keep ten decimal places: 20 tokens at $0.10 per 1M tokens cost $0.000002.
NOT_NEGATIVE = [MinValueValidator(Decimal(0))]
UNIT_INTERVAL = [MinValueValidator(0.0), MaxValueValidator(1.0)]
ENV_VAR_NAME = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Give the name of an environment variable.")
SLUG = RegexValidator(r"^[a-z0-9][a-z0-9._-]*$", "Lower-case letters, digits, '.', '_' and '-'.")


class ModelEndpoint(models.Model):
    """One callable model: where it is, how to call it and what it costs."""

    name = models.CharField(max_length=100, unique=True, validators=[SLUG])
    display_name = models.CharField(max_length=200, blank=True)
    provider_kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    model_id = models.CharField(max_length=200, help_text="The model id the provider knows.")
    base_url = models.CharField(
        max_length=500, blank=True, help_text="OpenAI-compatible: base URL ending in /v1. Bedrock: region."
    )
    credentials_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[ENV_VAR_NAME],
        help_text="Name of the environment variable that holds the API key. Never the key itself.",
    )
    input_price_per_m = models.DecimalField(
        "input price per 1M tokens (USD)", max_digits=12, decimal_places=6, validators=NOT_NEGATIVE
    )
    output_price_per_m = models.DecimalField(
        "output price per 1M tokens (USD)", max_digits=12, decimal_places=6, validators=NOT_NEGATIVE
    )
    cached_input_price_per_m = models.DecimalField(
        "cached input price per 1M tokens (USD)",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=NOT_NEGATIVE,
        help_text="Empty: cached input tokens cost the input price.",
    )
    context_window = models.PositiveIntegerField(default=8192)
    typical_latency_ms = models.PositiveIntegerField(default=1000)
    quality_prior = models.FloatField(default=0.5, validators=UNIT_INTERVAL)
    max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    temperature = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    connect_timeout_s = models.FloatField(default=3.0, validators=[MinValueValidator(0.01)])
    read_timeout_s = models.FloatField(default=60.0, validators=[MinValueValidator(0.01)])
    max_retries = models.PositiveSmallIntegerField(
        default=2, help_text="Retries of a retryable error (timeout, 429, 5xx), with exponential backoff and jitter."
    )
    breaker_failure_rate = models.FloatField(
        default=0.5, validators=UNIT_INTERVAL, help_text="Failure share over the window that opens the breaker."
    )
    breaker_min_requests = models.PositiveIntegerField(
        default=10, help_text="Calls in the window before the failure share can open the breaker."
    )
    breaker_window_s = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Seconds of calls the failure share is taken over."
    )
    breaker_open_s = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="Seconds an open breaker waits before a trial call."
    )
    fallback_endpoint = models.ForeignKey(
        "self",
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Called in this endpoint's place while its breaker is open (empty: skip to the next tier).",
    )
    options = models.JSONField(default=dict, blank=True, help_text="Provider-specific settings.")
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name


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
        max_length=20, choices=OptimisationGoal.choices, default=OptimisationGoal.BALANCED
    )
    sample_rate = models.FloatField(
        default=0.0,
        validators=UNIT_INTERVAL,
        help_text="Share of requests whose prompt and answer text are kept, to train and replay scorers (0: none).",
    )
    shadow_rate = models.FloatField(
        default=0.0,
        validators=UNIT_INTERVAL,
        help_text="Share of requests answered by a cheaper tier that the strongest tier re-checks off the answer "
        "path, at extra cost (0: off).",
    )
    router_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=UNIT_INTERVAL,
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
        default=0.95, validators=UNIT_INTERVAL, help_text="Cosine similarity a semantic match needs."
    )
    semantic_multi_turn = models.BooleanField(
        default=False, help_text="Let conversations with earlier turns use the semantic cache."
    )
    semantic_verify_rate = models.FloatField(
        default=0.05,
        validators=UNIT_INTERVAL,
        help_text="Share of semantic hits re-asked to the model off the answer path, to measure false hits.",
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
        validators=UNIT_INTERVAL,
        help_text="An answer scored below this escalates to the next tier (ignored on the last).",
    )
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Token limit for this tier; empty: the endpoint's."
    )

    class Meta:
        ordering = ["policy", "position"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="policytier_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.policy} tier {self.position}: {self.endpoint}"

    def clean(self) -> None:
        if self.endpoint_id and not self.endpoint.enabled:
            raise ValidationError({"endpoint": f"Endpoint {self.endpoint} is disabled."})


class TaskRule(models.Model):
    """Prompt pattern → task category → the tier such requests start on."""

    policy = models.ForeignKey(Policy, models.CASCADE, related_name="task_rules")
    position = models.PositiveSmallIntegerField()
    category = models.CharField(max_length=30, choices=TaskCategory.choices)
    pattern = models.CharField(max_length=500, help_text="Regular expression, case-insensitive.")
    first_tier = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["policy", "position"]

    def __str__(self) -> str:
        return f"{self.category}: {self.pattern}"

    def clean(self) -> None:
        import re

        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValidationError({"pattern": f"Not a valid regular expression: {exc}"}) from exc


KEY_PREFIX = "co-"
KEY_PREFIX_LENGTH = 12


def hash_api_key(plaintext: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(plaintext.encode()).hexdigest()


class ApiKey(models.Model):
    """An app's credential for the routing API, stored only as a hash."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=KEY_PREFIX_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    policy = models.ForeignKey(Policy, models.PROTECT, related_name="api_keys")
    team = models.CharField(max_length=100)
    app = models.CharField(max_length=100)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests this key may send per minute (empty: no limit)."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompt and completion tokens this key may use per minute (empty: no limit)."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "app", "name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def generate() -> str:
        return KEY_PREFIX + secrets.token_urlsafe(32)

    def set_key(self, plaintext: str) -> None:
        self.prefix = plaintext[:KEY_PREFIX_LENGTH]
        self.key_hash = hash_api_key(plaintext)

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class RequestRecord(models.Model):
    """One routed request: who sent it, what it cost, how it was answered."""

    id = models.UUIDField(primary_key=True, help_text="The request id returned to the caller.")
    created = models.DateTimeField(db_index=True)
    api_key = models.ForeignKey(ApiKey, models.SET_NULL, null=True, blank=True, related_name="+")
    api_key_prefix = models.CharField(max_length=20, blank=True)
    team = models.CharField(max_length=100, db_index=True)
    app = models.CharField(max_length=100, db_index=True)
    end_user = models.CharField(max_length=200, blank=True, db_index=True)
    policy = models.ForeignKey(Policy, models.SET_NULL, null=True, blank=True, related_name="+")
    policy_name = models.CharField(max_length=100)
    policy_version = models.PositiveIntegerField()
    task_category = models.CharField(max_length=30)
    status = models.CharField(max_length=20, choices=RecordStatus.choices)
    final_tier = models.SmallIntegerField(null=True, blank=True)
    final_model = models.CharField(max_length=100, blank=True)
    escalations = models.PositiveSmallIntegerField(default=0)
    escalated = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    baseline_cost = models.DecimalField(
        max_digits=18,
        decimal_places=10,
        default=Decimal(0),
        help_text="What the policy's strongest tier alone would have cost for this request.",
    )
    latency_ms = models.FloatField(default=0.0)
    score = models.FloatField(null=True, blank=True)
    quality_label = models.FloatField(null=True, blank=True, validators=UNIT_INTERVAL)
    error = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    cache = models.CharField(max_length=10, choices=CacheKind.choices, blank=True, default=CacheKind.NONE)
    cost_avoided = models.DecimalField(
        max_digits=18,
        decimal_places=10,
        default=Decimal(0),
        help_text="A cache hit: what the cached answer cost when it was first routed.",
    )
    streamed = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["policy", "created"])]

    def __str__(self) -> str:
        return str(self.id)


class RequestAttempt(models.Model):
    """One call to one tier within a routed request."""

    record = models.ForeignKey(RequestRecord, models.CASCADE, related_name="attempts")
    position = models.PositiveSmallIntegerField(help_text="Order of the attempt within the request.")
    tier = models.PositiveSmallIntegerField()
    endpoint = models.ForeignKey(ModelEndpoint, models.SET_NULL, null=True, blank=True, related_name="+")
    model = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=AttemptOutcome.choices)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    price_version = models.PositiveIntegerField(default=0, help_text="The price-book entry the cost used.")
    latency_ms = models.FloatField(default=0.0)
    score = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_kind = models.CharField(max_length=30, blank=True)
    quality_label = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["record", "position"]
        constraints = [
            models.UniqueConstraint(fields=["record", "position"], name="requestattempt_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.record_id} #{self.position} {self.model} {self.outcome}"


class ConfigState(models.Model):
    """A single row whose counter moves whenever routing configuration changes.

    Embedded mode's cross-process invalidation signal; with Redis the counter lives there.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"config v{self.version}"


# --- Quality loop (issue 6) ----------------------------------------------------------------

# Sampled texts are capped: enough for any real prompt and answer to re-score, and a bound
# on what one request can add to the database.
MAX_SAMPLE_CHARS = 16_000


class RequestSample(models.Model):
    """The text of a sampled request: its last user message and the answer it returned.

    Kept only for the share of traffic a policy's `sample_rate` or `shadow_rate` asks for,
    each text capped at `MAX_SAMPLE_CHARS`: the learned scorer trains on it, shadow
    evaluation judges it and what-if replays re-score it. Nothing else stores prompt text.
    """

    record = models.OneToOneField(RequestRecord, models.CASCADE, primary_key=True, related_name="sample")
    created = models.DateTimeField(db_index=True, help_text="The record's time, for retention.")
    prompt = models.TextField()
    answer = models.TextField()
    answer_tier = models.PositiveSmallIntegerField(help_text="The tier whose answer this is.")
    finish_reason = models.CharField(max_length=30, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="The request's own token limit.")

    def __str__(self) -> str:
        return f"sample of {self.record_id}"


class QualityLabel(models.Model):
    """How good the answer a request returned was, from 0.0 (wrong) to 1.0 (right), by source.

    At most one label per source and request: a repeated label replaces the earlier one.
    """

    record = models.ForeignKey(RequestRecord, models.CASCADE, related_name="labels")
    source = models.CharField(max_length=20, choices=LabelSource.choices)
    value = models.FloatField(validators=UNIT_INTERVAL)
    comment = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["record", "source"], name="qualitylabel_unique_source"),
        ]

    def __str__(self) -> str:
        return f"{self.record_id} {self.source}={self.value:g}"


class ShadowEvaluation(models.Model):
    """A cheaper tier's answer re-checked by the strongest tier, off the answer path.

    Its cost is the shadow calls' (the reference answer and, for open-ended tasks, the
    judge prompt); it is never added to the request's cost.
    """

    record = models.OneToOneField(RequestRecord, models.CASCADE, related_name="shadow")
    status = models.CharField(max_length=20, choices=ShadowStatus.choices, default=ShadowStatus.PENDING, db_index=True)
    judge = models.CharField(max_length=20, choices=JudgeMethod.choices, blank=True)
    acceptable = models.BooleanField(null=True, blank=True)
    reference_model = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    latency_ms = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it.")
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"shadow of {self.record_id}: {self.status}"


class SemanticCacheCheck(models.Model):
    """A semantic cache hit re-asked to the model off the answer path: was the hit right?

    The share of checks that disagree is the semantic cache's measured false-hit rate.
    """

    record = models.OneToOneField(RequestRecord, models.CASCADE, related_name="semantic_check")
    policy = models.ForeignKey(Policy, models.CASCADE, related_name="+")
    similarity = models.FloatField(help_text="Cosine similarity of the prompt to the cached one.")
    agreed = models.BooleanField(
        null=True,
        help_text="Whether the fresh answer agreed with the cached one (empty: no verdict, as every tier "
        "failed or no embeddings could compare the answers).",
    )
    fresh_cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    fresh_calls = models.JSONField(
        default=list, blank=True, help_text="The re-ask's model calls, as the ledger counts them."
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        verdict = {True: "agreed", False: "false hit", None: "no verdict"}[self.agreed]
        return f"semantic check of {self.record_id}: {verdict}"


class ScorerVersion(models.Model):
    """A scorer trained on one policy's labelled requests; the active one scores its answers.

    `model` holds the trained model as `LearnedModel.to_dict()` (or `PromptRouter.to_dict()`)
    returns it; `metrics` its held-out evaluation. A new or re-activated version is a
    configuration change: every worker loads it within a second.
    """

    policy = models.ForeignKey(Policy, models.CASCADE, related_name="scorer_versions")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=ScorerVersionKind.choices, default=ScorerVersionKind.LEARNED)
    model = models.JSONField()
    metrics = models.JSONField(default=dict, blank=True)
    n_labels = models.PositiveIntegerField(help_text="Labelled requests it was trained and evaluated on.")
    trained_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=False)

    class Meta:
        ordering = ["policy", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="scorerversion_unique_version"),
            models.UniqueConstraint(
                fields=["policy", "kind"], condition=models.Q(active=True), name="scorerversion_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.policy} {self.kind} v{self.version}"
