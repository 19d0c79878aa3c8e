"""Scan planning of the hot-path cache over its reward zone map (see :mod:`.cache`).

From :data:`~swarm_sona.bank.cache.CLUSTER_MIN_ROWS` rows on the cache keeps its rows clustered by
reward and records the largest reward of every :data:`ZONE_ROWS` rows, so a ``min_reward`` query
reads only the runs of zones that may pass (:func:`zone_ranges`); a large scan is cut into parts
of about equal rows on zone edges, one per thread (:func:`split_ranges`), and the parts' top-k
merged (:func:`merge_topk`).

Example:
    >>> import numpy as np
    >>> zone_ranges(np.array([0.2, 0.9, 0.95, 0.1]), 4 * ZONE_ROWS, 0.5)
    [(1024, 3072)]
    >>> split_ranges([(0, 4 * ZONE_ROWS)], 4 * ZONE_ROWS, 2)
    [[(0, 2048)], [(2048, 4096)]]
"""

from __future__ import annotations

import bisect

import numpy as np

__all__ = ["ZONE_ROWS", "MAX_RUNS", "zone_ranges", "split_ranges", "merge_topk"]

ZONE_ROWS = 1024  # rows per zone of the reward zone map
MAX_RUNS = 256  # more zone runs than this: scan their hull in one call instead


def zone_ranges(zone_max: np.ndarray, n: int, min_reward: float) -> list[tuple[int, int]]:
    """Row ranges of the first ``n`` rows holding every row that may have reward >= ``min_reward``
    (``zone_max[z]`` >= every reward in zone z)."""
    nz = -(-n // ZONE_ROWS)
    ok = np.zeros(nz + 2, bool)
    np.greater_equal(zone_max[:nz], min_reward, out=ok[1:-1])
    edges = np.flatnonzero(ok[1:] != ok[:-1])  # starts and ends of the runs of passing zones
    lo, hi = edges[0::2] * ZONE_ROWS, np.minimum(edges[1::2] * ZONE_ROWS, n)
    if len(lo) > MAX_RUNS:  # scattered zones: one pass over their hull
        return [(int(lo[0]), int(hi[-1]))]
    return list(zip(lo.tolist(), hi.tolist(), strict=True))


def split_ranges(ranges: list[tuple[int, int]], total: int, threads: int) -> list[list[tuple[int, int]]]:
    """``ranges`` (``total`` rows) cut into at most ``threads`` parts of about equal rows, on zone edges."""
    cuts = [total * j // threads for j in range(1, threads)]  # in rows scanned
    parts: list[list[tuple[int, int]]] = [[] for _ in range(threads)]
    done = 0
    for lo, hi in ranges:
        while lo < hi:
            j = bisect.bisect_right(cuts, done)
            end = hi if j == len(cuts) else min(hi, -(-(lo + cuts[j] - done) // ZONE_ROWS) * ZONE_ROWS)
            parts[j].append((lo, end))
            done += end - lo
            lo = end
    return [p for p in parts if p]


def merge_topk(found: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several (row indices, scores) top-k results (ties by row)."""
    if len(found) == 1:
        return found[0]
    if not found:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    idx = np.concatenate([f[0] for f in found])
    sc = np.concatenate([f[1] for f in found])
    order = np.lexsort((idx, -sc))[:k]
    return idx[order], sc[order]
