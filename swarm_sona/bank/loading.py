"""Loading a bank's hot-path cache from its store: at once (:func:`fill_cache`) or in the background
(:class:`CacheLoader`), so that opening a bank takes a time independent of its size.

A background load fills the bank's cache in place, batch by batch: each batch is read from the
store and checked without the bank's lock, then put into the cache under it, leaving out the ids
the bank wrote or deleted since the load started (:attr:`PatternWriter.touched
<swarm_sona.bank.writes.PatternWriter.touched>`: a write goes to the store and to the cache, so
the cache already holds its newest state). Until the last batch the cache is
:attr:`~swarm_sona.bank.cache.HotCache.loading`: it takes writes and deletes but answers no read
(:attr:`~swarm_sona.bank.cache.HotCache.serving` False), so retrieval, counts and retention go to
the store meanwhile, which answers the same as the cache would. Points that
are not patterns are skipped and counted (:class:`~swarm_sona.bank.opening.ForeignPoints`).

Example:
    >>> import numpy as np
    >>> from swarm_sona.bank import ReasoningBank
    >>> bank = ReasoningBank({"persist_to_disk": False, "cache_load": "background"}, embedder="hashing-v1-16")
    >>> _ = bank.store_pattern("sort a list", "", "sorted()", 1.0, True)   # answered by the store or the cache
    >>> bank.wait_loaded(), bank.stats()["cache_load"]["state"], bank.count()
    (True, 'ready', 1)
    >>> bank.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm_sona.bank.backend import BankBackend, StoredPoint
from swarm_sona.bank.cache import CLUSTER_MIN_ROWS, IVF_MIN_ROWS, HotCache
from swarm_sona.bank.opening import ForeignPoints
from swarm_sona.bank.pattern import payload_problem

__all__ = ["CacheLoading", "fill_cache", "ingest_points", "usable_batch", "finish_cache", "new_cache", "CacheLoader", "LoadStatus", "LOAD_BATCH",
           "LOAD_AT_OPEN_MAX"]

log = logging.getLogger("swarm_sona.bank")
LOAD_BATCH = 512   # points per store read while loading (one read holds the GIL: kept short)
LOAD_AT_OPEN_MAX = 8192   # cache_load 'auto': a store of at most this many points loads at open

FillListener = Callable[[list[StoredPoint]], None]


def usable_batch(points: Iterable[StoredPoint], dim: int, foreign: ForeignPoints) -> list[StoredPoint]:
    """The pattern points of one store batch with a vector of the bank's dimension (the others
    counted in ``foreign``)."""
    good = []
    for pt in points:
        why = payload_problem(pt.payload)
        if why is None and (pt.vector is None or pt.vector.shape != (dim,)):
            why = "no vector of the bank's dimension"
        if why is None:
            good.append(pt)
        else:
            foreign.note(pt.id, why)
    return good


def ingest_points(cache: HotCache, points: Iterable[StoredPoint], dim: int, foreign: ForeignPoints) -> list[StoredPoint]:
    """Put the pattern points of one store batch into ``cache`` (foreign ones counted in
    ``foreign``); returns the points taken."""
    good = usable_batch(points, dim, foreign)
    _upsert(cache, good)
    return good


def _upsert(cache: HotCache, points: list[StoredPoint]) -> None:
    if points:
        V = np.stack([p.vector for p in points if p.vector is not None]).astype(np.float32)
        cache.upsert([p.id for p in points], V, [p.payload for p in points])


def finish_cache(cache: HotCache, cache_index: str) -> None:
    """After a bulk load: build the ivf lists when configured (rows in list order), else cluster
    the rows by reward once (and build the hnsw graph when configured)."""
    cache.defer_cluster = False
    if not cache.active:
        return
    if cache_index == "ivf":
        cache.index = "ivf"
        if cache.n >= IVF_MIN_ROWS:
            cache.build_index(thorough=True)   # stores the rows in list order, not by reward
            return
    if cache.n >= CLUSTER_MIN_ROWS:
        cache.cluster()
    if cache_index == "hnsw":
        cache.index = "hnsw"
        if cache.n >= IVF_MIN_ROWS:
            cache.sequence_by_creation()   # the graph inserts the patterns in the order they were created
            cache.build_graph()   # after the clustering: the graph maps its ids to the rows as they are


def new_cache(dim: int, cfg: Any, clock: Callable[[], float]) -> HotCache:
    """An empty hot-path cache as ``cfg`` (a ``ReasoningBankConfig``) says, its retention
    ``max_age`` applied by ``clock``.

    Example:
        >>> from swarm_sona.bank.config import ReasoningBankConfig
        >>> new_cache(8, ReasoningBankConfig(cache_size=10), time.time).capacity
        10
    """
    cache = HotCache(dim, cfg.cache_size, int8=cfg.cache_int8, index=cfg.cache_index, probe=cfg.cache_probe,
                     rerank=int(cfg.cache_rerank), threads=int(cfg.cache_threads), int4_from=int(cfg.cache_int4_from),
                     ef=int(cfg.cache_ef))
    age = cfg.retention.max_age   # seconds once validated (the field also takes '12h')
    cache.max_age = None if age is None else float(age)
    cache.clock = clock
    return cache


def fill_cache(backend: BankBackend, cache: HotCache, dim: int, cache_index: str) -> ForeignPoints:
    """Load every pattern of the store into ``cache`` (emptied first), now; returns the points
    skipped as not patterns. Clusters by reward once at the end and builds the ivf index when
    configured."""
    foreign = ForeignPoints()
    cache.clear()
    cache.drop_index()  # fill flat, then train the ivf lists once
    if not cache.active:
        return foreign
    cache.defer_cluster = True  # cluster once at the end, not at every growth step
    try:
        for batch in backend.scroll(batch=LOAD_BATCH, with_vectors=True):
            ingest_points(cache, batch, dim, foreign)
            if not cache.active:
                return foreign
    finally:
        cache.defer_cluster = False
    finish_cache(cache, cache_index)
    return foreign


@dataclass(frozen=True)
class LoadStatus:
    """Where a background cache load stands: ``state`` is ``loading``, ``ready``, ``stopped``
    (the bank closed or reloaded first), ``failed`` (``error`` says why; the bank keeps
    answering from the store) or ``off`` (no cache); ``loaded`` rows so far, ``seconds`` taken.

    Example:
        >>> LoadStatus("ready", 10, 0.5).done
        True
    """

    state: str
    loaded: int
    seconds: float
    error: str | None = None

    @property
    def done(self) -> bool:
        """The load is over (whatever its outcome)."""
        return self.state != "loading"


class CacheLoader:
    """Fills ``cache`` from ``backend`` in a thread (see module docs; ``writer``: the bank's
    :class:`~swarm_sona.bank.writes.PatternWriter`, whose ``touched`` ids it leaves out), then,
    under ``lock``, marks it serving and calls ``done(foreign)``. ``listeners`` get every batch
    taken into the cache (from this thread, without the lock).

    Example:
        >>> from swarm_sona.bank import ReasoningBank
        >>> bank = ReasoningBank({"persist_to_disk": False, "cache_load": "background"}, embedder="hashing-v1-16")
        >>> bank.wait_loaded(), bank.load_status().state
        (True, 'ready')
        >>> bank.close()
    """

    def __init__(self, backend: BankBackend, cache: HotCache, lock: threading.RLock, writer: Any, *, dim: int,
                 cache_index: str, done: Callable[[ForeignPoints], None], listeners: list[FillListener]) -> None:
        self.backend = backend
        self.cache = cache
        self.writer = writer
        self.lock = lock
        self.dim = dim
        self.cache_index = cache_index
        self.done = done
        self.listeners = listeners
        self._stop = threading.Event()
        self._done = threading.Event()
        self._state = "loading"
        self._error: str | None = None
        self._t0 = time.perf_counter()
        self._t1: float | None = None
        self._thread = threading.Thread(target=self._run, name="bank-cache-loader", daemon=True)

    def start(self) -> None:
        """Mark the (empty) cache loading and start filling it in the background."""
        with self.lock:
            self.cache.drop_index()  # fill flat, then train the ivf lists once
            self.cache.loading = True
            self.writer.touched = set()
        self._thread.start()

    def _run(self) -> None:
        try:
            self._state = self._load()
            with self.lock:
                self.writer.touched = None
        except BaseException as exc:   # the bank stays usable: it answers from the store
            self._state, self._error = "failed", f"{type(exc).__name__}: {exc}"
            with self.lock:
                self.writer.touched = None
            log.warning("ReasoningBank at %s: loading the cache failed (%s); queries go to the store",
                        self.backend.location, self._error)
        finally:
            self._t1 = time.perf_counter()
            self._done.set()

    def _load(self) -> str:
        cache, foreign = self.cache, ForeignPoints()
        for batch in self.backend.scroll(batch=LOAD_BATCH, with_vectors=True):
            good = usable_batch(batch, self.dim, foreign)
            with self.lock:
                if self._stop.is_set():
                    return "stopped"
                touched = self.writer.touched or ()
                good = [p for p in good if p.id not in touched]   # a write or delete since: it is newer
                _upsert(cache, good)
                full = not cache.active   # more patterns than cache_size: the store keeps answering
            for fn in self.listeners:
                fn(good)
            if full or self._stop.is_set():
                break
        with self.lock:
            if self._stop.is_set():
                return "stopped"
            finish_cache(cache, self.cache_index)
            cache.loading = False
            self.done(foreign)
        return "ready"

    def stop(self) -> None:
        """Stop loading (at the next batch) and wait for the thread; the cache stays loading (not
        serving) until it is filled again."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the load is over; True if it is."""
        return self._done.wait(timeout)

    def status(self) -> LoadStatus:
        """The load's :class:`LoadStatus`."""
        end = self._t1 if self._t1 is not None else time.perf_counter()
        return LoadStatus(self._state, int(self.cache.n), round(end - self._t0, 4), self._error)


