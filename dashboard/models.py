"""Dashboard's tables: rollups, SLA targets, alert rules, events and deliveries, auto-tuning.

Pages, APIs and alert rules read rollups, never raw request records: a rollup row holds
the counters of one minute (or hour) for one policy, tier and model, plus a latency
sketch from which p50/p95/p99 can be read after merging any number of rows.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models
from django.db.models.functions import Coalesce

from common.outbound import validate_outbound_url
from dashboard.choices import (
    Comparator,
    DeliveryChannel,
    DeliveryStatus,
    EventState,
    Metric,
    NoticeKind,
    ProposalMethod,
    ProposalStatus,
    Resolution,
    SpendKind,
    TuningMode,
    TuningTarget,
)
from routing.models import Policy, ScorerVersion

PERCENT = [MinValueValidator(0.0), MaxValueValidator(100.0)]
UNIT_INTERVAL = [MinValueValidator(0.0), MaxValueValidator(1.0)]
# A week of minutes: longer windows belong on the hour rollups, which alert rules do not read.
MAX_WINDOW_MINUTES = 7 * 24 * 60


def validate_email_list(value: str) -> None:
    for address in (a.strip() for a in value.split(",")):
        if address:
            try:
                validate_email(address)
            except ValidationError as exc:
                raise ValidationError(f"Not an e-mail address: {address}") from exc


def money_field(**kwargs: object) -> models.DecimalField[Decimal, Decimal]:
    # Ten decimal places, like request records: a cheap request costs millionths of a dollar.
    return models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0), **kwargs)  # type: ignore[arg-type]


class Rollup(models.Model):
    """Counters for one minute or hour of one policy's requests answered by one tier and model.

    Failed requests (every tier failed) have tier -1 and no model; refused requests (a budget,
    a rate limit, bad input) tier -2 and their reason as the model. Written only by
    `dashboard.rollups.services.rollups_record`, inside the flusher's transaction.
    """

    resolution = models.CharField(max_length=6, choices=Resolution.choices)
    bucket = models.DateTimeField(help_text="Start of the minute or hour.")
    # No database constraint: the history of a deleted policy stays on the charts.
    policy = models.ForeignKey(Policy, models.DO_NOTHING, db_constraint=False, related_name="+")
    policy_name = models.CharField(max_length=100)
    tier = models.SmallIntegerField(
        help_text="The tier that answered; -1 when every tier failed, -2 for refused requests."
    )
    model = models.CharField(
        max_length=100, blank=True, help_text="The endpoint that answered; for refused requests, the reason."
    )
    requests = models.PositiveIntegerField(default=0)
    escalated = models.PositiveIntegerField(default=0, help_text="Requests answered above their first tier.")
    escalations = models.PositiveIntegerField(default=0, help_text="Answers judged too weak, summed.")
    errors = models.PositiveIntegerField(default=0, help_text="Requests every tier failed.")
    refused = models.PositiveIntegerField(
        default=0, help_text="Requests turned away before routing (tier -2; `model` holds the reason)."
    )
    cache_hits = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost = money_field()
    baseline_cost = money_field(help_text="What the requests would have cost on the policy's strongest tier.")
    score_sum = models.FloatField(default=0.0)
    score_count = models.PositiveIntegerField(default=0)
    quality_sum = models.FloatField(default=0.0)
    quality_count = models.PositiveIntegerField(default=0, help_text="Requests with a quality label.")
    latency = models.JSONField(default=dict, help_text="Latency sketch: {bin index: count} (dashboard.rollups.sketch).")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["resolution", "bucket", "policy_id", "tier", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["resolution", "bucket", "policy", "tier", "model"], name="rollup_unique_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resolution} {self.bucket:%Y-%m-%d %H:%M} {self.policy_name} tier {self.tier} {self.model}"


class SpendRollup(models.Model):
    """A day's spend by one app or end user, within one policy or across all of them."""

    day = models.DateField(help_text="The local date (TIME_ZONE).")
    scope = models.PositiveBigIntegerField(help_text="The policy's id, or 0 for every policy.")
    kind = models.CharField(max_length=10, choices=SpendKind.choices)
    name = models.CharField(max_length=200, help_text="team/app, or the end user the app named.")
    requests = models.PositiveIntegerField(default=0)
    cost = money_field()
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["day", "scope", "kind", "-cost"]
        constraints = [
            models.UniqueConstraint(fields=["day", "scope", "kind", "name"], name="spendrollup_unique_key"),
        ]
        # Top spenders of a day are an index range, however many there are.
        indexes = [models.Index(fields=["day", "scope", "kind", "cost"], name="spendrollup_top")]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} {self.name}: ${self.cost}"


