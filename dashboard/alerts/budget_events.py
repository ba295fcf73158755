"""Budget alerts as dashboard alert events, notified on the channels of the budget rules.

Billing's `budget_alert_raised` becomes one event per `BudgetAlert`, under the first enabled
"Budget limits" rule (else a built-in one without channels); every enabled budget rule the
alert meets gets its deliveries. `budget_events_sweep` raises what a lost signal missed and
resolves events when their budget period ends. See docs/dashboard.md.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.budgets.rules import period_bounds
from billing.choices import BudgetScope
from billing.models import Budget, BudgetAlert
from dashboard.alerts import rules as alerts
from dashboard.choices import Comparator, DeliveryChannel, EventState, Metric, NoticeKind
from dashboard.models import AlertDelivery, AlertEvent, AlertRule

BUILT_IN_RULE_NAME = "Budget limits"
# Alerts older than the longest period (a month) have ended; the sweep looks no further.
SWEEP_DAYS = 32


def budget_alert_event_raise(*, alert: BudgetAlert, now: datetime | None = None) -> AlertEvent | None:
    """Raise the alert event of a budget alert and queue its notifications; None if it exists."""
    now = now or timezone.now()
    if not alert.budget.enabled:  # switched off after the crossing was announced
        return None
    with transaction.atomic():
        if AlertEvent.objects.filter(budget_alert=alert).exists():
            return None
        rules = list(AlertRule.objects.filter(metric=Metric.BUDGET).order_by("id"))
        value = percent_used(alert)
        event = _event_create(alert, _holder(rules), value)
        if event is None:
            return None
        hearing = [r for r in rules if r.enabled and alerts.breaches(value, r.comparator, r.threshold)]
        _deliver(event, NoticeKind.FIRING, _targets(hearing))
        AlertRule.objects.filter(id__in=[r.id for r in hearing]).update(last_notified_at=now)
        return event


def percent_used(alert: BudgetAlert) -> float:
    """What the alert's spend (and holds) was as a percentage of the budget's limit."""
    limit = alert.budget.limit
    return float(alert.spent * 100 / limit) if limit > 0 else 100.0


def _holder(rules: list[AlertRule]) -> AlertRule:
    enabled = [r for r in rules if r.enabled]
    if enabled or rules:
        return (enabled or rules)[0]
    return AlertRule.objects.create(
        name=BUILT_IN_RULE_NAME, metric=Metric.BUDGET, comparator=Comparator.GTE, threshold=0, cooldown_minutes=0
    )


def _event_create(alert: BudgetAlert, rule: AlertRule, value: float) -> AlertEvent | None:
    level_threshold = alert.budget.soft_limit_percent if alert.level == BudgetAlert.Level.SOFT else 100
    try:
        with transaction.atomic():
            return AlertEvent.objects.create(
                rule=rule,
                budget_alert=alert,
                value=value,
                last_value=value,
                threshold=level_threshold,
                started_at=alert.created,
            )
    except IntegrityError:
        return None  # raised by the signal and the sweep at once: the other one won


def _targets(rules: list[AlertRule]) -> list[tuple[str, str]]:
    """Each channel once, even when two rules name the same webhook or addresses."""
    targets: dict[tuple[str, str], None] = {}
    for rule in rules:
        if rule.webhook_url:
            targets[(DeliveryChannel.WEBHOOK, rule.webhook_url)] = None
        if rule.recipients:
            targets[(DeliveryChannel.EMAIL, ", ".join(rule.recipients))] = None
    return list(targets)


def _deliver(event: AlertEvent, kind: str, targets: list[tuple[str, str]]) -> None:
    deliveries = [AlertDelivery.objects.create(event=event, kind=kind, channel=c, target=t) for c, t in targets]
    if deliveries and kind == NoticeKind.FIRING:
        AlertEvent.objects.filter(id=event.id).update(notified=True)
    for delivery in deliveries:
        # robust: a broker that is down must not undo the event; the delivery stays
        # pending and the minute's evaluation queues it again.
        transaction.on_commit(functools.partial(_enqueue_delivery, delivery.id), robust=True)


def _enqueue_delivery(delivery_id: int) -> None:
    from dashboard.alerts.tasks import alert_delivery_send as alert_delivery_send_task

    alert_delivery_send_task.delay(delivery_id)


def budget_events_sweep(*, now: datetime) -> None:
    """Raise the events lost signals missed; resolve those whose period is over or budget disabled."""
    recent = BudgetAlert.objects.filter(
        event__isnull=True, budget__enabled=True, created__gte=now - timedelta(days=SWEEP_DAYS)
    )
    for alert in recent.select_related("budget"):
        if period_end(alert) > now:
            budget_alert_event_raise(alert=alert, now=now)
    firing = AlertEvent.objects.filter(state=EventState.FIRING, budget_alert__isnull=False)
    for event in firing.select_related("budget_alert__budget"):
        assert event.budget_alert is not None  # filtered above
        if period_end(event.budget_alert) <= now:
            _resolve(event, period_end(event.budget_alert))
        elif not event.budget_alert.budget.enabled:
            # A disabled budget limits nothing: its alert ends now, and says so to whoever heard it.
            _resolve(event, now)


def period_end(alert: BudgetAlert) -> datetime:
    return period_bounds(alert.budget.period, alert.period_start, settings.BILLING_TIME_ZONE)[1]


@transaction.atomic
def _resolve(event: AlertEvent, at: datetime) -> None:
    # Claimed by the update, so two sweeps at once resolve and notify it once.
    if not AlertEvent.objects.filter(id=event.id, state=EventState.FIRING).update(
        state=EventState.RESOLVED, resolved_at=at
    ):
        return
    fired = event.deliveries.filter(kind=NoticeKind.FIRING).values_list("channel", "target")
    _deliver(event, NoticeKind.RESOLVED, list(dict.fromkeys(fired)))


def budget_notice(delivery: AlertDelivery) -> alerts.Notice:
    """What a budget event's notification says: which budget, which level, how much is used."""
    event = delivery.event
    alert = event.budget_alert
    assert alert is not None  # only budget events are notified through here
    return alerts.Notice(
        kind=delivery.kind,
        rule=f"Budget '{alert.budget.name}': {alert.get_level_display().lower()}",
        metric=Metric.BUDGET,
        comparator=Comparator.GTE,
        threshold=event.threshold,
        value=event.value,
        scope=budget_scope(alert.budget),
        started_at=timezone.localtime(event.started_at),
        resolved_at=timezone.localtime(event.resolved_at) if event.resolved_at else None,
    )


def budget_scope(budget: Budget) -> str:
    scope = "all traffic" if budget.scope == BudgetScope.GLOBAL else f"{budget.scope} '{budget.scope_value}'"
    return f"{scope}, per {budget.period}"
