"""Group commit: acknowledge a write only once a flush covers it, one flush for many writers.

Writers number their writes (:meth:`GroupCommit.note_write`, called where the write happens, so
that the numbers follow the order of the writes) and then wait for a flush covering their number
(:meth:`GroupCommit.wait_durable`). The first waiter that finds no flush running becomes the
leader: it takes the highest number written so far as its target, runs the flush function with
no lock held, and wakes every waiter whose write the target covers. Writers that arrive while a
flush runs wait for it to end and then share the next one, so N concurrent writers pay about one
flush per round instead of N. A failed flush raises in the leader and in every writer waiting on
it (their writes are not acknowledged); the next waiter tries a new flush.

Example:
    >>> flushed = []
    >>> gc = GroupCommit(lambda: flushed.append(1))
    >>> a, b = gc.note_write(), gc.note_write()
    >>> gc.wait_durable(b)          # one flush covers both writes
    >>> gc.wait_durable(a)          # already durable: no second flush
    >>> len(flushed), gc.stats().flushes, gc.stats().durable
    (1, 1, 2)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("swarm_sona.bank")

__all__ = ["GroupCommit", "CommitStats", "CommitError", "ManifestWriter", "StoreReceipt"]


@dataclass(frozen=True)
class StoreReceipt:
    """What :meth:`ReasoningBank.write_many` wrote: the pattern ids (in input order) and the write
    number to pass to :meth:`ReasoningBank.wait_durable` before acknowledging them.

    Example:
        >>> StoreReceipt(["id"], 3).seq
        3
    """

    ids: list[str]
    seq: int


class CommitError(RuntimeError):
    """The flush that was to cover a write failed: the write is not durable (not acknowledged)."""


@dataclass(frozen=True)
class CommitStats:
    """Counters of a :class:`GroupCommit`.

    ``writes``: writes numbered; ``durable``: the highest write number a finished flush covers;
    ``flushes``: flushes run; ``waits``: calls to :meth:`GroupCommit.wait_durable` (each one an
    acknowledgement waited for); ``failed``: flushes that raised; ``flush_s``: seconds spent in
    flushes; ``max_group``: the most writes one flush covered.

    Example:
        >>> CommitStats(0, 0, 0, 0, 0, 0.0, 0).flushes
        0
    """

    writes: int
    durable: int
    flushes: int
    waits: int
    failed: int
    flush_s: float
    max_group: int


class GroupCommit:
    """Numbers writes and runs shared flushes (see module docs).

    Args:
        flush: makes every write numbered before the call durable; raises on failure.
        clock: time source for ``flush_s`` (default ``time.perf_counter``).
        grouped: concurrent writers share a flush (group commit); False: each write waited for
            runs a flush of its own, one at a time (what a store without group commit pays).
    """

    def __init__(self, flush: Callable[[], None], *, clock: Callable[[], float] | None = None,
                 grouped: bool = True) -> None:
        if not callable(flush):
            raise TypeError(f"flush must be callable, got {type(flush).__name__}")
        self._flush = flush
        self.grouped = bool(grouped)
        self._clock = clock or time.perf_counter
        self._cond = threading.Condition(threading.Lock())
        self._written = 0
        self._durable = 0
        self._flushing = False
        self._flushes = 0
        self._waits = 0
        self._failed = 0
        self._flush_s = 0.0
        self._max_group = 0

    def note_write(self) -> int:
        """Number one write (call it right after the write, in the writer's critical section);
        returns the number to pass to :meth:`wait_durable`."""
        with self._cond:
            self._written += 1
            return self._written

    @property
    def written(self) -> int:
        """The number of the latest write."""
        return self._written

    def wait_durable(self, seq: int | None = None) -> None:
        """Return once a finished flush covers write ``seq`` (default: every write so far), leading
        a flush when none is running. Raises :class:`CommitError` when the flush fails."""
        with self._cond:
            target = self._written if seq is None else int(seq)
            if target > self._written or target < 0:
                raise ValueError(f"write number {seq} was never issued (latest is {self._written})")
            self._waits += 1
            own = not self.grouped and target > 0   # ungrouped: this call runs a flush of its own
            while self._durable < target or own:
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing = True
                own = False
                upto, start = (self._written if self.grouped else max(target, self._durable)), self._durable
                self._cond.release()
                t0 = self._clock()
                try:
                    self._flush()
                except BaseException as exc:
                    self._cond.acquire()
                    self._flushing = False
                    self._failed += 1
                    self._cond.notify_all()
                    raise CommitError(f"flush covering write {target} failed: {type(exc).__name__}: {exc}") from exc
                dt = self._clock() - t0
                self._cond.acquire()
                self._flushing = False
                self._flushes += 1
                self._flush_s += dt
                self._max_group = max(self._max_group, upto - start)
                self._durable = max(self._durable, upto)
                self._cond.notify_all()

    def stats(self) -> CommitStats:
        """The counters now (see :class:`CommitStats`)."""
        with self._cond:
            return CommitStats(self._written, self._durable, self._flushes, self._waits, self._failed,
                               self._flush_s, self._max_group)


class ManifestWriter:
    """Records after each flush what it made durable (``state()``: pattern count, last write),
    with the bank's embedder, dimension, flush count and loss history, in the backend's manifest
    (only a backend with ``write_manifest``: the embedded one). One writer at a time.

    Example:
        >>> from types import SimpleNamespace
        >>> got = []
        >>> backend = SimpleNamespace(write_manifest=got.append)
        >>> m = ManifestWriter(backend, embedder="hashing-v1-8", dim=8, state=lambda: {"count": 2})
        >>> m.write(); got[0]["count"], got[0]["flushes"]
        (2, 1)
    """

    def __init__(self, backend: Any, *, embedder: str, dim: int, state: Callable[[], dict[str, Any]],
                 after_write: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.backend = backend
        self.after_write = after_write   # called with the state a manifest recorded (e.g. to drop log segments)
        self.enabled = hasattr(backend, "write_manifest")
        self.embedder = embedder
        self.dim = dim
        self.state = state
        self.losses: list[dict[str, Any]] = []
        self.flushes = 0
        self._lock = threading.Lock()

    def write(self, state: dict[str, Any] | None = None) -> None:
        """Write the manifest of ``state`` (default: ``state()`` now); no-op when not enabled."""
        if not self.enabled:
            return
        with self._lock:
            if state is None:
                state = self.state()
            self.backend.write_manifest({**state, "embedder": self.embedder, "dim": self.dim,
                                         "flushed_at": time.time(), "flushes": self.flushes + 1,
                                         "losses": self.losses})
            self.flushes += 1
            if self.after_write is not None:
                self.after_write(state)

    def final_flush(self) -> None:
        """At close: flush the engine, then record the manifest. A failure is logged, not raised
        (the close still releases the store)."""
        try:
            self.backend.flush()
            self.write()
        except Exception as exc:
            log.warning("ReasoningBank at %s: final flush failed: %s", getattr(self.backend, "location", "?"), exc)
