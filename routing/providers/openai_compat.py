"""Provider for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, ...).

One `httpx.AsyncClient` per provider instance keeps connections to the upstream alive
between requests; build one provider per endpoint and share it across requests. The
secret is read from the environment variable the endpoint names on every call, so a
rotated key takes effect without a restart and a missing one fails only that endpoint.

The client's transport is `transport.FastHTTPTransport`, a lean HTTP/1.1 pool, unless
the endpoint's `options["transport"]` is `"httpx"` or the environment may proxy its URL:
then it is httpx's own, which also speaks to proxies.

Every failure becomes a `routing.engine.errors.ProviderError` subclass, which the cascade
turns into a failed attempt and falls through to the next tier.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx

from routing.engine.errors import (
    ProviderBadRequest,
    ProviderError,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, ModelEndpoint

from .transport import FastHTTPTransport, environment_proxy_applies

# Upstream error bodies can echo the whole prompt back; keep records and logs small.
ERROR_MESSAGE_LIMIT = 300
# The upstream may answer later: the cascade should treat these like a 5xx.
RETRYABLE_STATUSES = frozenset({408, 429})
# Authentication and "no such model" are for an operator to fix, not a bad request.
MISCONFIGURED_STATUSES = frozenset({401, 403, 404})
DEFAULT_MAX_CONNECTIONS = 100
KEEPALIVE_EXPIRY_S = 30.0
JSON_CONTENT_TYPE = {"Content-Type": "application/json"}


class OpenAICompatProvider:
    """Calls `POST {base_url}/chat/completions` on an OpenAI-compatible server."""

    def __init__(self, endpoint: ModelEndpoint, *, client: httpx.AsyncClient | None = None) -> None:
        self.endpoint = endpoint
        # A client passed in belongs to the caller, who closes it.
        self._owns_client = client is None
        self._client = client if client is not None else build_client(endpoint)
        self._url: httpx.URL | None = None

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        """Ask the endpoint for one answer; raise a `ProviderError` when there is none."""
        url = self._chat_completions_url()
        body = encode_json(request_body(self.endpoint, chat, max_tokens=max_tokens))
        headers = {**JSON_CONTENT_TYPE, **auth_headers(self.endpoint)}
        started = time.perf_counter()
        response = await self._post(url, body, headers)
        latency_ms = (time.perf_counter() - started) * 1000
        raise_for_status(self.endpoint, response)
        return parse_completion(self.endpoint, chat, decode_json(response), latency_ms=latency_ms)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def _chat_completions_url(self) -> httpx.URL:
        # Parsed once per provider: httpx would parse a string on every call.
        if self._url is None:
            self._url = httpx.URL(chat_completions_url(self.endpoint))
        return self._url

    async def _post(self, url: httpx.URL, body: bytes, headers: dict[str, str]) -> httpx.Response:
        name = self.endpoint.name
        try:
            return await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"{name}: {type(exc).__name__}") from exc
        except httpx.UnsupportedProtocol as exc:
            raise ProviderMisconfigured(f"{name}: bad base_url: {exc}") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"{name}: {type(exc).__name__}: {exc}") from exc


def build_client(endpoint: ModelEndpoint) -> httpx.AsyncClient:
    """A pooled client with the endpoint's connect and read timeouts."""
    max_connections = int(endpoint.options.get("max_connections", DEFAULT_MAX_CONNECTIONS))
    timeout = httpx.Timeout(endpoint.read_timeout_s, connect=endpoint.connect_timeout_s)
    if uses_httpx_transport(endpoint):
        # Keep as many idle connections as we may open: under a burst, closing and
        # reopening them would add a TCP (and TLS) handshake to every request.
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        )
        return httpx.AsyncClient(timeout=timeout, limits=limits)
    # The fast transport keeps every idle connection it may open, for the same reason.
    transport = FastHTTPTransport(max_connections=max_connections, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    return httpx.AsyncClient(timeout=timeout, transport=transport)


def uses_httpx_transport(endpoint: ModelEndpoint) -> bool:
    """Whether the endpoint needs httpx's own transport rather than the fast one.

    It does when its options ask for it, and when the environment may proxy its URL: httpx
    ignores the proxy variables once it is given a transport, and the fast one speaks no
    proxy protocol.
    """
    if endpoint.options.get("transport") == "httpx":
        return True
    return bool(endpoint.base_url) and environment_proxy_applies(endpoint.base_url)


def chat_completions_url(endpoint: ModelEndpoint) -> str:
    if not endpoint.base_url:
        raise ProviderMisconfigured(f"{endpoint.name}: base_url is empty")
    return f"{endpoint.base_url.rstrip('/')}/chat/completions"


def request_body(endpoint: ModelEndpoint, chat: ChatRequest, *, max_tokens: int) -> dict[str, Any]:
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
    """The body as httpx's `json=` would encode it, done here so the client doesn't have to."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def auth_headers(endpoint: ModelEndpoint) -> dict[str, str]:
    """A bearer token from the variable `credentials_env` names; none for keyless servers."""
    if not endpoint.credentials_env:
        return {}
    secret = os.environ.get(endpoint.credentials_env)
    if not secret:
        # Name the variable, never a value: this message ends up in request records.
        raise ProviderMisconfigured(f"{endpoint.name}: environment variable {endpoint.credentials_env} is not set")
    return {"Authorization": f"Bearer {secret}"}


def raise_for_status(endpoint: ModelEndpoint, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"{endpoint.name}: HTTP {status}: {upstream_error_message(response)}"
    raise error_class_for_status(status)(message)


def error_class_for_status(status: int) -> type[ProviderError]:
    if status in RETRYABLE_STATUSES or not 400 <= status < 500:
        return ProviderUnavailable
    if status in MISCONFIGURED_STATUSES:
        return ProviderMisconfigured
    return ProviderBadRequest


def upstream_error_message(response: httpx.Response) -> str:
    """OpenAI's `error.message` when the body has one, else the body's start."""
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, Mapping) else error
    except (ValueError, AttributeError):
        message = None
    text = str(message) if message else response.text
    return truncate(text.strip() or response.reason_phrase)


def truncate(text: str, limit: int = ERROR_MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_json(response: httpx.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise ProviderUnavailable(f"malformed response: not JSON: {truncate(response.text, 80)}") from exc
    if not isinstance(data, Mapping):
        raise ProviderUnavailable("malformed response: not a JSON object")
    return data


def parse_completion(
    endpoint: ModelEndpoint, chat: ChatRequest, data: Mapping[str, Any], *, latency_ms: float
) -> Completion:
    """Turn a chat-completions response body into a `Completion`."""
    choice = first_choice(data)
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise ProviderUnavailable("malformed response: choices[0].message is missing")
    finish_reason = str(choice.get("finish_reason") or "stop")
    if finish_reason == "content_filter" or message.get("refusal"):
        raise ProviderRefused(f"{endpoint.name}: refused ({finish_reason})")
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


def first_choice(data: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise ProviderUnavailable("malformed response: no choices")
    return choices[0]


def usage_counts(usage: Any, chat: ChatRequest, text: str) -> tuple[int, int, int]:
    """(input, output, cached input) tokens: reported ones, estimated where missing."""
    usage = usage if isinstance(usage, Mapping) else {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    return (
        int_or(usage.get("prompt_tokens"), estimate_prompt_tokens(chat)),
        int_or(usage.get("completion_tokens"), estimate_tokens(text)),
        int_or(details.get("cached_tokens"), 0),
    )


def int_or(value: Any, default: int) -> int:
    # bool is an int subclass; a server sending `true` as a count is broken, not 1.
    return value if isinstance(value, int) and not isinstance(value, bool) else default


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
