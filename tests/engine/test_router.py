"""The prompt-only router: training, categorical extras, the JSON round trip, first-tier choice."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from routing.engine import embeddings
from routing.engine.router import PromptRouter, first_tier_for, sparse_row, train_prompt_router
from routing.engine.textfeatures import bucket

FILLER = (
    "what",
    "is",
    "the",
    "value",
    "of",
    "a",
    "an",
    "in",
    "on",
    "for",
    "with",
    "which",
    "one",
    "these",
    "following",
    "best",
)
HARD_TOPIC = "quantum entanglement"
EASY_TOPIC = "pancake recipe"


def filler(rng: random.Random, words: int = 10) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(words))


def question(rng: random.Random, topic: str) -> str:
    return f"{filler(rng)} {topic} {filler(rng)}?"


def topic_prompts(n: int = 200, seed: int = 1) -> tuple[list[str], list[bool]]:
    """Quantum questions trip the cheap model up, recipe questions do not."""
    rng = random.Random(seed)
    prompts, correct = [], []
    for i in range(n):
        hard = i % 2 == 0
        prompts.append(question(rng, HARD_TOPIC if hard else EASY_TOPIC))
        correct.append(not hard)
    return prompts, correct


@pytest.fixture(scope="module")
def router() -> PromptRouter:
    prompts, correct = topic_prompts()
    return train_prompt_router(prompts, correct, seed=0)


def test_it_learns_which_prompts_need_the_strong_model(router: PromptRouter) -> None:
    rng = random.Random(99)  # prompts it has not seen
    hard = [router.predict(question(rng, HARD_TOPIC)) for _ in range(20)]
    easy = [router.predict(question(rng, EASY_TOPIC)) for _ in range(20)]

    assert min(hard) > 0.5 > max(easy)


def test_it_is_near_chance_on_labels_unrelated_to_the_prompt() -> None:
    prompts, _ = topic_prompts(n=300)
    coin = random.Random(5)
    router = train_prompt_router(prompts, [coin.random() < 0.5 for _ in prompts], seed=0)

    rng = random.Random(99)
    assert 0.3 < router.predict(question(rng, HARD_TOPIC)) < 0.7


def test_a_categorical_column_is_a_feature() -> None:
    rng = random.Random(2)
    prompts = [f"{filler(rng)}?" for _ in range(200)]
    subjects = [{"subject": "abstract_algebra" if i % 2 else "marketing"} for i in range(200)]
    correct = [subject["subject"] == "marketing" for subject in subjects]

    router = train_prompt_router(prompts, correct, seed=0, extra_features=subjects)

    prompt = "which one of these is the best value?"
    assert router.predict(prompt, extra={"subject": "abstract_algebra"}) > 0.8
    assert router.predict(prompt, extra={"subject": "marketing"}) < 0.2
    assert router.spec.extra_columns == ("subject",)


def test_a_json_round_trip_predicts_exactly_the_same(router: PromptRouter) -> None:
    loaded = PromptRouter.from_dict(json.loads(json.dumps(router.to_dict())))
    prompts, _ = topic_prompts(n=20, seed=9)

    assert loaded.to_dict() == router.to_dict()
    assert [loaded.predict(p) for p in prompts] == [router.predict(p) for p in prompts]


def test_words_every_prompt_has_weigh_less_than_words_that_tell_prompts_apart(router: PromptRouter) -> None:
    def idf(words: str) -> float:
        return router.spec.idf[bucket(f"prompt:{words}", router.spec.buckets)]

    assert idf("quantum") > idf("what") >= router.spec.idf[min(router.spec.idf, key=router.spec.idf.__getitem__)]
    assert router.spec.unseen_idf > idf("quantum")
    row = sparse_row(router.spec, "what quantum", {})
    assert row[bucket("prompt:quantum", router.spec.buckets)] > row[bucket("prompt:what", router.spec.buckets)]


def test_a_router_stored_without_idf_weights_loads_and_weighs_nothing(router: PromptRouter) -> None:
    stored = router.to_dict()
    stored["features"] = {key: value for key, value in stored["features"].items() if key != "idf"}

    loaded = PromptRouter.from_dict(stored)

    assert loaded.spec.idf == {}
    row = sparse_row(loaded.spec, "what quantum", {})
    assert row[bucket("prompt:quantum", loaded.spec.buckets)] == pytest.approx(
        row[bucket("prompt:what", loaded.spec.buckets)]
    )


def test_the_stored_form_names_its_kind_and_training(router: PromptRouter) -> None:
    stored = router.to_dict()

    assert stored["kind"] == "prompt_router"
    assert stored["metadata"]["n_train"] == 200
    assert stored["metadata"]["base_rate"] == 0.5
    with pytest.raises(ValueError, match="not a prompt_router"):
        PromptRouter.from_dict({**stored, "kind": "learned_scorer"})


def test_first_tier_is_the_cheapest_below_the_threshold_and_the_strongest_above(router: PromptRouter) -> None:
    rng = random.Random(99)
    hard, easy = question(rng, HARD_TOPIC), question(rng, EASY_TOPIC)

    assert first_tier_for(router, easy, threshold=0.5, tiers=3) == 0
    assert first_tier_for(router, hard, threshold=0.5, tiers=3) == 2
    assert first_tier_for(router, hard, threshold=0.5, tiers=1) == 0
    assert first_tier_for(router, hard, threshold=0.5, tiers=0) == 0  # never an index before the first tier
    assert first_tier_for(router, hard, threshold=1.01, tiers=2) == 0  # a threshold nothing reaches


def test_with_strong_grades_it_learns_where_the_strong_model_helps() -> None:
    rng = random.Random(4)
    # Cheap is wrong on both topics, but the strong model only gets the quantum ones right.
    prompts = [question(rng, HARD_TOPIC if i % 2 else EASY_TOPIC) for i in range(200)]
    strong_correct = [HARD_TOPIC in prompt for prompt in prompts]

    router = train_prompt_router(prompts, [False] * 200, seed=0, strong_correct=strong_correct)

    assert router.predict(question(rng, HARD_TOPIC)) > 0.5 > router.predict(question(rng, EASY_TOPIC))
    assert router.metadata["label"] == "cheap_wrong_strong_right"


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="same length"):
        train_prompt_router(["a", "b"], [True], seed=0)
    with pytest.raises(ValueError, match="same length"):
        train_prompt_router(["a", "b"], [True, False], extra_features=[{"subject": "x"}])
    with pytest.raises(ValueError, match="same length"):
        train_prompt_router(["a", "b"], [True, False], strong_correct=[True])


def test_a_router_with_embeddings_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_embed(texts: Sequence[str]) -> np.ndarray[Any, Any]:
        vectors = np.zeros((len(texts), embeddings.DIMENSIONS), dtype=np.float32)
        vectors[:, 0] = [1.0 if HARD_TOPIC in text else 0.0 for text in texts]
        return vectors

    monkeypatch.setattr(embeddings, "available", lambda: True)
    monkeypatch.setattr(embeddings, "embed", fake_embed)
    prompts, correct = topic_prompts(n=120)

    router = train_prompt_router(prompts, correct, seed=0, use_embeddings=True)
    loaded = PromptRouter.from_dict(json.loads(json.dumps(router.to_dict())))

    assert router.spec.embeddings is True
    assert [loaded.predict(p) for p in prompts[:10]] == [router.predict(p) for p in prompts[:10]]
    monkeypatch.setattr(embeddings, "embed", lambda texts: None)
    assert router.predict(prompts[0]) > 0.5 > router.predict(prompts[1])  # the text features still work
