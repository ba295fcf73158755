"""The routing API through Django's ASGI stack: answers, headers, records and every error."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing.models import ApiKey, Policy, RequestAttempt, RequestRecord
from routing.policies import services
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, replay_endpoints
from tests.conftest import flush_records

pytestmark = pytest.mark.django_db

URL = "/v1/chat/completions"


@pytest.fixture
def demo_key() -> str:
    mixtral, gpt4 = replay_endpoints()
    policy = make_policy("demo", [(mixtral, 0.0), (gpt4, 1.0)])
    _, plaintext = make_key(policy)
    return plaintext


def post(client, key: str | None, body: object, **extra: str):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **headers, **extra)


def chat(prompt: str = "Hello there", **fields: object) -> dict[str, object]:
    return {"model": "demo", "messages": [{"role": "user", "content": prompt}], **fields}


def test_it_answers_in_openai_format_with_routing_headers(client, demo_key):
    response = post(client, demo_key, chat(replay_prompts()[0]))

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert "#### 18" in body["choices"][0]["message"]["content"]  # Mixtral's recorded answer
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert response["x-cascadeops-model"] == "replay-mixtral"
    assert response["x-cascadeops-tier"] == "0"
    assert response["x-cascadeops-escalated"] == "false"
    assert Decimal(response["x-cascadeops-cost-usd"]) > 0
    assert response["x-request-id"] == response["x-cascadeops-request-id"]


def test_model_may_be_omitted_to_use_the_keys_policy(client, demo_key):
    response = post(client, demo_key, {"messages": [{"role": "user", "content": "Hi"}]})

    assert response.status_code == 200
    assert response["x-cascadeops-policy"] == "demo@1"


def test_every_routed_request_is_recorded_once_with_its_attempts(client, demo_key):
    ids = [post(client, demo_key, chat(p))["x-cascadeops-request-id"] for p in replay_prompts()[:5]]

    assert flush_records() == 5
    assert flush_records() == 0
    records = RequestRecord.objects.filter(id__in=ids)
    assert records.count() == 5
    record = records.get(id=ids[0])
    assert (record.team, record.app, record.policy_name, record.policy_version) == ("growth", "support-bot", "demo", 1)
    assert record.quality_label == 1.0  # Mixtral's recorded answer to the first prompt is right
    assert RequestAttempt.objects.filter(record__in=records).count() == 5


def test_end_user_and_metadata_are_recorded(client, demo_key):
    response = post(client, demo_key, chat(user="customer-42", metadata={"feature": "checkout"}))

    flush_records()
    record = RequestRecord.objects.get(id=response["x-cascadeops-request-id"])
    assert record.end_user == "customer-42"
    assert record.metadata == {"feature": "checkout"}


def test_no_configuration_is_read_from_the_database_after_warm_up(client, demo_key, settings):
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 3600
    post(client, demo_key, chat())

    with CaptureQueriesContext(connection) as queries:
        response = post(client, demo_key, chat())

    assert response.status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_a_saved_policy_is_seen_after_the_refresh_interval(
    client, demo_key, settings, django_capture_on_commit_callbacks
):
    settings.CASCADEOPS_CONFIG_REFRESH_SECONDS = 0
    assert post(client, demo_key, chat())["x-cascadeops-policy"] == "demo@1"

    with django_capture_on_commit_callbacks(execute=True):
        policy = Policy.objects.get(name="demo")
        policy.max_escalations = 0
        policy.save()

    assert post(client, demo_key, chat())["x-cascadeops-policy"] == "demo@2"


# --- Bad input: the documented status, OpenAI's error shape, never a 500 --------------


def assert_error(response, status: int, code: str, *, param: str | None = None, says: str = "") -> None:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert says.lower() in error["message"].lower()


def test_malformed_json_is_a_400(client, demo_key):
    assert_error(post(client, demo_key, b'{"messages": ['), 400, "invalid_request", says="could not parse the JSON")


def test_a_body_that_is_not_an_object_is_a_400(client, demo_key):
    assert_error(post(client, demo_key, b"[1, 2]"), 400, "invalid_request", says="JSON object")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "demo"}, "messages"),
        ({"model": "demo", "messages": "hi"}, "messages"),
        ({"model": "demo", "messages": []}, "messages"),
        ({"model": "demo", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"model": "demo", "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"model": "demo", "messages": ["hi"]}, "messages[0]"),
        (chat(max_tokens="ten"), "max_tokens"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(temperature=5), "temperature"),
        (chat(temperature="hot"), "temperature"),
        (chat(user=7), "user"),
        (chat(user="u" * 201), "user"),
        (chat(metadata={"k": 1}), "metadata"),
        (chat(metadata={"k": "a\x00b"}), "metadata"),
        (chat(model=3), "model"),
        (chat(stream="yes"), "stream"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (chat(stream=True, stream_options={"include_usage": 1}), "stream_options.include_usage"),
        (chat(top_p=1.5), "top_p"),
        (chat(frequency_penalty=3), "frequency_penalty"),
        (chat(presence_penalty="high"), "presence_penalty"),
        (chat(stop=["a", 1]), "stop"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(seed=1.5), "seed"),
        (chat(logit_bias={"50256": 200}), "logit_bias.50256"),
        (chat(top_logprobs=3), "top_logprobs"),
        (chat(logprobs=True, top_logprobs=21), "top_logprobs"),
        (chat(reasoning_effort="extreme"), "reasoning_effort"),
        (chat(parallel_tool_calls="yes"), "parallel_tool_calls"),
        (chat(max_completion_tokens=0), "max_completion_tokens"),
        (chat(tools={"type": "function"}), "tools"),
        (chat(tools=[{"type": "retrieval"}]), "tools[0]"),
        (chat(tools=[{"type": "function", "function": {"name": "a b"}}]), "tools[0].function.name"),
        (
            chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]),
            "tools[0].function.parameters",
        ),
        (chat(tool_choice="required"), "tool_choice"),
        (
            chat(
                tools=[{"type": "function", "function": {"name": "f"}}],
                tool_choice={"type": "function", "function": {"name": "g"}},
            ),
            "tool_choice",
        ),
        (chat(response_format={"type": "yaml"}), "response_format"),
        (
            chat(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
            "response_format.json_schema.name",
        ),
        (
            chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}),
            "response_format.json_schema.schema",
        ),
        ({"model": "demo", "messages": [{"role": "tool", "content": "18 C"}]}, "messages[0].tool_call_id"),
        ({"model": "demo", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0]"),
        (
            {"model": "demo", "messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": 1}]}]},
            "messages[0].tool_calls[0]",
        ),
    ],
)
def test_invalid_fields_are_a_400_that_names_the_field(client, demo_key, body, param):
    assert_error(post(client, demo_key, body), 400, "invalid_request", param=param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(n=3), "n"),
        (chat(functions=[{"name": "f"}]), "functions"),
        (chat(function_call="auto"), "function_call"),
        (chat(modalities=["text", "audio"]), "modalities"),
        (chat(min_p=0.1), "min_p"),  # not a field of the API: the demo policy refuses such fields
    ],
)
def test_parameters_the_gateway_does_not_take_are_a_400_that_names_them(client, demo_key, body, param):
    assert_error(post(client, demo_key, body), 400, "unsupported_parameter", param=param)


def test_a_body_over_the_limit_is_a_413(client, demo_key, settings):
    settings.CASCADEOPS_MAX_REQUEST_BYTES = 1_000
    assert_error(post(client, demo_key, chat("x" * 2_000)), 413, "request_too_large", says="1000 bytes")


def test_a_missing_key_is_a_401(client, demo_key):
    assert_error(post(client, None, chat()), 401, "missing_api_key", says="didn't provide an API key")


def test_an_unknown_key_is_a_401(client, demo_key):
    assert_error(post(client, "co-not-a-real-key-at-all", chat()), 401, "invalid_api_key", says="Incorrect API key")


def test_a_revoked_key_is_a_401(client, demo_key):
    key = ApiKey.objects.get()
    services.api_key_revoke(key=key)
    assert_error(post(client, demo_key, chat()), 401, "revoked_api_key", says="revoked")


def test_an_expired_key_is_a_401(client, demo_key):
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    assert_error(post(client, demo_key, chat()), 401, "expired_api_key", says="expired")


def test_an_unknown_policy_is_a_404(client, demo_key):
    assert_error(post(client, demo_key, chat(model="gpt-5")), 404, "model_not_found", param="model", says="gpt-5")


def test_get_on_chat_completions_is_a_405(client, demo_key):
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {demo_key}")
    assert_error(response, 405, "method_not_allowed")


def test_models_lists_the_policy_the_key_may_use(client, demo_key):
    response = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {demo_key}")

    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["demo"]


def test_models_needs_a_key(client, demo_key):
    assert_error(client.get("/v1/models"), 401, "missing_api_key")
