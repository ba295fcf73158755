"""Operator pages: who may see them, what they show, and how many queries they make."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from dashboard.models import AlertEvent, AlertRule, SlaTarget
from tests.dashboard.traffic import Traffic

# A page reads: the session, the user, the policies, the window's rollups, today's hour
# rollups, the top apps, the top end users, the SLA targets, the alert events, the
# failing deliveries, the day budget, the configuration changes to mark and the semantic
# cache's checks. Never the request records: the count does not grow with traffic.
PAGE_QUERIES = 13


def test_an_anonymous_visitor_is_sent_to_the_login_page(client, db):
    response = client.get(reverse("dashboard:home"))

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_user_without_the_dashboard_permission_gets_403(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("intern", password="x"))

    assert client.get(reverse("dashboard:home")).status_code == 403


def test_a_user_given_the_view_permission_sees_the_dashboard(client, django_user_model):
    user = django_user_model.objects.create_user("watcher", password="x")
    user.user_permissions.add(Permission.objects.get(codename="view_rollup"))
    client.force_login(user)

    assert client.get(reverse("dashboard:home")).status_code == 200


def test_the_dashboard_draws_every_chart_from_the_rollups(client, operator, traffic):
    traffic.send(3, latency_ms=200)
    traffic.send(1, escalated=True, latency_ms=2000)
    client.force_login(operator)

    response = client.get(reverse("dashboard:home"))

    assert response.status_code == 200
    figs = response.context["figures"]
    assert set(figs) == {"cost", "today", "escalation", "tiers", "cache", "latency", "quality", "errors"}
    escalation = figs["escalation"]["data"][0]["y"]
    assert len(escalation) == 60 and [y for y in escalation if y is not None] == [25.0]  # idle minutes are gaps
    assert [t["meta"] for t in figs["tiers"]["data"]] == ["tier:0:replay-mixtral", "tier:1:replay-gpt-4"]
    assert [t["meta"] for t in figs["latency"]["data"]] == ["p50", "p95", "p99"]
    targets = [s["y0"] for s in figs["latency"]["layout"]["shapes"] if s["xref"] == "paper"]
    assert targets == [1000, 2500, 3000]
    page = response.content.decode()
    assert 'id="chart-cost"' in page and "dashboard/vendor/plotly.min.js" in page
    assert "growth/support-bot" in page  # top spenders
    assert "p95 latency" in page  # the compliance panel


def test_the_policy_view_shows_that_policy_against_its_own_targets(client, operator, traffic):
    other = Traffic.for_new_policy("other", app="search")
    traffic.send(2)
    other.send(5)
    SlaTarget.objects.create(policy=other.policy, p95_ms=400)
    client.force_login(operator)

    response = client.get(reverse("dashboard:policy", args=[other.policy.id]))

    assert response.context["board"].window_totals.requests == 5
    shapes = response.context["figures"]["latency"]["layout"]["shapes"]
    latency_lines = [s["y0"] for s in shapes if s["xref"] == "paper"]  # the targets, not the change markers
    assert latency_lines == [1000, 400, 3000]
    assert response.context["config"]["subscriptions"][0] == {"subscribe": "policy", "policy": other.policy.id}


def test_an_unknown_policy_is_404(client, operator):
    client.force_login(operator)

    assert client.get(reverse("dashboard:policy", args=[999])).status_code == 404


def test_a_day_long_window_reads_the_hour_rollups(client, operator, traffic):
    traffic.send(2, created=timezone.now() - timedelta(hours=5))
    client.force_login(operator)

    response = client.get(reverse("dashboard:home"), {"window": "24h"})

    assert response.context["board"].window.resolution == "hour"
    assert response.context["board"].window_totals.requests == 2
    assert response.context["config"]["windowMinutes"] == 24 * 60


def test_the_compliance_panel_says_which_targets_hold(client, operator, traffic):
    traffic.send(9, latency_ms=300, cost="0.001", quality_label=1.0)
    traffic.send(1, failed=True)
    client.force_login(operator)

    checks = {c.name: c for c in client.get(reverse("dashboard:home")).context["board"].compliance}

    assert checks["p95 latency"].holds is True
    assert checks["Cost per request"].holds is True
    assert checks["Quality"].holds is True
    assert checks["Availability"].holds is False
    assert checks["Availability"].actual == "90.00 %"


@pytest.mark.parametrize("name", ["dashboard:home", "dashboard:data"])
def test_a_page_makes_the_same_few_queries_with_ten_records_or_a_thousand(
    name, client, operator, traffic, django_assert_num_queries
):
    client.force_login(operator)
    traffic.send(10)
    with django_assert_num_queries(PAGE_QUERIES):
        assert client.get(reverse(name)).status_code == 200

    for minutes_ago in range(0, 50):
        traffic.store([traffic.payload(created=timezone.now() - timedelta(minutes=minutes_ago)) for _ in range(20)])
    with django_assert_num_queries(PAGE_QUERIES):
        assert client.get(reverse(name)).status_code == 200


def test_the_policy_page_makes_the_same_few_queries(client, operator, traffic, django_assert_num_queries):
    traffic.send(10)
    client.force_login(operator)

    with django_assert_num_queries(PAGE_QUERIES):
        client.get(reverse("dashboard:policy", args=[traffic.policy.id]))


def test_the_data_endpoint_returns_figures_and_panels(client, operator, traffic):
    traffic.send(2)
    client.force_login(operator)

    data = client.get(reverse("dashboard:data"), {"window": "6h"}).json()

    assert set(data["figures"]) >= {"cost", "latency"}
    assert set(data["html"]) == {"tiles", "top", "alerts", "compliance", "semantic"}
    assert "last 6 hours" in data["html"]["compliance"]


def test_an_operator_acknowledges_a_firing_event(client, operator, db):
    rule = AlertRule.objects.create(name="costly", metric="hourly_cost", threshold=1)
    event = AlertEvent.objects.create(rule=rule, value=2, threshold=1, started_at=timezone.now())
    client.force_login(operator)
    url = reverse("dashboard:alert-acknowledge", args=[event.id])

    assert client.get(url).status_code == 405
    assert client.post(url).json() == {"acknowledged": True, "by": "operator"}
    event.refresh_from_db()
    assert event.acknowledged_by == operator and event.acknowledged_at is not None


def test_a_day_budget_on_the_policy_is_the_budget_line(traffic):
    from decimal import Decimal

    from billing.models import Budget
    from dashboard.rollups.selectors import budget_daily_get
    from routing.models import Policy

    policy = Policy.objects.first()
    assert budget_daily_get(policy_id=policy.id) is None
    Budget.objects.create(name="p-day", scope="policy", scope_value=policy.name, period="day", limit=Decimal("5"))
    Budget.objects.create(name="p-tight", scope="policy", scope_value=policy.name, period="day", limit=Decimal("3"))
    Budget.objects.create(name="p-month", scope="policy", scope_value=policy.name, period="month", limit=Decimal("1"))
    Budget.objects.create(name="all", scope="global", period="day", limit=Decimal("9"))

    assert budget_daily_get(policy_id=policy.id) == Decimal("3")
    assert budget_daily_get(policy_id=None) == Decimal("9")


def test_configuration_changes_are_marked_on_every_chart(client, operator, traffic):
    from common.audit.models import AuditEntry

    traffic.send(2)
    AuditEntry.objects.create(
        source="admin", action="update", object_type="routing.policytier", object_id="1",
        object_repr="demo tier 0 (threshold 0.8)",
    )  # fmt: skip
    AuditEntry.objects.create(source="admin", action="update", object_type="billing.budget", object_id="1")
    client.force_login(operator)

    figs = client.get(reverse("dashboard:home")).context["figures"]

    for name, fig in figs.items():
        labels = [s["label"]["text"] for s in fig["layout"].get("shapes", []) if s.get("xref") == "x"]
        assert "update tier demo tier 0 (threshold 0.8)" in labels, name
        assert "create policy demo" in labels, name  # the traffic fixture made it
        assert not any("budget" in label for label in labels), name  # not a routing change


def test_a_custom_time_range_shows_those_buckets_and_does_not_follow_live(client, operator, traffic):
    start = timezone.localtime().replace(second=0, microsecond=0) - timedelta(hours=3)
    traffic.send(2, created=start + timedelta(minutes=30))
    traffic.send(5)  # now: outside the range
    client.force_login(operator)
    since, until = f"{start:%Y-%m-%dT%H:%M}", f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M}"

    response = client.get(reverse("dashboard:home"), {"since": since, "until": until})

    assert response.status_code == 200
    board = response.context["board"]
    assert (board.window.key, board.window.resolution, board.window_totals.requests) == ("custom", "minute", 2)
    assert response.context["config"]["live"] is False
    assert response.context["config"]["dataUrl"].endswith(
        f"?since={since.replace(':', '%3A')}&until={until.replace(':', '%3A')}"
    )
    x_range = response.context["figures"]["cost"]["layout"]["xaxis"]["range"]
    assert x_range == [f"{start:%Y-%m-%d %H:%M}", f"{start + timedelta(hours=1):%Y-%m-%d %H:%M}"]


def test_a_long_custom_range_reads_hour_rollups(client, operator, traffic):
    client.force_login(operator)

    response = client.get(reverse("dashboard:data"), {"since": "2025-03-01T00:00", "until": "2025-03-08T00:00"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2025-03-02T00:00", "until": "2025-03-01T00:00"},
        {"since": "yesterday"},
        {"since": "2025-01-01T00:00", "until": "2025-03-01T00:00"},
    ],
)
def test_a_wrong_custom_range_is_a_400(client, operator, query):
    client.force_login(operator)

    assert client.get(reverse("dashboard:home"), query).status_code == 400
