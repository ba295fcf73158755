"""OpenAICompatProvider against a real OpenAI-compatible server on loopback (testing.upstream),
and, for what that server can't be made to do (Retry-After, compression, hanging on one
connection only), a scripted raw TCP server."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from routing.engine.errors import (
    ProviderBadRequest,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.streaming import StreamDone
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Message, ProviderType
from routing.providers.openai_compat import OpenAICompatProvider, ServerSentEvents
from testing.upstream import UpstreamBehaviour, running_upstream
from tests.routing.test_transport import ServerConnection, keep_answering, listener_that_never_accepts, scripted_server

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
    monkeypatch.setenv("CASCADEOPS_TEST_UPSTREAM_KEY", "sk-test-123")
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url, credentials_env="CASCADEOPS_TEST_UPSTREAM_KEY"))

    assert upstream.last_headers["authorization"] == "Bearer sk-test-123"


async def test_it_sends_no_authorization_header_to_a_keyless_endpoint() -> None:
    with running_upstream() as upstream:
        await ask(make_endpoint(upstream.base_url))

    assert "authorization" not in upstream.last_headers


async def test_a_missing_credentials_variable_is_misconfigured_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CASCADEOPS_TEST_MISSING_KEY", raising=False)
    with running_upstream() as upstream, pytest.raises(ProviderMisconfigured, match="CASCADEOPS_TEST_MISSING_KEY"):
        await ask(make_endpoint(upstream.base_url, credentials_env="CASCADEOPS_TEST_MISSING_KEY"))

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
    with pytest.raises(ProviderUnavailable, match="ConnectError"):
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


async def test_it_leaves_a_client_it_was_given_open() -> None:
    async with httpx.AsyncClient() as client:
        with running_upstream() as upstream:
            provider = OpenAICompatProvider(make_endpoint(upstream.base_url), client=client)
            await provider.complete(CHAT, max_tokens=8)
            await provider.aclose()

        assert not client.is_closed


# The request on the wire, and the failures only a scripted server can produce

KEY_VARIABLE = "CASCADEOPS_TEST_UPSTREAM_KEY"


def completion_json(text: str = "42") -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    usage = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    return json.dumps({"object": "chat.completion", "model": "cheap", "choices": [choice], "usage": usage}).encode()


def http_response(body: bytes, *, status: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
    return head % (status, len(body), headers) + body


def header_lines(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The request line, and the headers by name."""
    request_line, *lines = head.split(b"\r\n")
    return request_line, dict(line.split(b": ", 1) for line in lines if line)


async def test_it_sends_the_request_line_and_the_endpoints_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "sk-test-123")
    async with scripted_server(keep_answering(http_response(completion_json()))) as server:
        provider = OpenAICompatProvider(make_endpoint(f"{server.url}/v1", credentials_env=KEY_VARIABLE))
        completions = [await provider.complete(CHAT, max_tokens=8) for _ in range(2)]
        await provider.aclose()

    assert [c.text for c in completions] == ["42", "42"]
    assert server.connections == 1  # the second went on the same connection: the first was framed right
    request_line, headers = header_lines(server.requests[1][1])
    assert request_line == b"POST /v1/chat/completions HTTP/1.1"
    assert headers[b"Host"] == server.url.removeprefix("http://").encode()
    assert headers[b"Authorization"] == b"Bearer sk-test-123"
    assert headers[b"Content-Type"] == b"application/json"
    assert headers[b"Accept"] == b"application/json"
    assert headers[b"Accept-Encoding"] == b"identity"
    assert int(headers[b"Content-Length"]) > 0


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


@pytest.mark.parametrize("transport", ["fast", "httpx"])
@pytest.mark.parametrize(
    ("header", "retry_after_s"),
    [
        (b"Retry-After: 7\r\n", 7.0),
        (b"retry-after-ms: 1500\r\nRetry-After: 2\r\n", 1.5),
        (b"Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", 0.0),
        (b"Retry-After: soon\r\n", None),
        (b"", None),
    ],
    ids=["seconds", "openai-milliseconds", "past-date", "garbage", "absent"],
)
async def test_throttling_carries_the_upstreams_retry_after(
    transport: str, header: bytes, retry_after_s: float | None
) -> None:
    body = b'{"error": {"message": "slow down"}}'
    throttled = http_response(body, status=b"429 Too Many Requests", headers=header)
    async with scripted_server(keep_answering(throttled)) as server:
        with pytest.raises(ProviderUnavailable, match="HTTP 429: slow down") as caught:
            await ask(make_endpoint(f"{server.url}/v1", options={"transport": transport}))

    assert caught.value.retry_after_s == retry_after_s


