"""Alert rules: evaluated every minute, firing → resolved, notified once per cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openai
import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from dashboard.alerts import rules as alerts
from dashboard.alerts import selectors, services
from dashboard.alerts.tasks import alerts_evaluate
from dashboard.choices import DeliveryStatus, EventState, NoticeKind
from dashboard.models import AlertDelivery, AlertEvent, AlertRule
from routing.demo import demo_seed
from routing.providers.local import replay_prompts
from tests.conftest import flush_records
from tests.dashboard.traffic import Traffic

NOW = datetime(2025, 3, 4, 10, 30, 20, tzinfo=UTC)


def rule(**fields) -> AlertRule:
    defaults = {"name": "too many escalations", "metric": "escalation_rate", "threshold": 20.0, "window_minutes": 10}
    return AlertRule.objects.create(**{**defaults, **fields})


def evaluate(at: datetime) -> None:
    """Evaluate every rule as beat's minute task does, at `at`, running on-commit sends."""
    services.alert_rules_evaluate(now=at)


def value_of(r: AlertRule, at: datetime = NOW) -> float | None:
    return selectors.alert_metric_value(rule=r, now=at)


# --- metrics --------------------------------------------------------------------------


def test_rates_are_measured_over_the_rule_window(traffic):
    traffic.send(3, created=NOW - timedelta(minutes=2))
    traffic.send(1, created=NOW - timedelta(minutes=2), escalated=True)
    traffic.send(5, created=NOW - timedelta(minutes=30), escalated=True)  # outside the window

    assert value_of(rule(metric="escalation_rate")) == 25.0
    assert value_of(rule(metric="cheap_tier_acceptance")) == 75.0
    assert value_of(rule(metric="error_rate")) == 0.0


def test_hourly_cost_is_the_window_cost_as_a_rate_per_hour(traffic):
    traffic.send(2, created=NOW - timedelta(minutes=1), cost="0.05")

    assert value_of(rule(metric="hourly_cost", window_minutes=10)) == pytest.approx(0.6)
    assert value_of(rule(metric="hourly_cost", window_minutes=60)) == pytest.approx(0.1)


def test_p95_latency_and_mean_quality(traffic):
    for ms in range(1, 21):
        traffic.send(1, created=NOW, latency_ms=ms * 100.0, quality_label=1.0 if ms > 5 else 0.0)

    assert value_of(rule(metric="p95_latency")) == pytest.approx(1900, rel=0.02)
    assert value_of(rule(metric="mean_quality")) == pytest.approx(0.75)


def test_no_traffic_is_no_data(traffic):
    assert value_of(rule(metric="escalation_rate")) is None
    assert value_of(rule(metric="p95_latency")) is None


def test_a_cost_spike_is_measured_in_standard_deviations_from_the_trailing_windows(traffic):
    r = rule(metric="cost_anomaly", threshold=3.0, window_minutes=5, trailing_windows=6)
    end = NOW.replace(second=0)
    for i, cost in enumerate(["0.010", "0.012", "0.008", "0.011", "0.009", "0.010"]):
        traffic.send(1, created=end - timedelta(minutes=5 * (i + 2)), cost=cost)
    traffic.send(1, created=end - timedelta(minutes=3), cost="0.100")

    value = value_of(r)

    assert value == pytest.approx((0.1 - 0.01) / 0.0012909944, rel=1e-4)
    assert alerts.breaches(value, r.comparator, r.threshold)


def test_daily_cost_as_a_percentage_of_the_budget(traffic, monkeypatch):
    r = rule(metric="daily_budget_pct", threshold=80)
    traffic.send(3, created=NOW - timedelta(hours=1), cost="1.00")
    assert value_of(r) is None  # no budget, no percentage

    monkeypatch.setattr(selectors, "budget_daily_get", lambda *, policy_id: Decimal("10"))

    assert value_of(r) == pytest.approx(30.0)


# --- states and notifications ---------------------------------------------------------


