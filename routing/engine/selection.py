"""Selection: which tiers a request may use and which one it starts on.

Hard constraints first: a tier whose context window cannot hold the prompt plus the
answer's token allowance, or whose model lacks what the request needs (tools, JSON
output, images), is skipped; so is one whose p95 latency (measured, else the registry's
typical latency) is over the policy's latency budget, unless no tier meets the budget.
The tiers left are ranked by a weighted score of cost, quality, latency and task fit, with
the weights of the policy's goal; the best one starts the cascade, the cheaper ones are
skipped, the stronger ones stay above it to escalate to. A request of a category that has
a ladder on the policy climbs that ladder instead of the policy's tiers. The plan says
which constraint or weight decided. See docs/selection.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from routing.engine.classify import clamp_tier, classify
from routing.engine.costing import attempt_cost, resolve_max_tokens
from routing.engine.selection_data import Measure
from routing.engine.tokens import estimate_prompt_tokens
from routing.engine.types import ChatRequest, PolicySnapshot, TaskRuleSnapshot, Tier

GENERAL = "general"
# Fewer measured requests than these and the registry's figures stand instead.
MIN_LATENCY_SAMPLES = 20
MIN_QUALITY_SAMPLES = 30
NEUTRAL_FIT = 0.5
NO_MEASURE = Measure()


class NoTierFits(Exception):
    """No tier of the request's ladder can take it: `code` says why, in the API's words."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RequestNeeds:
    """What a tier must have to take the request."""

    prompt_tokens: int
    tools: bool = False
    json: bool = False
    images: bool = False


@dataclass(frozen=True, slots=True)
class Skip:
    tier: int
    model: str
    reason: str  # "context_window", "needs_tools", "needs_json", "needs_images", "latency_budget", "ranked_below"


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """Where a request goes: the tiers it may use, starting with the chosen one, and why."""

    category: str
    ladder: str
    source: PolicySnapshot  # the request's policy, as planned on
    tiers: tuple[Tier, ...]  # the ones it may use
    start: int  # the starting tier's position on its ladder
    decided_by: str
    skipped: tuple[Skip, ...] = ()
    scores: Mapping[int, float] = dataclasses.field(default_factory=dict)

    def decision(self) -> dict[str, Any]:
        """The plan as the request's record keeps it (JSON-safe)."""
        return {
            "goal": self.source.optimisation_goal,
            "category": self.category,
            "ladder": self.ladder,
            "start": self.start,
            "decided_by": self.decided_by,
            "skipped": [{"tier": s.tier, "model": s.model, "reason": s.reason} for s in self.skipped],
            "scores": {str(position): round(score, 4) for position, score in self.scores.items()},
        }


def select_route(chat: ChatRequest, policy: PolicySnapshot, *, first_tier: int | None = None) -> RoutePlan:
    """Plan `chat` on `policy`. `first_tier` (a prompt router's pick) is a floor on the general ladder.

    Raises `NoTierFits` when no tier can take the request.
    """
    match = classify(chat, policy)
    ladder = policy.ladders.get(match.category)
    tiers = ladder if ladder else policy.tiers
    floor = 0 if ladder else (match.first_tier if first_tier is None else clamp_tier(first_tier, len(tiers)))
    needs = request_needs(chat)
    fitting, skipped = apply_constraints(chat, policy, tiers, needs)
    candidates = [t for t in fitting if index_of(tiers, t) >= floor] or fitting[-1:]
    by_position = terms(chat, policy, candidates, match.category)
    scores = rank(policy, by_position)
    best = max(candidates, key=lambda t: (round(scores[t.position], 9), -index_of(tiers, t)))
    skipped += [Skip(t.position, t.endpoint.name, "ranked_below") for t in fitting if tier_below(tiers, t, best)]
    kept = tuple(t for t in fitting if not tier_below(tiers, t, best))
    return RoutePlan(
        category=match.category,
        ladder=match.category if ladder else GENERAL,
        source=policy,
        tiers=kept,
        start=best.position,
        decided_by=deciding_term(policy, by_position, candidates, best, floor > 0),
        skipped=tuple(sorted(skipped, key=lambda s: s.tier)),
        scores=scores,
    )


