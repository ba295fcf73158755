"""Streaming: the provider side of `stream: true`, and the cascade that streams its answer.

A provider that can stream implements `StreamingProvider.stream`: an async generator of
`TextDelta`s and then exactly one `StreamDone`, which carries the whole answer with its
usage. Closing the generator early (`aclose()`) cancels the upstream call. A provider
that can only `complete` is streamed as its finished answer cut into chunks (`open_stream`).

`CascadeStream` makes the decisions `run_cascade` makes, and delivers the answer as it goes:

- a tier whose answer may still be rejected is called whole (through the same breakers,
  fallbacks and retries) and scored before anything is sent, so a cheap answer that is
  escalated never reaches the client; an accepted one is then sent in chunks;
- the tier whose answer will be accepted whatever its score (the last tier, the one
  after `max_escalations`, any tier when escalation is off) is streamed live from its
  provider. If it fails before its first delta, the cascade falls through as
  `run_cascade` does; once a delta is out, it cannot (the client holds half an answer),
  and `events()` raises `StreamInterrupted`.

`result()` is what happened, for the request's record. `interrupted_result()` is the same
for a stream stopped half-way (the client went away, a deadline): the call in flight is
counted too. A live stream counts its prompt and what it had streamed, since closing it
stops the generation; a whole call counts at its worst case, as `engine.interrupted` says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from routing.engine.cascade import AnswerJudge, CascadeRun, accepts, fall_back_to_best_answer, settle_answer
from routing.engine.classify import classify
from routing.engine.costing import start_tier
from routing.engine.errors import ProviderError, ProviderTimeout
from routing.engine.gate import Embed, answer_signals
from routing.engine.interrupted import call_in_flight
from routing.engine.ports import Breakers, Provider, Scorer
from routing.engine.structured import structured_score
from routing.engine.tiers import (
    BACKOFF,
    NO_USAGE,
    Backoff,
    BilledUsage,
    Clock,
    TierAnswer,
    TierCaller,
    answered_attempt,
    elapsed_ms,
    failed_attempt,
)
from routing.engine.tokens import estimate_tokens, max_prompt_tokens
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Completion, Outcome, PolicySnapshot, Tier

# A buffered answer goes out in pieces of about this many characters (some four tokens).
CHUNK_CHARS = 16
# Every character is either in a run of non-space or of space: the pieces join back whole.
_WORDS = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class TextDelta:
    """The next piece of the answer's text, with its tokens' `logprobs.content` entries when sent."""

    text: str
    logprobs: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """The next piece of a tool call: its id and name come first, its arguments in pieces."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class StreamDone:
    """The end of a provider's stream: the whole answer, its usage and its finish reason."""

    completion: Completion


StreamEvent = TextDelta | ToolCallDelta | StreamDone


@runtime_checkable
class StreamingProvider(Provider, Protocol):
    """A provider that can send its answer as it is generated.

    Raises `ProviderError` subclasses like `complete`, before or between events. The
    deltas joined are `StreamDone.completion.text`.
    """

    def stream(self, chat: ChatRequest, *, max_tokens: int) -> AsyncGenerator[StreamEvent, None]: ...


@dataclass(frozen=True, slots=True)
class Answering:
    """The answer starts: the tier giving it (as called: a fallback's model when that answers)."""

    tier: int
    model: str
    live: bool  # streamed from the provider as it generates, rather than sent after scoring
    # The provider's model id, the answer's `model`; what it is called, not which answer it is.
    upstream_model: str = field(default="", compare=False)
    system_fingerprint: str | None = field(default=None, compare=False)


CascadeEvent = Answering | TextDelta | ToolCallDelta


