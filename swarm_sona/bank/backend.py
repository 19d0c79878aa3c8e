"""The storage interface every ReasoningBank backend implements.

A backend stores points (pattern id, unit-norm float32 vector, JSON payload) in one Qdrant
collection or shard, answers filtered nearest-neighbour queries, and keeps the bank's
metadata (embedder name and dimension). The bank does validation, ids, caching, scoring and
distillation on top; a backend only moves data. Backends: :mod:`.edge_backend` (embedded
Qdrant Edge) and :mod:`.qdrant_backend` (qdrant-client: server, or its local mode in tests).

Example:
    >>> from swarm_sona.bank.backend import StoredPoint
    >>> StoredPoint("id-1", {"reward": 1.0}).score is None
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from swarm_sona.bank.filters import Condition

__all__ = ["StoredPoint", "BankBackend", "META_FORMAT", "META_SCHEMA", "make_backend"]

META_FORMAT = "swarm_sona.bank"
META_SCHEMA = 1


@dataclass
class StoredPoint:
    """A point as read back from a backend; ``score`` is the cosine similarity for searches."""

    id: str
    payload: dict[str, Any]
    vector: np.ndarray | None = None
    score: float | None = None


class BankBackend(Protocol):  # pragma: no cover - protocol
    """What the bank needs from a store (see module docs)."""

    kind: str
    location: str

    def read_meta(self) -> dict[str, Any] | None:
        """The bank metadata recorded at creation (embedder name, dimension), or None for a new bank."""

    def open(self, meta: dict[str, Any]) -> None:
        """Open the store, creating it with ``meta`` (and payload indexes) when it is new."""

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Insert or replace points."""

    def set_payload(self, ids: Sequence[str], fields: dict[str, Any]) -> None:
        """Set some payload fields of existing points."""

    def delete(self, ids: Sequence[str]) -> None:
        """Delete points (missing ids are ignored)."""

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points by id (missing ids are left out)."""

    def search(self, vector: np.ndarray, limit: int, conditions: Sequence[Condition], *,
               with_vectors: bool = False, exact: bool = False) -> list[StoredPoint]:
        """Top ``limit`` points by cosine similarity among those meeting every condition."""

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True) -> Iterator[list[StoredPoint]]:
        """Every point, in batches."""

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        """Points meeting every condition."""

    def clear(self) -> None:
        """Delete every point (metadata stays)."""

    def optimize(self) -> bool:
        """Build indexes now (blocking); True if anything was done."""

    def flush(self) -> None:
        """Make writes durable."""

    def close(self) -> None:
        """Release the store (idempotent)."""


def make_backend(cfg: Any, client: Any = None) -> BankBackend:
    """The backend ``cfg`` (a :class:`~swarm_sona.bank.config.ReasoningBankConfig`) names: the
    embedded Qdrant Edge shard or a qdrant-client collection (``client``: an existing client).
    Imported on demand: each backend module imports this one, and a bank needs only its own
    engine's package.

    Example:
        >>> from types import SimpleNamespace
        >>> make_backend(SimpleNamespace(backend="edge", path=None, persist_to_disk=False)).kind
        'edge'
    """
    if cfg.backend == "edge":
        from swarm_sona.bank.edge_backend import EdgeBackend

        return EdgeBackend(cfg.path, persist=cfg.persist_to_disk)
    from swarm_sona.bank.qdrant_backend import QdrantBackend

    return QdrantBackend(cfg.url, api_key=cfg.api_key, api_key_env=cfg.api_key_env, prefer_grpc=cfg.prefer_grpc,
                         https=cfg.https, collection=cfg.collection, retries=cfg.retries,
                         backoff_s=cfg.retry_backoff_s, batch_size=cfg.batch_size, timeout_s=cfg.timeout_s,
                         client=client)