def test_a_rule_fires_once_and_resolves_when_the_condition_ends(
    traffic, webhook_receiver, django_capture_on_commit_callbacks
):
    rule(webhook_url=webhook_receiver.url, cooldown_minutes=60)
    traffic.send(4, created=NOW - timedelta(minutes=1), escalated=True)

    with django_capture_on_commit_callbacks(execute=True):
        evaluate(NOW)
        evaluate(NOW + timedelta(minutes=1))  # still firing: no second event, nothing re-sent
    [event] = AlertEvent.objects.all()
    assert event.state == EventState.FIRING and event.value == 100.0
    assert [d["json"]["text"] for d in webhook_receiver.received] == [
        "[FIRING] too many escalations (every policy): Escalation rate (%): 100.0 % (rule: > 20.0 %)"
    ]

    traffic.send(40, created=NOW + timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        evaluate(NOW + timedelta(minutes=2))

    event.refresh_from_db()
    assert event.state == EventState.RESOLVED and event.resolved_at == NOW + timedelta(minutes=2)
    assert webhook_receiver.received[-1]["json"]["text"].startswith("[RESOLVED] too many escalations")
    assert list(AlertDelivery.objects.values_list("kind", "status")) == [
        (NoticeKind.RESOLVED, DeliveryStatus.SENT),
        (NoticeKind.FIRING, DeliveryStatus.SENT),
    ]


def test_a_rule_that_fires_again_within_its_cooldown_is_not_re_sent(traffic, django_capture_on_commit_callbacks):
    r = rule(email_to="oncall@example.com", cooldown_minutes=30)
    with django_capture_on_commit_callbacks(execute=True):
        traffic.send(2, created=NOW, escalated=True)
        evaluate(NOW)  # fires: sent
        traffic.send(40, created=NOW + timedelta(minutes=1))
        evaluate(NOW + timedelta(minutes=1))  # resolves: sent (whoever heard it fire hears it end)
        traffic.send(60, created=NOW + timedelta(minutes=5), escalated=True)
        evaluate(NOW + timedelta(minutes=5))  # fires again, within the cooldown: recorded, not sent

    assert AlertEvent.objects.count() == 2
    assert [m.subject for m in mail.outbox] == [
        "CascadeOps [FIRING] too many escalations (every policy)",
        "CascadeOps [RESOLVED] too many escalations (every policy)",
    ]
    assert not AlertEvent.objects.get(state=EventState.FIRING).notified

    traffic.send(5, created=NOW + timedelta(minutes=31), escalated=True)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate(NOW + timedelta(minutes=32))  # the cooldown is over and it still fires

    assert mail.outbox[-1].subject == "CascadeOps [FIRING] too many escalations (every policy)"
    assert mail.outbox[-1].to == ["oncall@example.com"]
    assert r.events.count() == 2


def test_an_unacknowledged_event_is_re_sent_once_per_cooldown_and_an_acknowledged_one_is_not(
    traffic, operator, django_capture_on_commit_callbacks
):
    rule(email_to="oncall@example.com", cooldown_minutes=10, window_minutes=60)
    traffic.send(5, created=NOW, escalated=True)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate(NOW)
        evaluate(NOW + timedelta(minutes=5))
        evaluate(NOW + timedelta(minutes=11))
    assert [m.subject.split("]")[0] for m in mail.outbox] == ["CascadeOps [FIRING", "CascadeOps [STILL FIRING"]

    services.alert_event_acknowledge(event=AlertEvent.objects.get(), user=operator)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate(NOW + timedelta(minutes=25))

    assert len(mail.outbox) == 2


def test_a_rule_is_evaluated_once_per_minute_however_often_beat_runs(traffic):
    r = rule()

    assert services.alert_rules_evaluate(now=NOW) == 1
    assert services.alert_rules_evaluate(now=NOW + timedelta(seconds=30)) == 0
    assert services.alert_rules_evaluate(now=NOW + timedelta(seconds=39)) == 0
    r.refresh_from_db()
    assert r.last_evaluated_at == NOW
    assert services.alert_rules_evaluate(now=NOW + timedelta(seconds=40)) == 1  # the next minute


def test_a_policy_rule_watches_only_its_policy(traffic):
    other = Traffic.for_new_policy("other", app="search")
    traffic.send(5, created=NOW, escalated=True)
    other.send(5, created=NOW)

    assert value_of(rule(policy=other.policy)) == 0.0
    assert value_of(rule(policy=traffic.policy)) == 100.0
    assert value_of(rule()) == 50.0


def test_a_disabled_rule_is_not_evaluated(traffic):
    rule(enabled=False)
    traffic.send(5, created=NOW, escalated=True)

    assert services.alert_rules_evaluate(now=NOW) == 0
    assert not AlertEvent.objects.exists()


# --- webhooks that fail ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def retries_as_a_worker_runs_them():
    """Eager tasks that propagate exceptions would raise Celery's Retry instead of retrying."""
    from cascadeops.celery import app

    propagates = app.conf.task_eager_propagates
    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = propagates


def test_a_failing_webhook_is_retried_with_backoff_until_it_answers(
    traffic, webhook_receiver, django_capture_on_commit_callbacks
):
    webhook_receiver.fail_next = 2
    rule(webhook_url=webhook_receiver.url)
    traffic.send(3, created=NOW, escalated=True)

    with django_capture_on_commit_callbacks(execute=True):
        evaluate(NOW)

    [delivery] = AlertDelivery.objects.all()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 3
    assert delivery.last_error == "HTTP 503 Service Unavailable"  # the status line, never the body
    assert len(webhook_receiver.received) == 3


def test_a_webhook_that_keeps_failing_is_given_up_and_shown(
    client, operator, traffic, webhook_receiver, django_capture_on_commit_callbacks
):
    webhook_receiver.fail_next = 100
    rule(webhook_url=webhook_receiver.url)
    traffic.send(3, created=timezone.now(), escalated=True)

    with django_capture_on_commit_callbacks(execute=True):
        evaluate(timezone.now())

    [delivery] = AlertDelivery.objects.all()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == alerts.DELIVERY_MAX_RETRIES + 1
    client.force_login(operator)
    page = client.get("/").content.decode()
    assert "Notifications failing" in page and "HTTP 503 Service Unavailable" in page
    assert "secret" not in page  # a webhook URL's path is its secret: only the host is shown


def test_an_unreachable_webhook_is_a_failure_too(traffic, django_capture_on_commit_callbacks):
    rule(webhook_url="http://127.0.0.1:9/nothing-listens-here")
    traffic.send(3, created=NOW, escalated=True)

    with django_capture_on_commit_callbacks(execute=True):
        evaluate(NOW)

    delivery = AlertDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error.startswith("ConnectError")


def test_retries_back_off_exponentially_to_a_cap():
    assert [alerts.backoff_seconds(n) for n in range(7)] == [30, 60, 120, 240, 480, 900, 900]


def test_the_webhook_body_is_slack_compatible():
    notice = alerts.Notice(
        kind="firing",
        rule="p95 too slow",
        metric="p95_latency",
        comparator="gt",
        threshold=2500,
        value=3120.4,
        scope="demo",
        started_at=NOW,
    )

    body = alerts.slack_body(notice)

    assert body["text"] == "[FIRING] p95 too slow (demo): p95 latency (ms): 3.12 s (rule: > 2.50 s)"
    [attachment] = body["attachments"]
    assert attachment["color"] == "#d92d20" and attachment["ts"] == int(NOW.timestamp())


# --- end to end -----------------------------------------------------------------------

MIXTRAL_WRONG = "Lisa and Peter are selling chocolate bars door to door."


@pytest.mark.live
def test_traffic_that_breaks_a_rule_makes_exactly_one_event_and_one_delivery(
    live_gateway, webhook_receiver, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    credentials = demo_seed()
    AlertRule.objects.create(
        name="escalations above 20 %",
        metric="escalation_rate",
        comparator="gt",
        threshold=20,
        window_minutes=5,
        cooldown_minutes=60,
        webhook_url=webhook_receiver.url,
    )
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=credentials.api_key, max_retries=0)
    prompt = next(p for p in replay_prompts() if p.startswith(MIXTRAL_WRONG))  # Mixtral is wrong: escalates

    for _ in range(3):
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": prompt}], extra_headers={"Cache-Control": "no-store"}
        )
    flush_records()
    alerts_evaluate.delay()
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        alerts_evaluate.delay()  # beat's next minute: still firing, within the cooldown

    [event] = AlertEvent.objects.all()
    assert event.state == EventState.FIRING and event.value == 100.0
    assert AlertDelivery.objects.get().status == DeliveryStatus.SENT
    [received] = webhook_receiver.received
    assert received["path"] == "/services/T000/B000/secret"
    assert received["json"]["text"].startswith("[FIRING] escalations above 20 % (every policy)")
