"""What one attempt costs, and the most a whole cascade could cost.

Prices are USD per million tokens and every figure is a `Decimal`: the ledger and the
monthly reports add up millions of these, and float rounding would make them disagree
with the provider's invoice. Results are quantized to 10 decimal places, enough for a
single token on the cheapest model (fractions of a micro-dollar).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from .classify import classify
from .tokens import estimate_prompt_tokens, estimate_tokens
from .types import CascadeResult, ChatRequest, ModelEndpoint, PolicySnapshot, Tier

PER_MILLION = Decimal(1_000_000)
QUANTUM = Decimal("1e-10")
CACHED_PRICE_OPTION = "cached_input_price_per_m"
# Only reached when every cap is unset or zero, which a valid endpoint row never is.
FALLBACK_MAX_TOKENS = 1024


def attempt_cost(
    endpoint: ModelEndpoint,
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


def cached_input_price(endpoint: ModelEndpoint) -> Decimal:
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


def worst_case_cost(policy: PolicySnapshot, chat: ChatRequest) -> Decimal:
    """The cost if every tier that may run answered with its full token allowance.

    Budgets reserve this before the call. Every tier from the one the task rules
    start on may run, since failures fall through whatever `max_escalations` says.
    """
    prompt_tokens = estimate_prompt_tokens(chat)
    first = classify(chat, policy).first_tier
    costs = (
        attempt_cost(tier.endpoint, prompt_tokens, resolve_max_tokens(chat, tier)) for tier in policy.tiers[first:]
    )
    return sum(costs, Decimal(0))


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
