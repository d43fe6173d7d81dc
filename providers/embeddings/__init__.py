"""Text embeddings behind one small interface."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Embedder(Protocol):
    @property
    def model(self) -> str: ...  # the model name stored with each vector

    @property
    def dim(self) -> int: ...  # vector dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalized vector per text, in order."""
        ...
