"""A learned scorer: P(the cheap answer is acceptable), fitted on labelled requests.

The heuristic scorer's penalties were set by hand; on real traffic the right weights
differ per policy and per model. `train_learned_model` fits a logistic regression on
labelled (request, cheap answer, acceptable?) examples, using:

- every number the heuristic computes (`scoring.features`, which already re-does the
  arithmetic an answer states) and the heuristic's own score;
- answer-format and self-consistency checks: is there a final number, is it one the
  working derived, does the answer use the problem's numbers, does it doubt itself;
- the model's token probabilities when the provider returned them (mean, minimum and
  low percentiles of the log-probabilities, `scoring.logprob_features`);
- hashed word n-grams of the prompt and of the answer, and the task category;
- optionally, sentence embeddings of both (`embeddings.py`), when the extra is installed.

Every feature is finite for any input (`finite_row` clamps what a hostile or broken
answer could push out of range), so training never meets a NaN or an infinity.

A `LearnedModel` is plain numbers (see `linear.py`): `to_dict()` is JSON the Django side
keeps in a database row, `from_dict()` rebuilds it in any worker, and `LearnedScorer`
plugs it into the cascade through the `Scorer` protocol.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from routing.engine import embeddings, scoring
from routing.engine.linear import (
    Design,
    FloatArray,
    LogisticModel,
    check_kind,
    fit_logistic,
    stored_linear,
    stored_model,
)
from routing.engine.textfeatures import SparseRow, hashed_categories, hashed_ngrams, merged, sparse_matrix
from routing.engine.types import ChatRequest, Completion

KIND: Final = "learned_scorer"
FORMAT: Final = 1
DEFAULT_BUCKETS: Final = 4096
DEFAULT_MAX_NGRAM: Final = 2
# Each embedding dimension counts this much of a hand-made feature (see fit_logistic).
EMBEDDING_WEIGHT: Final = 0.1
# No dense feature goes beyond this magnitude: a bound, not a scale (logs and counts
# stay far below it).
FEATURE_LIMIT: Final = 1e6

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
# A number stated as the result of a step: after "=", or at the end of a `<<a*b=c>>c`.
_RESULT = re.compile(r"(?:=|>>)\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")
# Phrases with which an answer corrects or doubts itself mid-way.
DOUBT_PHRASES: Final = (
    "however",
    "but wait",
    "actually",
    "mistake",
    "incorrect",
    "let me re",
    "recalculat",
    "re-evaluat",
    "not possible",
    "doesn't make sense",
    "does not make sense",
    "either",
    "not enough information",
    "assum",
    "round",
)

# Heuristic signals kept as they are; counts of words become logs below.
HEURISTIC_FEATURES: Final = (
    "empty",
    "truncated",
    "refusals",
    "hedges",
    "repetition",
    "too_short",
    "math",
    "no_final_answer",
    "fractional_count",
    "arithmetic_checked",
    "arithmetic_errors",
)
DENSE_FEATURES: Final = (
    *HEURISTIC_FEATURES,
    "heuristic_score",
    "log_words",
    "log_prompt_words",
    "has_final_number",
    "final_negative",
    "final_fraction",
    "final_zero",
    "final_magnitude",
    "final_line_has_words",
    "gsm8k_marker",
    "boxed",
    "annotations",
    "stated_results",
    "final_derived",
    "final_repeated",
    "final_in_prompt",
    "prompt_numbers",
    "prompt_number_coverage",
    "words_per_prompt_number",
    "doubts",
    "has_logprobs",
    "mean_token_probability",
    "logprob_mean",
    "logprob_min",
    "logprob_p10",
    "logprob_p25",
    "log_logprob_count",
)


@dataclass(frozen=True)
class LabelledExample:
    """One request, the cheap tier's answer to it, and whether that answer was acceptable."""

    chat: ChatRequest
    completion: Completion
    task: str
    acceptable: bool


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a model was trained on: predicting must compute the same ones."""

    buckets: int = DEFAULT_BUCKETS
    max_ngram: int = DEFAULT_MAX_NGRAM
    embeddings: bool = False
    dense_names: tuple[str, ...] = DENSE_FEATURES

    @property
    def dense_size(self) -> int:
        return len(self.dense_names) + (2 * embeddings.DIMENSIONS if self.embeddings else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dense_names": list(self.dense_names),
            "text": {"fields": ["prompt", "answer", "task"], "hash": "crc32", "max_ngram": self.max_ngram},
            "buckets": self.buckets,
            "embeddings": {"model": embeddings.MODEL_NAME, "fields": ["prompt", "answer"]} if self.embeddings else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        names = tuple(data["dense_names"])
        unknown = sorted(set(names) - set(DENSE_FEATURES))
        if unknown:
            raise ValueError(f"model uses features this version does not compute: {', '.join(unknown)}")
        return cls(
            buckets=int(data["buckets"]),
            max_ngram=int(data["text"]["max_ngram"]),
            embeddings=data["embeddings"] is not None,
            dense_names=names,
        )


@dataclass(frozen=True, eq=False)
class LearnedModel:
    """A fitted P(cheap answer acceptable) model: features in, probability out."""

    spec: FeatureSpec
    linear: LogisticModel
    metadata: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0

    def predict(self, chat: ChatRequest, completion: Completion, task: str) -> float:
        """P(the answer is acceptable), in [0, 1]."""
        dense = dense_row(self.spec, chat, completion, task)
        if self.spec.embeddings:
            dense = np.concatenate([dense, self.embedded(chat.prompt, completion.text)])
        return self.linear.probability(dense, sparse_row(self.spec, chat, completion, task))

    def embedded(self, prompt: str, answer: str) -> FloatArray:
        vectors = embed_pairs([prompt], [answer])
        # Without the extra in this worker, embeddings count as average: they add nothing.
        return vectors[0] if vectors is not None else self.linear.mean[len(self.spec.dense_names) :]

    def to_dict(self) -> dict[str, Any]:
        return stored_model(KIND, FORMAT, self.spec, self.linear, version=self.version, metadata=dict(self.metadata))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedModel:
        check_kind(data, KIND, FORMAT)
        spec = FeatureSpec.from_dict(data["features"])
        linear = stored_linear(data, spec)
        return cls(spec=spec, linear=linear, metadata=dict(data.get("metadata", {})), version=int(data["version"]))


class LearnedScorer:
    """The `Scorer` protocol over a `LearnedModel`."""

    name = "learned"

    def __init__(self, model: LearnedModel) -> None:
        self.model = model

    def score(self, chat: ChatRequest, completion: Completion, *, task: str) -> float:
        return self.model.predict(chat, completion, task)


# --- training --------------------------------------------------------------------------


def train_learned_model(
    examples: Sequence[LabelledExample],
    *,
    seed: int = 0,
    holdout: float = 0.2,
    use_embeddings: bool = False,
    buckets: int = DEFAULT_BUCKETS,
) -> tuple[LearnedModel, dict[str, float]]:
    """Fit on a seeded, label-stratified part of `examples`; evaluate on the rest.

    Returns the model fitted on the training part (the one the metrics describe) and
    the held-out metrics: n_train, n_holdout, auc, brier, accuracy (at 0.5) and
    base_rate (the held-out share of acceptable answers). Metrics that the held-out
    part cannot define (it is empty, or has one class for AUC) are NaN. Embeddings
    are used only when asked for and available.
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), not {holdout}")
    labels = np.asarray([example.acceptable for example in examples], dtype=bool)
    train, test = stratified_split(labels, holdout=holdout, seed=seed)
    spec = FeatureSpec(buckets=buckets, embeddings=use_embeddings and embeddings.available())
    design = build_design(spec, examples)
    linear = fit_logistic(subset(design, train), labels[train], seed=seed, weights=column_weights(spec))
    metrics = holdout_metrics(linear.probabilities(subset(design, test)), labels[test])
    metrics["n_train"] = float(len(train))
    metadata: dict[str, Any] = {"n_train": len(train), "n_holdout": len(test), "seed": seed, "holdout": holdout}
    # null, not NaN, in what to_dict() carries: PostgreSQL's jsonb refuses NaN.
    metadata["metrics"] = {name: None if math.isnan(value) else value for name, value in metrics.items()}
    return LearnedModel(spec=spec, linear=linear, metadata=metadata), metrics


