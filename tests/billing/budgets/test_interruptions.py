"""Interrupted requests are paid for: a client that hangs up, a cascade cut off at the deadline.

The call in flight when the cascade stops may be billed in full by the provider, so it is
recorded, ledgered and settled at its worst case; the attempts finished before it at their
actual cost. These run against the budget store and record buffer the settings choose.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.budgets.store import budget_rules_load, budget_store
from billing.choices import BudgetScope
from billing.models import Budget, LedgerEntry
from routing.config.snapshots import load_policies
from routing.engine.costing import tier_worst_case
from routing.engine.types import ChatRequest, Message
from routing.models import ModelEndpoint, RequestRecord
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

URL = "/v1/chat/completions"
# Mixtral got this one wrong, so the demo's scorer escalates it to GPT-4.
MIXTRAL_WRONG = next(p for p in replay_prompts() if p.startswith("Lisa and Peter are selling chocolate bars"))
MICRO = Decimal("0.000001")


@pytest.fixture
def slow_strong_tier(budget_keys_cleared):
    """The demo policy, its strong tier taking 5 s, and a team budget that does not block."""
    mixtral, gpt4 = replay_endpoints()
    gpt4.options = {"latency_ms": 5000}
    gpt4.save()
    policy = make_policy("demo", [(mixtral, 0.9), (gpt4, 1.0)])
    _, key = make_key(policy, team="growth", app="support-bot")
    Budget.objects.create(name="growth monthly", scope=BudgetScope.TEAM, scope_value="growth", limit=Decimal("100"))
    return key


def body(prompt: str = MIXTRAL_WRONG) -> str:
    return json.dumps({"model": "demo", "messages": [{"role": "user", "content": prompt}]})


def strong_tier_worst_case() -> Decimal:
    policy = load_policies()[0]
    return tier_worst_case(policy.tiers[1], ChatRequest(messages=(Message("user", MIXTRAL_WRONG),)))


def budget_spent(timeout_s: float = 10.0) -> Decimal:
    """The budget's spend once no hold is left (a cancelled request's settles just after its record)."""
    rules = budget_rules_load()
    deadline = time.monotonic() + timeout_s
    while True:
        (usage,) = async_to_sync(budget_store().usage)(rules, timezone.now())
        if usage.held == 0:
            return usage.spent
        assert time.monotonic() < deadline, "the hold was settled, not left to expire"
        time.sleep(0.05)


def assert_budget_counts(records: list[RequestRecord]) -> None:
    """The budget counted what the records cost (Redis counts whole micro-dollars, rounded up)."""
    exact = sum(r.cost for r in records)
    rounded_up = sum((r.cost / MICRO).to_integral_value(ROUND_CEILING) * MICRO for r in records)
    assert exact <= budget_spent() <= rounded_up


def wait_for_record(find: Callable[[], RequestRecord | None], timeout_s: float = 10.0) -> RequestRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        flush_records()
        record = find()
        if record is not None:
            return record
        time.sleep(0.05)
    raise AssertionError("the interrupted request was never recorded")


def test_a_client_that_hangs_up_mid_cascade_is_recorded_as_cancelled_and_pays(live_gateway, slow_strong_tier):
    headers = {"Authorization": f"Bearer {slow_strong_tier}", "Content-Type": "application/json"}
    # Warm the gateway (configuration, replay data) so the hang-up lands in the cascade.
    warm = httpx.post(live_gateway.url + URL, content=body(replay_prompts()[0]), headers=headers, timeout=10)
    assert warm.status_code == 200, warm.text

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(live_gateway.url + URL, content=body(), headers=headers, timeout=httpx.Timeout(10.0, read=1.0))

    record = wait_for_record(lambda: RequestRecord.objects.filter(status="cancelled").first())
    cheap, in_flight = record.attempts.order_by("position")
    assert (cheap.model, cheap.outcome, in_flight.model, in_flight.outcome, in_flight.error_kind) == (
        "replay-mixtral",
        "escalated",
        "replay-gpt-4",
        "failed",
        "cancelled",
    )
    assert in_flight.cost == strong_tier_worst_case()
    assert record.cost == cheap.cost + in_flight.cost
    records = list(RequestRecord.objects.all())
    assert sum(e.cost for e in LedgerEntry.objects.all()) == sum(r.cost for r in records)
    assert_budget_counts(records)
    flush_records()
    assert RequestRecord.objects.filter(status="cancelled").count() == 1, "recorded exactly once"


def test_a_cascade_past_the_deadline_fails_with_a_504_and_pays_for_the_call_cut_off(
    db, client, slow_strong_tier, monkeypatch
):
    monkeypatch.setattr("routing.api.openai.views.CASCADE_DEADLINE_S", 0.3)

    response = client.post(
        URL, data=body(), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {slow_strong_tier}"
    )

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "all_tiers_timed_out"
    flush_records()
    record = RequestRecord.objects.get()
    assert record.status == "failed"
    assert record.attempts.get(model="replay-gpt-4").error_kind == "timeout"
    assert record.attempts.get(model="replay-gpt-4").cost == strong_tier_worst_case()
    assert_budget_counts([record])


@pytest.mark.django_db
def test_a_record_the_stream_refuses_waits_in_the_local_spool_and_is_still_stored(client, settings):
    if not settings.REDIS_URL:
        pytest.skip("the overflow spool only exists beside the Redis stream (REDIS_URL)")
    from common.redis import sync_client

    mixtral, gpt4 = replay_endpoints()
    ModelEndpoint.objects.filter(pk=gpt4.pk).update(enabled=False)
    _, key = make_key(make_policy("demo", [(mixtral, 0.0), (gpt4, 1.0)]))
    # A real Redis error on XADD: the stream's key holds a string.
    sync_client().set(settings.CASCADEOPS_RECORD_STREAM, "not a stream")

    response = client.post(
        URL, data=body(replay_prompts()[0]), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 200
    sync_client().delete(settings.CASCADEOPS_RECORD_STREAM)
    assert flush_records() == 1
    assert str(RequestRecord.objects.get().id) == response["x-request-id"]
