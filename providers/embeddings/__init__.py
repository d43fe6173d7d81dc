"""Embedders: text in, one L2-normalized vector per text out.

:func:`embedder_for` picks the configured one (``EMBEDDING_PROVIDER``): ``local`` runs
all-MiniLM-L6-v2 on this machine's CPU (:mod:`providers.embeddings.local`), ``openai``
calls the embeddings API (:mod:`providers.embeddings.openai`). Every stored vector
carries its embedder's ``model``: vectors of different models are never compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.settings import Settings


class Embedder(Protocol):
    """Turns texts into vectors of one model."""

    @property
    def model(self) -> str:
        """The model name stored with each vector."""
        ...

    @property
    def dim(self) -> int:
        """The length of each vector."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalized vector per text, in order."""
        ...


def embedder_for(settings: Settings) -> Embedder:
    """The embedder that ``settings`` configure (``EMBEDDING_PROVIDER``)."""
    if settings.embedding_provider == "local":
        from providers.embeddings.local import LocalEmbedder

        return LocalEmbedder()
    from providers.embeddings.openai import OpenAIEmbedder

    return OpenAIEmbedder(settings, model=settings.embedding_model, dim=settings.embedding_dim)