class CacheLoading:
    """How a bank's ``cache`` gets the store's patterns: :meth:`fill_now`, or :meth:`start` a
    :class:`CacheLoader` (``writer``, ``lock``, ``listeners`` as there; ``on_loaded(foreign)``
    under the lock when it is complete). :attr:`foreign`: the points the last load skipped.

    Example:
        >>> from swarm_sona.bank import ReasoningBank
        >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-16")
        >>> bank.loading.status().state, bank.loading.foreign.count
        ('ready', 0)
        >>> bank.close()
    """

    def __init__(self, backend: BankBackend, cache: HotCache, lock: threading.RLock, writer: Any, *, dim: int,
                 cache_index: str, listeners: list[FillListener], on_loaded: Callable[[ForeignPoints], None]) -> None:
        self.backend, self.cache, self.lock, self.writer = backend, cache, lock, writer
        self.dim, self.cache_index = dim, cache_index
        self.listeners, self.on_loaded = listeners, on_loaded
        self.loader: CacheLoader | None = None
        self.foreign = ForeignPoints()

    def fill_now(self) -> None:
        """Under the lock: fill the cache from the store now (stop a background load first)."""
        self.loader = None
        self.cache.loading = False
        self.foreign = fill_cache(self.backend, self.cache, self.dim, self.cache_index)

    def start(self) -> None:
        """Load the cache in the background; the store answers meanwhile."""
        self.loader = CacheLoader(self.backend, self.cache, self.lock, self.writer, dim=self.dim,
                                  cache_index=self.cache_index, done=self._done, listeners=self.listeners)
        self.loader.start()

    def _done(self, foreign: ForeignPoints) -> None:
        self.foreign = foreign
        self.on_loaded(foreign)

    def stop(self) -> None:
        """Stop a background load (called without the lock)."""
        if self.loader is not None:
            self.loader.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a background load is over (at once when there is none); True if it is."""
        return True if self.loader is None else self.loader.wait(timeout)

    def status(self) -> LoadStatus:
        """Where loading stands (a bank without a cache is ``off``)."""
        if self.loader is not None:
            return self.loader.status()
        return LoadStatus("ready" if self.cache.serving else "off", self.cache.n, 0.0)
