"""The learned scorer: training, held-out metrics, the JSON round trip and the Scorer protocol."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from routing.engine import embeddings
from routing.engine.learned import LabelledExample, LearnedModel, LearnedScorer, answer_features, train_learned_model
from routing.engine.ports import Scorer
from routing.engine.types import ChatRequest, Completion, Message

FILLER = (
    "the",
    "a",
    "then",
    "so",
    "we",
    "it",
    "is",
    "of",
    "and",
    "to",
    "in",
    "for",
    "with",
    "on",
    "that",
    "this",
    "each",
)


def example(prompt: str, answer: str, acceptable: bool, task: str = "unknown") -> LabelledExample:
    chat = ChatRequest(messages=(Message(role="user", content=prompt),))
    completion = Completion(text=answer, finish_reason="stop", input_tokens=10, output_tokens=20, latency_ms=1.0)
    return LabelledExample(chat=chat, completion=completion, task=task, acceptable=acceptable)


def filler(rng: random.Random, words: int = 12) -> str:
    return " ".join(rng.choice(FILLER) for _ in range(words))


def separable(n: int = 240, seed: int = 1) -> list[LabelledExample]:
    """Good answers say "verified", bad ones "guessed"; the rest is noise."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = i % 2 == 0
        marker = "verified" if good else "guessed"
        rows.append(example(f"Question {filler(rng)}?", f"{filler(rng)} {marker} {filler(rng)}.", good))
    return rows


