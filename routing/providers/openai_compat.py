"""Provider for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, ...).

Build one per endpoint and share it: its aiohttp session keeps connections to the upstream
alive between requests. Every failure becomes a `routing.engine.errors.ProviderError`, which
the cascade turns into a failed attempt. How it talks HTTP: docs/providers.md.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from routing.engine.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.streaming import StreamDone, StreamEvent, TextDelta, ToolCallDelta
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, Embeddings, EndpointSnapshot, Message, ToolCall

# Upstream error bodies can echo the whole prompt back; keep records and logs small.
ERROR_MESSAGE_LIMIT = 300
# The upstream may answer later: the cascade should treat these like a 5xx.
RETRYABLE_STATUSES = frozenset({408, 429})
# Authentication and "no such model" are for an operator to fix, not a bad request.
MISCONFIGURED_STATUSES = frozenset({401, 403, 404})
DEFAULT_MAX_CONNECTIONS = 100
KEEPALIVE_EXPIRY_S = 30.0
END_OF_STREAM = b"[DONE]"
# Every header aiohttp would add on its own is given, so it adds none. `identity`: a
# compressed answer would cost more CPU to inflate than it saves on loopback or a LAN, and
# SSE streams are seldom compressed; the session does not decompress.
STATIC_HEADERS = {
    "Content-Type": "application/json",
    "Accept-Encoding": "identity",
    "User-Agent": "cascadeops",
}
WHOLE_HEADERS = {**STATIC_HEADERS, "Accept": "application/json"}
STREAM_HEADERS = {**STATIC_HEADERS, "Accept": "text/event-stream"}
# One encoder for every call: `json.dumps` with options builds a new one each time.
JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# What each failure of the HTTP client means to the cascade; the first match wins, so a
# subclass comes before its base. Every aiohttp exception is an `aiohttp.ClientError`.
CLIENT_ERRORS: tuple[tuple[type[aiohttp.ClientError], type[ProviderError], str], ...] = (
    (aiohttp.ConnectionTimeoutError, ProviderTimeout, "connect timeout"),  # also the wait for a pooled connection
    (aiohttp.ServerTimeoutError, ProviderTimeout, "read timeout"),  # silent for longer than the read timeout
    (aiohttp.InvalidURL, ProviderMisconfigured, "bad base_url"),
    (aiohttp.ClientConnectorError, ProviderUnavailable, "connect failed"),  # refused, DNS, TLS verification
    (aiohttp.ClientConnectionError, ProviderUnavailable, "connection lost"),  # reset, or closed before the answer
    (aiohttp.ClientPayloadError, ProviderUnavailable, "response cut off"),
    (aiohttp.ClientError, ProviderUnavailable, "HTTP error"),
)


class OpenAICompatProvider:
    """Calls `POST {base_url}/chat/completions` on an OpenAI-compatible server."""

    def __init__(self, endpoint: EndpointSnapshot) -> None:
        self.endpoint = endpoint
        # Opened by the first call, inside the event loop that will use it.
        self._upstream: tuple[aiohttp.ClientSession, URL] | None = None
        self._secret: str | None = None
        self._whole_headers = WHOLE_HEADERS
        self._stream_headers = STREAM_HEADERS

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        """Ask the endpoint for one answer; raise a `ProviderError` when there is none."""
        data, latency_ms = await self._whole(request_body(self.endpoint, chat, max_tokens=max_tokens))
        return parse_completion(self.endpoint, chat, data, latency_ms=latency_ms)

    async def complete_many(self, chat: ChatRequest, *, max_tokens: int, n: int) -> tuple[Completion, ...]:
        """Ask for `n` answers in one call (`n` in the body): the prompt is sent and billed once."""
        body = {**request_body(self.endpoint, chat, max_tokens=max_tokens), "n": n}
        data, latency_ms = await self._whole(body)
        return parse_completions(self.endpoint, chat, data, latency_ms=latency_ms)

    async def _whole(self, body: dict[str, Any]) -> tuple[Mapping[str, Any], float]:
        """POST a non-streamed request: the decoded answer and how long it took (ms)."""
        started = time.perf_counter()
        response = await self._post(encode_json(body), streaming=False)
        content = await read_whole(self.endpoint, response)
        latency_ms = (time.perf_counter() - started) * 1000
        raise_for_status(self.endpoint, response, content)
        return decode_json(content), latency_ms

    async def stream(self, chat: ChatRequest, *, max_tokens: int) -> AsyncGenerator[StreamEvent, None]:
        """Ask for the answer as server-sent events: its deltas as they come, then all of it."""
        body = encode_json({**request_body(self.endpoint, chat, max_tokens=max_tokens), **STREAM_PARAMETERS})
        started = time.perf_counter()
        response = await self._post(body, streaming=True)
        try:
            if not 200 <= response.status < 300:
                raise_for_status(self.endpoint, response, await read_whole(self.endpoint, response))
            answer = StreamedAnswer(self.endpoint, keep_logprobs=chat.logprobs)
            async with aclosing(self._chunks(response)) as chunks:
                async for chunk in chunks:
                    for event in answer.add(chunk):
                        yield event
            yield StreamDone(answer.completion(chat, latency_ms=(time.perf_counter() - started) * 1000))
        finally:
            # Before the end of the body this closes the connection: the upstream stops
            # generating. After it (a `[DONE]` whose body is all in), the connection is reused.
            response.release()

    async def embed(self, inputs: Sequence[str], *, dimensions: int | None) -> Embeddings:
        """`POST {base_url}/embeddings`: one vector per input, as floats."""
        body: dict[str, Any] = {"model": self.endpoint.model_id, "input": list(inputs), "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        session, url = self._upstream or self._open()
        started = time.perf_counter()
        try:
            response = await session.post(
                url.with_path(url.path.removesuffix("/chat/completions") + "/embeddings"),
                data=encode_json(body),
                headers=self._headers(False),
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            raise provider_error(self.endpoint, exc) from exc
        refuse_content_coding(self.endpoint, response)
        content = await read_whole(self.endpoint, response)
        raise_for_status(self.endpoint, response, content)
        latency_ms = (time.perf_counter() - started) * 1000
        return parse_embeddings(self.endpoint, inputs, decode_json(content), latency_ms=latency_ms)

    async def aclose(self) -> None:
        if self._upstream is not None:
            session, _ = self._upstream
            self._upstream = None
            await session.close()

    async def _post(self, body: bytes, *, streaming: bool) -> aiohttp.ClientResponse:
        """POST `body`; the response once its head is in, its body still to read."""
        headers = self._headers(streaming)
        session, url = self._upstream or self._open()
        try:
            response = await session.post(url, data=body, headers=headers, allow_redirects=False)
        except aiohttp.ClientError as exc:
            raise provider_error(self.endpoint, exc) from exc
        refuse_content_coding(self.endpoint, response)
        return response

    def _open(self) -> tuple[aiohttp.ClientSession, URL]:
        # Kept only once it could be built: an endpoint with a bad URL fails every call.
        url = parse_url(self.endpoint)
        self._upstream = build_session(self.endpoint, url), url
        return self._upstream

    def _headers(self, streaming: bool) -> Mapping[str, str]:
        """The request headers; built again only when the secret changes."""
        secret = credential(self.endpoint)
        if secret != self._secret:
            authorization = {"Authorization": bearer(self.endpoint, secret)} if secret else {}
            self._whole_headers = {**WHOLE_HEADERS, **authorization}
            self._stream_headers = {**STREAM_HEADERS, **authorization}
            self._secret = secret
        return self._stream_headers if streaming else self._whole_headers

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Mapping[str, Any], None]:
        """The stream's `chat.completion.chunk` objects, up to `[DONE]`."""
        events = ServerSentEvents()
        try:
            async for piece in response.content.iter_any():
                for data in events.feed(piece):
                    if data == END_OF_STREAM:
                        return
                    yield decode_chunk(self.endpoint, data)
        except aiohttp.ClientError as exc:
            raise provider_error(self.endpoint, exc) from exc
        for data in events.finish():
            if data == END_OF_STREAM:
                return
            yield decode_chunk(self.endpoint, data)


