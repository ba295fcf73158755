"""OpenAICompatProvider against a real OpenAI-compatible server on loopback (testing.upstream)
where a real socket matters (connections, timeouts, proxies, the request on the wire), and
aioresponses for answers and failures that server can't be made to give (Retry-After,
compression, redirects, each failure of the HTTP client)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest
from aiohttp.abc import AbstractStreamWriter
from aioresponses import aioresponses
from yarl import URL

from routing.engine.errors import (
    ProviderBadRequest,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Message, ProviderType
from routing.providers.openai_compat import OpenAICompatProvider, ServerSentEvents
from testing.upstream import DEFAULT_ANSWER, UpstreamBehaviour, running_upstream

CHAT = ChatRequest(messages=(Message("system", "Answer with a number."), Message("user", "What is 6 x 7?")))


def make_endpoint(base_url: str, model_id: str = "cheap", **kwargs: Any) -> EndpointSnapshot:
    return EndpointSnapshot(
        id=1,
        name="cheap-tier",
        provider_kind=ProviderType.OPENAI_COMPAT,
        model_id=model_id,
        input_price_per_m=Decimal("0.50"),
        output_price_per_m=Decimal("1.50"),
        base_url=base_url,
        **kwargs,
    )


async def ask(endpoint: EndpointSnapshot, chat: ChatRequest = CHAT, *, max_tokens: int = 64) -> Completion:
    provider = OpenAICompatProvider(endpoint)
    try:
        return await provider.complete(chat, max_tokens=max_tokens)
    finally:
        await provider.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def listener_that_never_accepts() -> Iterator[int]:
    """A port whose accept queue is full, so the kernel drops new connection attempts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_it_returns_the_answer_with_reported_usage_and_cached_tokens() -> None:
    behaviour = UpstreamBehaviour(answer="42", prompt_tokens=31, completion_tokens=2, cached_tokens=16)
    with running_upstream(behaviour) as upstream:
        completion = await ask(make_endpoint(upstream.base_url))

    assert completion.text == "42"
    assert completion.finish_reason == "stop"
    assert (completion.input_tokens, completion.output_tokens, completion.cached_input_tokens) == (31, 2, 16)
    assert completion.model == "cheap"
    assert completion.logprobs is None
    assert completion.latency_ms > 0
    assert upstream.calls == {"cheap": 1}


async def test_it_sends_model_messages_max_tokens_temperature_and_user() -> None:
    chat = replace(CHAT, user="user-7")
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url, temperature=0.3), chat, max_tokens=99)

    assert upstream.last_request == {
        "model": "cheap",
        "messages": [
            {"role": "system", "content": "Answer with a number."},
            {"role": "user", "content": "What is 6 x 7?"},
        ],
        "max_tokens": 99,
        "temperature": 0.3,
        "user": "user-7",
    }


async def test_the_requests_temperature_wins_over_the_endpoints() -> None:
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url, temperature=0.3), replace(CHAT, temperature=0.9))

    assert upstream.last_request["temperature"] == 0.9


async def test_it_asks_for_logprobs_when_the_request_does_and_parses_them() -> None:
    with running_upstream(UpstreamBehaviour(logprobs=(-0.25, -1.5))) as upstream:
        completion = await ask(make_endpoint(upstream.base_url), replace(CHAT, logprobs=True))

    assert upstream.last_request["logprobs"] is True
    assert completion.logprobs == (-0.25, -1.5)


async def test_it_asks_for_logprobs_when_the_endpoint_is_configured_to() -> None:
    with running_upstream(UpstreamBehaviour(logprobs=(-0.5,))) as upstream:
        completion = await ask(make_endpoint(upstream.base_url, options={"logprobs": True}))

    assert upstream.last_request["logprobs"] is True
    assert completion.logprobs == (-0.5,)


async def test_it_does_not_send_logprobs_unless_asked() -> None:
    with running_upstream(UpstreamBehaviour(logprobs=(-0.5,))) as upstream:
        completion = await ask(make_endpoint(upstream.base_url))

    assert "logprobs" not in upstream.last_request
    assert completion.logprobs is None


async def test_it_estimates_tokens_when_the_upstream_reports_no_usage() -> None:
    with running_upstream(UpstreamBehaviour(answer="The answer is 42.")) as upstream:
        completion = await ask(make_endpoint(upstream.base_url, model_id="no-usage"))

    assert completion.input_tokens == estimate_prompt_tokens(CHAT)
    assert completion.output_tokens == estimate_tokens("The answer is 42.")
    assert completion.cached_input_tokens == 0


