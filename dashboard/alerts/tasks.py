"""Celery tasks for alerts: thin wrappers around services."""

from __future__ import annotations

from celery import Task, shared_task

from dashboard.alerts.rules import DELIVERY_MAX_RETRIES, backoff_seconds


@shared_task(acks_late=True, ignore_result=True)
def alerts_evaluate() -> int:
    """Evaluate the alert rules (beat, every minute)."""
    from dashboard.alerts.services import alert_rules_evaluate

    return alert_rules_evaluate()


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=DELIVERY_MAX_RETRIES)
def alert_delivery_send(self: Task[[int], None], delivery_id: int) -> None:
    """Send one notification; a failure is retried with exponential backoff, then given up."""
    from dashboard.alerts.exceptions import DeliveryFailed
    from dashboard.alerts.services import alert_delivery_send

    try:
        # max_retries None would retry forever: no attempt is the last.
        final = self.max_retries is not None and self.request.retries >= self.max_retries
        alert_delivery_send(delivery_id=delivery_id, final=final)
    except DeliveryFailed as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
