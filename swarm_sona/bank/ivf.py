"""The optional approximate index of the hot-path cache (``cache_index="ivf"``): k-means lists.

The rows are partitioned into ~sqrt(n) lists by k-means (random init from a seeded sample of
<= 64 rows per list, 4 Lloyd iterations with the native ``kmeans_assign``, mean centroids); a
query scans only the lists whose centroids are most similar to it until a given number of rows
(``probe`` of the rows, at least :data:`PROBE_MIN_ROWS`) is covered. See :mod:`.cache`.

Example:
    >>> import numpy as np
    >>> X = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 3]]
    >>> C = train_lists(X, 4, seed=0)
    >>> C.shape
    (4, 4)
"""

from __future__ import annotations

import numpy as np

from swarm_sona import kernels as nk

__all__ = ["train_lists", "probe_lists", "PROBE_MIN_ROWS", "TRAIN_ITERS"]

TRAIN_ITERS = 4
PROBE_MIN_ROWS = 2048


def train_lists(vectors: np.ndarray, nlist: int | None = None, *, seed: int = 0) -> np.ndarray:
    """Centroids (float32, C-contiguous) of ``nlist`` lists over the rows of ``vectors`` (default
    ``clip(sqrt(n), 16, 1024)``, at most n)."""
    n = len(vectors)
    nlist = int(nlist or np.clip(round(n ** 0.5), 16, 1024))
    nlist = max(1, min(nlist, n))
    rng = np.random.default_rng(seed)
    X = vectors[np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))]
    C = X[rng.choice(len(X), size=nlist, replace=False)].copy()
    for _ in range(TRAIN_ITERS):
        lab = nk.kmeans_assign(X, C)[0]
        order = np.argsort(lab, kind="stable")
        ls = lab[order]
        starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        sums = np.add.reduceat(X[order], starts, axis=0)
        C[ls[starts]] = sums / np.diff(np.r_[starts, len(ls)])[:, None]
    return np.ascontiguousarray(C, np.float32)


def probe_lists(query: np.ndarray, centroids: np.ndarray, sizes: np.ndarray, need: float) -> np.ndarray:
    """Flags (bool per list) of the lists nearest ``query`` (by centroid similarity), taken in that
    order until they hold at least ``need`` rows; ``sizes`` is each list's row count. A row is
    probed when ``flags[part[row]]`` (the int8 scan tests that itself: ``groups=part``).

    Example:
        >>> C = np.eye(2, dtype=np.float32)
        >>> probe_lists(np.array([1, 0], np.float32), C, np.array([2, 1]), 1).tolist()
        [True, False]
    """
    # nearest by squared Euclidean distance, as the rows were assigned (kmeans_assign): ranking by
    # the dot product alone would favour the lists of larger-norm centroids
    order = np.argsort(np.einsum("ij,ij->i", centroids, centroids) - 2.0 * (centroids @ query), kind="stable")
    lists = order[: int(np.searchsorted(np.cumsum(sizes[order]), need)) + 1]
    flags = np.zeros(len(centroids), bool)
    flags[lists] = True
    return flags
