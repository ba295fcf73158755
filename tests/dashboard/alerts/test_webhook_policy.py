"""Alert webhooks follow the outbound URL policy when saved and again when sent."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from common import outbound
from dashboard.alerts import services
from dashboard.choices import DeliveryStatus
from dashboard.models import AlertDelivery, AlertRule

NOW = datetime(2025, 3, 4, 10, 30, 20, tzinfo=UTC)
METADATA_HOOK = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


@pytest.fixture(autouse=True)
def sent_as_a_worker_does():
    """Eager tasks that propagate exceptions would raise Celery's Retry instead of retrying."""
    from cascadeops.celery import app

    propagates = app.conf.task_eager_propagates
    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = propagates


def test_a_rule_with_a_metadata_webhook_does_not_validate(db) -> None:
    rule = AlertRule(name="r", metric="escalation_rate", threshold=1.0, webhook_url=METADATA_HOOK)

    with pytest.raises(ValidationError) as caught:
        rule.full_clean()

    assert "metadata" in str(caught.value.message_dict["webhook_url"])


def test_the_api_refuses_a_metadata_webhook(api, db) -> None:
    body = {"name": "r", "metric": "escalation_rate", "threshold": 1.0, "webhook_url": METADATA_HOOK}

    response = api.post("/api/dashboard/alert-rules/", body, format="json")

    assert response.status_code == 400
    assert "metadata" in str(response.json()["webhook_url"])
    assert not AlertRule.objects.exists()


def test_a_webhook_whose_name_now_resolves_to_the_metadata_service_is_not_sent(
    traffic, webhook_receiver, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    # Saved while the name pointed elsewhere; by the time it fires, DNS says 169.254.169.254.
    url = webhook_receiver.url.replace("127.0.0.1", "hooks.example.com")
    AlertRule.objects.create(name="r", metric="escalation_rate", threshold=20.0, window_minutes=10, webhook_url=url)
    monkeypatch.setattr(outbound, "resolve", lambda host: [ipaddress.ip_address("169.254.169.254")])
    traffic.send(3, created=NOW, escalated=True)

    with django_capture_on_commit_callbacks(execute=True):
        services.alert_rules_evaluate(now=NOW)

    delivery = AlertDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert "outbound URL policy" in delivery.last_error and "metadata" in delivery.last_error
    assert webhook_receiver.received == []


def test_a_failed_webhook_keeps_its_status_line_not_its_body(
    traffic, webhook_receiver, django_capture_on_commit_callbacks
) -> None:
    webhook_receiver.fail_next = 100  # its body says "receiver is down"
    AlertRule.objects.create(
        name="r", metric="escalation_rate", threshold=20.0, window_minutes=10, webhook_url=webhook_receiver.url
    )
    traffic.send(3, created=NOW, escalated=True)

    with django_capture_on_commit_callbacks(execute=True):
        services.alert_rules_evaluate(now=NOW)

    delivery = AlertDelivery.objects.get()
    assert delivery.last_error == "HTTP 503 Service Unavailable"
