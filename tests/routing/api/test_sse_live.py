"""`stream: true` through the cascade, with the official `openai` client against a live gateway.

Only the model providers are stood in for: the demo's replay models, and a local
OpenAI-compatible upstream that streams on cue (testing.sse_upstream).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.budgets.store import budget_rules_load, budget_store
from billing.models import Budget
from routing.api.openai.sse import stream_route
from routing.config.snapshots import config_cache
from routing.engine.types import ChatRequest, Message
from routing.models import RequestRecord, hash_api_key
from routing.providers.local import replay_prompts
from testing.factories import make_key, make_policy, openai_endpoint, replay_endpoints
from testing.sse_upstream import ANSWER, SSEUpstream, running_sse_upstream
from tests.conftest import flush_records

pytestmark = pytest.mark.live

# Mixtral's recorded answer to the first is right and scores well; to the second it is
# wrong, hedged, and scores far below the 0.9 threshold (see test_live_openai).
MIXTRAL_RIGHT = "Janet’s ducks lay 16 eggs per day."
MIXTRAL_WRONG = "Lisa and Peter are selling chocolate bars door to door."
RECORD_WAIT_S = 10.0


def prompt_starting(prefix: str) -> str:
    return next(p for p in replay_prompts() if p.startswith(prefix))


def ask(prefix: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt_starting(prefix)}]


@pytest.fixture
def upstream() -> Iterator[SSEUpstream]:
    with running_sse_upstream() as server:
        yield server


def escalating_client(live_gateway, upstream: SSEUpstream, strong_model: str, **strong: object) -> openai.OpenAI:
    """Replayed Mixtral first (threshold 0.9), then the streaming upstream as the strong tier."""
    mixtral, _ = replay_endpoints()
    streamer = openai_endpoint(f"upstream-{strong_model}", upstream.base_url, strong_model, **strong)
    _, key = make_key(make_policy("streaming", [(mixtral, 0.9), (streamer, 1.0)]))
    return openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)


def the_record(request_id: str) -> RequestRecord:
    """The request's record, once the gateway has made it durable (it may finish after the client)."""
    wait_for_records()
    return RequestRecord.objects.get(id=request_id)


def wait_for_records() -> int:
    """Flush until the gateway has buffered something; how many records were read."""
    deadline = time.monotonic() + RECORD_WAIT_S
    while (read := flush_records()) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return read


def test_an_accepted_cheap_answer_is_scored_then_streamed_in_chunks_with_usage(demo_client):
    raw = demo_client.chat.completions.with_raw_response.create(
        model="demo", messages=ask(MIXTRAL_RIGHT), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())

    assert raw.headers["content-type"] == "text/event-stream"
    assert raw.headers["x-cascadeops-stream"] == "scored"
    assert (raw.headers["x-cascadeops-model"], raw.headers["x-cascadeops-tier"]) == ("replay-mixtral", "0")
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 1
    assert "".join(content).strip().endswith("#### 18")
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + usage.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {f"chatcmpl-{raw.headers['x-cascadeops-request-id'].replace('-', '')}"}
    record = the_record(raw.headers["x-cascadeops-request-id"])
    assert (record.status, record.streamed, record.final_model) == ("answered", True, "replay-mixtral")
    assert record.output_tokens == usage.usage.completion_tokens


def test_the_wire_format_is_openai_server_sent_events_ending_in_done(demo_client, live_gateway):
    body = {"model": "demo", "messages": ask(MIXTRAL_RIGHT), "stream": True}
    headers = {"Authorization": f"Bearer {demo_client.api_key}"}
    with httpx.stream("POST", f"{live_gateway.url}/v1/chat/completions", json=body, headers=headers) as response:
        lines = [line for line in response.iter_lines() if line]

    assert response.headers["cache-control"].startswith("no-cache")
    assert response.headers["x-cascadeops-policy"] == "demo@1"
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert '"finish_reason":"stop"' in lines[-2]
    assert '"usage"' not in "".join(lines)  # not asked for


def test_an_escalation_streams_the_strong_tier_as_it_generates(live_gateway, upstream):
    client = escalating_client(live_gateway, upstream, "gated")

    raw = client.chat.completions.with_raw_response.create(
        model="streaming", messages=ask(MIXTRAL_WRONG), stream=True, stream_options={"include_usage": True}
    )
    chunks = iter(raw.parse())
    assert next(chunks).choices[0].delta.role == "assistant"
    first = next(chunks)
    # The upstream has sent one word and holds the rest until released: it reached the
    # client through the gateway before the strong tier finished.
    assert first.choices[0].delta.content == "Forty-two"
    assert upstream.app.sent["gated"] == 1
    upstream.app.release()
    rest = list(chunks)

    assert raw.headers["x-cascadeops-stream"] == "live"
    assert raw.headers["x-cascadeops-escalated"] == "true"
    assert raw.headers["x-cascadeops-model"] == "upstream-gated"
    text = first.choices[0].delta.content + "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == ANSWER
    assert rest[-1].usage is not None and rest[-1].usage.completion_tokens == 11
    record = the_record(raw.headers["x-cascadeops-request-id"])
    attempts = list(record.attempts.order_by("position"))
    assert [(a.model, a.outcome) for a in attempts] == [("replay-mixtral", "escalated"), ("upstream-gated", "accepted")]
    assert (record.status, record.streamed) == ("answered", True)
    assert record.cost == sum((a.cost for a in attempts), Decimal(0)) > 0


