"""Star: every worker sends its adapter to one coordinator, which merges and broadcasts.

Example:
    >>> from swarm_sona.consensus.topologies.star import Star
    >>> Star(["w1", "w2"], rule="median").edges()
    {'coordinator': ['w1', 'w2'], 'w1': ['coordinator'], 'w2': ['coordinator']}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swarm_sona.consensus.topologies.base import Broadcast, MergeStep, Stage, Topology, TopologyError

__all__ = ["Star"]


class Star(Topology):
    """One coordinator (default id ``coordinator``) merges all workers by ``rule``, then
    broadcasts the merged adapter to every worker. Converges in one synchronisation."""

    name = "star"
    central = True

    def __init__(self, workers: Sequence[str], coordinators: Sequence[str] = ("coordinator",), *,
                 rule: str | Mapping[str, Any] = "fedavg", rounds: int = 1) -> None:
        super().__init__(workers, tuple(coordinators) or ("coordinator",), rule=rule, rounds=rounds)

    def check_agents(self) -> None:
        """Exactly one coordinator."""
        if len(self.coordinators) != 1:
            raise TopologyError(f"star: needs exactly one coordinator, got {list(self.coordinators)}")

    def stages(self, round_index: int = 0) -> list[Stage]:
        c = self.coordinators[0]
        kw = self.rule.kwargs
        return [[MergeStep(c, self.workers, self.rule.name, rule_kwargs=kw)], [Broadcast(c, self.workers)]]
