"""The combined scorer: a small logistic model over every signal a cascade has for one answer.

Signals: the agreement of the cheap tier's answers (k samples of one model, or a panel
of cheap models: `agreement.py`), the heuristic where it has an opinion (`scoring.
heuristic_opinion`; where it has none its column is 0 and a flag says so, so the model
ignores it), the learned scorer's score (the shipped model, trained on other data) and
the learned scorer's dense text features of the answer returned (`learned.answer_features`).
No hashed n-grams: the model is fitted per policy on the few labels shadow evaluation
gives early on (tens to a few hundred), so it stays small.

It should never do worse than its best input, so the fit chooses, by cross-validated log
loss on the labelled rows only, among each single signal alone (`ANCHORS`) and a stack of
every signal anchored on the best single one: the anchor's column is barely regularised
and every other column shrinks towards 0 with the regularisation chosen by the same
cross-validation. The stack must beat its anchor by more than a standard error to be
kept, so with a few dozen labels the anchor alone usually is.

Like the other learned models it is plain numbers (`to_dict`/`from_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from routing.engine.agreement import EMBEDDING, VOTE, Agreement
from routing.engine.learned import DENSE_FEATURES as TEXT_FEATURES
from routing.engine.learned import finite_row
from routing.engine.linear import C_GRID, Design, FloatArray, LogisticModel, check_kind, fit_logistic
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
LEARNED_SIGNALS: Final = ("learned_logit", "learned_opinion")
SIGNALS: Final = (
    *AGREEMENT_SIGNALS,
    *HEURISTIC_SIGNALS,
    *LEARNED_SIGNALS,
    *(f"text_{name}" for name in TEXT_FEATURES),
)
# The single signals a fit may keep alone (each with the flag saying it is present), in the
# order they are trusted before any label: agreement is measured on the request itself, the
# learned score comes from a model trained on other traffic, the heuristic sees little. A
# later one replaces an earlier one only when cross-validation shows it is clearly better.
ANCHORS: Final = {
    "agreement": ("agreement",),
    "learned": LEARNED_SIGNALS,
    "heuristic": HEURISTIC_SIGNALS,
}
# The anchor's column counts this much of an ordinary signal in the stack: its coefficient
# is shrunk ANCHOR_WEIGHT**2 times less, so a strong C pulls the stack towards the anchor.
ANCHOR_WEIGHT: Final = 3.0
# A single signal has one or two columns: regularisation hardly matters, so none is chosen.
SINGLE_C: Final = 1.0
# A probability's logit is clipped here (a learned score of exactly 0 or 1).
MAX_LOGIT: Final = 8.0
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
    learned: float | None = None  # the learned scorer's P(acceptable), where it ran


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
    if signals.learned is not None:
        values.update(learned_logit=logit(signals.learned), learned_opinion=1.0)
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
    return design_of(np.asarray([finite_row([signal_values(r)[n] for n in names]) for r in rows]), len(rows))


def design_of(dense: FloatArray, n: int) -> Design:
    # No hashed text: one empty slot keeps the Design shape the linear model expects.
    return Design(dense=dense.reshape(n, -1), sparse=sparse_matrix([{} for _ in range(n)], 1))


def used_signals(rows: Sequence[Signals]) -> tuple[str, ...]:
    """The signals that vary over `rows`: a constant column carries nothing to learn."""
    values = [signal_values(signals) for signals in rows]
    return tuple(name for name in SIGNALS if len({row[name] for row in values}) > 1)


def logit(probability: float) -> float:
    p = min(max(probability, 1e-12), 1.0 - 1e-12)
    return float(np.clip(math.log(p / (1.0 - p)), -MAX_LOGIT, MAX_LOGIT))


@dataclass(frozen=True)
class Candidate:
    """One way to combine: `names` fitted with `weights`; `anchor` names the single signal it rests on."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    anchor: str | None
    stacked: bool
    c: float | None = None  # None: chosen by `fit_logistic`'s own cross-validation


def candidates(used: Sequence[str], text_weight: float) -> tuple[list[Candidate], list[Candidate]]:
    """(each single anchor alone, the stack anchored on each): only signals that vary in `used`."""
    singles, stacks = [], []
    for anchor, group in ANCHORS.items():
        if group[0] not in used:
            continue
        names = tuple(name for name in group if name in used)
        singles.append(Candidate(names, (1.0,) * len(names), anchor, stacked=False, c=SINGLE_C))
        weights = tuple(
            ANCHOR_WEIGHT if name in group else text_weight if name.startswith("text_") else 1.0 for name in used
        )
        stacks.append(Candidate(tuple(used), weights, anchor, stacked=True))
    return singles, stacks


def plain_stack(used: Sequence[str], text_weight: float) -> Candidate:
    """Every signal, none favoured: when no cross-validation can choose, or no anchor varies."""
    weights = tuple(text_weight if name.startswith("text_") else 1.0 for name in used)
    return Candidate(tuple(used), weights, None, stacked=True)


def train_signal_model(
    rows: Sequence[Signals],
    labels: Sequence[bool],
    *,
    seed: int = 0,
    text_weight: float = TEXT_WEIGHT,
    c: float | None = None,
    candidate: Candidate | None = None,
) -> SignalModel:
    """Fit on every labelled row (there are few), the combiner chosen by cross-validation on them.

    `candidate` (with `c`) skips the choice: refitting on folds what was chosen on all rows.
    """
    if len(rows) != len(labels):
        raise ValueError("one label per row")
    truth = np.asarray(labels, dtype=bool)
    values = np.asarray([finite_row([signal_values(r)[n] for n in SIGNALS]) for r in rows]).reshape(len(rows), -1)
    column = {name: i for i, name in enumerate(SIGNALS)}
    if candidate is None:
        candidate, losses = choose(values, column, truth, used_signals(rows), seed=seed, text_weight=text_weight)
    else:
        candidate, losses = replace(candidate, c=c if c is not None else candidate.c), {}
    linear = fit_candidate(candidate, values, column, truth, seed=seed)
    metadata = {
        "n_train": len(rows),
        "base_rate": float(np.mean(labels)) if len(labels) else None,
        "seed": seed,
        "anchor": candidate.anchor,
        "stacked": candidate.stacked,
        "weights": list(candidate.weights),
        "cv_log_loss": losses,
    }
    return SignalModel(names=candidate.names, linear=linear, metadata=metadata)