def test_when_every_tier_fails_before_the_first_byte_the_client_gets_a_json_error(live_gateway, upstream):
    first = openai_endpoint("broken-a", upstream.base_url, "fail-500")
    second = openai_endpoint("broken-b", upstream.base_url, "fail-503")
    _, key = make_key(make_policy("all-broken", [(first, 0.5), (second, 1.0)]))
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="all-broken", messages=[{"role": "user", "content": "hi"}], stream=True)

    assert caught.value.status_code == 502
    assert caught.value.code == "all_tiers_failed"
    record = the_record(caught.value.response.headers["x-cascadeops-request-id"])
    assert (record.status, record.streamed, record.attempts.count()) == ("failed", True, 2)


def test_a_tier_that_fails_mid_stream_ends_the_stream_with_an_error_event(live_gateway, upstream):
    client = escalating_client(live_gateway, upstream, "end-early")

    raw = client.chat.completions.with_raw_response.create(model="streaming", messages=ask(MIXTRAL_WRONG), stream=True)
    chunks = iter(raw.parse())
    next(chunks)
    assert next(chunks).choices[0].delta.content == "Forty-two"
    with pytest.raises(openai.APIError) as caught:
        next(chunks)

    assert "cut off" in caught.value.message and "upstream-end-early" in caught.value.message
    record = the_record(raw.headers["x-cascadeops-request-id"])
    assert (record.status, record.streamed) == ("failed", True)
    failed = record.attempts.get(model="upstream-end-early")
    assert (failed.outcome, failed.error_kind) == ("failed", "unavailable")
    assert failed.cost > 0  # the prompt and the word it streamed were paid for


def test_a_client_that_goes_away_mid_stream_cancels_the_upstream_and_is_recorded_once(live_gateway, upstream):
    client = escalating_client(live_gateway, upstream, "stall")

    raw = client.chat.completions.with_raw_response.create(model="streaming", messages=ask(MIXTRAL_WRONG), stream=True)
    stream = raw.parse()
    chunks = iter(stream)
    next(chunks)
    assert next(chunks).choices[0].delta.content == "Forty-two"
    stream.close()

    assert upstream.app.disconnected.wait(RECORD_WAIT_S), "the gateway did not close the upstream stream"
    assert wait_for_records() == 1
    record = RequestRecord.objects.get(id=raw.headers["x-cascadeops-request-id"])
    assert (record.status, record.streamed) == ("cancelled", True)
    attempts = list(record.attempts.order_by("position"))
    assert [(a.model, a.outcome, a.error_kind) for a in attempts] == [
        ("replay-mixtral", "escalated", ""),
        ("upstream-stall", "failed", "cancelled"),
    ]
    assert attempts[1].cost > 0
    assert record.cost == attempts[0].cost + attempts[1].cost
    assert flush_records() == 0
    assert RequestRecord.objects.count() == 1


def test_the_budget_hold_lasts_the_whole_stream_and_settles_to_its_cost(live_gateway, upstream, budget_keys_cleared):
    Budget.objects.create(name="everything", limit=Decimal("100"))
    rules = budget_rules_load()

    def held_and_spent() -> tuple[Decimal, Decimal]:
        usage = async_to_sync(budget_store().usage)(rules, timezone.now())[0]
        return usage.held, usage.spent

    client = escalating_client(live_gateway, upstream, "gated")
    raw = client.chat.completions.with_raw_response.create(model="streaming", messages=ask(MIXTRAL_WRONG), stream=True)
    chunks = iter(raw.parse())
    next(chunks)
    next(chunks)
    held, _ = held_and_spent()
    assert held > 0  # the worst case of both tiers, while the strong one streams
    upstream.app.release()
    list(chunks)

    record = the_record(raw.headers["x-cascadeops-request-id"])
    held, spent = held_and_spent()
    assert held == 0
    # Exact in the database; Redis counts micro-dollars, rounded up.
    assert record.cost <= spent <= record.cost + Decimal("0.000001")


