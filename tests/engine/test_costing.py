"""Cost of one attempt and the worst case a budget reserves, in exact Decimals."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from routing.engine import attempt_cost, worst_case_cost
from routing.engine.costing import cached_input_price, resolve_max_tokens
from routing.engine.types import Tier
from testing.fakes import chat, endpoint, policy, rules, tier


def test_prices_input_and_output_per_million_tokens() -> None:
    # 1,234 × $0.50 + 567 × $1.50 = $617 + $850.50 = $1,467.50 per million tokens.
    model = endpoint(1, input_price="0.50", output_price="1.50")

    assert attempt_cost(model, 1234, 567) == Decimal("0.0014675000")


def test_cost_is_a_decimal_quantized_to_ten_places() -> None:
    cost = attempt_cost(endpoint(1, input_price="0.15", output_price="0.60"), 1, 1)

    assert isinstance(cost, Decimal)
    assert cost == Decimal("0.00000075")
    assert cost.as_tuple().exponent == -10


def test_rounds_half_up_at_the_tenth_place() -> None:
    # One token at $0.00025/M is $0.00000000025: exactly half of the last place kept.
    # Banker's rounding would give ...02; the ledger rounds half up to ...03.
    model = endpoint(1, input_price="0.00025", output_price="0")

    assert attempt_cost(model, 1, 0) == Decimal("0.0000000003")


def test_cached_input_tokens_use_the_cached_price() -> None:
    # 2,000 × $3 + 8,000 × $0.30 + 500 × $15 = $6,000 + $2,400 + $7,500 per million tokens.
    model = endpoint(1, input_price="3.00", output_price="15.00", options={"cached_input_price_per_m": "0.30"})

    assert attempt_cost(model, 10_000, 500, cached_input_tokens=8_000) == Decimal("0.0159")


def test_cached_tokens_cost_the_input_price_when_no_cached_price_is_set() -> None:
    model = endpoint(1, input_price="3.00", output_price="15.00")

    assert attempt_cost(model, 10_000, 500, cached_input_tokens=8_000) == attempt_cost(model, 10_000, 500)


def test_a_float_cached_price_does_not_bring_binary_error_along() -> None:
    # Decimal(0.1) would be 0.1000000000000000055511151231257827…
    model = endpoint(1, input_price="1", output_price="0", options={"cached_input_price_per_m": 0.1})

    assert cached_input_price(model) == Decimal("0.1")
    assert attempt_cost(model, 3_000_000, 0, cached_input_tokens=3_000_000) == Decimal("0.3")


@pytest.mark.parametrize("bad", ["thirty cents", "-1", "NaN", "Infinity"])
def test_a_mistyped_cached_price_falls_back_to_the_input_price(bad: str) -> None:
    model = endpoint(1, input_price="3.00", output_price="0", options={"cached_input_price_per_m": bad})

    assert cached_input_price(model) == Decimal("3.00")


def test_more_cached_tokens_than_input_tokens_are_capped() -> None:
    model = endpoint(1, input_price="2", output_price="0", options={"cached_input_price_per_m": "1"})

    assert attempt_cost(model, 1_000_000, 0, cached_input_tokens=5_000_000) == Decimal("1")


def test_no_tokens_cost_nothing() -> None:
    assert attempt_cost(endpoint(1), 0, 0) == Decimal(0)


def test_worst_case_assumes_every_tier_answers_with_its_full_allowance() -> None:
    # The prompt is 40 bytes: at most 40 tokens + 4 for the message = 44 input tokens.
    # Tier 0: 44 × $1 + 1,000 × $2 = $2,044 per million tokens.
    # Tier 1: capped at 500 output tokens: 44 × $10 + 500 × $30 = $15,440 per million.
    snapshot = policy(
        tier(0, endpoint_max_tokens=1000, input_price="1", output_price="2"),
        tier(1, max_tokens=500, endpoint_max_tokens=4096, input_price="10", output_price="30"),
    )

    assert worst_case_cost(snapshot, chat("x" * 40)) == Decimal("0.017484")


def test_worst_case_input_is_bounded_by_bytes_not_characters() -> None:
    # 10 CJK characters are 30 UTF-8 bytes; tokenizers often spend a token (or more)
    # on each, so the four-characters-a-token estimate (3 tokens) would reserve too little.
    snapshot = policy(tier(0, endpoint_max_tokens=1, input_price="1000000", output_price="0"))

    assert worst_case_cost(snapshot, chat("预算" * 5)) == Decimal(30 + 4)


def test_worst_case_starts_on_the_prompt_routers_tier() -> None:
    snapshot = policy(
        tier(0, input_price="0", output_price="1"),
        tier(1, endpoint_max_tokens=100, input_price="0", output_price="1000"),
        tier(2, endpoint_max_tokens=100, input_price="0", output_price="3000"),
    )

    assert worst_case_cost(snapshot, chat("hi"), first_tier=1) == Decimal("0.4")
    assert worst_case_cost(snapshot, chat("hi"), first_tier=7) == Decimal("0.3")


def test_worst_case_counts_every_try_a_tier_may_make() -> None:
    # Up to 1 + 2 retries, each cut off by a timeout and billed its 100 output tokens in full.
    retried = dataclasses.replace(endpoint(1, input_price="0", output_price="1000", max_tokens=100), max_retries=2)
    snapshot = policy(Tier(position=0, endpoint=retried, threshold=0.5))

    assert worst_case_cost(snapshot, chat("hi")) == Decimal("0.3")


def test_worst_case_counts_a_tier_at_its_dearer_fallback() -> None:
    fallback = endpoint(9, input_price="0", output_price="5000")
    primary = dataclasses.replace(endpoint(1, input_price="0", output_price="1", max_tokens=100), fallback=fallback)
    snapshot = policy(Tier(position=0, endpoint=primary, threshold=0.5))

    assert worst_case_cost(snapshot, chat("hi")) == Decimal("0.5")


def test_worst_case_respects_the_requests_max_tokens() -> None:
    snapshot = policy(tier(0, endpoint_max_tokens=1000, input_price="0", output_price="1"))

    assert worst_case_cost(snapshot, chat("hi", max_tokens=10)) == Decimal("0.00001")


def test_worst_case_skips_tiers_below_the_task_rules_first_tier() -> None:
    snapshot = policy(
        tier(0, input_price="0", output_price="1000"),
        tier(1, endpoint_max_tokens=100, input_price="0", output_price="1"),
        task_rules=rules(("legal", "contract", 1)),
    )

    assert worst_case_cost(snapshot, chat("Review this contract")) == Decimal("0.0001")


def test_max_tokens_is_the_tightest_cap_that_is_set() -> None:
    capped = tier(0, max_tokens=300, endpoint_max_tokens=1024)
    uncapped = tier(1, endpoint_max_tokens=2048)

    assert resolve_max_tokens(chat(max_tokens=500), capped) == 300
    assert resolve_max_tokens(chat(max_tokens=200), capped) == 200
    assert resolve_max_tokens(chat(), uncapped) == 2048
    assert resolve_max_tokens(chat(max_tokens=0), uncapped) == 2048
