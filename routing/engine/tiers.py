"""Calling one tier: breaker, fallback, deadline, retries; what the call is billed."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from routing.engine.costing import attempt_cost, resolve_max_tokens
from routing.engine.errors import (
    BreakerOpen,
    ProviderError,
    ProviderMisconfigured,
    ProviderTimeout,
    ProviderUnavailable,
)
from routing.engine.ports import Breakers, Provider, SamplingProvider
from routing.engine.tokens import max_prompt_tokens
from routing.engine.types import Attempt, ChatRequest, Completion, EndpointSnapshot, Outcome, Tier

Clock = Callable[[], float]


Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before retrying an endpoint: exponential, with full jitter.

    Retry `n` (from 0) waits a uniform random time below `min(cap_s, base_s * 2**n)`, so
    requests that failed together do not retry together. A provider's Retry-After is a
    floor; one longer than `cap_s` means the endpoint is not worth waiting for in this
    request, and the cascade moves on. `sleep` and `jitter` are the seams tests replace.
    """

    base_s: float = 0.1
    cap_s: float = 2.0
    sleep: Sleep = asyncio.sleep
    jitter: Callable[[], float] = random.random

    def delay_s(self, retry: int, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before retry number `retry`; None: do not retry."""
        if retry_after_s is not None and retry_after_s > self.cap_s:
            return None
        jittered = self.jitter() * min(self.cap_s, self.base_s * 2.0**retry)
        return max(jittered, retry_after_s or 0.0)


BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class BilledUsage:
    """Tokens a provider billed for failed tries of one tier."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def plus(self, other: BilledUsage | ProviderError) -> BilledUsage:
        return BilledUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
        )


def billable(exc: ProviderError, chat: ChatRequest, tier: Tier) -> BilledUsage | ProviderError:
    """What a failed try may have been billed: the usage the provider reported with the error,
    or, for a call cut off by a timeout, its full allowance (most providers finish generating
    after the caller hung up, and bill it); the reservation counts every try so."""
    if isinstance(exc, ProviderTimeout) and not (exc.input_tokens or exc.output_tokens):
        return BilledUsage(max_prompt_tokens(chat), resolve_max_tokens(chat, tier))
    return exc


NO_USAGE = BilledUsage()


@dataclass(frozen=True, slots=True)
class TierAnswer:
    """A successful provider call, before the cascade has judged it."""

    tier: Tier  # the tier as called: its endpoint is the fallback when that answered
    completion: Completion
    latency_ms: float
    billed: BilledUsage = NO_USAGE
    # The other answers of a call that asked for several (`n`); `completion` is the first.
    more: tuple[Completion, ...] = ()

    def each(self) -> list[TierAnswer]:
        """One answer per completion: a call that returned several is recorded as several."""
        return (
            [self]
            if not self.more
            else [
                dataclasses.replace(self, more=()),
                *(TierAnswer(self.tier, completion, self.latency_ms) for completion in self.more),
            ]
        )


def answered_attempt(answer: TierAnswer, score: float | None, outcome: Outcome) -> Attempt:
    done, endpoint = answer.completion, answer.tier.endpoint
    input_tokens = done.input_tokens + answer.billed.input_tokens
    output_tokens = done.output_tokens + answer.billed.output_tokens
    cached_input_tokens = done.cached_input_tokens + answer.billed.cached_input_tokens
    return Attempt(
        tier=answer.tier.position,
        endpoint_id=endpoint.id,
        model=endpoint.name,
        outcome=outcome,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        cost=attempt_cost(endpoint, input_tokens, output_tokens, cached_input_tokens),
        price_version=endpoint.price_version,
        latency_ms=answer.latency_ms,
        score=score,
        quality_label=done.quality_label,
        answer=done.text,
    )


def failed_attempt(tier: Tier, latency_ms: float, exc: Exception, kind: str, billed: BilledUsage = NO_USAGE) -> Attempt:
    """The attempt of a tier that gave no answer; it costs what the provider billed for it."""
    endpoint = tier.endpoint
    return Attempt(
        tier=tier.position,
        endpoint_id=endpoint.id,
        model=endpoint.name,
        outcome=Outcome.FAILED,
        input_tokens=billed.input_tokens,
        output_tokens=billed.output_tokens,
        cached_input_tokens=billed.cached_input_tokens,
        cost=attempt_cost(endpoint, billed.input_tokens, billed.output_tokens, billed.cached_input_tokens),
        price_version=endpoint.price_version if billed != NO_USAGE else 0,
        latency_ms=latency_ms,
        error=str(exc) or type(exc).__name__,
        error_kind=kind,
    )


