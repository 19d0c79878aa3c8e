"""The hot-path cache: the bank's vectors and filter columns in memory, searched by native kernels.

Qdrant (embedded or server) is the durable store and the filter index; retrieval on the hot
path must not pay a per-vector Python cost or an engine round trip, so the bank keeps here:

- a float32 matrix of the unit-norm vectors (and, with ``int8``, int8 and int4 copies with
  per-row scales),
- the payload columns that retrieval filters on: reward (float64, as in Qdrant's payload, so
  that ``reward >= min_reward`` decides exactly as the store does), success (bool), and
  dictionary-coded agent id, task type and source (int32; -1 = none), plus a zone map (the
  largest reward of every 1,024 rows) and the creation time (float64, for retention),
- the row <-> pattern id maps.

With int8 on (the bank's default) the search is ``kernels.topk_int8_rerank``: one scan
of the int8 copy (a quarter of the bytes of float32) with integer dot products against the
query quantised to int8 proposes the best ``max(rerank, 4k)`` rows, which are re-scored
exactly in float32; the reward filter runs inside that scan (float64 column, the store's
comparison) and the other filters become a boolean row ``mask``. The int8 score is within
~1e-3 of the cosine for unit vectors, so the result is the exact top k unless more than
``rerank - k`` rows tie with the k-th within that margin (recall is measured by ``swarm-sona
bench bank``). From ``int4_from`` rows on (262,144 in the bank's default config), where the scan
is memory-bound, it reads the int4 copy instead (``topk_int4_rerank``: half the bytes of int8,
~1e-2 error, so ``4 * rerank`` candidates are re-scored). With int8 off the top-k is the exact
float32 scan ``kernels.topk`` over the rows that pass the mask.

From :data:`CLUSTER_MIN_ROWS` rows on the rows are kept clustered by reward (:meth:`HotCache.cluster`),
so that the zone map lets a ``min_reward`` query skip every run of rows below its threshold,
and a scan of at least :data:`PARALLEL_MIN_ROWS` rows is split over ``threads`` threads (the
kernels release the GIL; the parts' results are merged). The bank updates the cache after every
successful write and delete, and rebuilds it from the store when it opens. Metadata filters
are not cached: those queries go to the store.

Retention: with :attr:`HotCache.max_age` set (the bank sets it from ``retention.max_age``),
:meth:`HotCache.mask` also drops rows created before ``clock() - max_age``, so every search
and count through the cache ignores expired patterns before the bank deletes them. That
costs one comparison over the rows per query only while some row may be expired (the
cache keeps a lower bound of the creation times and skips the test when the cutoff is
below it). :mod:`.retention` selects from the cache's columns what the bank's retention deletes.

``index="ivf"`` partitions the rows into lists (:mod:`.ivf`) once the cache holds 8,192 rows
(retrained whenever it has doubled since, up to 262,144 rows; later rows join the existing
lists; a bank's open and ``optimize()`` retrain them thoroughly) and scans only the nearest
lists (by squared distance to their centroids, as rows are assigned) until ``probe`` of the rows
(at least 64) are covered; when those lists hold fewer than k rows that pass the filter it
falls back to flat. Training stores the rows in list order, so a probed list is one run of
rows read front to back; the rows appended since form a tail that every query scans exactly,
so an acknowledged write is visible to the next query, and once that tail outgrows
``max(IVF_TAIL_ROWS, n / 8)`` rows the rows are put in list order again (O(n) row moves, ~0.1 s
per 100k rows of 256). A small probe runs as one native call (``kernels.ivf_topk``: probe, runs,
int8 scan); a scan of at most ``EXACT_SCAN_FACTOR`` times its candidates scores every row in
float32 instead (cheaper than proposing and re-ranking there). A write that puts a row outside
its list's run (a replacement that changes list; a delete that fills a hole with another
list's row) drops the order until the next training: meanwhile a row index sorted by list
(rebuilt on demand, ~1 ms per 100k rows) gives the probed lists' rows
(``kernels.topk_int8_rerank(rows=...)``, prefetching the scattered rows). Ordering by list
replaces the ordering by reward, so a flat fallback reads more of the zone map. That is
approximate (recall is measured by ``swarm-sona bench bank-faiss``, row ``cache-ivf``) and cuts
the rows read about 1/probe-fold. (An exact variant that prunes lists by the bound
q.c + ||x - c|| was tried and prunes nothing in 256 dimensions: residual norms are ~0.8-0.9 of
a unit vector's.)

``index="hnsw"`` puts FAISS's HNSW graph behind the cache (:mod:`.graph`; optional, needs
faiss-cpu), for embeddings no list index serves well (hashed text of 1,536 dimensions). The
graph is built by :meth:`HotCache.build_graph` (a bank's open and ``optimize()``); rows written
after that are scanned exactly beside the graph's answer, deleted rows are masked out, filters
stay exact (the graph walks only the rows that pass), and a filter that fewer than
``GRAPH_MIN_PASS`` of the rows pass goes to the flat scan. ``ef`` is FAISS's efSearch.

The default index is the exact flat scan.

Example:
    >>> import numpy as np
    >>> from swarm_sona.bank.cache import HotCache
    >>> from swarm_sona.bank.filters import PatternFilter
    >>> c = HotCache(dim=2, capacity=10)
    >>> c.upsert(["a", "b"], np.array([[1, 0], [0.6, 0.8]], np.float32),
    ...          [{"reward": 0.9, "success": True}, {"reward": 0.2, "success": False}])
    >>> ids, scores = c.search(np.array([1, 0], np.float32), 2, PatternFilter.build(min_reward=0.5))
    >>> ids, [round(float(s), 2) for s in scores]
    (['a'], [1.0])
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from swarm_sona import kernels as nk
from swarm_sona.bank.filters import PatternFilter
from swarm_sona.bank.graph import GraphIndex, faiss_module
from swarm_sona.bank.ivf import PROBE_MIN_ROWS, THOROUGH_ITERS, THOROUGH_PER_LIST, probe_lists, train_lists
from swarm_sona.bank.zones import ZONE_ROWS, merge_topk, split_ranges, zone_ranges

__all__ = ["HotCache"]

_COLUMNS = ("agent_id", "task_type", "source")
IVF_MIN_ROWS = 8192  # below this the flat scan costs < ~0.2 ms: no index
IVF_RETRAIN_MAX = 262_144  # past this new rows join the existing lists (a retrain would stall a write)
CLUSTER_MIN_ROWS = 65_536  # from here on the rows are kept clustered by reward
CLUSTER_MIN_TAIL = 16_384  # sort the rows appended since the last clustering once there are this many
CLUSTER_SEGMENTS = 64  # ... or n / this many, whichever is more (bounds the number of sorted runs)
PARALLEL_MIN_ROWS = 65_536  # a scan of at least this many rows is split over the threads
IVF_TAIL_ROWS = 4096  # rows appended since the ivf row index was built, scanned exactly, before a rebuild
GRAPH_MIN_PASS = 0.2  # the hnsw graph answers only when at least this share of the rows passes the filter
EXACT_SCAN_FACTOR = 4  # a quantised scan of <= this many times its candidates scores every row in float32


class _Columns(NamedTuple):
    """The filter columns of some rows (:meth:`HotCache._columns`)."""

    reward: np.ndarray
    success: np.ndarray
    created: np.ndarray
    cols: dict[str, np.ndarray]


def default_threads() -> int:
    """Threads for one large scan: the CPUs this process may use, at most 2 (memory bandwidth)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


