"""CoordinatorActor: merges pushed adapter deltas, consolidates with EWC++, checkpoints, serves versions.

A plain class (wrapped with ``ray.remote`` at creation, see :func:`swarm_sona.actors.remote`),
so it can be unit-tested in-process. Workers (or lower-level queens) push ``delta``
messages (:mod:`swarm_sona.consensus.messages`) with :meth:`CoordinatorActor.submit`; a malformed or
wrong-version message raises :class:`~swarm_sona.consensus.messages.MessageError` and leaves the
merge state untouched; a retried push is acknowledged but not counted twice
(:class:`~swarm_sona.consensus.merge.MergeBook`). :meth:`CoordinatorActor.merge` merges the pending
pushes by the topology's rule (the LLM router's posterior, ``router/...``, is pooled from
the pushes' evidence instead: see :class:`~swarm_sona.consensus.merge.MergeBook`), then runs the
EWC++ consolidation on the merged adapter, with the maths of :mod:`swarm_sona.learning.ewc`:

* Fisher: EWC++ running estimate ``F <- (1 - a) F + a F_round`` of the pushers'
  (trajectory-weighted) Fisher diagonals (:func:`~swarm_sona.learning.ewc.fisher_ema`), min-max
  normalised to [0, 1] (:func:`~swarm_sona.learning.ewc.importance`; ``EWCConfig`` ``fisher_decay``
  = a, ``normalize``): a constant positive Fisher weighs every coordinate 1, an all-zero
  one anchors nothing;
* the consolidated state is the exact minimiser of
  ``1/(2 eta) ||theta - theta_merged||^2 + lambda/2 sum F (theta - theta*)^2``, i.e.
  ``theta = (theta_merged + eta lambda F theta*) / (1 + eta lambda F)`` per coordinate
  (:func:`~swarm_sona.learning.ewc.proximal_consolidate`), with eta the background learning rate
  and theta* the anchor of the previous consolidation: coordinates that mattered to
  earlier versions move less;
* the anchor becomes the consolidated state.

Then it bumps the version, writes a checkpoint atomically (merge book + Fisher + anchor),
pushes its merged state to its own parent if it has one (hierarchical topology) and
returns the ``merged`` message. A restarted coordinator reloads the checkpoint, so it
keeps its version, merged adapter and the per-agent push sequence numbers (retries of
acknowledged pushes are still recognised).

Durable acknowledgements: with a ``checkpoint_dir``, :meth:`CoordinatorActor.submit` appends
every accepted push to a write-ahead log (``<id>.coord.wal``: one checksummed frame per push,
``fsync`` before the ack); a restart replays the pushes the checkpoint does not cover (a torn
tail is cut off with a warning), so a push acknowledged and then lost with a crash before the
merge is merged after the restart. The log is emptied once a merge's checkpoint is on disk.
A ``checkpoint_dir`` may be a storage URI (``s3://bucket/ckpt``, ``memory://...``; see
:mod:`swarm_sona.core.storage`): the checkpoint is then a pointer object and the objects it
names, and since object stores have no append nor fsync the log is one object per acknowledged
push (``<id>.coord.wal.d/<n>-<random>``, put whole before the ack), deleted once a merge's
checkpoint covers it.

Epochs: a coordinator that starts without any state draws a generation id (``epoch``) and
checkpoints it at once; it rides on every ack and ``merged`` message. Pushes carry the epoch
their agent knows; a push for another epoch is answered ``{"accepted": False, "reason":
"epoch"}`` without touching the merge state, so the agent can re-push everything the lost
coordinator had (see :class:`~swarm_sona.runtime.actors.agent.AgentActor`). ``merged``
messages also carry ``extra["seqs"]``: per agent, the sequence number of its last push merged
(through queens too), so an agent knows whether its own push is in a merged version.

Example:
    >>> import numpy as np, tempfile
    >>> from swarm_sona.runtime.actors.coordinator import CoordinatorActor
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> from swarm_sona.consensus.messages import encode_delta, decode_merged
    >>> c = CoordinatorActor("coordinator", rule="median", checkpoint_dir=tempfile.mkdtemp())
    >>> for i, v in enumerate([1.0, 2.0, 50.0]):
    ...     _ = c.submit(encode_delta(AgentUpdate(f"w{i}", 1, {"B": np.full(2, v, np.float32)}, weight=5)))
    >>> decode_merged(c.merge())["params"]["B"].tolist()
    [2.0, 2.0]
    >>> c.version
    1
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.messages import decode_delta, decode_merged, encode_delta, encode_merged
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core import codec, storage
from swarm_sona.core.codec import CheckpointError, CheckpointSchemaError, CodecError
from swarm_sona.learning.config import EWCConfig
from swarm_sona.learning.ewc import fisher_ema, importance, proximal_consolidate
from swarm_sona.runtime.actors.calls import WarningLog, as_peer, call
from swarm_sona.runtime.actors.schema import COORDINATOR_KIND

__all__ = ["CoordinatorActor"]

log = logging.getLogger(__name__)
_CKPT_KIND = COORDINATOR_KIND   # schema and migrations: runtime.actors.schema
_WAL_KIND = "coordinator-wal"
_HEADER = 16   # codec frame header: magic, crc32, payload length


def read_wal(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int, int]:
    """The records of a push log: ``(records, good_bytes, torn_bytes)``; reading stops at the
    first torn or corrupt frame (``good_bytes``: where the intact prefix ends).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "c.coord.wal")
        >>> with open(p, "wb") as f:
        ...     _ = f.write(codec.pack_frame(_WAL_KIND, {"epoch": "e1", "delta": b"x"}) + b"SSNA!")
        >>> recs, good, torn = read_wal(p)
        >>> [r["epoch"] for r in recs], torn
        (['e1'], 5)
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0, 0
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < _HEADER:
            break
        n = int.from_bytes(data[pos + 8:pos + 16], "little")
        end = pos + _HEADER + n
        if end > len(data):
            break
        try:
            body = codec.open_frame(data[pos:end], expect_kind=_WAL_KIND).body
        except CodecError:
            break
        if not isinstance(body, dict) or not isinstance(body.get("delta"), bytes):
            break
        out.append(body)
        pos = end
    return out, pos, len(data) - pos


