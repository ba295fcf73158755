"""Provider for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, ...).

Build one provider per endpoint and share it across requests: it keeps connections to the
upstream alive between them. The secret is read from the environment variable the
endpoint names on every call, so a rotated key takes effect without a restart and a
missing one fails only that endpoint.

The hot path skips httpx's client: `transport.FastHTTPTransport`'s pool is handed the
request as bytes (`Wire`: the request line and the static headers encoded once per
endpoint, the JSON body encoded once per call) and gives the response back as bytes,
parsed here; no `httpx.Request`/`Response`, cookie jar, auth or redirect handling per
call. An `httpx.AsyncClient` (with httpx's own transport) is used instead when the
endpoint's `options["transport"]` is `"httpx"`, when the environment may proxy its URL
or the URL carries credentials (see `uses_httpx_transport`), and when the caller passes
a client of its own.

Every failure becomes a `routing.engine.errors.ProviderError` subclass, which the cascade
turns into a failed attempt and falls through to the next tier.

`stream` asks for the answer as server-sent events (`stream: true`, with the usage at
the end) and yields its deltas as they arrive; closing the generator closes the
connection, which is how the upstream learns the caller went away.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from routing.engine.errors import ProviderBadRequest, ProviderError, ProviderMisconfigured, ProviderRefused, ProviderTimeout, ProviderUnavailable
from routing.engine.streaming import StreamDone, StreamEvent, TextDelta
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot
from routing.providers.transport import STREAM_RESPONSE, FastHTTPTransport, Origin, Outgoing, RawResponse, environment_proxy_applies, url_origin

# Upstream error bodies can echo the whole prompt back; keep records and logs small.
ERROR_MESSAGE_LIMIT = 300
# The upstream may answer later: the cascade should treat these like a 5xx.
RETRYABLE_STATUSES = frozenset({408, 429})
# Authentication and "no such model" are for an operator to fix, not a bad request.
MISCONFIGURED_STATUSES = frozenset({401, 403, 404})
DEFAULT_MAX_CONNECTIONS = 100
KEEPALIVE_EXPIRY_S = 30.0
JSON_CONTENT_TYPE = {"Content-Type": "application/json"}
SSE_ACCEPT = {"Accept": "text/event-stream"}
END_OF_STREAM = b"[DONE]"
USER_AGENT = b"cascadeops"
# Sent with every direct request. `identity`: a compressed answer would cost more CPU
# to inflate than it saves on loopback or a LAN, and SSE streams are seldom compressed.
STATIC_HEADERS = (
    b"Content-Type: application/json\r\n"
    b"Accept-Encoding: identity\r\n"
    b"Connection: keep-alive\r\n"
    b"User-Agent: " + USER_AGENT + b"\r\n"
)
# One encoder for every call: `json.dumps` with options builds a new one each time.
JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class OpenAICompatProvider:
    """Calls `POST {base_url}/chat/completions` on an OpenAI-compatible server."""

    def __init__(self, endpoint: EndpointSnapshot, *, client: httpx.AsyncClient | None = None) -> None:
        self.endpoint = endpoint
        # A client passed in belongs to the caller, who closes it.
        self._owns_client = client is None
        self._client = client
        self._transport: FastHTTPTransport | None = None
        if client is None:
            if uses_httpx_transport(endpoint):
                self._client = build_client(endpoint)
            else:
                self._transport = build_transport(endpoint)
        self._wire: Wire | None = None
        self._url: httpx.URL | None = None

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        """Ask the endpoint for one answer; raise a `ProviderError` when there is none."""
        body = encode_json(request_body(self.endpoint, chat, max_tokens=max_tokens))
        started = time.perf_counter()
        response = await self._send(body, streaming=False)
        latency_ms = (time.perf_counter() - started) * 1000
        raise_for_status(self.endpoint, response)
        return parse_completion(self.endpoint, chat, decode_json(response.content), latency_ms=latency_ms)

    async def stream(self, chat: ChatRequest, *, max_tokens: int) -> AsyncGenerator[StreamEvent, None]:
        """Ask for the answer as server-sent events: its deltas as they come, then all of it."""
        body = encode_json({**request_body(self.endpoint, chat, max_tokens=max_tokens), **STREAM_PARAMETERS})
        started = time.perf_counter()
        response = await self._send(body, streaming=True)
        assert response.stream is not None  # asked for with streaming=True
        try:
            await self._raise_for_stream_status(response, response.stream)
            answer = StreamedAnswer(self.endpoint)
            async with aclosing(self._chunks(response.stream)) as chunks:
                async for chunk in chunks:
                    if text := answer.add(chunk):
                        yield TextDelta(text)
            yield StreamDone(answer.completion(chat, latency_ms=(time.perf_counter() - started) * 1000))
        finally:
            # Before the end of the body this drops the connection: the upstream stops generating.
            await response.stream.aclose()

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
        elif self._owns_client and self._client is not None:
            await self._client.aclose()

    async def _send(self, body: bytes, *, streaming: bool) -> RawResponse:
        """POST `body`; the response, its body whole or (`streaming`) as it arrives."""
        try:
            if self._transport is None:
                return await self._send_with_httpx(body, streaming=streaming)
            wire = self._wire or self._build_wire()
            outgoing = wire.outgoing(self.endpoint, body, streaming=streaming)
            response = await self._transport.send_raw(wire.origin, outgoing, wire.timeouts, streaming=streaming)
        except httpx.TransportError as exc:
            raise transport_error(self.endpoint.name, exc) from exc
        await refuse_content_coding(self.endpoint, response)
        return response

    def _build_wire(self) -> Wire:
        # Kept only once it could be built: an endpoint with a bad URL fails every call.
        self._wire = Wire(self.endpoint)
        return self._wire

    async def _send_with_httpx(self, body: bytes, *, streaming: bool) -> RawResponse:
        assert self._client is not None  # no transport of our own means a client
        headers = {**JSON_CONTENT_TYPE, **auth_headers(self.endpoint)}
        if not streaming:
            response = await self._client.post(self._chat_completions_url(), content=body, headers=headers)
            return raw_response(response, response.content)
        request = self._client.build_request(
            "POST",
            self._chat_completions_url(),
            content=body,
            headers={**headers, **SSE_ACCEPT},
            extensions={STREAM_RESPONSE: True},
        )
        response = await self._client.send(request, stream=True)
        return raw_response(response, stream=DecodedBody(response))

    async def _raise_for_stream_status(self, response: RawResponse, body: AsyncIterable[bytes]) -> None:
        if 200 <= response.status < 300:
            return
        try:
            response.content = b"".join([piece async for piece in body])  # the error body, for its message
        except httpx.TransportError as exc:
            raise transport_error(self.endpoint.name, exc) from exc
        raise_for_status(self.endpoint, response)

    async def _chunks(self, body: AsyncIterable[bytes]) -> AsyncGenerator[Mapping[str, Any], None]:
        """The stream's `chat.completion.chunk` objects, up to `[DONE]`."""
        events = ServerSentEvents()
        try:
            async for piece in body:
                for data in events.feed(piece):
                    if data == END_OF_STREAM:
                        return
                    yield decode_chunk(self.endpoint, data)
        except httpx.TransportError as exc:
            raise transport_error(self.endpoint.name, exc) from exc
        for data in events.finish():
            if data == END_OF_STREAM:
                return
            yield decode_chunk(self.endpoint, data)

    def _chat_completions_url(self) -> httpx.URL:
        # Parsed once per provider: httpx would parse a string on every call.
        if self._url is None:
            self._url = parse_url(self.endpoint)
        return self._url


