"""Quality labels: the feedback API, replay labels and sampled texts, through the real handler."""

from __future__ import annotations

import json
import uuid

import pytest

from routing.models import QualityLabel, RequestRecord, RequestSample
from routing.providers.local import replay_prompts
from routing.records import flush, recorder
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

pytestmark = pytest.mark.django_db

CHAT = "/v1/chat/completions"
FEEDBACK = "/v1/feedback"


@pytest.fixture
def policy():
    mixtral, gpt4 = replay_endpoints()
    return make_policy("demo", [(mixtral, 0.0), (gpt4, 1.0)])


@pytest.fixture
def key(policy) -> str:
    return make_key(policy)[1]


def post(client, key: str | None, url: str, body: object):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


def routed(client, key: str, prompt: str | None = None) -> str:
    """Route one request, flush its record, and return its request id."""
    body = {"messages": [{"role": "user", "content": prompt or replay_prompts()[0]}]}
    response = post(client, key, CHAT, body)
    assert response.status_code == 200, response.content
    flush_records()
    return response["x-request-id"]


def feedback_labels(request_id: str) -> list[QualityLabel]:
    return list(QualityLabel.objects.filter(record_id=request_id, source="feedback"))


def assert_error(response, status: int, code: str, param: str | None = None) -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["param"] == param


# --- labels --------------------------------------------------------------------------------


def test_it_stores_the_apps_label_for_its_own_request(client, key):
    request_id = routed(client, key)

    response = post(client, key, FEEDBACK, {"request_id": request_id, "label": "incorrect", "comment": "off by one"})

    assert response.status_code == 201
    assert response.json()["object"] == "feedback"
    assert response.json()["score"] == 0.0
    [label] = feedback_labels(request_id)
    assert (label.value, label.comment) == (0.0, "off by one")


def test_a_score_is_stored_as_given(client, key):
    request_id = routed(client, key)

    response = post(client, key, FEEDBACK, {"request_id": request_id, "score": 0.75})

    assert response.status_code == 201
    assert [label.value for label in feedback_labels(request_id)] == [0.75]


def test_posting_again_replaces_the_label_and_never_adds_a_second(client, key):
    request_id = routed(client, key)
    post(client, key, FEEDBACK, {"request_id": request_id, "label": "incorrect"})

    response = post(client, key, FEEDBACK, {"request_id": request_id, "label": "correct", "comment": "fixed"})

    assert response.status_code == 200
    [label] = feedback_labels(request_id)
    assert (label.value, label.comment) == (1.0, "fixed")


def test_the_completion_id_the_client_sees_works_as_the_request_id(client, key):
    request_id = routed(client, key)

    response = post(client, key, FEEDBACK, {"request_id": f"chatcmpl-{uuid.UUID(request_id).hex}", "score": 1})

    assert response.status_code == 201
    assert response.json()["request_id"] == request_id


def test_feedback_sits_beside_the_replay_label_of_the_same_request(client, key):
    request_id = routed(client, key)

    post(client, key, FEEDBACK, {"request_id": request_id, "label": "incorrect"})

    labels = dict(QualityLabel.objects.filter(record_id=request_id).values_list("source", "value"))
    assert labels == {"replay": 1.0, "feedback": 0.0}


# --- who may label what ----------------------------------------------------------------------


def test_a_request_of_another_team_is_a_404(client, key, policy):
    request_id = routed(client, key)
    _, other_team = make_key(policy, team="finance", app="reports")

    response = post(client, other_team, FEEDBACK, {"request_id": request_id, "label": "incorrect"})

    assert_error(response, 404, "request_not_found", "request_id")
    assert feedback_labels(request_id) == []


def test_another_key_of_the_same_team_and_app_may_label(client, key, policy):
    request_id = routed(client, key)
    _, rotated = make_key(policy)

    assert post(client, rotated, FEEDBACK, {"request_id": request_id, "score": 0.5}).status_code == 201


