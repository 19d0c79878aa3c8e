"""Checkpoint schemas of the swarm's actors, and the migrations that upgrade older files.

Schema 2 of ``coordinator`` and ``agent-meta`` (the router-evidence change): the router part
of a shareable state no longer holds the posterior mean ``router/weights`` but the
precision-weighted mean ``router/eta`` (= precision x mean, elementwise: the posterior is
diagonal) plus the router's counters, so that merges pool evidence. A schema-1 file is
upgraded on read: ``eta`` from its precision and weights, the counters as zeros (schema 1
never merged them: nothing pooled is lost). Registered with :mod:`swarm_sona.core.codec` when
this module is imported (the actor modules import it; ``swarm-sona migrate`` loads them).

Example:
    >>> import numpy as np
    >>> st = {"router/precision": np.full((2, 3), 2.0), "router/weights": np.ones((2, 3)), "heads/b": np.zeros(2)}
    >>> up = upgrade_router_state(st)
    >>> sorted(k for k in up if k.startswith("router/"))[:3], float(up["router/eta"][0, 0])
    (['router/calls', 'router/cost_sum', 'router/eta'], 2.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from swarm_sona.core import codec
from swarm_sona.routing.posterior import EVIDENCE_KEYS

__all__ = ["COORDINATOR_KIND", "AGENT_META_KIND", "SCHEMA", "upgrade_router_state"]

COORDINATOR_KIND = "coordinator"
AGENT_META_KIND = "agent-meta"
SCHEMA = 2
_PREFIX = "router/"


def upgrade_router_state(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A flat shareable state of schema 1 with its router entries in the schema-2 form."""
    if state is None:
        return None
    out = dict(state)
    if _PREFIX + "weights" not in out or _PREFIX + "precision" not in out:
        return out
    w = np.asarray(out.pop(_PREFIX + "weights"), np.float64)
    P = np.asarray(out[_PREFIX + "precision"], np.float64)
    out[_PREFIX + "eta"] = P * w
    m = P.shape[0]
    for key in EVIDENCE_KEYS:
        out.setdefault(_PREFIX + key, np.zeros(m, np.float64))
    return out


@codec.register_migration(COORDINATOR_KIND, 1)
def _coordinator_1_to_2(body: Any) -> Any:
    body = dict(body)
    book = dict(body.get("book") or {})
    book["merged"] = upgrade_router_state(book.get("merged"))
    body["book"] = book
    body["anchor"] = upgrade_router_state(body.get("anchor"))
    return body


@codec.register_migration(AGENT_META_KIND, 1)
def _agent_meta_1_to_2(body: Any) -> Any:
    body = dict(body)
    for key in ("pushed", "installed_ref"):
        if body.get(key) is not None:
            body[key] = upgrade_router_state(body[key])
    return body


codec.register_schema(COORDINATOR_KIND, SCHEMA)
codec.register_schema(AGENT_META_KIND, SCHEMA)
