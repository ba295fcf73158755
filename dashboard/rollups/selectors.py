"""Reads of rollups: rows by window and policy, today's start, the daily budget they count against."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Min, QuerySet, Subquery

from billing.choices import BudgetPeriod, BudgetScope
from billing.models import Budget
from dashboard.models import Rollup
from dashboard.rollups.compute import hour_start, local_day_start
from routing.models import Policy


def budget_daily_get(*, policy_id: int | None) -> Decimal | None:
    """Today's spending limit in USD for a policy (or for everything, `None`); None if unset.

    The tightest enabled day budget scoped to the policy (billing scopes policies by name)
    or, for everything, a global one. One query.
    """
    budgets = Budget.objects.filter(enabled=True, period=BudgetPeriod.DAY)
    if policy_id is None:
        budgets = budgets.filter(scope=BudgetScope.GLOBAL)
    else:
        name = Policy.objects.filter(id=policy_id).values("name")[:1]
        budgets = budgets.filter(scope=BudgetScope.POLICY, scope_value=Subquery(name))
    limit: Decimal | None = budgets.aggregate(limit=Min("limit"))["limit"]
    return limit


def rollup_rows(
    *, resolution: str, since: datetime, until: datetime | None = None, policy_id: int | None = None
) -> QuerySet[Rollup]:
    """Rollup rows of one resolution with buckets in [since, until), for one policy or all."""
    rows = Rollup.objects.filter(resolution=resolution, bucket__gte=since)
    if until is not None:
        rows = rows.filter(bucket__lt=until)
    if policy_id is not None:
        rows = rows.filter(policy_id=policy_id)
    return rows.order_by("bucket")


def today_start(now: datetime) -> datetime:
    """The first hour bucket of the local day (to the hour in zones with half-hour offsets)."""
    return hour_start(local_day_start(now))
