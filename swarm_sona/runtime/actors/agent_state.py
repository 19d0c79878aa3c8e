"""An agent's checkpoint and restore: the engine (``engine.ckpt``), the agent's counters and
consensus bookkeeping (``meta.msgpack``, schema in :mod:`swarm_sona.runtime.actors.schema`) and
the push record (``push.msgpack``: the sequence number and coordinator epoch, fsynced before
every push, so a restarted agent never reuses a sequence number). Files are written atomically
and the previous one is kept as ``.prev`` (:mod:`swarm_sona.core.codec`). The directory may be
a storage URI (``s3://bucket/ckpt/a0``, ``memory://...``): each file is then a pointer object
and the objects it names (:mod:`swarm_sona.core.storage`), so a restart on another node finds
the state.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from swarm_sona.runtime.actors.agent_consensus import ConsensusLedger
    >>> d = Path(tempfile.mkdtemp())
    >>> led = ConsensusLedger("a"); led.seq = 7
    >>> files = AgentFiles(d); files.persist_seq(led)
    >>> again = ConsensusLedger("a"); files.restore_push_record(again); again.seq
    7
    >>> uri = AgentFiles.for_agent("memory://agent-state-doc", "a")
    >>> uri.engine_path, uri.is_uri
    ('memory://agent-state-doc/a/engine.ckpt', True)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm_sona.core import codec, storage
from swarm_sona.core.codec import CheckpointError, CheckpointSchemaError
from swarm_sona.engine.sona import SONA
from swarm_sona.runtime.actors.agent_consensus import ConsensusLedger
from swarm_sona.runtime.actors.schema import AGENT_META_KIND

__all__ = ["AgentFiles", "AgentCounters", "Restored", "PUSH_KIND"]

PUSH_KIND = "agent-push"


@dataclass
class AgentCounters:
    """What an agent has done, checkpointed with it: batches and tasks run, successes, patterns
    the bank acknowledged."""

    batches: int = 0
    tasks_done: int = 0
    successes: int = 0
    acked_patterns: int = 0


@dataclass(frozen=True)
class Restored:
    """A restored checkpoint: the engine, the counters, the meta file actually read (``path``:
    the ``.prev`` one when the newest was unusable, then ``warning`` says why)."""

    sona: SONA
    counters: AgentCounters
    path: str
    warning: str | None


class AgentFiles:
    """The checkpoint files of one agent in ``directory``: a local path or a storage URI
    (module docs)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.is_uri = storage.is_uri(directory)
        if self.is_uri:
            storage.check_location(directory)
        # a Path, or the URI string (typed Any: callers that mkdir() it do so for local paths only)
        self.dir: Any = str(directory).rstrip("/") if self.is_uri else Path(directory)
        self.engine_path = storage.join(self.dir, "engine.ckpt")
        self.meta_path = storage.join(self.dir, "meta.msgpack")
        self.push_path = storage.join(self.dir, "push.msgpack")

    @classmethod
    def for_agent(cls, checkpoint_dir: str | os.PathLike[str], agent_id: str) -> AgentFiles:
        """The files of agent ``agent_id`` under ``checkpoint_dir`` (its own subdirectory or
        prefix; a URI keeps its ``scheme://``, which ``Path(uri) / id`` would fold)."""
        return cls(storage.join(checkpoint_dir, agent_id))

    def prepare(self) -> None:
        """Create the local directory (a storage URI needs none: objects create their prefixes)."""
        if isinstance(self.dir, Path):
            self.dir.mkdir(parents=True, exist_ok=True)

    def persist_seq(self, ledger: ConsensusLedger) -> None:
        """Make the push's sequence number durable before the push leaves (fsync); the time it
        took is kept in ``ledger.push_persist_ms`` (the last 1000)."""
        t0 = time.perf_counter()
        codec.write_checkpoint(self.push_path, {"seq": ledger.seq, "epoch": ledger.coord_epoch}, kind=PUSH_KIND)
        ledger.push_persist_ms.append((time.perf_counter() - t0) * 1e3)
        del ledger.push_persist_ms[:-1000]

    def restore_push_record(self, ledger: ConsensusLedger) -> None:
        """The sequence number (and coordinator epoch) persisted by the last push."""
        p = self.push_path
        if not storage.checkpoint_location(p).exists():
            return
        try:
            rec = codec.read_checkpoint(p, kind=PUSH_KIND)
        except CheckpointSchemaError:
            raise
        except CheckpointError as exc:
            ledger.warnings.warn(f"push record unusable ({exc}); sequence numbers restart from the checkpoint's")
            return
        ledger.seq = max(ledger.seq, int(rec.get("seq", 0)))
        ledger.coord_epoch = rec.get("epoch") or ledger.coord_epoch

    def save(self, agent_id: str, sona: SONA, counters: AgentCounters, ledger: ConsensusLedger) -> str:
        """Save the engine, then the counters and bookkeeping; returns the meta path. When the meta
        file cannot be written (disk full) the engine file is rolled back, so the files on disk
        stay the previous checkpoint, engine and meta together, and the OSError is raised."""
        sona.save(self.engine_path)
        try:
            self._write_meta(agent_id, counters, ledger)
        except OSError:
            self._roll_back_engine()
            raise
        return str(self.meta_path)

    def _roll_back_engine(self) -> None:
        # back to the engine that goes with the meta still there (locally: a rename, needs no space)
        storage.checkpoint_location(self.engine_path).roll_back()

    def _write_meta(self, agent_id: str, counters: AgentCounters, ledger: ConsensusLedger) -> None:
        codec.write_checkpoint(self.meta_path, {
            "id": agent_id, "seq": ledger.seq, "installed_version": ledger.installed_version,
            "batches": counters.batches, "tasks_done": counters.tasks_done, "successes": counters.successes,
            "acked_patterns": counters.acked_patterns, "installed_ref": ledger.installed_ref,
            "included_seq": ledger.included_seq,
            "unconfirmed": {str(k): v for k, v in ledger.unconfirmed.items()},
            "coord_epoch": ledger.coord_epoch, "merged_epoch": ledger.merged_epoch, "time": time.time()},
            kind=AGENT_META_KIND)

    def restore(self, agent_id: str, ledger: ConsensusLedger, router: Callable[[], Any]) -> Restored | None:
        """The last checkpoint into ``ledger`` (and a loaded engine with ``router()``), None when
        there is none or it is unusable (a warning says so; the agent starts fresh). A newer
        schema than this code reads is refused (starting fresh would silently drop it)."""
        meta_p = self.meta_path
        self.restore_push_record(ledger)
        if not storage.checkpoint_location(meta_p).exists():
            return None
        try:
            r = codec.open_checkpoint(meta_p, kind=AGENT_META_KIND)
            meta = r.body
            sona = SONA.load(self.engine_path, router=router())
        except CheckpointSchemaError as exc:
            raise CheckpointSchemaError(f"agent {agent_id}: refusing to start on {meta_p}: {exc}") from exc
        except (CheckpointError, OSError, ValueError) as exc:
            ledger.warnings.warn(f"checkpoint unusable, starting fresh: {exc}")
            return None
        _restore_ledger(ledger, meta)
        counters = AgentCounters(batches=int(meta["batches"]), tasks_done=int(meta["tasks_done"]),
                                 successes=int(meta["successes"]), acked_patterns=int(meta.get("acked_patterns", 0)))
        warning = None
        if r.fallback:
            warning = f"checkpoint {r.requested} unusable ({r.refused[0] if r.refused else '?'}); restored from {r.path}"
        return Restored(sona, counters, str(r.path), warning)


def _restore_ledger(ledger: ConsensusLedger, meta: Mapping[str, Any]) -> None:
    ledger.seq = max(ledger.seq, int(meta["seq"]))
    ledger.installed_version = int(meta["installed_version"])
    ref = meta.get("installed_ref", meta.get("pushed"))   # schema-1 metas call it "pushed"
    ledger.installed_ref = dict(ref) if ref else None
    ledger.included_seq = int(meta.get("included_seq", -1))
    ledger.unconfirmed = {int(k): dict(v) for k, v in dict(meta.get("unconfirmed") or {}).items()}
    ledger.coord_epoch = meta.get("coord_epoch") or ledger.coord_epoch
    ledger.merged_epoch = meta.get("merged_epoch") or ledger.merged_epoch
