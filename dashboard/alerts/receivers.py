"""Receivers of billing's signals: budget alerts → dashboard alert events."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from billing.budgets.signals import budget_alert_raised
from billing.models import BudgetAlert
from dashboard.alerts import budget_events

logger = logging.getLogger(__name__)


@receiver(budget_alert_raised, dispatch_uid="dashboard_budget_alert_event")
def alert_event_on_budget_alert(sender: type, alert: BudgetAlert, **kwargs: Any) -> None:
    # After billing's commit. A failure here must not fail billing's task (its alert is
    # recorded already); the minute's alert evaluation raises the event it missed.
    try:
        budget_events.budget_alert_event_raise(alert=alert)
    except Exception:
        logger.exception("Could not raise the alert event of budget alert %s; the sweep will", alert.id)
