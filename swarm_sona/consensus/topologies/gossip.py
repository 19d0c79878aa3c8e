"""Gossip topologies: ring and mesh. No coordinator; each agent averages with neighbours.

With the default rule (``gossip``: Metropolis-Hastings mixing weights, doubly stochastic)
every round preserves the agents' average and contracts the disagreement by the mixing
matrix's second-largest eigenvalue modulus, so all agents converge to the average.
A robust rule name (``median``, ``trimmed_mean``...) instead merges each neighbourhood by
that rule (consensus, no longer exactly the average).

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.topologies.gossip import Ring
    >>> r = Ring(["a", "b", "c", "d"], rounds=30)
    >>> out = r.simulate({k: {"w": np.array([float(i)])} for i, k in enumerate("abcd")})
    >>> [round(float(out[k]["w"][0]), 6) for k in "abcd"]
    [1.5, 1.5, 1.5, 1.5]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.consensus.topologies.base import MergeStep, Stage, Topology, TopologyError, metropolis_weights

__all__ = ["Gossip", "Ring", "Mesh"]


class Gossip(Topology):
    """Base of the gossip topologies: subclasses give the neighbour graph of a round."""

    central = False

    def __init__(self, workers: Sequence[str], coordinators: Sequence[str] = (), *,
                 rule: str | Mapping[str, Any] = "gossip", rounds: int = 10) -> None:
        self.mixing_rule = rule
        super().__init__(workers, coordinators, rule="fedavg" if rule in ("gossip", "metropolis") else rule,
                         rounds=rounds)

    def check_agents(self) -> None:
        """No coordinator."""
        if self.coordinators:
            raise TopologyError(f"{self.name}: gossip topologies have no coordinator, got {list(self.coordinators)}")

    def neighbours(self, round_index: int) -> dict[str, list[str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def stages(self, round_index: int = 0) -> list[Stage]:
        nb = self.neighbours(round_index)
        if self.mixing_rule in ("gossip", "metropolis"):
            W = metropolis_weights(nb)
            return [[MergeStep(i, tuple(W[i]), None, weights=tuple(W[i].values())) for i in sorted(W)]]
        return [[MergeStep(i, tuple(sorted(set(nb[i]) | {i})), self.rule.name, rule_kwargs=self.rule.kwargs)
                 for i in sorted(nb)]]

    def mixing_matrix(self, round_index: int = 0) -> dict[str, dict[str, float]]:
        """Metropolis weights of round ``round_index``."""
        return metropolis_weights(self.neighbours(round_index))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["rule"] = {"name": self.mixing_rule} if isinstance(self.mixing_rule, str) else dict(self.mixing_rule)
        d["contraction"] = self.expected_contraction(self.mixing_matrix(0))
        return d


class Ring(Gossip):
    """Each agent exchanges with its left and right neighbour (sorted ring order) every round.

    Contraction per round for n agents with Metropolis weights 1/3: ``1/3 + 2/3 cos(2 pi / n)``.
    """

    name = "ring"

    def neighbours(self, round_index: int = 0) -> dict[str, list[str]]:
        ids = sorted(self.workers)
        n = len(ids)
        if n == 1:
            return {ids[0]: []}
        return {ids[i]: sorted({ids[(i - 1) % n], ids[(i + 1) % n]}) for i in range(n)}


class Mesh(Gossip):
    """Each round every agent contacts ``fanout`` peers drawn at random (seeded by ``seed`` and
    the round), links are symmetric; ``fanout >= n - 1`` is the full mesh (exact average in
    one round)."""

    name = "mesh"

    def __init__(self, workers: Sequence[str], coordinators: Sequence[str] = (), *,
                 rule: str | Mapping[str, Any] = "gossip", rounds: int = 5, fanout: int = 2, seed: int = 0) -> None:
        super().__init__(workers, coordinators, rule=rule, rounds=rounds)
        if isinstance(fanout, bool) or not isinstance(fanout, int) or fanout < 1:
            raise TopologyError(f"mesh: fanout must be an integer >= 1, got {fanout!r}")
        self.fanout = fanout
        self.seed = int(seed)

    def neighbours(self, round_index: int = 0) -> dict[str, list[str]]:
        ids = sorted(self.workers)
        n = len(ids)
        nb: dict[str, set[str]] = {i: set() for i in ids}
        if self.fanout >= n - 1:
            for i in ids:
                nb[i] = set(ids) - {i}
            return {k: sorted(v) for k, v in nb.items()}
        digest = hashlib.blake2b(f"{self.seed}:{round_index}".encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        for a, i in enumerate(ids):
            others = [j for j in range(n) if j != a]
            for b in rng.choice(others, size=self.fanout, replace=False):
                nb[i].add(ids[int(b)])
                nb[ids[int(b)]].add(i)
        return {k: sorted(v) for k, v in nb.items()}

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(fanout=self.fanout, seed=self.seed)
        return d
