"""Between the engine's export layout and the flat parameter space merge rules work in.

``SONA.export_delta()`` returns ``{"adapters": {name: {"A", "B"}}, "heads": {...},
"fisher": {param: array}, "n_trajectories", "version"}``. Merging works on flat dicts
``"adapters/<name>/<A|B>"``, ``"heads/..."`` -> array (:func:`swarm_sona.consensus.state.flatten_state`), plus, when the
engine has an LLM router, its posterior as additive evidence ``"router/<key>"`` for every key of
:data:`swarm_sona.routing.router.EVIDENCE_KEYS` (precision, precision-weighted mean ``eta``, counters;
float64): merging pools these (their gains add, see :mod:`swarm_sona.consensus.book`) instead of averaging
them like the adapters.
With a shared A seed (FFA-LoRA, what :class:`~swarm_sona.runtime.swarm.SwarmSONA` configures) every
agent's A is the same array, so merging B is exactly merging the weight deltas ``s B A``
and merging the identical A's returns them unchanged. Fisher entries are matched to flat
names: ``"adapters/v/B"`` directly, or the model's ``"v.B"`` / ``"micro.B"`` spelling.

Example:
    >>> import numpy as np
    >>> fisher_to_flat({"v.B": np.ones(2)}, {"adapters/v/B": np.zeros(2)})
    {'adapters/v/B': array([1., 1.])}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from swarm_sona.consensus.shapes import own_variants
from swarm_sona.consensus.state import flatten_state, unflatten_state

__all__ = ["export_params", "import_params", "fisher_to_flat", "router_prior", "is_pooled", "MERGE_SPACES",
           "ROUTER_PREFIX"]

MERGE_SPACES = ("factor",)
ROUTER_PREFIX = "router/"


def is_pooled(name: str) -> bool:
    """True for a flat name whose value is additive evidence (pooled, not merged by the rule)."""
    return name.startswith(ROUTER_PREFIX)


def router_prior(sona: Any) -> dict[str, np.ndarray]:
    """The flat ``router/...`` entries of the engine's router prior ({} without a router): the
    reference of evidence gathered before the first push or install."""
    router = getattr(sona, "router", None)
    if router is None or not hasattr(router, "prior_evidence"):
        return {}
    return {ROUTER_PREFIX + k: v for k, v in router.prior_evidence().items()}


def fisher_to_flat(fisher: Mapping[str, Any] | None, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map Fisher entries onto flat parameter names (unknown names and shape mismatches dropped)."""
    out: dict[str, np.ndarray] = {}
    for k, v in flatten_state(fisher or {}).items():
        cands = [k, f"adapters/{k}"]
        if "." in k:
            mod, p = k.rsplit(".", 1)
            cands += [f"adapters/{mod}/{p}", f"heads/{mod}/{p}"]
        for c in cands:
            if c in params and np.shape(v) == params[c].shape:
                out[c] = np.asarray(v)
                break
    return out


def export_params(sona: Any, space: str = "factor") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, int]:
    """``(flat params, flat fisher or None, n_trajectories)`` of an engine."""
    if space not in MERGE_SPACES:
        raise ValueError(f"unknown merge space {space!r}; known: {list(MERGE_SPACES)}")
    d = sona.export_delta()
    params = flatten_state({"adapters": d.get("adapters", {}), "heads": d.get("heads", {})})
    params = {k: np.asarray(v, np.float32) for k, v in params.items() if np.asarray(v).dtype.kind == "f"}
    fisher = fisher_to_flat(d.get("fisher"), params) or None
    router = getattr(sona, "router", None)
    if router is not None and hasattr(router, "evidence"):
        params.update({ROUTER_PREFIX + k: v for k, v in router.evidence().items()})
    return params, fisher, int(d.get("n_trajectories", 0) or 0)


def import_params(sona: Any, params: Mapping[str, np.ndarray], space: str = "factor") -> None:
    """Install flat params (from a merge) into an engine with ``import_state``. A merge of agents
    of different LoRA rank holds each rank's adapters under qualified names
    (:mod:`swarm_sona.consensus.shapes`): the engine takes those of its own shapes."""
    if space not in MERGE_SPACES:
        raise ValueError(f"unknown merge space {space!r}; known: {list(MERGE_SPACES)}")
    if any("@" in k for k in params):
        own = flatten_state({"adapters": sona.export_delta().get("adapters", {})})
        params = own_variants(params, {k: np.shape(v) for k, v in own.items()})
    nested = unflatten_state(params)
    router = getattr(sona, "router", None)
    rstate = nested.get("router")
    if rstate and router is not None:
        router.load_state_dict(router.state_from_evidence(rstate))  # validated: raises before any change
    sona.import_state({"adapters": nested.get("adapters", {}), "heads": nested.get("heads", {})})
