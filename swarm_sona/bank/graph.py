"""The optional graph index of the hot-path cache (``cache_index="hnsw"``): FAISS's HNSW.

On hashed text embeddings of 1,536 dimensions no list index beats a graph: at 100k rows with
half of them or more passing the filter, FAISS's ``IndexHNSWFlat`` (M = 32) answers at recall
0.95 in about half the time of the best ivf / flat scan (``swarm-sona bench bank-faiss``), so
the cache uses it there rather than a graph of its own. :class:`GraphIndex` holds the graph
over a snapshot of the cache's rows and the map between the graph's ids and the cache's rows,
which the cache keeps current as rows move:

- a row written after the snapshot (appended, or replaced by a new vector) leaves the graph:
  its graph id is marked gone and the row joins the *unindexed* rows, which every query scans
  exactly, so an acknowledged write is visible to the next query;
- a deleted row's graph id is marked gone; a row moved by a delete or a clustering keeps its
  graph id, and the map follows it;
- filters stay exact: the graph search is restricted (FAISS ``IDSelectorBitmap``) to the graph
  ids that are not gone and whose rows pass the filter. The owner computes the filter per graph
  id from a snapshot of its rows' filter columns taken at the build (:attr:`GraphIndex.columns`):
  a graph id that is not gone stands for a row that has not been rewritten since, so its
  snapshot is its row's value, and no query pays a gather from rows to graph ids (about 300 us
  at 100k rows; FAISS's ``IDSelectorTranslated`` costs about 70 us there).

The graph is built in the order the rows were written (the cache's write sequence), not in
the cache's row order, which a clustering sorts by reward: on hashed text an insertion order
that follows the stream gives the better graph (:class:`GraphIndex`).

Building the graph is slow (about 45 s per 100k rows of 1,536 on 2 cores), so the cache builds
it only when asked (a bank's open and ``optimize()``); rows written since are scanned exactly
until the next build. FAISS is optional: ``pip install 'swarm-sona[faiss]'``.

Example:
    >>> import numpy as np
    >>> V = np.eye(8, dtype=np.float32)
    >>> g = GraphIndex(V)                                         # doctest: +SKIP
    >>> g.search(V[3], 1, ef=16, ok=None)[0].tolist()            # doctest: +SKIP
    [3]
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GraphIndex", "GRAPH_M", "GRAPH_EF_CONSTRUCTION", "faiss_module"]

GRAPH_M = 32                 # neighbours per node (FAISS's HNSW32)
GRAPH_EF_CONSTRUCTION = 40   # FAISS's default build-time beam
_ADD_ROWS = 1 << 17          # rows handed to FAISS per add (bounds the copy of reordered rows)


def faiss_module() -> Any:
    """The ``faiss`` module, or an ImportError saying how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("cache_index 'hnsw' needs faiss-cpu: pip install 'swarm-sona[faiss]'") from exc
    return faiss


