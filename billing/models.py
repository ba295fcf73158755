"""Billing's tables: the price book, the spend ledger, budgets and monthly reports.

Billing sits below routing: it imports neither routing nor dashboard. Price-book rows
refer to their endpoint by foreign key to `routing.ModelEndpoint` (a table relation, not a
Python import); deleting an endpoint deletes its price history, while the costs already
recorded with requests and in the ledger stay as they were.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from billing.choices import BudgetPeriod, BudgetScope, HardAction, ReportStatus, SoftAction

NOT_NEGATIVE = [MinValueValidator(Decimal(0))]


class PriceBookEntry(models.Model):
    """An endpoint's prices from `effective_from` until its next entry.

    A request is costed once, at call time, with the entry in force then, and the entry's
    id is stored with each attempt; so a price change never changes a past cost.
    """

    endpoint = models.ForeignKey("routing.ModelEndpoint", models.CASCADE, related_name="prices")
    effective_from = models.DateTimeField()
    input_price_per_m = models.DecimalField(max_digits=12, decimal_places=6, validators=NOT_NEGATIVE)
    output_price_per_m = models.DecimalField(max_digits=12, decimal_places=6, validators=NOT_NEGATIVE)
    cached_input_price_per_m = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=NOT_NEGATIVE,
        help_text="Empty: cached input tokens cost the input price.",
    )
    note = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["endpoint", "-effective_from"]
        verbose_name_plural = "price book entries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "effective_from"], name="pricebook_unique_start"),
        ]

    def __str__(self) -> str:
        prices = f"{self.input_price_per_m}/{self.output_price_per_m}"
        return f"endpoint {self.endpoint_id} from {self.effective_from:%Y-%m-%d %H:%M}: {prices} per 1M"


class LedgerEntry(models.Model):
    """Spend of one flushed batch for one combination of day, team, app, key, policy, model and end user.

    Append-only: each flush adds rows in the transaction that stores its request records,
    so the ledger always agrees with the records (`manage.py ledger_reconcile` checks).
    Every attempt's cost lands on the row of the model that was called; the request, its
    baseline cost and its savings land on the row of the model that answered. The gateway's
    own quality checks (shadow evaluations, semantic cache re-asks) are spend too: they land
    on the checked request's team, app, key, policy and end user, on the day they ran, in
    `cost` and again in `quality_cost`, with no requests.
    """

    day = models.DateField(db_index=True)
    team = models.CharField(max_length=100)
    app = models.CharField(max_length=100)
    api_key_prefix = models.CharField(max_length=20, blank=True)
    policy = models.CharField(max_length=100)
    model = models.CharField(max_length=100)
    end_user = models.CharField(max_length=200, blank=True)
    requests = models.PositiveIntegerField(default=0)
    escalated_requests = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    baseline_cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    cache_hits = models.PositiveIntegerField(default=0)
    cost_avoided = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    quality_checks = models.PositiveIntegerField(default=0)
    quality_cost = models.DecimalField(
        max_digits=18, decimal_places=10, default=Decimal(0), help_text="The part of `cost` spent on quality checks."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["day", "team"]), models.Index(fields=["day", "policy"])]

    def __str__(self) -> str:
        return f"{self.day} {self.team}/{self.app} {self.model}: {self.cost}"


class LedgerTagEntry(models.Model):
    """Spend by a free-form tag (`metadata` key and value on the request), per day."""

    day = models.DateField(db_index=True)
    key = models.CharField(max_length=64)
    value = models.CharField(max_length=512)
    team = models.CharField(max_length=100)
    requests = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    baseline_cost = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))

    class Meta:
        verbose_name_plural = "ledger tag entries"
        indexes = [models.Index(fields=["day", "key", "value"])]

    def __str__(self) -> str:
        return f"{self.day} {self.key}={self.value}: {self.cost}"


class Budget(models.Model):
    """A spend limit for a scope and a period, with what to do as it is approached and reached."""

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=20, choices=BudgetScope.choices, default=BudgetScope.GLOBAL)
    scope_value = models.CharField(
        max_length=200, blank=True, help_text="The team, app, key prefix, policy name or end user; empty for global."
    )
    period = models.CharField(max_length=10, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    limit = models.DecimalField("limit (USD)", max_digits=14, decimal_places=4, validators=NOT_NEGATIVE)
    soft_limit_percent = models.PositiveSmallIntegerField(
        default=80, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    soft_action = models.CharField(max_length=20, choices=SoftAction.choices, default=SoftAction.ALERT)
    degraded_threshold = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="With 'lower every tier's threshold': the threshold tiers use past the soft limit.",
    )
    hard_action = models.CharField(max_length=20, choices=HardAction.choices, default=HardAction.REJECT)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_scope_display()} {self.scope_value}, {self.limit} USD/{self.period})"


class BudgetCounter(models.Model):
    """Embedded mode's shared counter for one budget period (Redis holds it in production)."""

    budget = models.ForeignKey(Budget, models.CASCADE, related_name="counters")
    period_start = models.DateTimeField()
    spent = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start"], name="budgetcounter_unique_period"),
        ]

    def __str__(self) -> str:
        return f"{self.budget_id} {self.period_start:%Y-%m-%d}: {self.spent}"


class BudgetReservation(models.Model):
    """Embedded mode's hold on a budget while a request runs; expires if its worker dies."""

    counter = models.ForeignKey(BudgetCounter, models.CASCADE, related_name="reservations")
    hold_id = models.CharField(max_length=64, db_index=True)
    amount = models.DecimalField(max_digits=18, decimal_places=10)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.hold_id}: {self.amount}"


class MonthlyReport(models.Model):
    """An immutable snapshot of one calendar month's spend, savings and forecast."""

    month = models.DateField(unique=True, help_text="The first day of the month reported.")
    status = models.CharField(max_length=20, choices=ReportStatus.choices, default=ReportStatus.PENDING)
    price_book_version = models.PositiveIntegerField(default=0, help_text="The newest price-book entry in force.")
    data = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month"]
        permissions = [("view_finance", "Can see finance reports and spend")]

    def __str__(self) -> str:
        return f"{self.month:%B %Y} ({self.status})"


class BudgetAlert(models.Model):
    """A budget crossed its soft limit or reached its limit, once per budget period."""

    class Level(models.TextChoices):
        SOFT = "soft", "Soft limit reached"
        HARD = "hard", "Limit reached"

    budget = models.ForeignKey(Budget, models.CASCADE, related_name="alerts")
    period_start = models.DateTimeField()
    level = models.CharField(max_length=10, choices=Level.choices)
    spent = models.DecimalField(max_digits=18, decimal_places=10)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start", "level"], name="budgetalert_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.budget} {self.get_level_display()} ({self.period_start:%Y-%m-%d})"