def column_weights(spec: FeatureSpec) -> FloatArray:
    named = len(spec.dense_names)
    return np.asarray([1.0] * named + [EMBEDDING_WEIGHT] * (spec.dense_size - named), dtype=np.float64)


def stratified_split(labels: np.ndarray[Any, Any], *, holdout: float, seed: int) -> tuple[Any, Any]:
    """(train indices, held-out indices): `holdout` of each label's rows, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for value in (False, True):
        rows = rng.permutation(np.flatnonzero(labels == value))
        cut = round(len(rows) * holdout)
        test.extend(int(i) for i in rows[:cut])
        train.extend(int(i) for i in rows[cut:])
    return np.asarray(sorted(train), dtype=np.int64), np.asarray(sorted(test), dtype=np.int64)


def build_design(spec: FeatureSpec, examples: Sequence[LabelledExample]) -> Design:
    """Every example's features, the texts embedded in one batch."""
    rows = [dense_row(spec, e.chat, e.completion, e.task) for e in examples]
    dense = np.asarray(rows, dtype=np.float64).reshape(len(examples), len(spec.dense_names))
    if spec.embeddings:
        vectors = embed_pairs([e.chat.prompt for e in examples], [e.completion.text for e in examples])
        if vectors is None:
            raise RuntimeError("embeddings became unavailable while training")
        dense = np.hstack([dense, vectors])
    sparse = [sparse_row(spec, e.chat, e.completion, e.task) for e in examples]
    return Design(dense=dense, sparse=sparse_matrix(sparse, spec.buckets))