def request_needs(chat: ChatRequest) -> RequestNeeds:
    response_format = getattr(chat, "response_format", None) or {}
    images = any(part.get("type") == "image_url" for message in chat.messages for part in getattr(message, "parts", ()))
    return RequestNeeds(
        prompt_tokens=estimate_prompt_tokens(chat),
        tools=bool(getattr(chat, "tools", ())),
        json=str(response_format.get("type", "text")) != "text",
        images=images,
    )


def apply_constraints(
    chat: ChatRequest, policy: PolicySnapshot, tiers: Sequence[Tier], needs: RequestNeeds
) -> tuple[list[Tier], list[Skip]]:
    """The tiers that meet every hard constraint, and why each other one was skipped."""
    skipped: list[Skip] = []
    fitting = []
    for tier in tiers:
        reason = context_or_capability(chat, tier, needs)
        if reason is None:
            fitting.append(tier)
        else:
            skipped.append(Skip(tier.position, tier.endpoint.name, reason))
    if not fitting:
        raise no_tier_fits(skipped, needs)
    fast = [t for t in fitting if within_latency_budget(policy, t)]
    # No tier meets the budget: a slow answer beats none, so the budget is not applied.
    if fast:
        skipped += [Skip(t.position, t.endpoint.name, "latency_budget") for t in fitting if t not in fast]
        fitting = fast
    return fitting, skipped


def context_or_capability(chat: ChatRequest, tier: Tier, needs: RequestNeeds) -> str | None:
    endpoint = tier.endpoint
    if needs.prompt_tokens + resolve_max_tokens(chat, tier) > endpoint.context_window:
        return "context_window"
    lacking = [
        name
        for name, needed, has in (
            ("tools", needs.tools, endpoint.supports_tools),
            ("json", needs.json, endpoint.supports_json),
            ("images", needs.images, endpoint.supports_images),
        )
        if needed and not has
    ]
    return f"needs_{lacking[0]}" if lacking else None


def no_tier_fits(skipped: Sequence[Skip], needs: RequestNeeds) -> NoTierFits:
    if all(s.reason == "context_window" for s in skipped):
        return NoTierFits(
            f"This request needs about {needs.prompt_tokens} prompt tokens plus its answer's allowance, "
            "more than the context window of any model this policy may use. Shorten the messages or "
            "lower max_tokens.",
            code="context_length_exceeded",
        )
    lacking = sorted({s.reason.removeprefix("needs_") for s in skipped if s.reason.startswith("needs_")})
    return NoTierFits(
        f"No model this policy may use supports what this request needs ({', '.join(lacking)}) "
        "within its context window.",
        code="unsupported_request",
    )


def within_latency_budget(policy: PolicySnapshot, tier: Tier) -> bool:
    return policy.latency_budget_ms is None or p95_latency_ms(policy, tier) <= policy.latency_budget_ms


def p95_latency_ms(policy: PolicySnapshot, tier: Tier) -> float:
    """The measured p95 when enough requests were measured, else the registry's typical latency."""
    measure = policy.measures.get((tier.endpoint.id, ""), NO_MEASURE)
    if measure.p95_latency_ms is not None and measure.latency_samples >= MIN_LATENCY_SAMPLES:
        return measure.p95_latency_ms
    return float(tier.endpoint.typical_latency_ms)


def quality(policy: PolicySnapshot, tier: Tier, category: str) -> float:
    """Measured on this category, else measured overall, else the registry's prior."""
    for key in ((tier.endpoint.id, category), (tier.endpoint.id, "")):
        measure = policy.measures.get(key, NO_MEASURE)
        if measure.quality is not None and measure.quality_samples >= MIN_QUALITY_SAMPLES:
            return measure.quality
    return tier.endpoint.quality_prior