@dataclass(frozen=True, slots=True)
class TierCaller:
    """Calls tiers for one request: breaker, fallback, deadline and retries."""

    chat: ChatRequest
    providers: Mapping[int, Provider]
    breakers: Breakers | None
    backoff: Backoff
    clock: Clock
    # False for a live stream's tier: an opened stream is not yet an answer, so its
    # caller reports the success once the stream has ended well.
    record_success: bool = True

    async def call(self, tier: Tier, *, n: int = 1) -> TierAnswer | Attempt:
        """The tier's answer, or the FAILED attempt that replaces it.

        `n` > 1 asks for that many answers in one call where the endpoint takes `n`
        (`samples_in_one_call`); the answer then holds the others in `more`. Elsewhere
        it is one answer: the caller asks for the rest.
        """
        provider = self.providers.get(tier.endpoint.id)
        if provider is None:
            return failed_attempt(tier, 0.0, _no_provider(tier.endpoint), ProviderMisconfigured.kind)
        if await self._allowed(tier.endpoint):
            return await self._tries(tier, provider, n)
        return await self._call_fallback(tier, n)

    async def _call_fallback(self, tier: Tier, n: int) -> TierAnswer | Attempt:
        """The tier's breaker is open: its fallback endpoint answers, if it has one that may be called."""
        fallback = tier.endpoint.fallback
        provider = self.providers.get(fallback.id) if fallback is not None else None
        if fallback is None or provider is None:
            return failed_attempt(
                tier, 0.0, BreakerOpen(f"circuit breaker open for {tier.endpoint.name}"), BreakerOpen.kind
            )
        if not await self._allowed(fallback):
            message = f"circuit breaker open for {tier.endpoint.name} and its fallback {fallback.name}"
            return failed_attempt(tier, 0.0, BreakerOpen(message), BreakerOpen.kind)
        return await self._tries(dataclasses.replace(tier, endpoint=fallback), provider, n)

    async def _tries(self, tier: Tier, provider: Provider, n: int = 1) -> TierAnswer | Attempt:
        """Call until an answer, an error not worth retrying, or the retries run out."""
        started, billed, retry = self.clock(), NO_USAGE, 0
        while True:
            try:
                completions = await self._try(tier, provider, n)
            except ProviderError as exc:
                billed = billed.plus(billable(exc, self.chat, tier))
                more = await self._record(tier.endpoint, ok=not exc.breaker_failure)
                wait_s = self._retry_wait_s(tier, exc, retry) if more else None
                if wait_s is None:
                    return failed_attempt(tier, elapsed_ms(started, self.clock), exc, exc.kind, billed)
            # A provider bug must cost one tier, not the request: the next tier may still
            # answer. CancelledError is a BaseException and still propagates, so a client
            # that went away stops the cascade.
            except Exception as exc:
                await self._record(tier.endpoint, ok=False)
                return failed_attempt(tier, elapsed_ms(started, self.clock), exc, ProviderError.kind, billed)
            else:
                if self.record_success:
                    await self._record(tier.endpoint, ok=True)
                first, *others = completions
                return TierAnswer(tier, first, elapsed_ms(started, self.clock), billed, tuple(others))
            await self.backoff.sleep(wait_s)
            retry += 1

    async def _try(self, tier: Tier, provider: Provider, n: int) -> tuple[Completion, ...]:
        """One provider call, cut off at the endpoint's timeouts even if the provider ignores them."""
        deadline_s = tier.endpoint.connect_timeout_s + tier.endpoint.read_timeout_s
        max_tokens = resolve_max_tokens(self.chat, tier)
        try:
            async with asyncio.timeout(deadline_s if deadline_s > 0 else None):
                if n > 1 and samples_in_one_call(tier.endpoint) and isinstance(provider, SamplingProvider):
                    found = await provider.complete_many(self.chat, max_tokens=max_tokens, n=n)
                    if found:
                        return found[:n]
                    raise ProviderUnavailable(f"{tier.endpoint.name}: no choices in the answer")
                return (await provider.complete(self.chat, max_tokens=max_tokens),)
        except TimeoutError as exc:
            raise ProviderTimeout(f"{tier.endpoint.name}: no answer within {deadline_s:g}s") from exc

    def _retry_wait_s(self, tier: Tier, exc: ProviderError, retry: int) -> float | None:
        if not exc.retryable or retry >= tier.endpoint.max_retries:
            return None
        return self.backoff.delay_s(retry, getattr(exc, "retry_after_s", None))

    async def _allowed(self, endpoint: EndpointSnapshot) -> bool:
        return self.breakers is None or await self.breakers.allow(endpoint)

    async def _record(self, endpoint: EndpointSnapshot, *, ok: bool) -> bool:
        """Count the outcome; whether the endpoint may still be called."""
        return self.breakers is None or await self.breakers.record(endpoint, ok)


def samples_in_one_call(endpoint: EndpointSnapshot) -> bool:
    """Whether the endpoint returns several answers to one call (registry option `n: true`)."""
    return endpoint.options.get("n") is True


def _no_provider(endpoint: EndpointSnapshot) -> ProviderMisconfigured:
    return ProviderMisconfigured(f"no provider for endpoint {endpoint.id} ({endpoint.name})")


def elapsed_ms(started: float, clock: Clock) -> float:
    return (clock() - started) * 1000.0
