"""The quality loop's tables: sampled texts, labels, shadow evaluations, scorer versions."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils import timezone

from routing.choices import JudgeMethod, LabelSource, ScorerVersionKind, ShadowStatus
from routing.models.policies import Policy
from routing.models.records import RequestRecord
from routing.models.validators import UNIT_INTERVAL

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
    signals = models.JSONField(
        default=dict, blank=True, help_text="What the quality gate measured of the answer (agreement, judge, logprobs)."
    )

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
