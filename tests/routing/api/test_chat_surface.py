"""The whole chat API through the gateway, with the official `openai` client.

Tools whole and streamed, structured outputs, logprobs and every sampling parameter, against
a local OpenAI-compatible upstream (testing.upstream) that records what it receives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pydantic
import pytest

from routing.models import RequestRecord
from testing.factories import make_key, make_policy, openai_endpoint
from testing.upstream import UpstreamBehaviour, UpstreamServer, running_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.live

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
PARIS = '{"city": "Paris", "unit": "c"}'
BEHAVIOUR = UpstreamBehaviour(
    answer='{"name": "Ada", "age": 36}',
    logprobs=(-0.25, -0.5),
    tool_calls=(
        ("good-tools", (("get_weather", PARIS),)),
        ("unknown-tool", (("get_forecast", PARIS),)),
        ("bad-arguments", (("get_weather", '{"town": "Paris"}'),)),
    ),
)


class Person(pydantic.BaseModel):
    name: str
    age: int


@pytest.fixture
def upstream() -> Iterator[UpstreamServer]:
    with running_upstream(BEHAVIOUR) as server:
        yield server


def client_for(gateway: Any, upstream: UpstreamServer, *models: str, **fields: Any) -> openai.OpenAI:
    """A key on a policy named "surface" whose tiers are these upstream models, cheapest first."""
    endpoints = [openai_endpoint(f"ep-{model}", upstream.base_url, model, supports_images=True) for model in models]
    policy = make_policy("surface", [(e, 0.5) for e in endpoints], **fields)
    _, key = make_key(policy)
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def test_every_parameter_reaches_the_upstream_as_sent(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "good-tools")
    sent: dict[str, Any] = {
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "stop": ["\n\n", "END"],
        "seed": 7,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "max_completion_tokens": 77,
        "reasoning_effort": "low",
        "temperature": 0.3,
        "user": "user-1",
    }
    messages: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this picture, and the weather?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": PARIS}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18 C, sunny"},
    ]

    client.chat.completions.create(model="surface", messages=messages, **sent)

    received = upstream.last_request
    assert {name: received[name] for name in sent} == sent
    assert received["messages"] == messages
    assert "max_tokens" not in received  # the newer name, as sent


def test_a_tool_call_comes_back_whole_with_the_upstream_model_and_fingerprint(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "good-tools")

    raw = client.chat.completions.with_raw_response.create(
        model="surface", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER]
    )
    completion = raw.parse()

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_0",
        "get_weather",
        {"city": "Paris", "unit": "c"},
    )
    assert completion.model == "good-tools"  # the upstream's model id
    assert raw.headers["x-cascadeops-model"] == "ep-good-tools"  # the endpoint, in the headers
    assert completion.system_fingerprint == "fp_upstream"


def test_a_tool_call_streams_as_deltas(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "good-tools")

    stream = client.chat.completions.create(
        model="surface", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER], stream=True
    )
    names, arguments, finish = [], "", None
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or ():
            names += [delta.function.name] if delta.function and delta.function.name else []
            arguments += (delta.function.arguments or "") if delta.function else ""
        finish = choice.finish_reason or finish

    assert names == ["get_weather"]
    assert json.loads(arguments) == {"city": "Paris", "unit": "c"}
    assert finish == "tool_calls"


def test_parse_returns_the_pydantic_model(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "plain-json")

    completion = client.chat.completions.parse(
        model="surface", messages=[{"role": "user", "content": "Who?"}], response_format=Person
    )

    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)
    sent = upstream.last_request["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Person"


def test_logprobs_come_back_whole_and_streamed(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "plain")
    ask = {"model": "surface", "messages": [{"role": "user", "content": "Hi"}], "logprobs": True, "top_logprobs": 2}

    whole = client.chat.completions.create(**ask)
    streamed = [
        entry.logprob
        for chunk in client.chat.completions.create(**ask, stream=True)
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or ()
    ]

    assert [entry.logprob for entry in whole.choices[0].logprobs.content] == [-0.25, -0.5]
    assert streamed == [-0.25, -0.5]
    assert upstream.last_request["top_logprobs"] == 2


def test_an_unknown_field_is_refused_by_default(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "plain")

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="surface", messages=[{"role": "user", "content": "Hi"}], extra_body={"min_p": 0.1}
        )

    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "min_p"
    assert upstream.calls["plain"] == 0


def test_a_policy_may_pass_unknown_fields_through(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "plain", unknown_fields="pass")

    client.chat.completions.create(
        model="surface", messages=[{"role": "user", "content": "Hi"}], extra_body={"min_p": 0.1}
    )

    assert upstream.last_request["min_p"] == 0.1


@pytest.mark.parametrize(
    ("cheap", "reason"),
    [
        ("unknown-tool", "unknown tool 'get_forecast'"),
        ("bad-arguments", "the arguments of 'get_weather' break its schema"),
    ],
)
def test_an_invalid_cheap_tool_call_escalates_and_the_record_says_why(live_gateway, upstream, cheap, reason):
    client = client_for(live_gateway, upstream, cheap, "good-tools")

    raw = client.chat.completions.with_raw_response.create(
        model="surface", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER]
    )

    call = raw.parse().choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}
    assert raw.headers["x-cascadeops-escalated"] == "true"
    flush_records()
    attempts = list(RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"]).attempts.order_by("position"))
    assert [(a.model, a.outcome, a.error_kind) for a in attempts] == [
        (f"ep-{cheap}", "escalated", "invalid_tool_call"),
        ("ep-good-tools", "accepted", ""),
    ]
    assert reason in attempts[0].error and attempts[0].score == 0.0


def test_tool_requests_can_start_on_a_stronger_tier(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "unknown-tool", "good-tools", tools_first_tier=1)

    raw = client.chat.completions.with_raw_response.create(
        model="surface", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER]
    )

    assert raw.headers["x-cascadeops-tier"] == "1"
    assert upstream.calls["unknown-tool"] == 0


def test_a_json_schema_answer_that_breaks_the_schema_escalates(live_gateway):
    behaviour = UpstreamBehaviour(
        scripts=(("sloppy", ('{"name": "Ada"}',)), ("careful", ('{"name": "Ada", "age": 36}',)))
    )
    with running_upstream(behaviour) as upstream:
        client = client_for(live_gateway, upstream, "sloppy", "careful")

        completion = client.chat.completions.parse(
            model="surface", messages=[{"role": "user", "content": "Who?"}], response_format=Person
        )

    assert completion.choices[0].message.parsed == Person(name="Ada", age=36)
    assert completion.model == "careful"


def test_a_cheap_tool_call_checked_before_streaming_is_sent_as_deltas(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "good-tools", "plain")

    raw = client.chat.completions.with_raw_response.create(
        model="surface", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER], stream=True
    )
    chunks = list(raw.parse())

    assert raw.headers["x-cascadeops-stream"] == "scored" and raw.headers["x-cascadeops-tier"] == "0"
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_0", "get_weather", {"city": "Paris", "unit": "c"})
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert {c.system_fingerprint for c in chunks} == {"fp_upstream"}
    assert upstream.calls["plain"] == 0


def test_a_tool_call_is_cached_with_its_calls_and_a_logprobs_request_never_is(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "good-tools")
    ask: dict[str, Any] = {
        "model": "surface",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER],
    }

    client.chat.completions.create(**ask)
    again = client.chat.completions.with_raw_response.create(**ask)
    other_tools = client.chat.completions.with_raw_response.create(**{**ask, "tool_choice": "required"})
    with_logprobs = client.chat.completions.with_raw_response.create(**{**ask, "logprobs": True})

    assert again.headers["x-cascadeops-cache"] == "hit-exact"
    assert again.parse().choices[0].message.tool_calls[0].function.name == "get_weather"
    assert again.parse().model == "good-tools"
    assert other_tools.headers["x-cascadeops-cache"] == "miss"
    assert with_logprobs.headers["x-cascadeops-cache"] == "skip"


def test_the_last_tiers_broken_tool_call_is_returned_and_the_record_says_what_was_wrong(live_gateway, upstream):
    client = client_for(live_gateway, upstream, "unknown-tool")

    raw = client.chat.completions.with_raw_response.create(
        model="surface", messages=[{"role": "user", "content": "Weather?"}], tools=[WEATHER], stream=True
    )
    list(raw.parse())

    flush_records()
    attempt = RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"]).attempts.get()
    assert (attempt.outcome, attempt.error_kind) == ("accepted", "invalid_tool_call")
    assert "get_forecast" in attempt.error
