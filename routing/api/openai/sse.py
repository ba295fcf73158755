"""`stream: true` on /v1/chat/completions: the cascade's answer as OpenAI server-sent events.

Everything that can fail with a status code happens before the first byte, so a 200 means
an answer has begun; a live tier failing half-way ends the stream with an `error` event.
The budget hold spans the whole stream, and the request is recorded exactly once, however
it ended (a client that goes away is recorded as cancelled). See docs/hotpath.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

from django.http import HttpResponseBase, StreamingHttpResponse
from django.utils import timezone

from routing.api.openai import format as response_format
from routing.cache.exact import HEADER as CACHE_HEADER
from routing.cache.exact import CacheHit
from routing.cache.lookup import DEFAULT_CONTROL, CacheControl, Lookup, cache_lookup, cache_store, hit_payload
from routing.choices import RecordStatus
from routing.config.snapshots import KeyInfo, config_cache
from routing.engine.interrupted import CLIENT_GONE, past_deadline
from routing.engine.streaming import (
    Answering,
    CascadeEvent,
    CascadeStream,
    StreamInterrupted,
    TextDelta,
    ToolCallDelta,
    answer_events,
)
from routing.engine.types import CascadeResult, ChatRequest, PolicySnapshot
from routing.limits import ratelimit
from routing.limits.breakers import breaker_board
from routing.limits.budget_holds import CASCADE_DEADLINE_S, BudgetPlan, budget_hold
from routing.records import recorder
from routing.records.payload import RecordPayload

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
# X-Accel-Buffering: nginx (and proxies that honour it) must pass each event on at once.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Outcome = Callable[[], CascadeResult | None]
# A client that stops reading parks the body at a `yield`, where `_next`'s deadline cannot
# reach it. A timer this long after the deadline ends such a request: it cancels the
# upstream call, records the request and settles its hold before the hold expires.
STALLED_READER_GRACE_S = 5.0


class DeadlinePassed(Exception):
    """The request ran past `CASCADE_DEADLINE_S` (its budget hold would expire)."""


class EventStreamResponse(StreamingHttpResponse):
    """Server-sent events; `aclose()` ends the request however the sending ended.

    `routing.api.openai.asgi.HotPathHandler` calls it after sending, also when the client went away
    before the body was read at all (a generator never started runs no `finally`).
    """

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        on_close: Callable[[], Awaitable[None]],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(events, content_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        self._on_close = on_close

    async def aclose(self) -> None:
        await self._on_close()


async def stream_route(
    key: KeyInfo, policy: PolicySnapshot, chat: ChatRequest, control: CacheControl = DEFAULT_CONTROL
) -> HttpResponseBase:
    """Answer `chat` as server-sent events: from the cache, or through the cascade."""
    session = StreamSession(key, policy, chat)
    # Before any budget hold, as for a whole answer: a hit costs nothing.
    lookup = await cache_lookup(policy, chat, control)
    if lookup.hit is not None:
        await ratelimit.admit(key, policy, chat)
        return await session.answer_from_cache(lookup.hit)
    return await session.start(lookup)


class StreamSession:
    """One streamed request, from its budget hold to its record."""

    def __init__(self, key: KeyInfo, policy: PolicySnapshot, chat: ChatRequest) -> None:
        self.request_id = uuid.uuid4()
        self.created = timezone.now()
        self.key = key
        self.policy = policy
        self.chat = chat
        self._hold = AsyncExitStack()
        self._plan: BudgetPlan | None = None
        self._cascade: CascadeStream | None = None
        self._events: AsyncGenerator[CascadeEvent, None] | None = None
        self._lookup: Lookup | None = None
        self._deadline = 0.0
        self._model = ""
        # Known before the first byte for a scored or cached answer; a live one's at its end.
        self._fingerprint: str | None = None
        self._ending: asyncio.Future[None] | None = None
        self._stalled_reader: asyncio.TimerHandle | None = None
        self._cut_off = False

    async def start(self, lookup: Lookup) -> HttpResponseBase:
        """Run the cascade up to the answer's first delta; the response that streams the rest."""
        self._lookup = lookup
        try:
            answering = await self._open()
        except DeadlinePassed:
            raise await self._fail(self._interrupted("timeout")) from None
        except asyncio.CancelledError:
            await self._end(self._interrupted("cancelled"), RecordStatus.CANCELLED)
            raise
        except BaseException:
            await self._end(self._interrupted("error"))
            raise
        if answering is None:
            raise await self._fail(self._finished)
        self._model = answering.upstream_model or answering.model
        self._fingerprint = answering.system_fingerprint
        return EventStreamResponse(self._body(), on_close=self._cancel, headers=self._headers(answering))

    async def answer_from_cache(self, hit: CacheHit) -> HttpResponseBase:
        """A cached answer, sent in chunks: recorded at cost 0 with the cost it avoided."""
        result = hit.result()
        await recorder.enqueue(hit_payload(self._payload(result), hit, self.chat))
        assert result.completion is not None and result.final is not None
        self._model = result.completion.model or result.final.model
        self._fingerprint = result.completion.system_fingerprint
        headers = response_format.routing_headers(self.request_id, self.policy, result) | hit.headers()
        return EventStreamResponse(self._cached_body(result), on_close=_nothing, headers=headers)

    async def _open(self) -> Answering | None:
        first_tier = config_cache.first_tier_for(self.policy, self.chat)
        budgets = config_cache.budgets_for(self.key, self.policy, self.chat.user)
        hold = budget_hold(budgets, self.policy, self.chat, str(self.request_id), first_tier, key=self.key)
        plan = self._plan = await self._hold.enter_async_context(hold)
        # The same deadline as a whole answer's: the stream must not outlive its budget hold.
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + CASCADE_DEADLINE_S
        self._stalled_reader = loop.call_at(self._deadline + STALLED_READER_GRACE_S, self._cut_off_stalled_reader)
        self._cascade = CascadeStream(
            self.chat,
            plan.policy,
            config_cache.providers,
            config_cache.scorer_for(plan.policy),
            first_tier=first_tier,
            breakers=breaker_board(),
        )
        self._events = self._cascade.events()
        event = await self._next()
        assert event is None or isinstance(event, Answering)
        return event

    async def _next(self) -> CascadeEvent | None:
        assert self._events is not None
        deadline = asyncio.timeout_at(self._deadline)
        try:
            async with deadline:
                return await anext(self._events, None)
        except TimeoutError as exc:
            if not deadline.expired():
                raise  # not the deadline's
            raise DeadlinePassed from exc

    async def _body(self) -> AsyncGenerator[bytes, None]:
        try:
            yield self._chunk({"role": "assistant", "content": ""})
            while not self._cut_off and (event := await self._next()) is not None:
                assert not isinstance(event, Answering)
                yield self._delta_chunk(event)
            if self._cut_off:
                yield error_event(f"The answer was cut off: the request ran past {CASCADE_DEADLINE_S} s.")
                return
            result = self._finished()
            await self._end(lambda: result)
            await self._cache(result)
            for chunk in self._closing_chunks(result):
                yield chunk
        except StreamInterrupted as exc:
            await self._end(self._finished)
            yield error_event(interrupted_message(exc))
        except DeadlinePassed:
            await self._end(self._interrupted("timeout"))
            yield error_event(f"The answer was cut off: the request ran past {CASCADE_DEADLINE_S} s.")
        except Exception:
            # A bug of ours, not a client that went away: recorded as the failure it is.
            await self._end(self._interrupted("error"))
            raise
        finally:
            # Closed or cancelled before the end: the client went away. A no-op otherwise.
            await self._cancel()

    async def _cached_body(self, result: CascadeResult) -> AsyncGenerator[bytes, None]:
        assert result.completion is not None
        yield self._chunk({"role": "assistant", "content": ""})
        for event in answer_events(result.completion):
            yield self._delta_chunk(event)
        for chunk in self._closing_chunks(result):
            yield chunk

    async def _cancel(self) -> None:
        await self._end(self._interrupted("cancelled"), RecordStatus.CANCELLED)

    async def _fail(self, outcome: Outcome) -> Exception:
        """Record a request no tier answered; the error to answer it with."""
        result = outcome()
        assert result is not None
        await self._end(lambda: result)
        return response_format.tiers_failed(result, str(self.request_id))

    def _finished(self) -> CascadeResult | None:
        return None if self._cascade is None else self._cascade.result()

    def _cut_off_stalled_reader(self) -> None:
        """Past the deadline and its grace, the client still has not read the stream: end it."""
        if self._ending is None:
            self._cut_off = True
            logger.warning("Request %s: the client stopped reading its stream; cut off", self.request_id)
            self._ending = asyncio.ensure_future(self._record_and_settle(self._interrupted("timeout"), None))

    def _interrupted(self, kind: str) -> Outcome:
        reasons = {"cancelled": CLIENT_GONE, "timeout": past_deadline(CASCADE_DEADLINE_S)}
        reason = reasons.get(kind, "the gateway failed while streaming")

        def outcome() -> CascadeResult | None:
            return None if self._cascade is None else self._cascade.interrupted_result(reason=reason, kind=kind)

        return outcome

    async def _end(self, outcome: Outcome, status: str | None = None) -> None:
        """Record the request and release its budget hold, once, however it ended.

        The first call decides; later ones wait for it. The work runs in a task of its
        own, so cancelling the request does not stop it half-way.
        """
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._record_and_settle(outcome, status))
        await asyncio.shield(self._ending)

    async def _record_and_settle(self, outcome: Outcome, status: str | None) -> None:
        try:
            await self._close_events()
            result = outcome()
            if result is not None:
                if self._plan is not None:
                    self._plan.actual = result.cost
                await recorder.enqueue(self._payload(result, status), settling=self._plan)
        finally:
            if self._stalled_reader is not None:
                self._stalled_reader.cancel()
            await self._hold.aclose()

    async def _close_events(self) -> None:
        """Close the live provider stream, if one is still open: the generation stops."""
        if self._events is None:
            return
        try:
            await self._events.aclose()
        except Exception:
            # The record of what was paid for matters more than a clean close.
            logger.exception("Closing the stream of request %s failed", self.request_id)

    async def _cache(self, result: CascadeResult | None) -> None:
        if result is not None and result.answered and self._lookup is not None and self._plan is not None:
            await cache_store(self._lookup, self.policy, result, degraded=self._plan.degrade.any)

    def _payload(self, result: CascadeResult, status: str | None = None) -> RecordPayload:
        # Recorded against the policy as configured, as a whole answer is.
        return recorder.record_payload(
            request_id=self.request_id,
            created=self.created,
            key=self.key,
            policy=self.policy,
            chat=self.chat,
            result=result,
            status=status,
            streamed=True,
        )

    def _headers(self, answering: Answering) -> dict[str, str]:
        """The routing headers known before the first byte (the cost is not: it is in the record)."""
        assert self._cascade is not None and self._plan is not None and self._lookup is not None
        escalated = bool(self._cascade.attempts) if answering.live else self._cascade.result().escalated
        task, model, tier = self._cascade.task, answering.model, answering.tier
        headers = response_format.answer_headers(
            self.request_id, self.policy, task=task, model=model, tier=tier, escalated=escalated
        )
        headers["x-cascadeops-stream"] = "live" if answering.live else "scored"
        headers[CACHE_HEADER] = self._lookup.status
        return headers | response_format.degrade_headers(self._plan.degrade)

    def _chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, logprobs: dict[str, Any] | None = None
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        return sse(self._envelope([choice]))

    def _delta_chunk(self, event: TextDelta | ToolCallDelta) -> bytes:
        """A text piece (with its tokens' logprobs when asked for) or a piece of a tool call."""
        if isinstance(event, TextDelta):
            logprobs = {"content": list(event.logprobs), "refusal": None} if event.logprobs else None
            return self._chunk({"content": event.text}, logprobs=logprobs)
        call: dict[str, Any] = {"index": event.index}
        function: dict[str, Any] = {"arguments": event.arguments}
        if event.id:
            call |= {"id": event.id, "type": "function"}
        if event.name:
            function["name"] = event.name
        return self._chunk({"tool_calls": [call | {"function": function}]})

    def _closing_chunks(self, result: CascadeResult | None) -> list[bytes]:
        """The finish reason, the usage (when asked for) and `[DONE]`."""
        assert result is not None and result.completion is not None and result.final is not None
        self._fingerprint = result.completion.system_fingerprint
        chunks = [self._chunk({}, result.completion.finish_reason)]
        if self.chat.include_usage:
            final = result.final
            usage = {
                "prompt_tokens": final.input_tokens,
                "completion_tokens": final.output_tokens,
                "total_tokens": final.input_tokens + final.output_tokens,
            }
            chunks.append(sse({**self._envelope([]), "usage": usage}))
        chunks.append(DONE)
        return chunks

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        envelope: dict[str, Any] = {
            "id": f"chatcmpl-{self.request_id.hex}",
            "object": "chat.completion.chunk",
            "created": int(self.created.timestamp()),
            "model": self._model,
            "system_fingerprint": self._fingerprint,
            "choices": choices,
        }
        if self.chat.include_usage:
            envelope["usage"] = None  # as OpenAI: null on every chunk but the last
        return envelope


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def error_event(message: str) -> bytes:
    """OpenAI's in-stream error: the `openai` client raises it as an `APIError`."""
    error = {"message": message, "type": "upstream_error", "param": None, "code": "stream_interrupted"}
    return b"event: error\n" + sse({"error": error})


def interrupted_message(exc: StreamInterrupted) -> str:
    failed = exc.attempt
    return f"The answer was cut off: tier {failed.tier} ({failed.model}) failed: {failed.error_kind}: {failed.error}"


async def _nothing() -> None:
    return None
