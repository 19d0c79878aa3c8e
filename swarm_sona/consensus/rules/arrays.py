"""The array arithmetic merge rules share: stacking one name across updates, normalised
trajectory weights, an overflow-safe weighted mean, and casting a merge back to the updates'
dtypes (refusing values beyond their range).

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> ups = [AgentUpdate("a", 0, {"x": np.array([1e300])}, weight=1),
    ...        AgentUpdate("b", 0, {"x": np.array([1e300])}, weight=1)]
    >>> weighted_mean(trajectory_weights(ups), stack(ups, "x")).tolist()
    [1e+300]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from swarm_sona.consensus.updates import AgentUpdate, MergeError

__all__ = ["stack", "trajectory_weights", "weighted_mean", "cast_like", "flat_matrix"]


def stack(ups: Sequence[AgentUpdate], name: str) -> np.ndarray:
    """The updates' arrays for ``name`` stacked (float64), one row per update.

    Example:
        >>> import numpy as np
        >>> stack([AgentUpdate("a", 0, {"x": np.ones(2)})], "x").shape
        (1, 2)
    """
    return np.stack([np.asarray(u.params[name], np.float64) for u in ups])


def trajectory_weights(ups: Sequence[AgentUpdate]) -> np.ndarray:
    """Normalised trajectory weights, computed overflow-safe (scaled by the largest first);
    uniform when no weight is positive.

    Example:
        >>> import numpy as np
        >>> trajectory_weights([AgentUpdate(a, 0, {"x": np.ones(1)}, weight=w) for a, w in zip("ab", [1, 3])]).tolist()
        [0.25, 0.75]
    """
    w = np.array([u.weight for u in ups], np.float64)
    m = float(w.max()) if len(w) else 0.0
    if not m > 0 or not math.isfinite(m):
        return np.full(len(ups), 1.0 / max(1, len(ups)))
    w = w / m
    return w / w.sum()


def weighted_mean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``sum_i w_i x_i`` for normalised ``w``, overflow-safe: scaled by max |x| first.

    Example:
        >>> import numpy as np
        >>> weighted_mean(np.array([0.5, 0.5]), np.array([[1.0], [3.0]])).tolist()
        [2.0]
    """
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m == 0.0:
        return np.zeros(x.shape[1:])
    return np.tensordot(w, x / m, axes=1) * m


def cast_like(out: dict[str, np.ndarray], ups: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """The merged arrays in the first update's float dtypes (float64 for non-float names), by
    sorted name; raises :class:`MergeError` if a value does not fit the dtype.

    Example:
        >>> import numpy as np
        >>> cast_like({"x": np.array([1e300])}, [AgentUpdate("a", 0, {"x": np.zeros(1, np.float32)})])
        Traceback (most recent call last):
        ...
        swarm_sona.consensus.updates.MergeError: merged 'x' is not finite in float32 (values beyond its range)
    """
    ref = ups[0].params
    res = {}
    for k in sorted(out):
        dt = ref[k].dtype if ref[k].dtype.kind == "f" else np.float64
        with np.errstate(over="ignore"):
            v = np.asarray(out[k]).astype(dt)
        if not np.all(np.isfinite(v)):
            raise MergeError(f"merged {k!r} is not finite in {dt} (values beyond its range)")
        res[k] = v
    return res


def flat_matrix(ups: Sequence[AgentUpdate]) -> np.ndarray:
    """One row per update: all its arrays flattened and concatenated in sorted-name order.

    Example:
        >>> import numpy as np
        >>> flat_matrix([AgentUpdate("a", 0, {"y": np.ones(2), "x": np.zeros(1)})]).tolist()
        [[0.0, 1.0, 1.0]]
    """
    names = sorted(ups[0].params)
    return np.stack([np.concatenate([np.asarray(u.params[k], np.float64).ravel() for k in names]) for u in ups])
