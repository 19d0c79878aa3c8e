"""The topology protocol: who sends adapter states to whom, and which rule merges them.

A topology turns a list of node ids into a *schedule*: a list of stages, each a list of
:class:`MergeStep` (a target node merges the states of some source nodes, by a named rule or
by fixed mixing weights) and :class:`Broadcast` (a node's state is copied to others). Steps
in one stage read the states as they were before the stage, so a stage can run in parallel.
The same schedule drives the Ray actors (:mod:`swarm_sona.runtime.swarm`) and the pure-numpy
:meth:`Topology.simulate` used to measure convergence. A new topology is one subclass that
implements :meth:`Topology.stages`.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.topologies import get_topology
    >>> topo = get_topology("star", workers=["a", "b"])
    >>> out = topo.simulate({"a": {"w": np.zeros(2)}, "b": {"w": np.ones(2)}})
    >>> out["a"]["w"].tolist(), out["coordinator"]["w"].tolist()
    ([0.5, 0.5], [0.5, 0.5])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from swarm_sona.consensus.rules import get_rule
from swarm_sona.consensus.updates import AgentUpdate, MergeError

__all__ = ["TopologyError", "MergeStep", "Broadcast", "SyncPlan", "Topology", "metropolis_weights", "disagreement"]


class TopologyError(ValueError):
    """A topology was given invalid nodes, groups or parameters."""


@dataclass(frozen=True)
class MergeStep:
    """``target`` replaces its state by the merge of ``sources``' states.

    ``rule`` names a merge rule (:mod:`swarm_sona.consensus.rules`); with ``rule=None`` the merge is the
    weighted sum with ``weights`` (aligned with ``sources``, summing to 1): gossip mixing.
    """

    target: str
    sources: tuple[str, ...]
    rule: str | None = "fedavg"
    weights: tuple[float, ...] | None = None
    rule_kwargs: tuple[tuple[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"op": "merge", "target": self.target, "sources": list(self.sources), "rule": self.rule,
                "weights": None if self.weights is None else list(self.weights),
                "rule_kwargs": dict(self.rule_kwargs)}


@dataclass(frozen=True)
class Broadcast:
    """``source``'s state is installed on every node of ``targets``."""

    source: str
    targets: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"op": "broadcast", "source": self.source, "targets": list(self.targets)}


Stage = list[MergeStep | Broadcast]


@dataclass(frozen=True)
class SyncPlan:
    """What one synchronisation does: the stages in order (steps of a stage read the states as
    they were before it, so they may run in parallel), the node holding the merged adapter
    (None for gossip) and the rule of the topology.

    Example:
        >>> from swarm_sona.consensus.topologies import get_topology
        >>> p = get_topology("star", ["a", "b"]).plan()
        >>> p.root, [type(s).__name__ for st in p.stages for s in st]
        ('coordinator', ['MergeStep', 'Broadcast'])
    """

    topology: str
    sync_index: int
    stages: tuple[tuple[MergeStep | Broadcast, ...], ...]
    root: str | None
    rule: str

    def merge_steps(self) -> list[MergeStep]:
        """Every merge step of the plan, in order."""
        return [s for st in self.stages for s in st if isinstance(s, MergeStep)]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {"topology": self.topology, "sync_index": self.sync_index, "root": self.root, "rule": self.rule,
                "stages": [[s.to_dict() for s in st] for st in self.stages]}


