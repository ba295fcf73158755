"""Structure checks: tool calls and JSON answers against what the request asked for."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from routing.engine.scoring import HeuristicScorer
from routing.engine.structured import INVALID_JSON, INVALID_TOOL_CALL, structured_score
from routing.engine.types import ChatRequest, Completion, Message, ToolCall

WEATHER = MappingProxyType(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
)
SCHEMA = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}


def tools_chat(**fields: Any) -> ChatRequest:
    return ChatRequest(messages=(Message("user", "Weather in Paris?"),), tools=(WEATHER,), **fields)


def calling(*calls: tuple[str, str], text: str = "") -> Completion:
    tool_calls = tuple(ToolCall(f"c{i}", name, arguments) for i, (name, arguments) in enumerate(calls))
    return Completion(text, "tool_calls", 10, 5, 1.0, tool_calls=tool_calls)


def score(chat: ChatRequest, completion: Completion) -> tuple[float, str, str]:
    scored = structured_score(HeuristicScorer(), chat, completion, "unknown")
    problem = scored.problem
    return scored.score, "" if problem is None else problem.kind, "" if problem is None else problem.reason


def test_a_valid_tool_call_scores_full_marks():
    assert score(tools_chat(), calling(("get_weather", '{"city": "Paris"}'))) == (1.0, "", "")


@pytest.mark.parametrize(
    ("chat", "completion", "says"),
    [
        (tools_chat(), calling(("get_forecast", "{}")), "unknown tool 'get_forecast'"),
        (tools_chat(), calling(("get_weather", "{city: Paris}")), "are not JSON"),
        (tools_chat(), calling(("get_weather", "[1]")), "not a JSON object"),
        (tools_chat(), calling(("get_weather", '{"town": "Paris"}')), "break its schema"),
        (tools_chat(tool_choice="none"), calling(("get_weather", '{"city": "Paris"}')), "tool_choice is 'none'"),
        (tools_chat(tool_choice="required"), Completion("It is sunny.", "stop", 10, 5, 1.0), "no tool call"),
        (
            tools_chat(options=MappingProxyType({"parallel_tool_calls": False})),
            calling(("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "Rome"}')),
            "parallel_tool_calls is false",
        ),
    ],
)
def test_a_broken_tool_call_scores_zero_and_says_why(chat, completion, says):
    value, kind, reason = score(chat, completion)

    assert (value, kind) == (0.0, INVALID_TOOL_CALL)
    assert says in reason


def test_a_tool_call_to_another_tool_than_the_one_chosen_is_broken():
    second = MappingProxyType({"type": "function", "function": {"name": "get_time"}})
    chat = ChatRequest(
        messages=(Message("user", "?"),),
        tools=(WEATHER, second),
        tool_choice=MappingProxyType({"type": "function", "function": {"name": "get_time"}}),
    )

    assert "asks for 'get_time'" in score(chat, calling(("get_weather", '{"city": "Paris"}')))[2]


def test_a_text_answer_to_a_request_with_optional_tools_is_left_to_the_scorer():
    completion = Completion("It is sunny in Paris today.", "stop", 10, 5, 1.0)

    assert score(tools_chat(), completion) == (
        HeuristicScorer().score(tools_chat(), completion, task="unknown"),
        "",
        "",
    )


@pytest.mark.parametrize(
    ("response_format", "text", "ok"),
    [
        ({"type": "json_object"}, '{"a": 1}', True),
        ({"type": "json_object"}, "[1, 2]", False),
        ({"type": "json_object"}, "Sure! {", False),
        ({"type": "json_schema", "json_schema": {"name": "A", "schema": SCHEMA}}, '{"age": 36}', True),
        ({"type": "json_schema", "json_schema": {"name": "A", "schema": SCHEMA}}, '{"age": "old"}', False),
    ],
)
def test_a_json_answer_is_checked_against_its_format(response_format, text, ok):
    chat = ChatRequest(messages=(Message("user", "How old?"),), response_format=MappingProxyType(response_format))

    value, kind, _ = score(chat, Completion(text, "stop", 10, 5, 1.0))

    assert (value > 0, kind) == ((True, "") if ok else (False, INVALID_JSON))
