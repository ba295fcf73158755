"""The chaos test's tools: the fault-injecting upstream and the load generator's parser."""

from __future__ import annotations

import json

import httpx
import pytest

from bench.loadgen import ResponseParser
from testing.upstream import UpstreamBehaviour, running_upstream

CHAT = {"model": "cheap", "messages": [{"role": "user", "content": "hi"}]}


def test_it_injects_errors_with_the_configured_statuses():
    behaviour = UpstreamBehaviour(error_rate=1.0, error_statuses=(500, 503))
    with running_upstream(behaviour) as upstream:
        statuses = {httpx.post(f"{upstream.base_url}/chat/completions", json=CHAT).status_code for _ in range(40)}
        stats = httpx.get(upstream.base_url.removesuffix("/v1") + "/_chaos/stats").json()
    assert statuses == {500, 503}
    assert stats == {"cheap": {"error": 40}}


def test_it_hangs_a_timeout_until_the_client_gives_up():
    with running_upstream(UpstreamBehaviour(timeout_rate=1.0)) as upstream, pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{upstream.base_url}/chat/completions", json=CHAT, timeout=0.3)


def test_an_outage_fails_one_model_until_it_ends():
    with running_upstream() as upstream:
        root = upstream.base_url.removesuffix("/v1")
        httpx.post(f"{root}/_chaos/outage", json={"model": "cheap", "seconds": 30})
        cheap = httpx.post(f"{upstream.base_url}/chat/completions", json=CHAT)
        strong = httpx.post(f"{upstream.base_url}/chat/completions", json={**CHAT, "model": "strong"})
        httpx.post(f"{root}/_chaos/outage", json={"model": "cheap", "seconds": 0})
        after = httpx.post(f"{upstream.base_url}/chat/completions", json=CHAT)
    assert (cheap.status_code, strong.status_code, after.status_code) == (503, 200, 200)


def test_it_streams_server_sent_events_ending_in_done_with_usage():
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with running_upstream(UpstreamBehaviour(answer="four and two")) as upstream:
        response = httpx.post(f"{upstream.base_url}/chat/completions", json=request)
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    chunks = [json.loads(e) for e in events[:-1]]
    assert response.headers["content-type"] == "text/event-stream"
    assert events[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "four and two"
    assert chunks[-1]["usage"]["total_tokens"] == 26


def test_the_load_generator_parses_chunked_and_sized_responses_split_anywhere():
    sized = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-request-id: abc\r\n\r\nhello"
    chunked = b"HTTP/1.1 502 Bad Gateway\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    stream = sized + chunked
    for cut in range(1, len(stream)):
        parser = ResponseParser()
        responses = [r for r in (parser.feed(stream[:cut]), parser.feed(stream[cut:])) if r is not None]
        while (more := parser.next_response()) is not None:
            responses.append(more)
        assert [(r.status, r.body) for r in responses] == [(200, b"hello"), (502, b"abcde")], cut
    assert responses[0].header("X-Request-Id") == "abc"
