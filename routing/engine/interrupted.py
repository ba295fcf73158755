"""What a cascade that was stopped half-way has cost: the caller's record of it.

A client that goes away, or a cascade cut off at the gateway's deadline, cancels
`run_cascade` in the middle of a provider call. The attempts it finished are known (it
appends them to its `progress` list as it goes); the call in flight is not, and the
provider may bill it in full, since most of them finish generating after the client has
hung up. So it is counted at its worst case: the record, the ledger and the budget then
agree with each other and never under-report spend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from routing.engine.classify import classify
from routing.engine.costing import gate_worst_case, start_tier, tier_worst_case_usage
from routing.engine.types import Attempt, CascadeResult, ChatRequest, Outcome, PolicySnapshot, Tier

# Why a cascade stopped half-way, as its record says it: one wording for whole and streamed answers.
CLIENT_GONE = "the client went away"


def past_deadline(seconds: float) -> str:
    return f"the request ran past {seconds} s"


def interrupted_result(
    policy: PolicySnapshot,
    chat: ChatRequest,
    *,
    done: Sequence[Attempt],
    first_tier: int | None,
    latency_ms: float,
    reason: str,
    kind: str,
) -> CascadeResult:
    """The attempts finished before the interruption, and the call in flight at its worst case.

    `first_tier` is the cascade's, as `run_cascade` was given it.
    """
    match = classify(chat, policy)
    start = match.first_tier if first_tier is None else start_tier(policy, chat, first_tier)
    attempts = list(done)
    tier = tier_in_flight(policy, done, start)
    if tier is not None:
        attempts.append(call_in_flight(tier, chat, reason=reason, kind=kind))
    # Any answer in hand was not returned to the caller: nothing is accepted.
    return CascadeResult(task=match.category, attempts=tuple(_unaccepted(a) for a in attempts), latency_ms=latency_ms)


def tier_in_flight(policy: PolicySnapshot, done: Sequence[Attempt], start: int) -> Tier | None:
    """The tier being called when the cascade stopped: the one after the last finished attempt."""
    if done and done[-1].outcome is Outcome.ACCEPTED:
        return None
    index = done[-1].tier + 1 if done else start
    return policy.tiers[index] if 0 <= index < len(policy.tiers) else None


def call_in_flight(tier: Tier, chat: ChatRequest, *, reason: str, kind: str) -> Attempt:
    """The tier being called, at its worst case: every try, on the dearer of it and its fallback,
    and every call its quality gate may have had in flight."""
    worst = tier_worst_case_usage(tier, chat)
    return Attempt(
        tier=tier.position,
        endpoint_id=worst.endpoint.id,
        model=worst.endpoint.name,
        outcome=Outcome.FAILED,
        input_tokens=worst.input_tokens,
        output_tokens=worst.output_tokens,
        cost=worst.cost + gate_worst_case(tier, chat),
        price_version=worst.endpoint.price_version,
        error=reason,
        error_kind=kind,
    )


def _unaccepted(attempt: Attempt) -> Attempt:
    return replace(attempt, outcome=Outcome.ESCALATED) if attempt.outcome is Outcome.ACCEPTED else attempt
