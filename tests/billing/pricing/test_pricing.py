"""Golden costs: hand-computed dollars for each provider kind and token mix, and price history."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from django.utils import timezone

from billing.models import PriceBookEntry
from routing.config.snapshots import config_cache, load_policies
from routing.engine.costing import attempt_cost, baseline_cost
from routing.engine.types import ChatRequest, EndpointSnapshot, Message, ProviderType
from routing.models import ModelEndpoint as EndpointRow
from routing.models import RequestAttempt, RequestRecord
from routing.providers.bedrock import BedrockProvider
from routing.providers.local import ReplayProvider, replay_prompts
from routing.providers.openai_compat import OpenAICompatProvider
from testing.factories import make_key, make_policy, replay_endpoints
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records

CHAT = ChatRequest(messages=(Message("user", "Summarise our refund policy."),))


def endpoint(kind: ProviderType, **fields: Any) -> EndpointSnapshot:
    defaults: dict[str, Any] = {
        "id": 1,
        "name": "m",
        "provider_kind": kind,
        "model_id": "m",
        "input_price_per_m": Decimal("3.00"),
        "output_price_per_m": Decimal("15.00"),
        "cached_input_price_per_m": Decimal("0.30"),
    }
    return EndpointSnapshot(**{**defaults, **fields})


def cost_of(model: EndpointSnapshot, completion: Any) -> Decimal:
    return attempt_cost(model, completion.input_tokens, completion.output_tokens, completion.cached_input_tokens)


async def test_openai_compatible_usage_with_cached_prompt_tokens():
    behaviour = UpstreamBehaviour(prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    with running_upstream(behaviour) as upstream:
        model = endpoint(ProviderType.OPENAI_COMPAT, base_url=upstream.base_url)
        provider = OpenAICompatProvider(model)
        completion = await provider.complete(CHAT, max_tokens=256)
        await provider.aclose()

    # 600 fresh × $3 + 400 cached × $0.30 + 200 out × $15, per 1M tokens.
    assert cost_of(model, completion) == Decimal("0.0049200000")


async def test_openai_compatible_usage_without_cached_tokens():
    with running_upstream(UpstreamBehaviour(prompt_tokens=1234, completion_tokens=56)) as upstream:
        model = endpoint(ProviderType.OPENAI_COMPAT, base_url=upstream.base_url)
        provider = OpenAICompatProvider(model)
        completion = await provider.complete(CHAT, max_tokens=256)
        await provider.aclose()

    # 1234 × $3 + 56 × $15 = 3702 + 840 = $0.004542.
    assert cost_of(model, completion) == Decimal("0.0045420000")


async def test_bedrock_usage_with_cache_reads_and_writes():
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    response = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Refunds within 30 days."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 300, "outputTokens": 80, "totalTokens": 1580, "cacheReadInputTokens": 1000,
                  "cacheWriteInputTokens": 200},
        "metrics": {"latencyMs": 100},
    }  # fmt: skip
    model = endpoint(ProviderType.BEDROCK, base_url="us-east-1", model_id="anthropic.claude-3-haiku")
    with Stubber(client) as stubber:
        stubber.add_response("converse", response)
        completion = await BedrockProvider(model, client=client).complete(CHAT, max_tokens=256)

    # (300 fresh + 200 written) × $3 + 1000 read × $0.30 + 80 × $15 = 1500 + 300 + 1200 = $0.003.
    assert cost_of(model, completion) == Decimal("0.0030000000")


async def test_replay_usage_is_estimated_from_the_recorded_text():
    model = endpoint(ProviderType.REPLAY, model_id="mixtral", input_price_per_m=Decimal("0.60"),
                     output_price_per_m=Decimal("0.60"), cached_input_price_per_m=None)  # fmt: skip
    prompt = replay_prompts()[0]
    completion = await ReplayProvider(model).complete(ChatRequest(messages=(Message("user", prompt),)), max_tokens=1024)

    expected = (completion.input_tokens + completion.output_tokens) * Decimal("0.60") / 1_000_000
    assert completion.cached_input_tokens == 0
    assert cost_of(model, completion) == expected.quantize(Decimal("1e-10"))
    # A 280-character prompt: 70 tokens and 4 for the message; a 233-character answer: 59.
    assert (completion.input_tokens, completion.output_tokens) == (74, 59)


def test_an_uncached_price_applies_when_the_endpoint_has_no_cached_price():
    model = endpoint(ProviderType.OPENAI_COMPAT, cached_input_price_per_m=None)

    assert attempt_cost(model, 1000, 0, cached_input_tokens=400) == Decimal("0.0030000000")


def test_the_baseline_is_the_strongest_tier_for_the_same_tokens_in():
    from routing.engine.types import Attempt, CascadeResult, Completion, Outcome, PolicySnapshot, Tier

    cheap = endpoint(ProviderType.REPLAY, id=1, input_price_per_m=Decimal("0.60"), output_price_per_m=Decimal("0.60"))
    strong = endpoint(ProviderType.REPLAY, id=2, input_price_per_m=Decimal("10"), output_price_per_m=Decimal("30"))
    policy = PolicySnapshot(id=1, name="p", version=1, tiers=(Tier(0, cheap, 0.5), Tier(1, strong, 1.0)))
    answer = Completion("x" * 400, "stop", 100, 90, 1.0)
    result = CascadeResult("unknown", (Attempt(0, 1, "m", Outcome.ACCEPTED, 100, 90),), answer)

    # 100 in × $10 + (400 characters ≈ 100 tokens) × $30 = 1000 + 3000 per 1M.
    assert baseline_cost(policy, CHAT, result) == Decimal("0.0040000000")


# --- The price book ---------------------------------------------------------------------


@pytest.fixture
def demo_key(db):
    mixtral, gpt4 = replay_endpoints()
    _, key = make_key(make_policy("demo", [(mixtral, 0.0), (gpt4, 1.0)]))
    return key


def ask(client, key: str):
    body = {"model": "demo", "messages": [{"role": "user", "content": replay_prompts()[0]}]}
    return client.post("/v1/chat/completions", json.dumps(body), "application/json", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_saving_an_endpoint_with_new_prices_adds_a_price_book_entry(db):
    row, _ = replay_endpoints()
    assert PriceBookEntry.objects.filter(endpoint=row).count() == 1

    row.save()  # same prices: no new entry
    row.input_price_per_m = Decimal("0.70")
    row.save()

    prices = list(PriceBookEntry.objects.filter(endpoint=row).order_by("effective_from"))
    assert [p.input_price_per_m for p in prices] == [Decimal("0.60"), Decimal("0.70")]


def test_a_price_change_leaves_past_request_costs_unchanged(client, demo_key):
    before = ask(client, demo_key)
    row = EndpointRow.objects.get(name="replay-mixtral")
    row.input_price_per_m = row.output_price_per_m = Decimal("6.00")
    row.save()
    config_cache.invalidate()  # as the config version's bump does after commit
    after = ask(client, demo_key)

    flush_records()
    old = RequestRecord.objects.get(id=before["x-cascadeops-request-id"])
    new = RequestRecord.objects.get(id=after["x-cascadeops-request-id"])
    assert new.cost == old.cost * 10  # same tokens, ten times the price
    old_attempt, new_attempt = (RequestAttempt.objects.get(record=r) for r in (old, new))
    assert old_attempt.price_version != new_attempt.price_version
    old.refresh_from_db()
    assert Decimal(before["x-cascadeops-cost-usd"]) == old.cost


def test_a_scheduled_price_applies_from_its_start(db):
    mixtral, gpt4 = replay_endpoints()
    make_policy("demo", [(mixtral, 0.5), (gpt4, 1.0)])
    start = timezone.now() + timedelta(hours=1)
    PriceBookEntry.objects.create(endpoint=mixtral, effective_from=start, input_price_per_m=Decimal("0.10"),
                                  output_price_per_m=Decimal("0.20"))  # fmt: skip

    from routing.config.snapshots import next_price_change, policy_snapshot
    from routing.models import Policy

    policy = Policy.objects.prefetch_related("tiers__endpoint__prices", "task_rules").get()
    now, later = policy_snapshot(policy), policy_snapshot(policy, start + timedelta(seconds=1))
    assert now.tiers[0].endpoint.input_price_per_m == Decimal("0.60")
    assert later.tiers[0].endpoint.input_price_per_m == Decimal("0.10")
    assert later.tiers[0].endpoint.price_version > now.tiers[0].endpoint.price_version
    assert next_price_change(timezone.now()) == start
    assert replace(load_policies()[0], version=0) is not None
