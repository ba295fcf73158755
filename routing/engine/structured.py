"""Structure checks: is a tool call, or a JSON answer, what the request asked for?

A request with `tools` or a JSON `response_format` has answers that can be checked
exactly, before any guess at quality: the tools called exist in the request, their
arguments parse as a JSON object and validate against the tool's JSON Schema, `tool_choice`
and `parallel_tool_calls` are respected; a `json_object` answer parses as an object, a
`json_schema` one also validates against its schema. A check that fails scores the answer
0, so the cascade escalates, and the attempt records why. A check that passes is a signal
of 1, averaged with the policy scorer's opinion (when it has one). See docs/api.md.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from routing.engine.ports import OpinionScorer, Scorer
from routing.engine.types import ChatRequest, Completion, ToolCall

INVALID_TOOL_CALL = "invalid_tool_call"
INVALID_JSON = "invalid_json"
# Reasons end up in request records: keep them short.
REASON_LIMIT = 300


@dataclass(frozen=True, slots=True)
class StructureProblem:
    """Why an answer does not have the structure the request asked for."""

    kind: str  # INVALID_TOOL_CALL or INVALID_JSON
    reason: str


@dataclass(frozen=True, slots=True)
class StructuredScore:
    """An answer's score with its structure checked; `problem` says why a broken one scored 0."""

    score: float
    problem: StructureProblem | None = None


def structured_score(scorer: Scorer, chat: ChatRequest, completion: Completion, task: str) -> StructuredScore:
    """The policy scorer's score, unless the request asks for structure: then the checks come first."""
    if not chat.structured and not completion.tool_calls:
        return StructuredScore(scorer.score(chat, completion, task=task))
    checked = check_structure(chat, completion)
    if checked is None:
        return StructuredScore(scorer.score(chat, completion, task=task))
    if isinstance(checked, StructureProblem):
        return StructuredScore(0.0, checked)
    opinion = _opinion(scorer, chat, completion, task) if completion.text.strip() else None
    return StructuredScore(1.0 if opinion is None else (1.0 + opinion) / 2)


def _opinion(scorer: Scorer, chat: ChatRequest, completion: Completion, task: str) -> float | None:
    if isinstance(scorer, OpinionScorer):
        return scorer.opinion(chat, completion, task=task)
    return scorer.score(chat, completion, task=task)


def check_structure(chat: ChatRequest, completion: Completion) -> StructureProblem | bool | None:
    """A problem, True when the answer's structure is checked and right, None when there is nothing to check."""
    if completion.tool_calls or _tool_required(chat):
        return check_tool_calls(chat, completion)
    if chat.response_format is not None:
        return check_json_answer(chat.response_format, completion.text)
    return None


def _tool_required(chat: ChatRequest) -> bool:
    return chat.tool_choice == "required" or isinstance(chat.tool_choice, Mapping)


def check_tool_calls(chat: ChatRequest, completion: Completion) -> StructureProblem | bool:
    calls = completion.tool_calls
    if not calls:
        return _tool_problem(f"no tool call, though tool_choice is {_choice_text(chat.tool_choice)}")
    if chat.tool_choice == "none":
        return _tool_problem("a tool call, though tool_choice is 'none'")
    if len(calls) > 1 and chat.options.get("parallel_tool_calls") is False:
        return _tool_problem(f"{len(calls)} tool calls, though parallel_tool_calls is false")
    tools = {tool["function"]["name"]: tool["function"] for tool in chat.tools}
    for call in calls:
        problem = _call_problem(call, tools, chat.tool_choice)
        if problem is not None:
            return problem
    return True


def _call_problem(call: ToolCall, tools: Mapping[str, Mapping[str, Any]], choice: Any) -> StructureProblem | None:
    function = tools.get(call.name)
    if function is None:
        known = ", ".join(sorted(tools)) or "none"
        return _tool_problem(f"a call to the unknown tool '{call.name}' (the request's tools: {known})")
    if isinstance(choice, Mapping) and choice["function"]["name"] != call.name:
        return _tool_problem(f"a call to '{call.name}', though tool_choice asks for '{choice['function']['name']}'")
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return _tool_problem(f"the arguments of '{call.name}' are not JSON: {call.arguments[:80]!r}")
    if not isinstance(arguments, dict):
        return _tool_problem(f"the arguments of '{call.name}' are not a JSON object")
    error = schema_error(function.get("parameters"), arguments)
    if error is not None:
        return _tool_problem(f"the arguments of '{call.name}' break its schema: {error}")
    return None


def check_json_answer(response_format: Mapping[str, Any], text: str) -> StructureProblem | bool:
    """A `json_object` answer must be a JSON object; a `json_schema` one must also fit the schema."""
    try:
        value = json.loads(text)
    except ValueError:
        return _json_problem(f"the answer is not JSON: {text[:80]!r}")
    if response_format.get("type") == "json_object":
        return True if isinstance(value, dict) else _json_problem("the answer is JSON but not an object")
    schema = response_format.get("json_schema", {}).get("schema")
    error = schema_error(schema, value)
    return True if error is None else _json_problem(f"the answer breaks the schema: {error}")


def schema_error(schema: Any, value: Any) -> str | None:
    """The most relevant way `value` breaks `schema` (checked at the edge), or None."""
    if not isinstance(schema, Mapping):
        return None
    error = best_match(validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} (at /{where})" if where else error.message


@functools.lru_cache(maxsize=1024)
def validator(schema_json: str) -> Draft202012Validator:
    """A schema's validator, built once per process: an app sends the same tools again and again."""
    return Draft202012Validator(json.loads(schema_json))


def _choice_text(choice: Any) -> str:
    return f"'{choice}'" if isinstance(choice, str) else f"'{choice['function']['name']}'"


def _tool_problem(reason: str) -> StructureProblem:
    return StructureProblem(INVALID_TOOL_CALL, f"The model answered with {reason}."[:REASON_LIMIT])


def _json_problem(reason: str) -> StructureProblem:
    return StructureProblem(INVALID_JSON, reason[:REASON_LIMIT])
