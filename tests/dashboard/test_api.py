"""The dashboard's REST API: rollups (read), SLA targets, alert rules, events and deliveries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from billing.permissions import FINANCE, OPERATOR
from dashboard.models import AlertEvent, AlertRule, SlaTarget

T0 = datetime(2025, 3, 4, 10, 15, tzinfo=UTC)


def test_rollups_are_listed_with_their_percentiles_and_filtered(api, traffic):
    traffic.send(4, created=T0, latency_ms=250)

    response = api.get(
        "/api/dashboard/rollups/", {"resolution": "minute", "policy": "demo", "since": "2025-03-04T10:00Z"}
    )

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["requests"] == 4 and row["model"] == "replay-mixtral"
    assert row["p95_ms"] == pytest.approx(250, rel=0.011)


def test_a_bad_rollup_filter_is_a_400_naming_it(api, db):
    response = api.get("/api/dashboard/rollups/", {"resolution": "second", "since": "yesterday"})

    assert response.status_code == 400
    assert set(response.json()) == {"resolution", "since"}


def test_it_filters_rollups_by_resolution_and_bucket_window(api, traffic):
    for minute in (10, 15, 45):
        traffic.send(1, created=T0.replace(minute=minute))

    response = api.get(
        "/api/dashboard/rollups/",
        {"resolution": "minute", "since": "2025-03-04T10:15:00Z", "until": "2025-03-04T10:45:00+00:00"},
    )

    assert response.status_code == 200, response.json()
    assert [row["bucket"] for row in response.json()["results"]] == ["2025-03-04T10:15:00Z"]


def test_it_filters_rollups_by_policy_name(api, traffic):
    traffic.send(1, created=T0)

    assert api.get("/api/dashboard/rollups/", {"policy": "demo"}).json()["count"] == 2  # a minute and an hour
    assert api.get("/api/dashboard/rollups/", {"policy": "other"}).json()["count"] == 0


@pytest.mark.parametrize(
    ("param", "value", "reason"), [("resolution", "second", "valid choice"), ("until", "2025-03-04T25:00Z", "ISO 8601")]
)
def test_it_answers_400_with_the_reason_for_a_bad_rollup_filter(api, db, param, value, reason):
    response = api.get("/api/dashboard/rollups/", {param: value})

    assert response.status_code == 400
    assert reason in response.json()[param][0]


def test_listing_rollups_takes_the_same_queries_however_many_rows(api, traffic, django_assert_num_queries):
    traffic.send(1, created=T0)
    with django_assert_num_queries(2):  # count, page
        api.get("/api/dashboard/rollups/")
    for minute in range(30):
        traffic.send(1, created=T0.replace(minute=minute))
    with django_assert_num_queries(2):
        api.get("/api/dashboard/rollups/")


def test_sla_targets_are_created_per_policy_with_the_mangaassist_defaults(api, traffic):
    response = api.post("/api/dashboard/sla-targets/", {"policy": traffic.policy.id}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["p50_ms"], body["p95_ms"], body["p99_ms"]) == (1000, 2500, 3000)
    assert (body["min_quality"], body["max_cost_per_request"]) == (0.9, "0.006000")
    assert (body["min_availability_pct"], body["max_escalation_rate_pct"]) == (99.9, 15.0)


def test_there_is_one_default_sla_target_row(api, db):
    SlaTarget.objects.create()

    response = api.post("/api/dashboard/sla-targets/", {"policy": None}, format="json")

    assert response.status_code == 400


def test_alert_rules_are_edited_through_the_api(api, traffic):
    created = api.post(
        "/api/dashboard/alert-rules/",
        {
            "name": "slow",
            "metric": "p95_latency",
            "comparator": "gt",
            "threshold": 2500,
            "window_minutes": 15,
            "policy": traffic.policy.id,
            "email_to": "oncall@example.com, lead@example.com",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()

    changed = api.patch(created.json()["url"], {"threshold": 3000, "email_to": "not an address"}, format="json")

    assert changed.status_code == 400
    assert "email_to" in changed.json()
    assert AlertRule.objects.get().threshold == 2500


def test_an_event_is_acknowledged_through_the_api(api, operator, db):
    rule = AlertRule.objects.create(name="costly", metric="hourly_cost", threshold=1)
    event = AlertEvent.objects.create(rule=rule, value=2, threshold=1, started_at=timezone.now())

    response = api.post(f"/api/dashboard/alert-events/{event.id}/acknowledge/")

    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == operator.id


@pytest.mark.parametrize(("group", "status"), [(OPERATOR, 200), (FINANCE, 403)])
def test_a_member_of_the_operator_group_acknowledges_an_event_and_finance_may_not(django_user_model, db, group, status):
    rule = AlertRule.objects.create(name="costly", metric="hourly_cost", threshold=1)
    event = AlertEvent.objects.create(rule=rule, value=2, threshold=1, started_at=timezone.now())
    member = django_user_model.objects.create_user("member", password="x", is_staff=True)
    member.groups.add(Group.objects.get(name=group))
    client = APIClient()
    client.force_authenticate(member)

    response = client.post(f"/api/dashboard/alert-events/{event.id}/acknowledge/")

    assert response.status_code == status
    event.refresh_from_db()
    assert (event.acknowledged_by_id == member.id) is (status == 200)


def test_reading_needs_the_view_permission(django_user_model, db):
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("intern", password="x"))

    for path in ("rollups", "sla-targets", "alert-rules", "alert-events", "alert-deliveries"):
        assert client.get(f"/api/dashboard/{path}/").status_code == 403, path
