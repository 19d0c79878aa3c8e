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

What it starts: one :class:`~swarm_sona.runtime.actors.agent.AgentActor` per worker, one
:class:`~swarm_sona.runtime.actors.coordinator.CoordinatorActor` per coordinator (star: one;
hierarchical: one per queen, the first is the root; ring/mesh: none) and one
:class:`~swarm_sona.runtime.actors.bank.BankActor` owning the embedded bank (with a Qdrant server
URL the agents open the server directly). All actors restart on failure (``max_restarts``)
and restore from their last checkpoint plus the coordinator's current version. Actors are
named (``swarm-sona-<uid>-<id>``) and find their peers (bank, parent coordinator) by name
(:class:`~swarm_sona.runtime.actors.calls.NamedActor`), so no handle sits in a restartable actor's
constructor arguments.

Dispatch: tasks go out in batches (one Ray call per batch), at most two batches in flight
per agent, to the least-loaded agent; results stream back as batches finish. A batch lost
with a dead agent is retried once on another agent. Every ``sync_every`` tasks per agent
the swarm synchronises by the topology's schedule without stopping dispatch: workers push
to their coordinator, coordinators merge (root last), and the merged version rides along
with each agent's next batch (gossip topologies instead run ``gossip_rounds`` rounds of
neighbour averaging). Ray: connects to ``address`` / ``RAY_ADDRESS`` when given, else starts
a local Ray bound to 127.0.0.1 without dashboard (and stops it on :meth:`SwarmSONA.shutdown`).

LLM endpoints. An executor whose class defines ``run_many`` runs each agent's batch
concurrently (see :class:`~swarm_sona.runtime.actors.agent.AgentActor`); ``max_concurrency``
caps the executor calls outstanding in the whole swarm (each agent gets its share, the
remainder to the first agents). Results whose ``error_kind`` is an infrastructure failure
(:data:`INFRA_ERROR_KINDS`: the endpoint, not the model, failed) teach nothing; after
``infra_error_limit`` of them in a row (default 3) the run stops dispatching, collects what is
in flight (nothing is lost), ends, and :attr:`SwarmSONA.infra_stop` names the cause.

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

import inspect
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm_sona.bank.backend import backend_spec
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.consensus.topologies import Broadcast, MergeStep, Topology, topology_class
from swarm_sona.core import codec
from swarm_sona.core import telemetry as telemetry_mod
from swarm_sona.core.config import ConfigError
from swarm_sona.core.executor import Task
from swarm_sona.core.progress import Progress
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.executors.openai_chat import ERROR_KINDS
from swarm_sona.routing.config import LLMRouterConfig
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.bank import BankActor
from swarm_sona.runtime.actors.calls import NamedActor
from swarm_sona.runtime.actors.coordinator import CoordinatorActor
from swarm_sona.runtime.config import AgentSpec, SwarmConfig
from swarm_sona.runtime.metering import RunMeter
from swarm_sona.runtime.startup import check_loopback, start_ray, stop_ray

__all__ = ["SwarmSONA", "SwarmError", "StatsRequest", "AckedPatterns", "start_ray", "InfraStop",
           "INFRA_ERROR_KINDS", "agent_shares"]

log = logging.getLogger(__name__)
_MANIFEST = "swarm.msgpack"
#: ``error_kind`` values of an endpoint's failure (not the model's): they stop a run when repeated
INFRA_ERROR_KINDS = frozenset(ERROR_KINDS)


@dataclass(frozen=True)
class InfraStop:
    """Why a run stopped early: ``count`` results in a row failed for an infrastructure reason.

    Example:
        >>> s = InfraStop(kind="auth", count=3, error="http://127.0.0.1:9/v1/chat/completions: HTTP 401: bad key")
        >>> s.message
        '3 calls in a row failed for an infrastructure reason (auth): http://127.0.0.1:9/v1/chat/completions: HTTP 401: bad key'
    """

    kind: str
    count: int
    error: str

    @property
    def message(self) -> str:
        """One line naming the cause (what ``swarm-sona run`` prints)."""
        return f"{self.count} calls in a row failed for an infrastructure reason ({self.kind}): {self.error}"


