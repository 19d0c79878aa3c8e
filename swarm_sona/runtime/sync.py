"""Runs a topology's sync plan on the swarm's actors without stopping dispatch.

Central topologies (star, hierarchical): every agent pushes to its coordinator, each
:class:`~swarm_sona.consensus.topologies.MergeStep` becomes a coordinator ``merge`` over the refs
of its sources (pushes, or lower coordinators' merges: Ray orders them), a ``Broadcast`` installs
the final version on the other coordinators, and the final merge's ref rides along with each
agent's next batch (:meth:`SyncRunner.take_merged`). Gossip topologies (ring, mesh): ``rounds``
rounds of neighbour mixing from each agent's exported frame. The refs of a sync are kept and
reaped later (:meth:`SyncRunner.reap`): a failed call counts in ``counters["sync_errors"]``.

Example:
    >>> runner = SyncRunner(topology, counters=swarm.counters, telemetry=tel)   # doctest: +SKIP
    >>> runner.bind(agents, coordinators)                                        # doctest: +SKIP
    >>> refs = runner.start()            # one sync, in the background           # doctest: +SKIP
    >>> runner.run(wait=True)["version"]                                         # doctest: +SKIP
    2
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from swarm_sona.consensus.topologies import Broadcast, MergeStep, Topology
from swarm_sona.runtime.results import SyncSummary

__all__ = ["SyncRunner", "SyncResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncResult:
    """What :meth:`SyncRunner.run` did: the swarm's sync count and the version the agents
    installed (None for gossip, or without ``wait``)."""

    syncs: int
    version: int | None

    def to_dict(self) -> SyncSummary:
        """``{"syncs": ..., "version": ...}`` (what ``SwarmSONA.sync`` returns)."""
        return {"syncs": self.syncs, "version": self.version}


class SyncRunner:
    """The swarm's synchronisation (module docs). ``counters``: the swarm's counters (``syncs``
    and ``sync_errors`` are counted here); ``telemetry``: the driver's (a ``sync`` span carries
    the trace context of the pushes); ``enabled``: consensus learning on.

    :attr:`index` counts the syncs run (gossip schedules rotate by it; checkpointed with the
    swarm), :attr:`background` holds the refs not reaped yet.
    """

    def __init__(self, topology: Topology, *, counters: dict[str, Any], telemetry: Any, enabled: bool = True,
                 index: int = 0) -> None:
        self.topology = topology
        self.counters = counters
        self.tel = telemetry
        self.enabled = enabled
        self.index = index
        self.agents: dict[str, Any] = {}
        self.coordinators: dict[str, Any] = {}
        self.pending: dict[str, list[Any]] = {}   # agent -> merged refs to send with its next batch
        self.background: list[Any] = []

    def bind(self, agents: Mapping[str, Any], coordinators: Mapping[str, Any]) -> None:
        """Use these actor handles (after a start or restart); no merged ref is pending for them."""
        self.agents = dict(agents)
        self.coordinators = dict(coordinators)
        self.pending = {a: [] for a in self.agents}

    def take_merged(self, agent: str) -> list[Any]:
        """The merged refs for ``agent``'s next batch (and forget them)."""
        merged, self.pending[agent] = self.pending[agent], []
        return merged

    def start(self) -> list[Any]:
        """Kick off one synchronisation without waiting; returns the refs to wait on."""
        if not self.enabled:
            return []
        self.reap()   # finished calls of earlier syncs: the driver keeps no ref per sync
        self.counters["syncs"] += 1
        refs = self._central() if self.topology.central else self._gossip()
        self.index += 1
        self.background.extend(refs)
        return refs

    def _central(self) -> list[Any]:
        span = self.tel.begin("sync", attributes={"sync": self.counters["syncs"]})
        trace = self.tel.inject(span=span)
        pushes = {w: h.push.remote(trace=trace) for w, h in self.agents.items()}
        span.end()
        refs: list[Any] = []
        merged: dict[str, Any] = {}
        final = None
        for stage in self.topology.stages(0):
            for step in stage:
                if isinstance(step, MergeStep):
                    deps = [pushes[s] for s in step.sources if s in pushes] + \
                           [merged[s] for s in step.sources if s in merged]
                    merged[step.target] = self.coordinators[step.target].merge.remote(*deps)
                    # what the target holds after its merge: the merge returns None when an earlier
                    # one took its pushes already (a queen's push that reached the root before the
                    # root's own level-1 merge), and the agents still need that version
                    final = self.coordinators[step.target].latest.remote(merged[step.target])
                elif isinstance(step, Broadcast) and step.source in self.coordinators:
                    refs.extend(self.coordinators[t].install_if.remote(final)
                                for t in step.targets if t in self.coordinators)
        if final is not None:
            for w in self.agents:
                self.pending[w].append(final)
            refs.append(final)
        return refs

    def _gossip(self) -> list[Any]:
        refs: list[Any] = []
        rounds = self.topology.rounds
        for r in range(rounds):
            exports = {w: h.export_frame.remote() for w, h in self.agents.items()}
            for stage in self.topology.stages(self.index * rounds + r):
                for step in stage:
                    if isinstance(step, MergeStep):
                        refs.append(self.agents[step.target].mix.remote(
                            list(step.weights) if step.weights else None, [exports[s] for s in step.sources],
                            step.rule, dict(step.rule_kwargs)))
        return refs

    def reap(self, *, wait: bool = False) -> None:
        """Collect finished background calls (``wait``: all of them, blocking)."""
        if not self.background:
            return
        import ray  # lazily, as everywhere in the driver: start_ray prepares Ray's environment first

        ready, rest = ray.wait(self.background, num_returns=len(self.background), timeout=None if wait else 0)
        for r in ready:
            try:
                ray.get(r)
            except Exception as exc:
                self.counters["sync_errors"] += 1
                log.warning("background consensus call failed: %s", exc)
        self.background = list(rest)

    def run(self, *, wait: bool = True, rounds: int = 1,
            after_round: Callable[[], None] | None = None) -> SyncResult:
        """Run ``rounds`` synchronisations now; with ``wait`` block until every agent installed
        them (from a quiescent swarm: earlier background calls are reaped first).
        ``after_round`` runs after each round (the swarm drains its coordinators' warnings)."""
        import ray

        if wait:
            self.reap(wait=True)
        version = None
        for _ in range(rounds):
            refs = self.start()
            if wait:
                try:
                    ray.get(refs)
                except Exception as exc:
                    self.counters["sync_errors"] += 1
                    log.warning("sync failed: %s", exc)
                if self.topology.central:
                    pend = self.pending
                    self.pending = {w: [] for w in self.agents}
                    out = [v for v in (self._install(h, pend[w]) for w, h in self.agents.items()) if v is not None]
                    version = max(out) if out else None
            if after_round is not None:
                after_round()
        return SyncResult(self.counters["syncs"], version)

    def _install(self, handle: Any, refs: list[Any], deadline_s: float = 60.0) -> int | None:
        """Install ``refs`` on one agent, asking again while it is restarting (Ray raises
        ``ActorUnavailableError`` for a call to an actor between lives) until ``deadline_s``;
        an agent that stays away is counted in ``sync_errors`` and gets the version with its
        next batch instead (its merged refs ride along, see :meth:`take_merged`)."""
        import time

        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        end = time.monotonic() + deadline_s
        while True:
            try:
                return int(ray.get(handle.install.remote(refs)))
            except (ActorUnavailableError, RayActorError) as exc:
                if time.monotonic() >= end:
                    self.counters["sync_errors"] += 1
                    log.warning("sync: an agent did not come back to install the merged version: %s", exc)
                    return None
                time.sleep(0.2)

    def merged_params(self) -> dict[str, Any] | None:
        """The root coordinator's merged adapter (None for gossip or before the first merge)."""
        import ray

        from swarm_sona.consensus.messages import decode_merged

        root = self.topology.root
        if root is None or root not in self.coordinators:
            return None
        frame = ray.get(self.coordinators[root].latest.remote())
        return None if frame is None else decode_merged(frame)["params"]