class SlaTarget(models.Model):
    """Service levels a policy promises; the row without a policy is the default for all.

    Defaults are MangaAssist's: 1000/2500/3000 ms, quality 0.90, $0.006 per request,
    99.9 % availability and at most 15 % escalations.
    """

    policy = models.OneToOneField(
        Policy,
        models.CASCADE,
        null=True,
        blank=True,
        related_name="sla_target",
        help_text="Empty: the default for every policy without targets of its own.",
    )
    p50_ms = models.PositiveIntegerField("p50 latency (ms)", default=1000)
    p95_ms = models.PositiveIntegerField("p95 latency (ms)", default=2500)
    p99_ms = models.PositiveIntegerField("p99 latency (ms)", default=3000)
    min_quality = models.FloatField("minimum quality", default=0.90, validators=UNIT_INTERVAL)
    max_cost_per_request = models.DecimalField(
        "maximum cost per request (USD)",
        max_digits=12,
        decimal_places=6,
        default=Decimal("0.006"),
        validators=[MinValueValidator(Decimal(0))],
    )
    min_availability_pct = models.FloatField("minimum availability (%)", default=99.9, validators=PERCENT)
    max_escalation_rate_pct = models.FloatField("maximum escalation rate (%)", default=15.0, validators=PERCENT)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SLA target"
        constraints = [
            # One default row: NULLs are distinct in a plain unique index.
            models.UniqueConstraint(
                Coalesce("policy", models.Value(0), output_field=models.BigIntegerField()),
                name="slatarget_one_per_scope",
                violation_error_message="There are SLA targets for this scope already.",
            ),
        ]

    def __str__(self) -> str:
        return f"SLA targets for {self.policy or 'every policy'}"


class AlertRule(models.Model):
    """A condition on a rollup metric, checked every minute, and who to tell when it holds."""

    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    metric = models.CharField(max_length=30, choices=Metric.choices)
    comparator = models.CharField(max_length=3, choices=Comparator.choices, default=Comparator.GT)
    threshold = models.FloatField(
        help_text="Rates in %, latency in ms, cost in USD, quality 0–1, anomaly in standard deviations (k)."
    )
    window_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(MAX_WINDOW_MINUTES)]
    )
    trailing_windows = models.PositiveSmallIntegerField(
        default=24,
        validators=[MinValueValidator(2), MaxValueValidator(168)],
        help_text="Cost anomaly: how many windows before this one make the trailing mean.",
    )
    reason = models.CharField(
        max_length=60,
        blank=True,
        help_text="Refusal metrics: only refusals whose reason contains this (429, budget_exceeded, "
        "rate_limit_exceeded, 400); empty: every refusal.",
    )
    cooldown_minutes = models.PositiveIntegerField(
        default=60, help_text="No notification for this rule is re-sent sooner than this."
    )
    policy = models.ForeignKey(
        Policy, models.CASCADE, null=True, blank=True, related_name="alert_rules", help_text="Empty: every policy."
    )
    webhook_url = models.URLField(max_length=500, blank=True, help_text="Receives a Slack-compatible JSON body.")
    email_to = models.CharField(
        max_length=500, blank=True, validators=[validate_email_list], help_text="E-mail addresses, comma-separated."
    )
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_notified_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [address.strip() for address in self.email_to.split(",") if address.strip()]

    def clean(self) -> None:
        # Checked again when each notification is sent: DNS answers may change after the save.
        try:
            validate_outbound_url(self.webhook_url)
        except ValidationError as exc:
            raise ValidationError({"webhook_url": exc.error_list}) from exc


class AlertEvent(models.Model):
    """One period during which a rule's condition held: firing, then resolved."""

    rule = models.ForeignKey(AlertRule, models.CASCADE, related_name="events")
    state = models.CharField(max_length=10, choices=EventState.choices, default=EventState.FIRING)
    value = models.FloatField(help_text="The metric when the event started firing.")
    last_value = models.FloatField(null=True, blank=True, help_text="The metric at the latest evaluation.")
    threshold = models.FloatField(help_text="The rule's threshold when the event started firing.")
    started_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    notified = models.BooleanField(default=False, help_text="Whether its firing was notified (not in cooldown).")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # One to one: a budget's crossing of a level in a period is one event, however often
    # billing's signal or the sweep that catches lost ones delivers it.
    budget_alert = models.OneToOneField(
        "billing.BudgetAlert",
        models.CASCADE,
        null=True,
        blank=True,
        related_name="event",
        help_text="A budget rule's event: the budget, period and level it is about.",
    )

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # Budget events fire side by side (one per budget, period and level) on one rule.
            models.UniqueConstraint(
                fields=["rule"],
                condition=models.Q(state=EventState.FIRING, budget_alert__isnull=True),
                name="alertevent_one_firing_per_rule",
            ),
        ]
        indexes = [models.Index(fields=["state", "started_at"])]

    def __str__(self) -> str:
        return f"{self.rule} {self.state} since {self.started_at:%Y-%m-%d %H:%M}"


