"""Start-up of a swarm's actors: the engine config every agent gets, the topology from the spec,
and the bank, coordinator and agent actors with their names, options and arguments.

Actors are named ``<prefix>-<id>`` (the bank ``<prefix>-bank``) and find their peers by name
(:class:`~swarm_sona.runtime.actors.calls.NamedActor`): a handle in a restartable actor's
constructor arguments lives in the object store and a restart fails once it is gone (ray#53727).
Every actor restarts on failure (``max_restarts``); the bank and coordinators also retry the
calls they had (agents do not: the dispatch pool retries a lost batch elsewhere).

Example:
    >>> from swarm_sona.runtime.config import SwarmConfig
    >>> from swarm_sona.runtime.launch import parent_of, topology_for
    >>> cfg = SwarmConfig.from_dict({"topology": "star", "agents": [{"id": "w1"}, {"id": "w2"}]})
    >>> topo = topology_for(cfg)
    >>> topo.root, parent_of(topo, "w2", consensus=True), parent_of(topo, "w2", consensus=False)
    ('coordinator', 'coordinator', None)
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm_sona.bank.backend import backend_spec
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.location import bank_config
from swarm_sona.consensus.topologies import MergeStep, Topology, topology_class
from swarm_sona.core.config import ConfigError
from swarm_sona.engine.config import SONAConfig, default_checkpoint_path
from swarm_sona.executors.leases import LeaseSeat
from swarm_sona.routing.config import LLMRouterConfig
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.bank import BankActor
from swarm_sona.runtime.actors.calls import NamedActor
from swarm_sona.runtime.actors.coordinator import CoordinatorActor
from swarm_sona.runtime.config import AgentSpec, SwarmConfig
from swarm_sona.runtime.lease import start_lease_broker

__all__ = ["engine_config", "topology_for", "parent_of", "agent_engine_config", "agent_shares", "LaunchPlan",
           "SwarmActors", "launch", "agent_scheduling",
           "service_scheduling", "driver_node_affinity"]


def engine_config(base: SONAConfig, *, executor: Any, router: Any, bank: Any, seed: int) -> SONAConfig:
    """The engine config of every agent: ``base`` with the router (``LLMRouterConfig``, a mapping,
    a list of model specs, or None = the executor's ``model_specs()`` when the spec names no
    model), the bank (see :func:`~swarm_sona.bank.location.bank_config`) and a shared LoRA A seed
    (FFA-LoRA: the same A everywhere, so merging B is merging the weight deltas).

    Example:
        >>> cfg = engine_config(SONAConfig(), executor=None, router=[{"name": "m"}], bank=None, seed=7)
        >>> [m.name for m in cfg.llm_router.models], cfg.lora.shared_a_seed
        (['m'], 7)
    """
    if router is None and not base.llm_router.models and hasattr(executor, "model_specs"):
        router = {"models": executor.model_specs()}
    if router is not None:
        if isinstance(router, (list, tuple)):
            router = {"models": list(router)}
        rc = router if isinstance(router, LLMRouterConfig) else LLMRouterConfig.from_dict(
            {**base.llm_router.to_dict(), **dict(router)})
        base = base.replace(llm_router=rc)
    if bank is not None:
        bc: ReasoningBankConfig = bank_config(bank, base.reasoning_bank)   # one parser: URL/path/mapping
        base = base.replace(reasoning_bank=bc)
    lora = base.lora
    if lora.shared_a_seed is None:
        base = base.replace(lora=lora.replace(shared_a_seed=seed))
    return base


def topology_for(cfg: SwarmConfig) -> Topology:
    """The configured topology from the registry (built-ins or a user's ``register_topology``)."""
    cls = topology_class(cfg.topology)
    accepts = inspect.signature(cls.__init__).parameters
    workers = [a.id for a in cfg.workers]
    coords = [a.id for a in cfg.coordinators]
    kw: dict[str, Any] = {}
    if cls.central or cfg.merge_rule != "fedavg":   # gossip topologies mix by their own rule by default
        kw["rule"] = {"name": cfg.merge_rule, **cfg.merge_options}
    if not cls.central:
        kw["rounds"] = cfg.gossip_rounds
    kw.update({k: v for k, v in (("fanout", cfg.fanout), ("seed", cfg.seed)) if k in accepts})
    return cls(workers, coords, **kw) if coords else cls(workers, **kw)


def parent_of(topology: Topology, worker: str, *, consensus: bool) -> str | None:
    """The coordinator ``worker`` pushes to (None without consensus learning or for gossip)."""
    if not consensus or not topology.central:
        return None
    for step in topology.stages(0)[0]:
        if isinstance(step, MergeStep) and worker in step.sources:
            return step.target
    return None


def agent_engine_config(sona_config: SONAConfig, spec: AgentSpec) -> dict[str, Any]:
    """One agent's engine config (its own ``loraRank`` when the spec gives one; periodic
    checkpoints at ``checkpoint_path: 'auto'`` in its own file), as a mapping.

    Example:
        >>> agent_engine_config(SONAConfig(), AgentSpec(id="a", lora_rank=2))["lora"]["rank"]
        2
        >>> agent_engine_config(SONAConfig(checkpoint_path="auto"), AgentSpec(id="a"))["checkpoint_path"].endswith(
        ...     "sona-checkpoints/a/sona.ckpt")
        True
    """
    sc = sona_config
    if spec.lora_rank is not None and spec.lora_rank != sc.lora.rank:
        sc = sc.replace(lora=sc.lora.replace(rank=spec.lora_rank))
    if sc.checkpoint_path == "auto":   # resolved here: each agent its own file, not one 'default'
        sc = sc.replace(checkpoint_path=str(default_checkpoint_path(sc.agent_id or spec.id)))
    return sc.to_dict()


@dataclass(frozen=True)
class LaunchPlan:
    """What to start: the spec, the agents' engine config, the topology, where actors
    checkpoint (a local directory or a storage URI), the embedded bank's local directory, the actors' name prefix and Ray namespace, the executors, the actors'
    telemetry config (None: tracing off), the engine batch and each agent's concurrency share."""

    config: SwarmConfig
    sona_config: SONAConfig
    topology: Topology
    checkpoint_dir: Path | str
    bank_dir: Path
    name: str
    namespace: str
    executor: Any
    agent_executors: Mapping[str, Any]
    telemetry: dict[str, Any] | None
    engine_batch: int
    shares: Mapping[str, int | None]


@dataclass
class SwarmActors:
    """The handles of a started swarm: the bank actor (None with a Qdrant server or no bank),
    the bank's config (None: no bank), coordinators and agents by id."""

    bank: Any
    bank_config: ReasoningBankConfig | None
    coordinators: dict[str, Any]
    agents: dict[str, Any]
    leases: Any = None   # the lease broker's client (rate_limits.rebalance_s > 0): holding it keeps the broker alive

    def all(self) -> list[Any]:
        """Every handle: agents, coordinators, then the bank."""
        return [*self.agents.values(), *self.coordinators.values(), *([self.bank] if self.bank is not None else [])]


def _bank(plan: LaunchPlan) -> tuple[Any, ReasoningBankConfig | None]:
    import ray  # lazily: start_ray prepares Ray's environment first

    cfg, bcfg = plan.config, plan.sona_config.reasoning_bank
    if not bcfg.enabled:
        return None, None
    if not backend_spec(bcfg.backend).single_owner:   # e.g. a Qdrant server: every agent opens it directly
        return None, bcfg
    if bcfg.path is None:
        bcfg = bcfg.replace(path=str(plan.bank_dir), persist_to_disk=True)
    handle = ray.remote(BankActor).options(
        name=f"{plan.name}-bank", num_cpus=0, max_restarts=cfg.max_restarts,
        max_task_retries=-1 if cfg.max_restarts else 0,
        max_concurrency=8,  # threaded: concurrent store_batch calls share one flush (group commit)
        scheduling_strategy=service_scheduling(cfg),
    ).remote(bcfg.to_dict(), dim=plan.sona_config.dim, embedder=plan.sona_config.embedder_name)
    return handle, bcfg


def _coordinators(plan: LaunchPlan) -> dict[str, Any]:
    import ray

    cfg, topo, sc = plan.config, plan.topology, plan.sona_config
    out: dict[str, Any] = {}
    if not cfg.consensus_learning or not topo.central:
        return out
    coord_specs = {a.id: a for a in cfg.coordinators}
    root = topo.root
    assert root is not None  # a central topology has a root coordinator
    order = [root] + [c for c in topo.coordinators if c != root]
    worker_ranks = [a.lora_rank for a in cfg.workers if a.lora_rank is not None]
    for cid in order:
        parent = None if cid == root else NamedActor(f"{plan.name}-{root}", plan.namespace)
        spec = coord_specs.get(cid)
        rank = spec.lora_rank if spec is not None and spec.lora_rank else max(worker_ranks, default=None)
        rule = topo.rule if cid != root or len(order) == 1 else getattr(topo, "top_rule", topo.rule)
        out[cid] = ray.remote(CoordinatorActor).options(
            name=f"{plan.name}-{cid}", num_cpus=0, max_restarts=cfg.max_restarts,
            max_task_retries=-1 if cfg.max_restarts else 0, scheduling_strategy=service_scheduling(cfg),
        ).remote(cid, rule=rule.to_dict(), parent=parent, checkpoint_dir=str(plan.checkpoint_dir),
                 ewc=sc.ewc.to_dict(), consolidate_ewc=cfg.ewc_consolidate, eta=sc.background_lr, rank=rank,
                 telemetry=plan.telemetry)
    return out


def rebalance_period(executor: Any) -> float:
    """The ``rate_limits.rebalance_s`` of an executor's limiter (also through a wrapper's
    ``inner``), 0 when it has none: shares rebalanced by demand need a lease broker.

    Example:
        >>> rebalance_period(lambda task, model, patterns: None)
        0.0
    """
    inner = vars(executor).get("inner") if hasattr(executor, "__dict__") else None
    if inner is not None:
        return rebalance_period(inner)
    limiter = getattr(executor, "limiter", None)
    return float(getattr(getattr(limiter, "config", None), "rebalance_s", 0.0) or 0.0)


def _lease_broker(plan: LaunchPlan) -> Any:
    """The swarm's lease broker (one small actor) when a worker's executor rebalances its rate
    limits, else None."""
    cfg = plan.config
    period = max((rebalance_period(plan.agent_executors.get(a.id, plan.executor)) for a in cfg.workers), default=0.0)
    if period <= 0:
        return None
    return start_lease_broker(f"{plan.name}-leases", plan.namespace, [a.id for a in cfg.workers], rebalance_s=period)


def _agents(plan: LaunchPlan, bank: Any, bank_cfg: ReasoningBankConfig | None,
            coordinators: Mapping[str, Any], leases: Any = None) -> dict[str, Any]:
    import ray

    cfg = plan.config
    store = NamedActor(f"{plan.name}-bank", plan.namespace) if bank is not None else None
    direct = None if bank is not None or bank_cfg is None else bank_cfg.to_dict(keep_secrets=True)
    out: dict[str, Any] = {}
    n = len(cfg.workers)
    for a in cfg.workers:
        parent_id = parent_of(plan.topology, a.id, consensus=cfg.consensus_learning)
        seat = LeaseSeat(leases, a.id, 0.2 / n) if leases is not None else None
        executor = leased_executor(plan.agent_executors.get(a.id, plan.executor), n, seat)
        out[a.id] = ray.remote(AgentActor).options(
            name=f"{plan.name}-{a.id}", num_cpus=0, max_restarts=cfg.max_restarts, max_task_retries=0,
            scheduling_strategy=agent_scheduling(cfg),
        ).remote(a.id, agent_engine_config(plan.sona_config, a), executor,
                 agent_type=a.type, store=store, bank_config=direct,
                 parent=NamedActor(f"{plan.name}-{parent_id}", plan.namespace) if parent_id in coordinators else None,
                 shared_bank=cfg.shared_reasoning_bank, retrieve_k=cfg.retrieve_k,
                 store_min_reward=cfg.store_min_reward, store_novelty=cfg.store_novelty,
                 checkpoint_dir=str(plan.checkpoint_dir), checkpoint_every=cfg.checkpoint_every, seed=cfg.seed,
                 telemetry=plan.telemetry, engine_batch=plan.engine_batch, max_concurrency=plan.shares.get(a.id))
    return out


def agent_scheduling(cfg: SwarmConfig) -> Any:
    """The Ray scheduling strategy of the agent actors for ``cfg.placement``: ``"SPREAD"`` (one
    node after another, also when Ray restarts an agent whose node was lost), the driver's node
    for ``pack`` (a hard affinity: the agents live and die with the driver's node), or
    ``"DEFAULT"`` (Ray's hybrid policy). Needs Ray up for ``pack``.

    Example:
        >>> agent_scheduling(SwarmConfig(placement="spread")), agent_scheduling(SwarmConfig())
        ('SPREAD', 'DEFAULT')
    """
    if cfg.placement == "spread":
        return "SPREAD"
    if cfg.placement == "pack":
        return driver_node_affinity()
    return "DEFAULT"


def service_scheduling(cfg: SwarmConfig) -> Any:
    """The Ray scheduling strategy of the bank and coordinator actors: ``"DEFAULT"`` for
    ``placement: default``, else the driver's node (:func:`driver_node_affinity`). Needs Ray up
    for pack/spread.

    Example:
        >>> service_scheduling(SwarmConfig())
        'DEFAULT'
    """
    return "DEFAULT" if cfg.placement == "default" else driver_node_affinity()


def driver_node_affinity() -> Any:
    """A hard Ray node-affinity strategy to this driver's node: a soft one lets the raylet spill
    a burst of actor creations to other nodes (seen on a 3-node test cluster), and an actor
    pinned here dies only with the node the driver itself runs on."""
    import ray  # lazily, as everywhere here: start_ray prepares Ray's environment first
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def launch(plan: LaunchPlan) -> SwarmActors:
    """Start the bank, the coordinators (root first) and the agents, and wait until each answers
    a ping. Ray must be up (``runtime.startup.start_ray``)."""
    import ray

    bank, bank_cfg = _bank(plan)
    coordinators = _coordinators(plan)
    leases = _lease_broker(plan)
    agents = _agents(plan, bank, bank_cfg, coordinators, leases)
    actors = SwarmActors(bank, bank_cfg, coordinators, agents, leases)
    ray.get([h.ping.remote() for h in actors.all()])
    return actors


def leased_executor(executor: Any, shares: int, seat: LeaseSeat | None = None) -> Any:
    """The executor an agent of ``shares`` gets: a copy holding ``1/shares`` of each rate-limit
    budget when it has rate limits (``lease_limits``, also of a wrapper's ``inner`` executor, as
    agent definitions' hooks wrap it), else ``executor`` itself. With a ``seat`` at a lease
    broker and ``rate_limits.rebalance_s`` > 0, the copy's limiter takes its shares from the
    broker (rebalanced by demand, :mod:`~swarm_sona.executors.leases`) instead.

    Example:
        >>> from swarm_sona.executors.leases import LeaseBroker
        >>> from swarm_sona.executors.openai_chat import OpenAIChatExecutor
        >>> ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None, limits={"default": {"rpm": 600}})
        >>> leased_executor(ex, 4).limiter.config.shares, ex.limiter.config.shares
        (4, 1)
        >>> ex2 = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None,
        ...                          limits={"default": {"rpm": 600}, "rebalance_s": 0.5})
        >>> leased_executor(ex2, 2, LeaseBroker(["a", "b"]).seat("a")).limiter.share("m")
        0.5
    """
    inner = vars(executor).get("inner") if hasattr(executor, "__dict__") else None
    if inner is not None:   # a wrapper (which may forward attributes to the executor it wraps)
        leased = leased_executor(inner, shares, seat)
        if leased is inner:
            return executor
        ex = copy.copy(executor)
        ex.inner = leased
        return ex
    if callable(getattr(executor, "lease_limits", None)):
        ex = copy.copy(executor)
        ex.lease_limits(shares)
        limiter = getattr(ex, "limiter", None)
        if seat is not None and limiter is not None and limiter.config.rebalance_s > 0:
            limiter.attach_lease(seat.source, seat.member, seat.floor_share)
        return ex
    return executor


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
