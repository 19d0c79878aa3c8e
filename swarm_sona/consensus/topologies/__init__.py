"""Topologies: who shares adapter states with whom and which rule merges them.

``star`` (coordinator merges all), ``hierarchical`` (queens merge workers, the root queen
merges queens), ``ring`` and ``mesh`` (gossip averaging with neighbours). A new topology is
one subclass of :class:`Topology` registered in :data:`TOPOLOGIES`.

Example:
    >>> from swarm_sona.consensus.topologies import get_topology
    >>> get_topology("mesh", workers=["a", "b", "c"], fanout=1).name
    'mesh'
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from swarm_sona.consensus.topologies.base import (
    Broadcast,
    MergeStep,
    Topology,
    TopologyError,
    disagreement,
    metropolis_weights,
)
from swarm_sona.consensus.topologies.gossip import Gossip, Mesh, Ring
from swarm_sona.consensus.topologies.hierarchical import Hierarchical
from swarm_sona.consensus.topologies.star import Star

__all__ = ["Topology", "TopologyError", "MergeStep", "Broadcast", "Star", "Hierarchical", "Gossip", "Ring",
           "Mesh", "TOPOLOGIES", "get_topology", "disagreement", "metropolis_weights"]

TOPOLOGIES: dict[str, type[Topology]] = {"star": Star, "hierarchical": Hierarchical, "ring": Ring, "mesh": Mesh}


def get_topology(name: str, workers: Sequence[str], coordinators: Sequence[str] = (), **kwargs: Any) -> Topology:
    """Build a topology by name over the given worker (and coordinator) ids."""
    key = str(name).strip().lower()
    if key not in TOPOLOGIES:
        close = difflib.get_close_matches(key, list(TOPOLOGIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TopologyError(f"unknown topology {name!r}{hint}; known: {sorted(TOPOLOGIES)}")
    cls = TOPOLOGIES[key]
    if coordinators:
        return cls(workers, coordinators, **kwargs)
    return cls(workers, **kwargs)
