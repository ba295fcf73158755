"""Choices for billing models."""

from django.db import models


class BudgetScope(models.TextChoices):
    GLOBAL = "global", "Everything"
    TEAM = "team", "A team"
    APP = "app", "An app"
    API_KEY = "api_key", "An API key (by prefix)"
    POLICY = "policy", "A policy (by name)"
    END_USER = "end_user", "An end user (the request's `user`)"


class BudgetPeriod(models.TextChoices):
    DAY = "day", "Day"
    MONTH = "month", "Month"


class SoftAction(models.TextChoices):
    ALERT = "alert", "Alert only"
    CHEAP_ONLY = "cheap_only", "Alert, and route on the cheapest tier only"
    LOWER_THRESHOLD = "lower_threshold", "Alert, and lower every tier's threshold"


class HardAction(models.TextChoices):
    REJECT = "reject", "Reject with 429"
    CHEAP_ONLY = "cheap_only", "Route on the cheapest tier only"


class ReportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
