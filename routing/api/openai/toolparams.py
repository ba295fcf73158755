"""`tools`, `tool_choice` and `response_format` of a chat request, checked at the edge.

Each JSON Schema a request carries (a tool's `parameters`, a `json_schema` format's
`schema`) is checked against its metaschema here, so that the cascade's structure checks
(`routing.engine.structured`) never meet a schema that cannot be used. See docs/api.md.
"""

from __future__ import annotations

import functools
import json
import re
from types import MappingProxyType
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from routing.exceptions import RequestInvalid

MAX_TOOLS = 128
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOOL_CHOICES = frozenset({"none", "auto", "required"})
FORMAT_TYPES = frozenset({"text", "json_object", "json_schema"})


def parse_tools(value: Any) -> tuple[MappingProxyType[str, Any], ...]:
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise RequestInvalid(f"'tools' must be an array of at most {MAX_TOOLS} tools.", param="tools")
    tools = tuple(_tool(item, f"tools[{i}]") for i, item in enumerate(value))
    names = [tool["function"]["name"] for tool in tools]
    if len(set(names)) != len(names):
        raise RequestInvalid("Each tool in 'tools' must have a name of its own.", param="tools")
    return tools


def _tool(item: Any, param: str) -> MappingProxyType[str, Any]:
    if not isinstance(item, dict) or item.get("type") != "function" or not isinstance(item.get("function"), dict):
        raise RequestInvalid(
            f"'{param}' must be {{'type': 'function', 'function': {{...}}}}: only function tools are supported.",
            param=param,
        )
    function = item["function"]
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise RequestInvalid(
            f"'{param}.function.name' must be 1 to 64 letters, digits, '_' or '-'; got {name!r}.",
            param=f"{param}.function.name",
        )
    if not isinstance(function.get("description", ""), str):
        raise RequestInvalid(f"'{param}.function.description' must be a string.", param=f"{param}.function.description")
    if not isinstance(function.get("strict", False), bool | None):
        raise RequestInvalid(f"'{param}.function.strict' must be true or false.", param=f"{param}.function.strict")
    if "parameters" in function:
        check_schema(function["parameters"], f"{param}.function.parameters")
    return MappingProxyType(item)


def check_schema(schema: Any, param: str) -> None:
    """A 400 naming `param` unless `schema` is a JSON Schema object."""
    if not isinstance(schema, dict):
        raise RequestInvalid(f"'{param}' must be a JSON Schema object.", param=param)
    problem = schema_problem(json.dumps(schema, sort_keys=True))
    if problem is not None:
        raise RequestInvalid(f"'{param}' is not a valid JSON Schema: {problem}", param=param)


# Checking a schema against the metaschema takes milliseconds; an app sends the same few
# tools with every request, so each distinct schema is checked once per process.
METASCHEMA = Draft202012Validator(Draft202012Validator.META_SCHEMA)


@functools.lru_cache(maxsize=1024)
def schema_problem(schema_json: str) -> str | None:
    error = best_match(METASCHEMA.iter_errors(json.loads(schema_json)))
    return None if error is None else error.message


def parse_tool_choice(value: Any, tools: tuple[MappingProxyType[str, Any], ...]) -> str | MappingProxyType[str, Any]:
    """ "none", "auto", "required", or `{"type": "function", "function": {"name": ...}}` naming a tool."""
    if isinstance(value, str) and value in TOOL_CHOICES:
        if value != "none" and not tools:
            raise RequestInvalid(f"'tool_choice' is '{value}' but the request has no 'tools'.", param="tool_choice")
        return value
    function = value.get("function") if isinstance(value, dict) and value.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str):
        raise RequestInvalid(
            "'tool_choice' must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}.",
            param="tool_choice",
        )
    if name not in {tool["function"]["name"] for tool in tools}:
        raise RequestInvalid(f"'tool_choice' names '{name}', which is not in 'tools'.", param="tool_choice")
    return MappingProxyType(value)


def parse_response_format(value: Any) -> MappingProxyType[str, Any] | None:
    """The format, or None for `text` (the default, sent to no provider)."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in FORMAT_TYPES:
        raise RequestInvalid(
            "'response_format.type' must be 'text', 'json_object' or 'json_schema'.", param="response_format"
        )
    if kind == "text":
        return None
    if kind == "json_schema":
        _json_schema(value.get("json_schema"))
    return MappingProxyType(value)


def _json_schema(spec: Any) -> None:
    param = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise RequestInvalid(f"'{param}' must be an object with 'name' and 'schema'.", param=param)
    name = spec.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise RequestInvalid(
            f"'{param}.name' must be 1 to 64 letters, digits, '_' or '-'; got {name!r}.", param=f"{param}.name"
        )
    if not isinstance(spec.get("strict", False), bool | None):
        raise RequestInvalid(f"'{param}.strict' must be true or false.", param=f"{param}.strict")
    if "schema" in spec:
        check_schema(spec["schema"], f"{param}.schema")