class Wire:
    """An endpoint's chat-completions request as bytes: what is the same on every call, encoded once.

    Per call only the Authorization line (when the secret changed) and Content-Length
    are added. The timeouts are the endpoint's, in the shape the transport reads.
    """

    def __init__(self, endpoint: EndpointSnapshot) -> None:
        url = parse_url(endpoint)
        self.origin: Origin = url_origin(url)
        start = b"POST %s HTTP/1.1\r\nHost: %s\r\n%s" % (url.raw_path or b"/", url.netloc, STATIC_HEADERS)
        self.whole_head = start + b"Accept: application/json\r\n"
        self.stream_head = start + b"Accept: text/event-stream\r\n"
        read_s = endpoint.read_timeout_s
        # As `httpx.Timeout(read, connect=...)`: writing and waiting for a connection get the read timeout.
        self.timeouts = {"connect": endpoint.connect_timeout_s, "read": read_s, "write": read_s, "pool": read_s}
        self._secret: str | None = None
        self._authorization = b""

    def outgoing(self, endpoint: EndpointSnapshot, body: bytes, *, streaming: bool) -> Outgoing:
        head = self.stream_head if streaming else self.whole_head
        return Outgoing(b"%s%sContent-Length: %d\r\n\r\n" % (head, self.authorization(endpoint), len(body)), body)

    def authorization(self, endpoint: EndpointSnapshot) -> bytes:
        """The Authorization header line; encoded again only when the secret changes."""
        secret = credential(endpoint)
        if secret is None:
            return b""
        if secret != self._secret:
            self._authorization = authorization_line(endpoint, secret)
            self._secret = secret
        return self._authorization