def build_session(endpoint: EndpointSnapshot, url: URL) -> aiohttp.ClientSession:
    """A session of pooled keep-alive connections to the endpoint, with its timeouts.

    It keeps every idle connection it may open: under a burst, closing and reopening them
    would add a TCP (and TLS) handshake to every request. aiohttp's `connect` timeout also
    covers the wait for a free connection, which the read timeout bounds on top of the
    handshake's own `sock_connect`; `sock_read` bounds silence, not the whole answer.
    """
    max_connections = int(endpoint.options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
    connect_s, read_s = endpoint.connect_timeout_s, endpoint.read_timeout_s
    proxy, proxy_auth = environment_proxy(url)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_EXPIRY_S),
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_s + read_s, sock_connect=connect_s, sock_read=read_s),
        # Cookies from one upstream answer must not ride along on another tenant's request.
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        proxy=proxy,
        proxy_auth=proxy_auth,
    )


def environment_proxy(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy HTTP(S)_PROXY and NO_PROXY give `url`, read once, as `trust_env=True` would.

    `trust_env` would read them (and ~/.netrc) again on every request, in a worker thread:
    two thread hops, about half a millisecond, on the hot path.
    """
    try:
        return get_env_proxy_for_url(url)
    except LookupError:
        return None, None


def parse_url(endpoint: EndpointSnapshot) -> URL:
    """The chat-completions URL, checked once: it must be able to carry a request."""
    if not endpoint.base_url:
        raise ProviderMisconfigured(f"{endpoint.name}: base_url is empty")
    try:
        url = URL(f"{endpoint.base_url.rstrip('/')}/chat/completions")
    except ValueError as exc:
        raise ProviderMisconfigured(f"{endpoint.name}: bad base_url: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ProviderMisconfigured(f"{endpoint.name}: bad base_url: not an http(s) URL with a host")
    # aiohttp sends credentials in the URL as basic auth, which a bearer token would clash with.
    if url.user is not None and endpoint.credentials_env:
        raise ProviderMisconfigured(f"{endpoint.name}: base_url carries credentials and so does credentials_env")
    return url


def bearer(endpoint: EndpointSnapshot, secret: str) -> str:
    # A line break in the secret would let it smuggle in headers of its own.
    if not (secret.isascii() and secret.isprintable()):
        raise ProviderMisconfigured(
            f"{endpoint.name}: environment variable {endpoint.credentials_env} holds characters a header cannot carry"
        )
    return f"Bearer {secret}"


def provider_error(endpoint: EndpointSnapshot, exc: aiohttp.ClientError) -> ProviderError:
    """The `ProviderError` an aiohttp failure stands for (see `CLIENT_ERRORS`)."""
    for client_error, error_class, what in CLIENT_ERRORS:
        if isinstance(exc, client_error):
            return error_class(f"{endpoint.name}: {what}: {str(exc) or type(exc).__name__}")
    raise AssertionError("CLIENT_ERRORS ends with aiohttp.ClientError")  # pragma: no cover


def refuse_content_coding(endpoint: EndpointSnapshot, response: aiohttp.ClientResponse) -> None:
    """Fail on a compressed body: the request asks for none and the session decodes none."""
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        return
    response.close()
    raise ProviderUnavailable(f"{endpoint.name}: the upstream sent a {coding}-encoded body though asked for identity")


async def read_whole(endpoint: EndpointSnapshot, response: aiohttp.ClientResponse) -> bytes:
    """The whole body; the connection goes back to the pool, or is closed if it was cut short."""
    try:
        return await response.read()
    except aiohttp.ClientError as exc:
        raise provider_error(endpoint, exc) from exc
    finally:
        response.release()


def request_body(endpoint: EndpointSnapshot, chat: ChatRequest, *, max_tokens: int) -> dict[str, Any]:
    """The JSON body OpenAI's chat-completions API expects: every parameter the caller gave, as given."""
    temperature = chat.temperature if chat.temperature is not None else endpoint.temperature
    body: dict[str, Any] = {
        "model": endpoint.model_id,
        "messages": [message_body(m) for m in chat.messages],
        chat.max_tokens_param: max_tokens,
        "temperature": temperature,
    }
    if chat.user:
        body["user"] = chat.user
    # Some compatible servers reject the parameter outright, so send it only when asked.
    if chat.logprobs or endpoint.options.get("logprobs"):
        body["logprobs"] = True
    if chat.structured or chat.tool_choice is not None:
        add_structure(body, chat)
    if chat.options:
        body.update(chat.options)
    return body


def message_body(message: Message) -> dict[str, Any]:
    """One message as OpenAI's API takes it; a plain text turn is just its role and content."""
    if not (message.tool_calls or message.tool_call_id or message.name or message.parts):
        return {"role": message.role, "content": message.content}
    body: dict[str, Any] = {"role": message.role}
    if message.parts:
        body["content"] = [dict(part) for part in message.parts]
    else:
        body["content"] = message.content if message.content or not message.tool_calls else None
    if message.tool_calls:
        body["tool_calls"] = [tool_call_body(call) for call in message.tool_calls]
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    if message.name:
        body["name"] = message.name
    return body


def tool_call_body(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def add_structure(body: dict[str, Any], chat: ChatRequest) -> None:
    """The tools, the tool choice and the response format, as the caller sent them."""
    if chat.tools:
        body["tools"] = [dict(tool) for tool in chat.tools]
    if chat.tool_choice is not None:
        choice = chat.tool_choice
        body["tool_choice"] = choice if isinstance(choice, str) else dict(choice)
    if chat.response_format is not None:
        body["response_format"] = dict(chat.response_format)


def encode_json(body: dict[str, Any]) -> bytes:
    """The body as bytes, compact and UTF-8 (no NaN): encoded once, sent as they are."""
    return JSON_ENCODER.encode(body).encode()


def credential(endpoint: EndpointSnapshot) -> str | None:
    """The secret in the variable `credentials_env` names; None for keyless servers."""
    if not endpoint.credentials_env:
        return None
    # Checked again here, though the model refuses such names: a row written around the
    # model (a migration, raw SQL, an older version) must not read DATABASE_URL out to a host.
    if not endpoint.credentials_allowed.permits(endpoint.credentials_env):
        raise ProviderMisconfigured(
            f"{endpoint.name}: environment variable {endpoint.credentials_env} is not one this deployment "
            "allows for credentials (CASCADEOPS_CREDENTIALS_ENV_PREFIX, CASCADEOPS_CREDENTIALS_ENV_ALLOW)"
        )
    secret = os.environ.get(endpoint.credentials_env)
    if not secret:
        # Name the variable, never a value: this message ends up in request records.
        raise ProviderMisconfigured(f"{endpoint.name}: environment variable {endpoint.credentials_env} is not set")
    return secret


def raise_for_status(endpoint: EndpointSnapshot, response: aiohttp.ClientResponse, content: bytes) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    message = f"{endpoint.name}: HTTP {status}: {upstream_error_message(response, content)}"
    error_class = error_class_for_status(status)
    if error_class is ProviderUnavailable:
        raise ProviderUnavailable(message, retry_after_s=retry_after_s(response))
    raise error_class(message)


def error_class_for_status(status: int) -> type[ProviderError]:
    if status in RETRYABLE_STATUSES or not 400 <= status < 500:
        return ProviderUnavailable
    if status in MISCONFIGURED_STATUSES:
        return ProviderMisconfigured
    return ProviderBadRequest


def retry_after_s(response: aiohttp.ClientResponse) -> float | None:
    """How long the upstream asked us to wait: `retry-after-ms` (OpenAI's), else `Retry-After`
    in seconds or as an HTTP date; None when it said nothing usable."""
    millis = parse_seconds(response.headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = response.headers.get("retry-after")
    seconds = parse_seconds(value)
    if seconds is None and value:
        seconds = seconds_until(value)
    return seconds


def parse_seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else math.nan
    except ValueError:
        return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def seconds_until(http_date: str) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, says RFC 5322
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def upstream_error_message(response: aiohttp.ClientResponse, content: bytes) -> str:
    """OpenAI's `error.message` when the body has one, else the body's start, else the reason."""
    try:
        error = json.loads(content).get("error")
        message = error.get("message") if isinstance(error, Mapping) else error
    except (ValueError, AttributeError):
        message = None
    text = str(message) if message else text_of(content)
    return truncate(text.strip() or response.reason or "")


def truncate(text: str, limit: int = ERROR_MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_json(content: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise ProviderUnavailable(f"malformed response: not JSON: {truncate(text_of(content), 80)}") from exc
    if not isinstance(data, Mapping):
        raise ProviderUnavailable("malformed response: not a JSON object")
    return data


def text_of(content: bytes) -> str:
    return content.decode("utf-8", "replace")


def parse_completion(
    endpoint: EndpointSnapshot, chat: ChatRequest, data: Mapping[str, Any], *, latency_ms: float
) -> Completion:
    """Turn a chat-completions response body into a `Completion`."""
    choice = first_choice(data)
    text, finish_reason = choice_text(endpoint, choice, data.get("usage"))
    tool_calls = parse_tool_calls(endpoint, choice["message"].get("tool_calls"))
    output = text + "".join(call.arguments for call in tool_calls)
    input_tokens, output_tokens, cached = usage_counts(data.get("usage"), chat, output)
    return Completion(
        text=text,
        finish_reason=finish_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        cached_input_tokens=cached,
        logprobs=token_logprobs(choice.get("logprobs")),
        model=str(data.get("model") or endpoint.model_id),
        tool_calls=tool_calls,
        logprobs_content=logprobs_content(choice.get("logprobs")) if chat.logprobs else None,
        system_fingerprint=fingerprint(data.get("system_fingerprint")),
    )


def parse_tool_calls(endpoint: EndpointSnapshot, value: Any) -> tuple[ToolCall, ...]:
    """The message's function calls; anything that is not one is a malformed answer."""
    if not value:
        return ()
    if not isinstance(value, list):
        raise ProviderUnavailable(f"{endpoint.name}: malformed response: tool_calls is not an array")
    return tuple(tool_call(endpoint, item) for item in value)


def tool_call(endpoint: EndpointSnapshot, item: Any) -> ToolCall:
    function = item.get("function") if isinstance(item, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ProviderUnavailable(f"{endpoint.name}: malformed response: a tool call without a function name")
    arguments = function.get("arguments")
    return ToolCall(
        id=str(item.get("id") or ""),
        name=function["name"],
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
    )


def logprobs_content(logprobs: Any) -> tuple[Mapping[str, Any], ...] | None:
    """OpenAI's `logprobs.content` entries as sent, for the caller; None when there are none."""
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list):
        return None
    return tuple(entry for entry in content if isinstance(entry, Mapping))


def fingerprint(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_completions(
    endpoint: EndpointSnapshot, chat: ChatRequest, data: Mapping[str, Any], *, latency_ms: float
) -> tuple[Completion, ...]:
    """Every choice of a response asked with `n`, each with its share of the usage.

    The usage covers the whole call: the first answer carries the prompt's tokens (billed
    once), and the output tokens are shared out by each answer's estimated length, so the
    answers' costs add up to the call's. A refused choice refuses the call (it was billed).
    """
    first_choice(data)  # at least one well-formed choice
    choices = [choice for choice in data["choices"] if isinstance(choice, Mapping)]
    texts = [choice_text(endpoint, choice, data.get("usage")) for choice in choices]
    input_tokens, output_tokens, cached = usage_counts(data.get("usage"), chat, "".join(t for t, _ in texts))
    shares = shared_out(output_tokens, [estimate_tokens(text) for text, _ in texts])
    model = str(data.get("model") or endpoint.model_id)
    return tuple(
        Completion(
            text=text,
            finish_reason=finish_reason,
            input_tokens=input_tokens if i == 0 else 0,
            output_tokens=share,
            latency_ms=latency_ms,
            cached_input_tokens=cached if i == 0 else 0,
            logprobs=token_logprobs(choice.get("logprobs")),
            model=model,
        )
        for i, (choice, (text, finish_reason), share) in enumerate(zip(choices, texts, shares, strict=True))
    )


def shared_out(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` (each at least 1), summing exactly to `total`."""
    weights = [max(weight, 1) for weight in weights]
    bounds = [total * sum(weights[: i + 1]) // sum(weights) for i in range(len(weights))]
    return [high - low for low, high in zip([0, *bounds[:-1]], bounds, strict=True)]


def choice_text(endpoint: EndpointSnapshot, choice: Mapping[str, Any], usage: Any) -> tuple[str, str]:
    """(text, finish reason) of one choice; a refusal raises `ProviderRefused`."""
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise ProviderUnavailable("malformed response: a choice's message is missing")
    finish_reason = str(choice.get("finish_reason") or "stop")
    if finish_reason == "content_filter" or message.get("refusal"):
        raise refused(endpoint, finish_reason, usage)
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise ProviderUnavailable("malformed response: a choice's message.content is not text")
    return text, finish_reason


def parse_embeddings(
    endpoint: EndpointSnapshot, inputs: Sequence[str], data: Mapping[str, Any], *, latency_ms: float
) -> Embeddings:
    """The vectors in input order, and the input tokens reported (estimated when not)."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != len(inputs):
        raise ProviderUnavailable(f"{endpoint.name}: malformed response: not one embedding per input")
    ordered = sorted(items, key=lambda item: item.get("index", 0) if isinstance(item, Mapping) else 0)
    vectors = []
    for item in ordered:
        vector = item.get("embedding") if isinstance(item, Mapping) else None
        if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
            raise ProviderUnavailable(f"{endpoint.name}: malformed response: an embedding is not a list of numbers")
        vectors.append(tuple(float(x) for x in vector))
    usage = data.get("usage")
    reported = count_or_none(usage.get("prompt_tokens")) if isinstance(usage, Mapping) else None
    return Embeddings(
        vectors=tuple(vectors),
        input_tokens=reported if reported is not None else sum(estimate_tokens(text) for text in inputs),
        latency_ms=latency_ms,
        model=str(data.get("model") or endpoint.model_id),
    )


def refused(endpoint: EndpointSnapshot, finish_reason: str, usage: Any) -> ProviderRefused:
    """A refusal, with the usage the provider reported for it: a filtered answer is billed too."""
    input_tokens, output_tokens, cached = reported_usage(usage)
    return ProviderRefused(
        f"{endpoint.name}: refused ({finish_reason})",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
    )


def first_choice(data: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise ProviderUnavailable("malformed response: no choices")
    return choices[0]


def usage_counts(usage: Any, chat: ChatRequest, text: str) -> tuple[int, int, int]:
    """(input, output, cached input) tokens: reported ones, estimated where missing."""
    input_tokens, output_tokens, cached = reported_counts(usage)
    return (
        estimate_prompt_tokens(chat) if input_tokens is None else input_tokens,
        estimate_tokens(text) if output_tokens is None else output_tokens,
        cached or 0,
    )


def reported_usage(usage: Any) -> tuple[int, int, int]:
    """(input, output, cached input) tokens as reported; 0 for whatever was not."""
    input_tokens, output_tokens, cached = reported_counts(usage)
    return input_tokens or 0, output_tokens or 0, cached or 0


def reported_counts(usage: Any) -> tuple[int | None, int | None, int | None]:
    """(input, output, cached input) tokens as reported; None for whatever was not."""
    if not isinstance(usage, Mapping):
        return None, None, None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return (
        count_or_none(usage.get("prompt_tokens")),
        count_or_none(usage.get("completion_tokens")),
        count_or_none(cached),
    )


def count_or_none(value: Any) -> int | None:
    # bool is an int subclass; a server sending `true` as a count is broken, not 1.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_logprobs(logprobs: Any) -> tuple[float, ...] | None:
    """The log-probability of each answer token, or None when none were returned."""
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list):
        return None
    return tuple(
        float(token["logprob"])
        for token in content
        if isinstance(token, Mapping) and isinstance(token.get("logprob"), int | float)
    )


# What a streamed request adds to the body: the usage comes in a last chunk of its own.
STREAM_PARAMETERS: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}


class ServerSentEvents:
    """Cuts a byte stream into the `data` of its server-sent events.

    Lines end in CRLF, LF or CR, and may arrive split anywhere; comments and fields other
    than `data` are skipped. Works on bytes: each event's data goes to `json.loads` as is.
    """

    def __init__(self) -> None:
        self._partial = b""  # the start of a line whose end has not arrived
        self._data: list[bytes] = []
        self._after_cr = False

    def feed(self, piece: bytes) -> list[bytes]:
        """The data of every event `piece` completes."""
        if self._after_cr and piece.startswith(b"\n"):
            piece = piece[1:]  # the second half of a CRLF split across pieces
        self._after_cr = piece.endswith(b"\r")
        text = self._partial + piece
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = text.split(b"\n")
        self._partial = lines.pop()
        return self._events(lines)

    def finish(self) -> list[bytes]:
        """At the end of the stream: the last event, even without its closing blank line."""
        events = self._events([self._partial, b""])
        self._partial = b""
        return events

    def _events(self, lines: list[bytes]) -> list[bytes]:
        events = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events


def decode_chunk(endpoint: EndpointSnapshot, data: bytes) -> Mapping[str, Any]:
    """One `chat.completion.chunk`; an error the upstream sent in the stream is raised."""
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise ProviderUnavailable(f"{endpoint.name}: malformed stream event: {truncate(text_of(data), 80)}") from exc
    if not isinstance(chunk, Mapping):
        raise ProviderUnavailable(f"{endpoint.name}: malformed stream event: not a JSON object")
    error = chunk.get("error")
    if error:
        message = error.get("message") if isinstance(error, Mapping) else error
        raise ProviderUnavailable(f"{endpoint.name}: error in stream: {truncate(str(message))}")
    return chunk


class StreamedAnswer:
    """The answer a stream has sent so far: text, tool calls, finish reason, usage and logprobs."""

    def __init__(self, endpoint: EndpointSnapshot, *, keep_logprobs: bool = False) -> None:
        self.endpoint = endpoint
        self.pieces: list[str] = []
        self.finish_reason = ""
        self.refusal = False
        self.usage: Mapping[str, Any] | None = None
        self.model = ""
        self.logprobs: list[float] | None = None
        self.keep_logprobs = keep_logprobs
        self.logprob_entries: list[Mapping[str, Any]] | None = None
        self.calls: dict[int, list[str]] = {}  # index → [id, name, arguments so far]
        self.system_fingerprint: str | None = None

    def add(self, chunk: Mapping[str, Any]) -> list[TextDelta | ToolCallDelta]:
        """Take in one chunk; the deltas it adds."""
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = chunk["usage"]
        self.model = self.model or str(chunk.get("model") or "")
        self.system_fingerprint = self.system_fingerprint or fingerprint(chunk.get("system_fingerprint"))
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return []  # the usage chunk has no choices
        return self._add_choice(choices[0])

    def _add_choice(self, choice: Mapping[str, Any]) -> list[TextDelta | ToolCallDelta]:
        self.finish_reason = str(choice.get("finish_reason") or self.finish_reason)
        entries = self._add_logprobs(choice.get("logprobs"))
        delta = choice.get("delta")
        delta = delta if isinstance(delta, Mapping) else {}
        self.refusal = self.refusal or bool(delta.get("refusal"))
        text = delta.get("content") or ""
        if not isinstance(text, str):
            raise ProviderUnavailable(f"{self.endpoint.name}: malformed stream event: delta.content is not text")
        self.pieces.append(text)
        events: list[TextDelta | ToolCallDelta] = [TextDelta(text, entries)] if text or entries else []
        for item in delta.get("tool_calls") or ():
            events.append(self._add_call(item))
        return events

    def _add_call(self, item: Any) -> ToolCallDelta:
        """One tool-call delta: its index, with the id and name on its first, pieces of arguments after."""
        function = item.get("function") if isinstance(item, Mapping) else None
        index = item.get("index") if isinstance(item, Mapping) else None
        if not isinstance(index, int) or not isinstance(function or {}, Mapping):
            raise ProviderUnavailable(f"{self.endpoint.name}: malformed stream event: a tool-call delta without index")
        function = function or {}
        call = self.calls.setdefault(index, ["", "", ""])
        delta = ToolCallDelta(
            index, str(item.get("id") or ""), str(function.get("name") or ""), str(function.get("arguments") or "")
        )
        call[0] = call[0] or delta.id
        call[1] = call[1] or delta.name
        call[2] += delta.arguments
        return delta

    def _add_logprobs(self, logprobs: Any) -> tuple[Mapping[str, Any], ...] | None:
        found = token_logprobs(logprobs)
        if found is not None:
            self.logprobs = [*(self.logprobs or []), *found]
        entries = logprobs_content(logprobs) if self.keep_logprobs else None
        if entries:
            self.logprob_entries = [*(self.logprob_entries or []), *entries]
        return entries or None

    def completion(self, chat: ChatRequest, *, latency_ms: float) -> Completion:
        """The whole answer; raises when the model refused or the stream stopped short."""
        if self.finish_reason == "content_filter" or self.refusal:
            raise refused(self.endpoint, self.finish_reason or "refusal", self.usage)
        if not self.finish_reason:
            raise ProviderUnavailable(f"{self.endpoint.name}: the stream ended without a finish reason")
        text = "".join(self.pieces)
        calls = tuple(ToolCall(*self.calls[index]) for index in sorted(self.calls))
        output = text + "".join(call.arguments for call in calls)
        input_tokens, output_tokens, cached = usage_counts(self.usage, chat, output)
        return Completion(
            text=text,
            finish_reason=self.finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            cached_input_tokens=cached,
            logprobs=None if self.logprobs is None else tuple(self.logprobs),
            model=self.model or self.endpoint.model_id,
            tool_calls=calls,
            logprobs_content=None if self.logprob_entries is None else tuple(self.logprob_entries),
            system_fingerprint=self.system_fingerprint,
        )
