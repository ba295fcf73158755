"""The official `openai` client against a real HTTP server running the gateway.

Only the model providers are stood in for: the demo's replay models, and a local
OpenAI-compatible upstream (testing.upstream) that fails or hangs on purpose.
"""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from routing.models import RequestAttempt, RequestRecord
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, openai_endpoint, replay_endpoints
from testing.upstream import running_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.live

# Mixtral's recorded answer to this GSM8K question is wrong and GPT-4's is right. Mixtral
# hedges ("approximately") and states "18.29 + 14.22 = 32.51" among other sums; the
# heuristic scorer's hedging and arithmetic checks put it far below the demo threshold.
MIXTRAL_WRONG = "Lisa and Peter are selling chocolate bars door to door."
MIXTRAL_RIGHT = "Janet’s ducks lay 16 eggs per day."


def prompt_starting(prefix: str) -> str:
    return next(p for p in replay_prompts() if p.startswith(prefix))


def test_the_openai_client_gets_the_cheap_answer_when_it_scores_well(demo_client):
    raw = demo_client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": prompt_starting(MIXTRAL_RIGHT)}]
    )
    completion = raw.parse()

    assert completion.choices[0].message.content.strip().endswith("#### 18")
    assert completion.model == "mistralai/Mixtral-8x7B-Instruct-v0.1"  # the model's id; the headers name the endpoint
    assert raw.headers["x-cascadeops-model"] == "replay-mixtral"
    assert raw.headers["x-cascadeops-escalated"] == "false"
    assert raw.headers["x-cascadeops-tier"] == "0"
    assert completion._request_id == raw.headers["x-cascadeops-request-id"]


def test_a_prompt_mixtral_got_wrong_escalates_to_gpt4(demo_client):
    raw = demo_client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": prompt_starting(MIXTRAL_WRONG)}]
    )
    completion = raw.parse()

    assert completion.model == "gpt-4-1106-preview"
    assert raw.headers["x-cascadeops-escalated"] == "true"
    assert raw.headers["x-cascadeops-tier"] == "1"
    assert raw.headers["x-cascadeops-model"] == "replay-gpt-4"
    flush_records()
    record = RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"])
    attempts = list(record.attempts.order_by("position"))
    assert [(a.model, a.outcome) for a in attempts] == [("replay-mixtral", "escalated"), ("replay-gpt-4", "accepted")]
    assert attempts[0].quality_label == 0.0 and attempts[1].quality_label == 1.0
    # The caller pays for both tiers, and the header says so.
    assert record.cost == sum((a.cost for a in attempts), Decimal(0))
    assert Decimal(raw.headers["x-cascadeops-cost-usd"]) == record.cost


def test_the_openai_client_sees_a_bad_key_as_an_authentication_error(live_gateway):
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key="co-wrong", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.code == "invalid_api_key"


def test_a_three_tier_cascade_falls_through_failing_tiers_and_records_every_attempt(live_gateway):
    with running_upstream() as upstream:
        broken = openai_endpoint("upstream-500", upstream.base_url, "fail-500")
        stuck = openai_endpoint("upstream-hang", upstream.base_url, "hang", read_timeout_s=0.3)
        _, gpt4 = replay_endpoints()
        policy = make_policy("three-tier", [(broken, 0.5), (stuck, 0.5), (gpt4, 1.0)], max_escalations=2)
        _, key = make_key(policy)
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

        raw = client.chat.completions.with_raw_response.create(
            model="three-tier", messages=[{"role": "user", "content": prompt_starting(MIXTRAL_RIGHT)}]
        )

        assert raw.headers["x-cascadeops-model"] == "replay-gpt-4"
        assert raw.headers["x-cascadeops-tier"] == "2"
        # Each tried once, then retried twice (max_retries' default) before falling through.
        assert upstream.calls["fail-500"] == 3 and upstream.calls["hang"] == 3
    flush_records()
    attempts = RequestAttempt.objects.filter(record_id=raw.headers["x-cascadeops-request-id"]).order_by("position")
    assert [(a.model, a.outcome, a.error_kind) for a in attempts] == [
        ("upstream-500", "failed", "unavailable"),
        ("upstream-hang", "failed", "timeout"),
        ("replay-gpt-4", "accepted", ""),
    ]


def test_when_every_tier_fails_the_client_gets_a_502_that_says_why(live_gateway):
    with running_upstream() as upstream:
        first = openai_endpoint("upstream-500-a", upstream.base_url, "fail-500")
        second = openai_endpoint("upstream-503", upstream.base_url, "fail-503")
        _, key = make_key(make_policy("all-broken", [(first, 0.5), (second, 1.0)]))
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="all-broken", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 502
    assert "tier 0 (upstream-500-a): unavailable" in caught.value.message
    assert "tier 1 (upstream-503): unavailable" in caught.value.message
    flush_records()
    assert RequestRecord.objects.get(status="failed").attempts.count() == 2


def test_when_every_tier_times_out_the_client_gets_a_504(live_gateway):
    with running_upstream() as upstream:
        first = openai_endpoint("hang-a", upstream.base_url, "hang", read_timeout_s=0.2)
        second = openai_endpoint("hang-b", upstream.base_url, "hang", read_timeout_s=0.2)
        _, key = make_key(make_policy("all-hang", [(first, 0.5), (second, 1.0)]))
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="all-hang", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.status_code == 504
    assert caught.value.code == "all_tiers_timed_out"
