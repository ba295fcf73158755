"""The admin: SLA targets and alert rules edited, events acknowledged, deliveries re-sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.alerts import services
from dashboard.choices import DeliveryStatus
from dashboard.models import AlertDelivery, AlertEvent, AlertRule, SlaTarget


@pytest.fixture
def event(db) -> AlertEvent:
    rule = AlertRule.objects.create(name="costly", metric="hourly_cost", threshold=1, email_to="oncall@example.com")
    return AlertEvent.objects.create(rule=rule, value=2, threshold=1, started_at=timezone.now())


@pytest.mark.parametrize("model", ["slatarget", "alertrule", "alertevent", "alertdelivery"])
def test_every_dashboard_model_has_an_admin_list(admin_client, event, model):
    AlertDelivery.objects.create(event=event, kind="firing", channel="email", target="oncall@example.com")

    assert admin_client.get(reverse(f"admin:dashboard_{model}_changelist")).status_code == 200


def test_sla_targets_are_added_in_the_admin_with_the_defaults(admin_client, traffic):
    form = admin_client.get(reverse("admin:dashboard_slatarget_add")).content.decode()
    assert 'name="p95_ms" value="2500"' in form

    admin_client.post(
        reverse("admin:dashboard_slatarget_add"),
        {
            "policy": traffic.policy.id,
            "p50_ms": 800,
            "p95_ms": 2000,
            "p99_ms": 2800,
            "min_quality": 0.9,
            "max_cost_per_request": "0.006",
            "min_availability_pct": 99.9,
            "max_escalation_rate_pct": 15,
        },
    )

    assert SlaTarget.objects.get(policy=traffic.policy).p95_ms == 2000


def test_an_alert_rule_with_a_bad_address_is_refused(admin_client, db):
    response = admin_client.post(
        reverse("admin:dashboard_alertrule_add"),
        {
            "name": "slow",
            "enabled": "on",
            "metric": "p95_latency",
            "comparator": "gt",
            "threshold": 2500,
            "window_minutes": 15,
            "trailing_windows": 24,
            "cooldown_minutes": 60,
            "email_to": "oncall@example.com, nobody",
        },
    )

    assert response.status_code == 200
    assert "Not an e-mail address: nobody" in response.content.decode()
    assert not AlertRule.objects.exists()


def test_events_are_acknowledged_from_the_admin(admin_client, admin_user, event):
    admin_client.post(
        reverse("admin:dashboard_alertevent_changelist"),
        {"action": "acknowledge", "_selected_action": [event.id]},
    )

    event.refresh_from_db()
    assert event.acknowledged_by == admin_user


def test_a_delivery_that_gave_up_is_sent_again_from_the_admin(admin_client, event, django_capture_on_commit_callbacks):
    from django.core import mail

    delivery = AlertDelivery.objects.create(
        event=event, kind="firing", channel="email", target="oncall@example.com", status="failed", attempts=6
    )

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:dashboard_alertdelivery_changelist"),
            {"action": "retry", "_selected_action": [delivery.id]},
        )

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 7
    assert len(mail.outbox) == 1


def test_a_delivery_whose_task_was_lost_is_queued_again(event, django_capture_on_commit_callbacks):
    from django.core import mail

    delivery = AlertDelivery.objects.create(event=event, kind="firing", channel="email", target="oncall@example.com")
    AlertDelivery.objects.filter(id=delivery.id).update(updated=timezone.now() - timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        services.alert_rules_evaluate(now=timezone.now())

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert [m.to for m in mail.outbox] == [["oncall@example.com"]]
