"""A learned scorer trained on replay-labelled demo traffic, then scoring live answers."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from routing.engine.learned import LearnedModel
from routing.engine.scoring import HeuristicScorer
from routing.engine.types import ChatRequest, Completion, Message
from routing.models import Policy, RequestRecord, ScorerVersion
from routing.providers.local import replay_prompts
from routing.quality.learning import MIN_TRAINING_LABELS, TooFewLabels, scorer_version_train
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

pytestmark = pytest.mark.django_db

TRAINING_REQUESTS = 120
PROMPT = replay_prompts()[200]  # not among the training prompts


@pytest.fixture
def demo(settings):
    """The demo's two replay tiers, every answer from Mixtral while labels are collected."""
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("demo", [(mixtral, 0.0), (gpt4, 1.0)], sample_rate=1.0)
    _, key = make_key(policy)
    return policy, key


def ask(client, key: str, prompt: str):
    body = json.dumps({"messages": [{"role": "user", "content": prompt}]})
    response = client.post(
        "/v1/chat/completions", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert response.status_code == 200, response.content
    return response


def collect_labelled_traffic(client, key: str, count: int = TRAINING_REQUESTS) -> None:
    for prompt in replay_prompts()[:count]:
        ask(client, key, prompt)
    flush_records()


def use_learned_scorer(policy: Policy, threshold: float, capture) -> None:
    with capture(execute=True):
        policy.scorer = "learned"
        policy.save()
        tier = policy.tiers.get(position=0)
        tier.threshold = threshold
        tier.save()


def stored_answer(request_id: str) -> tuple[ChatRequest, Completion, str]:
    """The request, its answer and its task as the record keeps them."""
    record = RequestRecord.objects.select_related("sample").get(id=request_id)
    chat = ChatRequest(messages=(Message("user", record.sample.prompt),))
    completion = Completion(
        text=record.sample.answer, finish_reason="stop", input_tokens=0, output_tokens=0, latency_ms=0
    )
    return chat, completion, record.task_category


def test_a_version_trained_on_replay_labels_is_stored_with_its_held_out_metrics(client, demo):
    policy, key = demo
    collect_labelled_traffic(client, key)

    version = scorer_version_train(policy=policy)

    assert (version.version, version.kind, version.active, version.n_labels) == (1, "learned", True, TRAINING_REQUESTS)
    assert {"auc", "brier", "accuracy", "base_rate", "n_holdout"} <= set(version.metrics)
    assert 0.5 < version.metrics["auc"] <= 1.0  # better than chance on the held-out labels
    LearnedModel.from_dict(version.model)  # the stored JSON rebuilds the model


def test_the_hot_path_answers_with_the_learned_scorers_score(client, demo, django_capture_on_commit_callbacks):
    policy, key = demo
    collect_labelled_traffic(client, key)
    with django_capture_on_commit_callbacks(execute=True):
        version = scorer_version_train(policy=policy)
    use_learned_scorer(policy, 0.0, django_capture_on_commit_callbacks)

    response = ask(client, key, PROMPT)

    flush_records()
    chat, completion, task = stored_answer(response["x-request-id"])
    learned = LearnedModel.from_dict(version.model).predict(chat, completion, task)
    heuristic = HeuristicScorer().score(chat, completion, task=task)
    assert response["x-cascadeops-score"] == f"{learned:.4f}"
    assert response["x-cascadeops-score"] != f"{heuristic:.4f}"


def test_learned_without_an_active_version_scores_with_the_heuristic(client, demo, django_capture_on_commit_callbacks):
    policy, key = demo
    use_learned_scorer(policy, 0.0, django_capture_on_commit_callbacks)
    baseline = ask(client, key, PROMPT)["x-cascadeops-score"]
    with django_capture_on_commit_callbacks(execute=True):
        policy.scorer = "heuristic"
        policy.save()

    assert ask(client, key, PROMPT)["x-cascadeops-score"] == baseline


def test_a_deactivated_version_stops_scoring_within_the_refresh_interval(
    client, demo, django_capture_on_commit_callbacks
):
    policy, key = demo
    collect_labelled_traffic(client, key)
    with django_capture_on_commit_callbacks(execute=True):
        version = scorer_version_train(policy=policy)
    use_learned_scorer(policy, 0.0, django_capture_on_commit_callbacks)
    learned = ask(client, key, PROMPT)["x-cascadeops-score"]

    with django_capture_on_commit_callbacks(execute=True):
        version.active = False
        version.save()

    assert ask(client, key, PROMPT)["x-cascadeops-score"] != learned


def test_the_learned_scorer_reads_no_configuration_after_warm_up(
    client, demo, settings, django_capture_on_commit_callbacks
):
    policy, key = demo
    collect_labelled_traffic(client, key)
    with django_capture_on_commit_callbacks(execute=True):
        scorer_version_train(policy=policy)
    use_learned_scorer(policy, 0.5, django_capture_on_commit_callbacks)
    ask(client, key, PROMPT)
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 3600

    with CaptureQueriesContext(connection) as queries:
        ask(client, key, PROMPT)

    assert len(queries) == 0, [q["sql"] for q in queries]


def test_too_few_labels_train_nothing(client, demo):
    policy, key = demo
    collect_labelled_traffic(client, key, count=MIN_TRAINING_LABELS - 1)

    with pytest.raises(TooFewLabels):
        scorer_version_train(policy=policy)
    assert not ScorerVersion.objects.exists()


def test_a_new_version_replaces_the_active_one(client, demo):
    policy, key = demo
    collect_labelled_traffic(client, key)
    first = scorer_version_train(policy=policy)

    second = scorer_version_train(policy=policy, seed=1)

    first.refresh_from_db()
    assert (first.active, second.active, second.version) == (False, True, 2)