class StreamInterrupted(Exception):
    """The live tier failed after part of its answer had been sent."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.error)
        self.attempt = attempt


def open_stream(provider: Provider, chat: ChatRequest, *, max_tokens: int) -> AsyncGenerator[StreamEvent, None]:
    """The provider's stream; a provider that cannot stream sends its finished answer in chunks."""
    if isinstance(provider, StreamingProvider):
        return provider.stream(chat, max_tokens=max_tokens)
    return _completed_stream(provider, chat, max_tokens)


async def _completed_stream(
    provider: Provider, chat: ChatRequest, max_tokens: int
) -> AsyncGenerator[StreamEvent, None]:
    completion = await provider.complete(chat, max_tokens=max_tokens)
    for event in answer_events(completion):
        yield event
    yield StreamDone(completion)


def answer_events(completion: Completion) -> Iterator[TextDelta | ToolCallDelta]:
    """A finished answer as deltas: its text in pieces (the logprobs with the first), then each tool call whole."""
    logprobs = completion.logprobs_content
    for piece in text_chunks(completion.text):
        yield TextDelta(piece, logprobs)
        logprobs = None
    if logprobs:
        yield TextDelta("", logprobs)
    for index, call in enumerate(completion.tool_calls):
        yield ToolCallDelta(index, call.id, call.name, call.arguments)