async def test_it_sends_the_bearer_token_from_the_named_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASCADEOPS_PROVIDER_TEST_UPSTREAM", "sk-test-123")
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url, credentials_env="CASCADEOPS_PROVIDER_TEST_UPSTREAM"))

    assert upstream.last_headers["authorization"] == "Bearer sk-test-123"


async def test_it_sends_no_authorization_header_to_a_keyless_endpoint() -> None:
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url))

    assert "authorization" not in upstream.last_headers


async def test_a_missing_credentials_variable_is_misconfigured_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CASCADEOPS_PROVIDER_TEST_MISSING", raising=False)
    with running_upstream() as upstream, pytest.raises(ProviderMisconfigured, match="CASCADEOPS_PROVIDER_TEST_MISSING"):
        await ask(make_endpoint(upstream.base_url, credentials_env="CASCADEOPS_PROVIDER_TEST_MISSING"))

    assert upstream.calls.total() == 0


@pytest.mark.parametrize("model", ["fail-500", "fail-503", "fail-429", "fail-408"])
async def test_server_errors_throttling_and_request_timeouts_are_unavailable(model: str) -> None:
    with running_upstream() as upstream, pytest.raises(ProviderUnavailable, match=model.removeprefix("fail-")):
        await ask(make_endpoint(upstream.base_url, model_id=model))

    assert upstream.calls[model] == 1


async def test_a_400_is_a_bad_request_carrying_the_upstreams_message() -> None:
    with running_upstream() as upstream, pytest.raises(ProviderBadRequest, match="simulated 400 for model 'fail-400'"):
        await ask(make_endpoint(upstream.base_url, model_id="fail-400"))


@pytest.mark.parametrize("model", ["fail-401", "fail-403", "fail-404"])
async def test_rejected_credentials_and_unknown_models_are_misconfigured(model: str) -> None:
    with running_upstream() as upstream, pytest.raises(ProviderMisconfigured):
        await ask(make_endpoint(upstream.base_url, model_id=model))


async def test_an_upstream_that_hangs_past_the_read_timeout_times_out() -> None:
    with running_upstream() as upstream:
        started = time.perf_counter()
        with pytest.raises(ProviderTimeout):
            await ask(make_endpoint(upstream.base_url, model_id="hang", read_timeout_s=0.2))

    assert time.perf_counter() - started < 2


async def test_a_content_filter_finish_is_a_refusal() -> None:
    with running_upstream() as upstream, pytest.raises(ProviderRefused, match="content_filter"):
        await ask(make_endpoint(upstream.base_url, model_id="refuse"))


async def test_a_body_that_is_not_json_is_unavailable() -> None:
    with running_upstream() as upstream, pytest.raises(ProviderUnavailable, match="malformed response"):
        await ask(make_endpoint(upstream.base_url, model_id="malformed"))


async def test_a_refused_connection_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="connect failed"):
        await ask(make_endpoint(f"http://127.0.0.1:{closed_port()}/v1"))


async def test_an_empty_base_url_is_misconfigured() -> None:
    with pytest.raises(ProviderMisconfigured, match="base_url"):
        await ask(make_endpoint(""))


async def test_it_reuses_one_connection_for_consecutive_requests() -> None:
    with running_upstream() as upstream:
        provider = OpenAICompatProvider(make_endpoint(upstream.base_url))
        try:
            await provider.complete(CHAT, max_tokens=8)
            first_client = upstream.last_client
            await provider.complete(CHAT, max_tokens=8)
        finally:
            await provider.aclose()

    assert upstream.calls["cheap"] == 2
    assert upstream.last_client == first_client


async def test_calls_beyond_the_connection_limit_wait_for_a_free_connection() -> None:
    with running_upstream() as upstream:
        endpoint = make_endpoint(upstream.base_url, model_id="slow-5", options={"max_connections": 10})
        provider = OpenAICompatProvider(endpoint)
        try:
            completions = await asyncio.gather(*(provider.complete(CHAT, max_tokens=8) for _ in range(50)))
        finally:
            await provider.aclose()

    assert [c.text for c in completions] == [DEFAULT_ANSWER] * 50
    assert upstream.calls["slow-5"] == 50


async def test_a_cancelled_call_gives_its_connection_back_for_the_next_one() -> None:
    with running_upstream() as upstream:
        # One connection, and a wait for it bounded by the timeouts: a lost slot fails, not hangs.
        endpoint = make_endpoint(
            upstream.base_url, model_id="slow-300", read_timeout_s=2, options={"max_connections": 1}
        )
        provider = OpenAICompatProvider(endpoint)
        cancelled = asyncio.create_task(provider.complete(CHAT, max_tokens=8))
        while not upstream.calls:
            await asyncio.sleep(0.01)
        first_client = upstream.last_client
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        completion = await provider.complete(CHAT, max_tokens=8)
        await provider.aclose()

    assert completion.text == DEFAULT_ANSWER
    assert upstream.last_client != first_client  # the cancelled call's connection was closed, not reused


