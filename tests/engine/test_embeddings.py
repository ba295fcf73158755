"""The optional embeddings: absent without the extra, offline and unit-length with it."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from routing.engine import embeddings


@pytest.fixture(autouse=True)
def _fresh_model() -> Iterator[None]:
    embeddings.reset()
    yield
    embeddings.reset()


def without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def import_module(name: str, package: str | None = None) -> Any:
        if name in (embeddings.MODEL_PACKAGE, "sentence_transformers"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(embeddings.importlib, "import_module", import_module)


def test_without_the_extra_embed_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    without_the_extra(monkeypatch)

    assert embeddings.embed(["a question"]) is None
    assert embeddings.available() is False


def test_hugging_face_is_switched_offline_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    without_the_extra(monkeypatch)
    for variable in embeddings.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    embeddings.available()

    assert all(os.environ[variable] == "1" for variable in embeddings.OFFLINE_VARIABLES)


def test_the_packaged_model_embeds_offline() -> None:
    pytest.importorskip(embeddings.MODEL_PACKAGE, reason="the 'embeddings' extra is not installed")

    vectors = embeddings.embed(["a cat sat on the mat", "a kitten sat on the rug", "corporate tax law"])

    assert vectors is not None and vectors.shape == (3, embeddings.DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
