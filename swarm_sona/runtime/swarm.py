"""SwarmSONA: a swarm of learning agents on Ray, for driver scripts.

Build it from a spec (camelCase or snake_case keys, see :class:`~swarm_sona.runtime.config.SwarmConfig`)::

    swarm = SwarmSONA(topology="hierarchical",
                      agents=[{"id": "queen-1", "type": "coordinator", "loraRank": 16},
                              {"id": "worker-1", "type": "coder", "loraRank": 8},
                              {"id": "worker-2", "type": "tester", "loraRank": 8}],
                      sharedReasoningBank=True, consensusLearning=True,
                      executor=SimulatedExecutor(seed=0))
    for result in swarm.run(tasks, batch_size=256):
        ...
    swarm.shutdown()

What it starts (:mod:`~swarm_sona.runtime.launch`): one agent actor per worker, one coordinator
per coordinator (star: one; hierarchical: one per queen, the first is the root; ring/mesh:
none) and one bank actor owning the embedded bank (with a Qdrant server URL the agents open the
server directly); all restart on failure and restore from their last checkpoint plus the
coordinator's current version. Ray: ``address`` / ``RAY_ADDRESS`` when given, else a local Ray
bound to 127.0.0.1 without dashboard (stopped by :meth:`SwarmSONA.shutdown`).

The parts it delegates to: :mod:`~swarm_sona.runtime.dispatch` (batches to the least-loaded
agent, at most ``max_in_flight`` per agent, a batch lost with a dead agent retried once
elsewhere), :mod:`~swarm_sona.runtime.sync` (every ``sync_every`` tasks per agent the topology's
sync plan, without stopping dispatch; merged versions ride along with each agent's next batch),
:mod:`~swarm_sona.runtime.tally` (counters, metrics, acknowledged patterns of a run),
:mod:`~swarm_sona.runtime.infra` (``infra_error_limit`` infrastructure failures in a row stop
dispatching; what is in flight is still collected; :attr:`SwarmSONA.infra_stop` names the cause)
and :mod:`~swarm_sona.runtime.stats`. ``max_concurrency`` caps the executor calls outstanding in
the whole swarm (per-agent shares, see :class:`~swarm_sona.runtime.actors.agent.AgentActor`).

Example:
    >>> from swarm_sona.runtime.swarm import SwarmSONA                          # doctest: +SKIP
    >>> from swarm_sona.executors.simulated import SimulatedExecutor     # doctest: +SKIP
    >>> ex = SimulatedExecutor(seed=0)                                   # doctest: +SKIP
    >>> with SwarmSONA(agents=4, executor=ex) as swarm:                  # doctest: +SKIP
    ...     results = list(swarm.run(ex.tasks(2000), batch_size=256))
    ...     swarm.stats()["success_rate"] > 0
    True
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from swarm_sona.bank import ReasoningBank
from swarm_sona.core import codec, storage
from swarm_sona.core import telemetry as telemetry_mod
from swarm_sona.core.config import ConfigError
from swarm_sona.core.executor import Task
from swarm_sona.core.progress import Progress
from swarm_sona.embedding.embedders import get_embedder
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.config import SwarmConfig
from swarm_sona.runtime.dispatch import Batch, DispatchPool
from swarm_sona.runtime.feedback import consensus_trajectories, parse_swarm_execution
from swarm_sona.runtime.infra import InfraGuard, InfraStop
from swarm_sona.runtime.launch import LaunchPlan, agent_shares, engine_config, launch, topology_for
from swarm_sona.runtime.listeners import url_ports
from swarm_sona.runtime.metering import RunMeter
from swarm_sona.runtime.results import ConsolidateResult, SwarmExecutionResult, SwarmStats, SyncSummary, TaskResult
from swarm_sona.runtime.startup import check_loopback, start_ray, stop_ray
from swarm_sona.runtime.stats import StatsRequest, drain_coordinator_spans, drain_coordinator_warnings
from swarm_sona.runtime.sync import SyncRunner
from swarm_sona.runtime.tally import AckedPatterns, RunTally

__all__ = ["SwarmSONA", "SwarmError"]

log = logging.getLogger(__name__)
_MANIFEST = "swarm.msgpack"


class SwarmError(RuntimeError):
    """The swarm cannot do what was asked (no live agent left, not started, shut down)."""


def _as_task(t: Task | Mapping[str, Any] | str) -> Task:
    return t if isinstance(t, Task) else Task(text=t) if isinstance(t, str) else Task.from_dict(dict(t))


def _copy_entries(src: Path, dest: Path, skip: Callable[[str], bool]) -> None:
    """Copy every file and directory of ``src`` into ``dest`` (merging directories), but those
    whose name ``skip`` rejects."""
    for item in src.iterdir():
        if skip(item.name):
            continue
        if item.is_dir():
            shutil.copytree(item, dest / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dest / item.name)


class SwarmSONA:
    """A swarm of SONA agents on Ray (see module docs).

    Args:
        config: a :class:`SwarmConfig`, a mapping, a spec file path, or None.
        executor: ``(task, model, patterns) -> Outcome`` shipped to every agent (default: a
            :class:`~swarm_sona.executors.simulated.SimulatedExecutor` seeded with ``seed``).
        router: router settings for every agent (``LLMRouterConfig``, a mapping, or a list of
            model specs); default: the executor's ``model_specs()`` when it has one.
        bank: ReasoningBank settings (``ReasoningBankConfig``, mapping, a directory path, or a
            ``http(s)://`` Qdrant server URL). Default: an embedded bank in the checkpoint dir.
        agent_executors: agent id -> executor for that agent instead of ``executor`` (e.g. an
            :class:`~swarm_sona.app.agent_defs.HookedExecutor` running the agent's hooks).
        telemetry: the :class:`~swarm_sona.core.telemetry.Telemetry` to report into (default:
            ``telemetry.current()``); with tracing on, the actors relay their spans to it.
        engine_batch: tasks an agent routes in one vectorised engine call before their
            instant-loop steps (see :class:`~swarm_sona.runtime.actors.agent.AgentActor`; 1 = strictly
            route, execute, learn one task at a time).
        max_concurrency: executor calls outstanding in the whole swarm (None = the config's
            ``max_concurrency``, whose None means each agent's executor's own cap); split into
            per-agent shares (:func:`~swarm_sona.runtime.launch.agent_shares`).
        infra_error_limit: infrastructure failures in a row that stop a run (0 = never; None =
            the config's ``infra_error_limit``, default 3).
        **spec: any SwarmConfig key, camelCase or snake_case (``topology``, ``agents`` (a list
            of agent specs or a count), ``sharedReasoningBank``, ``consensusLearning``...).
    """

    def __init__(self, config: SwarmConfig | Mapping[str, Any] | str | None = None, *, executor: Any = None,
                 router: Any = None, bank: Any = None, agent_executors: Mapping[str, Any] | None = None,
                 telemetry: Any = None, engine_batch: int = 64, max_concurrency: int | None = None,
                 infra_error_limit: int | None = None, **spec: Any) -> None:
        self.config = SwarmConfig.from_spec(config, **spec)
        cfg = self.config
        if executor is None:
            executor = SimulatedExecutor(seed=cfg.seed)
        if not callable(executor):
            raise ConfigError(f"executor must be callable (task, model, patterns) -> Outcome, got {executor!r}")
        self.executor = executor
        if isinstance(engine_batch, bool) or not isinstance(engine_batch, int) or engine_batch < 1:
            raise ConfigError(f"engine_batch must be an integer >= 1, got {engine_batch!r}")
        self.engine_batch = engine_batch
        # keyword arguments win over the spec's swarm.maxConcurrency / swarm.infraErrorLimit
        max_concurrency = cfg.max_concurrency if max_concurrency is None else max_concurrency
        infra_error_limit = cfg.infra_error_limit if infra_error_limit is None else infra_error_limit
        self.shares = agent_shares(max_concurrency, [a.id for a in cfg.workers])
        self.max_concurrency = max_concurrency
        if isinstance(infra_error_limit, bool) or not isinstance(infra_error_limit, int) or infra_error_limit < 0:
            raise ConfigError(f"infra_error_limit must be an integer >= 0 (0 = never stop), got {infra_error_limit!r}")
        self.infra_error_limit = infra_error_limit
        self.infra_stop: InfraStop | None = None   # set when a run stopped on repeated infrastructure failures
        self.agent_executors = dict(agent_executors or {})   # per-agent executors (e.g. with hooks)
        unknown = set(self.agent_executors) - {a.id for a in cfg.workers}
        if unknown:
            raise ConfigError(f"agent_executors: no worker agent(s) {sorted(unknown)}")
        # the driver's telemetry (default: this process's); actors relay their spans to it
        self._tel = telemetry if telemetry is not None else telemetry_mod.current()
        self.meter = RunMeter(self._tel)   # the domain metrics of every run and stats snapshot
        self.sona_config = engine_config(cfg.sona, executor=executor, router=router, bank=bank, seed=cfg.seed)
        self._owns_ray = False
        self._closed = True
        self._uid = uuid.uuid4().hex[:8]
        self._tmpdir: str | None = None
        self.checkpoint_dir: Path | str
        if cfg.checkpoint_dir and storage.is_uri(cfg.checkpoint_dir):
            # the actors checkpoint at the URI (swarm_sona.core.storage); the embedded bank is local
            self.checkpoint_dir = cfg.checkpoint_dir
            self._tmpdir = tempfile.mkdtemp(prefix="swarm-sona-")
            bank_dir = Path(self._tmpdir) / "bank"
        else:
            if cfg.checkpoint_dir:
                self.checkpoint_dir = Path(cfg.checkpoint_dir)
            else:
                self._tmpdir = tempfile.mkdtemp(prefix="swarm-sona-")
                self.checkpoint_dir = Path(self._tmpdir)
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            bank_dir = self.checkpoint_dir / "bank"
        self._bank_dir = bank_dir
        self.topology = topology_for(cfg)
        self.counters = {"tasks": 0, "successes": 0, "batches": 0, "retried_batches": 0, "failed_tasks": 0,
                         "syncs": 0, "sync_errors": 0, "cost_usd": 0.0, "undispatched_tasks": 0}
        self.acked_patterns = AckedPatterns(seed=cfg.seed)   # bounded: the count plus a sample of ids
        self.warnings: deque[str] = deque(maxlen=200)         # actors' warnings relayed here (also logged)
        self.error_kinds: dict[str, int] = {}                 # failed tasks by stage (embed, execute, ...)
        self.syncer = SyncRunner(self.topology, counters=self.counters, telemetry=self._tel,
                                 enabled=cfg.consensus_learning)
        self._start()

    # ---- start-up --------------------------------------------------------------------------------
    def _start(self) -> None:
        cfg = self.config
        allow = url_ports(getattr(self._tel, "prometheus_url", None))   # the user's own endpoint
        self._owns_ray = start_ray(cfg.address, num_cpus=cfg.num_cpus, allow_ports=allow)
        import ray  # after start_ray: it prepares Ray's environment first
        self._closed = False
        actors = launch(LaunchPlan(
            config=cfg, sona_config=self.sona_config, topology=self.topology, checkpoint_dir=self.checkpoint_dir,
            bank_dir=self._bank_dir,
            name=f"swarm-sona-{self._uid}", namespace=ray.get_runtime_context().namespace,
            executor=self.executor, agent_executors=self.agent_executors,
            telemetry=self._tel.config.to_dict() if self._tel.tracing else None,
            engine_batch=self.engine_batch, shares=self.shares))
        self.bank: Any = actors.bank   # the bank actor's handle (None with a Qdrant server or no bank)
        self._bank_cfg = actors.bank_config
        self.coordinators: dict[str, Any] = actors.coordinators
        self.agents: dict[str, Any] = actors.agents
        self.leases: Any = actors.leases   # the rate-limit lease broker's client (None: fixed shares)
        self.specs = {a.id: a for a in cfg.workers}
        self.syncer.bind(self.agents, self.coordinators)
        if self._owns_ray:
            try:
                check_loopback(allow_ports=allow)  # the actors' worker processes too
            except Exception:
                self.shutdown()
                raise

    # ---- context manager -------------------------------------------------------------------------
    def __enter__(self) -> SwarmSONA:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def _check(self) -> None:
        if self._closed:
            raise SwarmError("this swarm has been shut down")

    # ---- consensus -------------------------------------------------------------------------------
    def sync(self, *, wait: bool = True, rounds: int = 1) -> SyncSummary:
        """Run ``rounds`` synchronisations now; with ``wait`` block until every agent installed them."""
        self._check()
        return self.syncer.run(wait=wait, rounds=rounds, after_round=self._drain_coordinator_warnings).to_dict()

    def agent_params(self) -> dict[str, dict[str, Any]]:
        """Every agent's current shareable adapter state (flat name -> array)."""
        import ray

        self._check()
        ids = list(self.agents)
        return dict(zip(ids, ray.get([self.agents[a].params.remote() for a in ids]), strict=True))

    def merged_params(self) -> dict[str, Any] | None:
        """The root coordinator's merged adapter (None for gossip or before the first merge)."""
        return self.syncer.merged_params()

    # ---- running ---------------------------------------------------------------------------------
    def run(self, tasks: Iterable[Task | Mapping[str, Any] | str], *, batch_size: int | None = None,
            progress: bool | None = None, max_in_flight: int = 2,
            on_batch: Callable[[dict[str, Any]], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Iterator[TaskResult]:
        """Run tasks through the swarm; yields one result dict per task as batches finish.

        A result: ``task_id, agent_id, model, success, reward, cost_usd, patterns, task_type``,
        the agent's timings ``learn_s`` (its instant-loop step) and ``retrieve_s``, ``batch_id``,
        ``batch_n`` (plus ``error`` for a task lost twice with dead agents). Batches go out
        through a :class:`~swarm_sona.runtime.dispatch.DispatchPool` (``max_in_flight`` per
        agent). ``on_batch`` is called once per finished batch, before its results are
        yielded (see :meth:`~swarm_sona.runtime.tally.RunTally.results`). ``should_stop``
        (checked before each dispatch): once it returns true no further batch is sent, but the
        batches already running are still collected and yielded, so no work that was done (and
        paid for) is lost; the tasks never sent are counted in ``stats()["undispatched_tasks"]``.
        ``infra_error_limit`` infrastructure failures in a row stop dispatch the same way and set
        :attr:`infra_stop` (reset at the start of each run).
        """
        self._check()
        bs = int(batch_size or self.config.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {bs}")
        items = [_as_task(t) for t in tasks]
        pool = DispatchPool(self.agents, self._submitter(), max_in_flight=max_in_flight)
        pool.extend(Batch(i // bs, items[i:i + bs]) for i in range(0, len(items), bs))
        self.infra_stop = None
        tally = RunTally(self.counters, self.meter, self._tel, relay=self._relay, acked=self.acked_patterns.extend,
                         error_kinds=self.error_kinds, guard=InfraGuard(self.infra_error_limit))
        succ = done = 0
        self.meter.run_started()   # swarm_sona_run_duration_seconds times this run's stream
        with Progress(total=len(items), description="swarm", enabled=progress) as bar:
            while pool.busy:
                if pool.queue and (self.infra_stop is not None or should_stop is not None and should_stop()):
                    self.counters["undispatched_tasks"] += pool.drop_queued()
                pool.fill()
                for fin in pool.collect(timeout=60.0):
                    for r in tally.results(fin, on_batch):
                        self.infra_stop = tally.guard.stop
                        done += 1
                        succ += 1 if r["success"] else 0
                        yield cast(TaskResult, r)
                    if fin.kind == "done":
                        bar.advance(len(fin.output["results"]), success_rate=succ / max(1, done))
        self.syncer.reap()

    def _submitter(self) -> Callable[[str, Batch], tuple[Any, Any]]:
        """The pool's ``submit``: one ``run_batch`` call carrying the agent's pending merged
        versions (the batch's span is the note); every ``sync_every`` tasks per agent it starts
        a synchronisation in the background."""
        tel, every = self._tel, self.config.sync_every * max(1, len(self.agents))
        since = 0

        def submit(agent: str, batch: Batch) -> tuple[Any, Any]:
            nonlocal since
            merged = self.syncer.take_merged(agent)
            span = tel.begin("batch", attributes={"agent": agent, "batch": batch.batch_id, "tasks": len(batch.tasks)})
            ref = self.agents[agent].run_batch.remote(batch.tasks, merged=merged, batch_id=batch.batch_id,
                                                      trace=tel.inject(span=span))
            since += len(batch.tasks)
            if since >= every:
                since = 0
                self.syncer.start()
            return ref, span

        return submit

    # ---- learning API ----------------------------------------------------------------------------
    def learn_from_swarm_execution(self, task: Task | str | Mapping[str, Any], results: Sequence[Mapping[str, Any]]
                                   | None = None, consensus: Any = None) -> SwarmExecutionResult:
        """Learn from one task that several agents executed and the swarm agreed on.

        Each result (``agent_id``, ``output``, optional ``model``, ``reward``, ``success``)
        becomes a trajectory for that agent; its reward is the given one, else 1.0 when its
        output equals the consensus output and 0.0 otherwise. The consensus answer is stored
        as a pattern (agent ``swarm``) and, with consensus learning, the swarm synchronises.
        The guide's mapping ``{task, results, consensus}`` works too (``learnFromSwarmExecution``).
        """
        import ray

        self._check()
        if results is None:
            task, results, consensus = parse_swarm_execution(task, consensus)
        t = _as_task(task)
        cons = consensus.get("output") if isinstance(consensus, Mapping) else consensus
        emb = get_embedder(self.sona_config.embedder_name, self.sona_config.dim).embed([t.text])[0]
        per_agent = consensus_trajectories(t, results, cons, emb, self.agents)
        learned = ray.get([self.agents[a].learn.remote(trs) for a, trs in per_agent.items()])
        stored: list[str] = []
        if cons is not None and self.bank is not None:
            stored = ray.get(self.bank.store_batch.remote([{"task": t.text, "embedding": emb, "output": str(cons),
                                                            "reward": 1.0, "success": True, "agent_id": "swarm",
                                                            "task_type": t.task_type}]))
            self.acked_patterns.extend(stored)
        synced = self.sync(wait=True) if self.config.consensus_learning else None
        return {"agents": sorted(per_agent), "learned": learned, "stored": stored, "sync": synced}

    learnFromSwarmExecution = learn_from_swarm_execution   # the integration guide's name

    def consolidate(self) -> ConsolidateResult:
        """Run every agent's background loop (BaseLoRA + EWC++) now, then synchronise."""
        import ray

        self._check()
        res = ray.get([h.consolidate.remote() for h in self.agents.values()])
        synced = self.sync(wait=True) if self.config.consensus_learning else None
        return {"agents": dict(zip(self.agents, res, strict=True)), "sync": synced}

    def retrieve_patterns(self, query: str, k: int = 1, *, source_agents: Sequence[str] | None = None,
                          **filters: Any) -> list[dict[str, Any]]:
        """Patterns from the shared bank; ``source_agents`` restricts them to those agents' patterns."""
        import ray

        self._check()
        if self.bank is None:
            if self._bank_cfg is None:
                return []
            with ReasoningBank(self._bank_cfg) as b:
                return [{"id": p.id, "score": p.score, "task": p.task, "output": p.output, "reward": p.reward,
                         "success": p.success, "agent_id": p.agent_id, "task_type": p.task_type}
                        for p in b.retrieve_patterns(query, k, source_agents=source_agents, **filters)]
        return ray.get(self.bank.retrieve.remote(query, k, source_agents=list(source_agents) if source_agents else None,
                                                 **filters))

    # ---- introspection / persistence -------------------------------------------------------------
    def stats(self) -> SwarmStats:
        """Swarm counters, per-agent and per-coordinator stats, bank stats, topology."""
        return cast(SwarmStats, self.request_stats().result())

    def request_stats(self, *, params: bool = False) -> StatsRequest:
        """Ask every actor for its stats (and with ``params`` every agent for its adapter state,
        as :meth:`agent_params`) without waiting: a :class:`~swarm_sona.runtime.stats.StatsRequest`
        to poll with ``ready()`` and read with ``result()``.

        An actor answers after the batches already queued to it, so a driver that keeps
        dispatching while the answers come in does not drain its pipeline (:meth:`stats`
        waits for them)."""
        self._check()
        self.syncer.reap()
        c = self.counters
        self._drain_coordinator_warnings()
        head = {**c, "success_rate": c["successes"] / c["tasks"] if c["tasks"] else 0.0,
                "acked_patterns": self.acked_patterns.count, "warnings": list(self.warnings),
                "error_kinds": dict(self.error_kinds), "errors_by_kind": dict(self.meter.errors),
                "infra_stop": None if self.infra_stop is None else self.infra_stop.message}
        resend: dict[str, dict[str, Callable[[], Any]]] = {
            "agents": {a: h.stats.remote for a, h in self.agents.items()},
            "coordinators": {k: h.stats.remote for k, h in self.coordinators.items()},
            "bank": {"bank": self.bank.stats.remote} if self.bank is not None else {}}
        if params:
            resend["params"] = {a: h.params.remote for a, h in self.agents.items()}
        refs = {group: {k: send() for k, send in calls.items()} for group, calls in resend.items()}

        def finish(out: dict[str, Any]) -> None:
            drain_coordinator_spans(self.coordinators, self._tel)
            self.meter.snapshot(out)

        return StatsRequest(head, refs, resend, has_bank=self.bank is not None, finish=finish,
                            tail={"topology": self.topology.describe(), "checkpoint_dir": str(self.checkpoint_dir)})

    def _relay(self, warnings: Iterable[str]) -> None:
        """Log an actor's warnings at the driver (actor processes' logs do not reach it)."""
        for w in warnings:
            log.warning("%s", w)
            self.warnings.append(str(w))

    def _drain_coordinator_warnings(self) -> None:
        drain_coordinator_warnings(self.coordinators, self._relay)

    def checkpoint(self, path: str | os.PathLike[str]) -> str:
        """Checkpoint every actor, then copy the swarm's state to ``path`` (a directory)."""
        import ray

        self._check()
        self._local_checkpoints("checkpoint")
        self.syncer.reap(wait=True)  # no merge still in flight while the actors checkpoint
        ray.get([h.checkpoint.remote() for h in [*self.agents.values(), *self.coordinators.values()]])
        if self.bank is not None:
            ray.get(self.bank.flush.remote())
        dest = Path(path)
        dest.mkdir(parents=True, exist_ok=True)
        if self.bank is not None:
            ray.get(self.bank.snapshot.remote(str(dest / "bank.snapshot")))
        # the live bank is locked: it travels as the snapshot above
        _copy_entries(self._local_checkpoints("checkpoint"), dest, skip=lambda name: name == "bank")
        codec.write_checkpoint(dest / _MANIFEST, {"config": self.config.to_dict(), "sync_index": self.syncer.index,
                                                  "counters": dict(self.counters), "time": time.time()},
                               kind="swarm")
        return str(dest)

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Restart every agent and coordinator from the checkpoint at ``path``."""
        import ray

        self._check()
        self._local_checkpoints("restore")
        src = Path(path)
        man = codec.read_checkpoint(src / _MANIFEST, kind="swarm")
        for h in [*self.agents.values(), *self.coordinators.values()]:
            ray.kill(h, no_restart=True)
        _copy_entries(src, self._local_checkpoints("restore"), skip=lambda name: name.startswith(_MANIFEST))
        self.syncer.index = int(man.get("sync_index", 0))
        if self.bank is not None:
            ray.kill(self.bank, no_restart=True)
        self._uid = uuid.uuid4().hex[:8]
        self._start()
        if self.bank is not None and (src / "bank.snapshot").exists():
            ray.get(self.bank.restore.remote(str(src / "bank.snapshot")))

    def _local_checkpoints(self, what: str) -> Path:
        """The local checkpoint directory (``checkpoint``/``restore`` copy files there)."""
        if not isinstance(self.checkpoint_dir, Path):
            raise SwarmError(f"{what}(): the swarm's checkpoint_dir is the storage URI {self.checkpoint_dir!r}: the "
                             "actors' checkpoints are there already (a restarted actor reads them); copying a whole "
                             "swarm to or from a directory needs a local checkpoint_dir")
        return self.checkpoint_dir

    def kill_agent(self, agent_id: str, *, restart: bool = True) -> None:
        """Kill an agent's process (for fault drills); with ``restart`` Ray brings it back."""
        import ray

        ray.kill(self.agents[agent_id], no_restart=not restart)

    def kill_coordinator(self, coordinator_id: str | None = None, *, restart: bool = True) -> None:
        """Kill a coordinator's process (default: the root); with ``restart`` Ray brings it back."""
        import ray

        cid = coordinator_id or self.topology.root
        if cid is None or cid not in self.coordinators:
            raise SwarmError(f"no coordinator {cid!r}; coordinators are {sorted(self.coordinators)}")
        ray.kill(self.coordinators[cid], no_restart=not restart)

    def bank_has(self, ids: Sequence[str]) -> list[bool]:
        """Whether each pattern id is in the bank's durable store."""
        import ray

        if self.bank is None:
            raise SwarmError("this swarm has no bank actor")
        return ray.get(self.bank.has.remote(list(ids)))

    def shutdown(self) -> None:
        """Stop every actor, close the bank, and stop Ray if this swarm started it."""
        if self._closed:
            return
        import ray

        self._closed = True
        try:
            try:
                self.syncer.reap()
                drain_coordinator_spans(self.coordinators, self._tel)
            except Exception as exc:  # telemetry is best effort; shutting down is not
                log.warning("telemetry: final drain failed: %s", exc)
            self._close_agents()
            if self.bank is not None:
                try:
                    ray.get(self.bank.close.remote(), timeout=30)
                except Exception as exc:
                    log.warning("bank close failed: %s", exc)
            for h in [*self.agents.values(), *self.coordinators.values(), *([self.bank] if self.bank else [])]:
                try:
                    ray.kill(h, no_restart=True)
                except Exception:
                    pass
        finally:
            stop_ray(self._owns_ray)
            if self._tmpdir:
                shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _close_agents(self, timeout_s: float = 30.0) -> None:
        """Ask every agent to close its executor (banks its hooks opened record their manifests,
        connection pools close) before the actors are stopped; an agent that is gone or does not
        answer in ``timeout_s`` is logged and stopped all the same."""
        import ray

        refs = {a: h.close.remote() for a, h in self.agents.items()}
        ready, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        for a, ref in refs.items():
            if ref not in ready:
                log.warning("agent %s: executor close did not answer in %.0f s", a, timeout_s)
                continue
            try:
                ray.get(ref)
            except Exception as exc:
                log.warning("agent %s: executor close failed: %s", a, exc)

    def __repr__(self) -> str:
        return f"SwarmSONA(topology={self.config.topology!r}, agents={list(self.agents)}, " \
               f"coordinators={list(self.coordinators)})"

