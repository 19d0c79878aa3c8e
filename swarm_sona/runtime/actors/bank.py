"""BankActor: the sole owner of an embedded ReasoningBank path; agents call it in batches.

Qdrant Edge lets one process open a path at a time, so in a swarm one actor holds the bank
and serves every agent. Agents call it once per batch: :meth:`BankActor.search_batch` takes
all of a batch's query vectors and answers them with one matrix product over the bank's
in-memory vector cache (``ReasoningBank.cache``) plus this actor's payload index (the
fields the hot path needs: task text, reward, success, agent id, task type) — the actor
sees every write, so the index is exact. :meth:`BankActor.store_batch` writes through
``ReasoningBank.write_many`` and, with ``durable`` (the default), replies only once the bank's
write-ahead log fsync covers its write (``bank.durability``); its reply is the acknowledgement the
swarm counts. The swarm runs the actor threaded (``max_concurrency``), so concurrent
``store_batch`` calls of several agents share one fsync (group commit, see
:mod:`swarm_sona.bank.commit`): each call writes under the store's lock, then waits for (or
leads) the flush covering it with no lock held. Filtered or metadata queries go through
``retrieve_patterns`` unchanged.

With a Qdrant *server* (``backend: qdrant``) no actor is needed: every agent may open the
collection itself; :class:`PatternStore` gives a bank object the same two batch methods.

Example:
    >>> import numpy as np
    >>> from swarm_sona.runtime.actors.bank import BankActor
    >>> b = BankActor({"persist_to_disk": False}, dim=16)
    >>> v = np.eye(16, dtype=np.float32)[:2]
    >>> ids = b.store_batch([{"task": "sort list", "embedding": v[0], "reward": 0.9, "success": True,
    ...                       "agent_id": "w1"}])
    >>> [[p["task"] for p in hits] for hits in b.search_batch(v, 1)]
    [['sort list'], ['sort list']]
    >>> b.search_batch(v, 1, agents=["w2"])
    [[], []]
    >>> b.close()
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.distill import DistillReport

__all__ = ["BankActor", "PatternStore", "index_fields"]

_FIELDS = ("task", "reward", "success", "agent_id", "task_type")


def _item(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A trajectory dict (``Trajectory.to_dict``) or a pattern item -> a ``store_many`` item."""
    vec = rec.get("vector", rec.get("embedding"))
    out = {"task": rec["task"], "input": rec.get("input", ""), "output": rec.get("output", ""),
           "reward": float(rec["reward"]), "success": bool(rec["success"]), "agent_id": rec.get("agent_id"),
           "task_type": rec.get("task_type"), "vector": vec}
    md = rec.get("metadata")
    if md:
        out["metadata"] = {k: v for k, v in md.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return out


def index_fields(index: dict[str, dict[str, Any]], points: Sequence[Any]) -> None:
    """A ReasoningBank fill listener: the hot-path fields of points a background cache load took,
    added to ``index`` (a :class:`PatternStore`'s) unless a newer write put them there first.

    Example:
        >>> from swarm_sona.bank.backend import StoredPoint
        >>> idx = {"a": {"task": "newer"}}
        >>> index_fields(idx, [StoredPoint("a", {"task": "old"}), StoredPoint("b", {"task": "t", "reward": 1.0})])
        >>> idx["a"]["task"], idx["b"]["reward"]
        ('newer', 1.0)
    """
    for p in points:
        index.setdefault(p.id, {k: p.payload.get(k) for k in _FIELDS})


class PatternStore:
    """Batch search/store over a ReasoningBank object (also the BankActor's engine).

    ``search_batch`` answers from the bank's in-memory cache with one matrix product when the
    cache is active and holds every point, else per query through ``retrieve_patterns``.
    ``durable``: ``store_batch`` returns only once a flush covers its write (group commit
    across threads). ``lock`` guards the index and the bank's cache between threads; hold it
    around any other call that writes to the bank (deletes keep the index exact through the
    bank's delete listeners). ``payloads``: the index to use, when the bank was opened with
    :func:`index_fields` over it as a fill listener (its cache loads in the background; until it is
    loaded, searches go through ``retrieve_patterns``, answered by the store); without it the
    store waits for the bank's cache to load and builds its index from it.
    """

    def __init__(self, bank: Any, *, durable: bool = True, payloads: dict[str, dict[str, Any]] | None = None) -> None:
        self.bank = bank
        self.durable = bool(durable)
        self.lock = threading.RLock()
        self.payloads: dict[str, dict[str, Any]] = {} if payloads is None else payloads
        self.redactor = getattr(bank, "redactor", None)
        if payloads is None and hasattr(bank, "wait_loaded"):
            bank.wait_loaded()   # no fill listener feeds this index: build it from the loaded cache
        cache = getattr(bank, "cache", None)
        if cache is not None and cache.serving and cache.n:
            for p in bank.backend.retrieve(list(cache.ids[: cache.n])):
                self.payloads[p.id] = {k: p.payload.get(k) for k in _FIELDS}
        self.searches = 0
        self.stores = 0
        listeners = getattr(bank, "delete_listeners", None)
        if listeners is not None:   # retention and delete() keep the index exact (and the fast path on)
            listeners.append(self._forget)

    def _forget(self, ids: list[str]) -> None:
        with self.lock:
            for pid in ids:
                self.payloads.pop(pid, None)

    def _fast(self) -> bool:
        cache = getattr(self.bank, "cache", None)
        if cache is None or not cache.serving:
            return False
        if len(self.payloads) > cache.n:   # a fill listener re-added a pattern deleted meanwhile (once)
            for pid in [pid for pid in self.payloads if pid not in cache]:
                del self.payloads[pid]
        return cache.n == len(self.payloads)

    def search_batch(self, vectors: np.ndarray, k: int, *, agents: Sequence[str] | None = None,
                     min_reward: float | None = None, similarity_threshold: float | None = None
                     ) -> list[list[dict[str, Any]]]:
        """Top-``k`` patterns (dicts with ``id``, ``score`` and the payload fields) per row whose
        cosine similarity is at least ``similarity_threshold`` (default: the bank's
        ``similarity_threshold``, as ``retrieve_patterns``)."""
        Q = np.asarray(vectors, np.float32)
        if Q.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array (n, dim), got shape {Q.shape}")
        thr = self.bank.config.similarity_threshold if similarity_threshold is None else float(similarity_threshold)
        with self.lock:
            self.searches += len(Q)
            return self._search(Q, k, agents, min_reward, thr)

    def _search(self, Q: np.ndarray, k: int, agents: Sequence[str] | None,
                min_reward: float | None, thr: float) -> list[list[dict[str, Any]]]:
        if not self._fast():
            return [[{"id": p.id, "score": p.score, "task": p.task, "reward": p.reward, "success": p.success,
                      "agent_id": p.agent_id, "task_type": p.task_type}
                     for p in self.bank.retrieve_patterns(vector=q, k=k, source_agents=agents, min_reward=min_reward,
                                                          similarity_threshold=thr)]
                    for q in Q]
        from swarm_sona.bank.filters import PatternFilter

        cache = self.bank.cache
        n = cache.n
        if n == 0 or k <= 0:
            return [[] for _ in range(len(Q))]
        S = Q @ cache.vectors[:n].T
        keep = cache.mask(PatternFilter.build(agents=agents))
        if min_reward is not None:
            r = cache.reward[:n] >= np.float32(min_reward)
            keep = r if keep is None else keep & r
        if keep is not None:
            if not keep.any():
                return [[] for _ in range(len(Q))]
            S = np.where(keep[None, :], S, -np.inf)
        if thr > -1.0:   # below the threshold: no hit
            S = np.where(S >= np.float32(thr) - np.float32(1e-6), S, -np.inf)
        ids = cache.ids
        payloads = self.payloads
        if k == 1:   # the swarm's default: one argmax per row instead of a partition
            best = S.argmax(axis=1)
            top_v = S[np.arange(len(Q)), best]
            tied = np.flatnonzero((S == top_v[:, None]).sum(axis=1) > 1)
            for i in tied.tolist():   # equal similarity: the higher reward, then the newest wins
                cand = np.flatnonzero(S[i] == top_v[i])
                best[i] = cand[np.lexsort((-cache.created[cand], -cache.reward[cand]))[0]]
            top = top_v.tolist()
            return [[] if s == -np.inf else [{"id": ids[j], "score": s, **payloads[ids[j]]}]
                    for j, s in zip(best.tolist(), top, strict=True)]
        kk = min(k, n)
        idx = np.argpartition(-S, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(Q), 1))
        out = []
        for i in range(len(Q)):
            row = idx[i][np.argsort(-S[i, idx[i]], kind="stable")]
            hits = []
            for j in row:
                s = float(S[i, j])
                if s == -np.inf:
                    break
                pid = ids[j]
                hits.append({"id": pid, "score": s, **self.payloads[pid]})
            out.append(hits)
        return out

    def store_batch(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Store trajectory dicts / pattern items in one write; returns the acknowledged ids
        (with ``durable``, once a flush covers them; a failed flush raises and acknowledges none)."""
        if not records:
            return []
        items = [_item(r) for r in records]
        with self.lock:
            receipt = self.bank.write_many(items)
            ids = receipt.ids
            for pid, it in zip(ids, items, strict=True):
                f = {k: it.get(k) for k in _FIELDS}
                if self.redactor is not None:   # the index holds what the bank stored, never the raw text
                    from swarm_sona.core import redaction

                    f["task"] = redaction.redact_value(self.redactor, f["task"], "task")
                self.payloads[pid] = f
            self.stores += len(ids)
        if self.durable:
            self.bank.wait_durable(receipt.seq)   # no lock held: other writers join this flush
        return ids


class BankActor:
    """Owns the embedded bank at ``config.path`` (see module docs). ``durable=False`` acknowledges
    stores before any flush (durable at the next ``flush``/checkpoint; for benchmarks and
    throw-away banks)."""

    def __init__(self, config: ReasoningBankConfig | Mapping[str, Any] | None = None, *, dim: int = 256,
                 embedder: str | None = None, durable: bool = True) -> None:
        from swarm_sona.bank import ReasoningBank

        cfg = config if isinstance(config, ReasoningBankConfig) else ReasoningBankConfig.from_dict(config)
        index: dict[str, dict[str, Any]] = {}   # filled while a large bank's cache loads in the background
        self.bank = ReasoningBank(cfg, embedder=embedder or f"hashing-v1-{dim}",
                                  fill_listeners=[functools.partial(index_fields, index)])
        self.store = PatternStore(self.bank, durable=durable, payloads=index)

    def search_batch(self, vectors: np.ndarray, k: int, *, agents: Sequence[str] | None = None,
                     min_reward: float | None = None, similarity_threshold: float | None = None
                     ) -> list[list[dict[str, Any]]]:
        """See :meth:`PatternStore.search_batch`."""
        return self.store.search_batch(vectors, k, agents=agents, min_reward=min_reward,
                                       similarity_threshold=similarity_threshold)

    def store_batch(self, records: Sequence[Mapping[str, Any]]) -> list[str]:
        """See :meth:`PatternStore.store_batch`."""
        return self.store.store_batch(records)

    def retrieve(self, query: str | None = None, k: int = 1, **filters: Any) -> list[dict[str, Any]]:
        """``ReasoningBank.retrieve_patterns`` with any filters (``source_agents``...), as dicts."""
        vec = filters.pop("vector", None)
        pats = self.bank.retrieve_patterns(query, k, vector=vec, **filters)
        return [{"id": p.id, "score": p.score, "task": p.task, "output": p.output, "reward": p.reward,
                 "success": p.success, "agent_id": p.agent_id, "task_type": p.task_type} for p in pats]

    def has(self, ids: Sequence[str]) -> list[bool]:
        """Whether each pattern id is stored (durable store, not the cache)."""
        return [self.bank.get(i) is not None for i in ids]

    def distill(self, trajectories: Sequence[Mapping[str, Any]]) -> DistillReport:
        """``ReasoningBank.distill`` on trajectory dicts."""
        with self.store.lock:
            return self.bank.distill(list(trajectories))

    def count(self, **filters: Any) -> int:
        """Number of stored patterns (filters as ``ReasoningBank.count``)."""
        return self.bank.count(**filters)

    def stats(self) -> dict[str, Any]:
        """Bank stats plus the number of batched searches and stores served."""
        return {**self.bank.stats(), "searches": self.store.searches, "stores": self.store.stores, "pid": os.getpid(),
                "cpu_s": time.process_time(), "durable": self.store.durable}

    def flush(self) -> None:
        """Flush the bank to disk."""
        with self.store.lock:
            self.bank.flush()

    def snapshot(self, path: str) -> int:
        """Point-in-time snapshot of the bank to one checkpoint file (``ReasoningBank.snapshot``);
        returns the number of patterns written."""
        return int(self.bank.snapshot(path))

    def restore(self, path: str) -> int:
        """Replace the bank's content with a snapshot's (``ReasoningBank.restore``); returns the count."""
        old = self.store
        with old.lock:
            n = int(self.bank.restore(path))
            self.bank.flush()   # the restored content is durable before the reply
            if old._forget in self.bank.delete_listeners:
                self.bank.delete_listeners.remove(old._forget)
            self.store = PatternStore(self.bank, durable=old.durable)
        return n

    def close(self) -> None:
        """Close the bank (releases the path's lock)."""
        self.bank.close()

    def ping(self) -> int:
        """Liveness probe; returns the process id."""
        return os.getpid()
