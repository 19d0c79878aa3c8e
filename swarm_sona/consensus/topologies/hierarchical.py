"""Hierarchical: queens merge their workers (level 1), the root queen merges the queens (level 2).

Workers are assigned to queens round-robin in sorted order unless ``groups`` is given. The
merged root adapter goes back down: root -> queens -> workers.

Example:
    >>> from swarm_sona.consensus.topologies.hierarchical import Hierarchical
    >>> h = Hierarchical(["w1", "w2", "w3", "w4"], ["q1", "q2"])
    >>> h.groups
    {'q1': ('w1', 'w3'), 'q2': ('w2', 'w4')}
    >>> h.edges()["q2"]
    ['q1', 'w2', 'w4']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swarm_sona.consensus.rules import get_rule
from swarm_sona.consensus.topologies.base import Broadcast, MergeStep, Stage, Topology, TopologyError

__all__ = ["Hierarchical"]


class Hierarchical(Topology):
    """Two-level merge. ``rule`` merges workers into their queen; ``top_rule`` (default: the
    same rule, or fedavg when fewer than 3 queens make a robust rule meaningless) merges the
    queens into the root queen (the first coordinator)."""

    name = "hierarchical"
    central = True

    def __init__(self, workers: Sequence[str], coordinators: Sequence[str] = ("queen",), *,
                 rule: str | Mapping[str, Any] = "fedavg", top_rule: str | Mapping[str, Any] | None = None,
                 groups: Mapping[str, Sequence[str]] | None = None, rounds: int = 1) -> None:
        super().__init__(workers, tuple(coordinators) or ("queen",), rule=rule, rounds=rounds)
        queens = self.coordinators
        if groups is None:
            ws = sorted(self.workers)
            self.groups = {q: tuple(ws[i::len(queens)]) for i, q in enumerate(queens)}
        else:
            self.groups = {q: tuple(groups.get(q, ())) for q in queens}
            extra = set(groups) - set(queens)
            if extra:
                raise TopologyError(f"hierarchical: groups name unknown queens {sorted(extra)}")
            assigned = [w for g in self.groups.values() for w in g]
            if sorted(assigned) != sorted(self.workers):
                raise TopologyError("hierarchical: groups must assign every worker to exactly one queen")
        empty = [q for q, g in self.groups.items() if not g]
        if empty:
            raise TopologyError(f"hierarchical: queens without workers: {empty}")
        if top_rule is None:
            top_rule = self.rule.to_dict() if len(queens) >= 3 else "fedavg"
        self.top_rule = get_rule(top_rule)

    def stages(self, round_index: int = 0) -> list[Stage]:
        root = self.coordinators[0]
        kw = self.rule.kwargs
        out: list[Stage] = [[MergeStep(q, g, self.rule.name, rule_kwargs=kw) for q, g in self.groups.items()]]
        if len(self.coordinators) > 1:
            out.append([MergeStep(root, self.coordinators, self.top_rule.name, rule_kwargs=self.top_rule.kwargs)])
            out.append([Broadcast(root, self.coordinators[1:])])
        out.append([Broadcast(q, g) for q, g in self.groups.items()])
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["groups"] = {q: list(g) for q, g in self.groups.items()}
        d["top_rule"] = self.top_rule.to_dict()
        return d
