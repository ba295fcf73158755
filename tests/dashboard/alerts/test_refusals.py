"""Refused traffic on the dashboard: budget refusals are counted, charted and raise an alert.

Requests go through the routing API (Django's test client) and a blocking budget; the
flusher stores the refusals, the rollups count them, the page shows them and the rule fires.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.choices import BudgetScope
from billing.models import Budget, LedgerEntry
from dashboard.alerts import services
from dashboard.choices import EventState
from dashboard.live.selectors import board_get
from dashboard.models import AlertEvent, AlertRule, Rollup
from dashboard.rollups.compute import REFUSED_TIER, window_get
from routing.limits import budget_holds
from routing.models import RequestRecord
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

URL = "/v1/chat/completions"
BUDGET_REFUSAL = "429 budget_exceeded"


@pytest.fixture(autouse=True)
def budget_alerts_queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The hot path's budget alerts, kept instead of run: an eager task would wait on the test's transaction."""
    queued: list[tuple] = []
    monkeypatch.setattr(budget_holds, "_enqueue_alert", queued.append)
    return queued


@pytest.fixture
def key(db, budget_keys_cleared) -> str:
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)], cache_ttl_s=0)
    _, plaintext = make_key(policy, team="growth", app="support-bot")
    return plaintext


@pytest.fixture
def exhausted_budget(db) -> Budget:
    budget = Budget.objects.create(
        name="growth daily", scope=BudgetScope.TEAM, scope_value="growth", limit=Decimal("0.0001")
    )
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("0.0001")
    )
    return budget


def ask(client, key: str, **fields: object) -> int:
    body = {"model": "demo", "messages": [{"role": "user", "content": replay_prompts()[0]}], **fields}
    response = client.post(
        URL, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    return int(response.status_code)


def test_budget_refusals_show_in_the_dashboard_figures_and_raise_an_alert(client, admin_client, key, exhausted_budget):
    rule = AlertRule.objects.create(
        name="budget refusals", metric="refusals", reason="budget_exceeded", threshold=2, window_minutes=5
    )
    assert [ask(client, key) for _ in range(3)] == [429, 429, 429]

    assert flush_records() == 3
    assert set(RequestRecord.objects.values_list("status", flat=True)) == {"refused"}
    assert LedgerEntry.objects.count() == 1  # the budget's own spend: refusals cost nothing
    row = Rollup.objects.get(resolution="minute")
    assert (row.tier, row.model, row.refused, row.requests) == (REFUSED_TIER, BUDGET_REFUSAL, 3, 0)

    board = board_get(policy_id=None, window=window_get("1h"), now=timezone.now())
    assert (board.tiles.today.received, board.tiles.today.refused) == (3, 3)
    assert board.tiles.today.failed_rate == 100.0
    page = admin_client.get(reverse("dashboard:home")).content.decode()
    assert "100.0 %</span><span>failed or refused today" in page
    assert f"refused: {BUDGET_REFUSAL}" in page  # the failed-and-refused chart's trace

    assert services.alert_rules_evaluate(now=timezone.now()) == 1
    event = AlertEvent.objects.get(rule=rule)
    assert event.state == EventState.FIRING
    assert event.value == 3.0


def test_a_rule_for_another_reason_stays_quiet(client, key, exhausted_budget):
    AlertRule.objects.create(name="rate limited", metric="refusals", reason="rate_limit", threshold=0, window_minutes=5)
    ask(client, key)
    flush_records()

    services.alert_rules_evaluate(now=timezone.now())

    assert not AlertEvent.objects.exists()


def test_bad_input_from_a_known_key_is_a_refusal_too(client, key):
    assert ask(client, key, temperature=5) == 400
    flush_records()

    record = RequestRecord.objects.get()
    assert record.status == "refused" and record.error.startswith("400 ")
    assert Rollup.objects.get(resolution="hour").refused == 1


def test_a_request_without_a_key_has_nobody_to_count_against(client, db):
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert client.post(URL, data=json.dumps(body), content_type="application/json").status_code == 401

    assert flush_records() == 0
