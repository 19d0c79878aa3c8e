"""The topology registry: name (and aliases) -> :class:`~swarm_sona.consensus.topologies.base.Topology` subclass.

A new topology is one subclass plus one :func:`register_topology` call, from any package; or
name the class by import reference ``"package.module:Class"``: :func:`topology_class` imports
the module on first use and registers the class under the reference too (the class keeps its
``name``), so a spec can name a user's topology without the driver importing it first.

Example:
    >>> from swarm_sona.consensus.topologies import Star, get_topology, register_topology, unregister_topology
    >>> class Solo(Star):
    ...     name = "solo"
    >>> _ = register_topology(Solo, aliases=("single",))
    >>> get_topology("single", ["w"]).name
    'solo'
    >>> unregister_topology("solo")
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from swarm_sona.consensus.topologies.base import Topology, TopologyError
from swarm_sona.core.references import import_reference, is_reference

__all__ = ["TOPOLOGIES", "register_topology", "unregister_topology", "get_topology", "topology_class"]

TOPOLOGIES: dict[str, type[Topology]] = {}
"""Registered topologies by canonical name (the class's ``name``)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def _lookup(name: str) -> type[Topology] | None:
    if is_reference(name):   # "package.module:Class": exact, imported on first use
        return TOPOLOGIES.get(name) or _import_topology(name)
    key = _key(name)
    if key in TOPOLOGIES:
        return TOPOLOGIES[key]
    for cls in TOPOLOGIES.values():
        if key in cls.aliases:
            return cls
    return None


def _check_class(cls: Any, where: str) -> type[Topology]:
    if not isinstance(cls, type) or not issubclass(cls, Topology):
        raise TopologyError(f"{where}: expected a Topology subclass, got {cls!r}")
    if not isinstance(cls.name, str) or not _NAME.match(cls.name):
        raise TopologyError(f"{where}: {cls.__name__}.name must be a lower-case identifier, got {cls.name!r}")
    if getattr(cls.stages, "__isabstractmethod__", False):
        raise TopologyError(f"{where}: {cls.__name__} does not implement stages()")
    return cls


def _import_topology(ref: str) -> type[Topology]:
    """Import the class ``ref`` names and register it under ``ref``."""
    cls = _check_class(import_reference(ref, "topology", TopologyError), f"topology {ref!r}")
    TOPOLOGIES[ref] = cls
    return cls


def register_topology(cls: type[Topology], *, aliases: Sequence[str] = (),
                      replace_existing: bool = False) -> type[Topology]:
    """Register a :class:`Topology` subclass under its ``name`` (plus ``aliases``); returns it.

    Example:
        >>> from swarm_sona.consensus.topologies import Ring
        >>> register_topology(Ring)
        Traceback (most recent call last):
        ...
        swarm_sona.consensus.topologies.base.TopologyError: register_topology: 'ring' is already the topology Ring; pass replace_existing=True to replace it
    """
    name = _check_class(cls, "register_topology").name
    als = tuple(dict.fromkeys((*cls.aliases, *(_key(a) for a in aliases))))
    for a in als:
        if not _NAME.match(a) or a == name:
            raise TopologyError(f"register_topology({name!r}): bad alias {a!r}")
    for n in (name, *als):
        hit = _lookup(n)
        if hit is not None and not (replace_existing and hit.name == name):
            raise TopologyError(f"register_topology: {n!r} is already the topology {hit.__name__}; "
                                f"pass replace_existing=True to replace it")
    if als != cls.aliases:
        cls.aliases = als
    TOPOLOGIES[name] = cls
    return cls


def unregister_topology(name: str) -> None:
    """Remove a registered topology by its canonical name (or the import reference it was found by).

    Example:
        >>> unregister_topology("nope")
        Traceback (most recent call last):
        ...
        swarm_sona.consensus.topologies.base.TopologyError: unregister_topology: no topology 'nope'
    """
    if name not in TOPOLOGIES:
        raise TopologyError(f"unregister_topology: no topology {name!r}")
    del TOPOLOGIES[name]


def topology_class(name: str) -> type[Topology]:
    """The registered class for a name, an alias or an import reference
    ``"package.module:Class"`` (imported and registered on first use); a clear error (with a
    suggestion) otherwise.

    Example:
        >>> topology_class("mesh").__name__
        'Mesh'
        >>> topology_class("swarm_sona.consensus.topologies.gossip:Ring").name
        'ring'
        >>> unregister_topology("swarm_sona.consensus.topologies.gossip:Ring")
    """
    cls = _lookup(name) if isinstance(name, str) else None
    if cls is None:
        names = sorted(set(TOPOLOGIES) | {a for c in TOPOLOGIES.values() for a in c.aliases})
        close = difflib.get_close_matches(_key(str(name)), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TopologyError(f"unknown topology {name!r}{hint}; known: {sorted(TOPOLOGIES)} "
                            f"(or 'package.module:Class' of a user's topology)")
    return cls


def get_topology(name: str, workers: Sequence[str], coordinators: Sequence[str] = (), **kwargs: Any) -> Topology:
    """Build a registered topology by name over the given worker (and coordinator) ids; the
    topology checks its agents (:meth:`Topology.check_agents`).

    Example:
        >>> get_topology("ring", ["a", "b", "c"]).plan().root is None
        True
    """
    cls = topology_class(name)
    if coordinators:
        return cls(workers, coordinators, **kwargs)
    return cls(workers, **kwargs)
