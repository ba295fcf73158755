"""A blocking budget's refusals: what the 429 says, the hard alert it raises, the counter.

Like `test_rules.py`, these run against the store the settings choose (the database, or
Redis when `REDIS_URL` is set).
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing.budgets.rules import limit_units, to_units
from billing.models import BudgetAlert, LedgerEntry
from routing import metrics
from routing.config.snapshots import load_policies
from routing.engine.costing import worst_case_cost
from routing.engine.types import ChatRequest, Message
from routing.limits import budget_holds
from testing.factories import make_key, make_policy, replay_endpoints
from tests.billing.budgets.test_rules import MIXTRAL_RIGHT, ask, budget


@pytest.fixture
def demo(db, budget_keys_cleared):
    mixtral, gpt4 = replay_endpoints()
    _, key = make_key(make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)], cache_ttl_s=0), team="growth")
    return key


def worst_case(max_tokens: int) -> Decimal:
    chat = ChatRequest(messages=(Message("user", MIXTRAL_RIGHT),), max_tokens=max_tokens)
    return worst_case_cost(load_policies()[0], chat)


def spend(amount: str) -> None:
    LedgerEntry.objects.create(day=timezone.localdate(), team="growth", app="x", policy="demo", model="m",
                               cost=Decimal(amount))  # fmt: skip


def refusals(budget_id: int, reason: str) -> float:
    wanted = {"budget": str(budget_id), "reason": reason}
    samples = (s for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples)
    return sum(s.value for s in samples if s.name == "cascadeops_budget_refusals_total" and s.labels == wanted)


def test_a_budget_spent_to_its_limit_says_so_and_when_it_resets(client, demo):
    budget(limit=Decimal("5"))
    spend("5")

    response = ask(client, demo)

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "is exhausted: $5.0000 spent" in error["message"] and "resets at" in error["message"]
    assert 0 < int(response["Retry-After"]) <= 31 * 86400


def test_a_request_too_big_for_what_is_left_says_what_would_fit(client, demo):
    limit = budget(limit=Decimal("10"))
    left = worst_case(100) + Decimal("0.00001")
    spend(str(Decimal("10") - left))

    response = ask(client, demo, max_tokens=4000)

    assert response.status_code == 429
    assert not response.has_header("Retry-After")  # the same request can never pass
    error = response.json()["error"]
    assert error["code"] == "budget_request_too_large"
    assert f"worst case, ${worst_case(4000):.4f}, does not fit the budget 'growth monthly'" in error["message"]
    assert f"${left:.4f} of its $10.0000 limit is left" in error["message"]
    fits = int(re.search(r"A max_tokens of (\d+) or less would fit", error["message"])[1])  # type: ignore[index]
    room = limit_units(limit.limit) - to_units(Decimal("10") - left)
    assert to_units(worst_case(fits)) <= room < to_units(worst_case(fits + 1))
    assert ask(client, demo, max_tokens=fits).status_code == 200


def test_a_prompt_too_dear_for_what_is_left_is_told_no_max_tokens_fits(client, demo):
    budget(limit=Decimal("0.0001"))

    response = ask(client, demo)

    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (429, "budget_request_too_large")
    assert "No max_tokens would fit" in error["message"]
    assert "$0.0000 spent" in error["message"] and "exhausted" not in error["message"]


def test_the_largest_max_tokens_that_fits_matches_the_reservation_rule(db):
    mixtral, gpt4 = replay_endpoints()
    make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)])
    policy = load_policies()[0]
    chat = ChatRequest(messages=(Message("user", "Hello there"),), max_tokens=5000)
    room = to_units(worst_case_cost(policy, replace(chat, max_tokens=321)))

    assert budget_holds.max_tokens_within(policy, chat, None, room) == 321
    assert budget_holds.max_tokens_within(policy, chat, None, 0) is None


@pytest.mark.django_db(transaction=True)
def test_refusals_raise_the_hard_alert_once_and_are_counted(client, budget_keys_cleared, monkeypatch):
    monkeypatch.setattr(budget_holds, "_announced", set())
    mixtral, gpt4 = replay_endpoints()
    _, key = make_key(make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)], cache_ttl_s=0), team="growth")
    limit = budget(limit=Decimal("1"))
    spend("0.9999")  # under the limit: the reservation that would pass it is what refuses
    before = refusals(limit.id, "too_large")

    assert [ask(client, key).status_code for _ in range(3)] == [429, 429, 429]

    deadline = time.monotonic() + 5
    while not BudgetAlert.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # a second alert, were one raised, would have landed by now
    alert = BudgetAlert.objects.get()
    assert (alert.budget_id, alert.level, alert.spent) == (limit.id, "hard", Decimal("0.9999"))
    assert refusals(limit.id, "too_large") - before == 3
