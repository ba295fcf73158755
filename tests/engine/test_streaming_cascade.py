"""CascadeStream: the cascade's decisions, delivered as a stream (no HTTP, no database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import replace
from decimal import Decimal

import pytest

from routing.engine.cascade import run_cascade
from routing.engine.costing import attempt_cost
from routing.engine.errors import ProviderRefused, ProviderUnavailable
from routing.engine.streaming import (
    Answering,
    CascadeEvent,
    CascadeStream,
    StreamDone,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    open_stream,
    text_chunks,
)
from routing.engine.tokens import estimate_tokens, max_prompt_tokens
from routing.engine.types import ChatRequest, Completion, EndpointSnapshot, Outcome, PolicySnapshot
from testing.fakes import FakeClock, FakeProvider, FixedScorer, chat, completion, policy, tier

CHEAP = completion("The answer is 41, probably.", input_tokens=20, output_tokens=8)
STRONG = completion("The answer is 42.", input_tokens=20, output_tokens=5)
SCORES = {CHEAP.text: 0.2, STRONG.text: 0.9}


class FakeStreamingProvider:
    """Streams a script: text deltas, then the completion (or an error at a given point).

    `gate` (an asyncio.Event), when set, holds the stream after its first delta until the
    test lets it go, so a test can act while the stream is half-way.
    """

    def __init__(
        self,
        endpoint: EndpointSnapshot,
        deltas: Sequence[str],
        done: Completion | None = None,
        *,
        fail_at: int | None = None,
        error: Exception | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.deltas = deltas
        self.done = done or completion("".join(deltas))
        self.fail_at = fail_at
        self.error = error or ProviderUnavailable("upstream went away")
        self.gate = gate
        self.streams = 0
        self.closed = 0
        self.finished = 0

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        raise AssertionError("a live tier is streamed, not completed")

    async def stream(self, chat: ChatRequest, *, max_tokens: int) -> AsyncGenerator[StreamEvent, None]:
        self.streams += 1
        try:
            for i, delta in enumerate(self.deltas):
                if i == self.fail_at:
                    raise self.error
                if i == 1 and self.gate is not None:
                    await self.gate.wait()
                yield TextDelta(delta)
            if self.fail_at == len(self.deltas):
                raise self.error
            self.finished += 1
            yield StreamDone(self.done)
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        return None


async def collect(stream: CascadeStream) -> list[CascadeEvent]:
    async with aclosing(stream.events()) as events:
        return [event async for event in events]


def text_of(events: Sequence[CascadeEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def two_tiers() -> PolicySnapshot:
    return policy(tier(0, 0.7), tier(1, 0.7))


def streaming_strong(p: PolicySnapshot, **kwargs: object) -> FakeStreamingProvider:
    return FakeStreamingProvider(p.tiers[1].endpoint, ["The answer ", "is 42."], STRONG, **kwargs)  # type: ignore[arg-type]


async def test_an_accepted_cheap_answer_is_scored_then_sent_in_chunks():
    p = two_tiers()
    cheap = FakeProvider(p.tiers[0].endpoint, completion("Paris is the capital of France, of course."))
    strong = streaming_strong(p)
    stream = CascadeStream(chat(), p, {1: cheap, 2: strong}, FixedScorer({}, default=0.9))

    events = await collect(stream)

    assert events[0] == Answering(tier=0, model="model-1", live=False)
    assert text_of(events) == "Paris is the capital of France, of course."
    assert len(events) > 2  # more than one chunk
    assert strong.streams == 0
    result = stream.result()
    assert [a.outcome for a in result.attempts] == [Outcome.ACCEPTED]
    assert result.completion is not None and result.completion.text == text_of(events)


async def test_an_escalation_streams_the_strong_tier_live():
    p = two_tiers()
    cheap = FakeProvider(p.tiers[0].endpoint, CHEAP)
    strong = streaming_strong(p)
    stream = CascadeStream(chat(), p, {1: cheap, 2: strong}, FixedScorer(SCORES))

    events = await collect(stream)

    assert events == [
        Answering(tier=1, model="model-2", live=True),
        TextDelta("The answer "),
        TextDelta("is 42."),
    ]
    result = stream.result()
    assert [(a.tier, a.outcome) for a in result.attempts] == [(0, Outcome.ESCALATED), (1, Outcome.ACCEPTED)]
    assert result.attempts[1].score == 0.9
    assert result.completion == STRONG
    assert strong.finished == 1 and strong.closed == 1


async def test_it_records_what_run_cascade_records():
    p = two_tiers()
    cheap, strong = FakeProvider(p.tiers[0].endpoint, CHEAP), FakeProvider(p.tiers[1].endpoint, STRONG)
    providers = {1: cheap, 2: strong}

    stream = CascadeStream(chat(), p, providers, FixedScorer(SCORES))
    await collect(stream)
    expected = await run_cascade(chat(), p, providers, FixedScorer(SCORES))

    def costed(result):  # latencies differ between two runs
        return [replace(a, latency_ms=0.0) for a in result.attempts]

    assert costed(stream.result()) == costed(expected)
    assert stream.result().completion == expected.completion
    assert stream.task == expected.task


async def test_a_provider_that_cannot_stream_is_sent_in_chunks_of_its_whole_answer():
    p = two_tiers()
    cheap, strong = FakeProvider(p.tiers[0].endpoint, CHEAP), FakeProvider(p.tiers[1].endpoint, STRONG)
    stream = CascadeStream(chat(), p, {1: cheap, 2: strong}, FixedScorer(SCORES))

    events = await collect(stream)

    assert events[0] == Answering(tier=1, model="model-2", live=True)
    assert text_of(events) == STRONG.text


async def test_a_failed_cheap_tier_falls_through_to_the_live_tier():
    p = two_tiers()
    cheap = FakeProvider(p.tiers[0].endpoint, ProviderUnavailable("down"))
    strong = streaming_strong(p)
    stream = CascadeStream(chat(), p, {1: cheap, 2: strong}, FixedScorer(SCORES))

    events = await collect(stream)

    assert events[0].live is True  # type: ignore[union-attr]
    assert [(a.outcome, a.error_kind) for a in stream.result().attempts] == [
        (Outcome.FAILED, "unavailable"),
        (Outcome.ACCEPTED, ""),
    ]


async def test_a_single_tier_policy_and_a_budget_that_forbids_escalation_stream_the_first_tier():
    single = policy(tier(0, 0.99))
    provider = FakeStreamingProvider(single.tiers[0].endpoint, ["a ", "b"])
    events = await collect(CascadeStream(chat(), single, {1: provider}, FixedScorer({}, default=0.1)))
    assert events[0] == Answering(tier=0, model="model-1", live=True)

    p = two_tiers()
    cheap = FakeStreamingProvider(p.tiers[0].endpoint, ["x ", "y"])
    stream = CascadeStream(chat(), p, {1: cheap}, FixedScorer({}, default=0.1), allow_escalation=False)
    events = await collect(stream)
    assert events[0] == Answering(tier=0, model="model-1", live=True)
    assert [a.outcome for a in stream.result().attempts] == [Outcome.ACCEPTED]


async def test_max_escalations_makes_the_next_tier_the_live_one():
    p = policy(tier(0, 0.7), tier(1, 0.7), tier(2, 0.7), max_escalations=1)
    cheap = FakeProvider(p.tiers[0].endpoint, CHEAP)
    middle = FakeStreamingProvider(p.tiers[1].endpoint, ["mid"], CHEAP)
    top = FakeStreamingProvider(p.tiers[2].endpoint, ["top"])
    stream = CascadeStream(chat(), p, {1: cheap, 2: middle, 3: top}, FixedScorer(SCORES))

    events = await collect(stream)

    assert events[0] == Answering(tier=1, model="model-2", live=True)
    assert top.streams == 0


async def test_a_live_tier_that_fails_before_its_first_delta_falls_back_to_the_answer_in_hand():
    p = two_tiers()
    cheap = FakeProvider(p.tiers[0].endpoint, CHEAP)
    strong = streaming_strong(p, fail_at=0)
    stream = CascadeStream(chat(), p, {1: cheap, 2: strong}, FixedScorer(SCORES))

    events = await collect(stream)

    assert events[0] == Answering(tier=0, model="model-1", live=False)
    assert text_of(events) == CHEAP.text
    assert [(a.outcome, a.error_kind) for a in stream.result().attempts] == [
        (Outcome.ACCEPTED, ""),
        (Outcome.FAILED, "unavailable"),
    ]


async def test_when_every_tier_fails_there_are_no_events():
    p = two_tiers()
    cheap = FakeProvider(p.tiers[0].endpoint, ProviderUnavailable("down"))
    strong = streaming_strong(p, fail_at=0)
    stream = CascadeStream(chat(), p, {1: cheap, 2: strong}, FixedScorer(SCORES))

    assert await collect(stream) == []
    assert not stream.result().answered
    assert len(stream.result().attempts) == 2


async def test_a_failure_after_the_first_delta_interrupts_the_stream_and_bills_what_was_streamed():
    p = two_tiers()
    cheap = FakeProvider(p.tiers[0].endpoint, CHEAP)
    strong = streaming_strong(p, fail_at=1)
    stream = CascadeStream(chat(), p, {1: cheap, 2: strong}, FixedScorer(SCORES))
    seen: list[CascadeEvent] = []

    with pytest.raises(StreamInterrupted) as caught:
        async with aclosing(stream.events()) as events:
            async for event in events:
                seen.append(event)

    assert text_of(seen) == "The answer "
    result = stream.result()
    assert result.completion is None  # half an answer is not an answer
    failed = result.attempts[1]
    assert caught.value.attempt == failed
    assert (failed.outcome, failed.error_kind) == (Outcome.FAILED, "unavailable")
    assert (failed.input_tokens, failed.output_tokens) == (max_prompt_tokens(chat()), estimate_tokens("The answer "))
    assert failed.cost == attempt_cost(p.tiers[1].endpoint, failed.input_tokens, failed.output_tokens) > 0
    assert result.cost == result.attempts[0].cost + failed.cost


async def test_a_refusal_mid_stream_is_billed_at_the_usage_the_provider_reported():
    p = two_tiers()
    refusal = ProviderRefused("filtered", input_tokens=30, output_tokens=3)
    strong = streaming_strong(p, fail_at=2, error=refusal)
    stream = CascadeStream(chat(), p, {1: FakeProvider(p.tiers[0].endpoint, CHEAP), 2: strong}, FixedScorer(SCORES))

    with pytest.raises(StreamInterrupted):
        await collect(stream)

    failed = stream.result().attempts[1]
    assert (failed.error_kind, failed.input_tokens, failed.output_tokens) == ("refused", 30, 3)


async def test_closing_the_stream_half_way_closes_the_providers_stream_and_bills_what_was_streamed():
    p = two_tiers()
    gate = asyncio.Event()
    strong = streaming_strong(p, gate=gate)
    stream = CascadeStream(chat(), p, {1: FakeProvider(p.tiers[0].endpoint, CHEAP), 2: strong}, FixedScorer(SCORES))

    events = stream.events()
    assert isinstance(await anext(events), Answering)
    assert await anext(events) == TextDelta("The answer ")
    await events.aclose()  # what the HTTP side does when its client goes away

    assert strong.closed == 1 and strong.finished == 0
    result = stream.interrupted_result(reason="the client went away", kind="cancelled")
    cancelled = result.attempts[1]
    assert (cancelled.outcome, cancelled.error_kind, cancelled.error) == (
        Outcome.FAILED,
        "cancelled",
        "the client went away",
    )
    assert cancelled.output_tokens == estimate_tokens("The answer ")
    assert result.completion is None


async def test_cancelling_while_the_live_tier_waits_for_more_closes_its_stream():
    p = two_tiers()
    gate = asyncio.Event()
    strong = streaming_strong(p, gate=gate)
    stream = CascadeStream(chat(), p, {1: FakeProvider(p.tiers[0].endpoint, CHEAP), 2: strong}, FixedScorer(SCORES))
    started = asyncio.Event()

    async def consume() -> None:
        async with aclosing(stream.events()) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert strong.closed == 1
    assert stream.interrupted_result(reason="gone", kind="cancelled").attempts[1].error_kind == "cancelled"


async def test_an_interruption_during_a_whole_call_counts_that_call_at_its_worst_case():
    p = two_tiers()
    clock = FakeClock()

    class Hanging(FakeProvider):
        async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
            await asyncio.sleep(3600)
            raise AssertionError

    stream = CascadeStream(chat(), p, {1: Hanging(p.tiers[0].endpoint, CHEAP)}, FixedScorer(SCORES), clock=clock)
    task = asyncio.create_task(collect(stream))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    in_flight = stream.interrupted_result(reason="gone", kind="cancelled").attempts[0]
    assert (in_flight.tier, in_flight.error_kind) == (0, "cancelled")
    assert in_flight.output_tokens == p.tiers[0].endpoint.max_tokens
    assert in_flight.cost > Decimal(0)


async def test_a_stream_that_stalls_longer_than_the_read_timeout_is_interrupted_as_a_timeout():
    p = two_tiers()
    p = replace(p, tiers=(p.tiers[0], replace(p.tiers[1], endpoint=replace(p.tiers[1].endpoint, read_timeout_s=0.05))))
    strong = FakeStreamingProvider(p.tiers[1].endpoint, ["a", "b"], gate=asyncio.Event())  # never set
    stream = CascadeStream(chat(), p, {1: FakeProvider(p.tiers[0].endpoint, CHEAP), 2: strong}, FixedScorer(SCORES))

    with pytest.raises(StreamInterrupted):
        await collect(stream)

    assert stream.result().attempts[1].error_kind == "timeout"
    assert strong.closed == 1


async def test_open_stream_chunks_a_whole_answer():
    provider = FakeProvider(tier(0).endpoint, STRONG)
    events = [e async for e in open_stream(provider, chat(), max_tokens=10)]
    assert events[-1] == StreamDone(STRONG)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == STRONG.text


@pytest.mark.parametrize("text", ["", "one", "  leading and trailing  ", "many words " * 20, "line\n\nbreaks\t tab"])
def test_text_chunks_join_back_to_the_text(text):
    pieces = list(text_chunks(text, size=8))
    assert "".join(pieces) == text
    assert all(len(piece) >= 8 for piece in pieces[:-1])
