"""The cascade engine: plain Python, no Django.

Classify a request, call the cheapest suitable model, score its answer, escalate to a
stronger model when the score is too low. Everything arrives as arguments (a frozen
`PolicySnapshot`, `Provider` objects, a `Scorer`), so the engine runs the same in the
HTTP hot path, in offline replays and in tests, without a database. An import-linter
contract keeps Django, DRF, Channels, Celery and the other apps out of this package.
"""

from __future__ import annotations

from routing.engine.cascade import run_cascade
from routing.engine.classify import DEFAULT_TASK_RULES, TaskMatch, classify
from routing.engine.costing import attempt_cost, worst_case_cost
from routing.engine.scoring import SCORERS, HeuristicScorer, LogprobScorer, scorer_for
from routing.engine.types import (
    Attempt,
    CascadeResult,
    ChatRequest,
    Completion,
    EndpointSnapshot,
    Message,
    Outcome,
    PolicySnapshot,
    ProviderType,
    TaskRuleSnapshot,
    Tier,
)

__all__ = [
    "DEFAULT_TASK_RULES",
    "SCORERS",
    "Attempt",
    "CascadeResult",
    "ChatRequest",
    "Completion",
    "EndpointSnapshot",
    "HeuristicScorer",
    "LogprobScorer",
    "Message",
    "Outcome",
    "PolicySnapshot",
    "ProviderType",
    "TaskMatch",
    "TaskRuleSnapshot",
    "Tier",
    "attempt_cost",
    "classify",
    "run_cascade",
    "scorer_for",
    "worst_case_cost",
]
