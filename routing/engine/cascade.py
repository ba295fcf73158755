"""The cascade: classify, call the cheapest suitable tier, score, escalate.

`run_cascade` is the whole routing decision for one request. It gets everything as
arguments (a frozen policy snapshot, provider objects keyed by endpoint id, a scorer),
so the same code serves the HTTP hot path, offline replays and benchmarks.

Each tier's answer is scored; below the tier's threshold the next, stronger tier is
called, at most `policy.max_escalations` times. A tier that fails (error, timeout, open
breaker, or a bug in the provider) always falls through to the next one while any
remain: an answer from a stronger model beats no answer. For the same reason, when the
tiers after an escalation all fail, the best answer already in hand is returned rather
than none. Every attempt is recorded with its cost, because every tier tried is paid for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .classify import classify
from .costing import attempt_cost, resolve_max_tokens
from .errors import ProviderError, ProviderMisconfigured
from .ports import Provider, Scorer
from .types import (
    Attempt,
    CascadeResult,
    ChatRequest,
    Completion,
    Outcome,
    PolicySnapshot,
    Tier,
)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class _Answer:
    """A successful provider call, before the cascade has judged it."""

    completion: Completion
    latency_ms: float


@dataclass(slots=True)
class _Run:
    """One cascade's attempts so far, and the answers that came with them."""

    attempts: list[Attempt] = field(default_factory=list)
    answers: dict[int, Completion] = field(default_factory=dict)  # attempt index → answer
    accepted: int | None = None

    @property
    def escalations(self) -> int:
        return sum(1 for attempt in self.attempts if attempt.outcome is Outcome.ESCALATED)

    def record(self, attempt: Attempt, completion: Completion | None = None) -> None:
        if completion is not None:
            self.answers[len(self.attempts)] = completion
        if attempt.outcome is Outcome.ACCEPTED:
            self.accepted = len(self.attempts)
        self.attempts.append(attempt)


async def run_cascade(
    chat: ChatRequest,
    policy: PolicySnapshot,
    providers: Mapping[int, Provider],
    scorer: Scorer,
    *,
    allow_escalation: bool = True,
    first_tier: int | None = None,
    clock: Clock = time.perf_counter,
) -> CascadeResult:
    """Route `chat` through `policy`'s tiers and return every attempt and the answer.

    `allow_escalation=False` accepts the first answer whatever its score (budgets in
    degrade mode use it); failed tiers still fall through. `first_tier` overrides the
    task rules' choice of where to start (a prompt-only router's pick). The result's
    `completion` is None only when every tier tried failed.
    """
    started = clock()
    match = classify(chat, policy)
    start = match.first_tier if first_tier is None else min(max(first_tier, 0), len(policy.tiers) - 1)
    run = _Run()
    for index in range(start, len(policy.tiers)):
        tier = policy.tiers[index]
        called = await _call(chat, tier, providers, clock)
        if isinstance(called, Attempt):
            run.record(called)
            continue
        score = scorer.score(chat, called.completion, task=match.category)
        accept = _accepts(policy, index, run.escalations, score, allow_escalation)
        outcome = Outcome.ACCEPTED if accept else Outcome.ESCALATED
        run.record(_answered(tier, called, score, outcome), called.completion)
        if accept:
            break
    _fall_back_to_best_answer(run)
    return CascadeResult(
        task=match.category,
        attempts=tuple(run.attempts),
        completion=None if run.accepted is None else run.answers[run.accepted],
        latency_ms=_elapsed_ms(started, clock),
    )


def _accepts(policy: PolicySnapshot, index: int, escalations: int, score: float, allow_escalation: bool) -> bool:
    """Whether the answer of tier `index` is final."""
    return (
        is_last_tier(policy, index)
        or escalations >= policy.max_escalations
        or not allow_escalation
        or score >= policy.tiers[index].threshold
    )


def is_last_tier(policy: PolicySnapshot, index: int) -> bool:
    return index >= len(policy.tiers) - 1


def _fall_back_to_best_answer(run: _Run) -> None:
    """Accept the best escalated answer when every tier after it failed.

    Ties go to the later, stronger tier.
    """
    if run.accepted is not None or not run.answers:
        return
    best = max(run.answers, key=lambda i: (run.attempts[i].score or 0.0, i))
    run.attempts[best] = dataclasses.replace(run.attempts[best], outcome=Outcome.ACCEPTED)
    run.accepted = best


def _answered(tier: Tier, answer: _Answer, score: float, outcome: Outcome) -> Attempt:
    done = answer.completion
    cost = attempt_cost(tier.endpoint, done.input_tokens, done.output_tokens, done.cached_input_tokens)
    return Attempt(
        tier=tier.position,
        endpoint_id=tier.endpoint.id,
        model=tier.endpoint.name,
        outcome=outcome,
        input_tokens=done.input_tokens,
        output_tokens=done.output_tokens,
        cached_input_tokens=done.cached_input_tokens,
        cost=cost,
        price_version=tier.endpoint.price_version,
        latency_ms=answer.latency_ms,
        score=score,
        quality_label=done.quality_label,
    )


def _failed(tier: Tier, latency_ms: float, exc: Exception, kind: str) -> Attempt:
    return Attempt(
        tier=tier.position,
        endpoint_id=tier.endpoint.id,
        model=tier.endpoint.name,
        outcome=Outcome.FAILED,
        latency_ms=latency_ms,
        error=str(exc) or type(exc).__name__,
        error_kind=kind,
    )


async def _call(chat: ChatRequest, tier: Tier, providers: Mapping[int, Provider], clock: Clock) -> _Answer | Attempt:
    """Call `tier`'s provider: its answer, or the FAILED attempt that replaces it."""
    started = clock()
    try:
        provider = _provider(tier, providers)
        completion = await provider.complete(chat, max_tokens=resolve_max_tokens(chat, tier))
    except ProviderError as exc:
        return _failed(tier, _elapsed_ms(started, clock), exc, exc.kind)
    # A provider bug must cost one tier, not the request: the next tier may still answer.
    # CancelledError is a BaseException and still propagates, so a client that went
    # away stops the cascade.
    except Exception as exc:
        return _failed(tier, _elapsed_ms(started, clock), exc, ProviderError.kind)
    return _Answer(completion, _elapsed_ms(started, clock))


def _provider(tier: Tier, providers: Mapping[int, Provider]) -> Provider:
    try:
        return providers[tier.endpoint.id]
    except KeyError:
        message = f"no provider for endpoint {tier.endpoint.id} ({tier.endpoint.name})"
        raise ProviderMisconfigured(message) from None


def _elapsed_ms(started: float, clock: Clock) -> float:
    return (clock() - started) * 1000.0
