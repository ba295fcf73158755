"""A logistic model that is plain numbers: fitted with scikit-learn, applied with numpy.

Learned scorers and routers are trained in a background worker and applied in web
workers, and they travel between the two as JSON in a database row, never as a pickle
(loading a pickle runs code). So a fitted model is reduced to what applying it needs:
the standardisation of the dense features, one coefficient per feature, an intercept.
Applying it is a dot product; scikit-learn is only imported to fit.

Features come in two blocks: a dense block of named numbers (standardised with the
training mean and spread) and a sparse block of hashed text slots (`textfeatures`),
already normalised and used as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

# Inverse regularisation strengths tried; the best by cross-validated log loss on the
# training rows wins. Small data (hundreds of labels) wants strong regularisation,
# large data less: a fixed C would be wrong for one of them.
C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
DEFAULT_C = 1.0
FOLDS = 5
MAX_ITER = 5_000
# A column that never varies gets scale 1, not a division by zero.
MIN_SCALE = 1e-12
# Standardised values are clipped to this many spreads: a column that barely varied in
# training (every prompt of one length) must not turn an unusual input into a huge z.
CLIP = 5.0


@dataclass(frozen=True, eq=False)
class Design:
    """Training rows: a dense (n, d) array and a sparse (n, buckets) CSR matrix."""

    dense: FloatArray
    sparse: Any  # scipy.sparse.csr_matrix: SciPy ships no type information

    @property
    def rows(self) -> int:
        return int(self.dense.shape[0])


@dataclass(frozen=True, eq=False)
class LogisticModel:
    """P(label) = sigmoid(intercept + scaled dense · dense_coef + sparse · sparse_coef)."""

    mean: FloatArray
    scale: FloatArray
    dense_coef: FloatArray
    sparse_coef: FloatArray
    intercept: float
    c: float = DEFAULT_C

    @property
    def dense_size(self) -> int:
        return int(self.dense_coef.shape[0])

    @property
    def buckets(self) -> int:
        return int(self.sparse_coef.shape[0])

    def probability(self, dense: Sequence[float] | FloatArray, sparse: Mapping[int, float]) -> float:
        """The model's probability for one row."""
        scaled = standardised(np.asarray(dense, dtype=np.float64), self.mean, self.scale)
        z = self.intercept + float(scaled @ self.dense_coef)
        z += sum(float(self.sparse_coef[slot]) * value for slot, value in sparse.items())
        return sigmoid(z)

    def probabilities(self, design: Design) -> FloatArray:
        """The model's probability for every row of `design`."""
        z = self.intercept + standardised(design.dense, self.mean, self.scale) @ self.dense_coef
        z = z + np.asarray(design.sparse @ self.sparse_coef, dtype=np.float64)
        return expit(z)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers; hashed slots that no training row used are left out (they are 0)."""
        slots = np.flatnonzero(self.sparse_coef)
        return {
            "mean": floats(self.mean),
            "scale": floats(self.scale),
            "dense_coef": floats(self.dense_coef),
            "buckets": self.buckets,
            "sparse_slots": [int(slot) for slot in slots],
            "sparse_coef": floats(self.sparse_coef[slots]),
            "intercept": float(self.intercept),
            "C": float(self.c),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogisticModel:
        sparse = np.zeros(int(data["buckets"]), dtype=np.float64)
        sparse[np.asarray(data["sparse_slots"], dtype=np.int64)] = np.asarray(data["sparse_coef"], dtype=np.float64)
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            scale=np.asarray(data["scale"], dtype=np.float64),
            dense_coef=np.asarray(data["dense_coef"], dtype=np.float64),
            sparse_coef=sparse,
            intercept=float(data["intercept"]),
            c=float(data["C"]),
        )


def standardised(values: FloatArray, mean: FloatArray, scale: FloatArray) -> FloatArray:
    return np.clip((values - mean) / scale, -CLIP, CLIP)


def check_kind(data: Mapping[str, Any], kind: str, version: int) -> None:
    """Refuse to load a stored model of another kind, or of a format this code cannot read."""
    if data.get("kind") != kind:
        raise ValueError(f"not a {kind} (kind is {data.get('kind')!r})")
    if data.get("format") != version:
        raise ValueError(f"unsupported {kind} format {data.get('format')!r} (this version reads {version})")


class FeatureSpecLike(Protocol):
    """What `stored_model` and `stored_linear` need of a model's feature spec."""

    @property
    def dense_size(self) -> int: ...

    @property
    def buckets(self) -> int: ...

    def to_dict(self) -> dict[str, Any]: ...