def authorization_line(endpoint: EndpointSnapshot, secret: str) -> bytes:
    # A line break in the secret would let it smuggle in headers of its own.
    if not (secret.isascii() and secret.isprintable()):
        raise ProviderMisconfigured(
            f"{endpoint.name}: environment variable {endpoint.credentials_env} holds characters a header cannot carry"
        )
    return b"Authorization: Bearer %s\r\n" % secret.encode("ascii")


class DecodedBody(httpx.AsyncByteStream):
    """A streamed httpx response's body (content codings decoded), as a `RawResponse.stream`."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._response.aiter_bytes():
            yield piece

    async def aclose(self) -> None:
        await self._response.aclose()


def raw_response(response: httpx.Response, content: bytes = b"", *, stream: DecodedBody | None = None) -> RawResponse:
    """An httpx response as the direct path's `RawResponse`, so one parser reads both."""
    reason = response.reason_phrase.encode("ascii", "ignore")
    return RawResponse(response.status_code, response.headers.raw, content, reason=reason, stream=stream)


async def refuse_content_coding(endpoint: EndpointSnapshot, response: RawResponse) -> None:
    """Fail on a compressed body: the direct path asks for none and decodes none."""
    coding = response.header(b"content-encoding")
    if coding is None or coding.strip().lower() in (b"", b"identity"):
        return
    if response.stream is not None:
        await response.stream.aclose()
    name = coding.decode("latin-1")
    raise ProviderUnavailable(f"{endpoint.name}: the upstream sent a {name}-encoded body though asked for identity")


def transport_error(name: str, exc: httpx.TransportError) -> ProviderError:
    """The `ProviderError` an httpx failure stands for."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"{name}: {type(exc).__name__}")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ProviderMisconfigured(f"{name}: bad base_url: {exc}")
    return ProviderUnavailable(f"{name}: {type(exc).__name__}: {exc}")


def build_transport(endpoint: EndpointSnapshot) -> FastHTTPTransport:
    """The lean pool; it keeps every idle connection it may open: under a burst, closing
    and reopening them would add a TCP (and TLS) handshake to every request."""
    max_connections = int(endpoint.options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
    return FastHTTPTransport(max_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY_S)


def build_client(endpoint: EndpointSnapshot) -> httpx.AsyncClient:
    """A pooled client with the endpoint's connect and read timeouts."""
    max_connections = int(endpoint.options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
    timeout = httpx.Timeout(endpoint.read_timeout_s, connect=endpoint.connect_timeout_s)
    if uses_httpx_transport(endpoint):
        # Keep as many idle connections as we may open, as `build_transport` does.
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        )
        return httpx.AsyncClient(timeout=timeout, limits=limits)
    return httpx.AsyncClient(timeout=timeout, transport=build_transport(endpoint))


def uses_httpx_transport(endpoint: EndpointSnapshot) -> bool:
    """Whether the endpoint needs httpx's client and transport rather than the fast pool.

    It does when its options ask for it; when the environment may proxy its URL (httpx
    ignores the proxy variables once it is given a transport, and the fast one speaks no
    proxy protocol); and when the URL carries credentials, which httpx sends as basic auth.
    """
    if endpoint.options.get("transport") == "httpx":
        return True
    if not endpoint.base_url:
        return False
    return environment_proxy_applies(endpoint.base_url) or url_has_credentials(endpoint.base_url)


def url_has_credentials(url: str) -> bool:
    try:
        return bool(httpx.URL(url).userinfo)
    except httpx.InvalidURL:
        return False


def chat_completions_url(endpoint: EndpointSnapshot) -> str:
    if not endpoint.base_url:
        raise ProviderMisconfigured(f"{endpoint.name}: base_url is empty")
    return f"{endpoint.base_url.rstrip('/')}/chat/completions"


def parse_url(endpoint: EndpointSnapshot) -> httpx.URL:
    try:
        return httpx.URL(chat_completions_url(endpoint))
    except httpx.InvalidURL as exc:
        raise ProviderMisconfigured(f"{endpoint.name}: bad base_url: {exc}") from exc


