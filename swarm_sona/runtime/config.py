"""Swarm spec: topology, agents, sharing, consensus, dispatch and fault-tolerance settings.

Built on :class:`~swarm_sona.core.config.ConfigBase`, so camelCase keys of the integration guide
(``sharedReasoningBank``, ``consensusLearning``, ``loraRank``) and snake_case both work,
and unknown keys or out-of-range values are errors that name the field.

Agents whose ``type`` is ``coordinator`` (or ``queen``) are coordinators: in a star the
first one merges everyone; in a hierarchy each is a queen with its own group of workers,
the first is the root. If none is given, a star or hierarchy gets one implicit coordinator
(id ``coordinator``) whose rank is the largest worker rank. Gossip topologies (ring, mesh)
have no coordinator.

Example:
    >>> from swarm_sona.runtime.config import SwarmConfig
    >>> cfg = SwarmConfig.from_dict({"topology": "hierarchical", "agents": [
    ...     {"id": "queen-1", "type": "coordinator", "loraRank": 16},
    ...     {"id": "worker-1", "type": "coder", "loraRank": 8},
    ...     {"id": "worker-2", "type": "tester"}], "sharedReasoningBank": True, "consensusLearning": True})
    >>> [a.id for a in cfg.workers], [a.id for a in cfg.coordinators]
    (['worker-1', 'worker-2'], ['queen-1'])
    >>> cfg.agents[1].lora_rank
    8
    >>> SwarmConfig.from_dict({"topology": "stra", "agents": [{"id": "a"}]})
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: swarm.topology: must be one of ['star', 'hierarchical', 'ring', 'mesh'], got 'stra' (did you mean 'star'?)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from swarm_sona.consensus.topologies import TOPOLOGIES, TopologyError, topology_class
from swarm_sona.core.config import ConfigBase, ConfigError, field_doc, load_config_file
from swarm_sona.core.references import is_reference
from swarm_sona.engine.config import SONAConfig

__all__ = ["AgentSpec", "SwarmConfig", "COORDINATOR_TYPES", "PLACEMENTS", "check_topology"]


def check_topology(cfg: ConfigBase, name: str = "topology") -> None:
    """ConfigError unless ``cfg.<name>`` is a registered topology or a ``"package.module:Class"``
    reference that imports to a :class:`~swarm_sona.consensus.topologies.Topology` subclass.

    Example:
        >>> SwarmConfig(topology="collections:OrderedDict")
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: swarm.topology: topology 'collections:OrderedDict': expected a Topology subclass, got <class 'collections.OrderedDict'>
    """
    value = getattr(cfg, name)
    if not is_reference(value):
        cfg._check_choice(name, tuple(TOPOLOGIES))   # the registry: built-ins + register_topology
        return
    try:
        topology_class(value)
    except TopologyError as exc:
        raise ConfigError(f"{cfg._where(name)}: {exc}") from exc

COORDINATOR_TYPES = ("coordinator", "queen")
PLACEMENTS = ("default", "pack", "spread")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class AgentSpec(ConfigBase):
    """One agent of the swarm.

    Example:
        >>> AgentSpec.from_dict({"name": "coder-1", "type": "coder", "loraRank": 4}).id
        'coder-1'
    """

    _section: ClassVar[str] = "agent"

    id: str = field_doc("Unique agent id (letters, digits, _ . : -; at most 64 characters).", "", alias=("name",))
    type: str = field_doc("Role: coordinator/queen, or a worker type (coder, reviewer, tester, researcher...).", "worker")
    lora_rank: int | None = field_doc("BaseLoRA rank of this agent (None = the swarm's sona.lora.rank).", None)
    capabilities: tuple[str, ...] = field_doc("Free-form capability tags.", factory=tuple)
    description: str = field_doc("What the agent does.", "")

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise ConfigError(f"{self._where('id')}: invalid agent id {self.id!r} "
                              "(letters, digits, _ . : -; 1-64 characters)")
        if not isinstance(self.type, str) or not self.type:
            raise ConfigError(f"{self._where('type')}: must be a non-empty string")
        if self.lora_rank is not None:
            self._check_range("lora_rank", 1, 256)

    @property
    def is_coordinator(self) -> bool:
        """True for coordinator / queen agents."""
        return self.type.lower() in COORDINATOR_TYPES


@dataclass(frozen=True)
class SwarmConfig(ConfigBase):
    """Settings of a :class:`~swarm_sona.runtime.swarm.SwarmSONA` swarm (see module docs)."""

    _section: ClassVar[str] = "swarm"

    topology: str = field_doc("Who shares with whom: star, hierarchical, ring, mesh or a registered topology.", "star")
    agents: tuple[AgentSpec, ...] = field_doc("The agents (workers and coordinators).", factory=tuple)
    shared_reasoning_bank: bool = field_doc("All agents read each other's patterns (False: each sees only its own).", True)
    consensus_learning: bool = field_doc("Merge adapters across agents by the topology's rule (False: isolated).", True)
    merge_rule: str = field_doc("fedavg, fisher, median, trimmed_mean, krum, multi_krum, ties or dare.", "fedavg")
    merge_options: dict[str, Any] = field_doc("Keyword options of the merge rule, e.g. {f: 1}.", factory=dict)
    sync_every: int = field_doc("Tasks per agent between consensus synchronisations.", 128)
    gossip_rounds: int = field_doc("ring/mesh: gossip rounds per synchronisation.", 3)
    fanout: int = field_doc("mesh: peers each agent contacts per gossip round.", 2)
    batch_size: int = field_doc("Tasks per Ray call to an agent (amortises ~1 ms per call).", 128)
    retrieve_k: int = field_doc("Patterns retrieved per task (0 = no retrieval).", 1)
    store_min_reward: float = field_doc("Trajectories with at least this reward are stored as patterns (1.1 = none).", 0.5)
    store_novelty: float = field_doc("...unless the best retrieved pattern is at least this cosine-similar (no duplicates).", 0.8)
    ewc_consolidate: bool = field_doc("Coordinator runs EWC++ consolidation on the merged adapter.", True)
    sona: SONAConfig = field_doc("Engine settings shared by every agent (ranks overridden per agent).", factory=SONAConfig)
    checkpoint_dir: str | None = field_doc("Where actors checkpoint (None = a temporary directory).", None)
    checkpoint_every: int = field_doc("Agents checkpoint every N tasks (coordinators at every merge).", 2048)
    max_restarts: int = field_doc("Ray restarts of a dead actor (-1 = unlimited).", 3)
    address: str | None = field_doc("Ray address (None = RAY_ADDRESS or a new local Ray on 127.0.0.1).", None)
    num_cpus: int | None = field_doc("CPUs of a locally started Ray (None = all).", None)
    seed: int = field_doc("Seed for everything the swarm draws.", 0)
    max_concurrency: int | None = field_doc("Executor calls outstanding in the whole swarm, split into per-agent "
                                            "shares (None = each executor's own cap).", None)
    infra_error_limit: int = field_doc("Infrastructure failures in a row (auth, rate_limit, server, timeout, "
                                       "network...) that stop a run (0 = never).", 3)
    placement: str = field_doc("Where actors go: 'default' (Ray decides), 'pack' (every actor on the driver's "
                               "node) or 'spread' (agents across the nodes, bank and coordinators on "
                               "the driver's node).", "default")

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))
        check_topology(self)
        ids = [a.id for a in self.agents]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ConfigError(f"{self._where('agents')}: duplicate agent id(s) {dup}")
        if self.agents and not self.workers:
            raise ConfigError(f"{self._where('agents')}: at least one worker (non-coordinator) agent is needed")
        if self.topology in ("ring", "mesh") and self.coordinators:
            raise ConfigError(f"{self._where('agents')}: topology {self.topology!r} has no coordinator; "
                              f"remove {[a.id for a in self.coordinators]} or use star/hierarchical")
        if self.topology == "star" and len(self.coordinators) > 1:
            raise ConfigError(f"{self._where('agents')}: a star has one coordinator, got "
                              f"{[a.id for a in self.coordinators]}")
        for n in ("sync_every", "gossip_rounds", "fanout", "batch_size", "checkpoint_every"):
            self._check_range(n, 1)
        self._check_range("retrieve_k", 0, 100)
        self._check_range("store_min_reward", 0)
        self._check_range("store_novelty", -1, 1.0001)
        self._check_range("max_restarts", -1)
        if self.num_cpus is not None:
            self._check_range("num_cpus", 1)
        if self.max_concurrency is not None:
            self._check_range("max_concurrency", 1)
        self._check_range("infra_error_limit", 0)
        self._check_choice("placement", PLACEMENTS)
        if self.checkpoint_dir is not None:
            self._check_checkpoint_dir()
        from swarm_sona.consensus.rules import get_rule
        from swarm_sona.consensus.updates import MergeError

        try:
            get_rule(self.merge_rule, **self.merge_options)
        except MergeError as exc:
            raise ConfigError(f"{self._where('merge_rule')}: {exc}") from exc

    def _check_checkpoint_dir(self) -> None:
        """ConfigError unless ``checkpoint_dir`` is a non-empty local path or a URI whose scheme
        fsspec knows (``memory://``, ``file://``, ``s3://``...; fsspec is the ``storage`` extra)."""
        from swarm_sona.core import storage

        where = self.checkpoint_dir
        if not isinstance(where, str) or not where.strip():
            raise ConfigError(f"{self._where('checkpoint_dir')}: must be a non-empty path or storage URI, got {where!r}")
        if "://" in where and not storage.is_uri(where):
            raise ConfigError(f"{self._where('checkpoint_dir')}: {where!r} is neither a local path nor a "
                              f"storage URI (scheme://...)")
        try:
            storage.check_location(where)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"{self._where('checkpoint_dir')}: {exc}") from exc

    @classmethod
    def from_spec(cls, config: Any = None, **spec: Any) -> SwarmConfig:
        """The config of ``SwarmSONA(config, **spec)``: ``config`` (a :class:`SwarmConfig`, a
        mapping, a spec file path, or None) with the keyword keys that are not None on top;
        ``agents`` may be a count (``agent-0``... workers); no agents at all means 4 workers.

        Example:
            >>> [a.id for a in SwarmConfig.from_spec(None, agents=2, topology=None).agents]
            ['agent-0', 'agent-1']
        """
        if isinstance(config, SwarmConfig):
            data = config.to_dict(keep_secrets=True)
        elif isinstance(config, (str, os.PathLike)):
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
        return cls.from_dict(data)

    @property
    def workers(self) -> list[AgentSpec]:
        """The task-running agents, in spec order."""
        return [a for a in self.agents if not a.is_coordinator]

    @property
    def coordinators(self) -> list[AgentSpec]:
        """The coordinator / queen agents, in spec order."""
        return [a for a in self.agents if a.is_coordinator]
