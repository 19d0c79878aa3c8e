"""AgentActor: one swarm agent owning one SONA engine; runs batches of tasks and learns from each.

A plain class (wrapped with ``ray.remote`` at creation), so it can be tested in-process.
One call carries a whole batch (Ray's ~1 ms per call is amortised). Per batch:

1. install a newer merged adapter if one has arrived (non-blocking check);
2. embed the batch's texts in one call (a task may carry ``metadata["embedding"]``: a
   caller that already has embeddings skips this step; they are checked for dimension);
3. retrieve patterns for the whole batch in **one** call to the pattern store (the bank
   actor, or a Qdrant server directly), filtered to ``source_agents`` (everyone when the
   bank is shared, only this agent otherwise);
4. in chunks of ``engine_batch`` tasks: one vectorised engine forward + routing call for the
   chunk (``sona.route_batch``: caches the activations), then per task run the executor
   with the retrieved patterns and record a :class:`~swarm_sona.core.trajectory.Trajectory`,
   then the chunk's instant-loop steps in task order in one call (``sona.learn``; the
   background loop runs on the engine's schedule, right after the trajectory that completes
   its period). The only difference from strictly per-task processing: a task is routed
   before the learning steps of the earlier tasks of its chunk are applied;
5. store the batch's novel successful trajectories as patterns in one call; the bank's
   reply is the acknowledgement (the ids come back in the batch result);
6. checkpoint every ``checkpoint_every`` tasks (engine + agent state, atomically).

Concurrent executors. When the executor's *class* defines ``run_many(tasks, models,
patterns)`` (e.g. :class:`~swarm_sona.executors.openai_chat.OpenAIChatExecutor`; the class is
checked, not the instance, so a wrapper such as ``HookedExecutor`` that only delegates
attributes keeps its per-call hooks), the batch's calls run through it concurrently: the
batch is routed in chunks of ``engine_batch`` (one vectorised call each), every call of the
batch goes to ``run_many`` (which keeps up to its cap outstanding, a sliding window, and
returns the outcomes in input order), then the outcomes are learned in input order, chunk by
chunk (deterministic: the same outcomes give the same state). ``max_concurrency`` (the agent's
share of a swarm-wide cap) bounds the calls this agent has outstanding: an executor with a
larger ``max_concurrency`` attribute gets a private copy with the share, one without such an
attribute gets slices of at most the share. The share is split over private copies of the
executor of at most ``pool_size`` (16) calls each, every copy with its own connection pool and
I/O thread (task ``i`` of ``k`` copies goes to copy ``i % k``): httpx's pool slows down sharply
past a few dozen connections (measured on the replay endpoint, one process, median 0.5 s:
500 calls at 64 in flight 5.1 s, at 128 in flight 21 s; 8 copies of 16: 3.4 s). The
synchronous protocol (one call per task) is used for every other executor.

Infrastructure failures are not task failures: an outcome with ``error_kind`` set (auth,
rate_limit, server, timeout, network, request, response: the endpoint failed, not the model)
becomes an error result with that ``error_kind`` and its message in ``error``; it records no
trajectory, so neither the engine nor the router learns from it, and it is never stored.

Consensus: :meth:`push` sends the adapter state + Fisher as a versioned ``delta`` message to
the parent coordinator; :meth:`install` takes a ``merged`` message and installs
``merged + (current - base)``, where ``base`` is the state the merged version already holds of
this agent: its push with the sequence number the message lists for it (``extra["seqs"]``),
or, when its latest pushes are not in that version yet, the state it installed last. An ack
never discards anything: a push stays *unconfirmed* (kept, with its state) until a merged
version lists it, so learning that an acknowledged push carried is kept on the agent until
the coordinator's merge of it arrives (the coordinator logs the push durably before the ack,
see :mod:`swarm_sona.runtime.actors.coordinator`). :meth:`mix` is a gossip step (weighted
average with neighbours' exported states). On (re)start the agent restores its last
checkpoint and then the parent's current merged version if newer.

Sequence numbers are persisted (``push.msgpack``, fsync) before every push, so a restarted
agent never reuses one. The coordinator's generation id (``epoch``) rides on acks and merged
messages: when it changes (a coordinator that lost its state), the agent warns, forgets its
unconfirmed pushes, re-pushes everything not in a merged version at once and accepts the new
coordinator's versions even though they restart from 1. Warnings of the agent come back to
the driver in each batch result (``"warnings"``).

The LLM router's posterior travels as additive evidence (``router/...``, see
:mod:`swarm_sona.consensus.parameter_space`). A push also carries its ``evidence``: ``current -
reference`` for those names, where the reference is what the agent pushed or installed last
(the router's prior before either), i.e. exactly the feedback not yet sent; the coordinator
pools it onto its merged posterior (:class:`~swarm_sona.consensus.merge.MergeBook`). The install rule
keeps ``current - reference`` as the agent's unsent evidence, so every piece of feedback is
sent once, whatever the order of pushes and installs (a push made before the previous merge
was installed included).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.consensus.messages import decode_delta, decode_merged, encode_delta
from swarm_sona.consensus.parameter_space import export_params, import_params, is_pooled, router_prior
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core import codec
from swarm_sona.core.codec import CheckpointError, CheckpointSchemaError
from swarm_sona.core.executor import Task
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.runtime.actors.calls import WarningLog, as_peer, call
from swarm_sona.runtime.actors.schema import AGENT_META_KIND

__all__ = ["AgentActor"]

log = logging.getLogger(__name__)
_META_KIND = AGENT_META_KIND   # schema and migrations: runtime.actors.schema
_PUSH_KIND = "agent-push"
_NOT_READY = object()
_MAX_UNCONFIRMED = 16
_STAGES = ("embed", "retrieve", "route", "execute", "learn", "background", "store", "push", "checkpoint", "batch")


def _resolve(obj: Any, *, block: bool) -> Any:
    """An ObjectRef's value (None if not ready and not ``block``), or ``obj`` itself."""
    try:
        import ray
    except ImportError:  # pragma: no cover
        return obj
    if isinstance(obj, ray.ObjectRef):
        if not block:
            ready, _ = ray.wait([obj], timeout=0)
            if not ready:
                return _NOT_READY
        return ray.get(obj)
    return obj