def stored_model(kind: str, fmt: int, spec: FeatureSpecLike, linear: LogisticModel, **header: Any) -> dict[str, Any]:
    """The stored form of a linear model over a feature spec (the learned scorer, the prompt router)."""
    return {"kind": kind, "format": fmt, **header, "features": spec.to_dict(), "model": linear.to_dict()}


def stored_linear(data: Mapping[str, Any], spec: FeatureSpecLike) -> LogisticModel:
    """A stored model's coefficients, refused unless they fit `spec` (call `check_kind` first)."""
    linear = LogisticModel.from_dict(data["model"])
    if linear.dense_size != spec.dense_size or linear.buckets != spec.buckets:
        raise ValueError(f"{data['kind']} coefficients do not match its feature spec")
    return linear


def floats(values: FloatArray) -> list[float]:
    # float() of a float64 is exact, and JSON writes floats with repr: the round trip is lossless.
    return [float(value) for value in values]


def expit(z: FloatArray) -> FloatArray:
    from scipy.special import expit as logistic

    return np.asarray(logistic(z), dtype=np.float64)


def sigmoid(z: float) -> float:
    # Two branches so that neither exp() can overflow.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    exp_z = math.exp(z)
    return exp_z / (1.0 + exp_z)


def fit_logistic(
    design: Design,
    labels: Sequence[bool] | NDArray[Any],
    *,
    seed: int = 0,
    weights: FloatArray | None = None,
    c: float | None = None,
) -> LogisticModel:
    """Fit an L2-regularised logistic regression, C chosen by cross-validation on these rows only
    (or `c` when given: refitting on folds of rows a C was already chosen for).

    `weights` (one per dense column, default 1) shrink a column's standardised values,
    which regularises its coefficient that much harder: 384 embedding dimensions at
    full weight would drown a few dozen hand-made features in a few hundred labels.
    """
    y = np.asarray(labels, dtype=np.int64)
    mean, scale = standardisation(design.dense)
    if weights is not None:
        scale = scale / weights
    if len(np.unique(y)) < 2:
        return constant_model(mean, scale, design.sparse.shape[1], y)
    matrix = scaled_matrix(design, mean, scale)
    if c is None:
        c = choose_c(matrix, y, seed=seed)
    coef, intercept = _fit(matrix, y, c)
    dense_size = design.dense.shape[1]
    return LogisticModel(mean, scale, coef[:dense_size], coef[dense_size:], intercept, c)


def standardisation(dense: FloatArray) -> tuple[FloatArray, FloatArray]:
    if dense.shape[0] == 0:
        return np.zeros(dense.shape[1]), np.ones(dense.shape[1])
    spread = dense.std(axis=0)
    return dense.mean(axis=0), np.where(spread < MIN_SCALE, 1.0, spread)


def scaled_matrix(design: Design, mean: FloatArray, scale: FloatArray) -> Any:
    from scipy.sparse import csr_matrix, hstack

    return hstack([csr_matrix(standardised(design.dense, mean, scale)), design.sparse], format="csr")


def constant_model(mean: FloatArray, scale: FloatArray, buckets: int, y: NDArray[np.int64]) -> LogisticModel:
    """One class only: predict its (smoothed) rate for everything."""
    rate = (float(y.sum()) + 0.5) / (len(y) + 1.0)
    zeros = np.zeros(len(mean), dtype=np.float64)
    return LogisticModel(mean, scale, zeros, np.zeros(buckets), math.log(rate / (1.0 - rate)), 0.0)


def choose_c(matrix: Any, y: NDArray[np.int64], *, seed: int) -> float:
    """The C with the lowest mean held-out log loss over stratified folds (ties: the smaller C)."""
    from sklearn.model_selection import StratifiedKFold

    if int(np.bincount(y).min()) < FOLDS:
        return DEFAULT_C
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    losses = [_cv_log_loss(matrix, y, folds, c) for c in C_GRID]
    return C_GRID[int(np.argmin(losses))]


def _cv_log_loss(matrix: Any, y: NDArray[np.int64], folds: list[tuple[Any, Any]], c: float) -> float:
    from sklearn.metrics import log_loss

    losses = []
    for train, test in folds:
        coef, intercept = _fit(matrix[train], y[train], c)
        z = np.asarray(matrix[test] @ coef, dtype=np.float64) + intercept
        losses.append(log_loss(y[test], expit(z), labels=[0, 1]))
    return float(np.mean(losses))


def _fit(matrix: Any, y: NDArray[np.int64], c: float) -> tuple[FloatArray, float]:
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=c, max_iter=MAX_ITER).fit(matrix, y)
    return np.asarray(fitted.coef_[0], dtype=np.float64), float(fitted.intercept_[0])
