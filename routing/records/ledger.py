"""Request-record payloads → billing's ledger lines.

Each attempt's cost goes on the line of the model that was called; the request itself,
its baseline cost and any cache savings go on the line of the model that answered (for a
request every tier failed, the last one tried).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypedDict
from zoneinfo import ZoneInfo

from django.conf import settings

from billing.ledger.services import LedgerLine
from routing.engine.costing import attempt_cost
from routing.engine.types import Attempt, EndpointSnapshot
from routing.models import RequestRecord, ShadowEvaluation

if TYPE_CHECKING:
    # Only in annotations (typing.ReadOnly is Python 3.13's); not a runtime dependency.
    from typing_extensions import ReadOnly


class LedgerAttempt(TypedDict):
    """The parts of an `AttemptPayload` the ledger reads."""

    model: ReadOnly[str]
    outcome: ReadOnly[str]
    input_tokens: ReadOnly[int]
    output_tokens: ReadOnly[int]
    cached_input_tokens: ReadOnly[int]
    cost: ReadOnly[str]


class LedgerSource(TypedDict):
    """The parts of a `RecordPayload` the ledger reads.

    Read-only, so a full `RecordPayload` is one, and so is the subset `reconcile`
    rebuilds from the stored rows.
    """

    created: ReadOnly[str]
    status: ReadOnly[str]
    team: ReadOnly[str]
    app: ReadOnly[str]
    api_key_prefix: ReadOnly[str]
    policy_name: ReadOnly[str]
    end_user: ReadOnly[str]
    escalated: ReadOnly[bool]
    final_model: ReadOnly[str]
    baseline_cost: ReadOnly[str]
    cache: ReadOnly[str]
    cost_avoided: ReadOnly[str]
    metadata: ReadOnly[Mapping[str, Any]]
    attempts: ReadOnly[Sequence[LedgerAttempt]]


def billing_day(created: str) -> date:
    """The day a request counts on, in the billing time zone."""
    return datetime.fromisoformat(created).astimezone(ZoneInfo(settings.BILLING_TIME_ZONE)).date()


def ledger_lines(payloads: Sequence[LedgerSource]) -> list[LedgerLine]:
    return [line for p in payloads for line in _lines(p)]


def _lines(p: LedgerSource) -> list[LedgerLine]:
    if p["status"] == "refused":  # turned away before any model was called: nothing spent
        return []
    day = billing_day(p["created"])
    attempts = p["attempts"]
    lines = [_attempt_line(p, day, a) for a in attempts]
    if not lines:  # answered without calling a model (a cache hit)
        lines = [_line(p, day, p.get("final_model") or "cache")]
    owner = lines[_answering_index(p, attempts)]
    owner.requests = 1
    owner.escalated_requests = int(bool(p["escalated"]))
    owner.baseline_cost = Decimal(p.get("baseline_cost", "0"))
    owner.cache_hits = int(bool(p.get("cache")))
    owner.cost_avoided = Decimal(p.get("cost_avoided", "0"))
    return lines


def _answering_index(p: LedgerSource, attempts: Sequence[LedgerAttempt]) -> int:
    for i, a in enumerate(attempts):
        if a["outcome"] == "accepted":
            return i
    return max(len(attempts) - 1, 0)


def _attempt_line(p: LedgerSource, day: date, a: LedgerAttempt) -> LedgerLine:
    line = _line(p, day, a["model"])
    line.attempts = 1
    line.input_tokens = a["input_tokens"]
    line.output_tokens = a["output_tokens"]
    line.cached_input_tokens = a.get("cached_input_tokens", 0)
    line.cost = Decimal(a["cost"])
    return line


def _line(p: LedgerSource, day: date, model: str) -> LedgerLine:
    return LedgerLine(
        day=day,
        team=p["team"],
        app=p["app"],
        api_key_prefix=p.get("api_key_prefix", ""),
        policy=p["policy_name"],
        model=model,
        end_user=p["end_user"],
        tags=dict(p.get("metadata") or {}),
    )


@dataclass(frozen=True, slots=True)
class CheckCall:
    """One model call a quality check made, as the ledger counts it."""

    model: str
    input_tokens: int
    output_tokens: int
    cost: Decimal
    cached_input_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "cost": str(self.cost)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckCall:
        return cls(
            model=d["model"],
            input_tokens=d["input_tokens"],
            output_tokens=d["output_tokens"],
            cost=Decimal(d["cost"]),
            cached_input_tokens=d.get("cached_input_tokens", 0),
        )

    @classmethod
    def of_usage(cls, endpoint: EndpointSnapshot, usage: Usage) -> CheckCall:
        """A call billed for `usage`: a completion's, or what a failed call was billed."""
        cost = attempt_cost(endpoint, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
        return cls(endpoint.name, usage.input_tokens, usage.output_tokens, cost, usage.cached_input_tokens)

    @classmethod
    def of_attempt(cls, a: Attempt) -> CheckCall:
        return cls(a.model, a.input_tokens, a.output_tokens, a.cost, a.cached_input_tokens)


def check_lines(record: RequestRecord, calls: Sequence[CheckCall], at: datetime) -> list[LedgerLine]:
    """One line per call; the first also counts the check. No calls, no lines."""
    day = billing_day(at.isoformat())
    lines = [_check_line(record, day, call) for call in calls]
    if lines:
        lines[0].quality_checks = 1
    return lines


def _check_line(record: RequestRecord, day: Any, call: CheckCall) -> LedgerLine:
    return LedgerLine(
        day=day,
        team=record.team,
        app=record.app,
        api_key_prefix=record.api_key_prefix,
        policy=record.policy_name,
        model=call.model,
        end_user=record.end_user,
        attempts=1,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        cached_input_tokens=call.cached_input_tokens,
        cost=call.cost,
        quality_cost=call.cost,
        tags=dict(record.metadata or {}),
    )


def evaluation_spend(evaluation: ShadowEvaluation) -> CheckCall:
    """An evaluation's calls, all to its reference model, as one ledger call."""
    return CheckCall(evaluation.reference_model, evaluation.input_tokens, evaluation.output_tokens, evaluation.cost)


class Usage(Protocol):
    """Tokens a call was billed for (a `Completion`, a `ProviderError`, a `BilledUsage`)."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cached_input_tokens(self) -> int: ...
