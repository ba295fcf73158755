"""A prompt-only router: P(the strong model is needed) from the prompt alone.

A cascade scores the cheap model's answer, so it needs one. When there is none to
score (picking the first tier before any call, or data such as MMLU's that records
only which model was right), a router predicts from the prompt whether the cheap model
will get it wrong. `PromptRouter` is a logistic regression over hashed word n-grams of
the prompt (TF-IDF: each slot weighted by its inverse document frequency in the training
prompts, so the words that tell questions apart count more than the words every prompt
has), a few numbers about its shape, optional categorical columns (MMLU's
`subject`) and, when the `embeddings` extra is installed and asked for, the prompt's
sentence embedding. Like the learned scorer it is plain numbers (`to_dict`/`from_dict`).

`first_tier_for` turns its prediction into the tier a policy starts on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from routing.engine import embeddings
from routing.engine.classify import MATH_PATTERN, compiled
from routing.engine.linear import (
    Design,
    FloatArray,
    LogisticModel,
    check_kind,
    fit_logistic,
    stored_linear,
    stored_model,
)
from routing.engine.textfeatures import (
    SparseRow,
    hashed_categories,
    hashed_ngrams,
    idf_weighted,
    idf_weights,
    merged,
    sparse_matrix,
    unseen_idf,
)

KIND: Final = "prompt_router"
FORMAT: Final = 1
# Word 1-2-grams of thousands of prompts fill 8,192 slots many times over; a slot per n-gram
# keeps a rare subject word apart from the common ones. Only used slots are stored.
DEFAULT_BUCKETS: Final = 1 << 18
DEFAULT_MAX_NGRAM: Final = 2
# Each embedding dimension counts this much of a hand-made feature (see fit_logistic).
EMBEDDING_WEIGHT: Final = 0.25

# Multiple-choice options on their own lines: "A. ...", "B) ...".
_OPTION = re.compile(r"^\s*[A-H][.)]\s", re.MULTILINE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
DENSE_FEATURES: Final = (
    "log_words",
    "log_chars",
    "log_lines",
    "numbers",
    "digit_share",
    "options",
    "math_pattern",
    "questions",
)


@dataclass(frozen=True)
class RouterSpec:
    """Which features a router was trained on."""

    buckets: int = DEFAULT_BUCKETS
    max_ngram: int = DEFAULT_MAX_NGRAM
    embeddings: bool = False
    extra_columns: tuple[str, ...] = ()
    # The n-gram slots' IDF over the training prompts (empty: no weighting), and the weight
    # of a slot none of them had.
    idf: Mapping[int, float] = field(default_factory=dict)
    unseen_idf: float = 1.0

    @property
    def dense_size(self) -> int:
        return len(DENSE_FEATURES) + (embeddings.DIMENSIONS if self.embeddings else 0)

    def to_dict(self) -> dict[str, Any]:
        slots = sorted(self.idf)
        return {
            "dense_names": list(DENSE_FEATURES),
            "text": {"fields": ["prompt"], "hash": "crc32", "max_ngram": self.max_ngram},
            "buckets": self.buckets,
            "extra_columns": list(self.extra_columns),
            "embeddings": {"model": embeddings.MODEL_NAME, "fields": ["prompt"]} if self.embeddings else None,
            "idf": (
                {"slots": slots, "weights": [self.idf[slot] for slot in slots], "unseen": self.unseen_idf}
                if self.idf
                else None
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouterSpec:
        if tuple(data["dense_names"]) != DENSE_FEATURES:
            raise ValueError("router was trained on other prompt features than this version computes")
        idf = data.get("idf")  # absent from routers trained before TF-IDF weighting
        return cls(
            buckets=int(data["buckets"]),
            max_ngram=int(data["text"]["max_ngram"]),
            embeddings=data["embeddings"] is not None,
            extra_columns=tuple(data["extra_columns"]),
            idf=dict(zip((int(s) for s in idf["slots"]), (float(w) for w in idf["weights"]), strict=True))
            if idf
            else {},
            unseen_idf=float(idf["unseen"]) if idf else 1.0,
        )


@dataclass(frozen=True, eq=False)
class PromptRouter:
    """P(the cheap model gets this prompt wrong), from the prompt (and optional categories)."""

    spec: RouterSpec
    linear: LogisticModel
    metadata: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0

    def predict(self, prompt: str, *, extra: Mapping[str, str] | None = None) -> float:
        """P(the strong model is needed) for `prompt`; `extra` holds the categorical columns."""
        dense = prompt_features(prompt)
        if self.spec.embeddings:
            vectors = embeddings.embed([prompt])
            embedded = vectors[0].astype(np.float64) if vectors is not None else self.linear.mean[len(dense) :]
            dense = np.concatenate([dense, embedded])
        return self.linear.probability(dense, sparse_row(self.spec, prompt, extra or {}))

    def to_dict(self) -> dict[str, Any]:
        return stored_model(KIND, FORMAT, self.spec, self.linear, version=self.version, metadata=dict(self.metadata))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptRouter:
        check_kind(data, KIND, FORMAT)
        spec = RouterSpec.from_dict(data["features"])
        linear = stored_linear(data, spec)
        return cls(spec=spec, linear=linear, metadata=dict(data.get("metadata", {})), version=int(data["version"]))


def first_tier_for(
    router: PromptRouter,
    prompt: str,
    *,
    threshold: float,
    tiers: int,
    extra: Mapping[str, str] | None = None,
) -> int:
    """The tier to start on: 0 when P(strong needed) < `threshold`, else the last of `tiers`."""
    if tiers <= 1 or router.predict(prompt, extra=extra) < threshold:
        return 0
    return tiers - 1


def train_prompt_router(
    prompts: Sequence[str],
    cheap_correct: Sequence[bool],
    *,
    seed: int = 0,
    use_embeddings: bool = False,
    extra_features: Sequence[Mapping[str, str]] | None = None,
    strong_correct: Sequence[bool] | None = None,
    buckets: int = DEFAULT_BUCKETS,
) -> PromptRouter:
    """Fit a router on every given prompt: the label is "the strong model is needed".

    That is "the cheap model was wrong", or, when `strong_correct` is given too, "the
    cheap model was wrong and the strong one right": a question both models miss gains
    nothing from the strong model, and on MMLU one in seven is such a question, so
    learning to send them up wastes the strong calls (on the MMLU training half this
    label cut CPT(50%) by about a quarter).

    `extra_features[i]` maps column names to categorical values for prompt i (MMLU's
    subject); each name=value pair becomes one feature. Embeddings are used only when
    asked for and available.
    """
    check_lengths(prompts, cheap_correct, extra_features, strong_correct)
    extras = list(extra_features) if extra_features is not None else [{} for _ in prompts]
    columns = tuple(sorted({name for extra in extras for name in extra}))
    grams = [prompt_ngrams(prompt, buckets=buckets, max_ngram=DEFAULT_MAX_NGRAM) for prompt in prompts]
    spec = RouterSpec(
        buckets=buckets,
        embeddings=use_embeddings and embeddings.available(),
        extra_columns=columns,
        idf=idf_weights(grams),
        unseen_idf=unseen_idf(len(prompts)),
    )
    needed = needed_labels(cheap_correct, strong_correct)
    linear = fit_logistic(build_design(spec, prompts, extras), needed, seed=seed, weights=column_weights(spec))
    metadata = {
        "n_train": len(prompts),
        "base_rate": float(needed.mean()) if len(needed) else None,  # null, not NaN: it is stored as JSON
        "seed": seed,
        "label": "cheap_wrong" if strong_correct is None else "cheap_wrong_strong_right",
    }
    return PromptRouter(spec=spec, linear=linear, metadata=metadata)


def check_lengths(
    prompts: Sequence[str],
    cheap_correct: Sequence[bool],
    extra_features: Sequence[Mapping[str, str]] | None,
    strong_correct: Sequence[bool] | None,
) -> None:
    lengths = {len(prompts), len(cheap_correct)}
    lengths |= {len(other) for other in (extra_features, strong_correct) if other is not None}
    if len(lengths) > 1:
        raise ValueError("prompts, cheap_correct, extra_features and strong_correct must have the same length")


def needed_labels(cheap_correct: Sequence[bool], strong_correct: Sequence[bool] | None) -> np.ndarray[Any, Any]:
    strong = strong_correct if strong_correct is not None else [True] * len(cheap_correct)
    return np.asarray([not cheap and good for cheap, good in zip(cheap_correct, strong, strict=True)], dtype=bool)


def column_weights(spec: RouterSpec) -> FloatArray:
    weights = [1.0] * len(DENSE_FEATURES) + [EMBEDDING_WEIGHT] * (spec.dense_size - len(DENSE_FEATURES))
    return np.asarray(weights, dtype=np.float64)


def build_design(spec: RouterSpec, prompts: Sequence[str], extras: Sequence[Mapping[str, str]]) -> Design:
    dense = np.asarray([prompt_features(p) for p in prompts], dtype=np.float64).reshape(len(prompts), -1)
    if spec.embeddings:
        vectors = embeddings.embed(prompts)
        if vectors is None:
            raise RuntimeError("embeddings became unavailable while training")
        dense = np.hstack([dense, vectors.astype(np.float64)])
    rows = [sparse_row(spec, prompt, extra) for prompt, extra in zip(prompts, extras, strict=True)]
    return Design(dense=dense, sparse=sparse_matrix(rows, spec.buckets))


def sparse_row(spec: RouterSpec, prompt: str, extra: Mapping[str, str]) -> SparseRow:
    known = {name: value for name, value in extra.items() if name in spec.extra_columns}
    grams = prompt_ngrams(prompt, buckets=spec.buckets, max_ngram=spec.max_ngram)
    if spec.idf:
        grams = idf_weighted(grams, spec.idf, spec.unseen_idf)
    return merged([grams, hashed_categories(known, buckets=spec.buckets)])


def prompt_ngrams(prompt: str, *, buckets: int, max_ngram: int) -> SparseRow:
    return hashed_ngrams(prompt, field="prompt", buckets=buckets, max_n=max_ngram)


def prompt_features(prompt: str) -> FloatArray:
    """The prompt's shape, in `DENSE_FEATURES` order."""
    words = len(prompt.split())
    digits = sum(character.isdigit() for character in prompt)
    pattern = compiled(MATH_PATTERN)
    values = (
        math.log1p(words),
        math.log1p(len(prompt)),
        math.log1p(prompt.count("\n")),
        math.log1p(len(_NUMBER.findall(prompt))),
        digits / len(prompt) if prompt else 0.0,
        math.log1p(len(_OPTION.findall(prompt))),
        1.0 if pattern is not None and pattern.search(prompt) else 0.0,
        math.log1p(prompt.count("?")),
    )
    return np.asarray(values, dtype=np.float64)