def agent_shares(cap: int | None, agents: Sequence[str]) -> dict[str, int | None]:
    """Each agent's share of a swarm-wide cap of concurrent executor calls (the remainder to the first).

    Example:
        >>> agent_shares(10, ["a", "b", "c"]), agent_shares(None, ["a"])
        ({'a': 4, 'b': 3, 'c': 3}, {'a': None})
        >>> agent_shares(2, ["a", "b", "c"])
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: max_concurrency: 2 is below the number of agents (3): each agent needs at least 1
    """
    if cap is None:
        return dict.fromkeys(agents)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"max_concurrency: must be an integer >= 1 or None, got {cap!r}")
    n = len(agents)
    if cap < n:
        raise ConfigError(f"max_concurrency: {cap} is below the number of agents ({n}): each agent needs at least 1")
    return {a: cap // n + (1 if i < cap % n else 0) for i, a in enumerate(agents)}


class SwarmError(RuntimeError):
    """The swarm cannot do what was asked (no live agent left, not started, shut down)."""


class AckedPatterns:
    """The ids of the patterns the bank acknowledged over a run, in bounded memory: the count of
    all of them, and a uniform sample (reservoir, seeded) of at most ``keep`` ids to check
    against the bank (``SwarmSONA.bank_has``). Iterating yields the sample.

    Example:
        >>> acked = AckedPatterns(keep=3, seed=0)
        >>> acked.extend([f"p{i}" for i in range(10)])
        >>> acked.count, len(acked.sample), all(i.startswith("p") for i in acked)
        (10, 3, True)
    """

    def __init__(self, keep: int = 1000, *, seed: int = 0) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"AckedPatterns: keep must be an integer >= 1, got {keep!r}")
        import random

        self.keep = keep
        self.count = 0
        self.sample: list[str] = []
        self._rng = random.Random(seed)

    def extend(self, ids: Iterable[str]) -> None:
        """Record acknowledged ids (Algorithm R: each id seen so far is kept with equal chance)."""
        for i in ids:
            self.count += 1
            if len(self.sample) < self.keep:
                self.sample.append(i)
            else:
                j = self._rng.randrange(self.count)
                if j < self.keep:
                    self.sample[j] = i

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.sample))

    def __len__(self) -> int:
        return len(self.sample)

    def __bool__(self) -> bool:
        return self.count > 0


def _spec_from_kwargs(config: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, SwarmConfig):
        data = config.to_dict(keep_secrets=True)
    elif isinstance(config, (str, os.PathLike)):
        from swarm_sona.core.config import load_config_file

        data = load_config_file(os.fspath(config))
    else:
        data = dict(config or {})
    data.update({k: v for k, v in spec.items() if v is not None})
    agents = data.get("agents")
    if isinstance(agents, int) and not isinstance(agents, bool):
        if agents < 1:
            raise ConfigError(f"swarm.agents: need at least 1 agent, got {agents}")
        data["agents"] = [{"id": f"agent-{i}", "type": "worker"} for i in range(agents)]
    elif not agents:
        data["agents"] = [{"id": f"agent-{i}", "type": "worker"} for i in range(4)]
    return data


