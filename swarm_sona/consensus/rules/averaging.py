"""The averaging merge rules: they weight agents by their (validated) trajectory counts and
tolerate no bad agent. ``fedavg`` (the trajectory-weighted mean), ``fisher`` (per coordinate,
weighted by each agent's Fisher), ``ties`` (TIES-merging of task vectors) and ``dare``
(drop-and-rescale, seeded). All are deterministic given updates sorted by agent id.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> fedavg([AgentUpdate("a", 0, {"x": np.array([0.0])}, weight=1),
    ...         AgentUpdate("b", 0, {"x": np.array([4.0])}, weight=3)])["x"].tolist()
    [3.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from swarm_sona.consensus.rules.arrays import cast_like, stack, trajectory_weights, weighted_mean
from swarm_sona.consensus.updates import AgentUpdate, MergeError, check_compatible

__all__ = ["fedavg", "fisher_weighted", "ties", "dare"]


def fedavg(updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """Trajectory-weighted mean (FedAvg), overflow-safe. Tolerates no bad agent.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.array([0.0])}, weight=1),
        ...      AgentUpdate("b", 0, {"x": np.array([4.0])}, weight=3)]
        >>> fedavg(u)["x"].tolist()
        [3.0]
    """
    ups = check_compatible(updates)
    w = trajectory_weights(ups)
    return cast_like({k: weighted_mean(w, stack(ups, k)) for k in ups[0].params}, ups)


def fisher_weighted(updates: Sequence[AgentUpdate], *, eps: float = 1e-12) -> dict[str, np.ndarray]:
    """Per-coordinate Fisher-weighted mean: coordinates an agent is confident about count more.

    ``sum_i w_i F_i x_i / sum_i w_i F_i`` with w_i the trajectory weights; a name without a
    Fisher in some update, or a coordinate where all Fishers are ~0, falls back to fedavg.
    Tolerates no bad agent (a forged huge Fisher wins its coordinates).

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.array([0.0, 0.0])}, fisher={"x": np.array([1.0, 0.0])}),
        ...      AgentUpdate("b", 0, {"x": np.array([4.0, 4.0])}, fisher={"x": np.array([3.0, 0.0])})]
        >>> fisher_weighted(u)["x"].tolist()
        [3.0, 2.0]
    """
    ups = check_compatible(updates)
    w = trajectory_weights(ups)
    out = {}
    for k in ups[0].params:
        x = stack(ups, k)
        mean = weighted_mean(w, x)
        if all(u.fisher is not None and k in u.fisher for u in ups):
            F = np.stack([np.asarray(u.fisher[k], np.float64) for u in ups])  # type: ignore[index]
            fm = float(F.max()) if F.size else 0.0
            F = F / fm if fm > 0 else F
            wf = w.reshape((-1,) + (1,) * (x.ndim - 1)) * F
            den = wf.sum(axis=0)
            num = weighted_mean(np.ones(len(ups)), wf * x) if x.size else np.zeros(x.shape[1:])
            out[k] = np.where(den > eps, num / np.maximum(den, eps), mean)
        else:
            out[k] = mean
    return cast_like(out, ups)


def ties(updates: Sequence[AgentUpdate], *, density: float = 0.2) -> dict[str, np.ndarray]:
    """TIES-merging (Yadav et al. 2023) of task vectors (adapter states relative to zero).

    Per name: keep each update's top ``density`` fraction of entries by magnitude, elect a
    sign per coordinate by total mass, average the kept entries that agree with it. Meant for
    merging adapters trained on different tasks; tolerates no bad agent.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.array([1.0, -3.0])}), AgentUpdate("b", 0, {"x": np.array([3.0, 1.0])})]
        >>> ties(u, density=1.0)["x"].tolist()
        [2.0, -3.0]
    """
    if not 0 < density <= 1:
        raise MergeError(f"ties: density must be in (0, 1], got {density}")
    ups = check_compatible(updates)
    out = {}
    for k in ups[0].params:
        x = stack(ups, k)
        flat = x.reshape(len(ups), -1)
        keep = max(1, int(math.ceil(density * flat.shape[1])))
        trimmed = np.zeros_like(flat)
        for i in range(len(ups)):
            idx = np.argsort(-np.abs(flat[i]), kind="stable")[:keep]
            trimmed[i, idx] = flat[i, idx]
        m = float(np.max(np.abs(trimmed))) if trimmed.size else 0.0
        sign = np.sign((trimmed / m).sum(axis=0)) if m > 0 else np.zeros(flat.shape[1])
        agree = (np.sign(trimmed) == sign) & (trimmed != 0)
        cnt = agree.sum(axis=0)
        tot = ((trimmed / m) * agree).sum(axis=0) * m if m > 0 else np.zeros(flat.shape[1])
        merged = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)
        out[k] = merged.reshape(x.shape[1:])
    return cast_like(out, ups)


def dare(updates: Sequence[AgentUpdate], *, p: float = 0.5, seed: int = 0) -> dict[str, np.ndarray]:
    """DARE (Yu et al. 2024): drop each entry with probability ``p``, rescale by 1/(1-p), average.

    Seeded per (seed, agent id, name), so the merge is deterministic. Tolerates no bad agent.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.ones(4)}), AgentUpdate("b", 0, {"x": np.ones(4)})]
        >>> dare(u, p=0.0)["x"].tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    if not 0 <= p < 1:
        raise MergeError(f"dare: p must be in [0, 1), got {p}")
    ups = check_compatible(updates)
    w = trajectory_weights(ups)
    out = {}
    for k in ups[0].params:
        rows = []
        for u in ups:
            x = np.asarray(u.params[k], np.float64)
            key = [seed] + list(f"{u.agent_id}\x00{k}".encode())
            mask = np.random.default_rng(key).random(x.shape) >= p
            rows.append(np.where(mask, x, 0.0))
        out[k] = weighted_mean(w, np.stack(rows)) / (1.0 - p)
    return cast_like(out, ups)
