"""AgentActor: one swarm agent owning one SONA engine; runs batches of tasks and learns from each.

A plain class (wrapped with ``ray.remote`` at creation), so it can be tested in-process.
One call carries a whole batch (Ray's ~1 ms per call is amortised). Per batch:

1. install a newer merged adapter if one has arrived (non-blocking check);
2. run the batch through the task pipeline, embed -> retrieve -> route -> execute -> learn ->
   store (:mod:`~swarm_sona.runtime.actors.agent_pipeline`: one embedding call, one retrieval
   call, vectorised routing and learning in chunks of ``engine_batch``, one store call whose
   reply is the acknowledgement; a task that fails in a stage fails alone);
3. push when asked, and checkpoint every ``checkpoint_every`` tasks (engine + agent state,
   atomically: :mod:`~swarm_sona.runtime.actors.agent_state`).

Concurrent executors. When the executor's *class* defines ``run_many(tasks, models,
patterns)`` (e.g. :class:`~swarm_sona.executors.openai_chat.OpenAIChatExecutor`), the batch's
calls run through it concurrently, and ``max_concurrency`` (the agent's share of a swarm-wide
cap) bounds the calls this agent has outstanding, split over private copies of at most
``pool_size`` (16) calls each (:mod:`~swarm_sona.runtime.actors.executor_shards`). The
synchronous protocol (one call per task) is used for every other executor.

Infrastructure failures are not task failures: an outcome with ``error_kind`` set (auth,
rate_limit, server, timeout, network, request, response: the endpoint failed, not the model)
becomes an error result with that ``error_kind`` and its message in ``error``; it records no
trajectory, so neither the engine nor the router learns from it, and it is never stored.

Consensus (:mod:`~swarm_sona.runtime.actors.agent_consensus`): :meth:`AgentActor.push` sends the
adapter state + Fisher + the router evidence not sent yet as a versioned ``delta`` message to
the parent coordinator; :meth:`AgentActor.install` takes a ``merged`` message and installs
``merged + (current - base)``; a push stays unconfirmed until a merged version lists it; a
coordinator epoch change is warned about and answered with a re-push. :meth:`AgentActor.mix` is
a gossip step. On (re)start the agent restores its last checkpoint and then the parent's
current merged version if newer. Warnings of the agent come back to the driver in each batch
result (``"warnings"``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.bank import ReasoningBank
from swarm_sona.consensus.messages import decode_merged, encode_delta
from swarm_sona.consensus.parameter_space import export_params, import_params, router_prior
from swarm_sona.consensus.shapes import own_variants
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core import telemetry as telemetry_mod
from swarm_sona.core.executor import Task
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.sona import SONA
from swarm_sona.routing.router import LLMRouter
from swarm_sona.runtime.actors.agent_consensus import ConsensusLedger, gossip_mix
from swarm_sona.runtime.actors.agent_pipeline import PipelineSettings, TaskPipeline
from swarm_sona.runtime.actors.agent_state import AgentCounters, AgentFiles
from swarm_sona.runtime.actors.bank import PatternStore
from swarm_sona.runtime.actors.calls import WarningLog, as_peer, call, node_id
from swarm_sona.runtime.actors.executor_shards import ExecutorShards

__all__ = ["AgentActor"]

log = logging.getLogger(__name__)


class _BackgroundClock:
    """Engine hook: appends each background cycle's wall time (seconds) to ``out``."""

    def __init__(self, out: list[float]) -> None:
        self.out = out

    def after_background(self, sona: Any, result: Mapping[str, Any]) -> None:
        ms = result.get("duration_ms")
        if ms is not None:
            self.out.append(float(ms) / 1e3)


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

    Example:
        >>> from swarm_sona.executors.simulated import SimulatedExecutor
        >>> ex = SimulatedExecutor(seed=0)
        >>> agent = AgentActor("a", {"dim": 64, "llm_router": {"models": ex.model_specs()}}, ex)
        >>> out = agent.run_batch(ex.tasks(8), batch_id=0)
        >>> len(out["results"]), agent.stats()["tasks"]
        (8, 8)
    """

    def __init__(self, agent_id: str, sona_config: Any, executor: Any, *, agent_type: str = "worker",
                 store: Any = None, bank_config: Mapping[str, Any] | None = None, parent: Any = None,
                 shared_bank: bool = True, retrieve_k: int = 1, store_min_reward: float = 0.5,
                 store_novelty: float = 0.9, checkpoint_dir: str | None = None, checkpoint_every: int = 2048,
                 merge_space: str = "factor", seed: int = 0, telemetry: Mapping[str, Any] | None = None,
                 engine_batch: int = 64, namespace: str | None = None, max_concurrency: int | None = None,
                 pool_size: int = 16) -> None:
        self.id = agent_id
        self.type = agent_type
        self.config = sona_config if isinstance(sona_config, SONAConfig) else SONAConfig.from_dict(sona_config)
        if store is None and bank_config is not None:  # a Qdrant server: every agent opens it directly
            store = PatternStore(ReasoningBank(bank_config, embedder=self.config.embedder_name))
        self.store = as_peer(store, namespace)
        self.parent = as_peer(parent, namespace)
        self.checkpoint_every = max(1, int(checkpoint_every))
        settings = PipelineSettings(agent_id, shared_bank=bool(shared_bank), retrieve_k=int(retrieve_k),
                                    store_min_reward=float(store_min_reward), store_novelty=float(store_novelty),
                                    engine_batch=engine_batch)
        self.shards = ExecutorShards(executor, max_concurrency=max_concurrency, pool_size=pool_size, name=agent_id)
        self.max_concurrency = max_concurrency
        self.executor = self.shards.executor
        self.merge_space = merge_space
        self.seed = seed
        self.files = AgentFiles.for_agent(checkpoint_dir, agent_id) if checkpoint_dir else None
        self.counters = AgentCounters()
        self.n_since_push = 0
        self.restored_from: str | None = None
        self.restored_version: int | None = None
        self.warnings = WarningLog(log, f"agent {agent_id}")
        self.ledger = ConsensusLedger(agent_id, self.warnings)   # push / merge bookkeeping
        self.error_kinds: dict[str, int] = {}   # tasks that failed, by stage (embed, retrieve, execute, ...)
        self._t_work = 0.0
        self._since_ckpt = 0
        # telemetry: spans are relayed back to the driver in each batch result (swarm_sona.core.telemetry)
        self.tel = telemetry_mod.configure(telemetry, relay=True, attributes={
            "swarm_sona.role": "agent", "swarm_sona.agent": agent_id}) if telemetry else telemetry_mod.current()
        self.sona = SONA(self.config, router=self._router())
        if self.files is not None:
            self.files.prepare()
            self._restore()
        self._background_s: list[float] = []   # background cycles since the last batch result
        self.sona.add_hook(_BackgroundClock(self._background_s))
        self.pipeline = TaskPipeline(settings, self.shards, self.store, tel=self.tel, background_s=self._background_s,
                                     warnings=self.warnings, error_kinds=self.error_kinds)
        # wall seconds per stage of run_batch (execute: executor + trajectory records; batch: whole calls)
        self.stage_s = self.pipeline.stage_s
        if self.parent is not None:
            self._catch_up()

    def _router(self) -> Any:
        if not self.config.llm_router.models:
            return None
        return LLMRouter(self.config.llm_router.replace(seed=self.config.llm_router.seed + self.seed), dim=self.config.dim)

    # ---- the bookkeeping's state, by the names the tests and stats use ---------------------------
    @property
    def seq(self) -> int:
        """The push sequence number (monotone across restarts)."""
        return self.ledger.seq

    @property
    def installed_version(self) -> int:
        """The merged version installed last."""
        return self.ledger.installed_version

    @property
    def coord_epoch(self) -> str | None:
        """The parent coordinator's epoch (from its acks)."""
        return self.ledger.coord_epoch

    @property
    def push_persist_ms(self) -> list[float]:
        """Milliseconds each push record took to persist (the last 1000)."""
        return self.ledger.push_persist_ms

    @property
    def tasks_done(self) -> int:
        """Tasks run (restored from the checkpoint)."""
        return self.counters.tasks_done

    # ---- checkpoints -----------------------------------------------------------------------
    def _restore(self) -> None:
        assert self.files is not None
        got = self.files.restore(self.id, self.ledger, self._router)
        if got is None:
            return
        self.sona, self.counters = got.sona, got.counters
        self.restored_from = got.path
        self.restored_version = self.ledger.installed_version
        if got.warning:
            self.warnings.warn(got.warning)

    def checkpoint(self) -> str | None:
        """Save the engine and the agent's counters atomically; returns the meta path."""
        if self.files is None:
            return None
        self._since_ckpt = 0
        return self.files.save(self.id, self.sona, self.counters, self.ledger)

    def _periodic_checkpoint(self) -> None:
        """The checkpoint every ``checkpoint_every`` tasks: a write that fails (disk full) keeps
        the previous checkpoint and the agent running; the warning names the file and rides
        back to the driver with the batch (the next period tries again)."""
        files = self.files
        if files is None:
            return
        try:
            self.checkpoint()
        except OSError as exc:
            self.warnings.warn(f"checkpoint not written, the previous one is kept: "
                               f"{exc.strerror or exc}: {exc.filename or files.dir}")

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
                self.ledger.new_epoch(ack.get("epoch"))   # the coordinator lost its state: send it all again
                ack, params = self._push_once()
        if self.ledger.record_ack(ack, params):
            self.n_since_push = 0
        return dict(ack) if isinstance(ack, Mapping) else ack

    def _push_once(self) -> tuple[Any, dict[str, np.ndarray]]:
        params, fisher, n = export_params(self.sona, self.merge_space)
        led = self.ledger
        evidence = led.evidence(params, self._prior)
        led.seq += 1
        if self.files is not None:
            self.files.persist_seq(led)
        frame = encode_delta(AgentUpdate(self.id, led.seq, params, weight=max(1, self.n_since_push),
                                         fisher=fisher, base_version=led.installed_version,
                                         evidence=evidence, metadata={"epoch": led.coord_epoch}),
                             trace=self.tel.inject())
        return call(self.parent, "submit", frame, timeout=60), {k: v.copy() for k, v in params.items()}

    def _prior(self) -> dict[str, np.ndarray]:
        return router_prior(self.sona)

    def install(self, frame: Any) -> int:
        """Install a ``merged`` message (bytes or a list of ObjectRefs to one) if newer."""
        if isinstance(frame, list):
            self.ledger.pending_merged.extend(frame)
            return self.ledger.drain(self.install, block=True)
        msg, current = decode_merged(frame), self.params()
        # a merge of agents of different LoRA rank carries each rank's adapters: take this agent's
        msg["params"] = own_variants(msg["params"], {k: np.shape(v) for k, v in current.items()})
        plan = self.ledger.plan_install(msg, current, self._prior)
        if plan is not None:
            import_params(self.sona, plan.state, self.merge_space)
            self.ledger.commit(plan)
        return self.installed_version

    def mix(self, weights: Sequence[float] | None, frames: Sequence[Any], rule: str | None = None,
            rule_options: Mapping[str, Any] | None = None) -> int:
        """Gossip step: replace the state by the weighted sum (or ``rule`` merge) of ``frames``."""
        import_params(self.sona, gossip_mix(weights, frames, rule, rule_options), self.merge_space)
        self.ledger.installed_version += 1
        return self.installed_version

    # ---- the hot path ------------------------------------------------------------------------
    def run_batch(self, tasks: Sequence[Task | Mapping[str, Any]], *, push: bool = False,
                  merged: list[Any] | None = None, batch_id: int | None = None,
                  trace: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Run a batch of tasks (see module docs); returns per-task results and acknowledgements.

        ``trace``: the driver's W3C trace context; the batch's spans (retrieve, and task with
        route/execute/learn per task) are its children and come back in ``"spans"`` (a task's
        route and learn spans cover the chunk call that routed / learned it, ``batch_n``
        tasks). Each result carries ``learn_s`` and ``retrieve_s``
        (:meth:`~swarm_sona.runtime.actors.agent_pipeline.TaskPipeline.run`). The batch result
        carries ``retrieve_s`` and ``background_s`` (the wall time of each background cycle
        the batch triggered).
        """
        t0 = time.perf_counter()
        self._background_s.clear()   # cycles of this batch only (not those of learn / consolidate calls)
        if merged:
            self.ledger.pending_merged.extend(merged)
        if self.ledger.pending_merged:
            self.ledger.drain(self.install, block=False)
        items = [t if isinstance(t, Task) else Task.from_dict(dict(t)) for t in tasks]
        out = self.pipeline.run(self.sona, items, trace=trace, batch_id=batch_id)
        n, c, stage, clock = len(items), self.counters, self.stage_s, time.perf_counter
        c.acked_patterns += len(out.acked)
        t_p = clock()
        c.tasks_done += n
        c.successes += sum(1 for r in out.results if r["success"])
        self.n_since_push += n
        c.batches += 1
        pushed = self.push() if push else None
        t_c = clock()
        self._since_ckpt += n
        if self.files is not None and self._since_ckpt >= self.checkpoint_every:
            self._periodic_checkpoint()
        t_end = clock()
        stage["push"] += t_c - t_p
        stage["checkpoint"] += t_end - t_c
        stage["batch"] += t_end - t0
        self._t_work += t_end - t0
        return {"agent_id": self.id, "batch_id": batch_id, "results": out.results, "acked": out.acked,
                "version": self.installed_version, "pushed": pushed, "pid": os.getpid(),
                "retrieve_s": out.retrieve_s, "background_s": list(self._background_s),
                "warnings": self.warnings.drain(), "spans": self.tel.relay_drain() if self.tel.tracing else []}

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
        c, led = self.counters, self.ledger
        return {"id": self.id, "type": self.type, "tasks": c.tasks_done, "successes": c.successes,
                "success_rate": c.successes / c.tasks_done if c.tasks_done else 0.0,
                "batches": c.batches, "seq": led.seq, "version": led.installed_version,
                "acked_patterns": c.acked_patterns, "restored_from": self.restored_from,
                "error_kinds": dict(self.error_kinds),
                "coord_epoch": led.coord_epoch, "unconfirmed_pushes": sorted(led.unconfirmed),
                "pending_merged": len(led.pending_merged), "warnings": self.warnings.recent(),
                "push_persist_ms_p50": float(np.median(led.push_persist_ms)) if led.push_persist_ms else None,
                "restored_version": self.restored_version, "busy_s": self._t_work, "pid": os.getpid(),
                "node_id": node_id(),
                "cpu_s": time.process_time(), "stage_s": dict(self.stage_s), "engine": eng,
                "executor": self.shards.stats()}

    def close(self) -> list[str]:
        """Close the executor (its connection pools, the banks its hooks opened: an embedded
        bank records its manifest) before the swarm stops this actor; returns the errors
        (logged here too). Checkpointing is not affected."""
        errors = self.shards.close()
        for e in errors:
            log.warning("agent %s: executor close failed: %s", self.id, e)
        return errors

    def ping(self) -> int:
        """Liveness probe; returns the process id."""
        return os.getpid()