class StatsRequest:
    """Stats asked of a swarm's actors, answered asynchronously (see :meth:`SwarmSONA.request_stats`).

    ``ready()`` tells without blocking whether every actor has answered; ``result()`` waits
    (at most ``timeout`` seconds per actor; an actor that fails or times out gets
    ``{"error": ...}``) and returns what :meth:`SwarmSONA.stats` returns, the swarm's
    counters as they were at the request, plus ``params`` (agent id -> adapter state) when
    requested.

    Example:
        >>> req = swarm.request_stats(params=True)          # doctest: +SKIP
        >>> req.ready()                                      # doctest: +SKIP
        False
        >>> req.result()["agents"]["agent-0"]["tasks"]       # doctest: +SKIP
        512
    """

    def __init__(self, swarm: SwarmSONA, head: dict[str, Any], refs: dict[str, dict[str, Any]],
                 resend: dict[str, dict[str, Callable[[], Any]]] | None = None) -> None:
        self._swarm = swarm
        self._head = head
        self._refs = refs
        self._resend = resend or {}
        self._all = [r for group in refs.values() for r in group.values()]
        self._result: dict[str, Any] | None = None

    def ready(self) -> bool:
        """True once every actor has answered (never blocks)."""
        if self._result is not None or not self._all:
            return True
        import ray

        done, _ = ray.wait(self._all, num_returns=len(self._all), timeout=0)
        return len(done) == len(self._all)

    def _answer(self, group: str, key: str, ref: Any, deadline: float) -> Any:
        """One actor's answer. An actor that is restarting (Ray raises RayActorError for a call
        it had when it died, or while it is unavailable) is asked again until ``deadline``;
        one that never answers gets ``{"state": "restarting" | "unavailable", "error": ...}``."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        resend = self._resend.get(group, {}).get(key)
        last: Exception | None = None
        while True:
            try:
                got = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                if isinstance(got, dict) and group != "params":
                    got.setdefault("state", "alive")
                return got
            except RayActorError as exc:
                last = exc
                if resend is None or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
                ref = resend()
            except GetTimeoutError as exc:
                last = exc
                break
            except Exception as exc:
                return {"state": "error", "error": f"{type(exc).__name__}: {exc}"}
        state = "restarting" if isinstance(last, RayActorError) else "unavailable"
        return {"state": state, "error": f"{type(last).__name__}: {last}"}

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        """The stats (see the class docs); waits for the answers (at most ``timeout`` seconds in
        all; an actor still restarting by then is reported with ``state`` ``"restarting"``)."""
        if self._result is not None:
            return self._result
        deadline = time.monotonic() + timeout

        def safe(name: str, refs: dict[str, Any]) -> dict[str, Any]:
            return {k: self._answer(name, k, r, deadline) for k, r in refs.items()}

        sw = self._swarm
        got = {name: safe(name, group) for name, group in self._refs.items()}
        sw._drain_coordinator_spans()
        coords = got["coordinators"]
        merge_ms = [float(s["merge_ms_mean"]) for s in coords.values()
                    if isinstance(s, dict) and s.get("merges") and s.get("merge_ms_mean") is not None]
        out = {**self._head, "merge_ms": (sum(merge_ms) / len(merge_ms)) if merge_ms else None,
               "topology": sw.topology.describe(), "agents": got["agents"], "coordinators": coords,
               "bank": got["bank"].get("bank") if sw.bank is not None else None,
               "checkpoint_dir": str(sw.checkpoint_dir)}
        if "params" in got:
            out["params"] = got["params"]
        sw.meter.snapshot(out)
        self._result = out
        self._all = []
        return out


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
            per-agent shares (:func:`agent_shares`).
        infra_error_limit: infrastructure failures in a row that stop a run (0 = never; None =
            the config's ``infra_error_limit``, default 3).
        **spec: any SwarmConfig key, camelCase or snake_case (``topology``, ``agents`` (a list
            of agent specs or a count), ``sharedReasoningBank``, ``consensusLearning``...).
    """

    def __init__(self, config: SwarmConfig | Mapping[str, Any] | str | None = None, *, executor: Any = None,
                 router: Any = None, bank: Any = None, agent_executors: Mapping[str, Any] | None = None,
                 telemetry: Any = None, engine_batch: int = 64, max_concurrency: int | None = None,
                 infra_error_limit: int | None = None, **spec: Any) -> None:
        self.config = SwarmConfig.from_dict(_spec_from_kwargs(config, spec))
        cfg = self.config
        if executor is None:
            from swarm_sona.executors.simulated import SimulatedExecutor

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
        self.sona_config = self._sona_config(router, bank)
        self._owns_ray = False
        self._closed = True
        self._uid = uuid.uuid4().hex[:8]
        self._tmpdir: str | None = None
        if cfg.checkpoint_dir:
            self.checkpoint_dir = Path(cfg.checkpoint_dir)
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="swarm-sona-")
            self.checkpoint_dir = Path(self._tmpdir)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.topology = self._topology()
        self.counters = {"tasks": 0, "successes": 0, "batches": 0, "retried_batches": 0, "failed_tasks": 0,
                         "syncs": 0, "sync_errors": 0, "cost_usd": 0.0, "undispatched_tasks": 0}
        self.acked_patterns = AckedPatterns(seed=cfg.seed)   # bounded: the count plus a sample of ids
        self.warnings: deque[str] = deque(maxlen=200)         # actors' warnings relayed here (also logged)
        self.error_kinds: dict[str, int] = {}                 # failed tasks by stage (embed, execute, ...)
        self._pending_merged: dict[str, list[Any]] = {}
        self._bg: list[Any] = []
        self._sync_index = 0
        self._start()

    # ---- construction -------------------------------------------------------------------------
    def _sona_config(self, router: Any, bank: Any) -> Any:
        base = self.config.sona
        if router is None and not base.llm_router.models and hasattr(self.executor, "model_specs"):
            router = {"models": self.executor.model_specs()}
        if router is not None:
            if isinstance(router, (list, tuple)):
                router = {"models": list(router)}
            rc = router if isinstance(router, LLMRouterConfig) else LLMRouterConfig.from_dict(
                {**base.llm_router.to_dict(), **dict(router)})
            base = base.replace(llm_router=rc)
        if bank is not None:
            from swarm_sona.bank.location import bank_config  # one parser: URL/path/mapping -> config

            bc: ReasoningBankConfig = bank_config(bank, base.reasoning_bank)
            base = base.replace(reasoning_bank=bc)
        lora = base.lora
        if lora.shared_a_seed is None:  # FFA-LoRA: same A everywhere, merging B = merging weight deltas
            base = base.replace(lora=lora.replace(shared_a_seed=self.config.seed))
        return base

    def _topology(self) -> Topology:
        """The configured topology from the registry (built-ins or a user's ``register_topology``)."""
        cfg = self.config
        cls = topology_class(cfg.topology)
        accepts = inspect.signature(cls.__init__).parameters
        workers = [a.id for a in cfg.workers]
        coords = [a.id for a in cfg.coordinators]
        rule = {"name": cfg.merge_rule, **cfg.merge_options}
        kw: dict[str, Any] = {}
        if cls.central or cfg.merge_rule != "fedavg":   # gossip topologies mix by their own rule by default
            kw["rule"] = rule
        if not cls.central:
            kw["rounds"] = cfg.gossip_rounds
        kw.update({k: v for k, v in (("fanout", cfg.fanout), ("seed", cfg.seed)) if k in accepts})
        return cls(workers, coords, **kw) if coords else cls(workers, **kw)

    def _agent_config(self, spec: AgentSpec) -> Any:
        sc = self.sona_config
        if spec.lora_rank is not None and spec.lora_rank != sc.lora.rank:
            sc = sc.replace(lora=sc.lora.replace(rank=spec.lora_rank))
        return sc.to_dict()

    def _parent_of(self, worker: str) -> str | None:
        if not self.config.consensus_learning or not self.topology.central:
            return None
        for step in self.topology.stages(0)[0]:
            if isinstance(step, MergeStep) and worker in step.sources:
                return step.target
        return None

    def _user_ports(self) -> list[int]:
        """Ports of this process that the user configured beyond loopback (the Prometheus endpoint)."""
        url = getattr(self._tel, "prometheus_url", None)
        if not url:
            return []
        from urllib.parse import urlsplit

        return [p] if (p := urlsplit(url).port) else []

    def _start(self) -> None:
        cfg = self.config
        allow = self._user_ports()
        self._owns_ray = start_ray(cfg.address, num_cpus=cfg.num_cpus, allow_ports=allow)
        import ray  # after start_ray: it prepares Ray's environment first
        self._closed = False
        ckpt = str(self.checkpoint_dir)
        name = f"swarm-sona-{self._uid}"
        # peers go to restartable actors by name, never as handles: a handle in a constructor's
        # arguments lives in the object store and a restart fails once it is gone (ray#53727)
        namespace = ray.get_runtime_context().namespace
        bcfg = self.sona_config.reasoning_bank
        self.bank: Any = None   # the bank actor's handle (None with a Qdrant server or no bank)
        self._bank_cfg = None
        if bcfg.enabled:
            if backend_spec(bcfg.backend).single_owner:   # one process opens it: the bank actor
                if bcfg.path is None:
                    bcfg = bcfg.replace(path=str(self.checkpoint_dir / "bank"), persist_to_disk=True)
                self._bank_cfg = bcfg
                self.bank = ray.remote(BankActor).options(
                    name=f"{name}-bank", num_cpus=0, max_restarts=cfg.max_restarts,
                    max_task_retries=-1 if cfg.max_restarts else 0,
                    max_concurrency=8,  # threaded: concurrent store_batch calls share one flush (group commit)
                ).remote(bcfg.to_dict(), dim=self.sona_config.dim)
            else:
                self._bank_cfg = bcfg
        self.coordinators: dict[str, Any] = {}
        if cfg.consensus_learning and self.topology.central:
            coord_specs = {a.id: a for a in cfg.coordinators}
            root = self.topology.root
            assert root is not None  # a central topology has a root coordinator
            order = [root] + [c for c in self.topology.coordinators if c != root]
            worker_ranks = [a.lora_rank for a in cfg.workers if a.lora_rank is not None]
            for cid in order:
                parent = None if cid == root else NamedActor(f"{name}-{root}", namespace)
                spec = coord_specs.get(cid)
                rank = spec.lora_rank if spec is not None and spec.lora_rank else max(worker_ranks, default=None)
                rule = self.topology.rule if cid != root or len(order) == 1 else getattr(
                    self.topology, "top_rule", self.topology.rule)
                self.coordinators[cid] = ray.remote(CoordinatorActor).options(
                    name=f"{name}-{cid}", num_cpus=0, max_restarts=cfg.max_restarts,
                    max_task_retries=-1 if cfg.max_restarts else 0,
                ).remote(cid, rule=rule.to_dict(), parent=parent, checkpoint_dir=ckpt,
                         ewc=self.sona_config.ewc.to_dict(), consolidate_ewc=cfg.ewc_consolidate,
                         eta=self.sona_config.background_lr, rank=rank,
                         telemetry=self._tel.config.to_dict() if self._tel.tracing else None)
        self.agents: dict[str, Any] = {}
        self.specs = {a.id: a for a in cfg.workers}
        store = NamedActor(f"{name}-bank", namespace) if self.bank is not None else None
        for a in cfg.workers:
            parent_id = self._parent_of(a.id)
            self.agents[a.id] = ray.remote(AgentActor).options(
                name=f"{name}-{a.id}", num_cpus=0, max_restarts=cfg.max_restarts, max_task_retries=0,
            ).remote(a.id, self._agent_config(a), self.agent_executors.get(a.id, self.executor), agent_type=a.type,
                     store=store,
                     bank_config=None if self.bank is not None or self._bank_cfg is None else self._bank_cfg.to_dict(keep_secrets=True),
                     parent=NamedActor(f"{name}-{parent_id}", namespace) if parent_id in self.coordinators else None,
                     shared_bank=cfg.shared_reasoning_bank, retrieve_k=cfg.retrieve_k,
                     store_min_reward=cfg.store_min_reward, store_novelty=cfg.store_novelty,
                     checkpoint_dir=ckpt, checkpoint_every=cfg.checkpoint_every, seed=cfg.seed,
                     telemetry=self._tel.config.to_dict() if self._tel.tracing else None,
                     engine_batch=self.engine_batch, max_concurrency=self.shares.get(a.id))
            self._pending_merged[a.id] = []
        ray.get([h.ping.remote() for h in [*self.agents.values(), *self.coordinators.values()]]
                + ([self.bank.ping.remote()] if self.bank is not None else []))
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
    def _start_sync(self) -> list[Any]:
        """Kick off one synchronisation without waiting; returns the refs to wait on."""
        if not self.config.consensus_learning:
            return []
        self._reap_background()   # finished calls of earlier syncs: the driver keeps no ref per sync
        self.counters["syncs"] += 1
        refs: list[Any] = []
        if self.topology.central:
            span = self._tel.begin("sync", attributes={"sync": self.counters["syncs"]})
            trace = self._tel.inject(span=span)
            pushes = {w: h.push.remote(trace=trace) for w, h in self.agents.items()}
            span.end()
            merged: dict[str, Any] = {}
            final = None
            for stage in self.topology.stages(0):
                for step in stage:
                    if isinstance(step, MergeStep):
                        deps = [pushes[s] for s in step.sources if s in pushes] + \
                               [merged[s] for s in step.sources if s in merged]
                        merged[step.target] = self.coordinators[step.target].merge.remote(*deps)
                        final = merged[step.target]
                    elif isinstance(step, Broadcast) and step.source in self.coordinators:
                        for t in step.targets:
                            if t in self.coordinators:
                                refs.append(self.coordinators[t].install_if.remote(final))
            if final is not None:
                for w in self.agents:
                    self._pending_merged[w].append(final)
                refs.append(final)
        else:
            rounds = self.topology.rounds
            for r in range(rounds):
                exports = {w: h.export_frame.remote() for w, h in self.agents.items()}
                for stage in self.topology.stages(self._sync_index * rounds + r):
                    for step in stage:
                        if isinstance(step, MergeStep):
                            refs.append(self.agents[step.target].mix.remote(
                                list(step.weights) if step.weights else None, [exports[s] for s in step.sources],
                                step.rule, dict(step.rule_kwargs)))
        self._sync_index += 1
        self._bg.extend(refs)
        return refs

    def sync(self, *, wait: bool = True, rounds: int = 1) -> dict[str, Any]:
        """Run ``rounds`` synchronisations now; with ``wait`` block until every agent installed them."""
        import ray

        self._check()
        if wait:
            self._reap_background(wait=True)  # a blocking sync starts from a quiescent swarm
        version = None
        for _ in range(rounds):
            refs = self._start_sync()
            if wait:
                try:
                    ray.get(refs)
                except Exception as exc:
                    self.counters["sync_errors"] += 1
                    log.warning("sync failed: %s", exc)
                if self.topology.central:
                    pend = {w: p for w, p in self._pending_merged.items()}
                    self._pending_merged = {w: [] for w in self.agents}
                    out = ray.get([h.install.remote(pend[w]) for w, h in self.agents.items()])
                    version = max(out) if out else None
            self._drain_coordinator_warnings()
        return {"syncs": self.counters["syncs"], "version": version}

    def agent_params(self) -> dict[str, dict[str, Any]]:
        """Every agent's current shareable adapter state (flat name -> array)."""
        import ray

        self._check()
        ids = list(self.agents)
        return dict(zip(ids, ray.get([self.agents[a].params.remote() for a in ids]), strict=True))

    def merged_params(self) -> dict[str, Any] | None:
        """The root coordinator's merged adapter (None for gossip or before the first merge)."""
        import ray

        from swarm_sona.consensus.messages import decode_merged

        root = self.topology.root
        if root is None or root not in self.coordinators:
            return None
        frame = ray.get(self.coordinators[root].latest.remote())
        return None if frame is None else decode_merged(frame)["params"]

    # ---- running ---------------------------------------------------------------------------------
    def run(self, tasks: Iterable[Task | Mapping[str, Any] | str], *, batch_size: int | None = None,
            progress: bool | None = None, max_in_flight: int = 2,
            on_batch: Callable[[dict[str, Any]], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """Run tasks through the swarm; yields one result dict per task as batches finish.

        A result: ``task_id, agent_id, model, success, reward, cost_usd, patterns, task_type``,
        the agent's timings ``learn_s`` (its instant-loop step) and ``retrieve_s``, ``batch_id``,
        ``batch_n`` (plus ``error`` for a task lost twice with dead agents). ``on_batch`` is
        called once per finished batch, before its results are yielded, with ``agent_id,
        batch_id, tasks, retrieve_s`` (the batch's one retrieval call), ``background_s`` (the
        background cycles it triggered, seconds each) and ``acked`` (patterns stored).
        ``should_stop`` (checked before each dispatch): once it returns true no further batch is
        sent, but the batches already running are still collected and yielded, so no work that
        was done (and paid for) is lost; the tasks never sent are counted in
        ``stats()["undispatched_tasks"]``. ``infra_error_limit`` infrastructure failures in a
        row (results with an ``error_kind`` of :data:`INFRA_ERROR_KINDS`) stop dispatch the same
        way and set :attr:`infra_stop` (reset at the start of each run).
        """
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        self._check()
        bs = int(batch_size or self.config.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {bs}")
        items = [t if isinstance(t, Task) else Task(text=t) if isinstance(t, str) else Task.from_dict(dict(t))
                 for t in tasks]
        queue: deque[tuple[int, list[Task], int, frozenset[str]]] = deque(
            (i // bs, items[i:i + bs], 0, frozenset()) for i in range(0, len(items), bs))
        in_flight: dict[Any, tuple[str, int, list[Task], int, frozenset[str]]] = {}
        spans: dict[Any, Any] = {}
        tel = self._tel
        load = {a: 0 for a in self.agents}
        sync_every = self.config.sync_every * max(1, len(self.agents))
        since = 0
        succ = 0
        done = 0
        self.infra_stop = None
        streak: list[dict[str, Any]] = []   # the infrastructure failures in a row so far
        limit = self.infra_error_limit
        with Progress(total=len(items), description="swarm", enabled=progress) as bar:
            while queue or in_flight:
                if queue and (self.infra_stop is not None or should_stop is not None and should_stop()):
                    self.counters["undispatched_tasks"] += sum(len(q[1]) for q in queue)
                    queue.clear()
                while queue:
                    bid, chunk, attempt, exclude = queue[0]
                    cands = [a for a in self.agents if load[a] < max_in_flight and a not in exclude]
                    if not cands:
                        if exclude and not in_flight and all(a in exclude for a in self.agents):
                            exclude = frozenset()  # nothing else to try: allow the same agent again
                            queue[0] = (bid, chunk, attempt, exclude)
                            continue
                        break
                    queue.popleft()
                    agent = min(cands, key=lambda a: (load[a], a))
                    merged, self._pending_merged[agent] = self._pending_merged[agent], []
                    span = tel.begin("batch", attributes={"agent": agent, "batch": bid, "tasks": len(chunk)})
                    ref = self.agents[agent].run_batch.remote(chunk, merged=merged, batch_id=bid,
                                                              trace=tel.inject(span=span))
                    in_flight[ref] = (agent, bid, chunk, attempt, exclude)
                    spans[ref] = span
                    load[agent] += 1
                    since += len(chunk)
                    if since >= sync_every:
                        since = 0
                        self._start_sync()
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=60.0)
                for ref in ready:
                    agent, bid, chunk, attempt, exclude = in_flight.pop(ref)
                    load[agent] -= 1
                    span = spans.pop(ref)
                    try:
                        out = ray.get(ref)
                        tel.relay_ingest(out.get("spans") or ())
                        self._relay(out.get("warnings") or ())
                        span.end()
                    except (RayActorError, RayTaskError) as exc:
                        span.end()
                        if attempt == 0:
                            self.counters["retried_batches"] += 1
                            log.warning("batch %s lost with agent %s (%s); retrying on another agent",
                                        bid, agent, type(exc).__name__)
                            queue.appendleft((bid, chunk, 1, exclude | {agent}))
                        else:
                            self.counters["failed_tasks"] += len(chunk)
                            for t in chunk:
                                done += 1
                                lost = {"task_id": t.id, "agent_id": agent, "model": None, "success": False,
                                        "reward": 0.0, "cost_usd": 0.0, "patterns": 0, "task_type": t.task_type,
                                        "error": f"lost twice: {type(exc).__name__}"}
                                self.meter.result(lost)
                                yield lost
                        continue
                    self.counters["batches"] += 1
                    self.acked_patterns.extend(out["acked"])
                    if on_batch is not None:
                        on_batch({"agent_id": agent, "batch_id": bid, "tasks": len(out["results"]),
                                  "retrieve_s": out.get("retrieve_s"), "background_s": out.get("background_s") or [],
                                  "acked": len(out["acked"])})
                    meter = self.meter
                    for r in out["results"]:
                        meter.result(r)
                    meter.batch_done(agent=agent, retrieve_s=out.get("retrieve_s"))
                    for r in out["results"]:
                        kind = r.get("error_kind")
                        if kind is not None:
                            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
                        if kind in INFRA_ERROR_KINDS:
                            streak.append(r)
                            if limit and len(streak) >= limit and self.infra_stop is None:
                                self.infra_stop = InfraStop(kind=str(kind), count=len(streak),
                                                            error=str(r.get("error") or kind)[:300])
                                log.error("stopping the run: %s", self.infra_stop.message)
                        elif kind is None:
                            streak.clear()
                        self.counters["tasks"] += 1
                        self.counters["cost_usd"] += r["cost_usd"]
                        if r["success"]:
                            self.counters["successes"] += 1
                            succ += 1
                        done += 1
                        yield r
                    bar.advance(len(out["results"]), success_rate=succ / max(1, done))
        self._reap_background()

    def _reap_background(self, *, wait: bool = False) -> None:
        """Collect finished background consensus calls (``wait``: all of them, blocking)."""
        import ray

        if not self._bg:
            return
        ready, rest = ray.wait(self._bg, num_returns=len(self._bg), timeout=None if wait else 0)
        for r in ready:
            try:
                ray.get(r)
            except Exception as exc:
                self.counters["sync_errors"] += 1
                log.warning("background consensus call failed: %s", exc)
        self._bg = list(rest)

    # ---- learning API ----------------------------------------------------------------------------
    def learn_from_swarm_execution(self, task: Task | str | Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                                   consensus: Any = None) -> dict[str, Any]:
        """Learn from one task that several agents executed and the swarm agreed on.

        Each result (``agent_id``, ``output``, optional ``model``, ``reward``, ``success``)
        becomes a trajectory for that agent; its reward is the given one, else 1.0 when its
        output equals the consensus output and 0.0 otherwise. The consensus answer is stored
        as a pattern (agent ``swarm``) and, with consensus learning, the swarm synchronises.
        """
        import ray

        self._check()
        t = task if isinstance(task, Task) else Task(text=task) if isinstance(task, str) else Task.from_dict(dict(task))
        cons = consensus.get("output") if isinstance(consensus, Mapping) else consensus
        from swarm_sona.embedding.embedders import get_embedder

        emb = get_embedder("hashing", self.sona_config.dim).embed([t.text])[0]
        per_agent: dict[str, list[dict[str, Any]]] = {}
        for i, r in enumerate(results):
            aid = r.get("agent_id")
            if aid not in self.agents:
                raise ValueError(f"result {i}: unknown agent_id {aid!r}; agents are {sorted(self.agents)}")
            out = str(r.get("output", ""))
            reward = r.get("reward")
            if reward is None:
                reward = 1.0 if cons is not None and out.strip() == str(cons).strip() else 0.0
            success = bool(r.get("success", reward >= 0.5))
            tr = Trajectory(task=t.text, embedding=emb, model=r.get("model"), reward=float(reward), success=success,
                            agent_id=aid, task_type=t.task_type, output=out)
            per_agent.setdefault(aid, []).append(tr.to_dict())
        learned = ray.get([self.agents[a].learn.remote(trs) for a, trs in per_agent.items()])
        stored: list[str] = []
        if cons is not None and self.bank is not None:
            stored = ray.get(self.bank.store_batch.remote([{"task": t.text, "embedding": emb, "output": str(cons),
                                                            "reward": 1.0, "success": True, "agent_id": "swarm",
                                                            "task_type": t.task_type}]))
            self.acked_patterns.extend(stored)
        synced = self.sync(wait=True) if self.config.consensus_learning else None
        return {"agents": sorted(per_agent), "learned": learned, "stored": stored, "sync": synced}

    def consolidate(self) -> dict[str, Any]:
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
            from swarm_sona.bank import ReasoningBank

            if self._bank_cfg is None:
                return []
            with ReasoningBank(self._bank_cfg) as b:
                return [{"id": p.id, "score": p.score, "task": p.task, "output": p.output, "reward": p.reward,
                         "success": p.success, "agent_id": p.agent_id, "task_type": p.task_type}
                        for p in b.retrieve_patterns(query, k, source_agents=source_agents, **filters)]
        return ray.get(self.bank.retrieve.remote(query, k, source_agents=list(source_agents) if source_agents else None,
                                                 **filters))

    # ---- introspection / persistence -------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Swarm counters, per-agent and per-coordinator stats, bank stats, topology."""
        return self.request_stats().result()

    def request_stats(self, *, params: bool = False) -> StatsRequest:
        """Ask every actor for its stats (and with ``params`` every agent for its adapter state,
        as :meth:`agent_params`) without waiting: a :class:`StatsRequest` to poll with
        ``ready()`` and read with ``result()``.

        An actor answers after the batches already queued to it, so a driver that keeps
        dispatching while the answers come in does not drain its pipeline (:meth:`stats`
        waits for them)."""
        self._check()
        self._reap_background()
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
        return StatsRequest(self, head, refs, resend)

    def _relay(self, warnings: Iterable[str]) -> None:
        """Log an actor's warnings at the driver (actor processes' logs do not reach it)."""
        for w in warnings:
            log.warning("%s", w)
            self.warnings.append(str(w))

    def _drain_coordinator_warnings(self) -> None:
        """Bring the coordinators' warnings (lost state, .prev used, torn log) to the driver's log."""
        if not self.coordinators:
            return
        import ray

        for h in self.coordinators.values():
            try:
                self._relay(ray.get(h.drain_warnings.remote(), timeout=30))
            except Exception as exc:   # a restarting coordinator: its warnings come with the next stats
                log.debug("coordinator warnings not drained: %s", exc)

    def _drain_coordinator_spans(self) -> None:
        """Bring the coordinators' finished spans into the driver's telemetry (best effort)."""
        if not self._tel.tracing or not self.coordinators:
            return
        import ray

        for h in self.coordinators.values():
            try:
                self._tel.relay_ingest(ray.get(h.drain_spans.remote(), timeout=30))
            except Exception as exc:
                log.warning("telemetry: coordinator spans lost: %s", exc)

    def checkpoint(self, path: str | os.PathLike[str]) -> str:
        """Checkpoint every actor, then copy the swarm's state to ``path`` (a directory)."""
        import ray

        self._check()
        self._reap_background(wait=True)  # no merge still in flight while the actors checkpoint
        ray.get([h.checkpoint.remote() for h in [*self.agents.values(), *self.coordinators.values()]])
        if self.bank is not None:
            ray.get(self.bank.flush.remote())
        dest = Path(path)
        dest.mkdir(parents=True, exist_ok=True)
        if self.bank is not None:
            ray.get(self.bank.snapshot.remote(str(dest / "bank.snapshot")))
        for item in self.checkpoint_dir.iterdir():
            if item.name == "bank":
                continue  # the bank is live (locked); snapshot it with ReasoningBank.snapshot if needed
            target = dest / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
        codec.write_checkpoint(dest / _MANIFEST, {"config": self.config.to_dict(), "sync_index": self._sync_index,
                                                  "counters": dict(self.counters), "time": time.time()},
                               kind="swarm")
        return str(dest)

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Restart every agent and coordinator from the checkpoint at ``path``."""
        import ray

        self._check()
        src = Path(path)
        man = codec.read_checkpoint(src / _MANIFEST, kind="swarm")
        for h in [*self.agents.values(), *self.coordinators.values()]:
            ray.kill(h, no_restart=True)
        for item in src.iterdir():
            if item.name == _MANIFEST or item.name.startswith(_MANIFEST):
                continue
            target = self.checkpoint_dir / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
        self._sync_index = int(man.get("sync_index", 0))
        bank = self.bank
        self._uid = uuid.uuid4().hex[:8]
        self._restart_actors(bank)
        if self.bank is not None and (src / "bank.snapshot").exists():
            ray.get(self.bank.restore.remote(str(src / "bank.snapshot")))

    def _restart_actors(self, bank: Any) -> None:
        if bank is not None:
            import ray

            ray.kill(bank, no_restart=True)
        self._start()

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
                self._reap_background()
                self._drain_coordinator_spans()
            except Exception as exc:  # telemetry is best effort; shutting down is not
                log.warning("telemetry: final drain failed: %s", exc)
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

    def __repr__(self) -> str:
        return f"SwarmSONA(topology={self.config.topology!r}, agents={list(self.agents)}, " \
               f"coordinators={list(self.coordinators)})"