class _BackgroundClock:
    """Engine hook: appends each background cycle's wall time (seconds) to ``out``."""

    def __init__(self, out: list[float]) -> None:
        self.out = out

    def after_background(self, sona: Any, result: Mapping[str, Any]) -> None:
        ms = result.get("duration_ms")
        if ms is not None:
            self.out.append(float(ms) / 1e3)


class _ChunkSpans:
    """Per-task spans for a chunk that is routed and learned in batched calls (tracing on only).

    Every task gets a ``task`` span (a child of the batch's trace context); its ``route`` and
    ``learn`` children cover the batched call that routed / learned it (attribute
    ``batch_n``), its ``execute`` child its own executor call.
    """

    def __init__(self, tel: Any, trace: Mapping[str, str] | None, tasks: Sequence[Task], agent_id: str) -> None:
        self.tel = tel
        self.tasks = [tel.begin("task", parent=trace, attributes={"agent": agent_id, "task.id": t.id}) for t in tasks]
        self.ctx = [tel.inject(span=s) for s in self.tasks]
        self.open: list[Any] = []

    def begin(self, name: str) -> None:
        self.open = [self.tel.begin(name, parent=c, attributes={"batch_n": len(self.ctx)}) for c in self.ctx]

    def end(self, flag: Sequence[int] = ()) -> None:
        for i in flag:   # this task's learning step also ran the background loop
            if self.open[i].is_recording():
                self.open[i].set_attribute("background", True)
        for s in self.open:
            s.end()
        self.open = []

    def execute(self, i: int, model: str) -> Any:
        return self.tel.span("execute", parent=self.ctx[i], attributes={"model": model})

    def close(self) -> None:
        self.end()
        for s in self.tasks:
            s.end()


