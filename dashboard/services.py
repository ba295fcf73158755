"""Dashboard's writes: rollups from stored records, alert evaluation, notifications.

Everything that leaves the database (a webhook call, an e-mail) is queued after commit
as a Celery task with the delivery's id, and retried there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from . import alerts, budget_events
from .choices import DeliveryChannel, DeliveryStatus, EventState, Metric, NoticeKind, Resolution
from .exceptions import DeliveryFailed
from .models import AlertDelivery, AlertEvent, AlertRule, Rollup, SpendRollup
from .rollups import COUNTERS, Payload, Totals, minute_start, rollup_deltas, spend_deltas
from .selectors import alert_metric_value
from .sketch import sketch_merge

UPSERT_BATCH = 500
ROLLUP_KEY = ["resolution", "bucket", "policy", "tier", "model"]
SPEND_KEY = ["day", "scope", "kind", "name"]
WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ERROR_CHARS = 2000
# Twice the longest backoff: an unsent delivery untouched for this long has lost its task.
LOST_AFTER = timedelta(seconds=2 * alerts.BACKOFF_CAP_S)
LOST_BATCH = 100


# --- rollups --------------------------------------------------------------------------


def rollups_record(*, payloads: Sequence[Payload]) -> None:
    """Add freshly stored request records to the minute, hour and spend rollups.

    Called inside the flusher's transaction (`routing.signals.records_stored`), with
    records stored just now: each record is counted exactly once, and rolled back with
    its batch.
    """
    rollup_adds = rollup_deltas(payloads)
    _add_to_rows(Rollup, ROLLUP_KEY, rollup_adds, _rollup_add, [*COUNTERS, "latency", "policy_name", "updated"])
    _add_to_rows(SpendRollup, SPEND_KEY, spend_deltas(payloads), _spend_add, ["requests", "cost", "updated"])


def _rollup_add(row: Rollup, delta: tuple[str, Totals]) -> None:
    policy_name, totals = delta
    row.policy_name = policy_name
    for name in COUNTERS:
        setattr(row, name, getattr(row, name) + getattr(totals, name))
    sketch_merge(row.latency, totals.latency)


def _spend_add(row: SpendRollup, delta: tuple[int, Decimal]) -> None:
    requests, cost = delta
    row.requests += requests
    row.cost += cost


def _add_to_rows(
    model: type[models.Model],
    key_fields: list[str],
    deltas: dict[Any, Any],
    add: Callable[[Any, Any], None],
    update_fields: list[str],
) -> None:
    """Add `deltas` to the rows with those keys, creating missing rows, in three statements.

    The insert creates missing rows and locks existing ones in key order, in one statement,
    so concurrent flushers always take row locks in the same order and never deadlock; the
    read then sees committed values, and Decimal sums happen in Python (SQLite has no
    decimal arithmetic).
    """
    if not deltas:
        return
    keys = sorted(deltas)
    model.objects.bulk_create(  # type: ignore[attr-defined]
        [model(**_key_kwargs(key_fields, key)) for key in keys],
        update_conflicts=True,
        unique_fields=key_fields,
        update_fields=["updated"],
        batch_size=UPSERT_BATCH,
    )
    rows = [row for row in _rows_with_keys(model, key_fields, keys) if _key_of(row, key_fields) in deltas]
    now = timezone.now()
    for row in rows:
        add(row, deltas[_key_of(row, key_fields)])
        row.updated = now
    model.objects.bulk_update(rows, update_fields, batch_size=UPSERT_BATCH)  # type: ignore[attr-defined]


def _key_kwargs(key_fields: list[str], key: tuple[Any, ...]) -> dict[str, Any]:
    return {(f"{name}_id" if name == "policy" else name): value for name, value in zip(key_fields, key, strict=True)}


def _key_of(row: models.Model, key_fields: list[str]) -> tuple[Any, ...]:
    return tuple(getattr(row, f"{name}_id" if name == "policy" else name) for name in key_fields)


def _rows_with_keys(model: type[models.Model], key_fields: list[str], keys: Iterable[tuple[Any, ...]]) -> Any:
    """Every row whose key fields each take a value among `keys`: a superset, in one query."""
    columns = [set() for _ in key_fields]  # type: list[set[Any]]
    for key in keys:
        for values, value in zip(columns, key, strict=True):
            values.add(value)
    lookups = {f"{name}__in": values for name, values in zip(key_fields, columns, strict=True)}
    return model.objects.filter(**lookups).order_by("pk")  # type: ignore[attr-defined]


def rollups_prune(*, now: datetime | None = None) -> int:
    """Delete rollups older than their retention; returns how many rows went."""
    now = now or timezone.now()
    minute_cutoff = now - timedelta(days=settings.CASCADEOPS_ROLLUP_MINUTE_RETENTION_DAYS)
    hour_cutoff = now - timedelta(days=settings.CASCADEOPS_ROLLUP_HOUR_RETENTION_DAYS)
    deleted, _ = Rollup.objects.filter(
        Q(resolution=Resolution.MINUTE, bucket__lt=minute_cutoff)
        | Q(resolution=Resolution.HOUR, bucket__lt=hour_cutoff)
    ).delete()
    spent, _ = SpendRollup.objects.filter(day__lt=hour_cutoff.date()).delete()
    return deleted + spent


# --- alert rules ----------------------------------------------------------------------


def alert_rules_evaluate(*, now: datetime | None = None) -> int:
    """Evaluate every enabled rule not evaluated yet this minute; returns how many were.

    Safe to run twice (two beats, a retried task): each rule is claimed for the minute
    first, so only one run evaluates it. Budget rules measure nothing: billing raises
    their events (`dashboard.budget_events`); this only sweeps them.
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
            transaction.on_commit(lambda d=delivery_id: _enqueue_delivery(d), robust=True)


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
        transaction.on_commit(lambda d=delivery.id: _enqueue_delivery(d), robust=True)
    return deliveries


def _enqueue_delivery(delivery_id: int) -> None:
    from .tasks import alert_delivery_send as alert_delivery_send_task

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
        response = httpx.post(delivery.target, json=alerts.slack_body(notice), timeout=WEBHOOK_TIMEOUT)
        if response.is_error:
            raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        return
    recipients = [address.strip() for address in delivery.target.split(",")]
    send_mail(alerts.email_subject(notice), alerts.email_body(notice), None, recipients, fail_silently=False)


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