def _seq_of(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else -1


class CoordinatorActor:
    """Consensus node: see the module docstring. ``parent`` is another coordinator to push
    merged states to: the object, its Ray handle, or its actor name (a string or a
    :class:`~swarm_sona.runtime.actors.calls.NamedActor`; a string is looked up in ``namespace``);
    ``rank`` is informational (the merged adapter has the workers' layout; workers of different
    LoRA rank merge their adapters apart, see :mod:`swarm_sona.consensus.book`)."""

    def __init__(self, coordinator_id: str, *, rule: str | Mapping[str, Any] = "fedavg",
                 rule_options: Mapping[str, Any] | None = None, min_updates: int = 1, parent: Any = None,
                 checkpoint_dir: str | os.PathLike[str] | None = None, ewc: EWCConfig | Mapping[str, Any] | None = None,
                 consolidate_ewc: bool = True, eta: float = 5e-3, rank: int | None = None,
                 telemetry: Mapping[str, Any] | None = None, namespace: str | None = None) -> None:
        from swarm_sona.core import telemetry as telemetry_mod

        self.id = coordinator_id
        # telemetry: merge/consolidate/checkpoint spans, children of the pushes' trace; drained by the driver
        self.tel = telemetry_mod.configure(telemetry, relay=True, attributes={
            "swarm_sona.role": "coordinator", "swarm_sona.coordinator": coordinator_id}) \
            if telemetry else telemetry_mod.current()
        self._trace: Mapping[str, str] | None = None
        self.book = MergeBook(rule, min_updates=min_updates, **dict(rule_options or {}))
        self.parent = as_peer(parent, namespace)
        self.ewc = EWCConfig.from_dict(ewc) if not isinstance(ewc, EWCConfig) else ewc
        self.consolidate_ewc = bool(consolidate_ewc)
        self.eta = float(eta)
        self.rank = rank
        self.fisher: dict[str, np.ndarray] = {}
        self.anchor: dict[str, np.ndarray] | None = None
        self.rejected = 0
        self.duplicates = 0
        self.merge_ms: list[float] = []
        self.restored_from: str | None = None
        self.warnings = WarningLog(log, f"coordinator {coordinator_id}")
        self._said: set[str] = set()            # merge warnings already given
        self._frame: bytes | None = None
        self.epoch = uuid.uuid4().hex[:12]     # generation id: replaced by the checkpoint's, if any
        self.merged_seqs: dict[str, int] = {}  # agent -> seq of its last push merged (through queens too)
        self.wal_ms: list[float] = []          # cost of each durable log append (write + fsync)
        self.replayed = 0
        self._wal_fd: int | None = None
        self.ckpt: Path | str | None = None       # the checkpoint (a path, or a URI's pointer object)
        self.wal: Path | None = None              # the push log, a local file...
        self.wal_objects: storage.ObjectDir | None = None   # ...or, at a URI, one object per push
        self._wal_names: list[str] = []           # push objects logged since the last checkpoint
        self._wal_next = 0
        if checkpoint_dir:
            self.ckpt = storage.join(checkpoint_dir, f"{coordinator_id}.coord.msgpack")
            if storage.is_uri(checkpoint_dir):
                self.wal_objects = storage.object_dir(str(storage.join(checkpoint_dir, f"{coordinator_id}.coord.wal.d")))
            else:
                self.wal = Path(checkpoint_dir) / f"{coordinator_id}.coord.wal"
        if self.ckpt is not None:
            if not self._restore():
                self.checkpoint()   # the epoch is durable before the first ack
            self._replay()

    # ---- state -------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Version of the current merged adapter (0 = nothing merged yet)."""
        return self.book.version

    def _restore(self) -> bool:
        """Load the checkpoint (or its ``.prev``); False when there is none to load. A checkpoint
        of a newer schema raises: starting empty would silently replace a newer state."""
        assert self.ckpt is not None
        if not storage.checkpoint_location(self.ckpt).exists():
            if read_wal(self.wal)[0] if self.wal is not None else bool(self.wal_objects and self.wal_objects.names()):
                self.warnings.warn(f"checkpoint {self.ckpt} and its .prev are gone but a push log is "
                                   f"there: state lost, new epoch {self.epoch}")
            return False
        try:
            r = codec.open_checkpoint(self.ckpt, kind=_CKPT_KIND)
        except CheckpointSchemaError as exc:
            raise CheckpointSchemaError(f"coordinator {self.id}: refusing to start on {self.ckpt}: {exc}") from exc
        except CheckpointError as exc:
            self.warnings.warn(f"no usable checkpoint, state lost, starting empty with new epoch "
                               f"{self.epoch}: {exc}")
            return False
        st = r.body
        self.book.load_state_dict(st["book"])
        self.fisher = dict(st.get("fisher") or {})
        self.anchor = st.get("anchor")
        self.rejected = int(st.get("rejected", 0))
        self.duplicates = int(st.get("duplicates", 0))
        self.epoch = str(st.get("epoch") or self.epoch)
        self.merged_seqs = {str(k): int(v) for k, v in dict(st.get("merged_seqs") or {}).items()}
        if self.book.merged is not None:
            self._frame = self._encode()
        self.restored_from = str(r.path)
        if r.fallback:
            self.warnings.warn(f"checkpoint {r.requested} unusable ({r.refused[0] if r.refused else '?'}); "
                               f"restored from {r.path}")
        return True

    @property
    def _wal_where(self) -> str:
        return str(self.wal) if self.wal is not None else self.wal_objects.uri if self.wal_objects else "-"

    def _logged(self) -> tuple[list[dict[str, Any]], int, int]:
        """The push log's records, the intact prefix's end (a file) and the torn bytes (a file)
        or torn objects (a URI: an unreadable object is deleted; its push was never acked)."""
        if self.wal is not None:
            return read_wal(self.wal)
        if self.wal_objects is None:
            return [], 0, 0
        recs: list[dict[str, Any]] = []
        torn = 0
        for name in self.wal_objects.names():
            try:
                body = codec.open_frame(self.wal_objects.get(name), expect_kind=_WAL_KIND).body
                if not isinstance(body, dict) or not isinstance(body.get("delta"), bytes):
                    raise CodecError("not a push record")
            except FileNotFoundError:
                continue
            except CodecError:
                torn += 1
                self.wal_objects.delete(name)
                continue
            recs.append(body)
            self._wal_names.append(name)
            self._wal_next = max(self._wal_next, _seq_of(name) + 1)
        return recs, 0, torn

    def _replay(self) -> None:
        """Re-submit the logged pushes the checkpoint does not cover (acknowledged, not merged)."""
        if self.wal is None and self.wal_objects is None:
            return
        self._wal_names = []
        recs, good, torn = self._logged()
        if torn and self.wal is not None:
            self.warnings.warn(f"push log {self.wal}: {torn} torn bytes at the end cut off "
                               f"(a push that was never acknowledged)")
            with open(self.wal, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        elif torn:
            self.warnings.warn(f"push log {self._wal_where}: {torn} unreadable push object(s) deleted "
                               f"(never acknowledged)")
        mine = [r for r in recs if r.get("epoch") == self.epoch]
        if len(mine) < len(recs):
            self.warnings.warn(f"push log {self._wal_where}: {len(recs) - len(mine)} push(es) of another epoch dropped")
        if not mine:
            if recs:
                self._truncate_wal()
            return
        # the book was checkpointed with the seqs of pushes still pending: replay them in order
        # from the seqs merged, which rebuilds the same pending round
        last = dict(self.book.last_seq)
        self.book.last_seq = {a: s for a, s in self.merged_seqs.items() if a in last}
        for rec in mine:
            update = decode_delta(rec["delta"])
            if update.seq <= self.merged_seqs.get(update.agent_id, -1):
                continue
            if self.book.submit(update):
                self.replayed += 1
        for a, s in last.items():
            self.book.last_seq[a] = max(s, self.book.last_seq.get(a, s))
        if self.replayed:
            log.info("coordinator %s: %d acknowledged push(es) replayed from %s", self.id, self.replayed,
                     self._wal_where)

    def _append_wal(self, frame: bytes) -> None:
        t0 = time.perf_counter()
        rec = codec.pack_frame(_WAL_KIND, {"epoch": self.epoch, "delta": bytes(frame)})
        if self.wal_objects is not None:   # an object store: one whole object per push, put before the ack
            name = f"{self._wal_next:012d}-{uuid.uuid4().hex[:8]}"
            self._wal_next += 1
            self.wal_objects.put(name, rec)
            self._wal_names.append(name)
        else:
            assert self.wal is not None
            if self._wal_fd is None:
                self._wal_fd = os.open(self.wal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            view = memoryview(rec)
            while view:
                view = view[os.write(self._wal_fd, view):]
            os.fsync(self._wal_fd)
        self.wal_ms.append((time.perf_counter() - t0) * 1e3)
        del self.wal_ms[:-1000]

    def _truncate_wal(self) -> None:
        """Empty the push log (every logged push is in the checkpoint just written)."""
        if self.wal_objects is not None:
            for name in self._wal_names:
                self.wal_objects.delete(name)
            self._wal_names = []
            return
        if self.wal is None:
            return
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        with open(self.wal, "wb") as f:
            os.fsync(f.fileno())

    def checkpoint(self) -> str | None:
        """Write the merge book, Fisher and anchor atomically; returns the path."""
        if self.ckpt is None:
            return None
        codec.write_checkpoint(self.ckpt, {"id": self.id, "book": self.book.state_dict(), "fisher": self.fisher,
                                           "anchor": self.anchor, "rejected": self.rejected,
                                           "duplicates": self.duplicates, "epoch": self.epoch,
                                           "merged_seqs": dict(self.merged_seqs), "time": time.time()},
                                kind=_CKPT_KIND)
        return str(self.ckpt)

    def _encode(self) -> bytes:
        assert self.book.merged is not None
        last = self.book.history[-1] if self.book.history else {}
        return encode_merged(self.book.version, self.book.merged, fisher=self.fisher or None,
                             agents=list(last.get("agents", [])), rule=self.book.rule.name,
                             extra={"coordinator": self.id, "n_trajectories": last.get("n_trajectories", 0.0),
                                    "epoch": self.epoch, "seqs": dict(self.merged_seqs)})

    # ---- protocol ----------------------------------------------------------------------
    def submit(self, frame: bytes) -> dict[str, Any]:
        """Take one pushed ``delta`` message. Returns ``{"accepted", "version", "agent_id", "seq",
        "epoch", "durable"}``; ``accepted`` is False for a retry of an already acknowledged push,
        and for a push addressed to another epoch (``"reason": "epoch"``: the merge state is not
        touched). An accepted push is on disk (``durable``) before this returns, when the
        coordinator has a checkpoint directory."""
        try:
            update = decode_delta(frame)
        except ValueError:
            self.rejected += 1
            raise
        ack = {"version": self.book.version, "agent_id": update.agent_id, "seq": update.seq, "epoch": self.epoch,
               "durable": self.wal is not None or self.wal_objects is not None}
        epoch = update.metadata.get("epoch")
        if epoch is not None and epoch != self.epoch:
            return {**ack, "accepted": False, "reason": "epoch", "durable": False}
        try:
            accepted = self.book.submit(update)
        except ValueError:
            self.rejected += 1
            raise
        if not accepted:
            self.duplicates += 1
            return {**ack, "accepted": False, "reason": "duplicate"}
        if self.wal is not None or self.wal_objects is not None:
            self._append_wal(frame)
        if self._trace is None and update.metadata.get("trace"):
            self._trace = update.metadata["trace"]   # the merge span continues the first push's trace
        return {**ack, "accepted": True}

    def merge(self, *after: Any) -> bytes | None:
        """Merge the pending pushes (``after``: ignored, lets a caller order this call after
        others); consolidate, checkpoint, push to the parent; returns the merged message or
        None when nothing was pending."""
        t0 = time.perf_counter()
        if not self.book.pending_agents:   # nothing pushed since the last merge: no merge, no span
            return None
        trace, self._trace = self._trace, None
        with self.tel.span("merge", parent=trace, attributes={"coordinator": self.id}) as span:
            return self._merge(t0, span)

    def _merge(self, t0: float, span: Any) -> bytes | None:
        tel = self.tel
        pending = dict(self.book.pending)
        result = self.book.merge()
        if result is None:
            return None
        for u in pending.values():   # a queen's push brings the seqs of the workers it merged
            below = u.metadata.get("seqs") if isinstance(u.metadata, Mapping) else None
            if isinstance(below, Mapping):
                for a, s in below.items():
                    if isinstance(a, str) and isinstance(s, int) and not isinstance(s, bool):
                        self.merged_seqs[a] = max(s, self.merged_seqs.get(a, -1))
            self.merged_seqs[u.agent_id] = max(u.seq, self.merged_seqs.get(u.agent_id, -1))
        span.set_attribute("version", result.version)
        for w in result.warnings:   # e.g. agents of another LoRA rank merged apart: said once per layout
            if w not in self._said:
                self._said.add(w)
                self.warnings.warn(w)
        params = result.params
        if result.fisher:
            fisher_ema(self.fisher, result.fisher, self.ewc.fisher_decay)
        if self.consolidate_ewc and self.anchor is not None and self.fisher:
            with tel.span("consolidate"):
                params = proximal_consolidate(params, self.anchor, importance(self.fisher, self.ewc.normalize),
                                              self.eta * self.ewc.strength)
                self.book.merged = params
        self.anchor = {k: v.copy() for k, v in params.items()}
        self._frame = self._encode()
        with tel.span("checkpoint"):
            self.checkpoint()
            self._truncate_wal()   # after the checkpoint: a crash in between replays nothing (seqs merged)
        if self.parent is not None:
            up = AgentUpdate(self.id, result.version, params, weight=result.n_trajectories,
                             fisher=self.fisher or None, base_version=result.version, evidence=result.evidence,
                             metadata={"seqs": dict(self.merged_seqs)})
            call(self.parent, "submit", encode_delta(up, trace=tel.inject()))
        self.merge_ms.append((time.perf_counter() - t0) * 1e3)
        del self.merge_ms[:-1000]
        return self._frame

    def drain_spans(self) -> list[dict[str, Any]]:
        """Finished spans of this coordinator since the last call (for the driver's telemetry)."""
        return self.tel.relay_drain() if self.tel.tracing else []

    def latest(self, *after: Any) -> bytes | None:
        """The current merged message (None before the first merge); ``after``: ignored, lets a
        caller read it after other calls (a sync reads the root's after its merge: when a
        queen's push reached the root before the root's own level-1 merge, that merge took it
        and the level-2 one had nothing left, yet the version agents need is the current one)."""
        return self._frame

    def install(self, frame: bytes) -> int:
        """Adopt a merged state from above (a queen receiving the root's); returns the version."""
        msg = decode_merged(frame)
        self.book.merged = msg["params"]
        self.anchor = {k: v.copy() for k, v in msg["params"].items()}
        self._frame = frame
        self.checkpoint()
        return msg["version"]

    def install_if(self, frame: bytes | None) -> int:
        """:meth:`install` when a merge produced a message (``None``: nothing to install)."""
        return self.book.version if frame is None else self.install(frame)

    def drain_warnings(self) -> list[str]:
        """Warnings since the last call (lost state, ``.prev`` used, torn log), for the driver's log."""
        return self.warnings.drain()

    def stats(self) -> dict[str, Any]:
        """Version, rule, pushes rejected / deduplicated, merge latency, restore info, epoch and
        the push log's append cost (``wal_ms_p50`` / ``wal_ms_p99``)."""
        ms = np.array(self.merge_ms) if self.merge_ms else np.array([np.nan])
        wal = np.array(self.wal_ms) if self.wal_ms else np.array([np.nan])
        return {"id": self.id, "version": self.book.version, "rule": self.book.rule.name,
                "tolerates": self.book.rule.tolerates(max(1, len(self.book.last_seq))),
                "pending": self.book.pending_agents, "rejected": self.rejected, "duplicates": self.duplicates,
                "merges": len(self.merge_ms), "merge_ms_mean": float(np.mean(ms)),
                "merge_ms_p50": float(np.median(ms)), "restored_from": self.restored_from,
                "epoch": self.epoch, "replayed": self.replayed, "wal_appends": len(self.wal_ms),
                "wal_ms_p50": float(np.median(wal)), "wal_ms_p99": float(np.percentile(wal, 99)),
                "warnings": self.warnings.recent(),
                "pid": os.getpid(), "cpu_s": time.process_time()}

    def ping(self) -> int:
        """Liveness probe; returns the process id."""
        return os.getpid()