class AgentActor:
    """See the module docstring.

    ``sona_config``: a :class:`~swarm_sona.engine.config.SONAConfig` or dict for this agent's engine;
    ``executor``: ``(task, model, patterns) -> Outcome``; ``store``: the pattern store (the
    bank actor, or an object with ``search_batch``/``store_batch``), None = no retrieval;
    ``parent``: the coordinator this agent pushes to, None = none. A peer is an in-process
    object, a Ray actor handle, or an actor name (a string, looked up in ``namespace``, or a
    :class:`~swarm_sona.runtime.actors.calls.NamedActor`): the swarm passes names, resolved on first
    use, so a restarted agent finds its peers again (see :mod:`swarm_sona.runtime.actors.calls`).
    ``engine_batch``: tasks routed together in one vectorised engine call before their
    instant-loop steps (1 = route, execute and learn strictly one task at a time). Results
    are those of per-task processing except that a task's routing does not yet see the
    learning steps of the tasks before it in the same chunk (they are applied after the
    chunk, in task order). ``max_concurrency``: this agent's share of the swarm's cap of
    executor calls outstanding (None = the executor's own cap); ``pool_size``: calls per
    executor copy (each with its own connection pool) that the share is split over; both
    only for an executor whose class defines ``run_many`` (module docs).
    """

    def __init__(self, agent_id: str, sona_config: Any, executor: Any, *, agent_type: str = "worker",
                 store: Any = None, bank_config: Mapping[str, Any] | None = None, parent: Any = None, shared_bank: bool = True, retrieve_k: int = 1,
                 store_min_reward: float = 0.5, store_novelty: float = 0.9, checkpoint_dir: str | None = None,
                 checkpoint_every: int = 2048, merge_space: str = "factor", seed: int = 0,
                 telemetry: Mapping[str, Any] | None = None, engine_batch: int = 64,
                 namespace: str | None = None, max_concurrency: int | None = None, pool_size: int = 16) -> None:
        from swarm_sona.core import telemetry as telemetry_mod
        from swarm_sona.engine.config import SONAConfig
        from swarm_sona.engine.sona import SONA

        self.id = agent_id
        self.type = agent_type
        self.config = sona_config if isinstance(sona_config, SONAConfig) else SONAConfig.from_dict(sona_config)
        if store is None and bank_config is not None:  # a Qdrant server: every agent opens it directly
            from swarm_sona.bank import ReasoningBank
            from swarm_sona.runtime.actors.bank import PatternStore

            store = PatternStore(ReasoningBank(bank_config, embedder=f"hashing-v1-{self.config.dim}"))
        self.store = as_peer(store, namespace)
        self.parent = as_peer(parent, namespace)
        self.shared_bank = bool(shared_bank)
        self.retrieve_k = int(retrieve_k)
        self.store_min_reward = float(store_min_reward)
        self.store_novelty = float(store_novelty)
        self.checkpoint_every = max(1, int(checkpoint_every))
        if isinstance(engine_batch, bool) or not isinstance(engine_batch, int) or engine_batch < 1:
            raise ValueError(f"engine_batch must be an integer >= 1, got {engine_batch!r}")
        self.engine_batch = engine_batch
        if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                                            or max_concurrency < 1):
            raise ValueError(f"max_concurrency must be an integer >= 1 or None, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency
        self.concurrent = callable(getattr(type(executor), "run_many", None))
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be an integer >= 1, got {pool_size!r}")
        self._slice = None   # run_many slices when the executor has no cap of its own to lower
        self._shards: list[Any] = [executor]   # executor copies, each with its own connection pool
        self._threads: Any = None
        cap = getattr(executor, "max_concurrency", None)
        if self.concurrent and isinstance(cap, int) and not isinstance(cap, bool):
            share = min(cap, max_concurrency) if max_concurrency is not None else cap
            k = -(-share // pool_size)
            if k > 1 or share != cap:   # private copies (pickled state, fresh connections), the share split
                import copy

                self._shards = [copy.copy(executor) for _ in range(k)]
                for j, ex in enumerate(self._shards):
                    ex.max_concurrency = share // k + (1 if j < share % k else 0)
        elif self.concurrent and max_concurrency is not None:
            self._slice = max_concurrency
        self.executor = self._shards[0]
        self.merge_space = merge_space
        self.seed = seed
        self.dir = Path(checkpoint_dir) / agent_id if checkpoint_dir else None
        self.seq = 0                 # push sequence number (monotone across restarts)
        self.installed_version = 0   # merged version installed last
        self.batches = 0
        self.tasks_done = 0
        self.successes = 0
        self.n_since_push = 0
        self.acked_patterns = 0
        self.restored_from: str | None = None
        self.restored_version: int | None = None
        self._installed_ref: dict[str, np.ndarray] | None = None   # the merged state installed last
        self._included_seq = -1        # this agent's last push contained in _installed_ref
        self._unconfirmed: dict[int, dict[str, np.ndarray]] = {}   # acked pushes not yet in a merged version
        self.coord_epoch: str | None = None    # epoch of the parent (acks)
        self.merged_epoch: str | None = None   # epoch of the coordinator whose merged versions arrive
        self.push_persist_ms: list[float] = []
        self.warnings = WarningLog(log, f"agent {agent_id}")
        self.error_kinds: dict[str, int] = {}   # tasks that failed, by stage (embed, retrieve, execute, ...)
        self._pending_merged: list[Any] = []
        self._t_work = 0.0
        self._since_ckpt = 0
        # wall seconds per stage of run_batch (execute: executor + trajectory records; batch: whole calls)
        self.stage_s: dict[str, float] = dict.fromkeys(_STAGES, 0.0)
        # telemetry: spans are relayed back to the driver in each batch result (swarm_sona.core.telemetry)
        self.tel = telemetry_mod.configure(telemetry, relay=True, attributes={
            "swarm_sona.role": "agent", "swarm_sona.agent": agent_id}) if telemetry else telemetry_mod.current()
        self.sona = SONA(self.config, router=self._router())
        self._model_names = [m.name for m in self.config.llm_router.models]
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._restore()
        self._hook_background()
        if self.parent is not None:
            self._catch_up()

    def _hook_background(self) -> None:
        """Record the wall time of every background cycle of the engine (``after_background``)."""
        self._background_s: list[float] = []   # cycles since the last batch result
        self.sona.add_hook(_BackgroundClock(self._background_s))

    def _router(self) -> Any:
        if not self.config.llm_router.models:
            return None
        from swarm_sona.routing.router import LLMRouter

        return LLMRouter(self.config.llm_router.replace(seed=self.config.llm_router.seed + self.seed), dim=self.config.dim)

    # ---- checkpoints -----------------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path]:
        assert self.dir is not None
        return self.dir / "engine.ckpt", self.dir / "meta.msgpack"

    def _restore(self) -> None:
        engine_p, meta_p = self._paths()
        self._restore_push_record()
        if not meta_p.exists() and not meta_p.with_name(meta_p.name + ".prev").exists():
            return
        from swarm_sona.engine.sona import SONA

        try:
            r = codec.open_checkpoint(meta_p, kind=_META_KIND)
            meta = r.body
            self.sona = SONA.load(engine_p, router=self._router())
        except CheckpointSchemaError as exc:   # a newer state: starting fresh would silently drop it
            raise CheckpointSchemaError(f"agent {self.id}: refusing to start on {meta_p}: {exc}") from exc
        except (CheckpointError, OSError, ValueError) as exc:
            self.warnings.warn(f"checkpoint unusable, starting fresh: {exc}")
            return
        self.seq = max(self.seq, int(meta["seq"]))
        self.installed_version = int(meta["installed_version"])
        self.batches = int(meta["batches"])
        self.tasks_done = int(meta["tasks_done"])
        self.successes = int(meta["successes"])
        self.acked_patterns = int(meta.get("acked_patterns", 0))
        ref = meta.get("installed_ref", meta.get("pushed"))   # schema-1 metas call it "pushed"
        self._installed_ref = dict(ref) if ref else None
        self._included_seq = int(meta.get("included_seq", -1))
        self._unconfirmed = {int(k): dict(v) for k, v in dict(meta.get("unconfirmed") or {}).items()}
        self.coord_epoch = meta.get("coord_epoch") or self.coord_epoch
        self.merged_epoch = meta.get("merged_epoch") or self.merged_epoch
        self.restored_from = str(r.path)
        self.restored_version = self.installed_version
        if r.fallback:
            self.warnings.warn(f"checkpoint {r.requested} unusable "
                               f"({r.refused[0] if r.refused else '?'}); restored from {r.path}")

    def _restore_push_record(self) -> None:
        """The sequence number (and coordinator epoch) persisted by the last push."""
        assert self.dir is not None
        p = self.dir / "push.msgpack"
        if not p.exists() and not p.with_name(p.name + ".prev").exists():
            return
        try:
            rec = codec.read_checkpoint(p, kind=_PUSH_KIND)
        except CheckpointSchemaError:
            raise
        except CheckpointError as exc:
            self.warnings.warn(f"push record unusable ({exc}); sequence numbers restart from the checkpoint's")
            return
        self.seq = max(self.seq, int(rec.get("seq", 0)))
        self.coord_epoch = rec.get("epoch") or self.coord_epoch

    def _persist_seq(self) -> None:
        """Make the push's sequence number durable before the push leaves (fsync)."""
        if self.dir is None:
            return
        t0 = time.perf_counter()
        codec.write_checkpoint(self.dir / "push.msgpack", {"seq": self.seq, "epoch": self.coord_epoch},
                               kind=_PUSH_KIND)
        self.push_persist_ms.append((time.perf_counter() - t0) * 1e3)
        del self.push_persist_ms[:-1000]

    def checkpoint(self) -> str | None:
        """Save the engine and the agent's counters atomically; returns the meta path."""
        if self.dir is None:
            return None
        engine_p, meta_p = self._paths()
        self._since_ckpt = 0
        self.sona.save(engine_p)
        codec.write_checkpoint(meta_p, {"id": self.id, "seq": self.seq, "installed_version": self.installed_version,
                                        "batches": self.batches, "tasks_done": self.tasks_done,
                                        "successes": self.successes, "acked_patterns": self.acked_patterns,
                                        "installed_ref": self._installed_ref, "included_seq": self._included_seq,
                                        "unconfirmed": {str(k): v for k, v in self._unconfirmed.items()},
                                        "coord_epoch": self.coord_epoch, "merged_epoch": self.merged_epoch,
                                        "time": time.time()}, kind=_META_KIND)
        return str(meta_p)

    def _catch_up(self) -> None:
        try:
            frame = call(self.parent, "latest", timeout=30)
        except Exception as exc:  # parent down: the next broadcast brings us up to date
            log.warning("agent %s: cannot fetch the coordinator's version: %s", self.id, exc)
            return
        if frame is not None:
            self.install(frame)

    # ---- consensus ---------------------------------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        """The agent's shareable state, flat (adapters + heads), in the merge space."""
        return export_params(self.sona, self.merge_space)[0]

    def export_frame(self) -> bytes:
        """This agent's state as a ``delta`` message (gossip export; does not bump ``seq``)."""
        params, fisher, n = export_params(self.sona, self.merge_space)
        return encode_delta(AgentUpdate(self.id, self.seq, params, weight=max(n, self.n_since_push), fisher=fisher,
                                        base_version=self.installed_version))

    def push(self, trace: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Push the state to the parent coordinator; returns its acknowledgement. ``trace``: the
        driver's trace context (the push span, and the coordinator's merge, continue it)."""
        if self.parent is None:
            return {"accepted": False, "reason": "no parent"}
        with self.tel.span("push", parent=trace, attributes={"agent": self.id}):
            ack, params = self._push_once()
            if isinstance(ack, Mapping) and ack.get("reason") == "epoch":
                # the coordinator lost its state: what it had acknowledged is gone, send it all again
                self.warnings.warn(f"coordinator epoch changed {self.coord_epoch} -> {ack.get('epoch')} "
                                   f"(it lost its state); dropping {len(self._unconfirmed)} unconfirmed "
                                   f"push(es) and re-pushing")
                self.coord_epoch = ack.get("epoch")
                self._unconfirmed.clear()
                self.installed_version = 0   # the new coordinator's versions start over
                ack, params = self._push_once()
        if isinstance(ack, Mapping) and ack.get("accepted"):
            self._unconfirmed[int(ack.get("seq", self.seq))] = params   # kept until a merged version has it
            while len(self._unconfirmed) > _MAX_UNCONFIRMED:   # bounded: the oldest is durable upstream
                del self._unconfirmed[min(self._unconfirmed)]
            if self.coord_epoch is None:
                self.coord_epoch = ack.get("epoch")
            self.n_since_push = 0
        elif not isinstance(ack, Mapping):
            self._unconfirmed[self.seq] = params
            self.n_since_push = 0
        # an ignored push (a duplicate seq) did not count: its evidence is sent again next time
        return dict(ack) if isinstance(ack, Mapping) else ack

    def _push_once(self) -> tuple[Any, dict[str, np.ndarray]]:
        params, fisher, n = export_params(self.sona, self.merge_space)
        ref = self._reference(params)
        evidence = {k: params[k] - ref[k] for k in params if is_pooled(k) and k in ref} or None
        self.seq += 1
        self._persist_seq()
        frame = encode_delta(AgentUpdate(self.id, self.seq, params, weight=max(1, self.n_since_push),
                                         fisher=fisher, base_version=self.installed_version,
                                         evidence=evidence, metadata={"epoch": self.coord_epoch}),
                             trace=self.tel.inject())
        return call(self.parent, "submit", frame, timeout=60), {k: v.copy() for k, v in params.items()}

    def install(self, frame: Any) -> int:
        """Install a ``merged`` message (bytes or a list of ObjectRefs to one) if newer."""
        if isinstance(frame, list):
            for f in frame:
                self._pending_merged.append(f)
            return self._drain_merged(block=True)
        msg = decode_merged(frame)
        extra = msg["extra"]
        # the epoch of whoever merged this version (the root, in a hierarchy): not always the parent's
        epoch = extra.get("epoch")
        new_epoch = epoch is not None and self.merged_epoch is not None and epoch != self.merged_epoch
        if new_epoch:
            if epoch != self.coord_epoch:   # (a change of the parent's own epoch was reported at the push)
                self.warnings.warn(f"merging coordinator's epoch changed {self.merged_epoch} -> {epoch} (it lost "
                                   f"its state); installing its version {msg['version']} "
                                   f"(had {self.installed_version})")
        elif msg["version"] <= self.installed_version:
            return self.installed_version
        if epoch is not None:
            self.merged_epoch = epoch
        merged = msg["params"]
        current = self.params()
        if set(merged) != set(current):
            raise ValueError(f"agent {self.id}: merged state names differ from this agent's "
                             f"({sorted(set(merged) ^ set(current))[:4]}...)")
        seqs = extra.get("seqs")
        if isinstance(seqs, Mapping):
            mine = seqs.get(self.id)
            mine = int(mine) if isinstance(mine, int) and not isinstance(mine, bool) else None
        else:   # a coordinator that does not list seqs: the latest push is taken as merged
            mine = max(self._unconfirmed, default=None)
        if mine is not None and mine in self._unconfirmed:
            base: Mapping[str, np.ndarray] = self._unconfirmed[mine]
        elif mine is None or mine <= self._included_seq or mine < min(self._unconfirmed, default=mine + 1):
            base = self._installed_ref if self._installed_ref is not None and \
                set(self._installed_ref) == set(current) else router_prior(self.sona)
        else:   # a push this agent no longer remembers (it restarted from an older checkpoint)
            base = current
        shift = {k: merged[k] - base[k] for k in current if k in base}
        new = {k: current[k] + shift[k] if k in shift else merged[k] for k in current}
        import_params(self.sona, new, self.merge_space)
        if mine is not None:
            self._included_seq = max(self._included_seq, mine)
        self._unconfirmed = {j: {k: v + shift[k] if k in shift else merged[k] for k, v in st.items()}
                             for j, st in self._unconfirmed.items() if j > self._included_seq}
        self._installed_ref = {k: v.copy() for k, v in merged.items()}
        self.installed_version = msg["version"]
        return self.installed_version

    def _reference(self, current: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the agent last sent (its latest unconfirmed push) or installed (``current``
        minus it: the evidence not sent yet), by name; before any push or install, the
        router's prior for the ``router/`` names."""
        if self._unconfirmed:
            last = self._unconfirmed[max(self._unconfirmed)]
            if set(last) == set(current):
                return last
        if self._installed_ref is not None and set(self._installed_ref) == set(current):
            return self._installed_ref
        return {k: v for k, v in router_prior(self.sona).items() if k in current}

    def _drain_merged(self, *, block: bool) -> int:
        keep = []
        for ref in self._pending_merged:
            try:
                frame = _resolve(ref, block=block)
            except Exception as exc:  # a merge that failed (e.g. a peer died): skip it
                log.warning("agent %s: merged version unavailable: %s", self.id, exc)
                continue
            if frame is _NOT_READY:
                keep.append(ref)
            elif isinstance(frame, (bytes, bytearray)):   # None: a merge with nothing pending, dropped
                self.install(bytes(frame))
        self._pending_merged = keep
        return self.installed_version

    def mix(self, weights: Sequence[float] | None, frames: Sequence[Any], rule: str | None = None,
            rule_options: Mapping[str, Any] | None = None) -> int:
        """Gossip step: replace the state by the weighted sum (or ``rule`` merge) of ``frames``."""
        ups = [decode_delta(_resolve(f, block=True)) for f in frames]
        ws = list(weights) if weights is not None else [1.0 / len(ups)] * len(ups)
        names = sorted(ups[0].params)

        def mean(k: str) -> np.ndarray:
            return np.asarray(sum(w * u.params[k].astype(np.float64) for w, u in zip(ws, ups, strict=True)))

        # the router's evidence is averaged (a rule such as ties/dare would zero precisions)
        merged = {k: mean(k) for k in names if is_pooled(k)}
        if rule is None:
            merged.update({k: mean(k).astype(np.float32) for k in names if not is_pooled(k)})
        else:
            from swarm_sona.consensus.rules import get_rule

            rest = [k for k in names if not is_pooled(k)]
            if rest:
                merged.update(get_rule(rule, **dict(rule_options or {}))([u.only(rest) for u in ups]))
        import_params(self.sona, merged, self.merge_space)
        self.installed_version += 1
        return self.installed_version

    # ---- the hot path ------------------------------------------------------------------------
    def _embeddings(self, tasks: Sequence[Task]) -> np.ndarray:
        dim = self.config.dim
        E = np.empty((len(tasks), dim), np.float32)
        todo = []
        for i, t in enumerate(tasks):
            e = t.metadata.get("embedding") if t.metadata else None
            if e is None:
                todo.append(i)
                continue
            e = np.asarray(e, np.float32)
            if e.shape != (dim,):
                raise ValueError(f"task {t.id}: embedding has shape {e.shape}, expected ({dim},)")
            E[i] = e
        if todo:
            E[todo] = self.sona.embedder.embed([tasks[i].text for i in todo])
        return E

    def _isolated_embeddings(self, tasks: Sequence[Task], errors: dict[int, tuple[str, str]]) -> np.ndarray:
        """:meth:`_embeddings` for the batch; when that raises, task by task: a task whose
        embedding fails gets a zero vector and an ``embed`` error (it is not run)."""
        try:
            return self._embeddings(tasks)
        except Exception:
            E = np.zeros((len(tasks), self.config.dim), np.float32)
            for i, t in enumerate(tasks):
                try:
                    E[i] = self._embeddings([t])[0]
                except Exception as exc:
                    errors[i] = ("embed", f"{type(exc).__name__}: {exc}")
            return E

    def _isolated_retrieve(self, E: np.ndarray, ok: Sequence[int],
                           errors: dict[int, tuple[str, str]]) -> list[list[dict[str, Any]]]:
        """One retrieval call for the tasks in ``ok``; when it raises, one call per task (a task
        whose retrieval fails gets a ``retrieve`` error)."""
        hits: list[list[dict[str, Any]]] = [[] for _ in range(len(E))]
        if not ok:
            return hits
        try:
            for i, h in zip(ok, self._retrieve(E[list(ok)]), strict=True):
                hits[i] = h
        except Exception:
            for i in ok:
                try:
                    hits[i] = self._retrieve(E[i:i + 1])[0]
                except Exception as exc:
                    errors[i] = ("retrieve", f"{type(exc).__name__}: {exc}")
        return hits

    def _retrieve(self, E: np.ndarray) -> list[list[dict[str, Any]]]:
        if self.store is None or self.retrieve_k <= 0:
            return [[] for _ in range(len(E))]
        agents = None if self.shared_bank else [self.id]
        return call(self.store, "search_batch", E, self.retrieve_k, agents=agents, timeout=120)

    def run_batch(self, tasks: Sequence[Task | Mapping[str, Any]], *, push: bool = False,
                  merged: list[Any] | None = None, batch_id: int | None = None,
                  trace: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Run a batch of tasks (see module docs); returns per-task results and acknowledgements.

        The batch is processed in chunks of ``engine_batch`` tasks: one vectorised forward +
        routing call per chunk, the executor per task, then one instant-loop call
        (``sona.learn``) over the chunk's trajectories in task order.

        ``trace``: the driver's W3C trace context; the batch's spans (retrieve, and task with
        route/execute/learn per task) are its children and come back in ``"spans"`` (a task's
        route and learn spans cover the chunk call that routed / learned it, ``batch_n``
        tasks). Each result carries ``learn_s``: its share of its chunk's instant-loop steps
        (the chunk's ``sona.learn`` call minus the background cycles that ran inside it), and
        ``retrieve_s`` (its batch's retrieval call, ``batch_n`` tasks). The batch result
        carries ``retrieve_s`` and ``background_s`` (the wall time of each background cycle
        the batch triggered).
        """
        t0 = time.perf_counter()
        self._background_s.clear()   # cycles of this batch only (not those of learn / consolidate calls)
        if merged:
            self._pending_merged.extend(merged)
        if self._pending_merged:
            self._drain_merged(block=False)
        items: list[Task] = [t if isinstance(t, Task) else Task.from_dict(dict(t)) for t in tasks]
        tasks = items
        tel, clock, stage = self.tel, time.perf_counter, self.stage_s
        t_e = clock()
        errors: dict[int, tuple[str, str]] = {}   # task index -> (stage, reason): isolated, not fatal
        E = self._isolated_embeddings(tasks, errors)
        t_r = clock()
        stage["embed"] += t_r - t_e
        with tel.span("retrieve", parent=trace, attributes={"agent": self.id, "tasks": len(tasks)}):
            hits = self._isolated_retrieve(E, [i for i in range(len(tasks)) if i not in errors], errors)
        retrieve_s = clock() - t_r
        stage["retrieve"] += retrieve_s
        n = len(tasks)
        common = {"retrieve_s": retrieve_s, "batch_id": batch_id, "batch_n": n}
        results: list[dict[str, Any]] = []
        to_store: list[Trajectory] = []
        ok = [i for i in range(n) if i not in errors]
        c = max(1, len(ok)) if self.concurrent else self.engine_batch   # concurrent: the batch is one chunk
        for s in range(0, len(ok), c):
            idx = ok[s:s + c]
            self._run_chunk([tasks[i] for i in idx], E[idx], [hits[i] for i in idx], trace, common, results,
                            to_store)
        for r in results:
            if "error_kind" in r:
                self.error_kinds[r["error_kind"]] = self.error_kinds.get(r["error_kind"], 0) + 1
        for i, (kind, reason) in errors.items():
            t = tasks[i]
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            results.append({"task_id": t.id, "agent_id": self.id, "model": None, "success": False, "reward": 0.0,
                            "cost_usd": 0.0, "patterns": 0, "task_type": t.task_type, "learn_s": 0.0,
                            "error": reason[:500], "error_kind": kind, **common})
        acked: list[str] = []
        t_s = clock()
        if to_store and self.store is not None:
            try:
                acked = list(call(self.store, "store_batch", [tr.to_dict() for tr in to_store], timeout=120))
            except Exception as exc:   # the batch's work stands; its patterns are not acknowledged
                self.error_kinds["store"] = self.error_kinds.get("store", 0) + 1
                self.warnings.warn(f"storing {len(to_store)} pattern(s) failed, none acknowledged: "
                                   f"{type(exc).__name__}: {exc}")
            self.acked_patterns += len(acked)
        t_p = clock()
        stage["store"] += t_p - t_s
        self.tasks_done += n
        self.successes += sum(1 for r in results if r["success"])
        self.n_since_push += n
        self.batches += 1
        pushed = None
        if push:
            pushed = self.push()
        t_c = clock()
        self._since_ckpt += n
        if self.dir is not None and self._since_ckpt >= self.checkpoint_every:
            self.checkpoint()
        t_end = clock()
        stage["push"] += t_c - t_p
        stage["checkpoint"] += t_end - t_c
        stage["batch"] += t_end - t0
        self._t_work += t_end - t0
        return {"agent_id": self.id, "batch_id": batch_id, "results": results, "acked": acked,
                "version": self.installed_version, "pushed": pushed, "pid": os.getpid(),
                "retrieve_s": retrieve_s, "background_s": list(self._background_s),
                "warnings": self.warnings.drain(), "spans": tel.relay_drain() if tel.tracing else []}

    def _run_chunk(self, tasks: Sequence[Task], E: np.ndarray, hits: Sequence[list[dict[str, Any]]],
                   trace: Mapping[str, str] | None, common: dict[str, Any], results: list[dict[str, Any]],
                   to_store: list[Trajectory]) -> None:
        """Route the chunk (in ``engine_batch`` calls), execute it (per task, or concurrently
        through ``run_many``), learn its trajectories in input order in one call."""
        sona, executor, agent_id = self.sona, self.executor, self.id
        clock, stage = time.perf_counter, self.stage_s
        spans = _ChunkSpans(self.tel, trace, tasks, agent_id) if self.tel.tracing else None
        try:
            if spans:
                spans.begin("route")
            t_a = clock()
            eb = self.engine_batch
            decisions = [d for s in range(0, len(tasks), eb)
                         for d in sona.route_batch([t.text for t in tasks[s:s + eb]], embeddings=E[s:s + eb])]
            models = [d["model"] if isinstance(d, Mapping) else str(d) for d in decisions]
            t_b = clock()
            if spans:
                spans.end()
            outs, trajs, failed, infra = [], [], [], []
            ran: Sequence[Any] = self._run_many(tasks, models, hits, spans) if self.concurrent else ()
            for i, (t, e, pats, model) in enumerate(zip(tasks, E, hits, models, strict=True)):
                try:
                    if self.concurrent:
                        out = ran[i]
                        if isinstance(out, BaseException):
                            raise out
                    elif spans:
                        with spans.execute(i, model):
                            out = executor(t, model, pats)
                    else:
                        out = executor(t, model, pats)
                    if getattr(out, "error_kind", None):   # the endpoint failed, not the model: nothing learned
                        infra.append((t, model, out))
                        continue
                    traj = Trajectory(task=t.text, embedding=e, model=model, reward=out.reward, success=out.success,
                                      cost_usd=out.cost_usd, latency_s=out.latency_s, agent_id=agent_id,
                                      task_type=t.task_type, output=out.output, id=t.id)
                except Exception as exc:   # this task fails alone; the rest of the batch goes on
                    kind = "hook" if type(exc).__name__.startswith("Hook") else "execute"
                    failed.append((t, model, kind, f"{type(exc).__name__}: {exc}"))
                    continue
                outs.append(out)
                trajs.append(traj)
            gone = {id(f[0]) for f in failed} | {id(x[0]) for x in infra}
            keep = [i for i, t in enumerate(tasks) if id(t) not in gone]
            tasks, hits = [tasks[i] for i in keep], [hits[i] for i in keep]
            if spans:
                spans.begin("learn")
            n_bg = len(self._background_s)
            t_l = clock()
            res: Any = None
            try:
                res = sona.learn(trajs) if trajs else None
            except Exception:   # one trajectory at a time: the one that raises fails alone
                for j in range(len(trajs) - 1, -1, -1):
                    try:
                        sona.learn([trajs[j]])
                    except Exception as exc:
                        failed.append((tasks[j], trajs[j].model, "learn", f"{type(exc).__name__}: {exc}"))
                        del tasks[j], hits[j], outs[j], trajs[j]
            t_d = clock()
            bg = sum(self._background_s[n_bg:])   # background cycles that ran inside this call
            learn_s = max(0.0, t_d - t_l - bg) / max(1, len(trajs))
            stage["route"] += t_b - t_a
            stage["execute"] += t_l - t_b
            stage["learn"] += t_d - t_l - bg
            stage["background"] += bg
            if spans:
                at = res.get("background_at", ()) if isinstance(res, Mapping) else ()
                spans.end(flag=[int(i) for i in at] if isinstance(at, (list, tuple)) else ())
        finally:
            if spans:
                spans.close()
        min_r, novelty = self.store_min_reward, self.store_novelty
        for t, pats, out, traj in zip(tasks, hits, outs, trajs, strict=True):
            if out.reward >= min_r and (not pats or pats[0].get("score", 0.0) < novelty):
                to_store.append(traj)
            r = {"task_id": t.id, "agent_id": agent_id, "model": traj.model, "success": out.success,
                 "reward": out.reward, "cost_usd": out.cost_usd, "patterns": len(pats), "task_type": t.task_type,
                 "learn_s": learn_s, "latency_s": out.latency_s, **common}
            if out.metadata and out.metadata.get("hook_errors"):   # agent_defs.HookedExecutor
                r["hook_errors"] = list(out.metadata["hook_errors"])
            results.append(r)
        for t, model, kind, reason in failed:
            results.append({"task_id": t.id, "agent_id": agent_id, "model": model, "success": False, "reward": 0.0,
                            "cost_usd": 0.0, "patterns": 0, "task_type": t.task_type, "learn_s": 0.0,
                            "error": reason[:500], "error_kind": kind, **common})
        for t, model, out in infra:
            meta = out.metadata or {}
            results.append({"task_id": t.id, "agent_id": agent_id, "model": model, "success": False, "reward": 0.0,
                            "cost_usd": float(out.cost_usd), "patterns": 0, "task_type": t.task_type,
                            "learn_s": 0.0, "latency_s": float(out.latency_s),
                            "error": str(meta.get("error") or out.error_kind)[:500],
                            "error_kind": str(out.error_kind), "infra": True, **common})

    def _run_many(self, tasks: Sequence[Task], models: Sequence[str], hits: Sequence[list[dict[str, Any]]],
                  spans: _ChunkSpans | None) -> list[Any]:
        """The chunk's outcomes through the executor's ``run_many`` (in input order; slices of at
        most ``max_concurrency`` when the executor has no cap of its own). A slice whose call
        raises gives that exception as the outcome of each of its tasks."""
        if spans:
            spans.begin("execute")
        try:
            return self._run_sharded(tasks, models, hits)
        finally:
            if spans:
                spans.end()

    def _run_sharded(self, tasks: Sequence[Task], models: Sequence[str],
                     hits: Sequence[list[dict[str, Any]]]) -> list[Any]:
        k = len(self._shards)
        if k == 1:
            return self._run_slices(self._shards[0], tasks, models, hits)
        if self._threads is None:
            from concurrent.futures import ThreadPoolExecutor

            self._threads = ThreadPoolExecutor(k, thread_name_prefix=f"agent-{self.id}-io")
        parts = list(self._threads.map(lambda j: self._run_slices(self._shards[j], tasks[j::k], models[j::k],
                                                                 hits[j::k]), range(k)))
        out: list[Any] = [None] * len(tasks)
        for j, part in enumerate(parts):   # task i went to shard i % k: back into input order
            out[j::k] = part
        return out

    def _run_slices(self, executor: Any, tasks: Sequence[Task], models: Sequence[str],
                    hits: Sequence[list[dict[str, Any]]]) -> list[Any]:
        step = self._slice or max(1, len(tasks))
        out: list[Any] = []
        for s in range(0, len(tasks), step):
            sl = slice(s, s + step)
            try:
                got = list(executor.run_many(list(tasks[sl]), list(models[sl]), [list(h) for h in hits[sl]]))
                if len(got) != len(tasks[sl]):
                    raise RuntimeError(f"run_many returned {len(got)} outcomes for {len(tasks[sl])} tasks")
            except Exception as exc:
                got = [exc] * len(tasks[sl])
            out.extend(got)
        return out

    def learn(self, trajectories: Sequence[Trajectory | Mapping[str, Any]]) -> dict[str, Any]:
        """Learn from externally produced trajectories (``learn_from_swarm_execution``)."""
        trajs = [t if isinstance(t, Trajectory) else Trajectory.from_dict(dict(t)) for t in trajectories]
        res = self.sona.learn(trajs)
        self.n_since_push += len(trajs)
        return dict(res) if isinstance(res, Mapping) else {"learned": len(trajs)}

    def consolidate(self) -> dict[str, Any]:
        """Run the engine's background loop now (BaseLoRA + EWC++ consolidation)."""
        with self.tel.span("background", attributes={"agent": self.id}):
            res = self.sona.background(force=True)
        return dict(res) if isinstance(res, Mapping) else {}

    def stats(self) -> dict[str, Any]:
        """Counters, versions, restore info and the engine's own stats."""
        try:
            eng = self.sona.stats()
        except Exception as exc:  # stats must never take an agent down
            eng = {"error": str(exc)}
        ex_stats: dict[str, Any] | None = None
        for shard in self._shards:   # e.g. OpenAIChatExecutor: calls, retries, 429s, tokens (summed over copies)
            fn = getattr(shard, "stats", None)
            if not callable(fn):
                break
            try:
                got = fn()
                d = dataclasses.asdict(got) if dataclasses.is_dataclass(got) and not isinstance(got, type) \
                    else dict(got) if isinstance(got, Mapping) else None
            except Exception as exc:
                ex_stats = {"error": f"{type(exc).__name__}: {exc}"}
                break
            if d is None:
                break
            ex_stats = d if ex_stats is None else {
                k: ({**ex_stats[k], **{e: ex_stats[k].get(e, 0) + n for e, n in v.items()}} if isinstance(v, dict)
                    else ex_stats[k] + v if isinstance(v, (int, float)) and k in ex_stats else v)
                for k, v in d.items()}
        return {"id": self.id, "type": self.type, "tasks": self.tasks_done, "successes": self.successes,
                "success_rate": self.successes / self.tasks_done if self.tasks_done else 0.0,
                "batches": self.batches, "seq": self.seq, "version": self.installed_version,
                "acked_patterns": self.acked_patterns, "restored_from": self.restored_from,
                "error_kinds": dict(self.error_kinds),
                "coord_epoch": self.coord_epoch, "unconfirmed_pushes": sorted(self._unconfirmed),
                "pending_merged": len(self._pending_merged), "warnings": self.warnings.recent(),
                "push_persist_ms_p50": float(np.median(self.push_persist_ms)) if self.push_persist_ms else None,
                "restored_version": self.restored_version, "busy_s": self._t_work, "pid": os.getpid(),
                "cpu_s": time.process_time(), "stage_s": dict(self.stage_s), "engine": eng, "executor": ex_stats}

    def ping(self) -> int:
        """Liveness probe; returns the process id."""
        return os.getpid()
