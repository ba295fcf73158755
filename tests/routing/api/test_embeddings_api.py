"""POST /v1/embeddings with the official `openai` client: a policy's embeddings endpoint, priced per input token."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from routing.choices import EndpointKind
from routing.config.snapshots import config_cache
from routing.models import RequestRecord
from testing.factories import make_key, make_policy, openai_endpoint, replay_endpoints
from testing.upstream import running_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.live


def embeddings_client(gateway, base_url: str, **policy_fields) -> openai.OpenAI:
    embedder = openai_endpoint(
        "embedder",
        base_url,
        "text-embedding-3-small",
        kind=EndpointKind.EMBEDDINGS,
        input_price_per_m=Decimal("0.02"),
        output_price_per_m=Decimal("0"),
    )
    mixtral, _ = replay_endpoints()
    policy = make_policy("with-embeddings", [(mixtral, 1.0)], embeddings_endpoint=embedder, **policy_fields)
    _, key = make_key(policy)
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_embeddings_come_back_in_order_and_are_recorded_at_the_input_price(live_gateway):
    with running_upstream() as upstream:
        client = embeddings_client(live_gateway, upstream.base_url)

        raw = client.embeddings.with_raw_response.create(
            model="with-embeddings", input=["red apple", "green pear tree"], dimensions=4
        )
        answer = raw.parse()

        received = upstream.app.embedding_requests[-1]
    assert received["input"] == ["red apple", "green pear tree"] and received["dimensions"] == 4
    assert [len(item.embedding) for item in answer.data] == [4, 4]
    assert [item.index for item in answer.data] == [0, 1]
    assert answer.model == "text-embedding-3-small"
    assert answer.usage.prompt_tokens == 5
    flush_records()
    record = RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"])
    assert record.task_category == "embeddings" and record.input_tokens == 5 and record.output_tokens == 0
    assert record.cost == Decimal("0.02") * 5 / 1_000_000
    assert [(a.model, a.outcome) for a in record.attempts.all()] == [("embedder", "accepted")]


def test_a_policy_without_an_embeddings_endpoint_says_so(live_gateway):
    mixtral, _ = replay_endpoints()
    _, key = make_key(make_policy("chat-only", [(mixtral, 1.0)]))
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="chat-only", input="hello")

    assert caught.value.code == "embeddings_not_configured"


def test_bad_embeddings_input_is_a_400_naming_it(live_gateway):
    with running_upstream() as upstream:
        client = embeddings_client(live_gateway, upstream.base_url)

        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model="with-embeddings", input=[""])

    assert caught.value.param == "input[0]"


def test_embeddings_count_against_budgets_and_reach_the_ledger(live_gateway, budget_keys_cleared):
    from billing.models import Budget, LedgerEntry

    with running_upstream() as upstream:
        client = embeddings_client(live_gateway, upstream.base_url)
        client.embeddings.create(model="with-embeddings", input="one two three")
        flush_records()
        Budget.objects.create(name="exhausted", limit=Decimal(0))  # any new call is refused
        config_cache.invalidate()  # seen now, not at the next refresh interval

        with pytest.raises(openai.RateLimitError) as caught:
            client.embeddings.create(model="with-embeddings", input="four five")

    assert caught.value.code in ("budget_exceeded", "budget_request_too_large")
    assert len(upstream.app.embedding_requests) == 1
    assert sum(entry.cost for entry in LedgerEntry.objects.all()) == Decimal("0.02") * 3 / 1_000_000
