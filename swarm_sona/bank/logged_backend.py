"""An embedded engine behind the bank's write-ahead log (:mod:`.wal`): :class:`LoggedBackend`
implements the backend interface (:class:`~swarm_sona.bank.backend.BankBackend`) over an
engine, so that the bank's writer, retention, reader and cache loader use it unchanged.

Every write (upsert, delete, payload update, clear) is appended to the log, in the order of the
calls, and queued for the engine; it is durable once :meth:`LoggedBackend.sync` (one ``fsync``)
returns after it. The engine applies the queue later, in larger batches: in the background once
the bank has been idle for ``idle_s`` or the queue holds ``apply_points`` points, and at once
before any read of the engine (a read sees every write before it: retrieval from the store,
counts, scrolls). The engine's own flush then runs at a checkpoint (:meth:`LoggedBackend.flush`,
called by the bank): after it, the log segments it covers are deleted.

At open, :meth:`LoggedBackend.recover` replays whatever the log holds into the engine (the
records of writes acknowledged before a crash, and perhaps more), flushes the engine and starts
an empty log; a torn tail is dropped and counted (:class:`LogRecovery`).

Example:
    >>> import numpy as np
    >>> from swarm_sona.bank.edge_backend import EdgeBackend
    >>> eng = EdgeBackend(None, persist=False)
    >>> eng.open({"embedder": "hashing-v1-2", "dim": 2})
    >>> b = LoggedBackend(eng, idle_s=60.0)
    >>> b.recover().records
    0
    >>> b.upsert(["6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21"], np.array([[1.0, 0.0]], np.float32), [{"reward": 1.0}])
    >>> b.pending, b.count(), b.pending      # a read applies the queue first
    (1, 1, 0)
    >>> b.close()
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarm_sona.bank.backend import StoredPoint
from swarm_sona.bank.errors import BankError
from swarm_sona.bank.filters import Condition
from swarm_sona.bank.wal import BankLog, LogRecord, scan_segments

__all__ = ["LoggedBackend", "LogRecovery", "APPLY_BATCH", "wrap_engine"]

log = logging.getLogger("swarm_sona.bank")
APPLY_BATCH = 4096   # points per engine upsert when the queue is applied (one call holds the GIL)


@dataclass(frozen=True)
class LogRecovery:
    """What :meth:`LoggedBackend.recover` found in the log at open: ``segments`` read,
    ``records`` and ``patterns`` (points upserted) replayed into the engine, ``torn_bytes``
    dropped at the tail (a write that was never acknowledged), ``damage`` (segments cut short
    before their end: records lost) and the ``seconds`` the replay took.

    Example:
        >>> LogRecovery().to_dict()["records"]
        0
    """

    segments: int = 0
    records: int = 0
    patterns: int = 0
    torn_bytes: int = 0
    damage: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the ``wal`` part of the bank's ``recovery`` report)."""
        return {"segments": self.segments, "records": self.records, "patterns": self.patterns,
                "torn_bytes": self.torn_bytes, "damage": list(self.damage), "seconds": round(self.seconds, 4)}


def _apply(engine: Any, records: Sequence[LogRecord]) -> None:
    """Apply records to ``engine`` in order, consecutive upserts in batches of :data:`APPLY_BATCH`."""
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    pls: list[dict[str, Any]] = []

    def upsert() -> None:
        if ids:
            engine.upsert(ids, np.concatenate(vecs) if len(vecs) > 1 else vecs[0], pls)
            ids.clear()
            vecs.clear()
            pls.clear()

    for r in records:
        if r.op == "upsert" and r.vectors is not None and r.payloads is not None:
            ids.extend(r.ids)
            vecs.append(r.vectors)
            pls.extend(r.payloads)
            if len(ids) >= APPLY_BATCH:
                upsert()
            continue
        upsert()
        if r.op == "delete":
            engine.delete(r.ids)
        elif r.op == "set":
            engine.set_payload(r.ids, r.fields or {})
        elif r.op == "clear":
            engine.clear()
    upsert()


