"""Budgets on the routing API: reserve before the call, settle after, degrade or reject.

These run against the store the settings choose: the database in embedded mode, Redis
when `REDIS_URL` is set (CI). `test_budget_store.py` exercises both stores directly.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.budgets.store import budget_rules_load, budget_store
from billing.choices import BudgetScope, HardAction, SoftAction
from billing.models import Budget, BudgetAlert, BudgetCounter, LedgerEntry
from routing.config.snapshots import config_cache, load_policies
from routing.engine.costing import worst_case_cost
from routing.engine.types import ChatRequest, Message
from routing.models import RequestRecord
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

URL = "/v1/chat/completions"
# Mixtral got this one wrong, and the demo's scorer escalates it to GPT-4.
MIXTRAL_WRONG = next(p for p in replay_prompts() if p.startswith("Lisa and Peter are selling chocolate bars"))
MIXTRAL_RIGHT = replay_prompts()[0]


@pytest.fixture
def demo(db, budget_keys_cleared):
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)], cache_ttl_s=0)
    _, key = make_key(policy, team="growth", app="support-bot")
    return key


def ask(client, key: str, prompt: str = MIXTRAL_RIGHT, **fields: object):
    body = {"model": "demo", "messages": [{"role": "user", "content": prompt}], **fields}
    return client.post(URL, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def worst_case(prompt: str = MIXTRAL_RIGHT) -> Decimal:
    policy = load_policies()[0]
    return worst_case_cost(policy, ChatRequest(messages=(Message("user", prompt),)))


def budget(**fields: object) -> Budget:
    defaults: dict[str, object] = {"name": "growth monthly", "scope": BudgetScope.TEAM, "scope_value": "growth"}
    return Budget.objects.create(**{**defaults, **fields})


def test_a_request_no_budget_applies_to_is_served_and_touches_no_counter(client, demo):
    budget(scope_value="another-team", limit=Decimal("0"))

    response = ask(client, demo)

    assert response.status_code == 200
    assert not BudgetCounter.objects.exists()


def test_a_hard_budget_rejects_with_a_429_that_names_it(client, demo):
    budget(limit=Decimal("0.0001"))
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("0.0001")
    )  # spent to its limit: exhausted (a budget with room, but too little, says so: test_refusals.py)

    response = ask(client, demo)

    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert "budget 'growth monthly' (team 'growth', per month)" in error["message"]
    assert "$0.0001 spent" in error["message"] and "$0.0001 limit" in error["message"]
    assert "resets at" in error["message"]
    assert 0 < int(response["Retry-After"]) <= 31 * 86400
    assert flush_records() == 1  # on record as refused, for the dashboard; it never reached a model
    refused = RequestRecord.objects.get()
    assert (refused.status, refused.cost, refused.attempts.count()) == ("refused", 0, 0)
    assert LedgerEntry.objects.count() == 1  # the spend above: a refusal costs nothing


def test_spend_settles_to_the_actual_cost_and_then_blocks(client, demo):
    # Pricier tiers, so one request's cost dwarfs the limit's 4-decimal rounding; both by
    # the same factor, so selection (which ranks cost on a log scale) still starts on Mixtral.
    from routing.models import ModelEndpoint

    for endpoint in ModelEndpoint.objects.filter(name__in=("replay-mixtral", "replay-gpt-4")):
        endpoint.input_price_per_m *= 100
        endpoint.output_price_per_m *= 100
        endpoint.save()
    first = ask(client, demo)
    assert first["x-cascadeops-model"] == "replay-mixtral"  # started on the cheap tier, as the worst case does
    actual = Decimal(first["x-cascadeops-cost-usd"])
    # Room for the first request's actual cost plus one worst case, not two.
    budget(limit=(worst_case() + actual / 2).quantize(Decimal("0.0001"), rounding=ROUND_FLOOR))
    config_cache.invalidate()  # as the config version's bump does after commit

    assert ask(client, demo).status_code == 200
    assert ask(client, demo).status_code == 429


def test_a_soft_limit_with_cheap_only_keeps_the_request_on_the_first_tier(
    client, demo, django_capture_on_commit_callbacks
):
    budget(limit=Decimal("10"), soft_limit_percent=50, soft_action=SoftAction.CHEAP_ONLY)
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("6")
    )

    response = ask(client, demo, MIXTRAL_WRONG)

    assert response.status_code == 200
    assert response["x-cascadeops-model"] == "replay-mixtral"
    assert response["x-cascadeops-budget-degraded"] == "cheap-only"


def test_without_budgets_the_same_prompt_escalates(client, demo):
    response = ask(client, demo, MIXTRAL_WRONG)

    assert response["x-cascadeops-model"] == "replay-gpt-4"
    assert "x-cascadeops-budget-degraded" not in response


def test_a_soft_limit_can_lower_the_threshold_instead(client, demo):
    budget(limit=Decimal("10"), soft_limit_percent=50, soft_action=SoftAction.LOWER_THRESHOLD, degraded_threshold=0.0)
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("6")
    )

    response = ask(client, demo, MIXTRAL_WRONG)

    assert response["x-cascadeops-model"] == "replay-mixtral"
    assert response["x-cascadeops-budget-degraded"] == "lower-threshold"


def test_a_hard_limit_set_to_cheap_only_keeps_serving_on_the_cheap_tier(client, demo):
    budget(limit=Decimal("1"), hard_action=HardAction.CHEAP_ONLY)
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("1")
    )

    response = ask(client, demo, MIXTRAL_WRONG)

    assert response.status_code == 200
    assert response["x-cascadeops-budget-degraded"] == "cheap-only"


def test_the_strictest_budget_wins(client, demo):
    budget(name="team", limit=Decimal("10"), soft_limit_percent=50, soft_action=SoftAction.LOWER_THRESHOLD)
    budget(name="all", scope=BudgetScope.GLOBAL, scope_value="", limit=Decimal("10"), soft_limit_percent=50,
           soft_action=SoftAction.CHEAP_ONLY)  # fmt: skip
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("6")
    )

    assert ask(client, demo, MIXTRAL_WRONG)["x-cascadeops-budget-degraded"] == "cheap-only"

    budget(name="app", scope=BudgetScope.APP, scope_value="support-bot", limit=Decimal("5"))
    LedgerEntry.objects.create(day=timezone.localdate(), team="growth", app="support-bot", policy="demo", model="m",
                               cost=Decimal("5"))  # fmt: skip
    config_cache.invalidate()
    assert ask(client, demo, MIXTRAL_WRONG).status_code == 429  # a reject beats any degradation


def test_spend_recorded_today_counts_against_a_new_counter(client, demo):
    budget(limit=Decimal("2"), period="day")
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("2")
    )
    LedgerEntry.objects.create(
        day=timezone.localdate() - timedelta(days=1),
        team="growth",
        app="x",
        policy="demo",
        model="m",
        cost=Decimal("5"),
    )

    assert ask(client, demo).status_code == 429  # today's $2 fills the day; yesterday's does not count


@pytest.mark.django_db(transaction=True)
def test_crossing_the_soft_limit_raises_one_alert_per_period(client, budget_keys_cleared):
    mixtral, gpt4 = replay_endpoints()
    _, key = make_key(make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)]), team="growth")
    limit = budget(limit=Decimal("10"), soft_limit_percent=50)
    LedgerEntry.objects.create(
        day=timezone.localdate(), team="growth", app="x", policy="demo", model="m", cost=Decimal("6")
    )

    for _ in range(3):
        assert ask(client, key).status_code == 200

    deadline = time.monotonic() + 5
    while not BudgetAlert.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    alert = BudgetAlert.objects.get()
    assert (alert.budget_id, alert.level) == (limit.id, "soft")
    assert alert.spent >= Decimal("6")


def test_settled_spend_matches_the_recorded_cost(client, demo):
    budget(limit=Decimal("100"))
    costs = [Decimal(ask(client, demo, p)["x-cascadeops-cost-usd"]) for p in replay_prompts()[:5]]

    flush_records()
    recorded = sum(RequestRecord.objects.values_list("cost", flat=True), Decimal(0))
    assert recorded == sum(costs)
    rules = budget_rules_load()

    async def spent() -> Decimal:
        usage = await budget_store().usage(rules, timezone.now())
        return usage[0].spent

    # The counter rounds each settlement up to the micro-dollar, never down.
    counted = async_to_sync(spent)()
    assert recorded <= counted <= recorded + Decimal("0.000001") * len(costs)
