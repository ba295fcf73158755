"""Text features that need no vocabulary: hashed word n-grams and hashed categories.

Learned scorers and routers turn text into a fixed-size sparse vector by hashing each
token n-gram into one of `buckets` slots. Hashing needs no fitted vocabulary, so a
model is fully described by its coefficients and a few numbers (see `linear.py`), and
a word first seen in production simply lands in some slot. The hash is CRC-32, not
Python's `hash()`: the latter is salted per process, and a model trained in a Celery
worker must mean the same thing in every web worker.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

SparseRow = dict[int, float]

# Lower-case words, numbers by their digit count ("N3" for 120: the value is noise,
# its size is not), and single punctuation marks ("=", "?", "$" carry meaning here).
_TOKEN = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
# Enough for any real prompt or answer; a bound on the work a hostile text can cause.
MAX_TOKENS = 2_000


def tokens(text: str) -> list[str]:
    """The text's tokens, numbers replaced by their shape."""
    found = _TOKEN.findall(text.lower()[: MAX_TOKENS * 8])[:MAX_TOKENS]
    return [f"N{len(token)}" if token.isdigit() else token for token in found]


def hashed_ngrams(text: str, *, field: str, buckets: int, max_n: int) -> SparseRow:
    """Word 1..`max_n`-grams of `text`, hashed into `buckets` slots, sublinear and L2-normalised.

    `field` salts the hash so that "total" in a prompt and in an answer are different
    features. Normalising per field keeps a long answer from outweighing everything else.
    """
    words = tokens(text)
    counts: SparseRow = {}
    for n in range(1, max_n + 1):
        for start in range(len(words) - n + 1):
            slot = bucket(f"{field}:{' '.join(words[start : start + n])}", buckets)
            counts[slot] = counts.get(slot, 0.0) + 1.0
    return normalised({slot: 1.0 + math.log(count) for slot, count in counts.items()})


def idf_weights(rows: Sequence[Mapping[int, float]]) -> dict[int, float]:
    """Each used slot's smoothed inverse document frequency over `rows`: ln((1 + n) / (1 + df)) + 1."""
    counts: dict[int, int] = {}
    for row in rows:
        for slot in row:
            counts[slot] = counts.get(slot, 0) + 1
    return {slot: unseen_idf(len(rows), count) for slot, count in counts.items()}


def unseen_idf(documents: int, frequency: int = 0) -> float:
    return math.log((1.0 + documents) / (1.0 + frequency)) + 1.0


def idf_weighted(row: Mapping[int, float], idf: Mapping[int, float], unseen: float) -> SparseRow:
    """`row` with each slot scaled by its IDF (`unseen` for a slot no training row had), L2-normalised again."""
    return normalised({slot: value * idf.get(slot, unseen) for slot, value in row.items()})


def hashed_categories(values: Mapping[str, str], *, buckets: int) -> SparseRow:
    """One slot per `name=value` pair (MMLU's subject, a task category), weight 1."""
    return {bucket(f"category:{name}={value}", buckets): 1.0 for name, value in values.items()}


def bucket(key: str, buckets: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % buckets


def normalised(row: SparseRow) -> SparseRow:
    norm = math.sqrt(sum(value * value for value in row.values()))
    return {slot: value / norm for slot, value in row.items()} if norm else row


def merged(rows: Iterable[Mapping[int, float]]) -> SparseRow:
    """The sum of several sparse rows (colliding slots add up)."""
    total: SparseRow = {}
    for row in rows:
        for slot, value in row.items():
            total[slot] = total.get(slot, 0.0) + value
    return total


def sparse_matrix(rows: Sequence[Mapping[int, float]], buckets: int) -> Any:
    """The rows as a SciPy CSR matrix of shape (len(rows), buckets), for training."""
    from scipy.sparse import csr_matrix

    indptr = [0]
    indices: list[int] = []
    values: list[float] = []
    for row in rows:
        for slot in sorted(row):
            indices.append(slot)
            values.append(row[slot])
        indptr.append(len(indices))
    data = (np.asarray(values, dtype=np.float64), np.asarray(indices, dtype=np.int64), np.asarray(indptr))
    return csr_matrix(data, shape=(len(rows), buckets))