class AlertDelivery(models.Model):
    """One notification of an event on one channel, with every attempt's outcome."""

    event = models.ForeignKey(AlertEvent, models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=10, choices=NoticeKind.choices)
    channel = models.CharField(max_length=10, choices=DeliveryChannel.choices)
    target = models.CharField(max_length=500, help_text="The webhook URL or the e-mail addresses.")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "alert deliveries"
        indexes = [models.Index(fields=["status", "updated"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} via {self.channel}: {self.status}"


# --- Auto-tuning -------------------------------------------------------------------------


class TuningConfig(models.Model):
    """How beat may tune one policy: the mode, the target to meet and the bounds to stay in.

    Each run (`dashboard.tuning.proposals.tuning_run`) retrains the learned scorer when enough new
    labels came in, calibrates the tier's threshold on labelled traffic to meet the
    target at the least cost, checks it on held-out labels, and proposes or applies it,
    never moving the threshold outside [threshold_min, threshold_max] nor by more than
    `max_step` at once. With fewer than `min_labels` labelled requests it falls back to
    rule-based corrections.
    """

    policy = models.OneToOneField(Policy, models.CASCADE, related_name="tuning")
    mode = models.CharField(max_length=20, choices=TuningMode.choices, default=TuningMode.OFF)
    target = models.CharField(max_length=30, choices=TuningTarget.choices, default=TuningTarget.MIN_QUALITY)
    target_value = models.DecimalField(
        max_digits=18,
        decimal_places=10,
        default=Decimal("0.9"),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Quality and escalation rate as fractions (0.9); cost in USD per request.",
    )
    tier = models.PositiveSmallIntegerField(default=0, help_text="The tier whose threshold is tuned (0: cheapest).")
    threshold_min = models.FloatField(default=0.60, validators=UNIT_INTERVAL)
    threshold_max = models.FloatField(default=0.95, validators=UNIT_INTERVAL)
    max_step = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.001), MaxValueValidator(1.0)], help_text="Per run."
    )
    min_labels = models.PositiveIntegerField(
        default=200, help_text="Labelled requests needed to calibrate; fewer fall back to rule-based corrections."
    )
    retrain_after_labels = models.PositiveIntegerField(
        default=200, help_text="New labelled requests since the last training that trigger a retraining."
    )
    window_days = models.PositiveSmallIntegerField(default=30, validators=[MinValueValidator(1)])
    holdout_share = models.FloatField(default=0.3, validators=[MinValueValidator(0.1), MaxValueValidator(0.5)])
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["policy__name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(threshold_min__lte=models.F("threshold_max")), name="tuningconfig_bounds_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"tuning of {self.policy}"

    def clean(self) -> None:
        if self.threshold_min > self.threshold_max:
            raise ValidationError({"threshold_max": "Must be at least the minimum threshold."})
        if self.target != TuningTarget.MAX_COST_PER_REQUEST and self.target_value > 1:
            raise ValidationError({"target_value": "Quality and escalation rate are fractions from 0 to 1."})


class TuningProposal(models.Model):
    """One threshold change auto-tuning proposed or made, with its evidence and its fate.

    `evidence` holds what the change rests on: the sample sizes, and the expected quality
    (with a Wilson interval), escalation rate and cost per request before and after.
    """

    policy = models.ForeignKey(Policy, models.CASCADE, related_name="tuning_proposals")
    tier = models.PositiveSmallIntegerField()
    threshold_before = models.FloatField()
    threshold_after = models.FloatField()
    scorer_version_before = models.ForeignKey(ScorerVersion, models.SET_NULL, null=True, blank=True, related_name="+")
    scorer_version_after = models.ForeignKey(ScorerVersion, models.SET_NULL, null=True, blank=True, related_name="+")
    method = models.CharField(max_length=20, choices=ProposalMethod.choices)
    reason = models.TextField()
    evidence = models.JSONField(default=dict)
    status = models.CharField(
        max_length=20, choices=ProposalStatus.choices, default=ProposalStatus.PROPOSED, db_index=True
    )
    policy_version_before = models.PositiveIntegerField()
    policy_version_applied = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    rolled_back_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    rolled_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        permissions = [("decide_tuningproposal", "Can approve, reject and roll back tuning proposals")]

    def __str__(self) -> str:
        return f"{self.policy} tier {self.tier}: {self.threshold_before:.2f} → {self.threshold_after:.2f}"

    def expected(self) -> dict[str, object]:
        """The evidence's expected outcome after the change, in one shape whatever the method."""
        evidence = self.evidence or {}
        after = evidence.get("after") or evidence
        before = evidence.get("before") or {}
        low, high = after.get("quality_ci95") or (None, None)
        return {
            "n": evidence.get("n_labels", 0),
            "quality_before": before.get("quality"),
            "quality": after.get("quality"),
            "ci_low": low,
            "ci_high": high,
            "escalation_rate": after.get("escalation_rate"),
            "cost_per_request": after.get("cost_per_request"),
        }
