"""Receivers of other apps' signals: request records stored → rollups; budget alerts → alert events."""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from billing.models import BudgetAlert
from billing.signals import budget_alert_raised
from routing.signals import records_stored

from . import budget_events, services

logger = logging.getLogger(__name__)


@receiver(records_stored, dispatch_uid="dashboard_rollups_record")
def rollups_on_records_stored(sender: type, payloads: list[dict[str, Any]], **kwargs: Any) -> None:
    # Inside the flusher's transaction: the rollups commit (or roll back) with the records.
    services.rollups_record(payloads=payloads)


@receiver(budget_alert_raised, dispatch_uid="dashboard_budget_alert_event")
def alert_event_on_budget_alert(sender: type, alert: BudgetAlert, **kwargs: Any) -> None:
    # After billing's commit. A failure here must not fail billing's task (its alert is
    # recorded already); the minute's alert evaluation raises the event it missed.
    try:
        budget_events.budget_alert_event_raise(alert=alert)
    except Exception:
        logger.exception("Could not raise the alert event of budget alert %s; the sweep will", alert.id)
