"""What one attempt costs, and the most a whole cascade could cost.

Prices are USD per million tokens and every figure is a `Decimal`: the ledger and the
monthly reports add up millions of these, and float rounding would make them disagree
with the provider's invoice. Results are quantized to 10 decimal places, enough for a
single token on the cheapest model (fractions of a micro-dollar).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from routing.engine.classify import classify, tools_floor
from routing.engine.tokens import estimate_prompt_tokens, estimate_tokens, max_prompt_tokens
from routing.engine.types import NO_GATE, CascadeResult, ChatRequest, EndpointSnapshot, PolicySnapshot, Tier

PER_MILLION = Decimal(1_000_000)
QUANTUM = Decimal("1e-10")
CACHED_PRICE_OPTION = "cached_input_price_per_m"
# A judge answers in a word; its prompt is the rubric around the request and the answer.
JUDGE_MAX_TOKENS = 4
JUDGE_RUBRIC_TOKENS = 80
# Only reached when every cap is unset or zero, which a valid endpoint row never is.
FALLBACK_MAX_TOKENS = 1024


def attempt_cost(
    endpoint: EndpointSnapshot,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
) -> Decimal:
    """USD cost of one call to `endpoint`.

    `input_tokens` includes the cached ones, as the providers report it; those are
    billed at the endpoint's cached-input price when it has one.
    """
    cached = min(max(cached_input_tokens, 0), input_tokens)
    total = (
        (input_tokens - cached) * endpoint.input_price_per_m
        + cached * cached_input_price(endpoint)
        + output_tokens * endpoint.output_price_per_m
    )
    return (total / PER_MILLION).quantize(QUANTUM, rounding=ROUND_HALF_UP)


def cached_input_price(endpoint: EndpointSnapshot) -> Decimal:
    """Price per 1M cached input tokens: the price book's, the `options` override, else the input price."""
    if endpoint.cached_input_price_per_m is not None:
        return endpoint.cached_input_price_per_m
    raw = endpoint.options.get(CACHED_PRICE_OPTION)
    if raw is None or raw == "":
        return endpoint.input_price_per_m
    try:
        # str() first: a float from JSON options must not bring its binary error along.
        price = raw if isinstance(raw, Decimal) else Decimal(str(raw))
    except InvalidOperation:
        price = Decimal("NaN")
    # A mistyped option is priced as uncached rather than failing a request whose call
    # has already been paid for; the full price never under-reports spend.
    return price if price.is_finite() and price >= 0 else endpoint.input_price_per_m


def start_tier(policy: PolicySnapshot, chat: ChatRequest, first_tier: int | None = None) -> int:
    """The tier a cascade starts on: `first_tier` (a prompt router's pick) or the task rules'."""
    if first_tier is None:
        return classify(chat, policy).first_tier
    return min(max(tools_floor(chat, policy, first_tier), 0), len(policy.tiers) - 1)


def worst_case_cost(policy: PolicySnapshot, chat: ChatRequest, first_tier: int | None = None) -> Decimal:
    """The cost if every tier that may run were billed its full token allowance on every try.

    Budgets reserve this before the call. Every tier from the start tier on may run,
    since failures fall through whatever `max_escalations` says; a tier may be tried
    `1 + max_retries` times, each try that timed out billed in full; a tier whose breaker
    is open may be answered by its fallback endpoint, so it counts at the dearer of the two.
    """
    tiers = policy.tiers[start_tier(policy, chat, first_tier) :]
    return sum((tier_worst_case(tier, chat) for tier in tiers), Decimal(0))


@dataclass(frozen=True, slots=True)
class WorstCase:
    """The most one tier can be billed: on which endpoint, for how many tokens."""

    endpoint: EndpointSnapshot
    input_tokens: int
    output_tokens: int

    @property
    def cost(self) -> Decimal:
        return attempt_cost(self.endpoint, self.input_tokens, self.output_tokens)


def tier_worst_case_usage(tier: Tier, chat: ChatRequest) -> WorstCase:
    """Every try of `tier` (or of its fallback endpoint) billed its full allowance."""
    prompt_tokens, output_tokens = max_prompt_tokens(chat), resolve_max_tokens(chat, tier)
    endpoints = (tier.endpoint,) if tier.endpoint.fallback is None else (tier.endpoint, tier.endpoint.fallback)
    cases = (WorstCase(e, prompt_tokens * (1 + e.max_retries), output_tokens * (1 + e.max_retries)) for e in endpoints)
    return max(cases, key=lambda case: case.cost)


def tier_worst_case(tier: Tier, chat: ChatRequest) -> Decimal:
    """The most one tier (every try, on it or its fallback endpoint, and its gate's calls) can cost."""
    return tier_worst_case_usage(tier, chat).cost + gate_worst_case(tier, chat)


def gate_worst_case(tier: Tier, chat: ChatRequest) -> Decimal:
    """The most a tier's quality gate can add: its extra samples, its peers and its judge."""
    gate = tier.gate
    if not gate.active:
        return Decimal(0)
    own = tier_worst_case_usage(tier, chat).cost * (gate.samples - 1)
    peers = sum(
        (tier_worst_case_usage(dataclasses.replace(tier, endpoint=p, gate=NO_GATE), chat).cost for p in gate.peers),
        Decimal(0),
    )
    if gate.judge is None:
        return own + peers
    judge_prompt = max_prompt_tokens(chat) + resolve_max_tokens(chat, tier) + JUDGE_RUBRIC_TOKENS
    tries = 1 + gate.judge.max_retries
    return own + peers + attempt_cost(gate.judge, judge_prompt * tries, JUDGE_MAX_TOKENS * tries)


def resolve_max_tokens(chat: ChatRequest, tier: Tier) -> int:
    """The tightest of the request's, the tier's and the endpoint's output caps."""
    caps = (chat.max_tokens, tier.max_tokens, tier.endpoint.max_tokens)
    return min((cap for cap in caps if cap and cap > 0), default=FALLBACK_MAX_TOKENS)


def baseline_cost(policy: PolicySnapshot, chat: ChatRequest, result: CascadeResult) -> Decimal:
    """What the request would have cost on the policy's strongest tier alone.

    The same tokens in (as the answering tier counted them); out, the strongest tier's
    own count when it answered, else the answer's length estimated as that tier's tokens.
    Savings are measured against this.
    """
    strongest = policy.strongest.endpoint
    final = result.final
    if final is not None and final.endpoint_id == strongest.id:
        return attempt_cost(strongest, final.input_tokens, final.output_tokens)
    input_tokens = final.input_tokens if final is not None else estimate_prompt_tokens(chat)
    output_tokens = estimate_tokens(result.completion.text) if result.completion is not None else 0
    return attempt_cost(strongest, input_tokens, output_tokens)