async def test_a_retry_after_date_is_the_seconds_until_then() -> None:
    in_an_hour = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True).encode()
    unavailable = http_response(b"busy", status=b"503 Service Unavailable", headers=b"Retry-After: %s\r\n" % in_an_hour)
    async with scripted_server(keep_answering(unavailable)) as server:
        with pytest.raises(ProviderUnavailable, match="HTTP 503: busy") as caught:
            await ask(make_endpoint(f"{server.url}/v1"))

    assert caught.value.retry_after_s is not None
    assert 3000 < caught.value.retry_after_s <= 3600


async def test_a_compressed_answer_it_did_not_ask_for_is_unavailable() -> None:
    compressed = http_response(gzip.compress(completion_json()), headers=b"Content-Encoding: gzip\r\n")
    async with scripted_server(keep_answering(compressed)) as server:
        with pytest.raises(ProviderUnavailable, match="gzip"):
            await ask(make_endpoint(f"{server.url}/v1"))


async def test_an_upstream_that_does_not_accept_times_out_after_the_connect_timeout() -> None:
    with listener_that_never_accepts() as port, pytest.raises(ProviderTimeout, match="ConnectTimeout"):
        await ask(make_endpoint(f"http://127.0.0.1:{port}/v1", connect_timeout_s=0.2))


@pytest.mark.parametrize(
    "base_url", ["ftp://127.0.0.1/v1", "http://[::1/v1", "http:///v1", "http://127.0.0.1:99999/v1"]
)
async def test_a_base_url_no_request_can_go_to_is_misconfigured(base_url: str) -> None:
    with pytest.raises(ProviderMisconfigured, match="base_url"):
        await ask(make_endpoint(base_url))


async def test_a_cancelled_call_gives_its_connection_back_for_the_next_one() -> None:
    async def hang_on_the_first_connection(conn: ServerConnection) -> None:
        if conn.index == 0:
            await conn.read_request()
            await asyncio.sleep(3600)
        await keep_answering(http_response(completion_json()))(conn)

    async with scripted_server(hang_on_the_first_connection) as server:
        # One connection, and a pool wait bounded by the read timeout: a lost slot fails, not hangs.
        endpoint = make_endpoint(f"{server.url}/v1", read_timeout_s=5, options={"max_connections": 1})
        provider = OpenAICompatProvider(endpoint)
        hanging = asyncio.create_task(provider.complete(CHAT, max_tokens=8))
        while not server.requests:
            await asyncio.sleep(0.01)
        hanging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hanging
        completion = await provider.complete(CHAT, max_tokens=8)
        await provider.aclose()

    assert completion.text == "42"
    assert server.connections == 2


def sse_response(*chunks: dict[str, Any]) -> bytes:
    body = b"".join(b"data: %s\n\n" % json.dumps(chunk).encode() for chunk in chunks) + b"data: [DONE]\n\n"
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_a_stream_read_to_its_done_event_leaves_the_connection_for_the_next_call() -> None:
    answer = sse_response(
        {"model": "cheap", "choices": [{"delta": {"content": "4"}, "finish_reason": None}]},
        {"model": "cheap", "choices": [{"delta": {"content": "2"}, "finish_reason": "stop"}]},
        {"model": "cheap", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1}},
    )
    async with scripted_server(keep_answering(answer)) as server:
        provider = OpenAICompatProvider(make_endpoint(f"{server.url}/v1"))
        completions = []
        for _ in range(2):
            async with contextlib.aclosing(provider.stream(CHAT, max_tokens=8)) as events:
                completions.extend([e.completion async for e in events if isinstance(e, StreamDone)])
        await provider.aclose()

    assert [(c.text, c.input_tokens, c.output_tokens) for c in completions] == [("42", 9, 1)] * 2
    assert header_lines(server.requests[0][1])[1][b"Accept"] == b"text/event-stream"
    assert server.connections == 1


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
