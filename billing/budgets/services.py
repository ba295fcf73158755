"""Budget writes: alerts raised when a budget crosses a level."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from billing.budgets.signals import budget_alert_raised
from billing.models import BudgetAlert


def budget_alert_raise(*, budget_id: int, period_start: datetime, level: str, spent: Decimal) -> BudgetAlert | None:
    """Record that a budget crossed a limit in a period; only the first call per level counts.

    Sends `budget_alert_raised` after commit for the dashboard's alert events and channels.
    """
    alert, created = BudgetAlert.objects.get_or_create(
        budget_id=budget_id, period_start=period_start, level=level, defaults={"spent": spent}
    )
    if not created:
        return None
    transaction.on_commit(lambda: budget_alert_raised.send(sender=BudgetAlert, alert=alert))
    return alert