def test_a_request_not_recorded_yet_is_a_409_that_says_when_to_retry(client, key):
    response = post(client, key, CHAT, {"messages": [{"role": "user", "content": "Hi"}]})
    request_id = response["x-request-id"]  # answered, not flushed

    early = post(client, key, FEEDBACK, {"request_id": request_id, "label": "correct"})

    assert_error(early, 409, "request_not_recorded_yet", "request_id")
    assert early["Retry-After"] == "2"
    assert "retry" in early.json()["error"]["message"].lower()
    flush_records()
    assert post(client, key, FEEDBACK, {"request_id": request_id, "label": "correct"}).status_code == 201


def test_an_unknown_key_is_a_401(client, key):
    request_id = routed(client, key)

    response = post(client, "co-not-a-key", FEEDBACK, {"request_id": request_id, "label": "correct"})

    assert_error(response, 401, "invalid_api_key")


def test_a_missing_key_is_a_401(client):
    assert_error(post(client, None, FEEDBACK, {"label": "correct"}), 401, "missing_api_key")


def test_get_is_a_405(client, key):
    response = client.get(FEEDBACK, HTTP_AUTHORIZATION=f"Bearer {key}")

    assert_error(response, 405, "method_not_allowed")


# --- bad input: a 400 naming the field ---------------------------------------------------------

VALID_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"label": "correct"}, "request_id"),
        ({"request_id": "nope", "label": "correct"}, "request_id"),
        ({"request_id": 42, "label": "correct"}, "request_id"),
        ({"request_id": VALID_ID}, "label"),
        ({"request_id": VALID_ID, "label": "correct", "score": 1}, "label"),
        ({"request_id": VALID_ID, "label": "great"}, "label"),
        ({"request_id": VALID_ID, "score": 1.5}, "score"),
        ({"request_id": VALID_ID, "score": -0.1}, "score"),
        ({"request_id": VALID_ID, "score": "1"}, "score"),
        ({"request_id": VALID_ID, "score": True}, "score"),
        ({"request_id": VALID_ID, "score": 1, "comment": 7}, "comment"),
        ({"request_id": VALID_ID, "score": 1, "comment": "x" * 2001}, "comment"),
        ({"request_id": VALID_ID, "score": 1, "source": "shadow"}, "source"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(client, key, body, param):
    assert_error(post(client, key, FEEDBACK, body), 400, "invalid_request", param)


def test_malformed_json_is_a_400(client, key):
    assert_error(post(client, key, FEEDBACK, b'{"request_id": '), 400, "invalid_request")


# --- replay labels and sampled texts ----------------------------------------------------------


def test_each_recorded_grade_becomes_a_replay_label_when_the_record_is_stored(client, key):
    right, wrong = replay_prompts()[0], next(p for p in replay_prompts() if p.startswith("Lisa and Peter"))
    ids = [
        post(client, key, CHAT, {"messages": [{"role": "user", "content": p}]})["x-request-id"] for p in (right, wrong)
    ]
    post(client, key, CHAT, {"messages": [{"role": "user", "content": "Not in the data set"}]})

    flush_records()

    replay = dict(QualityLabel.objects.filter(source="replay").values_list("record_id", "value"))
    assert {str(k): v for k, v in replay.items()} == {ids[0]: 1.0, ids[1]: 0.0}


def test_a_redelivered_batch_adds_no_second_replay_label(client, key):
    for prompt in replay_prompts()[:3]:
        post(client, key, CHAT, {"messages": [{"role": "user", "content": prompt}]})
    buffer = recorder.get_buffer()
    payloads = [c.payload for c in buffer.claim(10)]

    # A flusher stored the batch and died before acknowledging it; the next one gets it again.
    assert len(flush.records_persist(payloads=payloads)) == 3
    assert flush.records_persist(payloads=payloads) == []

    assert QualityLabel.objects.filter(source="replay").count() == 3
    assert RequestRecord.objects.count() == 3


def test_no_text_is_kept_unless_the_policy_samples_it(client, key):
    request_id = routed(client, key)

    assert not RequestSample.objects.filter(record_id=request_id).exists()


def test_a_sampled_request_keeps_its_prompt_and_answer(client, key, policy):
    policy.sample_rate = 1.0
    policy.save()
    prompt = replay_prompts()[0]

    request_id = routed(client, key, prompt)

    sample = RequestSample.objects.get(record_id=request_id)
    assert sample.prompt == prompt
    assert sample.answer.strip().endswith("#### 18")
    assert (sample.answer_tier, sample.finish_reason) == (0, "stop")