class GraphIndex:
    """FAISS HNSW over the cache rows ``rows`` of ``vectors`` (float32 unit rows), inserted in that
    order (graph id j is row ``rows[j]``; default: every row in row order), with the map from
    graph ids to the cache's current rows (see module docs).

    The order is the cache's write order (:meth:`HotCache.build_graph`), not its row order: a
    graph inserted in the order the patterns arrived is the graph FAISS builds from the same
    stream, and on hashed text it is the better one (recall@5 0.938 against 0.923 at ef 128 for
    100k rows of 1,536 inserted in a random order such as the cache's reward order).
    """

    def __init__(self, vectors: np.ndarray, rows: np.ndarray | None = None, *, m: int = GRAPH_M,
                 ef_construction: int = GRAPH_EF_CONSTRUCTION) -> None:
        faiss = faiss_module()
        n, d = vectors.shape
        rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= n)) or len(np.unique(rows)) != len(rows):
            raise ValueError(f"graph rows must be distinct row numbers in [0, {n})")
        self._faiss = faiss
        self.index = faiss.IndexHNSWFlat(int(d), int(m), faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = int(ef_construction)
        G = len(rows)
        identity = G == n and bool((rows == np.arange(n)).all())
        for lo in range(0, G, _ADD_ROWS):
            chunk = vectors[lo:lo + _ADD_ROWS] if identity else vectors[rows[lo:lo + _ADD_ROWS]]
            self.index.add(np.ascontiguousarray(chunk, np.float32))
        self.row_of = rows.copy()                # graph id -> cache row (-1: gone)
        self.gid = np.full(n, -1, np.int64)       # cache row -> graph id (-1: not in the graph)
        self.gid[rows] = np.arange(G, dtype=np.int64)
        self.gone = 0
        self._unindexed: np.ndarray | None = None
        self._live: np.ndarray | None = None   # row_of >= 0, kept until the next write
        #: what the owner keeps per graph id beside the graph (the cache: its rows' filter columns
        #: as they were at the build, which stay right for every graph id that is not gone)
        self.columns: Any = None

    @property
    def live(self) -> int:
        """Graph ids that still stand for a row."""
        return len(self.row_of) - self.gone

    def _room(self, n: int) -> None:
        if len(self.gid) < n:
            grown = np.full(max(n, 2 * len(self.gid)), -1, np.int64)
            grown[:len(self.gid)] = self.gid
            self.gid = grown

    def forget(self, rows: np.ndarray, n: int) -> None:
        """Rows (re)written after the snapshot: out of the graph, into the unindexed rows; ``n``:
        the cache's row count after the write."""
        self._room(n)
        g = self.gid[rows]
        g = np.unique(g[g >= 0])
        if len(g):
            self.row_of[g] = -1
            self.gone += len(g)
        self.gid[rows] = -1
        self._unindexed = self._live = None

    def delete(self, row: int, last: int) -> None:
        """Row ``row`` is deleted and the cache's last row ``last`` moves into its place."""
        g = self.gid[row] if row < len(self.gid) else -1
        if g >= 0:
            self.row_of[g] = -1
            self.gone += 1
        if row != last:
            moved = self.gid[last] if last < len(self.gid) else -1
            self._room(row + 1)
            self.gid[row] = moved
            if moved >= 0:
                self.row_of[moved] = row
        if last < len(self.gid):
            self.gid[last] = -1
        self._unindexed = self._live = None

    def permute(self, start: int, order: np.ndarray, n: int) -> None:
        """Rows ``start + order`` went to rows ``start ...`` (a clustering)."""
        self._room(n)
        self.gid[start:n] = self.gid[start:n][order]
        g = self.gid[start:n]
        live = g >= 0
        self.row_of[g[live]] = start + np.flatnonzero(live)
        self._unindexed = None

    def unindexed(self, n: int) -> np.ndarray:
        """The rows of [0, n) the graph does not hold (increasing), scanned exactly by a query
        (kept until the next write: every change of the rows comes through this object)."""
        if self._unindexed is None:
            self._room(n)
            self._unindexed = np.flatnonzero(self.gid[:n] < 0)
        return self._unindexed

    def passing(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """Bool per graph id: it is not gone and passes ``allowed`` (bool per graph id, None: all);
        None when every graph id passes (``allowed`` itself while none is gone).

        Example:
            >>> g = GraphIndex.__new__(GraphIndex)
            >>> g.row_of, g.gone, g._live = np.array([0, -1, 2]), 1, None
            >>> g.passing(np.array([True, True, False])).tolist(), g.passing(None).tolist()
            ([True, False, False], [True, False, True])
        """
        if not self.gone:
            return allowed
        if self._live is None:
            self._live = self.row_of >= 0
        return self._live if allowed is None else self._live & allowed

    def search(self, query: np.ndarray, k: int, *, ef: int,
               ok: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The graph's best ``k`` rows for ``query`` (cache rows, exact inner products, best
        first) among the graph ids ``ok`` (:meth:`passing`; None: all)."""
        faiss = self._faiss
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(int(ef), int(k))
        if ok is not None:
            bits = np.packbits(ok, bitorder="little")
            params.sel = sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # noqa: F841 (kept alive)
        dist, ids = self.index.search(np.ascontiguousarray(query, np.float32).reshape(1, -1), int(k), params=params)
        keep = ids[0] >= 0
        return self.row_of[ids[0][keep]], dist[0][keep].astype(np.float32)