def text_chunks(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """`text` in pieces of at least `size` characters (the last may be shorter), cut after whole words."""
    piece = ""
    for word in _WORDS.findall(text):
        piece += word
        if len(piece) >= size:
            yield piece
            piece = ""
    if piece:
        yield piece


@dataclass(slots=True)
class _Live:
    """The live tier while it streams: what it has sent so far."""

    tier: Tier
    started: float
    stream: AsyncGenerator[StreamEvent, None] | None = None
    pieces: list[str] = field(default_factory=list)
    billed: BilledUsage = NO_USAGE  # tries that failed before the stream opened


class CascadeStream:
    """One request's cascade, streamed: iterate `events()`, then read `result()`."""

    def __init__(
        self,
        chat: ChatRequest,
        policy: PolicySnapshot,
        providers: Mapping[int, Provider],
        scorer: Scorer,
        *,
        allow_escalation: bool = True,
        first_tier: int | None = None,
        breakers: Breakers | None = None,
        backoff: Backoff = BACKOFF,
        clock: Clock = time.perf_counter,
        embed: Embed | None = None,
    ) -> None:
        self._chat = chat
        self._embed = embed
        self._policy = policy
        self._scorer = scorer
        self._allow_escalation = allow_escalation
        self._clock = clock
        self._started = clock()
        self._match = classify(chat, policy)
        self._start = self._match.first_tier if first_tier is None else start_tier(policy, chat, first_tier)
        self._caller = TierCaller(chat, providers, breakers, backoff, clock)
        self._openers = _Openers(providers)
        # The live tier goes through the same breakers, fallbacks and retries; a "call" opens its stream.
        self._live_caller = TierCaller(chat, self._openers, breakers, backoff, clock, record_success=False)
        self._run = CascadeRun()
        self._calling: Tier | None = None  # a whole call in flight
        self._live: _Live | None = None  # the live tier, from its opening until its attempt is recorded

    @property
    def task(self) -> str:
        return self._match.category

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return tuple(self._run.attempts)

    async def events(self) -> AsyncGenerator[CascadeEvent, None]:
        """`Answering` and the answer's deltas; nothing when every tier failed.

        Raises `StreamInterrupted` when the live tier fails after its first delta.
        """
        policy = self._policy
        for index in range(self._start, len(policy.tiers)):
            tier = policy.tiers[index]
            if self._is_final(index):
                first = await self._open_live(tier)
                if first is None:
                    continue
                async with aclosing(self._relay_live(first)) as relay:
                    async for event in relay:
                        yield event
                return
            if await self._call_and_judge(index, tier):
                break
        fall_back_to_best_answer(self._run)
        accepted = self._run.accepted
        if accepted is not None:
            attempt = self._run.attempts[accepted]
            answer = self._run.answers[accepted]
            yield Answering(
                attempt.tier,
                attempt.model,
                live=False,
                upstream_model=answer.model,
                system_fingerprint=answer.system_fingerprint,
            )
            for event in answer_events(answer):
                yield event

    def result(self) -> CascadeResult:
        """Every attempt and the accepted answer (None when every tier failed)."""
        return self._result(self._run.attempts)

    def interrupted_result(self, *, reason: str, kind: str) -> CascadeResult:
        """The result of a cascade stopped half-way, with the call in flight as a FAILED attempt of `kind`."""
        attempts = list(self._run.attempts)
        if self._live is not None:
            attempts.append(self._partial(self._live, Exception(reason), kind))
        elif self._calling is not None:
            attempts.append(call_in_flight(self._calling, self._chat, reason=reason, kind=kind))
        return self._result(attempts)

    def _result(self, attempts: list[Attempt]) -> CascadeResult:
        accepted = self._run.accepted
        return CascadeResult(
            task=self._match.category,
            attempts=tuple(attempts),
            completion=None if accepted is None else self._run.answers[accepted],
            latency_ms=elapsed_ms(self._started, self._clock),
        )

    def _is_final(self, index: int) -> bool:
        """Whether tier `index`'s answer will be accepted whatever its score (scores are in [0, 1])."""
        return accepts(self._policy, index, self._run.escalations, 0.0, self._allow_escalation)

    async def _call_and_judge(self, index: int, tier: Tier) -> bool:
        """Call a tier whole and score its answer; whether it was accepted."""
        self._calling = tier  # left set when the call is cancelled: it is in flight
        called = await self._caller.call(tier)
        self._calling = None
        if isinstance(called, Attempt):
            self._run.record(called)
            return False
        judge = AnswerJudge(self._caller, self._scorer, self.task, self._allow_escalation, self._embed)
        return await settle_answer(self._run, self._policy, index, called, judge)

    async def _open_live(self, tier: Tier) -> StreamEvent | None:
        """Open the tier's stream up to its first event; None when the tier failed (its attempt is recorded)."""
        started = self._clock()
        self._live = _Live(tier, started)
        try:
            called = await self._live_caller.call(tier)
        except BaseException:
            # Cancelled after a stream opened (while its breaker was told, say): close it.
            await self._openers.aclose()
            raise
        if isinstance(called, Attempt):
            self._live = None
            self._run.record(called)
            return None
        opener = self._openers.opened[called.tier.endpoint.id]
        assert opener.stream is not None and opener.first is not None
        self._live = _Live(called.tier, started, opener.stream, billed=called.billed)
        return opener.first

    async def _relay_live(self, event: StreamEvent) -> AsyncGenerator[CascadeEvent, None]:
        live = self._live
        assert live is not None and live.stream is not None
        try:
            endpoint = live.tier.endpoint
            yield Answering(live.tier.position, endpoint.name, live=True, upstream_model=endpoint.model_id)
            while not isinstance(event, StreamDone):
                if isinstance(event, TextDelta):
                    live.pieces.append(event.text)
                yield event
                event = await self._next_live(live)
            await self._accept_live(live, event.completion)
        finally:
            # Stops the upstream generation when the client went away mid-stream.
            await live.stream.aclose()

    async def _next_live(self, live: _Live) -> StreamEvent:
        assert live.stream is not None
        endpoint = live.tier.endpoint
        silence_s = endpoint.read_timeout_s if endpoint.read_timeout_s > 0 else None
        try:
            # Bounds the silence between two events, as the read timeout does for a whole call.
            async with asyncio.timeout(silence_s):
                return await anext(live.stream)
        except TimeoutError:
            failure: Exception = ProviderTimeout(f"{endpoint.name}: the answer stalled for {silence_s:g}s")
        except StopAsyncIteration:
            failure = ProviderError(f"{endpoint.name}: the stream ended before the answer did")
        except Exception as exc:  # a ProviderError, or a provider bug: the same to the client
            failure = exc
        raise await self._fail_live(live, failure) from failure

    async def _fail_live(self, live: _Live, failure: Exception) -> StreamInterrupted:
        """Record the live tier's failure mid-stream; the error to end the stream with."""
        kind = failure.kind if isinstance(failure, ProviderError) else ProviderError.kind
        attempt = self._partial(live, failure, kind)
        self._live = None
        self._run.record(attempt)
        await self._live_caller._record(live.tier.endpoint, ok=not getattr(failure, "breaker_failure", True))
        return StreamInterrupted(attempt)

    async def _accept_live(self, live: _Live, completion: Completion) -> None:
        await self._live_caller._record(live.tier.endpoint, ok=True)
        scored = structured_score(self._scorer, self._chat, completion, self.task)
        answer = TierAnswer(live.tier, completion, elapsed_ms(live.started, self._clock), live.billed)
        self._live = None
        attempt = answered_attempt(answer, scored.score, Outcome.ACCEPTED)
        attempt = dataclasses.replace(attempt, signals=answer_signals(None, completion))
        if scored.problem is not None:
            # Sent already, as the last tier's answer is; the record still says what was wrong with it.
            attempt = dataclasses.replace(attempt, error=scored.problem.reason, error_kind=scored.problem.kind)
        self._run.record(attempt, completion)

    def _partial(self, live: _Live, failure: Exception, kind: str) -> Attempt:
        """The live tier's attempt when it stopped half-way, costed at the usage billed for it.

        That is the usage the provider reported with its error, or else the prompt and
        what had been streamed, estimated (the prompt at its upper bound: never under-report).
        """
        if isinstance(failure, ProviderError) and (failure.input_tokens or failure.output_tokens):
            usage = live.billed.plus(failure)
        else:
            streamed = BilledUsage(max_prompt_tokens(self._chat), estimate_tokens("".join(live.pieces)))
            usage = live.billed.plus(streamed)
        return failed_attempt(live.tier, elapsed_ms(live.started, self._clock), failure, kind, usage)


class _Opener:
    """A live tier's provider as `TierCaller` sees it: one try opens the stream up to its first event.

    `TierCaller` then applies the breaker, the fallback, the deadline (now on the first event)
    and the retries exactly as for a whole call. The `Completion` a try returns is only a
    marker; the stream and its first event stay here for `CascadeStream` to relay.
    """

    def __init__(self, provider: Provider) -> None:
        self.endpoint = provider.endpoint
        self._provider = provider
        self.stream: AsyncGenerator[StreamEvent, None] | None = None
        self.first: StreamEvent | None = None

    async def complete(self, chat: ChatRequest, *, max_tokens: int) -> Completion:
        stream = open_stream(self._provider, chat, max_tokens=max_tokens)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise ProviderError(f"{self.endpoint.name}: the stream ended before it began") from None
        self.stream, self.first = stream, first
        return OPENED

    async def aclose(self) -> None:
        return None


OPENED = Completion(text="", finish_reason="", input_tokens=0, output_tokens=0, latency_ms=0.0)


class _Openers(Mapping[int, Provider]):
    """`providers` with each one wrapped in an `_Opener`, made on first use and kept by endpoint id."""

    def __init__(self, providers: Mapping[int, Provider]) -> None:
        self._providers = providers
        self.opened: dict[int, _Opener] = {}

    def __getitem__(self, endpoint_id: int) -> Provider:
        opener = self.opened.get(endpoint_id)
        if opener is None:
            opener = self.opened[endpoint_id] = _Opener(self._providers[endpoint_id])
        return opener

    async def aclose(self) -> None:
        """Close every stream opened so far."""
        for opener in self.opened.values():
            if opener.stream is not None:
                await opener.stream.aclose()

    def __iter__(self) -> Iterator[int]:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)
