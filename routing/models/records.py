"""Request records: one per routed request, with one row per tier attempt."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from routing.choices import AttemptOutcome, CacheKind, RecordStatus
from routing.models.keys import ApiKey
from routing.models.policies import Policy
from routing.models.registry import ModelEndpoint
from routing.models.validators import UNIT_INTERVAL


class RequestRecord(models.Model):
    """One routed request: who sent it, what it cost, how it was answered."""

    id = models.UUIDField(primary_key=True, help_text="The request id returned to the caller.")
    created = models.DateTimeField(db_index=True)
    api_key = models.ForeignKey(ApiKey, models.SET_NULL, null=True, blank=True, related_name="+")
    api_key_prefix = models.CharField(max_length=20, blank=True)
    # Indexed with `created` below: the request log filters on them, newest first.
    team = models.CharField(max_length=100)
    app = models.CharField(max_length=100)
    end_user = models.CharField(max_length=200, blank=True)
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
    selection = models.JSONField(
        default=dict, blank=True, help_text="Why the request started where it did: constraints, weights, skips."
    )
    experiment_arm = models.ForeignKey(
        "routing.ExperimentArm", models.SET_NULL, null=True, blank=True, related_name="records"
    )

    class Meta:
        ordering = ["-created"]
        # The request log reads one filter's rows newest first, in (created, id) order so a
        # page needs no sort (docs/request-log.md).
        indexes = [
            models.Index(fields=["policy", "created"]),
            models.Index(fields=["team", "created", "id"], name="record_team_created"),
            models.Index(fields=["app", "created", "id"], name="record_app_created"),
            models.Index(fields=["end_user", "created", "id"], name="record_end_user_created"),
            models.Index(fields=["api_key", "created", "id"], name="record_key_created"),
            models.Index(fields=["final_model", "created", "id"], name="record_model_created"),
            models.Index(fields=["status", "created", "id"], name="record_status_created"),
            models.Index(fields=["created", "id"], condition=models.Q(escalated=True), name="record_escalated_created"),
            models.Index(fields=["created", "id"], condition=~models.Q(cache=""), name="record_cached_created"),
        ]

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


class RecordDeadLetter(models.Model):
    """A request record the flusher could not store, kept with why, so it blocks no other.

    Written by `routing.records.flush` in place of the record; the payload is kept as
    ASCII JSON (lone surrogates and NUL escaped) so any database takes it. Reconciliation
    reports the ones in its window. See docs/records.md.
    """

    entry = models.CharField(max_length=200, unique=True, help_text="The record's handle in its buffer.")
    record_id = models.CharField(max_length=64, blank=True, db_index=True)
    record_created = models.DateTimeField(null=True, blank=True, db_index=True)
    dead_lettered = models.DateTimeField(auto_now_add=True)
    error = models.TextField()
    payload = models.TextField(help_text="The record as the hot path made it durable (JSON).")

    class Meta:
        ordering = ["-dead_lettered"]

    def __str__(self) -> str:
        return f"dead letter {self.record_id or self.entry}"


class RequestText(models.Model):
    """The prompt and each tier's answer of one request, for a policy that keeps text.

    Written by the flusher beside the record, already redacted (`routing.records.texts`),
    and deleted by `request_texts_purge` once the policy's retention has passed. A table of
    its own keeps the record rows narrow and the purge a plain range delete.
    """

    record = models.OneToOneField(RequestRecord, models.CASCADE, primary_key=True, related_name="text")
    created = models.DateTimeField()
    policy_ref = models.BigIntegerField(
        null=True, help_text="The policy whose retention applies (kept when the policy is deleted)."
    )
    prompt = models.TextField()
    answers = models.JSONField(default=list, help_text="One {position, text} per attempt that answered.")

    class Meta:
        indexes = [models.Index(fields=["policy_ref", "created"], name="requesttext_policy_created")]

    def __str__(self) -> str:
        return f"text of {self.record_id}"
