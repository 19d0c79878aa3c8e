"""Topologies: who shares adapter states with whom and which rule merges them.

``star`` (coordinator merges all), ``hierarchical`` (queens merge workers, the root queen
merges queens), ``ring`` and ``mesh`` (gossip averaging with neighbours). A new topology is
one subclass of :class:`Topology` (``name``, ``stages()``, optionally ``check_agents()``)
plus one :func:`register_topology` call; :meth:`Topology.plan` returns its :class:`SyncPlan`.

Example:
    >>> from swarm_sona.consensus.topologies import get_topology
    >>> get_topology("mesh", workers=["a", "b", "c"], fanout=1).name
    'mesh'
"""

from __future__ import annotations

from swarm_sona.consensus.topologies.base import (
    Broadcast,
    MergeStep,
    SyncPlan,
    Topology,
    TopologyError,
    disagreement,
    metropolis_weights,
)
from swarm_sona.consensus.topologies.gossip import Gossip, Mesh, Ring
from swarm_sona.consensus.topologies.hierarchical import Hierarchical
from swarm_sona.consensus.topologies.registry import (
    TOPOLOGIES,
    get_topology,
    register_topology,
    topology_class,
    unregister_topology,
)
from swarm_sona.consensus.topologies.star import Star

__all__ = ["Topology", "TopologyError", "MergeStep", "Broadcast", "SyncPlan", "Star", "Hierarchical", "Gossip",
           "Ring", "Mesh", "TOPOLOGIES", "get_topology", "register_topology", "unregister_topology",
           "topology_class", "disagreement", "metropolis_weights"]

for _cls in (Star, Hierarchical, Ring, Mesh):
    register_topology(_cls)
