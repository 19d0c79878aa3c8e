"""Re-ranking of retrieval candidates: recency + reliability score and MMR diversification.

``score = similarity + recency * 2^(-age / half_life) + reliability * reliability_estimate``
where ``age`` is the time since the pattern was last used (or created) and the reliability
estimate is the Laplace-smoothed share of successful uses (see :class:`~.pattern.Pattern`).
With both weights 0 the score is the similarity.

MMR (maximal marginal relevance) picks greedily the candidate maximising
``lam * score - (1 - lam) * max cosine to the already picked``, so near-duplicates crowding
the top give way to different patterns; ``lam = 1`` keeps the plain order.

Example:
    >>> import numpy as np
    >>> from swarm_sona.bank.scoring import mmr_order
    >>> V = np.array([[1, 0], [1, 0], [0.8, 0.6]], np.float32)   # two duplicates and a different one
    >>> mmr_order(np.array([0.99, 0.98, 0.8]), V, k=2, lam=0.5)
    [0, 2]
    >>> mmr_order(np.array([0.99, 0.98, 0.8]), V, k=2, lam=1.0)
    [0, 1]
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from swarm_sona.bank.errors import BankInputError
from swarm_sona.bank.pattern import Pattern

__all__ = ["ScoreWeights", "combined_scores", "mmr_order", "check_mmr", "break_ties", "rank_patterns"]


@dataclass(frozen=True)
class ScoreWeights:
    """Weights of the optional recency and reliability terms (see module docs).

    Example:
        >>> ScoreWeights(recency=0.1, reliability=0.2).half_life_s
        604800.0
    """

    recency: float = 0.0
    reliability: float = 0.0
    half_life_s: float = 7 * 86400.0

    def __post_init__(self) -> None:
        for name in ("recency", "reliability", "half_life_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise BankInputError(f"score weight {name} must be a finite number >= 0, got {v!r}")
        if self.half_life_s == 0:
            raise BankInputError("score weight half_life_s must be > 0")

    @property
    def is_plain(self) -> bool:
        """True when the score is just the similarity."""
        return self.recency == 0 and self.reliability == 0


def combined_scores(patterns: Sequence[Pattern], similarities: np.ndarray, weights: ScoreWeights,
                    now: float | None = None) -> np.ndarray:
    """Similarity + recency + reliability terms for each pattern (float64)."""
    now = time.time() if now is None else now
    out = np.asarray(similarities, np.float64).copy()
    if weights.is_plain:
        return out
    for i, p in enumerate(patterns):
        ref = p.last_used_at if p.last_used_at is not None else p.created_at
        age = max(0.0, now - float(ref))
        out[i] += weights.recency * 2.0 ** (-age / weights.half_life_s) + weights.reliability * p.reliability
    return out


def check_mmr(lam: object) -> float | None:
    """Validate an MMR lambda (None = off) in [0, 1]."""
    if lam is None:
        return None
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= float(lam) <= 1.0:
        raise BankInputError(f"mmr must be None or a number in [0, 1] (1 = relevance only), got {lam!r}")
    return float(lam)


def mmr_order(scores: np.ndarray, vectors: np.ndarray, k: int, lam: float) -> list[int]:
    """Indices of ``k`` candidates chosen by MMR, in pick order (ties: lower index)."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return []
    V = np.asarray(vectors, np.float64)
    sim = V @ V.T
    rel = np.asarray(scores, np.float64)
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    avail = np.ones(n, bool)
    for _ in range(k):
        red = np.where(np.isfinite(max_sim), max_sim, 0.0)
        val = lam * rel - (1.0 - lam) * red
        val[~avail] = -np.inf
        j = int(np.argmax(val))
        picked.append(j)
        avail[j] = False
        max_sim = np.maximum(max_sim, sim[j])
    return picked


def break_ties(pats: list[Pattern]) -> list[Pattern]:
    """Patterns best first: by similarity, equal similarities by reward, then by recency (the
    newest first), so that with k=1 a success beats an equally similar failure."""
    return sorted(pats, key=lambda p: (-(p.similarity or 0.0), -p.reward, -p.created_at))


def rank_patterns(pats: list[Pattern], k: int, *, lam: float | None, weights: ScoreWeights | None) -> list[Pattern]:
    """The ``k`` best of retrieval candidates (each with ``similarity`` set): by similarity with
    :func:`break_ties` when neither ``weights`` nor MMR's ``lam`` is given; else by the combined
    score (set as ``score`` on each pattern), diversified by MMR when ``lam`` is given (the
    candidates then need their vectors).

    Example:
        >>> a = Pattern.from_payload("6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21", {"task": "a", "reward": 0.2,
        ...                          "success": True}, similarity=0.9)
        >>> b = Pattern.from_payload("7f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21", {"task": "b", "reward": 0.9,
        ...                          "success": True}, similarity=0.9)
        >>> [p.task for p in rank_patterns([a, b], 1, lam=None, weights=None)]
        ['b']
    """
    if lam is None and weights is None:
        return break_ties(pats)[:k]
    sims = np.array([p.similarity for p in pats], np.float64)
    scores = combined_scores(pats, sims, weights) if weights is not None else sims
    for p, s in zip(pats, scores, strict=True):
        p.score = float(s)
    if lam is not None and pats:
        order = mmr_order(scores, np.stack([p.vector for p in pats if p.vector is not None]), k, lam)
    else:
        rew = np.array([p.reward for p in pats], np.float64)
        rec = np.array([p.created_at for p in pats], np.float64)
        order = [int(i) for i in np.lexsort((-rec, -rew, -scores))[:k]] if pats else []
    return [pats[i] for i in order]
