"""The alerts' writes: rule evaluation, events, notifications and their deliveries.

Everything that leaves the database (a webhook call, an e-mail) is queued after commit
as a Celery task with the delivery's id, and retried there. See docs/dashboard.md.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.outbound import OutboundRefused, outbound_check
from dashboard.alerts import budget_events
from dashboard.alerts import rules as alerts
from dashboard.alerts.exceptions import DeliveryFailed
from dashboard.alerts.selectors import alert_metric_value
from dashboard.choices import DeliveryChannel, DeliveryStatus, EventState, Metric, NoticeKind
from dashboard.models import AlertDelivery, AlertEvent, AlertRule
from dashboard.rollups.compute import minute_start

WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ERROR_CHARS = 2000
STATUS_LINE_CHARS = 200
# Twice the longest backoff: an unsent delivery untouched for this long has lost its task.
LOST_AFTER = timedelta(seconds=2 * alerts.BACKOFF_CAP_S)
LOST_BATCH = 100


# --- rollups --------------------------------------------------------------------------


# --- alert rules ----------------------------------------------------------------------


def alert_rules_evaluate(*, now: datetime | None = None) -> int:
    """Evaluate every enabled rule not evaluated yet this minute; returns how many were.

    Safe to run twice (two beats, a retried task): each rule is claimed for the minute
    first, so only one run evaluates it. Budget rules measure nothing: billing raises
    their events (`dashboard.alerts.budget_events`); this only sweeps them.
    """
    now = now or timezone.now()
    evaluated = 0
    for rule in AlertRule.objects.filter(enabled=True).exclude(metric=Metric.BUDGET).select_related("policy"):
        if _claim(rule, now):
            alert_rule_evaluate(rule=rule, now=now)
            evaluated += 1
    _requeue_lost_deliveries(now)
    budget_events.budget_events_sweep(now=now)
    return evaluated


def _requeue_lost_deliveries(now: datetime) -> None:
    """Queue again the deliveries whose task was lost (a broker restart, a worker killed
    between the commit and the enqueue): still unsent long after their last attempt."""
    lost = AlertDelivery.objects.filter(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.RETRYING], updated__lt=now - LOST_AFTER
    )
    for delivery_id in lost.values_list("id", flat=True)[:LOST_BATCH]:
        # Touched first, so the next minute's run does not queue it again meanwhile.
        if AlertDelivery.objects.filter(id=delivery_id, updated__lt=now - LOST_AFTER).update(updated=now):
            transaction.on_commit(functools.partial(_enqueue_delivery, delivery_id), robust=True)


def _claim(rule: AlertRule, now: datetime) -> bool:
    not_this_minute = Q(last_evaluated_at__isnull=True) | Q(last_evaluated_at__lt=minute_start(now))
    return AlertRule.objects.filter(not_this_minute, id=rule.id).update(last_evaluated_at=now) == 1


@transaction.atomic
def alert_rule_evaluate(*, rule: AlertRule, now: datetime) -> AlertEvent | None:
    """Fire, update or resolve the rule's event from the metric's value now; returns the event."""
    value = alert_metric_value(rule=rule, now=now)
    event = rule.events.select_for_update().filter(state=EventState.FIRING).first()
    breached = alerts.breaches(value, rule.comparator, rule.threshold)
    if breached and event is None:
        return _fire(rule, value, now)
    if event is not None and breached:
        return _keep_firing(rule, event, value, now)
    if event is not None:
        return _resolve(rule, event, value, now)
    return None


def _fire(rule: AlertRule, value: float | None, now: datetime) -> AlertEvent:
    assert value is not None  # a breach needs a value
    event = AlertEvent.objects.create(
        rule=rule, value=value, last_value=value, threshold=rule.threshold, started_at=now
    )
    if not _in_cooldown(rule, now):
        _notify(rule, event, NoticeKind.FIRING, now)
    return event


def _keep_firing(rule: AlertRule, event: AlertEvent, value: float | None, now: datetime) -> AlertEvent:
    event.last_value = value
    event.save(update_fields=["last_value"])
    # Unacknowledged, it is re-sent once per cooldown; one whose first notice fell in
    # the cooldown of an earlier event is sent when that cooldown ends.
    if event.acknowledged_at is None and not _in_cooldown(rule, now):
        _notify(rule, event, NoticeKind.REMINDER if event.notified else NoticeKind.FIRING, now)
    return event


def _resolve(rule: AlertRule, event: AlertEvent, value: float | None, now: datetime) -> AlertEvent:
    event.state = EventState.RESOLVED
    event.resolved_at = now
    event.last_value = value
    event.save(update_fields=["state", "resolved_at", "last_value"])
    if event.notified:  # whoever heard it fire hears it end, cooldown or not
        _notify(rule, event, NoticeKind.RESOLVED, now)
    return event


def _in_cooldown(rule: AlertRule, now: datetime) -> bool:
    last = rule.last_notified_at
    return last is not None and now - last < timedelta(minutes=rule.cooldown_minutes)


def _notify(rule: AlertRule, event: AlertEvent, kind: str, now: datetime) -> list[AlertDelivery]:
    """Queue one delivery per channel the rule has; each is sent after commit."""
    targets = []
    if rule.webhook_url:
        targets.append((DeliveryChannel.WEBHOOK, rule.webhook_url))
    if rule.recipients:
        targets.append((DeliveryChannel.EMAIL, ", ".join(rule.recipients)))
    deliveries = [AlertDelivery.objects.create(event=event, kind=kind, channel=c, target=t) for c, t in targets]
    if kind != NoticeKind.RESOLVED and not event.notified:
        event.notified = True
        event.save(update_fields=["notified"])
    AlertRule.objects.filter(id=rule.id).update(last_notified_at=now)
    rule.last_notified_at = now
    for delivery in deliveries:
        # robust: a broker that is down must not undo the evaluation; the delivery stays
        # pending and `_requeue_lost_deliveries` queues it again later.
        transaction.on_commit(functools.partial(_enqueue_delivery, delivery.id), robust=True)
    return deliveries


def _enqueue_delivery(delivery_id: int) -> None:
    from dashboard.alerts.tasks import alert_delivery_send as alert_delivery_send_task

    alert_delivery_send_task.delay(delivery_id)


def alert_event_acknowledge(*, event: AlertEvent, user: Any) -> bool:
    """Mark an event as seen: no more reminders for it. False if it was acknowledged already."""
    now = timezone.now()
    updated = AlertEvent.objects.filter(id=event.id, acknowledged_at__isnull=True).update(
        acknowledged_at=now, acknowledged_by=user
    )
    if updated:
        event.acknowledged_at, event.acknowledged_by = now, user
    return updated == 1


# --- deliveries -----------------------------------------------------------------------


def alert_delivery_send(*, delivery_id: int, final: bool) -> None:
    """Send one notification, recording the attempt.

    Raises `DeliveryFailed` when it failed and may be retried; on the `final` attempt a
    failure is recorded as given up instead. A delivery already sent is not sent again
    (a task redelivered after a worker died).
    """
    delivery = AlertDelivery.objects.select_related("event__rule__policy", "event__budget_alert__budget").get(
        id=delivery_id
    )
    if delivery.status in (DeliveryStatus.SENT, DeliveryStatus.FAILED):
        return
    try:
        _send(delivery)
    except (httpx.HTTPError, OSError, DeliveryFailed) as exc:
        _record_attempt(delivery, error=_describe(exc), final=final)
        if not final:
            raise DeliveryFailed(delivery.last_error) from exc
        return
    _record_attempt(delivery, error="", final=final)


def _send(delivery: AlertDelivery) -> None:
    notice = _notice(delivery)
    if delivery.channel == DeliveryChannel.WEBHOOK:
        _webhook_post(delivery.target, alerts.slack_body(notice))
        return
    recipients = [address.strip() for address in delivery.target.split(",")]
    send_mail(alerts.email_subject(notice), alerts.email_body(notice), None, recipients, fail_silently=False)


def _webhook_post(url: str, body: dict[str, Any]) -> None:
    """POST the notice, if the outbound policy still allows the URL (its DNS may have changed).

    A refusal keeps only the status line: operators read `last_error`, and a body would let
    a webhook pointed at an internal service read that service's answers out through it.
    """
    try:
        outbound_check(url)
    except OutboundRefused as exc:
        raise DeliveryFailed(f"refused by the outbound URL policy: {exc}") from exc
    response = httpx.post(url, json=body, timeout=WEBHOOK_TIMEOUT)
    if response.is_error:
        raise DeliveryFailed(f"HTTP {response.status_code} {response.reason_phrase}"[:STATUS_LINE_CHARS])


def _notice(delivery: AlertDelivery) -> alerts.Notice:
    if delivery.event.budget_alert_id is not None:
        return budget_events.budget_notice(delivery)
    event, rule = delivery.event, delivery.event.rule
    value = event.value if delivery.kind == NoticeKind.FIRING else event.last_value
    return alerts.Notice(
        kind=delivery.kind,
        rule=rule.name,
        metric=rule.metric,
        comparator=rule.comparator,
        threshold=event.threshold,
        value=value,
        scope=rule.policy.name if rule.policy else "every policy",
        started_at=timezone.localtime(event.started_at),
        resolved_at=timezone.localtime(event.resolved_at) if event.resolved_at else None,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeliveryFailed):
        return str(exc)[:ERROR_CHARS]
    return f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]


def _record_attempt(delivery: AlertDelivery, *, error: str, final: bool) -> None:
    delivery.attempts += 1
    delivery.last_error = error or delivery.last_error
    if not error:
        delivery.status, delivery.sent_at = DeliveryStatus.SENT, timezone.now()
    else:
        delivery.status = DeliveryStatus.FAILED if final else DeliveryStatus.RETRYING
    delivery.save(update_fields=["attempts", "last_error", "status", "sent_at", "updated"])


def alert_delivery_retry(*, delivery: AlertDelivery) -> None:
    """Send a delivery that gave up once more, from the admin (after fixing the receiver)."""
    AlertDelivery.objects.filter(id=delivery.id).update(status=DeliveryStatus.PENDING, updated=timezone.now())
    transaction.on_commit(lambda: _enqueue_delivery(delivery.id), robust=True)
