"""Chat-completions request bodies → `ChatRequest`, with errors that name the bad field."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

from routing.engine.types import ChatRequest, Message
from routing.exceptions import RequestInvalid

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
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
    """The chat request and the policy name asked for in `model` ("" for the key's own)."""
    _reject_unsupported(data)
    chat = ChatRequest(
        messages=_messages(data.get("messages")),
        max_tokens=_max_tokens(data),
        temperature=_temperature(data.get("temperature")),
        user=_user(data),
        metadata=_metadata(data.get("metadata")),
        logprobs=_boolean(data, "logprobs"),
        stream=_boolean(data, "stream"),
        include_usage=_include_usage(data),
    )
    return chat, _string(data, "model")


def _reject_unsupported(data: dict[str, Any]) -> None:
    n = data.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise RequestInvalid("Only n=1 is supported: a cascade returns one answer.", param="n")


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
    return Message(role=role, content=_content(item.get("content"), f"{param}.content"))


def _content(value: Any, param: str) -> str:
    # NUL means nothing to a model, and PostgreSQL cannot store it in a sampled prompt.
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        parts = [p.get("text") for p in value]
        if all(isinstance(t, str) for t in parts):
            return "\n".join(parts).replace("\x00", "")
    raise RequestInvalid(f"'{param}' must be a string or an array of text parts.", param=param)


def _max_tokens(data: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
            raise RequestInvalid(f"'{name}' must be an integer from 1 to {MAX_TOKENS}; got {value!r}.", param=name)
        return value
    return None


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