# The request on the wire

KEY_VARIABLE = "CASCADEOPS_PROVIDER_TEST_UPSTREAM"


async def test_it_sends_the_endpoints_headers_and_a_body_of_known_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "sk-test-123")
    with running_upstream() as upstream:
        provider = OpenAICompatProvider(make_endpoint(upstream.base_url, credentials_env=KEY_VARIABLE))
        await provider.complete(CHAT, max_tokens=8)
        first_client = upstream.last_client
        await provider.complete(CHAT, max_tokens=8)
        await provider.aclose()

    assert upstream.last_client == first_client  # the second went on the same connection: the first was framed right
    headers = upstream.last_headers
    assert headers["host"] == upstream.base_url.removeprefix("http://").removesuffix("/v1")
    assert headers["authorization"] == "Bearer sk-test-123"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["accept-encoding"] == "identity"
    assert int(headers["content-length"]) > 0
    assert "transfer-encoding" not in headers
    assert "cookie" not in headers


async def test_a_rotated_key_is_sent_from_the_next_call_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "sk-old")
    with running_upstream() as upstream:
        provider = OpenAICompatProvider(make_endpoint(upstream.base_url, credentials_env=KEY_VARIABLE))
        await provider.complete(CHAT, max_tokens=8)
        first = upstream.last_headers["authorization"]
        monkeypatch.setenv(KEY_VARIABLE, "sk-new")
        await provider.complete(CHAT, max_tokens=8)
        await provider.aclose()

    assert (first, upstream.last_headers["authorization"]) == ("Bearer sk-old", "Bearer sk-new")


async def test_a_key_with_a_line_break_is_misconfigured_and_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "sk-1\r\nX-Injected: 1")
    with running_upstream() as upstream, pytest.raises(ProviderMisconfigured, match=KEY_VARIABLE) as caught:
        await ask(make_endpoint(upstream.base_url, credentials_env=KEY_VARIABLE))

    assert "sk-1" not in str(caught.value)  # the message names the variable, never the value
    assert upstream.calls.total() == 0


async def test_credentials_in_the_base_url_and_in_a_key_variable_are_misconfigured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "sk-test-123")
    with pytest.raises(ProviderMisconfigured, match="credentials"):
        await ask(make_endpoint("http://user:secret@127.0.0.1:9/v1", credentials_env=KEY_VARIABLE))


# Proxies from the environment

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.usefixtures("no_proxies")
async def test_it_sends_the_request_through_the_proxy_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_upstream() as proxy:  # answers an absolute-form request as a forward proxy would
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        completion = await ask(make_endpoint("http://vllm.internal:8000/v1"))

    assert completion.text == DEFAULT_ANSWER
    assert proxy.last_headers["host"] == "vllm.internal:8000"


@pytest.mark.usefixtures("no_proxies")
async def test_a_host_in_no_proxy_is_called_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_upstream() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        with pytest.raises(ProviderUnavailable, match="connect failed"):
            await ask(make_endpoint(f"http://127.0.0.1:{closed_port()}/v1"))

    assert proxy.calls.total() == 0


# What the upstream answers, and the HTTP client's failures (aioresponses)

MOCKED_URL = "http://upstream.test/v1"


class MockedResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14, whose responses also take the request's writer
    (read only for the bytes it sent); drop this once aioresponses passes one."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        sent_nothing = cast(AbstractStreamWriter, SimpleNamespace(output_size=0))
        super().__init__(method, url, stream_writer=sent_nothing, **kwargs)


def answer(upstream: aioresponses, **response: Any) -> None:
    """The next chat-completions request to MOCKED_URL gets `response` (aioresponses' arguments)."""
    upstream.post(f"{MOCKED_URL}/chat/completions", response_class=MockedResponse, **response)


def completion_json(text: str = "42") -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    usage = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    return json.dumps({"object": "chat.completion", "model": "cheap", "choices": [choice], "usage": usage}).encode()


