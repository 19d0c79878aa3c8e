"""The robust merge rules: they trust nothing an agent reports about itself and tolerate
``f`` arbitrary agents of ``n``. ``median`` (coordinate-wise, f <= (n - 1) // 2),
``trimmed_mean`` (drop the f largest and smallest per coordinate, 2f < n), ``krum`` and
``multi_krum`` (the update(s) closest to their n - f - 2 nearest others, n >= 2f + 3), and
their tolerance functions (``tolerance(n, **options) -> f``) that the registry states.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> ups = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abc", [1.0, 2.0, 1e9])]
    >>> coordinate_median(ups)["x"].tolist(), median_tolerance(3)
    ([2.0], 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from swarm_sona.consensus.rules.arrays import cast_like, flat_matrix, stack
from swarm_sona.consensus.updates import AgentUpdate, MergeError, check_compatible

__all__ = ["coordinate_median", "trimmed_mean", "krum", "multi_krum", "default_trim", "median_tolerance",
           "trim_tolerance", "krum_tolerance"]


def coordinate_median(updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """Coordinate-wise median. Tolerates f <= (n - 1) // 2 arbitrary agents per coordinate.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abc", [1.0, 2.0, 1e9])]
        >>> coordinate_median(u)["x"].tolist()
        [2.0]
    """
    ups = check_compatible(updates)
    return cast_like({k: np.median(stack(ups, k), axis=0) for k in ups[0].params}, ups)


def default_trim(n: int, frac: float = 0.2) -> int:
    """The default ``f`` of ``trimmed_mean``: ``ceil(frac * n)`` (at least 1 from n = 3), capped at ``(n - 1) // 2``.

    Example:
        >>> [default_trim(n) for n in (2, 3, 5, 10)]
        [0, 1, 1, 2]
    """
    return max(0, min(max(1, math.ceil(frac * n)) if n >= 3 else 0, (n - 1) // 2))


def trimmed_mean(updates: Sequence[AgentUpdate], *, f: int | None = None, trim: float = 0.2) -> dict[str, np.ndarray]:
    """Per coordinate, drop the ``f`` largest and ``f`` smallest values and average the rest.

    ``f`` defaults to ``ceil(trim * n)`` capped at ``(n - 1) // 2``. Tolerates ``f`` bad agents.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abcde", [1., 2., 3., 4., -1e9])]
        >>> trimmed_mean(u, f=1)["x"].tolist()
        [2.0]
    """
    ups = check_compatible(updates)
    n = len(ups)
    f = default_trim(n, trim) if f is None else int(f)
    if f < 0 or 2 * f >= n:
        raise MergeError(f"trimmed_mean: f={f} needs 0 <= 2f < n={n}")
    out = {}
    for k in ups[0].params:
        x = np.sort(stack(ups, k), axis=0)
        out[k] = x[f:n - f].mean(axis=0)
    return cast_like(out, ups)


def krum(updates: Sequence[AgentUpdate], *, f: int | None = None, m: int = 1) -> dict[str, np.ndarray]:
    """Krum (Blanchard et al. 2017); with ``m > 1`` Multi-Krum (mean of the m best).

    Score of update i = sum of squared distances to its ``n - f - 2`` nearest other updates;
    the lowest score wins. Tolerates ``f`` bad agents when ``n >= 2f + 3``; ``f`` defaults to
    the largest such value. Ties break by agent id. Distances are computed on values scaled
    by the largest magnitude, so huge poisoned values cannot overflow them.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abcde", [1., 1.1, 0.9, 1.05, 50.])]
        >>> krum(u, f=1)["x"].tolist()
        [1.05]
    """
    ups = check_compatible(updates)
    n = len(ups)
    if f is None:
        f = max(0, (n - 3) // 2)
    if f < 0 or n < 2 * f + 3:
        raise MergeError(f"krum: f={f} needs n >= 2f + 3, got n={n}")
    if not 1 <= m <= n:
        raise MergeError(f"krum: m={m} must be in [1, n={n}]")
    X = flat_matrix(ups)
    scale = float(np.max(np.abs(X))) if X.size else 0.0
    X = X / scale if scale > 0 else X
    D = np.array([[float(np.sum((X[i] - X[j]) ** 2)) for j in range(n)] for i in range(n)])
    k_near = n - f - 2
    scores = np.empty(n)
    for i in range(n):
        d = np.delete(D[i], i)
        scores[i] = np.sort(d)[:k_near].sum()
    order = np.lexsort((np.arange(n), scores))[:m]
    chosen = sorted(int(i) for i in order)
    out = {k: np.mean(np.stack([np.asarray(ups[i].params[k], np.float64) for i in chosen]), axis=0)
           for k in ups[0].params}
    return cast_like(out, ups)


def multi_krum(updates: Sequence[AgentUpdate], *, f: int | None = None, m: int | None = None) -> dict[str, np.ndarray]:
    """Multi-Krum: the mean of the ``m`` (default ``n - f``) best Krum scores.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abcde", [1., 2., 3., 2., 90.])]
        >>> multi_krum(u, f=1)["x"].tolist()
        [2.0]
    """
    n = len(updates)
    if f is None:
        f = max(0, (n - 3) // 2)
    return krum(updates, f=f, m=m if m is not None else max(1, n - f))


def median_tolerance(n: int, **_: Any) -> int:
    """Bad agents of ``n`` the coordinate-wise median tolerates: ``(n - 1) // 2``.

    Example:
        >>> median_tolerance(5)
        2
    """
    return max(0, (n - 1) // 2)


def trim_tolerance(n: int, f: int | None = None, trim: float = 0.2) -> int:
    """Bad agents of ``n`` ``trimmed_mean`` tolerates: its ``f`` (default :func:`default_trim`).

    Example:
        >>> trim_tolerance(10), trim_tolerance(10, f=3)
        (2, 3)
    """
    return default_trim(n, trim) if f is None else int(f)


def krum_tolerance(n: int, f: int | None = None, **_: Any) -> int:
    """Bad agents of ``n`` (multi-)Krum tolerates: its ``f`` (default the largest with n >= 2f + 3).

    Example:
        >>> krum_tolerance(7)
        2
    """
    return max(0, (n - 3) // 2) if f is None else int(f)
