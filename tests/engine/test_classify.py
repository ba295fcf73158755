"""Task rules: which category a prompt is and which tier it starts on."""

from __future__ import annotations

import time

import pytest

from routing.engine import DEFAULT_TASK_RULES, TaskMatch, classify
from routing.engine.classify import compiled
from routing.engine.types import ChatRequest, Message, TaskRuleSnapshot
from testing.fakes import chat, policy, rules, tier

TWO_TIERS = (tier(0), tier(1))
DEFAULTS = policy(*TWO_TIERS, task_rules=rules(*DEFAULT_TASK_RULES))


def test_the_first_matching_rule_by_position_wins() -> None:
    # Listed out of order: positions, not tuple order, decide.
    snapshot = policy(
        *TWO_TIERS,
        task_rules=(TaskRuleSnapshot(2, "broad", r"order", 0), TaskRuleSnapshot(1, "specific", r"order status", 1)),
    )

    assert classify(chat("What is my order status?"), snapshot) == TaskMatch("specific", 1)
    assert classify(chat("I want to order a book"), snapshot) == TaskMatch("broad", 0)


def test_patterns_match_case_insensitively_anywhere_in_the_prompt() -> None:
    snapshot = policy(*TWO_TIERS, task_rules=rules(("legal", r"\bcontract\b", 1)))

    assert classify(chat("Please review this CONTRACT for me"), snapshot) == TaskMatch("legal", 1)


def test_a_prompt_no_rule_matches_is_unknown_on_the_cheapest_tier() -> None:
    snapshot = policy(*TWO_TIERS, task_rules=rules(("legal", r"\bcontract\b", 1)))

    assert classify(chat("Tell me a joke"), snapshot) == TaskMatch("unknown", 0)


def test_rules_look_at_the_last_user_message() -> None:
    snapshot = policy(*TWO_TIERS, task_rules=rules(("legal", r"contract", 1)))
    request = ChatRequest(
        (
            Message("user", "Check this contract"),
            Message("assistant", "It looks fine."),
            Message("user", "Thanks, and now a poem please"),
        )
    )

    assert classify(request, snapshot).category == "unknown"


def test_short_prompts_start_on_the_cheapest_tier() -> None:
    snapshot = policy(*TWO_TIERS, task_rules=rules(("legal", r"contract", 1)), short_prompt_tokens=20)

    # "Sign the contract?" is 18 characters: 5 tokens + 4 for the message, under 20.
    assert classify(chat("Sign the contract?"), snapshot) == TaskMatch("legal", 0)
    # 83 characters: 21 tokens + 4, not short.
    long_prompt = "Please review the termination and liability clauses of this long supplier contract"
    assert classify(chat(long_prompt), snapshot) == TaskMatch("legal", 1)


def test_first_tier_is_clamped_to_the_tiers_there_are() -> None:
    snapshot = policy(*TWO_TIERS, task_rules=rules(("hard", r"proof", 7), ("odd", r"negative", -2)))

    assert classify(chat("Write a proof"), snapshot).first_tier == 1
    assert classify(chat("A negative number"), snapshot).first_tier == 0
    assert classify(chat("Write a proof"), policy(task_rules=snapshot.task_rules)).first_tier == 0


def test_an_invalid_pattern_never_matches_instead_of_failing_the_request() -> None:
    snapshot = policy(*TWO_TIERS, task_rules=rules(("broken", r"([unclosed", 1), ("legal", r"contract", 1)))

    assert classify(chat("A contract ([unclosed"), snapshot).category == "legal"


def test_patterns_are_compiled_once() -> None:
    assert compiled(r"\bunique pattern\b") is compiled(r"\bunique pattern\b")


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("Hello!", "greeting"),
        ("good morning", "greeting"),
        ("Hey, how are you?", "greeting"),
        ("Hello, where is my order?", "order_status"),
        ("Hi, can you recommend a manga like Berserk?", "recommendation"),
        ("What's the delivery status of order 1182?", "order_status"),
        ("My delivery is late, can you track it?", "order_status"),
        ("Janet has 16 eggs and eats 3. How many eggs are left?", "math"),
        ("Compare One Piece vs Naruto for a new reader", "comparison"),
        ("Can you summarize chapter 3 of Berserk?", "summarization"),
        ("Please translate this synopsis into French", "translation"),
        ("What is your return policy?", "faq"),
        ("Do you have Chainsaw Man volume 1 in stock?", "product_search"),
        ("Recommend a manga similar to Vinland Saga", "recommendation"),
        ("Why does Evangelion's ending divide fans?", "discussion"),
        ("Write me a haiku about the sea", "unknown"),
    ],
)
def test_default_rules_recognise_the_bookshop_categories(prompt: str, category: str) -> None:
    assert classify(chat(prompt), DEFAULTS).category == category


def test_default_rules_all_start_on_the_cheapest_tier_and_compile() -> None:
    assert {first for _, _, first in DEFAULT_TASK_RULES} == {0}
    assert all(compiled(pattern) is not None for _, pattern, _ in DEFAULT_TASK_RULES)
    assert "unknown" not in {category for category, _, _ in DEFAULT_TASK_RULES}


def test_the_math_rule_needs_a_number() -> None:
    assert classify(chat("How many volumes of Berserk are there?"), DEFAULTS).category != "math"


def test_a_hostile_prompt_does_not_stall_the_default_rules() -> None:
    # "order" a thousand times with no "status": a backtracking pattern took seconds here.
    started = time.perf_counter()
    classify(chat("order " * 5000), DEFAULTS)

    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(("where", "category"), [("start", "legal"), ("end", "legal"), ("middle", "unknown")])
def test_a_huge_prompt_is_classified_from_its_start_and_its_end(where: str, category: str) -> None:
    snapshot = policy(*TWO_TIERS, task_rules=rules(("legal", r"\bcontract\b", 1)))
    filler = "lorem ipsum " * 90_000  # about 1 MB: classification reads a bounded part of it
    prompt = {"start": "contract " + filler, "end": filler + " contract", "middle": filler + " contract " + filler}

    assert classify(chat(prompt[where]), snapshot).category == category