def subset(design: Design, rows: Any) -> Design:
    return Design(dense=design.dense[rows], sparse=design.sparse[rows])


def holdout_metrics(probabilities: FloatArray, labels: np.ndarray[Any, Any]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    n = len(labels)
    truth = labels.astype(np.float64)
    both_classes = 0 < truth.sum() < n
    return {
        "n_holdout": float(n),
        "auc": float(roc_auc_score(truth, probabilities)) if both_classes else math.nan,
        "brier": float(np.mean((probabilities - truth) ** 2)) if n else math.nan,
        "accuracy": float(np.mean((probabilities >= 0.5) == labels)) if n else math.nan,
        "base_rate": float(truth.mean()) if n else math.nan,
    }


def embed_pairs(prompts: Sequence[str], answers: Sequence[str]) -> FloatArray | None:
    """[prompt embedding | answer embedding] per row, or None without the extra."""
    vectors = embeddings.embed([*prompts, *answers])
    if vectors is None:
        return None
    return np.hstack([vectors[: len(prompts)], vectors[len(prompts) :]]).astype(np.float64)


# --- features --------------------------------------------------------------------------


def dense_row(spec: FeatureSpec, chat: ChatRequest, completion: Completion, task: str) -> FloatArray:
    values = answer_features(chat, completion, task)
    return finite_row([values[name] for name in spec.dense_names])


def finite_row(values: Sequence[float]) -> FloatArray:
    """`values` with NaN as 0 and everything clamped to +-FEATURE_LIMIT."""
    row = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=FEATURE_LIMIT, neginf=-FEATURE_LIMIT)
    return np.clip(row, -FEATURE_LIMIT, FEATURE_LIMIT)


