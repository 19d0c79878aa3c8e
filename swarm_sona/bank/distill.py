"""Distillation: k-means over trajectory embeddings, each cluster summarised as a pattern draft.

Successes and failures are clustered separately (both are kept: failures teach what to
avoid), with ``k`` split between them in proportion to their counts. k-means uses k-means++
seeding from a seeded ``numpy.random.Generator`` and Lloyd iterations whose assignment step
is ``kernels.kmeans_assign``; embeddings are unit-normalised first and centroids are
renormalised, so clusters follow cosine similarity (spherical k-means).

A cluster becomes a :class:`ClusterSummary`: centroid, size, mean reward, success rate, the
member nearest the centroid (its task names the pattern) and the best-rewarded member (its
output is the approach). The bank turns summaries into patterns and merges a summary into an
existing pattern when they are within the merge threshold.

Example:
    >>> import numpy as np
    >>> from swarm_sona.bank.distill import kmeans
    >>> X = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]], np.float32)
    >>> labels, C = kmeans(X, 2, seed=0)
    >>> bool(labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2])
    True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarm_sona import kernels as nk
from swarm_sona.core.trajectory import Trajectory

__all__ = ["kmeans", "kmeans_pp_init", "ClusterSummary", "summarize_clusters"]


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def kmeans_pp_init(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: first centre uniform, then each with probability proportional to D^2."""
    n = X.shape[0]
    centres = np.empty((k, X.shape[1]), np.float32)
    centres[0] = X[int(rng.integers(n))]
    _, d2 = nk.kmeans_assign(X, centres[:1])
    for j in range(1, k):
        w = np.maximum(d2.astype(np.float64), 0.0)
        total = float(w.sum())
        idx = int(rng.integers(n)) if total <= 0 else int(rng.choice(n, p=w / total))
        centres[j] = X[idx]
        _, d2_new = nk.kmeans_assign(X, centres[j : j + 1])
        d2 = np.minimum(d2, d2_new)
    return centres


def kmeans(X: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means with k-means++ seeding; returns (labels int64 (n,), unit centroids (k, d)).

    Empty clusters keep their previous centre. Deterministic for a given ``seed``.
    """
    X = _unit_rows(np.asarray(X, np.float32))
    n = X.shape[0]
    k = max(1, min(int(k), n))
    rng = np.random.default_rng(seed)
    C = kmeans_pp_init(X, k, rng)
    labels = np.full(n, -1, np.int64)
    for _ in range(max_iter):
        new, _ = nk.kmeans_assign(X, C)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = X[labels == j]
            if len(members):
                C[j] = members.mean(axis=0)
        C = _unit_rows(C)
    return labels, C


@dataclass
class ClusterSummary:
    """What a cluster of trajectories says (see module docs)."""

    centroid: np.ndarray
    size: int
    mean_reward: float
    success_rate: float
    representative: Trajectory
    best: Trajectory
    agent_id: str | None
    task_type: str | None
    models: dict[str, int] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """Majority outcome of the cluster."""
        return self.success_rate >= 0.5

    def description(self) -> str:
        """One line: size, mean reward, success rate, models used."""
        models = ", ".join(f"{m} x{c}" for m, c in sorted(self.models.items())) or "n/a"
        return (f"Distilled from {self.size} trajectories: mean reward {self.mean_reward:.2f}, "
                f"success rate {self.success_rate:.0%}, models {models}.")


def _common(values: Sequence[Any]) -> Any:
    """The single value shared by all, else the most common non-None one, else None."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return Counter(vals).most_common(1)[0][0]


def summarize_clusters(trajectories: Sequence[Trajectory], k: int, *, seed: int = 0) -> list[ClusterSummary]:
    """Cluster successes and failures separately (k split by their counts) and summarise each cluster."""
    out: list[ClusterSummary] = []
    n = len(trajectories)
    if n == 0:
        return out
    groups = [[t for t in trajectories if t.success], [t for t in trajectories if not t.success]]
    for gi, group in enumerate(groups):
        if not group:
            continue
        kg = max(1, min(len(group), round(k * len(group) / n)))
        X = _unit_rows(np.stack([t.embedding for t in group]).astype(np.float32))
        labels, C = kmeans(X, kg, seed=seed + gi)
        for j in range(C.shape[0]):
            idx = np.flatnonzero(labels == j)
            if idx.size == 0:
                continue
            members = [group[i] for i in idx]
            sims = X[idx] @ C[j]
            rep = members[int(np.argmax(sims))]
            rewards = np.array([t.reward for t in members])
            best = members[int(np.argmax(rewards))]  # the first of the best-rewarded
            out.append(ClusterSummary(
                centroid=C[j].copy(), size=len(members), mean_reward=float(rewards.mean()),
                success_rate=float(np.mean([t.success for t in members])), representative=rep, best=best,
                agent_id=_common([t.agent_id for t in members]), task_type=_common([t.task_type for t in members]),
                models=dict(Counter(t.model for t in members if t.model)),
            ))
    return out
