"""Flat <-> nested adapter states, and the distance between two flat states.

Merge rules work on flat dicts ``"a/b/c" -> array``; engines export nested dicts.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.state import flatten_state, unflatten_state
    >>> flat = flatten_state({"adapters": {"q": {"B": np.ones(2)}}})
    >>> sorted(flat), unflatten_state(flat)["adapters"]["q"]["B"].tolist()
    (['adapters/q/B'], [1.0, 1.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from swarm_sona.consensus.updates import MergeError

__all__ = ["flatten_state", "unflatten_state", "state_distance"]


def flatten_state(state: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict of arrays -> flat ``{"a/b/c": array}``; non-array leaves are skipped.

    Example:
        >>> import numpy as np
        >>> sorted(flatten_state({"adapters": {"q": {"A": np.zeros(2), "B": np.ones(2)}}, "n": 3}))
        ['adapters/q/A', 'adapters/q/B']
    """
    out: dict[str, np.ndarray] = {}
    for k in sorted(state):
        v = state[k]
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_state(v, name + "/"))
        elif isinstance(v, np.ndarray):
            out[name] = v
    return out


def unflatten_state(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of :func:`flatten_state`.

    Example:
        >>> import numpy as np
        >>> unflatten_state({"adapters/q/B": np.ones(1)})["adapters"]["q"]["B"].tolist()
        [1.0]
    """
    out: dict[str, Any] = {}
    for name, v in flat.items():
        parts = name.split("/")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise MergeError(f"state name {name!r} collides with a leaf")
        node[parts[-1]] = v
    return out


def state_distance(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    """Euclidean distance between two flat states over their common names.

    Example:
        >>> import numpy as np
        >>> state_distance({"x": np.array([3.0, 0.0])}, {"x": np.array([0.0, 4.0])})
        5.0
    """
    s = 0.0
    for k in sorted(set(a) & set(b)):
        d = np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)
        s += float(np.sum(d * d))
    return math.sqrt(s)
