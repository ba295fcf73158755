"""Choices for the dashboard's models."""

from django.db import models


class Resolution(models.TextChoices):
    MINUTE = "minute", "Minute"
    HOUR = "hour", "Hour"


class SpendKind(models.TextChoices):
    APP = "app", "App"
    END_USER = "end_user", "End user"


class Metric(models.TextChoices):
    HOURLY_COST = "hourly_cost", "Hourly cost (USD per hour over the window)"
    DAILY_BUDGET_PCT = "daily_budget_pct", "Today's cost as % of the daily budget"
    MEAN_QUALITY = "mean_quality", "Mean quality of labelled answers (0–1)"
    ESCALATION_RATE = "escalation_rate", "Escalation rate (%)"
    CHEAP_TIER_ACCEPTANCE = "cheap_tier_acceptance", "Cheap-tier acceptance rate (%)"
    P95_LATENCY = "p95_latency", "p95 latency (ms)"
    ERROR_RATE = "error_rate", "Error rate (%)"
    REFUSAL_RATE = "refusal_rate", "Refused requests (% of requests received)"
    REFUSALS = "refusals", "Refused requests (count over the window)"
    COST_ANOMALY = "cost_anomaly", "Cost anomaly (standard deviations from the trailing mean)"
    # Not measured every minute: raised by billing when a budget crosses its soft limit or
    # reaches its limit (dashboard.alerts.budget_events); the value is the % of the limit used.
    BUDGET = "budget", "Budget limits (% of a budget's limit used, when it crosses its soft limit or limit)"


class Comparator(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", "≥"
    LT = "lt", "<"
    LTE = "lte", "≤"


class EventState(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class NoticeKind(models.TextChoices):
    FIRING = "firing", "Firing"
    REMINDER = "reminder", "Still firing"
    RESOLVED = "resolved", "Resolved"


class DeliveryChannel(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (Slack-compatible JSON)"
    EMAIL = "email", "E-mail"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Failed, retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed, gave up"


# --- Auto-tuning -------------------------------------------------------------------------


class TuningMode(models.TextChoices):
    OFF = "off", "Off"
    PROPOSE = "propose", "Propose (an operator approves)"
    APPLY = "apply", "Apply (and record)"


class TuningTarget(models.TextChoices):
    MIN_QUALITY = "min_quality", "Minimum quality (0–1)"
    MAX_ESCALATION_RATE = "max_escalation_rate", "Maximum escalation rate (0–1)"
    MAX_COST_PER_REQUEST = "max_cost_per_request", "Maximum cost per request (USD)"


class ProposalStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"
    ROLLED_BACK = "rolled_back", "Rolled back"
    SUPERSEDED = "superseded", "Superseded by a newer proposal"


class ProposalMethod(models.TextChoices):
    CALIBRATED = "calibrated", "Calibrated on labelled traffic"
    RULES = "rules", "Rule-based correction (too few labels)"
