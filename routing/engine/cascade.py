"""The cascade: classify, call the cheapest suitable tier, score, escalate.

`run_cascade` is the whole routing decision for one request. It gets everything as
arguments (a frozen policy snapshot, provider objects keyed by endpoint id, a scorer,
the circuit breakers), so the same code serves the HTTP hot path, offline replays and
benchmarks.

Each tier's answer is scored; below the tier's threshold the next, stronger tier is
called, at most `policy.max_escalations` times. A tier that fails (error, timeout, open
breaker, or a bug in the provider) always falls through to the next one while any
remain: an answer from a stronger model beats no answer. For the same reason, when the
tiers after an escalation all fail, the best answer already in hand is returned rather
than none. Every attempt is recorded with its cost, because every tier tried is paid for.

Calling one tier is more than one provider call:

- an open breaker skips the endpoint: its fallback endpoint answers in its place when
  it has one (at the fallback's prices), else the tier fails without a call;
- each try has a deadline of the endpoint's connect plus read timeout, whatever the
  provider does with them;
- a retryable error (timeout, unavailable) is tried again up to `max_retries` times,
  after an exponential, jittered wait (`Backoff`), unless the breaker opened meanwhile;
- every try's outcome is counted by the endpoint's breaker. Errors that are the
  caller's doing (a bad request, a refusal) do not count as the endpoint failing.

A tier is one `Attempt` however many tries it took: its latency spans them all, and
usage a provider billed for a failed try is added to it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.engine.classify import classify
from routing.engine.costing import start_tier
from routing.engine.gate import Embed, GateVerdict, answer_signals, gate_check
from routing.engine.ports import Breakers, OpinionScorer, Provider, Scorer
from routing.engine.structured import StructuredScore, StructureProblem, check_structure, structured_score
from routing.engine.tiers import BACKOFF, Backoff, Clock, TierAnswer, TierCaller, answered_attempt, elapsed_ms
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Completion, Outcome, PolicySnapshot


@dataclass(slots=True)
class CascadeRun:
    """One cascade's attempts so far, and the answers that came with them."""

    attempts: list[Attempt] = field(default_factory=list)
    answers: dict[int, Completion] = field(default_factory=dict)  # attempt index → answer
    accepted: int | None = None
    progress: list[Attempt] | None = None  # the caller's copy, appended to as attempts are made

    @property
    def escalations(self) -> int:
        return sum(1 for attempt in self.attempts if attempt.outcome is Outcome.ESCALATED)

    def record(self, attempt: Attempt, completion: Completion | None = None) -> None:
        if completion is not None:
            self.answers[len(self.attempts)] = completion
        if attempt.outcome is Outcome.ACCEPTED:
            self.accepted = len(self.attempts)
        self.attempts.append(attempt)
        if self.progress is not None:
            self.progress.append(attempt)


async def run_cascade(
    chat: ChatRequest,
    policy: PolicySnapshot,
    providers: Mapping[int, Provider],
    scorer: Scorer,
    *,
    allow_escalation: bool = True,
    first_tier: int | None = None,
    breakers: Breakers | None = None,
    progress: list[Attempt] | None = None,
    backoff: Backoff = BACKOFF,
    clock: Clock = time.perf_counter,
    embed: Embed | None = None,
) -> CascadeResult:
    """Route `chat` through `policy`'s tiers and return every attempt and the answer.

    `allow_escalation=False` accepts the first answer whatever its score (budgets in
    degrade mode use it); failed tiers still fall through. `first_tier` overrides the
    task rules' choice of where to start (a prompt-only router's pick). `breakers` None
    calls every endpoint whatever its health (offline replays, benchmarks). Each attempt
    is appended to `progress` as soon as it is made, so a caller whose cascade is
    cancelled knows what was already paid for. The result's `completion` is None only
    when every tier tried failed.
    """
    started = clock()
    match = classify(chat, policy)
    start = match.first_tier if first_tier is None else start_tier(policy, chat, first_tier)
    run = CascadeRun(progress=progress)
    caller = TierCaller(chat, providers, breakers, backoff, clock)
    for index in range(start, len(policy.tiers)):
        tier = policy.tiers[index]
        called = await caller.call(tier)
        if isinstance(called, Attempt):
            run.record(called)
            continue
        accept = await settle_answer(
            run, policy, index, called, AnswerJudge(caller, scorer, match.category, allow_escalation, embed)
        )
        if accept:
            break
    fall_back_to_best_answer(run)
    return CascadeResult(
        task=match.category,
        attempts=tuple(run.attempts),
        completion=None if run.accepted is None else run.answers[run.accepted],
        latency_ms=elapsed_ms(started, clock),
    )


