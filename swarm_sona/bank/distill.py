"""Distillation: k-means over trajectory embeddings, each cluster summarised as a pattern draft.

Successes and failures are clustered separately (both are kept: failures teach what to
avoid), with ``k`` split between them in proportion to their counts. k-means uses k-means++
seeding from a seeded ``numpy.random.Generator`` and Lloyd iterations whose assignment step
is ``kernels.kmeans_assign``; embeddings are unit-normalised first and centroids are
renormalised, so clusters follow cosine similarity (spherical k-means).

A cluster becomes a :class:`ClusterSummary`: centroid, size, mean reward, success rate, the
member nearest the centroid (its task names the pattern) and the best-rewarded member (its
output is the approach). :func:`apply_summaries` turns summaries into patterns of a bank, or
merges a summary into an existing pattern when they are within the merge threshold.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from swarm_sona import kernels as nk
from swarm_sona.bank.errors import BankDimensionError, BankInputError
from swarm_sona.bank.filters import PatternFilter
from swarm_sona.bank.items import redact_item
from swarm_sona.bank.pattern import Pattern, check_reward
from swarm_sona.core.trajectory import Trajectory, TrajectoryError

__all__ = ["kmeans", "kmeans_pp_init", "ClusterSummary", "summarize_clusters", "check_trajectories",
           "distilled_pattern", "merge_summary", "DistillReport", "check_distill_options", "apply_summaries"]


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


def check_trajectories(trajectories: Iterable[Trajectory | Mapping[str, Any]], dim: int,
                       embedder_name: str) -> list[Trajectory]:
    """Trajectories (or their dicts) as :class:`Trajectory` objects of embedding dimension ``dim``;
    :class:`BankInputError` / :class:`BankDimensionError` naming the first bad one."""
    trajs: list[Trajectory] = []
    for i, t in enumerate(trajectories):
        if not isinstance(t, Trajectory):
            try:
                t = Trajectory.from_dict(dict(t))
            except (TrajectoryError, TypeError, ValueError) as exc:
                raise BankInputError(f"trajectory {i}: {exc}") from exc
        if t.dim != dim:
            raise BankDimensionError(f"trajectory {i} embedding has dimension {t.dim}, but this bank holds "
                                     f"{dim}-d vectors made by embedder {embedder_name!r}")
        trajs.append(t)
    return trajs


def distilled_pattern(s: ClusterSummary, redactor: Callable[..., Any] | None, now: float) -> Pattern:
    """The new pattern a cluster becomes (``source='distilled'``): its representative's task, its
    best output, the cluster's mean reward, outcome, support and description (redacted)."""
    it = {"task": s.representative.task, "output": s.best.output, "description": s.description()}
    if redactor is not None:
        it = redact_item(redactor, it, "distilled pattern: ")
    return Pattern.build(it["task"], "", it["output"], check_reward(s.mean_reward), s.success,
                         {"models": s.models, "success_rate": s.success_rate}, s.agent_id, task_type=s.task_type,
                         description=it["description"], source="distilled", support=s.size, now=now)


def merge_summary(old: Pattern, old_vector: np.ndarray, s: ClusterSummary,
                  centroid: np.ndarray) -> tuple[Pattern, np.ndarray]:
    """A stored pattern with a cluster merged into it: support-weighted mean of the vectors (not
    normalised) and of the rewards, support added up, ``distilled_merges`` counted in metadata.

    Example:
        >>> from types import SimpleNamespace
        >>> old = Pattern.build("t", "", "o", 0.5, True, None, None, now=0.0)
        >>> p, v = merge_summary(old, np.array([1.0, 0.0]), SimpleNamespace(size=1, mean_reward=1.0),
        ...                      np.array([0.0, 1.0]))
        >>> p.reward, p.support, v.tolist()
        (0.75, 2, [1.0, 1.0])
    """
    w_old, w_new = max(1, old.support), s.size
    v = w_old * old_vector.astype(np.float64) + w_new * centroid.astype(np.float64)
    old.reward = float(min(1.0, max(0.0, (w_old * old.reward + w_new * s.mean_reward) / (w_old + w_new))))
    old.support = w_old + w_new
    old.metadata = {**old.metadata, "distilled_merges": int(old.metadata.get("distilled_merges", 0)) + 1}
    return old, v


class DistillReport(TypedDict):
    """What :meth:`ReasoningBank.distill` did: trajectories read, clusters formed, the ids of the
    patterns created and of those a cluster merged into."""

    trajectories: int
    clusters: int
    created: list[str]
    merged: list[str]


def check_distill_options(merge_threshold: Any, k: Any) -> tuple[float, int]:
    """Validated ``(merge_threshold, k)``; :class:`BankInputError` naming the bad one.

    Example:
        >>> check_distill_options(0.9, 4)
        (0.9, 4)
    """
    if isinstance(merge_threshold, bool) or not isinstance(merge_threshold, (int, float)) \
            or not -1.0 <= float(merge_threshold) <= 1.0:
        raise BankInputError(f"merge_threshold must be a number in [-1, 1], got {merge_threshold!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BankInputError(f"k must be a positive integer, got {k!r}")
    return float(merge_threshold), k


def apply_summaries(summaries: Sequence[ClusterSummary], *, reader: Any, writer: Any, threshold: float,
                    unit: Callable[[Any, str], np.ndarray], redactor: Callable[..., Any] | None,
                    clock: Callable[[], float]) -> tuple[list[str], list[str]]:
    """Write each cluster into a bank (``reader``: its :class:`~swarm_sona.bank.retrieval.PatternReader`,
    ``writer``: its :class:`~swarm_sona.bank.writes.PatternWriter`, under its lock): merged into the
    nearest stored pattern of the same outcome when that is at least ``threshold`` cosine-close,
    else a new distilled pattern. ``unit(v, what)`` makes a checked unit vector, ``clock()`` the creation time. Returns the ids
    ``(created, merged)``."""
    created: list[str] = []
    merged: list[str] = []
    for s in summaries:
        c = unit(s.centroid, "cluster centroid")
        hits = reader.candidates(c, 1, PatternFilter(success=s.success), need_vectors=True, exact=True)
        if hits and hits[0].score is not None and hits[0].score >= threshold:
            hit = hits[0]
            if hit.vector is None:
                raise BankInputError(f"pattern {hit.id} was read without its vector")
            old, v = merge_summary(Pattern.from_payload(hit.id, hit.payload), hit.vector, s, c)
            writer.upsert([old.id], unit(v, "merged vector")[None, :], [old.to_payload()])
            merged.append(old.id)
        else:
            created.append(writer.write([distilled_pattern(s, redactor, clock())], c[None, :])[0])
    return created, merged
