"""One module outside the package that extends swarm_sona at its registries, the way a user
would: a merge rule, a router strategy, a topology and a bank backend, each named in a swarm's
spec by import reference (``"extension_pkg.my_extensions:MIDRANGE"`` etc.). Every process that meets such a
name (the driver, the agent and coordinator actors in Ray workers) imports this module and
registers the object under the reference; nothing registers at import, so importing the module
changes no registry.

Each extension appends ``"<kind> <pid>"`` to the file named by ``$SWARM_SONA_EXTENSION_LOG``
(when set) every time it runs, so a test can see which processes used which extension.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> ups = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abc", [0.0, 1.0, 4.0])]
    >>> MIDRANGE(ups)["x"].tolist(), longest_name("medium", 0.5, 0.0, 1.0, None)
    ([2.0], (6, 0.5))
    >>> FanIn(["w1", "w2"]).plan().root
    'hub'
    >>> from types import SimpleNamespace
    >>> counting_edge(SimpleNamespace(path=None, persist_to_disk=False), None).kind
    'edge'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.bank.backend import BankBackend, backend_spec
from swarm_sona.consensus.rules import MergeRule
from swarm_sona.consensus.topologies import Broadcast, MergeStep, Topology, TopologyError
from swarm_sona.consensus.updates import AgentUpdate

LOG_ENV = "SWARM_SONA_EXTENSION_LOG"
"""Environment variable naming the file each extension appends a line to when it runs."""


def record(kind: str) -> None:
    """Append ``"<kind> <pid>"`` to ``$SWARM_SONA_EXTENSION_LOG`` (nothing when it is unset)."""
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{kind} {os.getpid()}\n")


def midrange(updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """Per coordinate, the middle of the agents' range: ``(max + min) / 2``."""
    record("rule")
    out = {}
    for k in updates[0].params:
        x = np.stack([np.asarray(u.params[k], np.float64) for u in updates])
        out[k] = (x.max(axis=0) + x.min(axis=0)) / 2.0
    return out


MIDRANGE = MergeRule("midrange", midrange, tolerance=lambda n, **_: 0, tolerance_doc="0 (one bad agent moves it)",
                     description="the middle of the agents' range, per coordinate")
"""The merge rule; a spec names it ``"extension_pkg.my_extensions:MIDRANGE"``."""


def longest_name(model: str, quality: float, cost: float, speed: float, ctx: Any) -> tuple[float, ...]:
    """Router strategy: the model with the longest name wins (ties: higher quality)."""
    record("strategy")
    return (len(model), quality)


class FanIn(Topology):
    """One hub (default id ``hub``) merges every worker, then sends the merge back."""

    name = "fan_in"
    central = True

    def __init__(self, workers: Sequence[str], coordinators: Sequence[str] = ("hub",), *,
                 rule: str | Mapping[str, Any] = "fedavg", rounds: int = 1) -> None:
        super().__init__(workers, tuple(coordinators) or ("hub",), rule=rule, rounds=rounds)

    def check_agents(self) -> None:
        """Exactly one hub and at least two workers."""
        if len(self.coordinators) != 1 or len(self.workers) < 2:
            raise TopologyError(f"fan_in: needs one hub and >= 2 workers, got {list(self.coordinators)} "
                                f"and {list(self.workers)}")

    def stages(self, round_index: int = 0) -> list[list[MergeStep | Broadcast]]:
        record("topology")
        hub = self.coordinators[0]
        return [[MergeStep(hub, self.workers, self.rule.name, rule_kwargs=self.rule.kwargs)],
                [Broadcast(hub, self.workers)]]


class CountingBackend:
    """Bank backend: another backend's store, logging every write and search it serves."""

    def __init__(self, inner: BankBackend) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Store the points in the inner backend."""
        record("bank")
        self.inner.upsert(ids, vectors, payloads)

    def search(self, vector: np.ndarray, limit: int, conditions: Sequence[Any], *, with_vectors: bool = False,
               exact: bool = False) -> list[Any]:
        """The inner backend's nearest neighbours."""
        record("bank")
        return self.inner.search(vector, limit, conditions, with_vectors=with_vectors, exact=exact)


def counting_edge(config: Any, client: Any) -> CountingBackend:
    """Bank backend factory: the built-in embedded ``edge`` store at ``config.path``, counted.
    Like ``edge`` it needs a single owner (a swarm runs one bank actor for it)."""
    return CountingBackend(backend_spec("edge").build(config, None))


counting_edge.single_owner = True  # type: ignore[attr-defined]
