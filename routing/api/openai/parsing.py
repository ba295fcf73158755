"""Chat-completions request bodies → `ChatRequest`, with errors that name the bad field."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from routing.api.openai.options import OPTION_CHECKS, REFUSED_FIELDS
from routing.api.openai.toolparams import parse_response_format, parse_tool_choice, parse_tools
from routing.engine.types import EMPTY, ChatRequest, Message, PolicySnapshot, ToolCall
from routing.exceptions import ParameterUnsupported, RequestInvalid

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# Fields `parse_chat_request` reads into `ChatRequest` itself; every other one is an option.
READ_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "user", "metadata",
        "logprobs", "tools", "tool_choice", "response_format", "stream", "stream_options", "n",
    }
)  # fmt: skip
# Policy.unknown_fields: pass unknown fields on rather than refuse them.
UNKNOWN_PASS = "pass"
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
# The largest `max_tokens` (or `max_completion_tokens`) accepted: beyond any model's output,
# and well inside the 32-bit columns a sampled request's limit is stored in.
MAX_TOKENS = 1_000_000
# Deeper than any request this API reads; what is deeper is refused, not walked.
MAX_DEPTH = 64


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, every string in it encodable (no lone surrogates).

    Refused with a 400: JSON that does not parse, integers over Python's 4,300 digits
    (a ValueError), nesting past what the parser recurses into (a RecursionError) or
    past `MAX_DEPTH`, and a lone surrogate (`"\\udfff"`) anywhere, which no database
    or provider can take.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RequestInvalid(f"We could not parse the JSON body of your request: {_reason(exc)}.") from exc
    if not isinstance(data, dict):
        raise RequestInvalid("The request body must be a JSON object.")
    _check_strings(data)
    return data


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    return str(exc).encode("ascii", "backslashreplace").decode()


def _check_strings(data: dict[str, Any]) -> None:
    """Refuse nesting past `MAX_DEPTH` and lone surrogates, naming where they are (iteratively)."""
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RequestInvalid(f"The request body is nested deeper than {MAX_DEPTH} levels.", param=path or None)
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, path or key)
                stack.append((f"{path}.{key}" if path else key, item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))


def _check_text(text: str, param: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestInvalid(
            f"'{param}' contains a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not valid Unicode text.",
            param=param,
        ) from exc


def parse_chat_request(data: dict[str, Any]) -> tuple[ChatRequest, str]:
    """The chat request and the policy name asked for in `model` ("" for the key's own).

    One pass over the body's fields: each is read into `ChatRequest`, checked and kept in
    its `options` for the providers, refused, or (not known to the API) kept in `options`
    and named in `unknown` for the policy to pass on or refuse (`refuse_unknown`). A plain
    request (only fields `ChatRequest` reads) skips that pass and the structured fields.
    """
    extra = data.keys() - READ_FIELDS
    options, unknown = _options(data, extra) if extra else (EMPTY, ())
    _check_n(data.get("n"))
    logprobs = _boolean(data, "logprobs")
    if "top_logprobs" in options and not logprobs:
        raise RequestInvalid("'top_logprobs' needs 'logprobs': true.", param="top_logprobs")
    max_tokens, max_tokens_param = _max_tokens(data)
    chat = ChatRequest(
        messages=_messages(data.get("messages")),
        max_tokens=max_tokens,
        temperature=_temperature(data.get("temperature")),
        user=_user(data),
        metadata=_metadata(data.get("metadata")),
        logprobs=logprobs,
        options=options,
        unknown=unknown,
        stream=_boolean(data, "stream"),
        include_usage=_include_usage(data),
        max_tokens_param=max_tokens_param,
    )
    if "tools" in data or "tool_choice" in data or "response_format" in data:
        chat = _with_structure(chat, data)
    return chat, _string(data, "model")


def _options(data: dict[str, Any], names: set[str]) -> tuple[Mapping[str, Any], tuple[str, ...]]:
    """The sampling options, as sent, and the names of fields the API does not know."""
    options: dict[str, Any] = {}
    unknown: list[str] = []
    for name in sorted(names):
        value = data[name]
        if value is None:
            continue  # null is "not given", as the OpenAI clients mean it
        check = OPTION_CHECKS.get(name)
        if check is not None:
            options[name] = check(value, name)
        elif name in REFUSED_FIELDS:
            raise ParameterUnsupported(REFUSED_FIELDS[name], param=name)
        else:
            options[name] = value
            unknown.append(name)
    return (MappingProxyType(options) if options else EMPTY), tuple(unknown)


def _with_structure(chat: ChatRequest, data: dict[str, Any]) -> ChatRequest:
    """`tools`, `tool_choice` and `response_format`, checked."""
    tools = parse_tools(data["tools"]) if data.get("tools") is not None else ()
    choice = data.get("tool_choice")
    response_format = data.get("response_format")
    return dataclasses.replace(
        chat,
        tools=tools,
        tool_choice=None if choice is None else parse_tool_choice(choice, tools),
        response_format=None if response_format is None else parse_response_format(response_format),
    )


def refuse_unknown(chat: ChatRequest, policy: PolicySnapshot) -> None:
    """A 400 for a field the API does not know, unless the policy passes such fields on."""
    if chat.unknown and policy.unknown_fields != UNKNOWN_PASS:
        name = chat.unknown[0]
        raise ParameterUnsupported(
            f"Unrecognized request argument supplied: '{name}'. The policy '{policy.name}' refuses fields it "
            "does not know rather than drop them.",
            param=name,
        )


def _check_n(n: Any) -> None:
    if n is not None and (type(n) is not int or n != 1):
        raise ParameterUnsupported(
            "Only n=1 is supported: a cascade judges one answer per tier and returns one.", param="n"
        )


def _messages(value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list):
        raise RequestInvalid("'messages' is required and must be an array of message objects.", param="messages")
    if not value:
        raise RequestInvalid("'messages' must contain at least one message.", param="messages")
    return tuple(_message(item, i) for i, item in enumerate(value))


def _message(item: Any, index: int) -> Message:
    param = f"messages[{index}]"
    if not isinstance(item, dict):
        raise RequestInvalid(f"'{param}' must be an object with 'role' and 'content'.", param=param)
    role = item.get("role")
    if not isinstance(role, str) or role not in ROLES:
        allowed = ", ".join(sorted(ROLES))
        raise RequestInvalid(f"'{param}.role' must be one of {allowed}; got {role!r}.", param=f"{param}.role")
    content = item.get("content")
    if type(content) is str and len(item) == 2 and role != "tool":
        # The common case, kept short: a plain text turn.
        return Message(role=role, content=content.replace("\x00", ""))
    return _full_message(item, role, param)


def _full_message(item: dict[str, Any], role: str, param: str) -> Message:
    tool_calls = _tool_calls(item.get("tool_calls"), f"{param}.tool_calls") if role == "assistant" else ()
    content = item.get("content")
    parts: tuple[MappingProxyType[str, Any], ...] = ()
    if content is None and (tool_calls or role == "assistant"):
        text = ""
    else:
        text, parts = _content(content, f"{param}.content")
    tool_call_id = item.get("tool_call_id", "")
    if role == "tool" and (not isinstance(tool_call_id, str) or not tool_call_id):
        raise RequestInvalid(f"'{param}.tool_call_id' is required for a 'tool' message.", param=f"{param}.tool_call_id")
    name = item.get("name") or ""
    if not isinstance(name, str):
        raise RequestInvalid(f"'{param}.name' must be a string.", param=f"{param}.name")
    return Message(
        role=role,
        content=text,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id if role == "tool" else "",
        name=name,
        parts=parts,
    )


def _content(value: Any, param: str) -> tuple[str, tuple[MappingProxyType[str, Any], ...]]:
    """The text, and the parts as sent when some are not text (images)."""
    # NUL means nothing to a model, and PostgreSQL cannot store it in a sampled prompt.
    if isinstance(value, str):
        return value.replace("\x00", ""), ()
    if not isinstance(value, list):
        raise RequestInvalid(f"'{param}' must be a string or an array of content parts.", param=param)
    texts: list[str] = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            texts.append(part[kind])
        elif (
            kind == "image_url"
            and isinstance(part.get("image_url"), dict)
            and isinstance(part["image_url"].get("url"), str)
        ):
            continue
        else:
            raise RequestInvalid(
                f"'{param}[{i}]' must be a text part or an image_url part with a 'url'.", param=f"{param}[{i}]"
            )
    text = "\n".join(texts).replace("\x00", "")
    images = any(part["type"] == "image_url" for part in value)
    return text, tuple(MappingProxyType(part) for part in value) if images else ()


def _tool_calls(value: Any, param: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestInvalid(f"'{param}' must be an array of tool calls.", param=param)
    return tuple(_tool_call(item, f"{param}[{i}]") for i, item in enumerate(value))


def _tool_call(item: Any, param: str) -> ToolCall:
    function = item.get("function") if isinstance(item, dict) else None
    ok = (
        isinstance(function, dict)
        and isinstance(item.get("id"), str)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments"), str)
    )
    if not ok:
        raise RequestInvalid(
            f"'{param}' must be {{'id': ..., 'type': 'function', 'function': {{'name': ..., 'arguments': ...}}}} "
            "with string values.",
            param=param,
        )
    assert isinstance(function, dict) and isinstance(item, dict)
    return ToolCall(id=item["id"], name=function["name"], arguments=function["arguments"])


def _max_tokens(data: dict[str, Any]) -> tuple[int | None, str]:
    """The token limit and the name it was given under."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
            raise RequestInvalid(f"'{name}' must be an integer from 1 to {MAX_TOKENS}; got {value!r}.", param=name)
        return value, name
    return None, "max_tokens"


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise RequestInvalid(f"'temperature' must be a number from 0 to 2; got {value!r}.", param="temperature")
    return float(value)


def _string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestInvalid(f"'{name}' must be a string; got {type(value).__name__}.", param=name)
    return value


MAX_USER = 200  # RequestRecord.end_user


def _user(data: dict[str, Any]) -> str:
    user = _string(data, "user")
    if len(user) > MAX_USER or "\x00" in user:
        raise RequestInvalid(f"'user' must be at most {MAX_USER} characters, without NUL.", param="user")
    return user


def _boolean(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestInvalid(f"'{name}' must be true or false; got {value!r}.", param=name)
    return value


def _include_usage(data: dict[str, Any]) -> bool:
    """`stream_options.include_usage`; the options are refused without `stream`, as OpenAI does."""
    options = data.get("stream_options")
    if options is None:
        return False
    if not _boolean(data, "stream"):
        raise RequestInvalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
        )
    if not isinstance(options, dict):
        raise RequestInvalid("'stream_options' must be an object.", param="stream_options")
    usage = options.get("include_usage")
    if usage is not None and not isinstance(usage, bool):
        raise RequestInvalid(
            f"'stream_options.include_usage' must be true or false; got {usage!r}.",
            param="stream_options.include_usage",
        )
    return bool(usage)


def _metadata(value: Any) -> MappingProxyType[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict) or len(value) > MAX_METADATA_PAIRS:
        raise RequestInvalid(
            f"'metadata' must be an object of at most {MAX_METADATA_PAIRS} string pairs.", param="metadata"
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY or not isinstance(item, str) or len(item) > MAX_METADATA_VALUE:
            raise RequestInvalid(
                f"'metadata.{key}' must be a string of at most {MAX_METADATA_VALUE} characters "
                f"under a key of at most {MAX_METADATA_KEY}.",
                param="metadata",
            )
        if "\x00" in key or "\x00" in item:
            raise RequestInvalid(f"'metadata.{key}' must not contain NUL characters.", param="metadata")
    return MappingProxyType(dict(value))
