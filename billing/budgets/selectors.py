"""Budgets and where each stands this period, for people (the finance pages, the admin).

Spend is the ledger's for the budget's scope over its current period: what finance
reconciles against. The hot path's counters (`billing.budgets.store`) also hold in-flight
reservations, so they can read a little higher while requests are running.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from billing.budgets.rules import period_bounds
from billing.budgets.store import LEDGER_FIELD
from billing.models import Budget, LedgerEntry
from common import numbers


@dataclass(frozen=True)
class BudgetState:
    """One budget, what its scope spent this period, and what that means."""

    budget: Budget
    period_start: datetime
    spent: Decimal

    @property
    def used_pct(self) -> float | None:
        return float(self.spent / self.budget.limit * 100) if self.budget.limit else None

    @property
    def state(self) -> str:
        if not self.budget.enabled:
            return "disabled"
        used = self.used_pct
        if used is None or used >= 100:
            return "at its limit"
        return "past its soft limit" if used >= self.budget.soft_limit_percent else "within"

    @property
    def spent_text(self) -> str:
        return numbers.usd(self.spent)

    @property
    def limit_text(self) -> str:
        return numbers.usd(self.budget.limit)

    @property
    def used_text(self) -> str:
        return numbers.percent(self.used_pct)


def budget_states(*, now: datetime | None = None) -> list[BudgetState]:
    """Every budget with this period's ledger spend, in two queries however many there are."""
    now = now or timezone.now()
    budgets = list(Budget.objects.order_by("-enabled", "name"))
    if not budgets:
        return []
    periods = {b.id: period_bounds(b.period, now, settings.BILLING_TIME_ZONE) for b in budgets}
    sums = {f"b{b.id}": Sum("cost", filter=_scope_filter(b, *periods[b.id]), default=Decimal(0)) for b in budgets}
    spent = LedgerEntry.objects.aggregate(**sums)
    return [BudgetState(budget=b, period_start=periods[b.id][0], spent=spent[f"b{b.id}"]) for b in budgets]


def _scope_filter(budget: Budget, start: datetime, end: datetime) -> Q:
    # Billing days, as the ledger and `billing.budgets.store.ledger_spend` count them.
    scope = Q(day__gte=start.date(), day__lt=end.date())
    if budget.scope in LEDGER_FIELD:
        scope &= Q(**{LEDGER_FIELD[budget.scope]: budget.scope_value})
    return scope