@pytest.mark.parametrize(
    ("headers", "retry_after_s"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
    ids=["seconds", "openai-milliseconds", "past-date", "garbage", "absent"],
)
async def test_throttling_carries_the_upstreams_retry_after(
    headers: dict[str, str], retry_after_s: float | None
) -> None:
    with aioresponses() as upstream:
        answer(upstream, status=429, body=b'{"error": {"message": "slow down"}}', headers=headers)
        with pytest.raises(ProviderUnavailable, match="HTTP 429: slow down") as caught:
            await ask(make_endpoint(MOCKED_URL))

    assert caught.value.retry_after_s == retry_after_s


async def test_a_retry_after_date_is_the_seconds_until_then() -> None:
    in_an_hour = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    with aioresponses() as upstream:
        answer(upstream, status=503, body=b"busy", headers={"Retry-After": in_an_hour})
        with pytest.raises(ProviderUnavailable, match="HTTP 503: busy") as caught:
            await ask(make_endpoint(MOCKED_URL))

    assert caught.value.retry_after_s is not None
    assert 3000 < caught.value.retry_after_s <= 3600


async def test_a_compressed_answer_it_did_not_ask_for_is_unavailable() -> None:
    with aioresponses() as upstream:
        compressed = gzip.compress(completion_json())
        answer(upstream, body=compressed, headers={"Content-Encoding": "gzip"})
        with pytest.raises(ProviderUnavailable, match="gzip"):
            await ask(make_endpoint(MOCKED_URL))


async def test_a_redirect_is_not_followed() -> None:
    # Following it would send the prompt, and its cost, somewhere the endpoint never named.
    with aioresponses() as upstream:
        answer(upstream, status=307, headers={"Location": "http://elsewhere.test/v1"})
        with pytest.raises(ProviderUnavailable, match="HTTP 307"):
            await ask(make_endpoint(MOCKED_URL))


@pytest.mark.parametrize(
    ("failure", "error_class", "message"),
    [
        (aiohttp.ConnectionTimeoutError("Connection timeout"), ProviderTimeout, "connect timeout"),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), ProviderTimeout, "read timeout"),
        (aiohttp.ServerDisconnectedError(), ProviderUnavailable, "connection lost: Server disconnected"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), ProviderUnavailable, "connection lost"),
        (aiohttp.ClientPayloadError("Response payload is not completed"), ProviderUnavailable, "response cut off"),
        (aiohttp.ClientError("boom"), ProviderUnavailable, "HTTP error: boom"),
    ],
    ids=["connect-timeout", "read-timeout", "disconnected", "reset", "cut-off", "other"],
)
async def test_each_failure_of_the_http_client_is_its_provider_error(
    failure: aiohttp.ClientError, error_class: type[Exception], message: str
) -> None:
    with aioresponses() as upstream:
        answer(upstream, exception=failure)
        with pytest.raises(error_class, match=f"^cheap-tier: {message}"):
            await ask(make_endpoint(MOCKED_URL))


async def test_an_upstream_that_does_not_accept_times_out_after_the_connect_timeout() -> None:
    with listener_that_never_accepts() as port:
        started = time.perf_counter()
        with pytest.raises(ProviderTimeout, match="connect timeout"):
            await ask(make_endpoint(f"http://127.0.0.1:{port}/v1", connect_timeout_s=0.2))

    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "base_url", ["ftp://127.0.0.1/v1", "http://[::1/v1", "http:///v1", "http://127.0.0.1:99999/v1"]
)
async def test_a_base_url_no_request_can_go_to_is_misconfigured(base_url: str) -> None:
    with pytest.raises(ProviderMisconfigured, match="base_url"):
        await ask(make_endpoint(base_url))


# Server-sent events, cut anywhere


def events_from(*pieces: bytes) -> list[bytes]:
    parser = ServerSentEvents()
    events = [event for piece in pieces for event in parser.feed(piece)]
    return [*events, *parser.finish()]


def test_events_split_anywhere_come_out_whole() -> None:
    stream = b'data: {"a": 1}\n\n: a comment\nevent: x\ndata: {"b": 2}\n\ndata: [DONE]\n\n'
    expected = [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]

    assert events_from(stream) == expected
    assert events_from(*(stream[i : i + 1] for i in range(len(stream)))) == expected


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"], ids=["crlf", "cr", "lf"])
def test_every_kind_of_line_end_ends_lines_even_split_across_pieces(newline: bytes) -> None:
    stream = b"data: one" + newline + newline + b"data: two" + newline + newline
    expected = [b"one", b"two"]

    assert events_from(stream) == expected
    assert events_from(*(stream[i : i + 1] for i in range(len(stream)))) == expected


def test_data_lines_of_one_event_are_joined_and_a_last_unterminated_event_is_kept() -> None:
    assert events_from(b"data: first\ndata:second\n\ndata: last") == [b"first\nsecond", b"last"]
