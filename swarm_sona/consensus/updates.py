"""One agent's pushed update, its validation, norm clipping and evidence pooling.

An *update* is one agent's adapter state as a flat dict ``name -> float array`` (see
:func:`swarm_sona.consensus.state.flatten_state`), the number of trajectories it was trained
on (its self-reported ``weight``), optionally its diagonal Fisher (same names) and, for names
that pool instead of merging, its additive ``evidence``. Everything an agent reports is
checked here before any arithmetic: arrays numeric and finite, Fisher non-negative, and the
weight a trajectory *count*: finite, integral, ``0 <= weight <= MAX_WEIGHT``.

Robust merging never trusts magnitudes an agent reports: :func:`clip_updates` bounds every
update's distance from a reference (the last merged state, or the coordinate-wise median)
to ``clip`` times the median agent's distance, and :func:`clip_evidence` bounds every
agent's evidence to ``clip`` times the median agent's evidence (norms over all pooled names).

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.updates import AgentUpdate, clip_updates
    >>> ups = [AgentUpdate(a, 1, {"x": np.array([v])}) for a, v in zip("abc", [1.0, 2.0, 1e6])]
    >>> [float(u.params["x"][0]) for u in clip_updates(ups, 3.0, {"x": np.array([0.0])})]
    [1.0, 2.0, 6.0]
    >>> AgentUpdate("a", 1, {"x": np.zeros(1)}, weight=1e300)
    Traceback (most recent call last):
    ...
    swarm_sona.consensus.updates.MergeError: update a: weight (trajectory count) must be an integer in [0, 1e+12], got 1e+300
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MergeError", "AgentUpdate", "MAX_WEIGHT", "check_weight", "check_compatible", "clip_updates",
           "clip_evidence", "pool_evidence"]

MAX_WEIGHT = 1e12
"""Largest trajectory count one push may report. Sums of up to 1000 such counts stay exact
integers in float64 (< 2**53), so counts never overflow or lose precision."""


class MergeError(ValueError):
    """Updates cannot be merged: shapes or names differ, values are not finite, bad rule."""


def check_weight(w: Any, what: str) -> float:
    """A validated trajectory count: finite, integral, in ``[0, MAX_WEIGHT]`` (as float).

    Example:
        >>> check_weight(12, "push")
        12.0
        >>> check_weight(2.5, "push")
        Traceback (most recent call last):
        ...
        swarm_sona.consensus.updates.MergeError: push: weight (trajectory count) must be an integer in [0, 1e+12], got 2.5
    """
    ok = not isinstance(w, bool) and isinstance(w, (int, float, np.integer, np.floating))
    if ok:
        f = float(w)
        ok = math.isfinite(f) and 0 <= f <= MAX_WEIGHT and f.is_integer()
    if not ok:
        raise MergeError(f"{what}: weight (trajectory count) must be an integer in [0, {MAX_WEIGHT:g}], got {w!r}")
    return float(w)


def _check_array(v: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(v)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise MergeError(f"{what}: not an array: {exc}") from exc
    if arr.dtype.kind not in "fiu":
        raise MergeError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise MergeError(f"{what}: contains NaN or inf")
    return arr


@dataclass
class AgentUpdate:
    """One agent's pushed adapter state for a merge round.

    ``seq`` increases with every push of that agent (retries reuse it); ``base_version`` is
    the merged version the agent had installed when it trained; ``weight`` the number of
    trajectories behind this state (validated by :func:`check_weight`); ``fisher`` its
    diagonal Fisher by name; ``evidence``: for names that pool instead of merging (see
    :mod:`swarm_sona.consensus.book`), the additive statistics gathered since the sender's
    previous push or install (same shapes as params).

    Example:
        >>> import numpy as np
        >>> AgentUpdate("w1", 3, {"B": np.ones(2)}, weight=40).weight
        40.0
    """

    agent_id: str
    seq: int
    params: dict[str, np.ndarray]
    weight: float = 1.0
    fisher: dict[str, np.ndarray] | None = None
    base_version: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.agent_id, str) or not self.agent_id:
            raise MergeError(f"update agent_id must be a non-empty string, got {self.agent_id!r}")
        who = f"update {self.agent_id}"
        if isinstance(self.seq, bool) or not isinstance(self.seq, (int, np.integer)) or self.seq < 0:
            raise MergeError(f"{who}: seq must be an integer >= 0, got {self.seq!r}")
        self.seq = int(self.seq)
        self.weight = check_weight(self.weight, who)
        if not isinstance(self.params, Mapping) or not self.params:
            raise MergeError(f"{who}: params must be a non-empty mapping of arrays")
        self.params = {k: _check_array(v, f"{who}: params[{k!r}]") for k, v in self.params.items()}
        if self.fisher is not None:
            if not isinstance(self.fisher, Mapping):
                raise MergeError(f"{who}: fisher must be a mapping of arrays")
            fish = {}
            for k, v in self.fisher.items():
                arr = _check_array(v, f"{who}: fisher[{k!r}]")
                if k in self.params and arr.shape != self.params[k].shape:
                    raise MergeError(f"{who}: fisher[{k!r}] has shape {arr.shape}, params has {self.params[k].shape}")
                if np.any(arr < 0):
                    raise MergeError(f"{who}: fisher[{k!r}] has negative entries")
                fish[k] = arr
            self.fisher = fish
        if self.evidence is not None:
            if not isinstance(self.evidence, Mapping):
                raise MergeError(f"{who}: evidence must be a mapping of arrays")
            ev = {}
            for k, v in self.evidence.items():
                arr = _check_array(v, f"{who}: evidence[{k!r}]")
                if k not in self.params or arr.shape != self.params[k].shape:
                    raise MergeError(f"{who}: evidence[{k!r}] must match a parameter's shape "
                                     f"({self.params[k].shape if k in self.params else 'no such parameter'}), "
                                     f"got {arr.shape}")
                ev[k] = arr
            self.evidence = ev or None

    def only(self, names: Sequence[str]) -> AgentUpdate:
        """This update restricted to the parameters ``names`` (a shallow copy, not validated again).

        Example:
            >>> import numpy as np
            >>> sorted(AgentUpdate("a", 0, {"x": np.ones(1), "y": np.ones(1)}).only(["y"]).params)
            ['y']
        """
        out = copy.copy(self)
        out.params = {k: self.params[k] for k in names}
        if self.evidence is not None:
            out.evidence = {k: v for k, v in self.evidence.items() if k in out.params} or None
        if self.fisher is not None:
            out.fisher = {k: v for k, v in self.fisher.items() if k in out.params} or None
        return out

    def with_params(self, params: dict[str, np.ndarray]) -> AgentUpdate:
        """A shallow copy carrying ``params`` instead (used to merge Fishers or clipped states).

        Example:
            >>> import numpy as np
            >>> AgentUpdate("a", 0, {"x": np.ones(1)}).with_params({"x": np.zeros(1)}).params["x"].tolist()
            [0.0]
        """
        out = copy.copy(self)
        out.params = params
        return out


def check_compatible(updates: Sequence[AgentUpdate]) -> list[AgentUpdate]:
    """The updates sorted by agent id, after checking one per agent and identical names/shapes.

    Example:
        >>> import numpy as np
        >>> [u.agent_id for u in check_compatible([AgentUpdate(a, 0, {"x": np.ones(1)}) for a in "ba"])]
        ['a', 'b']
    """
    if not updates:
        raise MergeError("nothing to merge: no updates")
    ups = sorted(updates, key=lambda u: u.agent_id)
    ids = [u.agent_id for u in ups]
    if len(set(ids)) != len(ids):
        raise MergeError(f"one update per agent per merge, got duplicates in {ids}")
    ref = ups[0]
    for u in ups[1:]:
        if set(u.params) != set(ref.params):
            diff = sorted(set(u.params) ^ set(ref.params))
            raise MergeError(f"update {u.agent_id} has different parameter names than {ref.agent_id}: {diff}")
        for k, v in u.params.items():
            if v.shape != ref.params[k].shape:
                raise MergeError(f"update {u.agent_id}: params[{k!r}] has shape {v.shape}, "
                                 f"{ref.agent_id} has {ref.params[k].shape}")
    return ups


def _norm(parts: Mapping[str, np.ndarray]) -> float:
    """Overflow-safe L2 norm over every array of ``parts``."""
    m = max((float(np.max(np.abs(v))) if np.size(v) else 0.0 for v in parts.values()), default=0.0)
    if m == 0.0:
        return 0.0
    return m * math.sqrt(sum(float(np.sum((np.asarray(v, np.float64) / m) ** 2)) for v in parts.values()))


def _check_clip(clip: float) -> float:
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not math.isfinite(clip) or clip < 1:
        raise MergeError(f"clip must be a finite number >= 1 (a multiple of the median agent's norm), got {clip!r}")
    return float(clip)


def clip_updates(updates: Sequence[AgentUpdate], clip: float,
                 reference: Mapping[str, np.ndarray] | None = None) -> list[AgentUpdate]:
    """Bound every update's distance from ``reference`` to ``clip`` x the median agent's distance.

    ``reference`` defaults to the coordinate-wise median of the updates (then a majority of
    honest agents fixes it). An update farther than the bound is moved onto the sphere of
    that radius around the reference (same direction); others are unchanged. Only names of
    ``reference`` present in the updates are measured and clipped.

    Example:
        >>> import numpy as np
        >>> ups = [AgentUpdate(a, 0, {"x": np.array([v, 0.0])}) for a, v in zip("abc", [1.0, -1.0, 300.0])]
        >>> [u.params["x"].tolist() for u in clip_updates(ups, 2.0)]
        [[1.0, 0.0], [-1.0, 0.0], [5.0, 0.0]]
    """
    clip = _check_clip(clip)
    ups = list(updates)
    names = sorted(ups[0].params)
    if reference is None:
        ref = {k: np.median(np.stack([np.asarray(u.params[k], np.float64) for u in ups]), axis=0) for k in names}
    else:
        ref = {k: np.asarray(reference[k], np.float64) for k in names if k in reference}
    if not ref:
        return ups
    deltas = [{k: np.asarray(u.params[k], np.float64) - ref[k] for k in ref} for u in ups]
    norms = [_norm(d) for d in deltas]
    bound = clip * float(np.median(norms))
    out = []
    for u, d, nrm in zip(ups, deltas, norms, strict=True):
        if nrm <= bound:
            out.append(u)
            continue
        s = bound / nrm
        p = dict(u.params)
        for k in ref:
            p[k] = (ref[k] + s * d[k]).astype(u.params[k].dtype if u.params[k].dtype.kind == "f" else np.float64)
        out.append(u.with_params(p))
    return out


def clip_evidence(deltas: Sequence[Mapping[str, np.ndarray]], clip: float) -> list[dict[str, np.ndarray]]:
    """Scale each agent's evidence down to at most ``clip`` x the median agent's evidence norm.

    The norm is taken over all pooled names of one agent together, and one scale applies to
    all of them, so a scaled Gaussian evidence (precision and precision-weighted mean) keeps
    its mean and only loses confidence. With ``f`` bad agents of ``n`` (``f < n / 2``) the
    pooled sum differs from the honest agents' sum by at most ``f * clip * max honest norm``.

    Example:
        >>> import numpy as np
        >>> out = clip_evidence([{"P": np.array([1.0])}, {"P": np.array([2.0])}, {"P": np.array([1e9])}], 3.0)
        >>> [float(d["P"][0]) for d in out]
        [1.0, 2.0, 6.0]
    """
    clip = _check_clip(clip)
    norms = [_norm(d) for d in deltas]
    bound = clip * float(np.median(norms)) if norms else 0.0
    out = []
    for d, nrm in zip(deltas, norms, strict=True):
        s = 1.0 if nrm <= bound else bound / nrm
        out.append({k: np.asarray(v, np.float64) * s for k, v in d.items()})
    return out


def pool_evidence(base: Mapping[str, np.ndarray], deltas: Sequence[Mapping[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """``base + sum(deltas)`` per name of ``base`` (float64): pooling additive evidence.

    With natural parameters of Gaussians (precision and precision-weighted mean) this is the
    product of the posteriors; with counts, their total. Every delta must hold every name.
    Unbounded by itself (a forged huge precision wins): robust rules clip the deltas first
    (:func:`clip_evidence`).

    Example:
        >>> import numpy as np
        >>> pool_evidence({"P": np.array([1.0])}, [{"P": np.array([2.0])}, {"P": np.array([3.0])}])["P"].tolist()
        [6.0]
    """
    out = {}
    for k, b in base.items():
        acc = np.array(b, np.float64, copy=True)
        for d in deltas:
            if k not in d:
                raise MergeError(f"pool_evidence: a delta lacks {k!r}")
            acc += np.asarray(d[k], np.float64)
        if not np.all(np.isfinite(acc)):
            raise MergeError(f"pool_evidence: pooled {k!r} overflows float64")
        out[k] = acc
    return out
