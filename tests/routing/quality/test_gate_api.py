"""The quality gate through the API: consistency, agreement across models and a judge.

A local OpenAI-compatible upstream answers from scripts, so samples agree or disagree on
purpose; the official `openai` client talks to a real gateway server.
"""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from routing.models import ModelEndpoint, Policy, PolicyTier, RequestRecord, RequestSample
from routing.quality.samples import sample_completion
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.live

QUESTION = "A farmer has 6 pens with 7 sheep each. How many sheep are there?"
STRONG_ANSWER = "6 pens times 7 sheep is 42 sheep. The answer is 42."


def ask(gateway_url: str, key: str) -> tuple[str, RequestRecord]:
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gated", messages=[{"role": "user", "content": QUESTION}]
    )
    flush_records()
    record = RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"])
    return raw.parse().choices[0].message.content or "", record


def gated_policy(url: str, **gate: object) -> str:
    """A cheap → strong policy whose cheap tier has the given gate; the key's plaintext."""
    cheap = openai_endpoint("cheap", url, "cheap-model")
    strong = openai_endpoint("strong", url, "strong-model")
    policy = make_policy("gated", [(cheap, 0.7), (strong, 1.0)], cache_ttl_s=0)
    tier = PolicyTier.objects.get(policy=policy, position=0)
    peers = gate.pop("peers", ())
    for field, value in gate.items():
        setattr(tier, field, value)
    tier.save()
    tier.peers.set(peers)  # type: ignore[arg-type]
    _, key = make_key(policy)
    return key


def attempts_of(record: RequestRecord) -> list[tuple[str, str]]:
    return [(a.model, a.outcome) for a in record.attempts.order_by("position")]


def every_attempt_is_paid_for(record: RequestRecord) -> bool:
    attempts = list(record.attempts.all())
    return all(a.cost > 0 for a in attempts) and record.cost == sum((a.cost for a in attempts), Decimal(0))


def scripts(**answers: tuple[str, ...]) -> UpstreamBehaviour:
    return UpstreamBehaviour(answer=STRONG_ANSWER, scripts=tuple((m.replace("_", "-"), a) for m, a in answers.items()))


def test_samples_that_agree_accept_the_cheap_answer(live_gateway):
    agreeing = ("7 times 6 is 42. The answer is 42.",) * 3
    with running_upstream(scripts(cheap_model=agreeing)) as upstream:
        key = gated_policy(upstream.base_url, samples=3)
        answer, record = ask(live_gateway.url, key)

    assert answer == agreeing[0]
    assert record.final_tier == 0
    assert attempts_of(record) == [("cheap", "accepted"), ("cheap", "sample"), ("cheap", "sample")]
    assert every_attempt_is_paid_for(record)
    assert upstream.calls["cheap-model"] == 3 and upstream.calls["strong-model"] == 0


def test_samples_that_disagree_escalate_and_every_sample_is_recorded(live_gateway):
    disagreeing = ("The answer is 42.", "The answer is 13.", "The answer is 48.")
    with running_upstream(scripts(cheap_model=disagreeing)) as upstream:
        key = gated_policy(upstream.base_url, samples=3)
        answer, record = ask(live_gateway.url, key)

    assert answer == STRONG_ANSWER
    assert attempts_of(record) == [
        ("cheap", "escalated"),
        ("cheap", "sample"),
        ("cheap", "sample"),
        ("strong", "accepted"),
    ]
    assert every_attempt_is_paid_for(record)


def test_an_endpoint_that_takes_n_draws_the_samples_in_one_call(live_gateway):
    agreeing = ("7 times 6 is 42. The answer is 42.",) * 3
    with running_upstream(scripts(cheap_model=agreeing)) as upstream:
        key = gated_policy(upstream.base_url, samples=3)
        ModelEndpoint.objects.filter(name="cheap").update(options={"n": True})
        answer, record = ask(live_gateway.url, key)
        sampled = upstream.last_request

    assert answer == agreeing[0]
    assert upstream.calls["cheap-model"] == 2  # the answer, then both extra samples at once
    assert sampled["n"] == 2 and sampled["temperature"] == 0.7
    assert attempts_of(record) == [("cheap", "accepted"), ("cheap", "sample"), ("cheap", "sample")]
    assert every_attempt_is_paid_for(record)
    # The prompt of the one call is billed once, with its first sample.
    samples = record.attempts.filter(outcome="sample").order_by("position")
    assert [a.input_tokens for a in samples] == [20, 0]
    assert sum(a.output_tokens for a in samples) == 12


def test_samples_in_one_call_that_disagree_escalate(live_gateway):
    disagreeing = ("The answer is 42.", "The answer is 13.", "The answer is 48.")
    with running_upstream(scripts(cheap_model=disagreeing)) as upstream:
        key = gated_policy(upstream.base_url, samples=3)
        ModelEndpoint.objects.filter(name="cheap").update(options={"n": True})
        answer, record = ask(live_gateway.url, key)

    assert answer == STRONG_ANSWER
    assert upstream.calls["cheap-model"] == 2
    assert attempts_of(record)[-1] == ("strong", "accepted")
    assert every_attempt_is_paid_for(record)


