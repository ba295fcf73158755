"""Each provider's `stream`: OpenAI-compatible over real SSE on loopback, the replay provider, and
Bedrock's ConverseStream through botocore's Stubber. Also: refusals that carry billed usage."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import EventStreamError
from botocore.stub import Stubber

from routing.engine.errors import ProviderBadRequest, ProviderRefused, ProviderTimeout, ProviderUnavailable
from routing.engine.streaming import StreamDone, StreamEvent, StreamingProvider, TextDelta
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Message, ProviderType
from routing.providers.bedrock import BedrockProvider
from routing.providers.local import ReplayProvider, replay_prompts
from routing.providers.openai_compat import OpenAICompatProvider
from testing.sse_upstream import ANSWER, USAGE, running_sse_upstream
from testing.upstream import DEFAULT_ANSWER, UpstreamBehaviour, running_upstream

CHAT = ChatRequest(messages=(Message("system", "Answer with a number."), Message("user", "What is 6 x 7?")))


def openai_endpoint(base_url: str, model_id: str, **kwargs: Any) -> EndpointSnapshot:
    return EndpointSnapshot(
        id=1,
        name="strong-tier",
        provider_kind=ProviderType.OPENAI_COMPAT,
        model_id=model_id,
        input_price_per_m=Decimal("5"),
        output_price_per_m=Decimal("15"),
        base_url=base_url,
        **kwargs,
    )


async def events_of(stream: AsyncGenerator[StreamEvent, None]) -> list[StreamEvent]:
    async with aclosing(stream) as events:
        return [event async for event in events]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def done_of(events: list[StreamEvent]) -> Completion:
    last = events[-1]
    assert isinstance(last, StreamDone)
    return last.completion


# --- OpenAI-compatible -------------------------------------------------------------------


async def test_it_yields_each_delta_as_the_upstream_sends_it() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "gated"))
        async with aclosing(provider.stream(CHAT, max_tokens=64)) as stream:
            first = await anext(stream)
            # The upstream has sent one word and holds the rest until released.
            assert first == TextDelta("Forty-two")
            assert upstream.app.sent["gated"] == 1
            upstream.app.release()
            rest = [event async for event in stream]
        await provider.aclose()

    assert text_of([first, *rest]) == ANSWER
    assert len(rest) > 2


async def test_it_asks_for_a_stream_with_usage_and_reports_that_usage() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "plain"))
        events = await events_of(provider.stream(CHAT, max_tokens=64))
        await provider.aclose()

    assert upstream.app.last_request["stream"] is True
    assert upstream.app.last_request["stream_options"] == {"include_usage": True}
    assert upstream.app.last_request["max_tokens"] == 64
    completion = done_of(events)
    assert completion.text == text_of(events) == ANSWER
    assert (completion.input_tokens, completion.output_tokens) == (USAGE["prompt_tokens"], USAGE["completion_tokens"])
    assert completion.finish_reason == "stop"
    assert completion.model == "plain"


async def test_usage_is_estimated_when_the_upstream_sends_none() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "no-usage"))
        completion = done_of(await events_of(provider.stream(CHAT, max_tokens=64)))
        await provider.aclose()

    assert (completion.input_tokens, completion.output_tokens) == (
        estimate_prompt_tokens(CHAT),
        estimate_tokens(ANSWER),
    )


async def test_closing_the_stream_early_closes_the_upstream_connection_and_frees_it() -> None:
    with running_sse_upstream() as upstream:
        # One connection, and a wait for it bounded by the timeouts: a lost slot fails, not hangs.
        endpoint = openai_endpoint(upstream.base_url, "stall", read_timeout_s=2, options={"max_connections": 1})
        provider = OpenAICompatProvider(endpoint)
        stream = provider.stream(CHAT, max_tokens=64)
        assert await anext(stream) == TextDelta("Forty-two")
        await stream.aclose()

        assert await asyncio.to_thread(upstream.app.disconnected.wait, 10)
        async with aclosing(provider.stream(CHAT, max_tokens=64)) as second:
            assert await anext(second) == TextDelta("Forty-two")
        await provider.aclose()

    assert upstream.app.streams["stall"] == 2


async def test_cancelling_the_task_that_reads_a_stream_closes_the_upstream_connection() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "stall"))
        stream = provider.stream(CHAT, max_tokens=64)
        assert await anext(stream) == TextDelta("Forty-two")
        reading = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.05)  # waiting on the silent upstream
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading

        assert await asyncio.to_thread(upstream.app.disconnected.wait, 10)
        await provider.aclose()


async def test_closing_the_provider_closes_the_connection_of_a_stream_still_open() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "stall"))
        async with aclosing(provider.stream(CHAT, max_tokens=64)) as stream:
            assert await anext(stream) == TextDelta("Forty-two")
            await provider.aclose()

            assert await asyncio.to_thread(upstream.app.disconnected.wait, 10)


async def test_a_stream_read_to_its_done_event_leaves_the_connection_for_the_next_call() -> None:
    with running_upstream() as upstream:  # it records which connection each request came on
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "cheap"))
        first = done_of(await events_of(provider.stream(CHAT, max_tokens=8)))
        first_client = upstream.last_client
        second = done_of(await events_of(provider.stream(CHAT, max_tokens=8)))
        await provider.aclose()

    assert first.text == second.text == DEFAULT_ANSWER
    assert upstream.last_headers["accept"] == "text/event-stream"
    assert upstream.last_client == first_client


async def test_a_stream_that_stalls_past_the_read_timeout_times_out() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "stall", read_timeout_s=0.2))
        stream = provider.stream(CHAT, max_tokens=64)
        await anext(stream)
        with pytest.raises(ProviderTimeout):
            await anext(stream)
        await provider.aclose()


@pytest.mark.parametrize("model", ["end-early", "error-event"])
async def test_a_stream_that_breaks_off_is_unavailable(model: str) -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, model))
        with pytest.raises(ProviderUnavailable) as caught:
            await events_of(provider.stream(CHAT, max_tokens=64))
        await provider.aclose()

    assert "strong-tier" in str(caught.value)


async def test_a_filtered_stream_is_refused_with_the_usage_it_was_billed() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "refuse"))
        with pytest.raises(ProviderRefused) as caught:
            await events_of(provider.stream(CHAT, max_tokens=64))
        await provider.aclose()

    assert (caught.value.input_tokens, caught.value.output_tokens) == (17, 11)


async def test_an_error_status_fails_before_the_first_event() -> None:
    with running_sse_upstream() as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "fail-503"))
        with pytest.raises(ProviderUnavailable, match="HTTP 503"):
            await anext(provider.stream(CHAT, max_tokens=64))
        await provider.aclose()


async def test_an_unreachable_upstream_fails_before_the_first_event() -> None:
    provider = OpenAICompatProvider(openai_endpoint("http://127.0.0.1:9/v1", "plain"))
    with pytest.raises(ProviderUnavailable):
        await anext(provider.stream(CHAT, max_tokens=64))
    await provider.aclose()


async def test_a_whole_answer_that_was_filtered_is_refused_with_its_billed_usage() -> None:
    with running_upstream(UpstreamBehaviour(prompt_tokens=40, completion_tokens=9)) as upstream:
        provider = OpenAICompatProvider(openai_endpoint(upstream.base_url, "refuse"))
        with pytest.raises(ProviderRefused) as caught:
            await provider.complete(CHAT, max_tokens=64)
        await provider.aclose()

    assert (caught.value.input_tokens, caught.value.output_tokens) == (40, 9)


def test_every_provider_kind_can_stream() -> None:
    endpoint = openai_endpoint("http://127.0.0.1:9/v1", "x")
    assert isinstance(OpenAICompatProvider(endpoint), StreamingProvider)
    assert isinstance(ReplayProvider(endpoint), StreamingProvider)
    assert isinstance(BedrockProvider(endpoint), StreamingProvider)


# --- Replay ------------------------------------------------------------------------------


async def test_the_replay_provider_streams_its_recorded_answer_in_deltas() -> None:
    endpoint = EndpointSnapshot(
        id=3,
        name="replay-gpt-4",
        provider_kind=ProviderType.REPLAY,
        model_id="gpt-4",
        input_price_per_m=Decimal("10"),
        output_price_per_m=Decimal("30"),
        options={"latency_ms": 20},
    )
    chat = ChatRequest(messages=(Message("user", replay_prompts(1)[0]),))
    provider = ReplayProvider(endpoint)

    events = await events_of(provider.stream(chat, max_tokens=1024))
    whole = await provider.complete(chat, max_tokens=1024)

    assert len(events) > 3
    assert text_of(events) == whole.text
    streamed = done_of(events)
    assert (streamed.text, streamed.quality_label, streamed.output_tokens) == (
        whole.text,
        whole.quality_label,
        whole.output_tokens,
    )


# --- Bedrock -----------------------------------------------------------------------------

MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
EXPECTED_PARAMS = {
    "modelId": MODEL_ID,
    "messages": [{"role": "user", "content": [{"text": "What is 6 x 7?"}]}],
    "system": [{"text": "Answer with a number."}],
    "inferenceConfig": {"maxTokens": 64, "temperature": 0.0},
}


class StubEventStream:
    """What `converse_stream` returns in `stream`: events to iterate, and `close()`.

    With `hold_after`, the stream blocks after that many events until it is closed, as a
    real one blocks reading the socket while the model generates.
    """

    def __init__(self, events: list[dict[str, Any]], *, hold_after: int | None = None, error: Exception | None = None):
        self.events = events
        self.hold_after = hold_after
        self.error = error
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index, event in enumerate(self.events):
            if index == self.hold_after:
                self.closed.wait(30)
                return
            yield event
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed.set()


class EventStreamStubber(Stubber):
    """botocore's Stubber, taught ConverseStream's event stream.

    A `StubEventStream` stands in for botocore's `EventStream` (which only a live HTTP
    response can build); each of its events is validated against the service model's
    event shape, as strictly as the Stubber validates any other response.
    """

    def _validate_operation_response(self, operation_name: str, service_response: dict[str, Any]) -> None:
        stream = service_response.get("stream")
        if not isinstance(stream, StubEventStream):
            super()._validate_operation_response(operation_name, service_response)
            return
        operation = self.client.meta.service_model.operation_model(operation_name)
        event_shape = operation.output_shape.members["stream"]
        for event in stream.events:
            self._validate_response(event_shape, event)


def converse_events(*texts: str, stop_reason: str = "end_turn", **usage: int) -> list[dict[str, Any]]:
    return [
        {"messageStart": {"role": "assistant"}},
        *({"contentBlockDelta": {"delta": {"text": text}, "contentBlockIndex": 0}} for text in texts),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": stop_reason}},
        {
            "metadata": {
                "usage": {"inputTokens": 25, "outputTokens": 3, "totalTokens": 28, **usage},
                "metrics": {"latencyMs": 120},
            }
        },
    ]


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, EventStreamStubber]]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with EventStreamStubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def bedrock_provider(client: Any) -> BedrockProvider:
    endpoint = EndpointSnapshot(
        id=2,
        name="haiku-tier",
        provider_kind=ProviderType.BEDROCK,
        model_id=MODEL_ID,
        input_price_per_m=Decimal("0.25"),
        output_price_per_m=Decimal("1.25"),
    )
    return BedrockProvider(endpoint, client=client)


async def test_bedrock_streams_converse_deltas_and_reports_the_usage(bedrock) -> None:
    client, stubber = bedrock
    stubber.add_response(
        "converse_stream",
        {"stream": StubEventStream(converse_events("6 x 7 ", "= 42", cacheReadInputTokens=10))},
        EXPECTED_PARAMS,
    )
    provider = bedrock_provider(client)

    events = await events_of(provider.stream(CHAT, max_tokens=64))
    await provider.aclose()

    assert events[:2] == [TextDelta("6 x 7 "), TextDelta("= 42")]
    completion = done_of(events)
    assert (completion.text, completion.finish_reason) == ("6 x 7 = 42", "stop")
    assert (completion.input_tokens, completion.output_tokens, completion.cached_input_tokens) == (35, 3, 10)


async def test_closing_a_bedrock_stream_early_closes_the_event_stream(bedrock) -> None:
    client, stubber = bedrock
    events = StubEventStream(converse_events("6 x 7 ", "= 42"), hold_after=2)
    stubber.add_response("converse_stream", {"stream": events}, EXPECTED_PARAMS)
    provider = bedrock_provider(client)

    stream = provider.stream(CHAT, max_tokens=64)
    assert await anext(stream) == TextDelta("6 x 7 ")
    await stream.aclose()

    assert events.closed.is_set()  # closing it is what wakes the reading thread
    await provider.aclose()


async def test_a_bedrock_stream_error_after_the_first_delta_is_raised_as_its_provider_error(bedrock) -> None:
    client, stubber = bedrock
    throttled = EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow down"}}, "ConverseStream")
    events = StubEventStream(converse_events("6 x 7 ")[:2], error=throttled)
    stubber.add_response("converse_stream", {"stream": events}, EXPECTED_PARAMS)
    provider = bedrock_provider(client)

    stream = provider.stream(CHAT, max_tokens=64)
    assert await anext(stream) == TextDelta("6 x 7 ")
    with pytest.raises(ProviderUnavailable, match="slow down"):
        await anext(stream)
    await provider.aclose()


async def test_a_bedrock_error_before_the_stream_is_raised_before_the_first_event(bedrock) -> None:
    client, stubber = bedrock
    stubber.add_client_error("converse_stream", "ValidationException", "too long", 400)
    provider = bedrock_provider(client)

    with pytest.raises(ProviderBadRequest, match="too long"):
        await anext(provider.stream(CHAT, max_tokens=64))
    await provider.aclose()


async def test_a_guardrail_intervention_in_a_bedrock_stream_is_refused_with_its_usage(bedrock) -> None:
    client, stubber = bedrock
    events = StubEventStream(converse_events(stop_reason="guardrail_intervened"))
    stubber.add_response("converse_stream", {"stream": events}, EXPECTED_PARAMS)
    provider = bedrock_provider(client)

    with pytest.raises(ProviderRefused) as caught:
        await events_of(provider.stream(CHAT, max_tokens=64))
    await provider.aclose()

    assert (caught.value.input_tokens, caught.value.output_tokens) == (25, 3)


async def test_a_whole_bedrock_answer_that_was_filtered_is_refused_with_its_usage(bedrock) -> None:
    client, stubber = bedrock
    response = {
        "output": {"message": {"role": "assistant", "content": [{"text": ""}]}},
        "stopReason": "content_filtered",
        "usage": {"inputTokens": 25, "outputTokens": 0, "totalTokens": 25},
        "metrics": {"latencyMs": 10},
    }
    stubber.add_response("converse", response, EXPECTED_PARAMS)
    provider = bedrock_provider(client)

    with pytest.raises(ProviderRefused) as caught:
        await provider.complete(CHAT, max_tokens=64)
    await provider.aclose()

    assert caught.value.input_tokens == 25
