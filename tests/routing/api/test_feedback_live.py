"""The official `openai` client posting feedback to a real HTTP server running the gateway."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from routing.models import Policy, QualityLabel
from routing.providers.local import replay_prompts
from testing.factories import make_key
from tests.conftest import flush_records

pytestmark = pytest.mark.live


@pytest.fixture
def retrying_client(demo_client: openai.OpenAI) -> openai.OpenAI:
    """The demo client with the official client's retries on: a 409 for a record not stored yet is retried."""
    return demo_client.with_options(max_retries=2)


def test_feedback_posted_right_after_the_answer_lands_once_the_record_does(retrying_client):
    completion = retrying_client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": replay_prompts()[0]}]
    )
    # The record is still in the buffer: the first post is a 409 with Retry-After, which
    # the client honours by itself; the flusher stores the record meanwhile.
    flusher = threading.Timer(0.5, flush_records)
    flusher.start()

    response = retrying_client.post(
        "/feedback",
        body={"request_id": completion.id, "label": "incorrect", "comment": "wrong total"},
        cast_to=httpx.Response,
    )

    flusher.join()
    assert response.status_code == 201
    label = QualityLabel.objects.get(source="feedback")
    assert (str(label.record_id.hex), label.value, label.comment) == (
        completion.id.removeprefix("chatcmpl-"),
        0.0,
        "wrong total",
    )


def test_the_client_sees_another_teams_request_as_not_found(retrying_client, live_gateway):
    completion = retrying_client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}])
    flush_records()
    _, other = make_key(Policy.objects.get(name="demo"), team="finance", app="reports")
    stranger = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=other, max_retries=0)

    with pytest.raises(openai.NotFoundError) as caught:
        stranger.post("/feedback", body={"request_id": completion.id, "score": 1}, cast_to=httpx.Response)

    assert caught.value.code == "request_not_found"