def fit_candidate(
    candidate: Candidate, values: FloatArray, column: Mapping[str, int], truth: NDArray[np.bool_], *, seed: int
) -> LogisticModel:
    dense = values[:, [column[name] for name in candidate.names]]
    weights = np.asarray(candidate.weights, dtype=np.float64)
    return fit_logistic(design_of(dense, len(truth)), truth, seed=seed, weights=weights, c=candidate.c)


def choose(
    values: FloatArray,
    column: Mapping[str, int],
    truth: NDArray[np.bool_],
    used: Sequence[str],
    *,
    seed: int,
    text_weight: float,
) -> tuple[Candidate, dict[str, float]]:
    """The combiner cross-validation on these rows supports (held-out log loss).

    First the single signal: the most trusted one (`ANCHORS` order) that the lowest loss
    does not clearly beat; then the stack anchored on it, at each C of the grid. Clearly
    means by more than one standard error of the rows' paired loss differences (the
    one-standard-error rule): with a few dozen labels most differences are noise, and the
    signal trusted beforehand, or the single signal rather than the stack, is the safer bet.
    """
    singles, stacks = candidates(used, text_weight)
    folds = min(FOLDS, int(truth.sum()), int((~truth).sum()))
    if folds < 2 or not singles:
        return plain_stack(used, text_weight), {}
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(truth)), truth))

    def loss(candidate: Candidate) -> FloatArray:
        return cv_log_loss(candidate, values, column, truth, splits, seed=seed)

    single_losses = [loss(single) for single in singles]
    losses = {f"single:{s.anchor}": float(found.mean()) for s, found in zip(singles, single_losses, strict=True)}
    lowest = single_losses[int(np.argmin([found.mean() for found in single_losses]))]
    best = next(i for i, found in enumerate(single_losses) if not clearly_better(lowest, found))
    chosen, anchor_loss = singles[best], single_losses[best]
    stack = stacks[best]
    if len(stack.names) == len(chosen.names):
        return chosen, losses
    stacked = [(replace(stack, c=c), loss(replace(stack, c=c))) for c in C_GRID]
    losses.update({f"stack:{stack.anchor}:C={s.c}": float(found.mean()) for s, found in stacked})
    candidate, stack_loss = min(stacked, key=lambda item: float(item[1].mean()))
    if clearly_better(stack_loss, anchor_loss):
        chosen = candidate
    return chosen, losses


def clearly_better(losses: FloatArray, than: FloatArray) -> bool:
    """Whether `losses` beat `than` by more than one standard error of the rows' paired differences."""
    gain = than - losses
    return bool(gain.mean() > gain.std(ddof=1) / math.sqrt(len(gain)))


def cv_log_loss(
    candidate: Candidate,
    values: FloatArray,
    column: Mapping[str, int],
    truth: NDArray[np.bool_],
    splits: Sequence[tuple[NDArray[np.int64], NDArray[np.int64]]],
    *,
    seed: int,
) -> FloatArray:
    """Each row's held-out log loss under `candidate`, refitted on the other folds."""
    held_out = np.zeros(len(truth), dtype=np.float64)
    for train, test in splits:
        model = fit_candidate(candidate, values[train], column, truth[train], seed=seed)
        picked = np.asarray([column[name] for name in candidate.names], dtype=np.int64)
        dense = values[np.ix_(test, picked)]
        held_out[test] = model.probabilities(design_of(dense, len(test)))
    p = np.clip(held_out, 1e-6, 1.0 - 1e-6)
    return np.asarray(-np.where(truth, np.log(p), np.log(1.0 - p)), dtype=np.float64)


def out_of_fold_scores(
    rows: Sequence[Signals],
    labels: Sequence[bool],
    *,
    seed: int = 0,
    text_weight: float = TEXT_WEIGHT,
    whole: SignalModel | None = None,
) -> FloatArray:
    """Each labelled row scored by a model that did not see it (for calibrating thresholds).

    The folds reuse the combiner and regularisation chosen on all the rows (by `whole`, the
    model fitted on all of them, when given). Falls back to in-sample scores when a class
    has fewer than two rows.
    """
    truth = np.asarray(labels, dtype=bool)
    whole = whole or train_signal_model(rows, labels, seed=seed, text_weight=text_weight)
    folds = min(FOLDS, int(truth.sum()), int((~truth).sum()))
    if folds < 2:
        return whole.predict_many(rows)
    from sklearn.model_selection import StratifiedKFold

    weights = whole.metadata.get("weights") or [1.0] * len(whole.names)
    chosen = Candidate(
        whole.names,
        tuple(float(w) for w in weights),
        whole.metadata.get("anchor"),
        bool(whole.metadata.get("stacked", True)),
        whole.linear.c or None,
    )
    scores = np.zeros(len(rows), dtype=np.float64)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(rows)), truth):
        fold = [rows[i] for i in train]
        model = train_signal_model(fold, [bool(truth[i]) for i in train], seed=seed, candidate=chosen)
        scores[test] = model.predict_many([rows[i] for i in test])
    return scores
