"""Writes of a ReasoningBank below validation: patterns to the store, then the pattern LRU and the
hot-path cache (write-through); deletes (store, caches, delete listeners); use bookkeeping. The
bank validates first and holds its lock around these calls. :attr:`PatternWriter.last_write`
is the newest write, which the next flush's manifest records (see :mod:`.opening`). While the
cache loads in the background, :attr:`PatternWriter.touched` collects the ids of every write and
delete, which the load then leaves to them (see :mod:`.loading`).

Example:
    >>> import numpy as np
    >>> from swarm_sona.bank import ReasoningBank
    >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-4")
    >>> p = Pattern.build("t", "", "o", 1.0, True, None, None, now=0.0)
    >>> bank.writer.write([p], np.eye(4, dtype=np.float32)[:1]) == [p.id], bank.writer.last_write["id"] == p.id
    (True, True)
    >>> bank.close()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.bank.backend import BankBackend
from swarm_sona.bank.cache import HotCache
from swarm_sona.bank.items import BOOKKEEPING
from swarm_sona.bank.lru import PayloadLRU
from swarm_sona.bank.pattern import Pattern

__all__ = ["PatternWriter", "DELETE_BATCH"]

DELETE_BATCH = 4096


class PatternWriter:
    """Writes to a bank's ``backend``, pattern LRU ``payloads`` and ``cache`` (see module docs).

    ``cutoff()`` gives the retention cutoff (an expired pattern stored again starts afresh);
    ``listeners`` are called with the ids of every delete (the bank's ``delete_listeners``)."""

    def __init__(self, backend: BankBackend, cache: HotCache, payloads: PayloadLRU, *,
                 cutoff: Callable[[], float | None], clock: Callable[[], float],
                 listeners: list[Callable[[list[str]], None]]) -> None:
        self.backend = backend
        self.cache = cache
        self.payloads = payloads
        self.cutoff = cutoff
        self.clock = clock
        self.listeners = listeners
        self.last_write: dict[str, Any] | None = None
        self.touched: set[str] | None = None   # ids written or deleted while the cache loads

    def _existing_payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.cache.serving:
            ids = [i for i in ids if i in self.cache]
        return {p.id: p.payload for p in self.backend.retrieve(list(ids))} if ids else {}

    def write(self, patterns: list[Pattern], V: np.ndarray, *, keep_bookkeeping: bool = True) -> list[str]:
        """Upsert patterns (row i of ``V`` is pattern i's unit vector); a duplicate id's last
        occurrence wins; a re-stored pattern keeps its creation time and use counts. Returns the
        ids in input order."""
        order: dict[str, int] = {}
        for i, p in enumerate(patterns):
            order[p.id] = i  # the last occurrence of a duplicate wins
        rows = list(order.values())
        ids = [patterns[i].id for i in rows]
        payloads = [patterns[i].to_payload() for i in rows]
        if keep_bookkeeping:
            old = self._existing_payloads(ids)
            cutoff = self.cutoff()
            for pid, pl in zip(ids, payloads, strict=True):
                if pid in old and (cutoff is None or float(old[pid].get("created_at", 0.0)) >= cutoff):
                    # (an expired pattern stored again starts afresh instead of staying expired)
                    for key in BOOKKEEPING:
                        if key in old[pid]:
                            pl[key] = old[pid][key]
        Vw = V[rows]
        self.upsert(ids, Vw, payloads)
        return [p.id for p in patterns]

    def upsert(self, ids: list[str], V: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        """Store, then LRU and cache, of ready payloads (recorded as the last write)."""
        self.backend.upsert(ids, V, payloads)
        if self.touched is not None:
            self.touched.update(ids)
        self.last_write = {"id": ids[-1], "at": self.clock()}
        self.remember(ids, payloads)
        self.cache.upsert(ids, V, payloads)

    def remember(self, ids: Sequence[str], payloads: Sequence[Mapping[str, Any]]) -> None:
        """Put just-written patterns into the pattern LRU (write-through: a pattern stored now is
        likely retrieved soon, and its payload is in hand)."""
        lru = self.payloads
        if lru.decode is None:
            for pid, pl in zip(ids[-lru.size:], payloads[-lru.size:], strict=True) if lru.size > 0 else ():
                lru.put(pid, Pattern.payload_fields(pid, pl))
        else:   # decoded when first read (Pattern.payload_fields), not on every write
            lru.put_raw(ids, payloads)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete from the store and both caches, in batches, telling the listeners."""
        for start in range(0, len(ids), DELETE_BATCH):
            part = list(ids[start:start + DELETE_BATCH])
            self.backend.delete(part)
            if self.touched is not None:
                self.touched.update(part)
            self.payloads.discard(part)
            self.cache.delete(part)
            if self.last_write is not None and self.last_write["id"] in part:
                self.last_write = None   # deleted on purpose: not a write the next open must find
            for fn in self.listeners:
                fn(part)

    def mark_used(self, ids: list[str], success: bool | None, t: float) -> int:
        """Count a use (and, if known, its outcome) on each stored pattern; returns how many existed."""
        found = self.backend.retrieve(ids)
        for p in found:
            fields: dict[str, Any] = {"use_count": int(p.payload.get("use_count", 0)) + 1, "last_used_at": t}
            if success is not None:
                fields["outcome_count"] = int(p.payload.get("outcome_count", 0)) + 1
                fields["success_count"] = int(p.payload.get("success_count", 0)) + int(bool(success))
            self.backend.set_payload([p.id], fields)
            self.payloads.discard([p.id])
        return len(found)
