"""The router-head gate: the head's share of the bandit blend follows its measured accuracy.

The attached :class:`~swarm_sona.routing.router.LLMRouter` blends the engine's router-head
probability into its bandit estimate, ``q = (1 - b) q_bandit + b p_head`` (``b`` grows with the
model's feedback count up to ``llm_router.head_weight``). Whether that helps is measured, not
assumed: on every outcome of a routed model (before anyone learns from it) the gate scores
the blend at candidate shares ``g`` of ``b``::

    q_g = q_0 + g (q_1 - q_0)        q_0: the bandit alone, q_1: the full blend (g = 1)

by a running log-loss (exponential moving average over ``head_gate_window`` outcomes; the same
outcomes for every candidate), and routes with the candidate of the lowest loss (ties: the
smaller share). Until ``head_gate_window // 10`` outcomes are scored the share is 0: a head
that does not measurably beat the bandit gets no say. The share reaches the router as a
rescaled head probability ``p' = q_0 + g (p_head - q_0)``, for which the router's own blend
gives exactly ``q_g`` (its mean estimate); ``g = 0`` passes no head at all (the bandit's
decision, exploration included, exactly), ``g = 1`` the head as it is. For ``0 < g < 1`` the
router's exploration draw keeps its weight ``1 - b`` (the rescaled head is a mean).

The gate is local to an engine and not checkpointed: a restored engine measures again from a
closed gate.

Example:
    >>> gate = HeadGate(window=100)
    >>> for _ in range(50):   # the head says 0.9 where the bandit says 0.5; the outcomes agree with it
    ...     gate.record(0.5, 0.7, 1.0)
    >>> gate.share
    1.0
    >>> for _ in range(300):  # now the head is wrong
    ...     gate.record(0.5, 0.7, 0.0)
    >>> gate.share
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np

__all__ = ["HeadGate", "HeadGateStats", "SHARES"]

#: candidate shares of the router's head weight
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
_P_MIN = 1e-6


class HeadGateStats(TypedDict):
    """What the gate has measured: outcomes scored, the share in use, each candidate's log-loss."""

    outcomes: int
    share: float
    log_loss: dict[str, float | None]


class HeadGate:
    """Running log-loss of the bandit/head blend at each candidate share (module docs).

    ``window``: outcomes the moving average spans (decay ``1 - 1 / window``); the gate is shut
    (share 0) until ``window // 10`` (at least 1) outcomes are scored.
    """

    def __init__(self, window: int = 500) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"head gate window must be a positive integer, got {window!r}")
        self.window = window
        self.decay = 1.0 - 1.0 / window
        self.min_outcomes = max(1, window // 10)
        self.n = 0
        self._loss = np.zeros(len(SHARES))
        self._norm = 0.0   # bias correction of the moving average (sum of the weights so far)
        self._shares = np.array(SHARES)
        self.share = 0.0

    def record(self, q0: float, q1: float, y: float) -> None:
        """Score one outcome ``y`` (1 success, 0 failure) of a model whose success the bandit
        alone predicted ``q0`` and the full blend ``q1`` (both before learning from it)."""
        if not (math.isfinite(q0) and math.isfinite(q1) and math.isfinite(y)):
            return
        p = np.clip(q0 + self._shares * (q1 - q0), _P_MIN, 1.0 - _P_MIN)
        loss = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
        self._loss *= self.decay
        self._loss += loss
        self._norm = self._norm * self.decay + 1.0
        self.n += 1
        if self.n >= self.min_outcomes:
            self.share = float(SHARES[int(np.argmin(self._loss))])   # argmin: the first (smallest) of ties

    def record_many(self, q0: Sequence[float], q1: Sequence[float], ys: Sequence[float]) -> None:
        """:meth:`record` for several outcomes, in order."""
        for a, b, y in zip(q0, q1, ys, strict=True):
            self.record(float(a), float(b), float(y))

    def head_probs(self, router: Any, embedding: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
        """The head probabilities to hand ``router`` for one task: None at share 0, ``probs``
        at share 1, else ``q_0 + share (probs - q_0)`` with ``q_0`` the router's bandit estimate."""
        if self.share <= 0.0:
            return None
        if self.share >= 1.0:
            return probs
        q0 = np.asarray(router.success_probabilities(embedding=embedding), np.float64)
        return q0 + self.share * (np.asarray(probs, np.float64) - q0)

    def head_probs_batch(self, router: Any, E: np.ndarray, P: np.ndarray) -> np.ndarray | None:
        """:meth:`head_probs` for (n, d) embeddings and (n, M) head probabilities."""
        if self.share <= 0.0 or self.share >= 1.0:
            return None if self.share <= 0.0 else P
        Q0 = np.stack([np.asarray(router.success_probabilities(embedding=e), np.float64) for e in E])
        return Q0 + self.share * (np.asarray(P, np.float64) - Q0)

    def stats(self) -> HeadGateStats:
        """Outcomes scored, the share in use and each candidate's moving-average log-loss."""
        ll = self._loss / self._norm if self._norm > 0 else None
        return {"outcomes": self.n, "share": self.share,
                "log_loss": {f"{g:g}": (None if ll is None else float(ll[i])) for i, g in enumerate(SHARES)}}
