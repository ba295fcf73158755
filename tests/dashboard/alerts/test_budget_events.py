"""Budget alerts reach operators as dashboard alert events, once per budget, period and level.

Each test starts where the gateway hands over: the task it queues when a request finds
its budget past a level (`billing.budgets.tasks.budget_alert_raise`), run eagerly, with the
commit callbacks (the signal, the deliveries) executed as after a real commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from billing.budgets.rules import period_bounds
from billing.budgets.tasks import budget_alert_raise as budget_alert_raise_task
from billing.models import Budget, BudgetAlert
from dashboard.alerts import services
from dashboard.alerts.budget_events import BUILT_IN_RULE_NAME
from dashboard.choices import DeliveryStatus, EventState, NoticeKind
from dashboard.models import AlertDelivery, AlertEvent, AlertRule


@pytest.fixture
def budget(db) -> Budget:
    return Budget.objects.create(
        name="growth monthly", scope="team", scope_value="growth", limit=Decimal("10"), soft_limit_percent=80
    )


def period_start(budget: Budget) -> datetime:
    return period_bounds(budget.period, timezone.now(), settings.BILLING_TIME_ZONE)[0]


def crossed(budget: Budget, level: str, spent: str) -> None:
    """What the gateway queues when a reservation finds `budget` past `level`."""
    budget_alert_raise_task.delay(budget.id, period_start(budget).isoformat(), level, spent)


def budget_rule(**fields: object) -> AlertRule:
    defaults: dict[str, object] = {"name": "budgets", "metric": "budget", "comparator": "gte", "threshold": 0}
    return AlertRule.objects.create(**{**defaults, **fields})


def test_a_soft_limit_crossed_raises_one_event_notified_on_the_budget_rules_channels(
    budget, webhook_receiver, django_capture_on_commit_callbacks
):
    rule = budget_rule(webhook_url=webhook_receiver.url, email_to="finance@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "soft", "8.5")
        crossed(budget, "soft", "8.7")  # another worker announcing the same crossing

    [event] = AlertEvent.objects.all()
    assert (event.rule, event.state, event.value, event.threshold) == (rule, EventState.FIRING, 85.0, 80)
    assert event.budget_alert == BudgetAlert.objects.get(budget=budget, level="soft")
    assert event.notified
    text = (
        "[FIRING] Budget 'growth monthly': soft limit reached (team 'growth', per month): "
        "Spent and held: 85.0 % of its limit (alerts at 80.0 % of its limit)"
    )
    assert [r["json"]["text"] for r in webhook_receiver.received] == [text]
    [message] = mail.outbox
    assert message.to == ["finance@example.com"]
    assert (
        message.subject == "CascadeOps [FIRING] Budget 'growth monthly': soft limit reached (team 'growth', per month)"
    )
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


def test_each_level_is_its_own_event_and_a_rule_can_hear_only_limits_reached(
    budget, webhook_receiver, django_capture_on_commit_callbacks
):
    budget_rule(name="everything", webhook_url=webhook_receiver.url)
    budget_rule(name="limits only", threshold=100, email_to="cfo@example.com")

    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "soft", "8")
        crossed(budget, "hard", "10.2")

    soft, hard = (AlertEvent.objects.get(budget_alert__level=level) for level in ("soft", "hard"))
    assert (soft.state, hard.state) == (EventState.FIRING, EventState.FIRING)
    assert hard.value == pytest.approx(102.0) and hard.threshold == 100
    assert list(soft.deliveries.values_list("channel", flat=True)) == ["webhook"]
    assert sorted(hard.deliveries.values_list("channel", flat=True)) == ["email", "webhook"]
    assert [m.to for m in mail.outbox] == [["cfo@example.com"]]
    assert "limit reached" in mail.outbox[0].subject


def test_without_a_budget_rule_the_event_shows_on_the_dashboard_anyway(
    budget, client, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "hard", "10")

    [event] = AlertEvent.objects.all()
    assert event.rule.name == BUILT_IN_RULE_NAME and event.rule.metric == "budget"
    assert not event.deliveries.exists() and not event.notified
    client.force_login(operator)
    page = client.get(reverse("dashboard:home")).content.decode()
    assert "Budget limits: growth monthly, limit reached" in page

    # Where operators say how they want to hear of the next one.
    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "soft", "8")
    assert AlertRule.objects.filter(metric="budget").count() == 1


def test_a_disabled_budget_rule_records_the_event_but_sends_nothing(
    budget, webhook_receiver, django_capture_on_commit_callbacks
):
    rule = budget_rule(enabled=False, webhook_url=webhook_receiver.url)

    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "soft", "9")

    assert AlertEvent.objects.get().rule == rule
    assert webhook_receiver.received == []


def test_the_minute_evaluation_raises_an_event_whose_signal_was_lost(
    budget, webhook_receiver, django_capture_on_commit_callbacks
):
    budget_rule(webhook_url=webhook_receiver.url)
    crossed(budget, "soft", "8")  # its commit callbacks (the signal) never run: as if the worker died
    assert BudgetAlert.objects.exists() and not AlertEvent.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        services.alert_rules_evaluate()
        services.alert_rules_evaluate(now=timezone.now() + timedelta(minutes=1))

    assert AlertEvent.objects.get().budget_alert.level == "soft"
    assert len(webhook_receiver.received) == 1


def test_the_event_resolves_when_the_budget_period_ends(budget, webhook_receiver, django_capture_on_commit_callbacks):
    budget_rule(webhook_url=webhook_receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "soft", "8")
    end = period_bounds(budget.period, timezone.now(), settings.BILLING_TIME_ZONE)[1]

    with django_capture_on_commit_callbacks(execute=True):
        services.alert_rules_evaluate(now=end - timedelta(minutes=1))
        assert AlertEvent.objects.get().state == EventState.FIRING
        services.alert_rules_evaluate(now=end + timedelta(minutes=1))
        services.alert_rules_evaluate(now=end + timedelta(minutes=2))

    event = AlertEvent.objects.get()
    assert (event.state, event.resolved_at) == (EventState.RESOLVED, end)
    assert list(event.deliveries.order_by("created").values_list("kind", flat=True)) == [
        NoticeKind.FIRING,
        NoticeKind.RESOLVED,
    ]
    assert webhook_receiver.received[-1]["json"]["text"].startswith("[RESOLVED] Budget 'growth monthly'")


def test_a_disabled_budgets_alert_stops_firing(budget, webhook_receiver, django_capture_on_commit_callbacks):
    budget_rule(webhook_url=webhook_receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "soft", "8")
    budget.enabled = False
    budget.save()
    now = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        services.alert_rules_evaluate(now=now)

    event = AlertEvent.objects.get()
    assert (event.state, event.resolved_at) == (EventState.RESOLVED, now)
    assert webhook_receiver.received[-1]["json"]["text"].startswith("[RESOLVED] Budget 'growth monthly'")


def test_a_disabled_budget_raises_no_new_alert(budget, webhook_receiver, django_capture_on_commit_callbacks):
    budget_rule(webhook_url=webhook_receiver.url)
    budget.enabled = False
    budget.save()

    with django_capture_on_commit_callbacks(execute=True):
        crossed(budget, "limit", "10")  # queued by a worker before it saw the budget switched off
        services.alert_rules_evaluate()

    assert not AlertEvent.objects.exists()
    assert webhook_receiver.received == []
