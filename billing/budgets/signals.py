"""Budget signals: an alert raised, sent after billing's commit."""

from __future__ import annotations

from django.dispatch import Signal

budget_alert_raised = Signal()  # kwargs: alert (billing.models.BudgetAlert)