def test_a_sampled_answer_keeps_what_the_gate_measured(live_gateway):
    answers = ("The answer is 42.", "The answer is 42.", "The answer is 13.")
    with running_upstream(scripts(cheap_model=answers)) as upstream:
        key = gated_policy(upstream.base_url, samples=3)
        Policy.objects.filter(name="gated").update(sample_rate=1.0)
        _, record = ask(live_gateway.url, key)

    signals = RequestSample.objects.get(record=record).signals
    assert signals["agreement"] == pytest.approx(2 / 3)
    assert signals["stopped_by_length"] == 0.0
    assert "judge" not in signals  # no judge on this tier


def test_a_sampled_answer_keeps_its_token_logprobs_for_retraining(live_gateway):
    logprobs = (-0.05, -0.5, -2.25)
    with running_upstream(UpstreamBehaviour(answer=STRONG_ANSWER, logprobs=logprobs)) as upstream:
        key = gated_policy(upstream.base_url)
        ModelEndpoint.objects.filter(name="cheap").update(options={"logprobs": True})
        Policy.objects.filter(name="gated").update(sample_rate=1.0)
        PolicyTier.objects.filter(policy__name="gated", position=0).update(threshold=0.0)
        _, record = ask(live_gateway.url, key)

    sample = RequestSample.objects.get(record=record)
    assert sample.answer_tier == 0
    assert sample.signals["token_logprobs"] == list(logprobs)
    assert sample.signals["logprob_min"] == -2.25
    # Retraining rates the stored answer with the log-probabilities it had live.
    assert sample_completion(sample).logprobs == logprobs


def test_the_majority_answer_is_returned(live_gateway):
    # The first draw is the odd one out: the client gets one of the two that agree.
    answers = ("The answer is 40.", "The answer is 42.", "The answer is 42.", "The answer is 42.", "The answer is 42.")
    with running_upstream(scripts(cheap_model=answers)) as upstream:
        key = gated_policy(upstream.base_url, samples=5)
        answer, record = ask(live_gateway.url, key)

    assert answer == "The answer is 42."
    assert record.final_tier == 0


def test_cheap_models_that_agree_accept_the_preferred_ones_answer(live_gateway):
    behaviour = scripts(
        cheap_model=("So 6 x 7 = 42. The answer is 42.",),
        peer_a=("The answer is 42.",),
        peer_b=("42",),
    )
    with running_upstream(behaviour) as upstream:
        peers = [openai_endpoint(n, upstream.base_url, n) for n in ("peer-a", "peer-b")]
        key = gated_policy(upstream.base_url, peers=peers)
        answer, record = ask(live_gateway.url, key)

    assert answer == "So 6 x 7 = 42. The answer is 42."
    assert sorted(attempts_of(record)) == [("cheap", "accepted"), ("peer-a", "sample"), ("peer-b", "sample")]
    assert every_attempt_is_paid_for(record)


def test_cheap_models_that_disagree_escalate(live_gateway):
    behaviour = scripts(cheap_model=("The answer is 42.",), peer_a=("The answer is 36.",), peer_b=("It is 13.",))
    with running_upstream(behaviour) as upstream:
        peers = [openai_endpoint(n, upstream.base_url, n) for n in ("peer-a", "peer-b")]
        key = gated_policy(upstream.base_url, peers=peers)
        answer, record = ask(live_gateway.url, key)

    assert answer == STRONG_ANSWER
    assert attempts_of(record)[-1] == ("strong", "accepted")
    assert {("peer-a", "sample"), ("peer-b", "sample")} <= set(attempts_of(record))


@pytest.mark.parametrize(("verdict", "final_tier"), [("yes", 0), ("no", 1)])
def test_a_judge_grades_the_cheap_answer(live_gateway, verdict, final_tier):
    behaviour = scripts(cheap_model=("The answer is 42.",), judge_model=(verdict,))
    with running_upstream(behaviour) as upstream:
        judge = openai_endpoint("judge", upstream.base_url, "judge-model")
        key = gated_policy(upstream.base_url, judge=judge)
        _, record = ask(live_gateway.url, key)
        judged = upstream.last_request if final_tier == 0 else None

    assert record.final_tier == final_tier
    assert ("judge", "judge") in attempts_of(record)
    assert every_attempt_is_paid_for(record)
    if judged is not None:
        # The judge saw the request and the answer inside the rubric.
        prompt = judged["messages"][-1]["content"]
        assert QUESTION in prompt and "The answer is 42." in prompt


def test_a_streamed_request_is_gated_before_anything_is_sent(live_gateway):
    disagreeing = ("The answer is 42.", "The answer is 13.", "The answer is 48.")
    with running_upstream(scripts(cheap_model=disagreeing)) as upstream:
        key = gated_policy(upstream.base_url, samples=3)
        client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)
        stream = client.chat.completions.create(
            model="gated", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        request_id = stream.response.headers["x-cascadeops-request-id"]

    flush_records()
    record = RequestRecord.objects.get(id=request_id)
    assert text == STRONG_ANSWER
    assert attempts_of(record) == [
        ("cheap", "escalated"),
        ("cheap", "sample"),
        ("cheap", "sample"),
        ("strong", "accepted"),
    ]
    assert every_attempt_is_paid_for(record)
