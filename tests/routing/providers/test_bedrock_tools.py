"""BedrockProvider with tools and JSON output: Converse shapes checked by botocore's Stubber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from routing.engine.errors import ProviderBadRequest
from routing.engine.streaming import StreamDone, ToolCallDelta
from routing.engine.types import ChatRequest, EndpointSnapshot, Message, ProviderType, ToolCall
from routing.providers.bedrock import BedrockProvider, StreamedConverse

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
WEATHER = MappingProxyType(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
)
TOOL_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
}
ENDPOINT = EndpointSnapshot(
    id=2,
    name="haiku-tier",
    provider_kind=ProviderType.BEDROCK,
    model_id=MODEL_ID,
    input_price_per_m=Decimal("0.25"),
    output_price_per_m=Decimal("1.25"),
)


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def answer(*content: dict[str, Any], stop_reason: str = "tool_use") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": list(content)}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 30, "outputTokens": 9, "totalTokens": 39},
        "metrics": {"latencyMs": 200},
    }


async def test_tools_go_as_tool_config_and_tool_use_comes_back_as_tool_calls(client: Any, stubber: Stubber) -> None:
    chat = ChatRequest(
        messages=(
            Message("user", "Weather in Paris and Rome?"),
            Message("assistant", "", tool_calls=(ToolCall("t1", "get_weather", '{"city": "Paris"}'),)),
            Message("tool", "18 C", tool_call_id="t1"),
        ),
        tools=(WEATHER,),
        tool_choice="required",
        options=MappingProxyType({"top_p": 0.9, "stop": ["END"]}),
    )
    expected = {
        "modelId": MODEL_ID,
        "messages": [
            {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}],
            },
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "18 C"}]}}]},
        ],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.0, "topP": 0.9, "stopSequences": ["END"]},
        "toolConfig": {"tools": [TOOL_SPEC], "toolChoice": {"any": {}}},
    }
    use = {"toolUse": {"toolUseId": "t2", "name": "get_weather", "input": {"city": "Rome"}}}
    stubber.add_response("converse", answer(use), expected)

    completion = await BedrockProvider(ENDPOINT, client=client).complete(chat, max_tokens=64)

    assert completion.tool_calls == (ToolCall("t2", "get_weather", '{"city": "Rome"}'),)
    assert completion.finish_reason == "tool_calls"


async def test_a_json_schema_is_asked_for_as_a_forced_tool_and_answered_as_text(client: Any, stubber: Stubber) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    chat = ChatRequest(
        messages=(Message("user", "How old?"),),
        response_format=MappingProxyType({"type": "json_schema", "json_schema": {"name": "Age", "schema": schema}}),
    )
    expected_config = {
        "tools": [
            {
                "toolSpec": {
                    "name": "json_answer",
                    "description": "Give the answer as this tool's input.",
                    "inputSchema": {"json": schema},
                }
            }
        ],
        "toolChoice": {"tool": {"name": "json_answer"}},
    }
    stubber.add_response(
        "converse",
        answer({"toolUse": {"toolUseId": "j", "name": "json_answer", "input": {"age": 36}}}),
        {
            "modelId": MODEL_ID,
            "messages": [{"role": "user", "content": [{"text": "How old?"}]}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.0},
            "toolConfig": expected_config,
        },
    )

    completion = await BedrockProvider(ENDPOINT, client=client).complete(chat, max_tokens=64)

    assert json.loads(completion.text) == {"age": 36}
    assert completion.tool_calls == () and completion.finish_reason == "stop"


async def test_a_parameter_converse_has_no_field_for_fails_the_tier_naming_it(client: Any) -> None:
    chat = ChatRequest(messages=(Message("user", "Hi"),), options=MappingProxyType({"seed": 7}))

    with pytest.raises(ProviderBadRequest, match="takes no seed"):
        await BedrockProvider(ENDPOINT, client=client).complete(chat, max_tokens=64)


def test_streamed_tool_use_becomes_tool_call_deltas() -> None:
    stream = StreamedConverse(ENDPOINT, ChatRequest(messages=(Message("user", "Weather?"),), tools=(WEATHER,)))
    events = [
        {"messageStart": {"role": "assistant"}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 0,
                "start": {"toolUse": {"toolUseId": "t9", "name": "get_weather"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city": '}}}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '"Oslo"}'}}}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}}},
    ]

    deltas = [delta for event in events for delta in stream.add(event)]
    done = StreamDone(stream.completion(ChatRequest(messages=(Message("user", "Weather?"),)), latency_ms=1.0))

    assert deltas == [
        ToolCallDelta(0, "t9", "get_weather"),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(0, arguments='"Oslo"}'),
    ]
    assert done.completion.tool_calls == (ToolCall("t9", "get_weather", '{"city": "Oslo"}'),)
