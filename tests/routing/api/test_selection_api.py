"""Selection through the API: the official client against a real gateway and a local upstream."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from routing.models import CategoryLadder, LadderTier, ModelEndpoint, RequestRecord, TaskCategory
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.live


def client_for(gateway: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def ask(client: openai.OpenAI, prompt: str, **extra: Any) -> RequestRecord:
    raw = client.chat.completions.with_raw_response.create(
        model="picky", messages=[{"role": "user", "content": prompt}], **extra
    )
    flush_records()
    return RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"])


def endpoints(url: str) -> tuple[ModelEndpoint, ModelEndpoint]:
    small = openai_endpoint("small", url, "upstream-small", context_window=300, max_tokens=64)
    large = openai_endpoint("large", url, "upstream-large", context_window=8192, max_tokens=64)
    return small, large


def test_a_prompt_too_long_for_the_cheap_tier_is_answered_by_the_one_that_fits(live_gateway: Any, api: Any) -> None:
    with running_upstream() as upstream:
        small, large = endpoints(upstream.base_url)
        policy = make_policy("picky", [(small, 0.0), (large, 1.0)], cache_ttl_s=0)
        _, key = make_key(policy)
        record = ask(client_for(live_gateway, key), "Summarise this: " + "lorem ipsum " * 200)

    assert [a.model for a in record.attempts.all()] == ["large"]
    assert record.selection["skipped"] == [{"tier": 0, "model": "small", "reason": "context_window"}]
    assert record.selection["start"] == 1
    assert api.get(f"/api/routing/request-records/{record.id}/").json()["selection"] == record.selection


def test_a_prompt_too_long_for_every_tier_is_a_400_context_length_exceeded(live_gateway: Any) -> None:
    with running_upstream() as upstream:
        small, _ = endpoints(upstream.base_url)
        policy = make_policy("picky", [(small, 1.0)], cache_ttl_s=0)
        _, key = make_key(policy)
        with pytest.raises(openai.BadRequestError) as caught:
            ask(client_for(live_gateway, key), "lorem ipsum " * 200)
        calls = sum(upstream.calls.values())

    assert caught.value.code == "context_length_exceeded"
    assert calls == 0  # refused before any model was called


HEDGING = UpstreamBehaviour(scripts=(("upstream-coder", ("I'm not sure, I don't know. Maybe.",)),))


def test_a_code_request_climbs_the_code_ladder_and_a_general_one_stays_off_it(live_gateway: Any) -> None:
    with running_upstream(HEDGING) as upstream:
        cheap = openai_endpoint("general-cheap", upstream.base_url, "upstream-small")
        coder = openai_endpoint("coder", upstream.base_url, "upstream-coder")
        strong = openai_endpoint("strong", upstream.base_url, "upstream-large")
        policy = make_policy("picky", [(cheap, 0.5), (strong, 1.0)], cache_ttl_s=0)
        # A live server's tests flush the tables, the seeded categories with them.
        code_category, _ = TaskCategory.objects.get_or_create(name="code", defaults={"patterns": "```"})
        ladder = CategoryLadder.objects.create(policy=policy, category=code_category)
        # The coder hedges, so its answer scores under its rung's threshold and escalates.
        LadderTier.objects.create(ladder=ladder, position=0, endpoint=coder, threshold=0.9)
        LadderTier.objects.create(ladder=ladder, position=1, endpoint=strong, threshold=1.0)
        _, key = make_key(policy)
        client = client_for(live_gateway, key)

        code = ask(client, "Why does this python function raise a KeyError?\n```\ndef f(d): return d['x']\n```")
        general = ask(client, "What is the capital of France?")

    assert code.task_category == "code" and code.selection["ladder"] == "code"
    assert [(a.model, a.outcome) for a in code.attempts.order_by("position")] == [
        ("coder", "escalated"),
        ("strong", "accepted"),
    ]
    assert general.selection["ladder"] == "general"
    general_models = [a.model for a in general.attempts.order_by("position")]
    assert general_models[0] == "general-cheap" and "coder" not in general_models


def test_a_category_found_by_example_gets_its_ladder(live_gateway: Any) -> None:
    with running_upstream() as upstream:
        cheap = openai_endpoint("general-cheap", upstream.base_url, "upstream-small")
        lawyer = openai_endpoint("lawyer", upstream.base_url, "upstream-large")
        policy = make_policy("picky", [(cheap, 0.0)], cache_ttl_s=0)
        legal = TaskCategory.objects.create(
            name="legal",
            examples="Is this non-compete clause in my employment contract enforceable?\n"
            "Can my landlord keep the deposit for normal wear and tear?",
            similarity_threshold=0.5,
        )
        ladder = CategoryLadder.objects.create(policy=policy, category=legal)
        LadderTier.objects.create(ladder=ladder, position=0, endpoint=lawyer, threshold=0.0)
        _, key = make_key(policy)

        record = ask(client_for(live_gateway, key), "My lease says the landlord may withhold my security deposit")

    assert record.task_category == "legal"
    assert [(a.model, a.outcome) for a in record.attempts.all()] == [("lawyer", "accepted")]


def test_a_streamed_request_too_long_for_every_tier_is_the_same_400(live_gateway: Any) -> None:
    with running_upstream() as upstream:
        small, _ = endpoints(upstream.base_url)
        _, key = make_key(make_policy("picky", [(small, 1.0)], cache_ttl_s=0))
        client = client_for(live_gateway, key)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="picky", messages=[{"role": "user", "content": "lorem ipsum " * 200}], stream=True
            )

    assert caught.value.code == "context_length_exceeded"
