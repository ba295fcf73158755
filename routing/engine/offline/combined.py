"""The combined scorer: a small logistic model over every signal a cascade has for one answer.

Signals: the agreement of the cheap tier's answers (k samples of one model, or a panel
of cheap models: `agreement.py`), the heuristic where it has an opinion (`scoring.
heuristic_opinion`; where it has none its column is 0 and a flag says so, so the model
ignores it), and the learned scorer's dense text features of the answer returned
(`learned.answer_features`). No hashed n-grams: the model is fitted per policy on the
few labels shadow evaluation gives early on (tens to a few hundred), so it stays small,
and `linear.fit_logistic` picks its regularisation by cross-validation on those labels.

Like the other learned models it is plain numbers (`to_dict`/`from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from routing.engine.agreement import EMBEDDING, VOTE, Agreement
from routing.engine.learned import DENSE_FEATURES as TEXT_FEATURES
from routing.engine.learned import finite_row
from routing.engine.linear import Design, FloatArray, LogisticModel, check_kind, fit_logistic
from routing.engine.textfeatures import sparse_matrix

KIND: Final = "signal_model"
FORMAT: Final = 1
AGREEMENT_SIGNALS: Final = (
    "agreement",
    "agreement_vote",
    "agreement_embedding",
    "preferred_agreed",
    "distinct_share",
    "stated_share",
)
HEURISTIC_SIGNALS: Final = ("heuristic_doubt", "heuristic_opinion")
SIGNALS: Final = (*AGREEMENT_SIGNALS, *HEURISTIC_SIGNALS, *(f"text_{name}" for name in TEXT_FEATURES))
# Text features are many and each says little: each counts this much of an agreement or
# heuristic signal (`linear.fit_logistic` shrinks a down-weighted column's coefficient
# harder), so a few dozen labels cannot make them outvote the signals that carry the most.
TEXT_WEIGHT: Final = 0.3
# Out-of-fold predictions on the labelled rows (to calibrate a threshold) use this many folds at most.
FOLDS: Final = 5


@dataclass(frozen=True)
class Signals:
    """What the cascade knows about one cheap answer before deciding."""

    agreement: Agreement | None = None
    heuristic: float | None = None
    text: Mapping[str, float] = field(default_factory=dict)


def signal_values(signals: Signals) -> dict[str, float]:
    """Every named signal; absent ones are 0 (with a flag where absence itself says something)."""
    values = dict.fromkeys(SIGNALS, 0.0)
    found = signals.agreement
    if found is not None:
        k = max(1, len(found.answers))
        values.update(
            agreement=found.score,
            agreement_vote=float(found.method == VOTE),
            agreement_embedding=float(found.method == EMBEDDING),
            preferred_agreed=float(found.preferred_agreed),
            distinct_share=found.distinct / k,
            stated_share=sum(answer is not None for answer in found.answers) / k,
        )
    if signals.heuristic is not None:
        values.update(heuristic_doubt=1.0 - signals.heuristic, heuristic_opinion=1.0)
    values.update({f"text_{name}": value for name, value in signals.text.items() if f"text_{name}" in values})
    return values


@dataclass(frozen=True, eq=False)
class SignalModel:
    """P(the cheap tier's answer is acceptable) from its signals."""

    names: tuple[str, ...]
    linear: LogisticModel
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def predict(self, signals: Signals) -> float:
        return self.linear.probability(self.row(signals), {})

    def predict_many(self, rows: Sequence[Signals]) -> FloatArray:
        return self.linear.probabilities(design(self.names, rows))

    def row(self, signals: Signals) -> FloatArray:
        values = signal_values(signals)
        return finite_row([values[name] for name in self.names])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, "format": FORMAT, "names": list(self.names), "model": self.linear.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalModel:
        check_kind(data, KIND, FORMAT)
        names = tuple(str(name) for name in data["names"])
        unknown = sorted(set(names) - set(SIGNALS))
        if unknown:
            raise ValueError(f"signal model uses signals this version does not compute: {', '.join(unknown)}")
        return cls(names=names, linear=LogisticModel.from_dict(data["model"]))


def design(names: Sequence[str], rows: Sequence[Signals]) -> Design:
    values = [signal_values(signals) for signals in rows]
    dense = np.asarray([finite_row([row[name] for name in names]) for row in values], dtype=np.float64)
    # No hashed text: one empty slot keeps the Design shape the linear model expects.
    return Design(dense=dense.reshape(len(rows), len(names)), sparse=sparse_matrix([{} for _ in rows], 1))


def used_signals(rows: Sequence[Signals]) -> tuple[str, ...]:
    """The signals that vary over `rows`: a constant column carries nothing to learn."""
    values = [signal_values(signals) for signals in rows]
    return tuple(name for name in SIGNALS if len({row[name] for row in values}) > 1)


def train_signal_model(
    rows: Sequence[Signals],
    labels: Sequence[bool],
    *,
    seed: int = 0,
    text_weight: float = TEXT_WEIGHT,
    c: float | None = None,
) -> SignalModel:
    """Fit on every labelled row (there are few); `c` skips choosing the regularisation."""
    if len(rows) != len(labels):
        raise ValueError("one label per row")
    names = used_signals(rows)
    weights = np.asarray([text_weight if name.startswith("text_") else 1.0 for name in names], dtype=np.float64)
    linear = fit_logistic(design(names, rows), np.asarray(labels, dtype=bool), seed=seed, weights=weights, c=c)
    metadata = {"n_train": len(rows), "base_rate": float(np.mean(labels)) if len(labels) else None, "seed": seed}
    return SignalModel(names=names, linear=linear, metadata=metadata)


def out_of_fold_scores(
    rows: Sequence[Signals],
    labels: Sequence[bool],
    *,
    seed: int = 0,
    text_weight: float = TEXT_WEIGHT,
    whole: SignalModel | None = None,
) -> FloatArray:
    """Each labelled row scored by a model that did not see it (for calibrating thresholds).

    The folds reuse the regularisation chosen on all the rows (by `whole`, the model
    fitted on all of them, when given). Falls back to in-sample scores when a class has
    fewer than two rows.
    """
    truth = np.asarray(labels, dtype=bool)
    whole = whole or train_signal_model(rows, labels, seed=seed, text_weight=text_weight)
    folds = min(FOLDS, int(truth.sum()), int((~truth).sum()))
    if folds < 2:
        return whole.predict_many(rows)
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(rows), dtype=np.float64)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(rows)), truth):
        fold = [rows[i] for i in train]
        model = train_signal_model(
            fold, [bool(truth[i]) for i in train], seed=seed, text_weight=text_weight, c=whole.linear.c or None
        )
        scores[test] = model.predict_many([rows[i] for i in test])
    return scores