@dataclass(frozen=True, slots=True)
class AnswerJudge:
    """What deciding on one tier's answer needs: its caller (for the gate's calls) and the scorer."""

    caller: TierCaller
    scorer: Scorer
    task: str
    allow_escalation: bool = True
    embed: Embed | None = None


async def settle_answer(
    run: CascadeRun, policy: PolicySnapshot, index: int, called: TierAnswer, judge: AnswerJudge
) -> bool:
    """Score tier `index`'s answer (through its gate when that can change the outcome), record
    it with the gate's extra calls, and say whether it is accepted."""
    chat = judge.caller.chat
    verdict = None
    if needs_gate(policy, index, run.escalations, judge.allow_escalation):
        verdict = await gate_check(judge.caller, policy.tiers[index], called, embed=judge.embed)
        called = dataclasses.replace(called, completion=verdict.completion)
    if verdict is None:
        scored = structured_score(judge.scorer, chat, called.completion, judge.task)
    else:
        scored = gated_score(verdict, judge, called.completion)
    accept = accepts(policy, index, run.escalations, scored.score, judge.allow_escalation)
    attempt = answered_attempt(called, scored.score, Outcome.ACCEPTED if accept else Outcome.ESCALATED)
    attempt = dataclasses.replace(attempt, signals=answer_signals(verdict, called.completion))
    if scored.problem is not None:
        # The record says why a broken tool call or JSON answer was escalated (or, on the last tier, kept).
        attempt = dataclasses.replace(attempt, error=scored.problem.reason, error_kind=scored.problem.kind)
    run.record(attempt, called.completion)
    for extra in verdict.attempts if verdict is not None else ():
        run.record(extra)
    return accept


def gated_score(verdict: GateVerdict, judge: AnswerJudge, completion: Completion) -> StructuredScore:
    """The gate's score, unless the answer's structure is broken: that scores 0 whatever the gate says."""
    checked = check_structure(judge.caller.chat, completion)
    if isinstance(checked, StructureProblem):
        return StructuredScore(0.0, checked)
    return StructuredScore(verdict.score(scorer_opinion(judge.scorer, judge.caller.chat, completion, judge.task)))


def scorer_opinion(scorer: Scorer, chat: ChatRequest, completion: Completion, task: str) -> float | None:
    """The scorer's score, or None where it has no opinion (a heuristic with no evidence)."""
    if isinstance(scorer, OpinionScorer):
        return scorer.opinion(chat, completion, task=task)
    return scorer.score(chat, completion, task=task)


def needs_gate(policy: PolicySnapshot, index: int, escalations: int, allow_escalation: bool) -> bool:
    """Whether tier `index`'s gate runs: only when its verdict can change the outcome."""
    return policy.tiers[index].gate.active and not accepts(policy, index, escalations, -1.0, allow_escalation)


def accepts(policy: PolicySnapshot, index: int, escalations: int, score: float, allow_escalation: bool) -> bool:
    """Whether the answer of tier `index` is final."""
    return (
        is_last_tier(policy, index)
        or escalations >= policy.max_escalations
        or not allow_escalation
        or score >= policy.tiers[index].threshold
    )


def is_last_tier(policy: PolicySnapshot, index: int) -> bool:
    return index >= len(policy.tiers) - 1


def fall_back_to_best_answer(run: CascadeRun) -> None:
    """Accept the best escalated answer when every tier after it failed.

    Ties go to the later, stronger tier.
    """
    if run.accepted is not None or not run.answers:
        return
    best = max(run.answers, key=lambda i: (run.attempts[i].score or 0.0, i))
    run.attempts[best] = dataclasses.replace(run.attempts[best], outcome=Outcome.ACCEPTED)
    run.accepted = best
