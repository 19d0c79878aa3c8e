"""The ReasoningBank: patterns on Qdrant (embedded Qdrant Edge by default, a server at scale).

A bank stores patterns (see :mod:`.pattern`) as points of one Qdrant shard/collection: a
unit-norm vector of the task text (or a vector given by the caller) and a JSON payload. It
records the name and dimension of the embedder that made its vectors and refuses any other.
Retrieval is top-k by cosine similarity under payload filters, with a similarity threshold,
an optional recency/reliability score and optional MMR diversification (:mod:`.scoring`).
Reads on the hot path go to an in-memory cache searched by native kernels (:mod:`.cache`: by
default an int8 scan with an exact float32 re-rank, ``cache_int8=False`` for the exact float32
scan, ``cache_index="ivf"`` for an approximate k-means index at large sizes) plus an LRU of
recently written or retrieved patterns; queries with metadata filters go to the store. Every write
goes to the store first, then to the cache, after all input was validated: bad input raises
:class:`BankInputError` and nothing is written. Opening an existing bank takes a time
independent of its size: a large bank's cache loads in the background while the store answers
(``cache_load``, :mod:`.loading`; :meth:`ReasoningBank.wait_loaded`).

Backends (``ReasoningBankConfig.backend``, a registry, :mod:`.backend`): ``edge`` (embedded
Qdrant Edge at ``path``, default under the user's data dir; ``persist_to_disk=False`` for a
temporary bank), ``qdrant`` (qdrant-client against ``url``) and any a user registers. With
``qdrant`` several processes may write one collection: the cache then holds this process's writes
plus the state at open or at :meth:`ReasoningBank.refresh` (``cache_size=0``: always ask the server).

A bank object is thread-safe (one lock around every operation).

Durability (``config.durability``, :mod:`.durability`): ``store_many(durable=True)`` (and the
bank actor's default) returns once the write is durable, concurrent callers sharing one fsync
(group commit, :mod:`.commit`). An embedded bank (``wal``) logs every write to its own
write-ahead log (:mod:`.wal`) and acknowledges after the log's fsync; the engine applies the log
later (:mod:`.logged_backend`) and a checkpoint flushes the engine and drops the log; an open
replays what the log holds. Each engine flush records in a manifest what it made durable; the
next open compares (:mod:`.opening`).

Retention (``config.retention``): expiry by age and a cap per task type, see :mod:`.retention`.
Redaction (``config.redact``): applied to every pattern's text before its id is derived and
anything is written, see :mod:`.items`.

Example:
    >>> from swarm_sona.bank import ReasoningBank
    >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-64")
    >>> pid = bank.store_pattern("parse a csv file", "data.csv", "used csv.DictReader", 0.9, True)
    >>> _ = bank.store_pattern("bake bread", "flour", "oven at 220C", 1.0, True)
    >>> [p.task for p in bank.retrieve_patterns("parse the csv data", k=1, min_reward=0.5)]
    ['parse a csv file']
    >>> bank.store_pattern("parse a csv file", "data.csv", "used csv.DictReader", 0.9, True) == pid
    True
    >>> bank.count()
    2
    >>> bank.close()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bank.backend import StoredPoint, make_backend
from swarm_sona.bank.cache import CLUSTER_MIN_ROWS, IVF_MIN_ROWS
from swarm_sona.bank.commit import CommitError, ManifestWriter, StoreReceipt
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.distill import (
    DistillReport,
    apply_summaries,
    check_distill_options,
    check_trajectories,
    summarize_clusters,
)
from swarm_sona.bank.durability import Durability
from swarm_sona.bank.errors import BankClosedError, BankFullError, BankInputError
from swarm_sona.bank.filters import PatternFilter
from swarm_sona.bank.health import bank_stats
from swarm_sona.bank.items import parse_items
from swarm_sona.bank.loading import LOAD_AT_OPEN_MAX, CacheLoading, LoadStatus, new_cache
from swarm_sona.bank.logged_backend import wrap_engine
from swarm_sona.bank.lru import PayloadLRU
from swarm_sona.bank.opening import BankRecoveryWarning, ForeignPoints, check_recovery, open_store, report_foreign
from swarm_sona.bank.pattern import Pattern
from swarm_sona.bank.retention import RetentionKeeper
from swarm_sona.bank.retrieval import PatternReader, check_request
from swarm_sona.bank.scoring import ScoreWeights, rank_patterns
from swarm_sona.bank.snapshot import export_points, load_snapshot, write_snapshot
from swarm_sona.bank.vectors import check_ids, item_vectors, query_vector, unit_vector
from swarm_sona.bank.writes import PatternWriter
from swarm_sona.core import redaction
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.embedding.embedders import Embedder

__all__ = ["ReasoningBank", "BankRecoveryWarning", "StoreReceipt"]

FillListener = Callable[[list[StoredPoint]], None]


class ReasoningBank:
    """Pattern store with filtered similarity retrieval and distillation (see module docs).

    Args:
        config: a :class:`ReasoningBankConfig`, a mapping for it, or None for defaults.
        embedder: an :class:`Embedder`, an embedder name, or None: the embedder recorded in an
            existing bank, else ``config.embedder``.
        path: shortcut for an embedded bank at this directory (sets ``backend='edge'``,
            ``persist_to_disk=True``).
        client: an existing ``QdrantClient`` for the ``qdrant`` backend (e.g. local mode).
        clock: the time source for creation times, ``mark_used`` and retention (default
            ``time.time``; tests pass a fake clock).
        fill_listeners: called with every batch of patterns a background cache load takes (from its
            thread, without the bank's lock: e.g. to build an index next to the cache; they must
            not call back into the bank).
    """

    def __init__(self, config: ReasoningBankConfig | Mapping[str, Any] | None = None, *,
                 embedder: Embedder | str | None = None, path: str | Path | None = None, client: Any = None,
                 clock: Callable[[], float] | None = None, fill_listeners: Sequence[FillListener] = ()) -> None:
        cfg = config if isinstance(config, ReasoningBankConfig) else ReasoningBankConfig.from_dict(config)
        if path is not None:
            cfg = cfg.replace(backend="edge", path=str(path), persist_to_disk=True)
        self.config = cfg
        self._lock = threading.RLock()
        self._closed = False
        self.clock: Callable[[], float] = clock or time.time
        self.redactor = redaction.resolve_redactor(cfg.redact, "reasoning_bank.redact")
        self.retention = cfg.retention
        # called with the ids of every delete (delete() and retention), e.g. to drop them from an
        # index kept next to the bank; a listener must not call back into the bank
        self.delete_listeners: list[Callable[[list[str]], None]] = []
        self.fill_listeners: list[FillListener] = list(fill_listeners)
        self.backend = wrap_engine(make_backend(cfg, client), cfg)   # behind the bank's log (durability 'wal')
        # durable acknowledgements: writes are numbered, a shared fsync/flush covers many (see .durability)
        self.durability = Durability(cfg.durability, self.backend, grouped=cfg.group_commit, lock=self._lock,
                                     check_open=self._check_open)
        self.commits = self.durability.commits
        self.recovery: dict[str, Any] = {"checked": False, "problems": []}
        try:
            self._open(embedder)
        except BaseException:
            self.backend.close()
            raise

    # ---- opening -------------------------------------------------------------------
    def _open(self, embedder: Embedder | str | None) -> None:
        cfg = self.config
        opened = open_store(self.backend, embedder, cfg)
        replayed = self.durability.recover()   # writes the log holds beyond the engine's last flush
        self.embedder = opened.embedder
        self.dim = int(self.embedder.dim)
        self.embedder_name = str(self.embedder.name)
        self.cache = new_cache(self.dim, cfg, self.clock)
        self.payloads = PayloadLRU(cfg.payload_cache, decode=Pattern.payload_fields)
        self.writer = PatternWriter(self.backend, self.cache, self.payloads, cutoff=lambda: self.keeper.cutoff(), clock=self.clock,
                                    listeners=self.delete_listeners)
        self.keeper = RetentionKeeper(self.retention, self.backend, self.cache, clock=self.clock,
                                      delete=self.writer.delete)
        self.reader = PatternReader(self.backend, self.cache, self.payloads, self.keeper)
        self.loading = CacheLoading(self.backend, self.cache, self._lock, self.writer, dim=self.dim,
                                    cache_index=cfg.cache_index, listeners=self.fill_listeners,
                                    on_loaded=self._loaded)
        background = self.cache.active and (cfg.cache_load == "background" or (
            cfg.cache_load == "auto" and self.backend.count() > LOAD_AT_OPEN_MAX))
        if background:
            self.cache.loading = True   # the store answers (and retention selects) until it is loaded
        else:
            self.loading.fill_now()
        self.manifest = ManifestWriter(self.backend, embedder=self.embedder_name, dim=self.dim,
                                       state=lambda: self.durability.state(self.backend.count(), self.writer.last_write))
        self.durability.attach(self.manifest)
        self.recovery, self.manifest.losses = check_recovery(self.backend, dim=self.dim,
                                                             embedder_name=self.embedder_name, rebuilt=opened.rebuilt,
                                                             foreign=self.loading.foreign, replayed=replayed)
        if self.retention.active:
            self.keeper.prune(store=not self.cache.serving)
        if background:
            self.loading.start()

    def _loaded(self, foreign: ForeignPoints) -> None:
        """Under the lock, when a background load is complete: report the foreign points it skipped."""
        self.manifest.losses = report_foreign(self.recovery, self.manifest.losses, foreign, self.backend.location)

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Wait until a background cache load is over (at once when there is none); True if it is.

        Example:
            >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-16")
            >>> bank.wait_loaded(), bank.stats()["cache_load"]["state"]
            (True, 'ready')
            >>> bank.close()
        """
        return self.loading.wait(timeout)

    def load_status(self) -> LoadStatus:
        """Where loading the cache stands (:class:`~swarm_sona.bank.loading.LoadStatus`)."""
        return self.loading.status()

    def _fill_cache(self) -> None:
        """Under the lock: the cache filled from the store now (a background load stopped first)."""
        self.payloads.clear()
        self.loading.fill_now()

    def refresh(self) -> None:
        """Rebuild the hot-path cache from the store now (for a server collection others write to too)."""
        self.loading.stop()
        with self._lock:
            self._check_open()
            self._fill_cache()

    # ---- validation ----------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BankClosedError(f"the bank at {self.backend.location} is closed")

    # ---- writes --------------------------------------------------------------------
    def store_pattern(self, task: str, input: str, output: str, reward: float, success: bool,
                      metadata: Mapping[str, Any] | None = None, agent_id: str | None = None, *,
                      task_type: str | None = None, vector: Any = None, title: str | None = None,
                      description: str | None = None) -> str:
        """Store one pattern; returns its content-derived id (storing it again updates it in place).

        The vector is the embedding of ``task`` unless ``vector`` is given. Re-storing keeps the
        creation time and use counts and takes the new reward, success and metadata.
        """
        item = {"task": task, "input": input, "output": output, "reward": reward, "success": success,
                "metadata": metadata, "agent_id": agent_id, "task_type": task_type, "vector": vector,
                "title": title, "description": description}
        return self._store([item], single=True).ids[0]

    def store_many(self, items: Iterable[Mapping[str, Any]], *, durable: bool = False) -> list[str]:
        """Store many patterns in one batch (keys as :meth:`store_pattern`'s arguments); returns ids.

        Every item is validated before anything is written. With ``durable`` the call returns only
        once a flush of the store covers the write (group commit: concurrent durable calls from
        several threads share one flush, see :mod:`.commit`); without it the write is durable at
        the next :meth:`flush`.

        Example:
            >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-32")
            >>> ids = bank.store_many([{"task": "t", "reward": 1.0, "success": True}], durable=True)
            >>> bank.stats()["commits"]["flushes"]
            1
            >>> bank.close()
        """
        receipt = self._store(list(items), single=False)
        if durable:
            try:
                self.durability.wait(receipt.seq)
            except CommitError as exc:
                if isinstance(exc.__cause__, BankFullError):   # a full disk: the bank's own error, not acknowledged
                    raise BankFullError(exc.__cause__.errno, f"{exc.__cause__.strerror}; the store is not "
                                        "acknowledged") from exc
                raise
        return receipt.ids

    def write_many(self, items: Iterable[Mapping[str, Any]]) -> StoreReceipt:
        """:meth:`store_many` without waiting: the ids and the write number to pass to
        :meth:`wait_durable` before acknowledging them (so that a caller can update its own index
        under its own lock and wait for durability outside it).

        Example:
            >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-32")
            >>> r = bank.write_many([{"task": "t", "reward": 1.0, "success": True}])
            >>> bank.wait_durable(r.seq); bank.close()
        """
        return self._store(list(items), single=False)

    def wait_durable(self, seq: int | None = None) -> None:
        """Return once a flush covers write number ``seq`` (a :class:`StoreReceipt`'s; default:
        every write so far), running the flush when none is running (group commit). Raises
        :class:`~swarm_sona.bank.commit.CommitError` when that flush fails. ``durability: none``:
        returns at once."""
        self.durability.wait(seq)

    def _store(self, items: list[Mapping[str, Any]], *, single: bool) -> StoreReceipt:
        batch = parse_items(items, self.redactor, now=self.clock(), single=single)
        original = self.redactor is not None and not self.config.embed_redacted  # see the module docs
        with self._lock:
            self._check_open()
            V = item_vectors(batch, self.embedder, self.dim, embed_original=original, single=single)
            ids = self.writer.write(batch.patterns, V)
            self.keeper.after_store({p.task_type for p in batch.patterns}, len(batch.patterns),
                                    store=not self.cache.serving)
            return StoreReceipt(ids, self.commits.note_write())

    def delete(self, ids: str | Iterable[str]) -> int:
        """Delete patterns by id; returns how many existed."""
        lst = check_ids(ids)
        with self._lock:
            self._check_open()
            present = [p.id for p in self.backend.retrieve(lst)]
            self.writer.delete(present)
            return len(present)

    def mark_used(self, ids: str | Iterable[str], *, success: bool | None = None, now: float | None = None) -> int:
        """Record that patterns were used (use count, last-used time) and, if known, whether the
        task they guided succeeded (feeds :attr:`Pattern.reliability`). Returns how many existed."""
        lst = check_ids(ids)
        if success is not None and not isinstance(success, (bool, np.bool_)):
            raise BankInputError(f"success must be true, false or None, got {success!r}")
        t = self.clock() if now is None else float(now)
        with self._lock:
            self._check_open()
            return self.writer.mark_used(lst, None if success is None else bool(success), t)

    # ---- reads ---------------------------------------------------------------------
    def get(self, pattern_id: str) -> Pattern | None:
        """The pattern with this id (vector included), or None."""
        (pid,) = check_ids(pattern_id)
        with self._lock:
            self._check_open()
            return self.reader.get(pid)

    def count(self, *, min_reward: float | None = None, success: bool | None = None,
              source_agents: str | Sequence[str] | None = None, task_type: str | Sequence[str] | None = None,
              metadata: Mapping[str, Any] | None = None, source: str | None = None) -> int:
        """Number of patterns (meeting the filters, same meaning as in :meth:`retrieve_patterns`)."""
        filt = PatternFilter.build(min_reward=min_reward, success=success, agents=source_agents,
                                   task_type=task_type, source=source, metadata=metadata)
        with self._lock:
            self._check_open()
            return self.reader.count(filt)

    def retrieve_patterns(self, query: str | np.ndarray | None = None, k: int | None = None, *,
                          vector: Any = None, min_reward: float | None = None, success: bool | None = None,
                          source_agents: str | Sequence[str] | None = None,
                          task_type: str | Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None,
                          source: str | None = None, similarity_threshold: float | None = None,
                          mmr: float | None = None, score_weights: ScoreWeights | None = None,
                          with_vectors: bool = False, exact: bool = False) -> list[Pattern]:
        """The ``k`` best patterns for a task text (or a vector), best first.

        Filters (all optional, combined with AND): ``min_reward`` (reward >= it), ``success``,
        ``source_agents`` (agent id in the list), ``task_type`` (one or several), ``source``
        (``stored``/``distilled``), ``metadata`` (see :mod:`.filters`). ``similarity_threshold``
        (default ``config.similarity_threshold``) drops patterns with a lower cosine similarity.
        ``score_weights`` adds recency/reliability terms to the ranking score; ``mmr`` (lambda in
        [0, 1]) diversifies the result. ``k`` defaults to ``config.default_k``. ``exact`` asks the
        store for exact search when the query goes to the store (metadata filters, no cache).
        Each returned pattern carries ``similarity`` (cosine) and ``score`` (the ranking score).
        """
        req = check_request(k, similarity_threshold, mmr, score_weights, default_k=self.config.default_k,
                            default_threshold=self.config.similarity_threshold)
        filt = PatternFilter.build(min_reward=min_reward, success=success, agents=source_agents,
                                   task_type=task_type, source=source, metadata=metadata)
        q = query_vector(query, vector, self.embedder, self.dim)
        with self._lock:
            self._check_open()
            pats = self.reader.fetch(q, req.candidates, filt, req.threshold, need_vectors=req.reranked or with_vectors,
                                     exact=exact)
        out = rank_patterns(pats, req.k, lam=req.mmr, weights=req.weights)
        if not with_vectors:
            for p in out:
                p.vector = None
        return out

    # ---- distillation --------------------------------------------------------------
    def distill(self, trajectories: Iterable[Trajectory | Mapping[str, Any]], *, k: int | None = None,
                merge_threshold: float | None = None) -> DistillReport:
        """Distil trajectories into patterns (seeded k-means++; see :mod:`.distill`).

        A cluster whose centroid is within ``merge_threshold`` (cosine, default
        ``config.merge_threshold``) of an existing pattern with the same outcome merges into it:
        the support-weighted mean of vectors and rewards, support added up. Otherwise it becomes
        a new pattern with ``source='distilled'``. Returns ``{"trajectories", "clusters",
        "created": [ids], "merged": [ids]}``.
        """
        trajs = check_trajectories(trajectories, self.dim, self.embedder_name)
        thr, kk = check_distill_options(self.config.merge_threshold if merge_threshold is None else merge_threshold,
                                        self.config.distill_clusters if k is None else k)
        summaries = summarize_clusters(trajs, kk, seed=self.config.seed)
        with self._lock:
            self._check_open()
            created, merged = apply_summaries(summaries, reader=self.reader, writer=self.writer, threshold=thr,
                                              unit=lambda v, what: unit_vector(v, self.dim, self.embedder_name, what),
                                              redactor=self.redactor, clock=self.clock)
            if created:
                self.keeper.after_store({s.task_type for s in summaries}, len(created), store=not self.cache.serving)
            self.commits.note_write()
        return {"trajectories": len(trajs), "clusters": len(summaries), "created": created, "merged": merged}

    # ---- snapshots -----------------------------------------------------------------
    def snapshot(self, path: str | Path) -> int:
        """Write every pattern (ids, vectors, payloads) and the bank metadata to one checkpoint file
        (msgpack, CRC-checked, atomic; see :mod:`.snapshot`). Works for both backends, so it also
        migrates a bank between them. Expired patterns (``retention.max_age``) are left out.
        Returns the number of patterns written."""
        with self._lock:
            self._check_open()
            snap = export_points(self.backend, self.dim, self.keeper.cutoff())
            return write_snapshot(path, self.embedder_name, self.dim, snap.ids, snap.vectors, snap.payloads)

    def restore(self, path: str | Path) -> int:
        """Replace the bank's content with a snapshot's (same embedder required). Returns the count."""
        snap = load_snapshot(path, self.embedder_name, self.dim, self.redactor)
        self.loading.stop()
        with self._lock:
            self._check_open()
            self.backend.clear()
            self.cache.clear()
            if snap.ids:
                self.backend.upsert(snap.ids, snap.vectors, snap.payloads)
            self._fill_cache()
            if self.retention.active:
                self.keeper.prune(store=not self.cache.serving)
            self.commits.note_write()
            return len(snap.ids)

    # ---- maintenance ---------------------------------------------------------------
    def optimize(self) -> bool:
        """Build the store's HNSW index now (and re-cluster the hot-path cache by reward, see
        :meth:`HotCache.cluster`; with ``cache_index: ivf``, retrain its lists thoroughly and store
        its rows in list order instead; with ``cache_index: hnsw``, rebuild its graph). Blocking
        (seconds at 10k patterns, minutes at 100k for the embedded engine): call it from a
        maintenance step, never on the hot path. True if the store did work."""
        with self._lock:
            self._check_open()
            if self.cache.serving and self.cache.index == "ivf" and self.cache.n >= IVF_MIN_ROWS:
                self.cache.build_index(thorough=True)   # stores the rows in list order, not by reward
            elif self.cache.serving and self.cache.n >= CLUSTER_MIN_ROWS:
                self.cache.cluster()
            if self.cache.serving and self.cache.index == "hnsw" and self.cache.n >= IVF_MIN_ROWS:
                self.cache.build_graph()
            return self.backend.optimize()

    def stats(self) -> dict[str, Any]:
        """Backend, location, embedder, dimension, pattern count (stored, including expired ones not
        yet pruned), cache state, the redactor, and retention: the limits, ``pruned_expired`` and
        ``pruned_over_cap`` (patterns this bank object deleted), ``prune_runs``, ``last_prune_at``
        and ``expired_pending`` (expired, not yet deleted; None when only the store could tell).
        ``cache_load``: a background cache load's state (``loading``, ``ready``...), rows loaded and
        seconds (while loading, counts and queries are answered by the store).

        ``recovery`` says what the open found against the last flush's manifest (embedded bank):
        ``expected`` and ``found`` counts, ``missing``, ``last_write_present``,
        ``metadata_rebuilt_from`` (bank.json was missing), ``foreign_skipped`` (stored points that
        are not patterns, left out of the cache and of results) with a few ``foreign_examples``,
        and ``problems``, one sentence each (empty when the bank opened whole)."""
        with self._lock:
            self._check_open()
            return bank_stats(self)

    # ---- retention -----------------------------------------------------------------
    def prune(self) -> dict[str, int]:
        """Enforce the retention limits now: delete every expired pattern and every pattern beyond
        ``max_per_task_type`` in any task type. Returns ``{"expired": n, "over_cap": m}`` (deleted
        now; :meth:`stats` keeps the totals). For the ``edge`` backend the cache (which sees every
        write) selects them; for a server collection the store does, so the writes of other
        processes count too.

        Example:
            >>> t = [0.0]                                      # a fake clock
            >>> bank = ReasoningBank({"persist_to_disk": False, "retention": {"maxAge": "10m"}},
            ...                      embedder="hashing-v1-64", clock=lambda: t[0])
            >>> _ = bank.store_pattern("old task", "", "x", 1.0, True)
            >>> t[0] = 3600.0                                  # an hour later
            >>> bank.retrieve_patterns("old task"), bank.count()
            ([], 0)
            >>> bank.prune(), bank.stats()["retention"]["pruned_expired"]
            ({'expired': 1, 'over_cap': 0}, 1)
            >>> bank.close()
        """
        with self._lock:
            self._check_open()
            return self.keeper.prune(store=not self.cache.serving or self.backend.kind != "edge")

    enforce_retention = prune

    def flush(self) -> None:
        """Delete expired patterns (with a ``retention.max_age``), then make every write durable in
        the store now: with the bank's log a checkpoint (the log applied to the engine, the engine
        flushed, the log dropped), else a flush that starts after this call did, shared with
        concurrent durable stores."""
        with self._lock:
            self._check_open()
            self.keeper.expire(store=not self.cache.serving)
            seq = self.commits.note_write()   # deletes and payload updates are writes too
        self.durability.flush(seq)

    def close(self) -> None:
        """Flush and release the store (an embedded bank's path becomes free). Idempotent."""
        self.loading.stop()
        self.durability.stop()
        with self._lock:
            if not self._closed:
                self._closed = True
                if getattr(self, "cache", None) is not None:
                    self.cache.close()
                    if self.config.persist_to_disk and self.recovery.get("checked"):
                        self.manifest.final_flush()
                self.backend.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __enter__(self) -> ReasoningBank:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ReasoningBank(backend={self.backend.kind!r}, location={self.backend.location!r}, "
                f"embedder={getattr(self, 'embedder_name', None)!r}, closed={self._closed})")

