"""Point-in-time snapshots of a ReasoningBank: every pattern (ids, vectors, payloads) and the bank
metadata in one checkpoint file (msgpack, CRC-checked, written atomically; see
:mod:`swarm_sona.core.codec`). Backend-neutral, so a snapshot also migrates a bank between
backends.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> f = Path(tempfile.mkdtemp()) / "bank.snapshot"
    >>> write_snapshot(f, "hashing-v1-2", 2, [], np.zeros((0, 2), np.float32), [])
    0
    >>> read_snapshot(f, "hashing-v1-2", 2).ids
    []
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bank.errors import BankDimensionError, BankInputError
from swarm_sona.bank.items import redact_item
from swarm_sona.bank.vectors import check_ids
from swarm_sona.core import codec

__all__ = ["SNAPSHOT_KIND", "Snapshot", "write_snapshot", "read_snapshot", "load_snapshot", "export_points"]

SNAPSHOT_KIND = "reasoning_bank"


@dataclass
class Snapshot:
    """A snapshot's content: ``ids``, ``vectors`` (float32, one row per id), ``payloads``.

    Example:
        >>> Snapshot([], np.zeros((0, 4), np.float32), []).vectors.shape
        (0, 4)
    """

    ids: list[str]
    vectors: np.ndarray
    payloads: list[Any]


def write_snapshot(path: str | Path, embedder: str, dim: int, ids: Sequence[str], vectors: np.ndarray,
                   payloads: Sequence[dict[str, Any]]) -> int:
    """Write a snapshot file; returns the number of patterns written."""
    codec.write_checkpoint(path, {"embedder": embedder, "dim": dim, "ids": list(ids),
                                  "vectors": np.asarray(vectors, np.float32), "payloads": list(payloads)},
                           kind=SNAPSHOT_KIND)
    return len(ids)


def read_snapshot(path: str | Path, embedder: str, dim: int) -> Snapshot:
    """Read and check a snapshot for a bank of ``embedder`` / ``dim``: :class:`BankInputError` for a
    file that is no usable snapshot, :class:`BankDimensionError` for another embedder's."""
    try:
        body = codec.read_checkpoint(path, kind=SNAPSHOT_KIND, fallback=False)
    except codec.CodecError as exc:
        raise BankInputError(f"{path}: not a usable ReasoningBank snapshot: {exc}") from exc
    try:
        ids, V, payloads = list(body["ids"]), np.asarray(body["vectors"], np.float32), list(body["payloads"])
        emb, d = str(body["embedder"]), int(body["dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BankInputError(f"{path}: malformed ReasoningBank snapshot ({exc})") from exc
    if d != dim or emb != embedder:
        raise BankDimensionError(f"{path} holds {d}-d vectors of embedder {emb!r}; this bank uses "
                                 f"{dim}-d vectors of {embedder!r}")
    if V.shape != (len(ids), d) or len(payloads) != len(ids) or not np.all(np.isfinite(V)):
        raise BankInputError(f"{path}: inconsistent snapshot (ids, vectors and payloads disagree)")
    return Snapshot(ids, V, payloads)


def export_points(backend: Any, dim: int, cutoff: float | None) -> Snapshot:
    """Every point of ``backend`` with its vector, except those created before ``cutoff`` (expired
    by retention: not exported, even before a prune deletes them)."""
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    payloads: list[Any] = []
    for batch in backend.scroll(batch=2048, with_vectors=True):
        for p in batch:
            if p.vector is None or (cutoff is not None and not float(p.payload.get("created_at", 0.0)) >= cutoff):
                continue
            ids.append(p.id)
            vecs.append(p.vector)
            payloads.append(p.payload)
    V = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
    return Snapshot(ids, V, payloads)


def load_snapshot(path: str | Path, embedder: str, dim: int, redactor: Any = None) -> Snapshot:
    """:func:`read_snapshot` with the ids checked and the payloads redacted by ``redactor`` (the
    bank's, if any): what :meth:`ReasoningBank.restore` writes."""
    snap = read_snapshot(path, embedder, dim)
    payloads = snap.payloads
    if redactor is not None:
        payloads = [redact_item(redactor, pl, "") if isinstance(pl, Mapping) else pl for pl in payloads]
    return Snapshot(check_ids(snap.ids), snap.vectors, payloads)