def test_a_streamed_answer_is_cached_and_served_to_streamed_and_whole_requests_alike(live_gateway):
    mixtral, _ = replay_endpoints()
    _, key = make_key(make_policy("cached", [(mixtral, 0.0)], cache_ttl_s=300))
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0)
    messages = ask(MIXTRAL_RIGHT)

    def streamed() -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(model="cached", messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        return raw.headers["x-cascadeops-cache"], text

    first_status, first_text = streamed()
    second_status, second_text = streamed()
    whole = client.chat.completions.with_raw_response.create(model="cached", messages=messages)

    assert (first_status, second_status, whole.headers["x-cascadeops-cache"]) == ("miss", "hit-exact", "hit-exact")
    assert second_text == first_text == whole.parse().choices[0].message.content
    wait_for_records()
    hit = RequestRecord.objects.get(cache="exact", streamed=True)
    assert (hit.status, hit.cost) == ("answered", Decimal(0))


def test_a_client_that_goes_away_before_the_first_byte_is_recorded_as_cancelled(live_gateway, upstream):
    # The cheap tier is called whole (it may still be escalated) and takes its time.
    slow = openai_endpoint("upstream-slow", upstream.base_url, "slow-5000")
    streamer = openai_endpoint("upstream-plain", upstream.base_url, "plain")
    _, key = make_key(make_policy("slow-first", [(slow, 0.9), (streamer, 1.0)]))
    client = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key=key, max_retries=0, timeout=0.5)

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="slow-first", messages=[{"role": "user", "content": "hi"}], stream=True)

    assert wait_for_records() == 1
    record = RequestRecord.objects.get()
    assert (record.status, record.streamed) == ("cancelled", True)
    in_flight = record.attempts.get()
    assert (in_flight.model, in_flight.outcome, in_flight.error_kind) == ("upstream-slow", "failed", "cancelled")
    assert in_flight.cost > 0  # a whole call cut off is counted at its worst case
    assert upstream.app.streams["plain"] == 0


def test_a_stream_past_the_deadline_ends_with_an_error_event_and_pays_for_what_it_streamed(
    live_gateway, upstream, monkeypatch
):
    # The deadline keeps a stream from outliving its budget hold.
    monkeypatch.setattr("routing.api.openai.sse.CASCADE_DEADLINE_S", 1.0)
    client = escalating_client(live_gateway, upstream, "stall")

    raw = client.chat.completions.with_raw_response.create(model="streaming", messages=ask(MIXTRAL_WRONG), stream=True)
    chunks = iter(raw.parse())
    next(chunks)
    assert next(chunks).choices[0].delta.content == "Forty-two"
    with pytest.raises(openai.APIError) as caught:
        next(chunks)

    assert "ran past 1.0 s" in caught.value.message
    assert upstream.app.disconnected.wait(RECORD_WAIT_S)
    record = the_record(raw.headers["x-cascadeops-request-id"])
    assert (record.status, record.streamed) == ("failed", True)
    cut_off = record.attempts.get(model="upstream-stall")
    assert (cut_off.error_kind, cut_off.outcome) == ("timeout", "failed")
    assert cut_off.cost > 0


def test_a_client_that_stops_reading_is_cut_off_and_its_hold_settled_before_it_expires(
    transactional_db, upstream, monkeypatch, budget_keys_cleared
):
    # The body is driven by hand, as the server drives it: reading the first chunks, then
    # nothing, parks it at a `yield`, as a client that stopped reading does.
    monkeypatch.setattr("routing.api.openai.sse.CASCADE_DEADLINE_S", 1.0)
    monkeypatch.setattr("routing.api.openai.sse.STALLED_READER_GRACE_S", 0.2)
    Budget.objects.create(name="everything", limit=Decimal("100"))
    rules = budget_rules_load()
    mixtral, _ = replay_endpoints()
    streamer = openai_endpoint("upstream-stall", upstream.base_url, "stall")
    _, plaintext = make_key(make_policy("streaming", [(mixtral, 0.9), (streamer, 1.0)]))

    async def stop_reading_after_the_first_word() -> tuple[str, list[bytes], Decimal, list[bytes]]:
        await config_cache.ensure_fresh()
        key = await config_cache.key(hash_api_key(plaintext))
        assert key is not None
        chat = ChatRequest(messages=(Message(role="user", content=prompt_starting(MIXTRAL_WRONG)),), stream=True)
        response = await stream_route(key, config_cache.policies_by_name["streaming"], chat)
        body = aiter(response.streaming_content)
        read = [await anext(body), await anext(body)]
        # Past the deadline and its grace (1.2 s), without reading: the hold is settled.
        for _ in range(100):
            await asyncio.sleep(0.1)
            held_while_parked = (await budget_store().usage(rules, timezone.now()))[0].held
            if held_while_parked == 0:
                break
        rest = [chunk async for chunk in body]
        await response.aclose()
        return response["x-cascadeops-request-id"], read, held_while_parked, rest

    request_id, read, held_while_parked, rest = async_to_sync(stop_reading_after_the_first_word)()

    assert b"Forty-two" in read[1]
    assert held_while_parked == 0  # settled while the client still was not reading
    assert upstream.app.disconnected.is_set()  # and the upstream call cancelled then too
    assert len(rest) == 1 and b"ran past 1.0 s" in rest[0]  # told, once it reads again
    record = the_record(request_id)
    assert (record.status, record.streamed) == ("failed", True)
    assert record.attempts.get(model="upstream-stall").error_kind == "timeout"
    spent = async_to_sync(budget_store().usage)(rules, timezone.now())[0].spent
    assert record.cost <= spent <= record.cost + Decimal("0.000001")
    assert not RequestRecord.objects.filter(cache="exact").exists()
