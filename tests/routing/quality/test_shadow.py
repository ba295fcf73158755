"""Shadow evaluation: a local OpenAI-compatible upstream stands in for the strongest tier."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from routing.config.snapshots import endpoint_snapshot
from routing.engine.costing import attempt_cost
from routing.models import QualityLabel, RequestRecord, ShadowEvaluation
from routing.providers.local import replay_prompts
from routing.quality.shadow import CLAIM_TIMEOUT, judge_reply, shadow_evaluate
from testing.factories import make_key, make_policy, openai_endpoint, replay_endpoints
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.django_db

JANET = replay_prompts()[0]  # Mixtral's recorded answer ends "#### 18", and it is right


@pytest.fixture
def shadowed(request):
    """A policy answered by replayed Mixtral, re-checked by an upstream "strong" model."""
    behaviour = getattr(request, "param", UpstreamBehaviour())
    with running_upstream(behaviour) as upstream:
        mixtral, _ = replay_endpoints()
        strong = openai_endpoint("upstream-strong", upstream.base_url, "strong", input_price_per_m=Decimal("10"))
        policy = make_policy("shadowed", [(mixtral, 0.0), (strong, 1.0)], shadow_rate=1.0)
        _, key = make_key(policy)
        yield upstream, strong, key


def route(client, key: str, prompt: str) -> str:
    body = json.dumps({"messages": [{"role": "user", "content": prompt}]})
    response = client.post(
        "/v1/chat/completions", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 200, response.content
    return response["x-request-id"]


def flush_and_evaluate(django_capture_on_commit_callbacks) -> None:
    """Flush as beat does; the evaluation task runs (eagerly) after the commit."""
    with django_capture_on_commit_callbacks(execute=True):
        flush_records()


def shadow_label(request_id: str) -> float | None:
    label = QualityLabel.objects.filter(record_id=request_id, source="shadow").first()
    return None if label is None else label.value


def upstream_cost(endpoint, calls: int) -> Decimal:
    usage = UpstreamBehaviour()
    one = attempt_cost(endpoint_snapshot(endpoint, timezone.now()), usage.prompt_tokens, usage.completion_tokens)
    return one * calls


@pytest.mark.parametrize(
    "shadowed", [UpstreamBehaviour(answer="16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\n#### 18")], indirect=True
)
def test_a_cheap_math_answer_with_the_strong_final_number_is_labelled_acceptable(
    client, shadowed, django_capture_on_commit_callbacks
):
    upstream, _, key = shadowed
    request_id = route(client, key, JANET)

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    assert (evaluation.status, evaluation.judge, evaluation.acceptable) == ("done", "exact_match", True)
    assert upstream.calls["strong"] == 1  # exact match needs no judge call
    assert shadow_label(request_id) == 1.0


@pytest.mark.parametrize("shadowed", [UpstreamBehaviour(answer="She makes $20 a day.\n#### 20")], indirect=True)
def test_a_cheap_math_answer_with_another_final_number_is_labelled_unacceptable(
    client, shadowed, django_capture_on_commit_callbacks
):
    _, _, key = shadowed
    request_id = route(client, key, JANET)

    flush_and_evaluate(django_capture_on_commit_callbacks)

    assert ShadowEvaluation.objects.get(record_id=request_id).acceptable is False
    assert shadow_label(request_id) == 0.0


@pytest.mark.parametrize("shadowed", [UpstreamBehaviour(answer="ACCEPTABLE")], indirect=True)
def test_an_open_ended_answer_is_judged_by_the_strongest_tier(client, shadowed, django_capture_on_commit_callbacks):
    upstream, _, key = shadowed
    request_id = route(client, key, "Hello there, nice to meet you!")

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    assert (evaluation.judge, evaluation.acceptable) == ("llm_judge", True)
    assert upstream.calls["strong"] == 2  # the reference answer, then the judging prompt
    judging = upstream.last_request["messages"][0]["content"]
    assert "Hello there, nice to meet you!" in judging and "ACCEPTABLE or UNACCEPTABLE" in judging


@pytest.mark.parametrize("shadowed", [UpstreamBehaviour(answer="ACCEPTABLE")], indirect=True)
def test_the_shadow_cost_is_recorded_on_the_evaluation_and_never_on_the_request(
    client, shadowed, django_capture_on_commit_callbacks
):
    _, strong, key = shadowed
    request_id = route(client, key, "Hello there, nice to meet you!")

    flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    record = RequestRecord.objects.get(id=request_id)
    assert evaluation.cost == upstream_cost(strong, calls=2) > 0
    assert (evaluation.input_tokens, evaluation.output_tokens) == (40, 12)
    assert record.cost == sum(a.cost for a in record.attempts.all())  # Mixtral's call alone
    assert [a.model for a in record.attempts.all()] == ["replay-mixtral"]


def test_an_answer_from_the_strongest_tier_is_not_shadowed(client, shadowed, django_capture_on_commit_callbacks):
    _, strong, key = shadowed
    cheap = strong.tiers.get().policy.tiers.get(position=0)
    cheap.threshold = 1.0  # Mixtral's hedging, wrong answer to Lisa's question scores below it
    cheap.save()
    lisa = next(p for p in replay_prompts() if p.startswith("Lisa and Peter"))
    request_id = route(client, key, lisa)

    flush_and_evaluate(django_capture_on_commit_callbacks)

    assert RequestRecord.objects.get(id=request_id).final_tier == 1
    assert not ShadowEvaluation.objects.filter(record_id=request_id).exists()


@pytest.mark.parametrize("shadowed", [UpstreamBehaviour(answer="#### 18")], indirect=True)
def test_an_evaluation_run_twice_calls_the_strong_tier_once(client, shadowed, django_capture_on_commit_callbacks):
    upstream, _, key = shadowed
    request_id = route(client, key, JANET)
    flush_and_evaluate(django_capture_on_commit_callbacks)

    assert shadow_evaluate(record_id=request_id) is None  # a redelivered task

    assert upstream.calls["strong"] == 1
    assert QualityLabel.objects.filter(record_id=request_id, source="shadow").count() == 1


def test_a_failing_strong_tier_fails_the_evaluation_and_labels_nothing(client, django_capture_on_commit_callbacks):
    with running_upstream() as upstream:
        mixtral, _ = replay_endpoints()
        broken = openai_endpoint("upstream-broken", upstream.base_url, "fail-500")
        _, key = make_key(make_policy("broken-shadow", [(mixtral, 0.0), (broken, 1.0)], shadow_rate=1.0))
        request_id = route(client, key, JANET)

        flush_and_evaluate(django_capture_on_commit_callbacks)

    evaluation = ShadowEvaluation.objects.get(record_id=request_id)
    assert evaluation.status == "failed"
    assert "500" in evaluation.error
    assert shadow_label(request_id) is None


def test_nothing_is_shadowed_when_the_rate_is_zero(client, shadowed, django_capture_on_commit_callbacks):
    upstream, strong, key = shadowed
    policy = strong.tiers.get().policy
    policy.shadow_rate = 0.0
    policy.save()

    route(client, key, JANET)
    flush_and_evaluate(django_capture_on_commit_callbacks)

    assert ShadowEvaluation.objects.count() == 0
    assert upstream.calls["strong"] == 0


@pytest.mark.parametrize(
    ("reply", "verdict"), [("ACCEPTABLE", True), ("unacceptable.", False), (" Acceptable\n", True)]
)
def test_the_judges_one_word_reply_is_read_either_way(reply, verdict):
    assert judge_reply(reply) is verdict


@pytest.mark.parametrize("shadowed", [UpstreamBehaviour(answer="#### 18")], indirect=True)
def test_an_evaluation_a_dead_worker_left_running_is_taken_over_after_the_timeout(client, shadowed):
    upstream, _, key = shadowed
    request_id = route(client, key, JANET)
    flush_records()  # no commit here, so no task ran: the evaluation waits, pending
    stale = timezone.now() - CLAIM_TIMEOUT - timedelta(seconds=1)
    ShadowEvaluation.objects.filter(record_id=request_id).update(status="running", claimed_at=timezone.now())

    assert shadow_evaluate(record_id=request_id) is None  # a live worker has it
    ShadowEvaluation.objects.filter(record_id=request_id).update(claimed_at=stale)
    evaluation = shadow_evaluate(record_id=request_id)

    assert (evaluation.status, evaluation.acceptable, upstream.calls["strong"]) == ("done", True, 1)
