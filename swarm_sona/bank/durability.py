"""When a ReasoningBank's writes become durable (``config.durability``), and what its flush and
checkpoint do.

* ``wal`` (the default for an embedded bank): the backend is a
  :class:`~swarm_sona.bank.logged_backend.LoggedBackend`; a durable store is acknowledged after
  one ``fsync`` of the bank's write-ahead log covering it, concurrent stores sharing the fsync
  (group commit, :mod:`.commit`). A *checkpoint* (:meth:`Durability.checkpoint`: on
  ``flush()``, at close, and from the applier once the log holds ``wal_checkpoint_mb`` or the bank
  is idle) applies the log to the engine, flushes the engine, records the manifest and deletes
  the log segments it covers.
* ``engine``: a durable store is acknowledged after an engine flush covering it (group commit);
  each flush records the manifest. What a server backend always does.
* ``none``: a store is acknowledged at once; it is durable at the next ``flush()``.

``group_commit=False`` makes every durable store pay its own fsync (or flush).

Example:
    >>> from swarm_sona.bank import ReasoningBank
    >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-16")
    >>> bank.durability.mode, type(bank.backend).__name__
    ('wal', 'LoggedBackend')
    >>> bank.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from swarm_sona.bank.commit import GroupCommit, ManifestWriter
from swarm_sona.bank.errors import BankClosedError
from swarm_sona.bank.logged_backend import LoggedBackend, LogRecovery

__all__ = ["Durability", "DURABILITY_MODES"]

DURABILITY_MODES = ("wal", "engine", "none")


class Durability:
    """A bank's durability (see module docs): its group commit (:attr:`commits`) and checkpoint.

    Args:
        mode: ``config.durability``; ``wal`` becomes ``engine`` when ``backend`` is no
            :class:`LoggedBackend` (a server).
        backend: the bank's backend.
        grouped: ``config.group_commit``.
        lock: the bank's lock (held while the state a checkpoint records is taken).
        check_open: raises when the bank is closed.
    """

    def __init__(self, mode: str, backend: Any, *, grouped: bool, lock: threading.RLock,
                 check_open: Callable[[], None]) -> None:
        if mode not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, got {mode!r}")
        self.logged = isinstance(backend, LoggedBackend)
        self.mode = "engine" if mode == "wal" and not self.logged else mode
        self.backend = backend
        self.lock = lock
        self.check_open = check_open
        self.commits = GroupCommit(self._commit, grouped=grouped)
        self.manifest: ManifestWriter | None = None
        self.log_recovery: LogRecovery | None = None

    def recover(self) -> LogRecovery | None:
        """After the engine opened: replay the log into it (``wal``; None otherwise)."""
        if isinstance(self.backend, LoggedBackend):
            self.log_recovery = self.backend.recover()
        return self.log_recovery

    def attach(self, manifest: ManifestWriter) -> None:
        """Use ``manifest`` for the flushes and checkpoints (and, with the log, drop the log
        segments each manifest covers; the applier runs checkpoints)."""
        self.manifest = manifest
        if isinstance(self.backend, LoggedBackend):
            backend = self.backend
            manifest.after_write = lambda state: backend.checkpointed(state.get("wal_lsn"))
            backend.on_checkpoint = self._background_checkpoint

    def state(self, count: int, last_write: dict[str, Any] | None) -> dict[str, Any]:
        """What a manifest records (with the log: the last lsn the engine applied)."""
        out: dict[str, Any] = {"count": count, "last_write": last_write}
        if isinstance(self.backend, LoggedBackend):
            out["wal_lsn"] = self.backend.applied_lsn   # after count(): it applied every logged write
        return out

    # ---- acknowledgements ----------------------------------------------------------
    def wait(self, seq: int | None) -> None:
        """Return once write ``seq`` is durable as the mode says (``none``: at once)."""
        if self.mode != "none":
            self.commits.wait_durable(seq)

    def _commit(self) -> None:
        """The group commit's flush: the log's fsync, or (``engine``/``none``) the state now, the
        engine's flush without the bank's lock, then that state's manifest."""
        if isinstance(self.backend, LoggedBackend) and self.mode == "wal":
            self.backend.sync()
            return
        manifest = self.manifest
        with self.lock:
            self.check_open()
            state = manifest.state() if manifest is not None and manifest.enabled else None   # claims no later write
        self.backend.flush()
        if state is not None and manifest is not None:
            manifest.write(state)

    # ---- flush and checkpoint ------------------------------------------------------
    def flush(self, seq: int) -> None:
        """``ReasoningBank.flush``: every write up to ``seq`` durable in the engine (a checkpoint
        with the log)."""
        if isinstance(self.backend, LoggedBackend):
            self.checkpoint()
        else:
            self.commits.wait_durable(seq)

    def checkpoint(self) -> None:
        """Apply the log to the engine, flush the engine, record the manifest (which drops the
        log segments it covers). No-op without the log."""
        if not isinstance(self.backend, LoggedBackend):
            return
        manifest = self.manifest
        with self.lock:
            self.check_open()
            self.backend.rotate()
            state = manifest.state() if manifest is not None and manifest.enabled else None
            if state is None:
                self.backend.catch_up()
            lsn = self.backend.applied_lsn   # every logged write: no writer runs under the lock
        self.backend.flush()
        if state is not None and manifest is not None:
            manifest.write(state)
        else:   # no manifest: the flush alone covers the log
            self.backend.checkpointed(lsn)

    def _background_checkpoint(self) -> None:
        try:
            self.checkpoint()
        except BankClosedError:
            pass

    def stop(self) -> None:
        """Before the bank closes (without its lock): stop the log's applier."""
        if isinstance(self.backend, LoggedBackend):
            self.backend.stop()

    def stats(self) -> dict[str, Any]:
        """The ``durability`` part of the bank's stats: mode, group commit, and the log's counters."""
        out: dict[str, Any] = {"mode": self.mode, "group_commit": self.commits.grouped}
        if isinstance(self.backend, LoggedBackend):
            out["wal"] = self.backend.stats()
        return out