def task_fit(policy: PolicySnapshot, tier: Tier, category: str) -> float:
    """How much better (above 0.5) or worse the endpoint does on this category than on all of them."""
    own = policy.measures.get((tier.endpoint.id, category), NO_MEASURE)
    overall = policy.measures.get((tier.endpoint.id, ""), NO_MEASURE)
    if min(own.quality_samples, overall.quality_samples) < MIN_QUALITY_SAMPLES:
        return NEUTRAL_FIT
    return min(1.0, max(0.0, NEUTRAL_FIT + (own.quality or 0.0) - (overall.quality or 0.0)))


def expected_cost(chat: ChatRequest, tier: Tier) -> float:
    prompt_tokens = estimate_prompt_tokens(chat)
    # A float is fine here: it only orders tiers, it is never billed.
    return float(attempt_cost(tier.endpoint, prompt_tokens, resolve_max_tokens(chat, tier)))


def terms(
    chat: ChatRequest, policy: PolicySnapshot, tiers: Sequence[Tier], category: str
) -> dict[int, dict[str, float]]:
    """Each tier's terms in [0, 1], higher better: cost and latency on a log scale between the extremes."""
    costs = low_is_better([expected_cost(chat, t) for t in tiers])
    latencies = low_is_better([p95_latency_ms(policy, t) for t in tiers])
    return {
        t.position: {
            "cost": costs[i],
            "quality": quality(policy, t, category),
            "latency": latencies[i],
            "fit": task_fit(policy, t, category),
        }
        for i, t in enumerate(tiers)
    }


def rank(policy: PolicySnapshot, by_position: Mapping[int, Mapping[str, float]]) -> dict[int, float]:
    """Each tier's weighted score in [0, 1], by position, from its `terms`."""
    weights = policy.weights.terms()
    total = sum(weights.values()) or 1.0
    return {p: sum(weights[k] * v for k, v in tier_terms.items()) / total for p, tier_terms in by_position.items()}


def deciding_term(
    policy: PolicySnapshot,
    by_position: Mapping[int, Mapping[str, float]],
    candidates: Sequence[Tier],
    best: Tier,
    floored: bool,
) -> str:
    """The weighted term that most set the start apart from the runner-up."""
    if len(candidates) == 1:
        return "task_rule" if floored else "only_candidate"
    weights = policy.weights.terms()
    others = [t for t in candidates if t is not best]
    margins = {
        name: min(weights[name] * (by_position[best.position][name] - by_position[t.position][name]) for t in others)
        for name in weights
    }
    return max(margins, key=lambda name: margins[name])


def low_is_better(values: Sequence[float]) -> list[float]:
    """1 for the lowest value, 0 for the highest, log-spaced between (prices span orders of magnitude)."""
    logs = [math.log(max(v, 1e-12)) for v in values]
    low, high = min(logs, default=0.0), max(logs, default=0.0)
    if high - low < 1e-9:
        return [1.0 for _ in values]
    return [(high - value) / (high - low) for value in logs]


def index_of(tiers: Sequence[Tier], tier: Tier) -> int:
    return next(i for i, t in enumerate(tiers) if t is tier)


def tier_below(tiers: Sequence[Tier], tier: Tier, start: Tier) -> bool:
    return index_of(tiers, tier) < index_of(tiers, start)


def routed_policy(chat: ChatRequest, policy: PolicySnapshot, *, first_tier: int | None = None) -> PolicySnapshot:
    """The copy of `policy` that routes `chat`: only the tiers its plan allows, the start first.

    One catch-all task rule names the plan's category and starts on tier 0, so everything
    downstream (budget holds, the cascade, streaming) classifies and starts as planned.
    """
    plan = select_route(chat, policy, first_tier=first_tier)
    return dataclasses.replace(
        policy,
        tiers=plan.tiers,
        task_rules=(TaskRuleSnapshot(position=0, category=plan.category, pattern="", first_tier=0),),
        # Its floor is in the plan already; on the cut tiers it would count twice.
        tools_first_tier=None,
        selection=MappingProxyType(plan.decision()),
    )
