"""The swarm's lease broker on Ray: rate-limit shares rebalanced by demand across agent processes.

:class:`~swarm_sona.executors.leases.LeaseBroker` runs as one small named Ray actor
(``num_cpus=0``, restarted on failure: a restart starts from equal shares, which is safe);
each agent's limiter reaches it through a :class:`RayLease`, a client that pickles as the
actor's name only (so it travels inside the executor to every agent actor) and bounds each
call by ``timeout_s`` (a limiter that cannot reach the broker falls back to its floor share).

Example:
    >>> RayLease("swarm-sona-1a2b-leases", namespace="jobs", timeout_s=1.0)
    RayLease('swarm-sona-1a2b-leases', namespace='jobs')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swarm_sona.executors.leases import LeaseBroker
from swarm_sona.runtime.actors.calls import NamedActor, call

__all__ = ["RayLease", "start_lease_broker"]


class RayLease:
    """A :class:`~swarm_sona.executors.leases.LeaseSource` over the broker actor named ``name``."""

    def __init__(self, name: str, namespace: str | None = None, *, timeout_s: float = 2.0) -> None:
        if not (isinstance(timeout_s, (int, float)) and not isinstance(timeout_s, bool) and timeout_s > 0):
            raise ValueError(f"RayLease: timeout_s must be a positive number, got {timeout_s!r}")
        self.peer = NamedActor(name, namespace)
        self.timeout_s = float(timeout_s)
        self.owner: Any = None   # the creator's handle: keeps the actor alive (never pickled)

    def rebalance(self, member: str, demand: Mapping[str, float]) -> dict[str, float]:
        """The broker's :meth:`~swarm_sona.executors.leases.LeaseBroker.rebalance`, through Ray."""
        return dict(call(self.peer, "rebalance", member, dict(demand), timeout=self.timeout_s))

    def shares(self) -> dict[str, dict[str, float]]:
        """Every model's shares as the broker holds them (for stats and tests)."""
        return dict(call(self.peer, "shares", timeout=self.timeout_s))

    def __reduce__(self) -> Any:
        return (_client, (self.peer.name, self.peer.namespace, self.timeout_s))

    def __repr__(self) -> str:
        return f"RayLease({self.peer.name!r}, namespace={self.peer.namespace!r})"


def _client(name: str, namespace: str | None, timeout_s: float) -> RayLease:
    return RayLease(name, namespace, timeout_s=timeout_s)


def start_lease_broker(name: str, namespace: str | None, members: Sequence[str], *, rebalance_s: float,
                       floor: float = 0.2, grace_s: float | None = None, max_restarts: int = 3) -> RayLease:
    """Start the broker actor (named ``name``) for ``members`` and return a client of it; Ray must
    be up. ``grace_s`` defaults to ``rebalance_s`` (the wait before a released share is reused)."""
    import ray  # lazily: start_ray prepares Ray's environment first

    LeaseBroker(members, floor=floor, grace_s=rebalance_s if grace_s is None else grace_s,
                rebalance_s=rebalance_s)   # validate here, in the caller, with a clear message
    opts: dict[str, Any] = {"name": name, "num_cpus": 0, "max_restarts": max_restarts,
                            "max_task_retries": -1 if max_restarts else 0}
    if namespace is not None:
        opts["namespace"] = namespace
    handle: Any = ray.remote(LeaseBroker).options(**opts).remote(
        list(members), floor=floor, grace_s=rebalance_s if grace_s is None else grace_s, rebalance_s=rebalance_s)
    ray.get(handle.shares.remote(), timeout=60)   # up and answering (a constructor error is raised here)
    client = RayLease(name, namespace)
    client.owner = handle   # a named actor dies with its creator's last handle: the driver's client holds it
    return client
