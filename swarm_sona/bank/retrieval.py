"""Reads of a ReasoningBank: candidates for a query vector from the hot-path cache (payload
fields from the pattern LRU, else one store read) or, for what the cache cannot filter, from
the store; counts and reads by id. Expired patterns (retention) are never returned. The bank
validates the request and holds its lock around these calls; ranking is in :mod:`.scoring`.

Example:
    >>> from swarm_sona.bank import ReasoningBank, PatternFilter
    >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-32")
    >>> pid = bank.store_pattern("sort a list", "", "sorted()", 0.9, True)
    >>> q = bank.embedder.embed(["sort a list"])[0]
    >>> [p.task for p in bank.reader.fetch(q, 3, PatternFilter(), -1.0, need_vectors=False, exact=False)]
    ['sort a list']
    >>> bank.close()
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm_sona.bank.backend import BankBackend, StoredPoint
from swarm_sona.bank.cache import HotCache
from swarm_sona.bank.errors import BankInputError
from swarm_sona.bank.filters import PatternFilter
from swarm_sona.bank.lru import PayloadLRU
from swarm_sona.bank.opening import usable_points
from swarm_sona.bank.pattern import Pattern
from swarm_sona.bank.retention import RetentionKeeper
from swarm_sona.bank.scoring import ScoreWeights, check_mmr

__all__ = ["PatternReader", "RetrievalRequest", "check_request"]

_TIE_EXTRA = 7   # candidates fetched beyond k so that equal similarities can be ordered


@dataclass(frozen=True)
class RetrievalRequest:
    """The checked ranking options of one retrieval: ``k``, the similarity ``threshold``, MMR's
    ``mmr`` lambda (None: off) and the recency/reliability ``weights`` (None: plain similarity).

    Example:
        >>> check_request(None, None, None, None, default_k=5, default_threshold=0.0)
        RetrievalRequest(k=5, threshold=0.0, mmr=None, weights=None)
    """

    k: int
    threshold: float
    mmr: float | None
    weights: ScoreWeights | None

    @property
    def reranked(self) -> bool:
        """MMR or score weights re-rank the candidates (they need vectors and more of them)."""
        return self.mmr is not None or self.weights is not None

    @property
    def candidates(self) -> int:
        """How many candidates to fetch: 4k (at least k + 16) to re-rank, else k plus a few so that
        equal similarities can be ordered."""
        return max(4 * self.k, self.k + 16) if self.reranked else self.k + _TIE_EXTRA


def check_request(k: Any, threshold: Any, mmr: Any, weights: Any, *, default_k: int,
                  default_threshold: float) -> RetrievalRequest:
    """Validate retrieval options (None = the default); :class:`BankInputError` naming the bad one."""
    if k is None:
        k = default_k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise BankInputError(f"k must be a positive integer, got {k!r}")
    thr = default_threshold if threshold is None else threshold
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not -1.0 <= float(thr) <= 1.0 \
            or math.isnan(float(thr)):
        raise BankInputError(f"similarity_threshold must be a number in [-1, 1], got {thr!r}")
    lam = check_mmr(mmr)
    if weights is not None and not isinstance(weights, ScoreWeights):
        raise BankInputError(f"score_weights must be a ScoreWeights, got {type(weights).__name__}")
    sw = weights if weights is not None and not weights.is_plain else None
    return RetrievalRequest(int(k), float(thr), lam, sw)


class PatternReader:
    """Candidate and point reads over a bank's ``backend``, ``cache``, pattern LRU ``payloads``
    and retention ``keeper`` (see module docs); the caller holds the bank's lock."""

    def __init__(self, backend: BankBackend, cache: HotCache, payloads: PayloadLRU, keeper: RetentionKeeper) -> None:
        self.backend = backend
        self.cache = cache
        self.payloads = payloads
        self.keeper = keeper

    def get(self, pid: str) -> Pattern | None:
        """The pattern with this id (vector included), or None (missing or expired)."""
        pts = self.backend.retrieve([pid], with_vectors=True)
        cutoff = self.keeper.cutoff()
        if not pts or (cutoff is not None and not float(pts[0].payload.get("created_at", 0.0)) >= cutoff):
            return None  # an expired pattern is gone, even before a prune deletes it
        return Pattern.from_payload(pts[0].id, pts[0].payload, vector=pts[0].vector)

    def count(self, filt: PatternFilter) -> int:
        """Patterns meeting ``filt`` (the cache counts when it can filter, else the store)."""
        if self.cache.serving and filt.cache_filterable:
            return self.cache.count(filt)
        return self.backend.count(self.keeper.conditions(filt))

    def cached_hits(self, q: np.ndarray, n: int, filt: PatternFilter, thr: float,
                    need_vectors: bool) -> list[tuple[dict[str, Any], float, np.ndarray | None]]:
        """The hot path: (pattern fields, similarity, vector) of the cache's top ``n`` with
        similarity >= ``thr``, best first; fields from the pattern LRU, else one store read."""
        cache = self.cache
        rows, sims = cache.search_rows(q, n, filt)
        ids, lru = cache.ids, self.payloads
        hits: list[list[Any]] = []
        missing: list[str] = []
        for r, s in zip(rows.tolist(), sims.tolist(), strict=True):
            if not s >= thr:  # best first: the rest are below the threshold too
                break
            pid = ids[r]
            f = lru.get(pid)
            if f is None:
                missing.append(pid)
            hits.append([pid, f, s, r])
        if missing:
            got = {}
            for p in self.backend.retrieve(missing):
                got[p.id] = f = Pattern.payload_fields(p.id, p.payload)
                lru.put(p.id, f)
            for h in hits:
                if h[1] is None:
                    h[1] = got.get(h[0])
        vecs = cache.vectors
        return [(f, s, vecs[r].copy() if need_vectors else None) for _, f, s, r in hits if f is not None]

    def candidates(self, q: np.ndarray, n: int, filt: PatternFilter, *, need_vectors: bool,
                   exact: bool) -> list[StoredPoint]:
        """The top ``n`` points for ``q`` under ``filt`` with their payloads (and vectors)."""
        if self.cache.serving and filt.cache_filterable:
            ids, sims = self.cache.search(q, n, filt)
            got = {p.id: p for p in self.backend.retrieve(ids)} if ids else {}
            return [StoredPoint(pid, got[pid].payload, self.cache.vectors_of([pid])[0] if need_vectors else None, s)
                    for pid, s in zip(ids, sims.tolist(), strict=True) if pid in got]
        return usable_points(self.backend.search(q, n, self.keeper.conditions(filt), with_vectors=need_vectors,
                                                 exact=exact))

    def fetch(self, q: np.ndarray, n: int, filt: PatternFilter, thr: float, *, need_vectors: bool,
              exact: bool) -> list[Pattern]:
        """Up to ``n`` candidate patterns for ``q`` with similarity >= ``thr`` (``similarity`` and
        ``score`` set to it), from the cache when it can filter, else from the store."""
        if self.cache.serving and filt.cache_filterable:
            from_fields = Pattern.from_fields
            return [from_fields(f, vector=v, similarity=s, score=s)
                    for f, s, v in self.cached_hits(q, n, filt, thr, need_vectors)]
        cands = usable_points(self.backend.search(q, n, self.keeper.conditions(filt), with_vectors=need_vectors,
                                                  exact=exact))
        return [Pattern.from_payload(c.id, c.payload, vector=c.vector, similarity=c.score, score=c.score)
                for c in cands if c.score is not None and c.score >= thr]