def sparse_row(spec: FeatureSpec, chat: ChatRequest, completion: Completion, task: str) -> SparseRow:
    return merged(
        [
            hashed_ngrams(chat.prompt, field="prompt", buckets=spec.buckets, max_n=spec.max_ngram),
            hashed_ngrams(completion.text, field="answer", buckets=spec.buckets, max_n=spec.max_ngram),
            hashed_categories({"task": task}, buckets=spec.buckets),
        ]
    )


def answer_features(chat: ChatRequest, completion: Completion, task: str) -> dict[str, float]:
    """Every named dense feature of one (request, answer) pair."""
    base = scoring.features(chat, completion, task)
    text = scoring.normalise_quotes(completion.text)
    return {
        **{name: base[name] for name in HEURISTIC_FEATURES},
        "heuristic_score": scoring.penalised(1.0, base, scoring.PENALTIES),
        "log_words": math.log1p(base["words"]),
        "log_prompt_words": math.log1p(base["prompt_words"]),
        **format_features(text),
        **consistency_features(chat.prompt, text),
        **completion_logprob_features(completion),
    }


def format_features(text: str) -> dict[str, float]:
    """How the answer states its result."""
    final = scoring.final_number(text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return {
        "has_final_number": scoring.flag(final is not None),
        "final_negative": scoring.flag(final is not None and final < 0),
        "final_fraction": scoring.flag(final is not None and not final.is_integer()),
        "final_zero": scoring.flag(final == 0),
        "final_magnitude": math.log10(abs(final) + 1.0) if final is not None else 0.0,
        # "#### 50% or 1/2": two answers where one was asked for.
        "final_line_has_words": scoring.flag(last.startswith("####") and bool(re.search(r"[a-zA-Z]", last))),
        "gsm8k_marker": scoring.flag("####" in text),
        "boxed": scoring.flag("\\boxed" in text),
        "annotations": math.log1p(text.count("<<")),
    }


def consistency_features(prompt: str, text: str) -> dict[str, float]:
    """Whether the answer's numbers hang together and use the problem's numbers."""
    final = scoring.final_number(text)
    results = numbers(_RESULT.findall(text))
    stated = numbers(_NUMBER.findall(text))
    given = set(numbers(_NUMBER.findall(scoring.normalise_quotes(prompt))))
    used = given & set(stated)
    return {
        "stated_results": math.log1p(len(results)),
        # A final number no step produced was guessed or came from nowhere.
        "final_derived": scoring.flag(final is not None and final in results),
        "final_repeated": scoring.flag(final is not None and stated.count(final) >= 2),
        "final_in_prompt": scoring.flag(final is not None and final in given),
        "prompt_numbers": math.log1p(len(given)),
        "prompt_number_coverage": len(used) / len(given) if given else 1.0,
        # Multi-step problems answered in a line or two are often answered wrong.
        "words_per_prompt_number": math.log1p(len(text.split()) / (1 + len(given))),
        "doubts": math.log1p(scoring.count_phrases(text.lower(), DOUBT_PHRASES)),
    }


def numbers(raw: Sequence[str]) -> list[float]:
    parsed = (scoring.parse_number(value) for value in raw[: scoring.MAX_CHECKED_EQUALITIES * 4])
    return [value for value in parsed if value is not None]


def completion_logprob_features(completion: Completion) -> dict[str, float]:
    """The answer's token-probability summary; all 0 (and has_logprobs 0) without logprobs."""
    summary = scoring.logprob_features(completion.logprobs)
    present = bool(completion.logprobs) and summary["logprob_count"] > 0
    return {
        "has_logprobs": scoring.flag(present),
        "mean_token_probability": scoring.mean_token_probability(completion.logprobs or ()) if present else 0.0,
        "logprob_mean": summary["logprob_mean"],
        "logprob_min": summary["logprob_min"],
        "logprob_p10": summary["logprob_p10"],
        "logprob_p25": summary["logprob_p25"],
        "log_logprob_count": math.log1p(summary["logprob_count"]),
    }