def arithmetic(n: int = 200, seed: int = 2) -> list[LabelledExample]:
    """Only the truth of the stated sum separates good from bad: the text is otherwise alike."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        good = i % 2 == 0
        result = a + b if good else a + b + rng.choice([-10, -1, 1, 10])
        prompt = f"Tom has {a} apples and buys {b} more. How many apples does he have in total?"
        rows.append(example(prompt, f"He has {a} + {b} = {result} apples.\n#### {result}", good, "math"))
    return rows


def test_it_separates_separable_data() -> None:
    _, metrics = train_learned_model(separable(), seed=0, holdout=0.3)

    assert metrics["auc"] > 0.9
    assert metrics["accuracy"] > 0.8


def test_shuffled_labels_give_chance_auc() -> None:
    rows = separable(n=400)
    labels = [row.acceptable for row in rows]
    random.Random(3).shuffle(labels)
    shuffled = [example(r.chat.prompt, r.completion.text, label) for r, label in zip(rows, labels, strict=True)]

    _, metrics = train_learned_model(shuffled, seed=0, holdout=0.5)

    assert 0.35 < metrics["auc"] < 0.65


def test_it_learns_from_the_arithmetic_check() -> None:
    model, metrics = train_learned_model(arithmetic(), seed=0, holdout=0.3)
    right = example("Tom has 12 apples and buys 30 more. How many?", "He has 12 + 30 = 42 apples.\n#### 42", True)
    wrong = example("Tom has 12 apples and buys 30 more. How many?", "He has 12 + 30 = 52 apples.\n#### 52", False)

    assert metrics["auc"] > 0.9
    assert model.predict(right.chat, right.completion, "math") > model.predict(wrong.chat, wrong.completion, "math")


def test_metrics_describe_a_seeded_stratified_split() -> None:
    rows = separable(n=100)

    model, metrics = train_learned_model(rows, seed=7, holdout=0.2)
    again, same = train_learned_model(rows, seed=7, holdout=0.2)

    assert set(metrics) == {"n_train", "n_holdout", "auc", "brier", "accuracy", "base_rate"}
    assert (metrics["n_train"], metrics["n_holdout"]) == (80.0, 20.0)
    assert metrics["base_rate"] == 0.5  # 10 of each label held out
    assert 0.0 <= metrics["brier"] <= 1.0
    assert metrics == same
    assert model.to_dict() == again.to_dict()


def test_a_json_round_trip_predicts_exactly_the_same() -> None:
    rows = separable(n=120)
    model, _ = train_learned_model(rows, seed=0)

    stored = json.loads(json.dumps(model.to_dict()))
    loaded = LearnedModel.from_dict(stored)

    assert loaded.to_dict() == model.to_dict()
    for row in rows[:20]:
        assert loaded.predict(row.chat, row.completion, row.task) == model.predict(row.chat, row.completion, row.task)


def test_the_stored_form_names_its_kind_features_and_training() -> None:
    model, _ = train_learned_model(separable(n=60), seed=0)

    stored = model.to_dict()

    assert stored["kind"] == "learned_scorer"
    assert stored["version"] == 0
    assert "arithmetic_errors" in stored["features"]["dense_names"]
    assert stored["metadata"]["n_train"] == 48
    assert len(stored["model"]["dense_coef"]) == len(stored["features"]["dense_names"])


def test_from_dict_refuses_another_kind_of_model() -> None:
    stored = train_learned_model(separable(n=60), seed=0)[0].to_dict()

    with pytest.raises(ValueError, match="not a learned_scorer"):
        LearnedModel.from_dict({**stored, "kind": "prompt_router"})
    with pytest.raises(ValueError, match="features this version does not compute"):
        LearnedModel.from_dict({**stored, "features": {**stored["features"], "dense_names": ["telepathy"]}})


def test_one_label_only_gives_a_constant_model() -> None:
    rows = [example(f"Q{i}", f"Answer {i}.", True) for i in range(10)]

    model, metrics = train_learned_model(rows, seed=0, holdout=0.2)

    assert model.predict(rows[0].chat, rows[0].completion, "unknown") > 0.9
    assert math.isnan(metrics["auc"])  # undefined with one class
    assert model.to_dict()["metadata"]["metrics"]["auc"] is None  # stored JSON has no NaN
    json.dumps(model.to_dict(), allow_nan=False)


@pytest.mark.parametrize("holdout", [-0.1, 1.0])
def test_the_holdout_must_leave_rows_to_train_on(holdout: float) -> None:
    with pytest.raises(ValueError, match="holdout"):
        train_learned_model(separable(n=20), holdout=holdout)


def test_the_learned_scorer_is_a_scorer_in_zero_to_one() -> None:
    model, _ = train_learned_model(separable(n=80), seed=0)
    scorer = LearnedScorer(model)
    row = separable(n=2)[1]

    assert isinstance(scorer, Scorer)
    assert scorer.name == "learned"
    assert 0.0 <= scorer.score(row.chat, row.completion, task="unknown") <= 1.0


def test_features_reuse_the_heuristic_checks() -> None:
    wrong = arithmetic(n=2)[1]

    values = answer_features(wrong.chat, wrong.completion, "math")

    assert values["arithmetic_errors"] == 1.0
    assert values["heuristic_score"] < 1.0
    assert values["final_derived"] == 1.0  # the wrong result is the one the working stated


def test_an_answer_with_a_309_digit_number_trains_and_scores_finitely() -> None:
    rows = arithmetic(n=60)
    huge = "1" * 400
    rows.append(example("How many grains of sand are there?", f"There are {huge} grains.\n#### {huge}", False, "math"))

    model, metrics = train_learned_model(rows, seed=0, holdout=0.2)
    values = answer_features(rows[-1].chat, rows[-1].completion, "math")

    assert all(math.isfinite(value) for value in values.values())
    assert math.isfinite(metrics["brier"])
    assert 0.0 <= model.predict(rows[-1].chat, rows[-1].completion, "math") <= 1.0


def test_token_logprobs_become_features() -> None:
    row = separable(n=2)[0]
    sure = Completion(text=row.completion.text, finish_reason="stop", input_tokens=1, output_tokens=3, latency_ms=1.0,
                      logprobs=(-0.01, -0.02, -2.5))  # fmt: skip

    values = answer_features(row.chat, sure, "unknown")
    without = answer_features(row.chat, row.completion, "unknown")

    assert values["has_logprobs"] == 1.0 and without["has_logprobs"] == 0.0
    assert values["logprob_min"] == -2.5
    assert values["log_logprob_count"] == pytest.approx(math.log1p(3))
    assert without["logprob_min"] == 0.0


def test_embeddings_asked_for_but_missing_fall_back_to_text_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "available", lambda: False)

    model, _ = train_learned_model(separable(n=60), seed=0, use_embeddings=True)

    assert model.spec.embeddings is False
    assert model.to_dict()["features"]["embeddings"] is None


def fake_embed(texts: Sequence[str]) -> np.ndarray[Any, Any]:
    """A stand-in for the sentence model: dimension 0 says whether the text is "verified"."""
    vectors = np.zeros((len(texts), embeddings.DIMENSIONS), dtype=np.float32)
    vectors[:, 0] = [1.0 if "verified" in text else -1.0 for text in texts]
    vectors[:, 1] = [len(text) % 5 for text in texts]
    return vectors


def test_a_model_with_embeddings_round_trips_and_survives_their_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "available", lambda: True)
    monkeypatch.setattr(embeddings, "embed", fake_embed)
    rows = separable(n=120)

    model, metrics = train_learned_model(rows, seed=0, use_embeddings=True)
    loaded = LearnedModel.from_dict(json.loads(json.dumps(model.to_dict())))
    with_embeddings = [model.predict(r.chat, r.completion, r.task) for r in rows[:10]]

    assert metrics["auc"] > 0.9
    assert model.to_dict()["features"]["embeddings"] is not None
    assert len(model.linear.dense_coef) == len(model.spec.dense_names) + 2 * embeddings.DIMENSIONS
    assert [loaded.predict(r.chat, r.completion, r.task) for r in rows[:10]] == with_embeddings
    monkeypatch.setattr(embeddings, "embed", lambda texts: None)  # the extra is gone in this worker
    assert all(0.0 <= model.predict(r.chat, r.completion, r.task) <= 1.0 for r in rows[:10])