def metropolis_weights(neighbours: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Metropolis-Hastings mixing weights of an undirected graph (doubly stochastic).

    ``w_ij = 1 / (1 + max(deg_i, deg_j))`` for neighbours, ``w_ii = 1 - sum_j w_ij``. Gossip
    with these weights preserves the average and converges to it on a connected graph.

    Example:
        >>> w = metropolis_weights({"a": ["b"], "b": ["a"]})
        >>> w["a"]
        {'a': 0.5, 'b': 0.5}
    """
    nb = {i: sorted(set(js) - {i}) for i, js in neighbours.items()}
    for i, js in nb.items():
        for j in js:
            if j not in nb or i not in nb[j]:
                raise TopologyError(f"neighbour graph is not symmetric: {i}->{j}")
    deg = {i: len(js) for i, js in nb.items()}
    out: dict[str, dict[str, float]] = {}
    for i in sorted(nb):
        row = {j: 1.0 / (1.0 + max(deg[i], deg[j])) for j in nb[i]}
        row[i] = 1.0 - sum(row.values())
        out[i] = {k: row[k] for k in sorted(row)}
    return out


def disagreement(states: Mapping[str, Mapping[str, np.ndarray]],
                 reference: Mapping[str, np.ndarray] | None = None) -> float:
    """Largest relative distance of any node's state from ``reference`` (default: their mean).

    ``max_i ||x_i - ref|| / max(||ref||, 1e-12)`` over the flat parameters.

    Example:
        >>> import numpy as np
        >>> disagreement({"a": {"w": np.array([1.0])}, "b": {"w": np.array([3.0])}})
        0.5
    """
    ids = sorted(states)
    if not ids:
        raise TopologyError("disagreement of no states")
    names = sorted(states[ids[0]])
    flat = {i: np.concatenate([np.asarray(states[i][k], np.float64).ravel() for k in names]) for i in ids}
    if reference is None:
        ref = np.mean(np.stack([flat[i] for i in ids]), axis=0)
    else:
        ref = np.concatenate([np.asarray(reference[k], np.float64).ravel() for k in names])
    scale = max(float(np.linalg.norm(ref)), 1e-12)
    return max(float(np.linalg.norm(flat[i] - ref)) for i in ids) / scale


def _check_ids(ids: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(ids, str):
        raise TopologyError(f"{what} must be a list of ids, not a string")
    out = tuple(ids)
    for i in out:
        if not isinstance(i, str) or not i:
            raise TopologyError(f"{what}: ids must be non-empty strings, got {i!r}")
    if len(set(out)) != len(out):
        raise TopologyError(f"{what}: duplicate ids in {list(out)}")
    return out


class Topology(ABC):
    """Base class: nodes, the merge rule, and the schedule of one synchronisation.

    Subclasses set ``name`` (and optionally ``aliases``) and ``central`` (True when a
    coordinator node holds the merged adapter), implement :meth:`stages`, and may override
    :meth:`check_agents` to refuse agents they cannot serve. Register one with
    :func:`swarm_sona.consensus.topologies.register_topology`.
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    central: ClassVar[bool] = True

    def __init__(self, workers: Sequence[str], coordinators: Sequence[str] = (), *,
                 rule: str | Mapping[str, Any] = "fedavg", rounds: int = 1) -> None:
        self.workers = _check_ids(workers, "workers")
        self.coordinators = _check_ids(coordinators, "coordinators")
        if not self.workers:
            raise TopologyError(f"{self.name}: needs at least one worker")
        clash = set(self.workers) & set(self.coordinators)
        if clash:
            raise TopologyError(f"{self.name}: ids used as both worker and coordinator: {sorted(clash)}")
        try:
            self.rule = get_rule(rule)
        except MergeError as exc:
            raise TopologyError(f"{self.name}: {exc}") from exc
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise TopologyError(f"{self.name}: rounds must be an integer >= 1, got {rounds!r}")
        self.rounds = rounds
        self.check_agents()

    def check_agents(self) -> None:
        """Refuse workers/coordinators this topology cannot serve (raise :class:`TopologyError`).
        The base accepts any non-empty, distinct workers and distinct coordinators."""
        if not self.workers:
            raise TopologyError(f"{self.name}: needs at least one worker")

    def plan(self, sync_index: int = 0) -> SyncPlan:
        """The :class:`SyncPlan` of synchronisation number ``sync_index``."""
        if isinstance(sync_index, bool) or not isinstance(sync_index, int) or sync_index < 0:
            raise TopologyError(f"{self.name}: sync_index must be an integer >= 0, got {sync_index!r}")
        return SyncPlan(self.name, sync_index, tuple(tuple(st) for st in self.schedule(sync_index)), self.root,
                        self.rule.name)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node id: coordinators first, then workers."""
        return self.coordinators + self.workers

    @property
    def root(self) -> str | None:
        """The node holding the swarm's merged adapter (None for gossip topologies)."""
        return self.coordinators[0] if self.central and self.coordinators else None

    @abstractmethod
    def stages(self, round_index: int = 0) -> list[Stage]:
        """The schedule of one synchronisation round."""

    def schedule(self, sync_index: int = 0) -> list[Stage]:
        """All stages of synchronisation number ``sync_index`` (``rounds`` rounds for gossip;
        round numbers keep increasing across synchronisations, so a random mesh varies)."""
        out: list[Stage] = []
        for r in range(self.rounds):
            out.extend(self.stages(sync_index * self.rounds + r))
        return out

    def edges(self) -> dict[str, list[str]]:
        """Who sends to whom in round 0: sender -> sorted receivers."""
        out: dict[str, set[str]] = {n: set() for n in self.nodes}
        for stage in self.stages(0):
            for step in stage:
                if isinstance(step, MergeStep):
                    for s in step.sources:
                        if s != step.target:
                            out[s].add(step.target)
                else:
                    out[step.source].update(t for t in step.targets if t != step.source)
        return {k: sorted(v) for k, v in out.items()}

    def describe(self) -> dict[str, Any]:
        """Plain-data summary: name, nodes, rule, rounds, edges, tolerated faults."""
        return {"name": self.name, "central": self.central, "workers": list(self.workers),
                "coordinators": list(self.coordinators), "rule": self.rule.to_dict(), "rounds": self.rounds,
                "edges": self.edges(), "tolerates": self.rule.tolerates(len(self.workers))}

    # ---- pure-numpy execution --------------------------------------------------------
    def run_step(self, step: MergeStep, states: Mapping[str, Mapping[str, np.ndarray]],
                 weights: Mapping[str, float]) -> dict[str, np.ndarray]:
        """The merged state a :class:`MergeStep` produces from ``states``."""
        missing = [s for s in step.sources if s not in states]
        if missing:
            raise TopologyError(f"{self.name}: step into {step.target} lacks states of {missing}")
        if step.rule is None:
            ws = step.weights or tuple(1.0 / len(step.sources) for _ in step.sources)
            names = sorted(states[step.sources[0]])
            return {k: np.asarray(sum(w * np.asarray(states[s][k], np.float64)
                                      for w, s in zip(ws, step.sources, strict=True)))
                    .astype(np.asarray(states[step.sources[0]][k]).dtype) for k in names}
        rule = get_rule(step.rule, **dict(step.rule_kwargs))
        ups = [AgentUpdate(s, 0, dict(states[s]), weight=weights.get(s, 1.0)) for s in sorted(step.sources)]
        return rule(ups)

    def simulate(self, states: Mapping[str, Mapping[str, np.ndarray]], *, syncs: int = 1,
                 weights: Mapping[str, float] | None = None, start_sync: int = 0) -> dict[str, dict[str, np.ndarray]]:
        """Run ``syncs`` synchronisations on in-memory states; returns every node's state.

        ``states`` holds the workers' states (coordinators start empty); ``weights`` their
        trajectory counts (default 1). A coordinator's weight is the count its rule reports
        (:meth:`MergeRule.count`: the sum for fedavg, ``n x median`` for robust rules).
        """
        cur: dict[str, dict[str, np.ndarray]] = {k: dict(v) for k, v in states.items()}
        missing = [w for w in self.workers if w not in cur]
        if missing:
            raise TopologyError(f"{self.name}: no state for workers {missing}")
        w = {k: 1.0 for k in self.nodes}
        w.update(weights or {})
        for sync in range(start_sync, start_sync + syncs):
            for stage in self.schedule(sync):
                new: dict[str, dict[str, np.ndarray]] = {}
                for step in stage:
                    if isinstance(step, MergeStep):
                        new[step.target] = self.run_step(step, cur, w)
                        if step.rule is not None and step.target not in step.sources:
                            # the count the merge stands for, as the rule reports it (robust: n x median)
                            rule = get_rule(step.rule, **dict(step.rule_kwargs))
                            w[step.target] = rule.count([AgentUpdate(s, 0, {"_": np.zeros(1)}, weight=w[s])
                                                         for s in step.sources])
                    else:
                        for t in step.targets:
                            new[t] = {k: v.copy() for k, v in cur[step.source].items()}
                cur.update(new)
        return cur

    def rounds_to_converge(self, states: Mapping[str, Mapping[str, np.ndarray]], tol: float, *,
                           max_syncs: int = 1000) -> int:
        """Synchronisations until every worker is within ``tol`` (relative) of the workers' mean."""
        cur = {k: dict(v) for k, v in states.items()}
        for i in range(1, max_syncs + 1):
            cur = self.simulate(cur, syncs=1, start_sync=i - 1)
            if disagreement({k: cur[k] for k in self.workers}) <= tol:
                return i
        return -1

    @staticmethod
    def expected_contraction(mixing: Mapping[str, Mapping[str, float]]) -> float:
        """Second-largest |eigenvalue| of a mixing matrix: the per-round gossip contraction."""
        ids = sorted(mixing)
        W = np.array([[mixing[i].get(j, 0.0) for j in ids] for i in ids])
        ev = np.sort(np.abs(np.linalg.eigvals(W)))[::-1]
        return float(ev[1]) if len(ev) > 1 else 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={list(self.workers)}, coordinators={list(self.coordinators)}, " \
               f"rule={self.rule.name!r})"