def request_body(endpoint: EndpointSnapshot, chat: ChatRequest, *, max_tokens: int) -> dict[str, Any]:
    """The JSON body OpenAI's chat-completions API expects."""
    temperature = chat.temperature if chat.temperature is not None else endpoint.temperature
    body: dict[str, Any] = {
        "model": endpoint.model_id,
        "messages": [{"role": m.role, "content": m.content} for m in chat.messages],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    if chat.user:
        body["user"] = chat.user
    # Some compatible servers reject the parameter outright, so send it only when asked.
    if chat.logprobs or endpoint.options.get("logprobs"):
        body["logprobs"] = True
    return body


def encode_json(body: dict[str, Any]) -> bytes:
    """The body as httpx's `json=` would encode it (compact, UTF-8, no NaN)."""
    return JSON_ENCODER.encode(body).encode()


def credential(endpoint: EndpointSnapshot) -> str | None:
    """The secret in the variable `credentials_env` names; None for keyless servers."""
    if not endpoint.credentials_env:
        return None
    secret = os.environ.get(endpoint.credentials_env)
    if not secret:
        # Name the variable, never a value: this message ends up in request records.
        raise ProviderMisconfigured(f"{endpoint.name}: environment variable {endpoint.credentials_env} is not set")
    return secret


def auth_headers(endpoint: EndpointSnapshot) -> dict[str, str]:
    """A bearer token from the variable `credentials_env` names; none for keyless servers."""
    secret = credential(endpoint)
    return {} if secret is None else {"Authorization": f"Bearer {secret}"}


def raise_for_status(endpoint: EndpointSnapshot, response: RawResponse) -> None:
    status = response.status
    if 200 <= status < 300:
        return
    message = f"{endpoint.name}: HTTP {status}: {upstream_error_message(response)}"
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


def retry_after_s(response: RawResponse) -> float | None:
    """How long the upstream asked us to wait: `retry-after-ms` (OpenAI's), else `Retry-After`
    in seconds or as an HTTP date; None when it said nothing usable."""
    millis = parse_seconds(response.header(b"retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = response.header(b"retry-after")
    seconds = parse_seconds(value)
    if seconds is None and value:
        seconds = seconds_until(value.decode("latin-1"))
    return seconds


def parse_seconds(value: bytes | None) -> float | None:
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


def upstream_error_message(response: RawResponse) -> str:
    """OpenAI's `error.message` when the body has one, else the body's start."""
    try:
        error = json.loads(response.content).get("error")
        message = error.get("message") if isinstance(error, Mapping) else error
    except (ValueError, AttributeError):
        message = None
    text = str(message) if message else response.content.decode("utf-8", "replace")
    reason = response.reason.decode("latin-1") or httpx.codes.get_reason_phrase(response.status)
    return truncate(text.strip() or reason)


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
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise ProviderUnavailable("malformed response: choices[0].message is missing")
    finish_reason = str(choice.get("finish_reason") or "stop")
    if finish_reason == "content_filter" or message.get("refusal"):
        raise refused(endpoint, finish_reason, data.get("usage"))
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise ProviderUnavailable("malformed response: choices[0].message.content is not text")
    input_tokens, output_tokens, cached = usage_counts(data.get("usage"), chat, text)
    return Completion(
        text=text,
        finish_reason=finish_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        cached_input_tokens=cached,
        logprobs=token_logprobs(choice.get("logprobs")),
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
    """The answer a stream has sent so far: text, finish reason, usage and logprobs."""

    def __init__(self, endpoint: EndpointSnapshot) -> None:
        self.endpoint = endpoint
        self.pieces: list[str] = []
        self.finish_reason = ""
        self.refusal = False
        self.usage: Mapping[str, Any] | None = None
        self.model = ""
        self.logprobs: list[float] | None = None

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Take in one chunk; the text it adds."""
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = chunk["usage"]
        self.model = self.model or str(chunk.get("model") or "")
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            return ""  # the usage chunk has no choices
        return self._add_choice(choices[0])

    def _add_choice(self, choice: Mapping[str, Any]) -> str:
        self.finish_reason = str(choice.get("finish_reason") or self.finish_reason)
        self._add_logprobs(choice.get("logprobs"))
        delta = choice.get("delta")
        delta = delta if isinstance(delta, Mapping) else {}
        self.refusal = self.refusal or bool(delta.get("refusal"))
        text = delta.get("content") or ""
        if not isinstance(text, str):
            raise ProviderUnavailable(f"{self.endpoint.name}: malformed stream event: delta.content is not text")
        self.pieces.append(text)
        return text

    def _add_logprobs(self, logprobs: Any) -> None:
        found = token_logprobs(logprobs)
        if found is not None:
            self.logprobs = [*(self.logprobs or []), *found]

    def completion(self, chat: ChatRequest, *, latency_ms: float) -> Completion:
        """The whole answer; raises when the model refused or the stream stopped short."""
        if self.finish_reason == "content_filter" or self.refusal:
            raise refused(self.endpoint, self.finish_reason or "refusal", self.usage)
        if not self.finish_reason:
            raise ProviderUnavailable(f"{self.endpoint.name}: the stream ended without a finish reason")
        text = "".join(self.pieces)
        input_tokens, output_tokens, cached = usage_counts(self.usage, chat, text)
        return Completion(
            text=text,
            finish_reason=self.finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=latency_ms,
            cached_input_tokens=cached,
            logprobs=None if self.logprobs is None else tuple(self.logprobs),
            model=self.model or self.endpoint.model_id,
        )