class LoggedBackend:
    """``engine`` (an opened embedded backend with a ``path``) behind the bank log in
    ``<path>/wal`` (see module docs). ``idle_s``: the queue is applied in the background after
    this long without writes; ``apply_points``: or once it holds this many points. Attributes
    other than the data methods (``kind``, ``location``, metadata and manifest I/O) are the
    engine's."""

    def __init__(self, engine: Any, *, idle_s: float = 0.1, apply_points: int = 65_536,
                 segment_bytes: int = 16 << 20, checkpoint_bytes: int = 64 << 20) -> None:
        self.engine = engine
        self.checkpoint_bytes = int(checkpoint_bytes)
        # the bank's checkpoint (engine flush + manifest + log segments dropped), run by the
        # applier once the log holds checkpoint_bytes or after an idle period
        self.on_checkpoint: Callable[[], None] | None = None
        self.idle_s = float(idle_s)
        self.apply_points = int(apply_points)
        self.segment_bytes = int(segment_bytes)
        self.log: BankLog | None = None
        self.applied_lsn = 0
        self.applied_points = 0
        self._queue: collections.deque[LogRecord] = collections.deque()
        self._queued_points = 0
        self._engine_lock = threading.Lock()   # engine calls, and the queue's order into them
        self._wake = threading.Condition(threading.Lock())
        self._last_write = time.monotonic()
        self._stop = False
        self._thread: threading.Thread | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "engine":   # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)

    # ---- lifecycle ------------------------------------------------------------------
    def recover(self) -> LogRecovery:
        """Replay the log found at ``<path>/wal`` into the engine, flush the engine, start an
        empty log and the background applier (call once, after the engine opened)."""
        t0 = time.perf_counter()
        directory = self.engine.path / "wal"
        scan = scan_segments(directory)
        if scan.records:
            _apply(self.engine, scan.records)
            self.engine.flush()
        last = max((r.lsn for r in scan.records), default=0)
        self.log = BankLog(directory, next_lsn=last + 1, segment_bytes=self.segment_bytes)
        self.log.reset()
        self.applied_lsn = last
        if scan.torn_bytes:
            log.info("ReasoningBank at %s: dropped a torn log tail of %d bytes (a write never acknowledged)",
                     self.engine.location, scan.torn_bytes)
        self._thread = threading.Thread(target=self._run, name="bank-wal-apply", daemon=True)
        self._thread.start()
        return LogRecovery(scan.segments, len(scan.records), scan.patterns, scan.torn_bytes, list(scan.damage),
                           time.perf_counter() - t0)

    def stop(self) -> None:
        """Stop the background applier (idempotent; call it without the bank's lock: the applier
        may be waiting for it to run a checkpoint)."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def close(self) -> None:
        """Stop the applier, apply the queue and close the engine (which flushes) and the log (its
        records stay until a manifest covers them: the bank's close writes one first)."""
        self.stop()
        try:
            try:
                self.catch_up()
            finally:
                if self.log is not None:
                    self.log.close()
        except BankError as exc:   # e.g. a full disk: the log's records stay for the next open's replay
            log.warning("ReasoningBank at %s: applying the log at close failed (replayed at the next open): %s",
                        self.engine.location, exc)
        try:
            self.engine.close()
        except BankError as exc:
            # the engine was not flushed: every write it missed is still in the log (see close's docs)
            log.warning("ReasoningBank at %s: %s; the bank log keeps the writes for the next open",
                        self.engine.location, exc)

    # ---- the queue ------------------------------------------------------------------
    def _append(self, op: str, ids: list[str], **kw: Any) -> None:
        if self.log is None:
            raise BankError(f"the bank log at {self.engine.location} is not open (recover() first)")
        lsn = self.log.append(op, ids=ids, **kw)
        with self._wake:
            was_empty = not self._queue
            self._queue.append(LogRecord(lsn, op, ids, kw.get("vectors"), kw.get("payloads"), kw.get("fields")))
            self._queued_points += len(ids)
            self._last_write = time.monotonic()
            if was_empty or self._queued_points >= self.apply_points:
                self._wake.notify_all()   # the applier starts its idle timer, or applies now

    @property
    def pending(self) -> int:
        """Logged records the engine has not applied yet."""
        return len(self._queue)

    def catch_up(self) -> None:
        """Apply every queued record to the engine now (before a read of the engine)."""
        with self._engine_lock:
            self._drain()

    def _drain(self) -> None:
        """Under the engine lock: apply the queue, one batch at a time, in order."""
        while True:
            with self._wake:
                if not self._queue:
                    return
                batch, n = [], 0
                while self._queue and n < APPLY_BATCH:
                    r = self._queue.popleft()
                    batch.append(r)
                    n += r.points
                self._queued_points -= n
            _apply(self.engine, batch)
            self.applied_lsn = batch[-1].lsn
            self.applied_points += n

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stop:
                    idle = time.monotonic() - self._last_write
                    if self._queue and (idle >= self.idle_s or self._queued_points >= self.apply_points):
                        break
                    self._wake.wait(self.idle_s if self._queue else None)
                if self._stop:
                    return
            try:
                self.catch_up()
                lg = self.log
                if self.on_checkpoint is not None and lg is not None and lg.bytes and (
                        lg.bytes >= self.checkpoint_bytes or time.monotonic() - self._last_write >= self.idle_s):
                    self.on_checkpoint()
            except Exception as exc:   # the next read applies the queue again (and raises there)
                log.warning("ReasoningBank at %s: applying the log to the engine failed: %s", self.engine.location, exc)
                with self._wake:
                    self._wake.wait(1.0)

    # ---- writes (logged) ---------------------------------------------------------------
    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Log an upsert (durable at the next :meth:`sync`)."""
        self._append("upsert", list(ids), vectors=np.ascontiguousarray(vectors, np.float32), payloads=list(payloads))

    def set_payload(self, ids: Sequence[str], fields: dict[str, Any]) -> None:
        """Log a payload update of existing points."""
        if ids:
            self._append("set", list(ids), fields=dict(fields))

    def delete(self, ids: Sequence[str]) -> None:
        """Log a delete."""
        if ids:
            self._append("delete", list(ids))

    def clear(self) -> None:
        """Log the deletion of every point."""
        self._append("clear", [])

    def sync(self) -> None:
        """Make every logged write durable (one fsync of the log)."""
        if self.log is None:
            raise BankError(f"the bank log at {self.engine.location} is not open")
        self.log.sync()

    def flush(self) -> None:
        """Apply the queue and flush the engine (a checkpoint: then :meth:`checkpointed`)."""
        with self._engine_lock:
            self._drain()
            self.engine.flush()

    def rotate(self) -> None:
        """Start a new log segment (at a checkpoint, under the bank's lock: the segments before
        it hold only records its flush covers)."""
        if self.log is not None:
            self.log.rotate()

    def checkpointed(self, lsn: int | None) -> None:
        """A manifest recorded an engine flush covering every record up to ``lsn``: delete the
        log segments it covers."""
        if self.log is not None and lsn is not None:
            self.log.drop_upto(int(lsn))

    # ---- reads (after the queue is applied) -------------------------------------------------
    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        with self._engine_lock:
            self._drain()
            return list(self.engine.retrieve(ids, with_vectors=with_vectors))

    def search(self, vector: np.ndarray, limit: int, conditions: Sequence[Condition], *,
               with_vectors: bool = False, exact: bool = False) -> list[StoredPoint]:
        with self._engine_lock:
            self._drain()
            return list(self.engine.search(vector, limit, conditions, with_vectors=with_vectors, exact=exact))

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True,
               conditions: Sequence[Condition] = ()) -> Iterator[list[StoredPoint]]:
        it = self.engine.scroll(batch=batch, with_vectors=with_vectors, conditions=conditions)
        while True:
            with self._engine_lock:
                self._drain()
                part = next(it, None)
            if part is None:
                return
            yield part

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        with self._engine_lock:
            self._drain()
            return int(self.engine.count(conditions))

    def optimize(self) -> bool:
        with self._engine_lock:
            self._drain()
            return bool(self.engine.optimize())

    def stats(self) -> dict[str, Any]:
        """The log's counters: records queued for the engine, lsn written and applied, fsyncs,
        segments and bytes held."""
        lg = self.log
        return {"pending": len(self._queue), "written_lsn": 0 if lg is None else lg.last_lsn,
                "applied_lsn": self.applied_lsn, "applied_points": self.applied_points,
                "syncs": 0 if lg is None else lg.syncs, "segments": 0 if lg is None else lg.segments,
                "bytes": 0 if lg is None else lg.bytes}


def wrap_engine(engine: Any, cfg: Any) -> Any:
    """``engine`` behind the bank log when ``cfg.durability`` is ``wal`` and the engine is an
    embedded one (a local directory and a manifest), else ``engine`` itself.

    Example:
        >>> from types import SimpleNamespace
        >>> wrap_engine("server", SimpleNamespace(durability="wal")) == "server"
        True
    """
    if getattr(cfg, "durability", "engine") != "wal" or not (hasattr(engine, "path") and
                                                            hasattr(engine, "write_manifest")):
        return engine
    return LoggedBackend(engine, idle_s=float(cfg.wal_idle_ms) / 1e3, apply_points=int(cfg.wal_apply_points),
                         checkpoint_bytes=int(float(cfg.wal_checkpoint_mb) * (1 << 20)))

