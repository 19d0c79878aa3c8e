"""The optional approximate index of the hot-path cache (``cache_index="ivf"``): k-means lists.

The rows are partitioned into ~sqrt(n) lists by k-means (random init from a seeded sample of
the rows, Lloyd iterations on it whose assignment step is one BLAS product, mean centroids; the
rows themselves are then assigned with the native ``kmeans_assign``). Two trainings: the quick
one a write triggers (:data:`TRAIN_ITERS` iterations on <= :data:`TRAIN_PER_LIST` rows per
list: ~0.25 s at 100k rows of 256) and the thorough one of a bank's open and ``optimize()``
(:data:`THOROUGH_ITERS` on <= :data:`THOROUGH_PER_LIST`: ~1.3 s at 100k), whose lists are
tighter (on clustered vectors it finds every query's neighbours in its nearest list where the
quick one needs ten). A query scans only the lists nearest to it until a given number of rows
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

__all__ = ["train_lists", "probe_lists", "PROBE_MIN_ROWS", "TRAIN_ITERS", "TRAIN_PER_LIST", "THOROUGH_ITERS",
           "THOROUGH_PER_LIST"]

TRAIN_ITERS = 4
TRAIN_PER_LIST = 64
THOROUGH_ITERS = 10
THOROUGH_PER_LIST = 128
PROBE_MIN_ROWS = 64


def train_lists(vectors: np.ndarray, nlist: int | None = None, *, seed: int = 0, iters: int = TRAIN_ITERS,
                per_list: int = TRAIN_PER_LIST) -> np.ndarray:
    """Centroids (float32, C-contiguous) of ``nlist`` lists over the rows of ``vectors`` (default
    ``clip(sqrt(n), 16, 1024)``, at most n): ``iters`` Lloyd iterations on a seeded sample of at
    most ``per_list`` rows per list."""
    n = len(vectors)
    nlist = int(nlist or np.clip(round(n ** 0.5), 16, 1024))
    nlist = max(1, min(nlist, n))
    rng = np.random.default_rng(seed)
    X = vectors[np.sort(rng.choice(n, size=min(n, per_list * nlist), replace=False))]
    C = X[rng.choice(len(X), size=nlist, replace=False)].copy()
    for _ in range(iters):
        # nearest centroid by squared distance (|x|^2 is common to a row: left out), one BLAS product
        lab = np.argmin(np.einsum("ij,ij->i", C, C)[None, :] - 2.0 * (X @ C.T), axis=1)
        order = np.argsort(lab, kind="stable")
        ls = lab[order]
        starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        sums = np.add.reduceat(X[order], starts, axis=0)
        C[ls[starts]] = sums / np.diff(np.r_[starts, len(ls)])[:, None]
    return np.ascontiguousarray(C, np.float32)


def probe_lists(query: np.ndarray, centroids: np.ndarray, sizes: np.ndarray, need: float,
                norms: np.ndarray | None = None) -> np.ndarray:
    """The lists (int64 numbers, increasing) nearest ``query`` by squared distance to their
    centroids (as the rows were assigned; ties to the lower list), taken nearest first until
    they hold at least ``need`` rows; ``sizes`` is each list's row count, ``norms`` the
    centroids' squared norms (computed when not given). :func:`swarm_sona.kernels.ivf_probe`.

    Example:
        >>> C = np.eye(2, dtype=np.float32)
        >>> probe_lists(np.array([1, 0], np.float32), C, np.array([2, 1]), 1).tolist()
        [0]
    """
    # by squared Euclidean distance, as the rows were assigned (kmeans_assign): ranking by the dot
    # product alone would favour the lists of larger-norm centroids
    if norms is None:
        norms = np.einsum("ij,ij->i", centroids, centroids)
    return nk.ivf_probe(centroids, norms, sizes, query, need)