class HotCache:
    """In-memory vectors + filter columns of a bank (see module docs).

    ``capacity`` bounds the number of rows; past it the cache switches itself off
    (:attr:`active` False) and the bank searches the store instead. ``index`` is ``"flat"``
    (exact), ``"ivf"`` with ``probe`` the share of rows scanned per query, or ``"hnsw"`` (FAISS's
    graph, built by :meth:`build_graph`) with ``ef`` its efSearch. ``int8`` (honoured
    only when the native kernels are active) turns the quantised search on, with ``rerank`` int8
    candidates re-scored in float32 (at least 4k) and, from ``int4_from`` rows on (0: never), an
    int4 first stage. ``threads``: threads one large scan is split over (0 = :func:`default_threads`).
    """

    def __init__(self, dim: int, capacity: int, *, int8: bool = False, index: str = "flat",
                 probe: float = 0.1, rerank: int = 64, threads: int = 1, int4_from: int = 0, ef: int = 64) -> None:
        if index not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"cache index must be 'flat', 'ivf' or 'hnsw', got {index!r}")
        if isinstance(ef, bool) or not isinstance(ef, int) or ef < 1:
            raise ValueError(f"cache ef must be a positive integer, got {ef!r}")
        if index == "hnsw":
            faiss_module()   # fail now, naming the package, rather than at the first build
        if not 0.0 < probe <= 1.0:
            raise ValueError(f"cache probe must be in (0, 1], got {probe!r}")
        if isinstance(rerank, bool) or not isinstance(rerank, int) or rerank < 1:
            raise ValueError(f"cache rerank must be a positive integer, got {rerank!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"cache threads must be an integer >= 0, got {threads!r}")
        if isinstance(int4_from, bool) or not isinstance(int4_from, int) or int4_from < 0:
            raise ValueError(f"cache int4_from must be an integer >= 0, got {int4_from!r}")
        self.threads = threads or default_threads()
        self._pool: ThreadPoolExecutor | None = None
        self.defer_cluster = False  # set while bulk-loading: cluster once at the end
        self.dim = int(dim)
        self.capacity = int(capacity)
        # the quantised scans pay off with the native kernels; the numpy fallback's float32 scan
        # (BLAS) beats its integer matmul (~0.5 vs ~2 ms at 10k x 256), so it stays float32 there
        self.int8 = bool(int8) and nk.info()["active"] == "native"
        self.int4 = self.int8 and int4_from > 0  # keep an int4 copy too, scanned from int4_from rows on
        self.int4_from = int4_from
        self.rerank = rerank
        self.index = index
        self.probe = float(probe)
        self.ef = ef
        self.active = self.capacity > 0
        self.loading = False  # filled in the background: takes writes, answers nothing yet (see .loading)
        self.max_age: float | None = None  # retention: rows created before clock() - max_age are masked out
        self.clock: Callable[[], float] = time.time
        self.clear()

    # ---- bookkeeping ---------------------------------------------------------------
    def clear(self) -> None:
        """Drop every row (keeps :attr:`active` unless capacity is 0)."""
        self.active = self.capacity > 0
        self.n = 0
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self._alloc(min(max(self.capacity, 0), 1024))
        self._codes: dict[str, dict[str | None, int]] = {c: {} for c in _COLUMNS}
        self.centroids: np.ndarray | None = None
        self._trained_n = 0
        self._sizes: np.ndarray | None = None
        self._lists: tuple[np.ndarray, np.ndarray, int] | None = None  # see _list_rows
        self._order: tuple[np.ndarray, list[int], int] | None = None  # see _order_by_list
        self.graph: GraphIndex | None = None  # index "hnsw": see build_graph
        self._norms: np.ndarray | None = None  # squared norms of the centroids
        self._clustered_n = 0
        self._next_seq = 0   # the write sequence number of the next row written
        self.oldest = math.inf  # <= every cached creation time (a lower bound: deletes leave it)

    def _alloc(self, cap: int) -> None:
        self._cap = cap
        self.vectors = np.zeros((cap, self.dim), np.float32)
        self.reward = np.zeros(cap, np.float64)
        self.success = np.zeros(cap, bool)
        self.created = np.zeros(cap, np.float64)
        self.seq = np.zeros(cap, np.int64)   # write sequence of each row (the graph's insertion order)
        self.cols = {c: np.full(cap, -1, np.int32) for c in _COLUMNS}
        c8, c4 = (cap if self.int8 else 0), (cap if self.int4 else 0)   # empty when that copy is off
        self.q: np.ndarray = np.zeros((c8, self.dim), np.int8)
        self.scales: np.ndarray = np.zeros(c8, np.float32)
        self.q4: np.ndarray = np.zeros((c4, (self.dim + 1) // 2), np.uint8)
        self.scales4: np.ndarray = np.zeros(c4, np.float32)
        self.part = np.zeros(cap, np.int32)  # ivf list of each row
        # zone map: zone_max[z] >= the reward of every row in rows [z * ZONE_ROWS, (z + 1) * ZONE_ROWS)
        self.zone_max = np.full(-(-cap // ZONE_ROWS), -np.inf)

    def _grow(self, need: int) -> None:
        cap = max(self._cap, 1)
        while cap < need:
            cap *= 2
        cap = min(cap, self.capacity)
        old = (self.vectors, self.reward, self.success, self.cols, self.q, self.scales, self.part, self.q4,
               self.scales4, self.created, self.seq)
        n = self.n
        self._alloc(cap)
        self.vectors[:n] = old[0][:n]
        self.reward[:n] = old[1][:n]
        self.success[:n] = old[2][:n]
        self.created[:n] = old[9][:n]
        self.seq[:n] = old[10][:n]
        self.part[:n] = old[6][:n]
        self.zone_max[: -(-n // ZONE_ROWS)] = self._zone_max_of(n)
        for c in _COLUMNS:
            self.cols[c][:n] = old[3][c][:n]
        if self.int8:
            self.q[:n] = old[4][:n]
            self.scales[:n] = old[5][:n]
        if self.int4:
            self.q4[:n] = old[7][:n]
            self.scales4[:n] = old[8][:n]

    def _deactivate(self) -> None:
        self.active = False
        self.n = 0
        self.ids, self.row_of = [], {}
        self._alloc(0)
        self.centroids, self._sizes, self._lists, self._norms, self._order = None, None, None, None, None
        self.graph = None

    def __len__(self) -> int:
        return self.n

    serving = property(lambda self: self.active and not self.loading,
                       doc="The cache holds every pattern of the store: reads may use it (active, not loading).")

    def __contains__(self, pid: object) -> bool:
        return pid in self.row_of

    def codes(self, column: str) -> dict[str | None, int]:
        """The dictionary codes of a coded filter column (value -> code; -1 = none)."""
        return self._codes[column]

    def _code(self, column: str, value: Any) -> int:
        if value is None:
            return -1
        codes = self._codes[column]
        c = codes.get(value)
        if c is None:
            c = codes[value] = len(codes)
        return c

    # ---- writes --------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace rows (vectors must already be unit-norm float32)."""
        if not self.active or not len(ids):
            return
        new = sum(1 for pid in dict.fromkeys(ids) if pid not in self.row_of)
        if self.n + new > self.capacity:
            self._deactivate()
            return
        if self.n + new > self._cap:
            self._grow(self.n + new)
        rows = np.empty(len(ids), np.int64)
        if self._lists is not None and new < len(ids):  # a replaced row may change list
            self._lists = None
        if len(set(ids)) == len(ids):   # the columns of the whole batch in one step each
            self._assign_rows(ids, rows)
            self._write_columns(rows, payloads)
        else:   # a repeated id: in order, its last occurrence wins
            for i, pid in enumerate(ids):
                self._assign_rows([pid], rows[i:i + 1])
                self._write_columns(rows[i:i + 1], payloads[i:i + 1])
        self.vectors[rows] = vectors
        self.seq[rows] = np.arange(self._next_seq, self._next_seq + len(rows))   # a repeated id: its last write
        self._next_seq += len(rows)
        if self.graph is not None:   # new vectors are not in the graph: scanned exactly until the next build
            self.graph.forget(rows, self.n)
        if self.int8:
            q, s = nk.quantize_int8(np.ascontiguousarray(vectors, np.float32))
            self.q[rows] = q
            self.scales[rows] = s
        if self.int4:
            self.q4[rows], self.scales4[rows] = nk.quantize_int4(vectors)
        if self.centroids is not None:
            lab = nk.kmeans_assign(np.ascontiguousarray(vectors, np.float32), self.centroids)[0]
            if self._order is not None and new < len(ids):  # a replaced row of the ordered rows left its list
                inside = rows < self._order[2]
                if np.any(self.part[rows[inside]] != lab[inside]):
                    self._order = None
            self.part[rows] = lab
            self._sizes = None
        if (self.index == "ivf" and self.n >= IVF_MIN_ROWS and self.n >= 2 * self._trained_n
                and (self._trained_n == 0 or self.n <= IVF_RETRAIN_MAX)):
            self.build_index()
        elif self._order is not None and self.n - self._order[2] > max(IVF_TAIL_ROWS, self.n // 8):
            self._order_by_list()
        if (not self.defer_cluster and self.n >= CLUSTER_MIN_ROWS
                and self.n - self._clustered_n >= max(CLUSTER_MIN_TAIL, self.n // CLUSTER_SEGMENTS)):
            self.cluster(start=self._clustered_n)

    def _assign_rows(self, ids: Sequence[str], rows: np.ndarray) -> None:
        """Write the row of each of ``ids`` (distinct) into ``rows``, appending the new ones; a new
        row starts with no agent, task type, source or creation time (its slot may hold a deleted
        row's values, and a payload leaves out None fields)."""
        row_of, n0 = self.row_of, self.n
        for i, pid in enumerate(ids):
            r = row_of.get(pid)
            if r is None:
                r = row_of[pid] = self.n
                self.ids.append(pid)
                self.n += 1
            rows[i] = r
        if self.n > n0:
            born = np.arange(n0, self.n)
            for c in _COLUMNS:
                self.cols[c][born] = -1
            self.created[born] = 0.0

    def _write_columns(self, rows: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """The filter columns of ``rows`` (distinct) from their payloads, one step per column; a
        payload's missing key leaves that column of its row as it was."""
        for key in ("reward", "success", "created_at", *_COLUMNS):
            have = [i for i, p in enumerate(payloads) if key in p]
            if not have:
                continue
            at = rows if len(have) == len(payloads) else rows[have]
            if key in _COLUMNS:
                code = self._code
                self.cols[key][at] = [code(key, payloads[i][key]) for i in have]
            elif key == "success":
                self.success[at] = [bool(payloads[i][key]) for i in have]
            else:
                x = np.array([float(payloads[i][key]) for i in have], np.float64)
                if key == "reward":
                    self.reward[at] = x
                    np.fmax.at(self.zone_max, at // ZONE_ROWS, x)   # a zone's max covers its rows
                else:
                    self.created[at] = x
                    self.oldest = min(self.oldest, float(x.min()))

    def _zone_max_of(self, n: int, z0: int = 0) -> np.ndarray:
        """Exact per-zone maxima of the rewards of rows [z0 * ZONE_ROWS, n)."""
        nz = -(-n // ZONE_ROWS) - z0
        if nz <= 0:
            return np.empty(0)
        pad = np.full(nz * ZONE_ROWS, -np.inf)
        pad[: n - z0 * ZONE_ROWS] = self.reward[z0 * ZONE_ROWS:n]
        return pad.reshape(nz, ZONE_ROWS).max(axis=1)

    def cluster(self, *, start: int = 0) -> None:
        """Sort the rows from ``start`` on by reward (stable) and make their zone maxima exact.

        The rows then form runs sorted by reward (one per clustering), so a ``min_reward``
        query skips every zone below its threshold and reads about the share of rows that pass
        it. From :data:`CLUSTER_MIN_ROWS` rows on, the rows appended since the last clustering
        are sorted whenever there are ``max(CLUSTER_MIN_TAIL, n / CLUSTER_SEGMENTS)`` of them
        (O(those rows): ~20 ms per 16k rows); a bank sorts everything when it opens and in
        ``optimize()`` (~1-3 s at 1M rows). Ids keep their meaning; row numbers change, and with
        them the order of exactly equally similar patterns.
        """
        n = self.n
        start = max(0, min(start, n))
        self._permute(start, np.argsort(self.reward[start:n], kind="stable"))
        self._clustered_n = n

    def _permute(self, start: int, order: np.ndarray) -> None:
        """Put rows ``start + order`` at rows ``start ...`` (every column, the ids, the exact zone
        maxima from ``start`` on); an ordering by list that this breaks is dropped."""
        n = self.n
        if self._order is not None and start < self._order[2]:
            self._order = None
        arrays: list[np.ndarray] = [self.vectors, self.reward, self.success, self.created, self.seq, self.part,
                                    *self.cols.values()]
        if self.int8:
            arrays += [self.q, self.scales]
        if self.int4:
            arrays += [self.q4, self.scales4]
        for a in arrays:
            a[start:n] = a[start:n][order]
        if self.graph is not None:
            self.graph.permute(start, order, n)
        moved = [self.ids[start + i] for i in order.tolist()]
        self.ids[start:n] = moved
        self._lists = None
        row_of = self.row_of
        for r, pid in enumerate(moved, start):
            row_of[pid] = r
        z0 = start // ZONE_ROWS
        self.zone_max[z0:] = -np.inf
        self.zone_max[z0: -(-n // ZONE_ROWS)] = self._zone_max_of(n, z0)

    def _order_by_list(self) -> None:
        """Store the rows in list order (stable: a list keeps its rows' relative order), so that
        a probed list is one contiguous run of rows; rows appended later form the tail that every
        query scans exactly. O(n) row moves (86-100 ms per 100k rows of 256, measured), done
        when the lists are trained and when the tail outgrows ``max(IVF_TAIL_ROWS, n / 8)``. The
        rows are then no longer sorted by reward (the zone map stays exact, and a flat fallback
        scan reads more of it)."""
        n = self.n
        assert self.centroids is not None, "no ivf lists trained"
        part = self.part[:n]
        part = part.astype(np.int16) if len(self.centroids) <= np.iinfo(np.int16).max else part
        self._permute(0, np.argsort(part, kind="stable"))
        offsets = np.searchsorted(self.part[:n], np.arange(len(self.centroids) + 1))
        self._order = (offsets, offsets.tolist(), n)   # list j at rows offsets[j]:offsets[j + 1]
        self._clustered_n = n

    def build_index(self, nlist: int | None = None, *, seed: int = 0, thorough: bool = False) -> None:
        """(Re)train the ivf lists now (:func:`.ivf.train_lists`: the quick training a write
        triggers, or with ``thorough`` the bank's open and ``optimize()`` one) and assign every
        row. Switches ``index`` to ivf."""
        n = self.n
        self.index = "ivf"
        if n == 0:
            return
        self.centroids = train_lists(self.vectors[:n], nlist, seed=seed,
                                     **({"iters": THOROUGH_ITERS, "per_list": THOROUGH_PER_LIST} if thorough else {}))
        self.part[:n] = nk.kmeans_assign(self.vectors[:n], self.centroids)[0]
        self._sizes, self._lists, self._norms = None, None, None
        self._trained_n = n
        self._order_by_list()

    def sequence_by_creation(self) -> None:
        """Make the rows' write sequence their order of creation time (``created_at``; ties, and
        rows without one, in the order they were written): after a bulk load from a store whose
        scan order is not the write order (Qdrant scrolls by id), so that :meth:`build_graph`
        still inserts the patterns in the order they arrived.

        Example:
            >>> c = HotCache(2, 8)
            >>> c.upsert(["a", "b"], np.eye(2, dtype=np.float32), [{"created_at": 2.0}, {"created_at": 1.0}])
            >>> c.sequence_by_creation(); c.seq[:2].tolist()
            [1, 0]
        """
        n = self.n
        rank = np.empty(n, np.int64)
        rank[np.lexsort((self.seq[:n], self.created[:n]))] = np.arange(n)
        self.seq[:n] = rank
        self._next_seq = n

    def build_graph(self) -> None:
        """(Re)build the hnsw graph over every row now (:class:`.graph.GraphIndex`; slow: ~45 s
        per 100k rows of 1,536 on 2 cores), inserting the rows in the order they were written
        (not in row order: a clustering sorts the rows by reward); rows written later are scanned
        exactly until the next build. Switches ``index`` to hnsw."""
        self.index = "hnsw"
        n = self.n
        order = np.argsort(self.seq[:n], kind="stable")
        self.graph = GraphIndex(self.vectors[:n], order)
        self.graph.columns = self._columns(order)   # copies: the filter of a query per graph id

    def drop_index(self) -> None:
        """Back to the exact flat scan."""
        self.index, self.centroids, self._sizes, self._lists, self._trained_n = "flat", None, None, None, 0
        self._order, self.graph = None, None

    def delete(self, ids: Sequence[str]) -> None:
        """Remove rows (the last row moves into each hole)."""
        for pid in ids:
            r = self.row_of.pop(pid, None)
            if r is None:
                continue
            last = self.n - 1
            if self.graph is not None:
                self.graph.delete(r, last)
            if self._order is not None and r < self._order[2] and self.part[r] != self.part[last]:
                self._order = None  # a row of another list (or of the tail) would fill a list's hole
            if r != last:
                moved = self.ids[last]
                self.ids[r] = moved
                self.row_of[moved] = r
                self.vectors[r] = self.vectors[last]
                x = self.reward[r] = self.reward[last]
                self.zone_max[r // ZONE_ROWS] = max(self.zone_max[r // ZONE_ROWS], x)
                self.success[r] = self.success[last]
                self.created[r] = self.created[last]
                self.seq[r] = self.seq[last]
                for c in _COLUMNS:
                    self.cols[c][r] = self.cols[c][last]
                if self.int8:
                    self.q[r] = self.q[last]
                    self.scales[r] = self.scales[last]
                if self.int4:
                    self.q4[r] = self.q4[last]
                    self.scales4[r] = self.scales4[last]
                self.part[r] = self.part[last]
            self.ids.pop()
            self.n -= 1
            if self._order is not None and self._order[2] > self.n:
                self._order = (self._order[0], self._order[1], self.n)
            self._sizes, self._lists = None, None
            self._clustered_n = min(self._clustered_n, self.n)

    # ---- reads ---------------------------------------------------------------------
    def mask(self, filt: PatternFilter, *, reward: bool = True) -> np.ndarray | None:
        """Boolean row mask of ``filt`` (None = keep all); ``reward=False`` leaves min_reward out.
        With :attr:`max_age` set, rows created before ``clock() - max_age`` are left out too."""
        return self._mask_of(filt, self._columns(slice(0, self.n)), reward=reward, every_row=True)

    def _columns(self, at: slice | np.ndarray) -> _Columns:
        """The filter columns of rows ``at`` (views for a slice, copies for an index array)."""
        return _Columns(self.reward[at], self.success[at], self.created[at], {c: self.cols[c][at] for c in _COLUMNS})

    def _mask_of(self, filt: PatternFilter, cols: _Columns, *, reward: bool = True,
                 every_row: bool = False) -> np.ndarray | None:
        """:meth:`mask` over the rows of ``cols`` (None = keep all); ``every_row``: they are all
        the cache's rows (then a retention test that every row passes tightens :attr:`oldest`)."""
        m: np.ndarray | None = None

        def both(x: np.ndarray) -> None:
            nonlocal m
            m = x if m is None else (m & x)

        if self.max_age is not None and len(cols.reward):
            cutoff = self.clock() - self.max_age
            if cutoff > self.oldest:
                fresh = cols.created >= cutoff
                if every_row and fresh.all():
                    self.oldest = float(cols.created.min())  # tighten the bound: skip the test next time
                else:
                    both(fresh)
        if reward and filt.min_reward is not None:
            both(cols.reward >= filt.min_reward)
        if filt.success is not None:
            both(cols.success == filt.success)
        for column, wanted in (("agent_id", filt.agents), ("task_type", filt.task_types),
                               ("source", None if filt.source is None else (filt.source,))):
            if wanted is not None:
                codes = [self._codes[column][w] for w in wanted if w in self._codes[column]]
                col = cols.cols[column]
                both(col == codes[0] if len(codes) == 1 else np.isin(col, codes))
        return m

    def search(self, query: np.ndarray, k: int, filt: PatternFilter) -> tuple[list[str], np.ndarray]:
        """Top-k pattern ids by cosine similarity under ``filt`` (must be cache-filterable)."""
        idx, scores = self.search_rows(query, k, filt)
        ids = self.ids
        return [ids[i] for i in idx.tolist()], scores

    def search_rows(self, query: np.ndarray, k: int, filt: PatternFilter) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but returns row numbers (int64) instead of ids."""
        n = self.n
        if n == 0 or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self.graph is not None:
            found = self._graph_topk(query, k, filt)
            if found is not None:
                return found
        mask = self.mask(filt, reward=not self.int8)
        idx: np.ndarray | None = None
        scores = np.empty(0, np.float32)
        if self.centroids is not None:
            need = max(self.probe * n, float(PROBE_MIN_ROWS))
            if (self._order is not None and self.int8 and not (self.int4 and n >= self.int4_from)
                    and (self.threads == 1 or need + n - self._order[2] < PARALLEL_MIN_ROWS / 2)):
                idx, scores = self._ivf_topk(query, k, mask, filt.min_reward, need)
                return (idx, scores) if len(idx) >= k else self._topk(query, k, mask, filt.min_reward)
            lists = self._probe_lists(query, need)
            if self._order is not None:  # the probed lists are runs of rows: only those are read
                idx, scores = self._topk(query, k, mask, filt.min_reward, *self._list_ranges(lists))
            elif self.int8:  # only the probed lists' rows are read, through the row index
                idx, scores = self._topk_rows(query, k, mask, filt.min_reward, self._list_rows(lists))
            else:
                probed = np.zeros(n, bool)
                probed[self._list_rows(lists)] = True
                idx, scores = self._topk(query, k, probed if mask is None else probed & mask, filt.min_reward)
            if len(idx) < k:  # the probed lists hold too few rows that pass the filter: scan all
                idx = None
        if idx is None:
            idx, scores = self._topk(query, k, mask, filt.min_reward)
        return idx, scores

    def _topk(self, query: np.ndarray, k: int, mask: np.ndarray | None, min_reward: float | None,
              ranges: np.ndarray | None = None, total: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Scan ``ranges`` ((r, 2) rows, increasing, ``total`` rows; default: the rows that may
        pass, by the zone map), in one call or split over the threads."""
        n = self.n
        runs: list[tuple[int, int]] | np.ndarray
        if ranges is None:
            runs = [(0, n)] if min_reward is None or n < CLUSTER_MIN_ROWS else zone_ranges(self.zone_max, n, min_reward)
            total = sum(hi - lo for lo, hi in runs)
        else:
            runs = ranges
        if self.threads == 1 or total < PARALLEL_MIN_ROWS:
            return self._scan(query, k, mask, min_reward, runs, None, total)
        pairs = runs if isinstance(runs, list) else [(lo, hi) for lo, hi in runs.tolist()]
        parts = split_ranges(pairs, total, self.threads)
        return self._in_parallel([partial(self._scan, query, k, mask, min_reward, p, None) for p in parts], k)

    def _topk_rows(self, query: np.ndarray, k: int, mask: np.ndarray | None, min_reward: float | None,
                   rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scan only ``rows`` (int8), in one call or split over the threads."""
        t = self.threads if len(rows) >= PARALLEL_MIN_ROWS else 1
        parts = np.array_split(rows, t) if t > 1 else [rows]
        return self._in_parallel([partial(self._scan, query, k, mask, min_reward, None, p) for p in parts], k)

    def _in_parallel(self, calls: list[Callable[[], tuple[np.ndarray, np.ndarray]]],
                     k: int) -> tuple[np.ndarray, np.ndarray]:
        """Run the scans (the first on this thread, the rest on the pool) and merge their top k."""
        if len(calls) == 1:
            return calls[0]()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="swarm-sona-cache")
        futures = [self._pool.submit(c) for c in calls[1:]]
        found = [calls[0]()] + [f.result() for f in futures]
        return merge_topk(found, k)

    def _scan(self, query: np.ndarray, k: int, mask: np.ndarray | None, min_reward: float | None,
              ranges: list[tuple[int, int]] | np.ndarray | None, rows: np.ndarray | None,
              read: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One scan over ``ranges`` of rows (pairs, increasing), or over the row list ``rows`` (int8
        only); ``read``: how many rows that is, when the caller knows."""
        n = self.n
        if self.int8:  # one pass; the reward filter runs in the kernel (float64, as the store)
            if isinstance(ranges, list):
                ranges = None if ranges == [(0, n)] else np.array(ranges, np.int64).reshape(-1, 2)
            kw = {"mask": mask, "values": None if min_reward is None else self.reward[:n], "min_value": min_reward,
                  "ranges": ranges, "rows": rows}
            cand = max(self.rerank, 4 * k)
            if read is None:
                read = len(rows) if rows is not None else n if ranges is None else \
                    int((ranges[:, 1] - ranges[:, 0]).sum())
            if read <= EXACT_SCAN_FACTOR * cand:  # so few rows that scoring all of them exactly is cheaper
                cand = max(read, k)
            elif self.int4 and n >= self.int4_from:  # half the bytes; ~16x the rounding: 4x the candidates
                return nk.topk_int4_rerank(self.q4[:n], self.scales4[:n], self.vectors[:n], query, k,
                                           max(4 * self.rerank, 16 * k), **kw)
            return nk.topk_int8_rerank(self.q[:n], self.scales[:n], self.vectors[:n], query, k, cand, **kw)
        found = []
        assert ranges is not None, "a row list needs the int8 copy"
        for lo, hi in ranges:
            idx, sc = nk.topk(self.vectors[lo:hi], query, k, mask=None if mask is None else mask[lo:hi])
            found.append((idx + lo, sc))
        return merge_topk(found, k)

    def close(self) -> None:
        """Stop the scan threads (the cache stays usable: they restart on demand)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _list_rows(self, lists: np.ndarray) -> np.ndarray:
        """The rows of ``lists`` (increasing list numbers), plus every row appended since the lists'
        row index was built (scanned exactly: an acknowledged write is visible to the next query).

        The index (rows sorted by list, each list's offset, the rows it covers) is rebuilt here
        when a write moved or replaced rows, or when more than ``max(IVF_TAIL_ROWS, n / 8)`` rows
        were appended since (a 16-bit radix sort of the list numbers: ~1 ms per 100k rows).
        """
        n = self.n
        assert self.centroids is not None, "no ivf lists trained"
        if self._lists is None or n - self._lists[2] > max(IVF_TAIL_ROWS, n // 8):
            part = self.part[:n]
            part = part.astype(np.int16) if len(self.centroids) <= np.iinfo(np.int16).max else part
            order = np.argsort(part, kind="stable")
            offsets = np.searchsorted(part[order], np.arange(len(self.centroids) + 1))
            self._lists = (order, offsets, n)
        order, offsets, covered = self._lists
        pieces = [order[offsets[j]:offsets[j + 1]] for j in lists.tolist()]
        if covered < n:
            pieces.append(np.arange(covered, n, dtype=np.int64))
        return np.concatenate(pieces) if pieces else np.empty(0, np.int64)

    def _list_ranges(self, lists: np.ndarray) -> tuple[np.ndarray, int]:
        """The runs of rows ((r, 2) int64, increasing) of ``lists`` (increasing list numbers) while
        the rows are stored in list order (:meth:`_order_by_list`), plus the tail of rows appended
        since (scanned exactly: an acknowledged write is visible to the next query), and how many
        rows they hold."""
        assert self._order is not None, "the rows are not in list order"
        offsets, starts, m = self._order
        n = self.n
        if len(lists) <= 8:  # the usual probe: a few lists, cheaper in Python than in numpy
            runs = [(min(starts[j], m), min(starts[j + 1], m)) for j in lists.tolist()]
            if m < n:
                runs.append((m, n))
            return np.array(runs, np.int64).reshape(-1, 2), sum(hi - lo for lo, hi in runs)
        tail = int(m < n)
        out = np.empty((len(lists) + tail, 2), np.int64)
        np.minimum(offsets[lists], m, out=out[:len(lists), 0])
        np.minimum(offsets[lists + 1], m, out=out[:len(lists), 1])
        if tail:
            out[-1] = (m, n)
        return out, int(out[:, 1].sum() - out[:, 0].sum())

    def _graph_topk(self, query: np.ndarray, k: int, filt: PatternFilter) -> tuple[np.ndarray, np.ndarray] | None:
        """The graph's answer merged with an exact scan of the rows it does not hold, or None
        (flat scan instead) when fewer than ``GRAPH_MIN_PASS`` of the rows pass the filter (a
        graph walk finds few of them; the zone-mapped scan is faster there) or fewer than k
        are found."""
        g = self.graph
        assert g is not None
        n = self.n
        ok = g.passing(self._mask_of(filt, g.columns))
        tail = g.unindexed(n)
        tail_ok = self._mask_of(filt, self._columns(tail)) if len(tail) else None
        if tail_ok is not None:
            tail = tail[tail_ok]
        passing = (g.live if ok is None else int(np.count_nonzero(ok))) + len(tail)
        if passing < GRAPH_MIN_PASS * n:
            return None
        rows, scores = g.search(query, k, ef=self.ef, ok=ok)
        if len(tail):
            ts = self.vectors[tail] @ query
            top = np.argsort(-ts, kind="stable")[:k]
            rows, scores = merge_topk([(rows, scores), (tail[top], ts[top].astype(np.float32))], k)
        return (rows, scores) if len(rows) >= k else None

    def _ivf_topk(self, query: np.ndarray, k: int, mask: np.ndarray | None, min_reward: float | None,
                  need: float) -> tuple[np.ndarray, np.ndarray]:
        """Probe, runs and int8 scan in one native call (``kernels.ivf_topk``), for a probe too
        small to split over threads."""
        assert self._order is not None, "the rows are not in list order"
        n = self.n
        C, norms, sizes = self._list_stats()
        cand = max(self.rerank, 4 * k)
        idx, scores, _ = nk.ivf_topk(self.q[:n], self.scales[:n], self.vectors[:n], query, k, cand,
                                     EXACT_SCAN_FACTOR * cand, C, norms, sizes, self._order[0], self._order[2], need,
                                     mask=mask, values=None if min_reward is None else self.reward[:n],
                                     min_value=min_reward)
        return idx, scores

    def _probe_lists(self, query: np.ndarray, need: float) -> np.ndarray:
        """The lists (increasing numbers) nearest the query, covering at least ``need`` rows."""
        C, norms, sizes = self._list_stats()
        return probe_lists(query, C, sizes, need, norms)

    def _list_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The centroids, their squared norms and the lists' row counts (the last two cached
        until the lists or their rows change)."""
        C = self.centroids
        assert C is not None, "no ivf lists trained"
        if self._sizes is None:
            self._sizes = np.bincount(self.part[:self.n], minlength=len(C))
        if self._norms is None:   # derived from the centroids; build_index resets it
            self._norms = np.einsum("ij,ij->i", C, C)
        return C, self._norms, self._sizes

    def count(self, filt: PatternFilter) -> int:
        """Rows that pass ``filt`` (cache-filterable filters only)."""
        n = self.n
        m = self.mask(filt)
        return n if m is None else int(m.sum())

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray:
        """The cached vectors of ``ids`` (all must be cached)."""
        return self.vectors[[self.row_of[i] for i in ids]]

    def stats(self) -> dict[str, Any]:
        """Rows, capacity, memory in bytes, int8 on/off, active, the ivf lists and ``ordered_rows``
        (the rows stored in list order, scanned as runs; 0 while the row index serves the probe)."""
        mem = (self.vectors.nbytes + self.reward.nbytes + self.success.nbytes + self.created.nbytes
               + sum(c.nbytes for c in self.cols.values()))
        if self.int8:
            mem += self.q.nbytes + self.scales.nbytes
        if self.int4:
            mem += self.q4.nbytes + self.scales4.nbytes
        return {"rows": self.n, "capacity": self.capacity, "bytes": int(mem), "int8": self.int8, "rerank": self.rerank,
                "int4": self.int4 and self.n >= self.int4_from,
                "active": self.active, "loading": self.loading, "index": self.index,
                "lists": 0 if self.centroids is None else len(self.centroids),
                "ordered_rows": 0 if self._order is None else self._order[2],
                "graph_rows": 0 if self.graph is None else self.graph.live}
