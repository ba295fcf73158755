"""Celery tasks for budgets: thin wrappers around their services."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def budget_alert_raise(budget_id: int, period_start: str, level: str, spent: str) -> None:
    """Record a budget crossing its soft limit or limit (sent once per process and period)."""
    from datetime import datetime
    from decimal import Decimal

    from billing.budgets.services import budget_alert_raise as raise_alert

    raise_alert(
        budget_id=budget_id, period_start=datetime.fromisoformat(period_start), level=level, spent=Decimal(spent)
    )
