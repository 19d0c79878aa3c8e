"""Consensus merge rules on adapter states, and the versioned, idempotent merge book.

An *update* is one agent's adapter state as a flat dict ``name -> float array`` (see
:func:`flatten_state`), the number of trajectories it was trained on, and optionally its
diagonal Fisher (same names). A *merge rule* turns the updates of one round into a merged
state. All rules are deterministic: updates are ordered by agent id before any arithmetic.

Rules and the number ``f`` of arbitrary (Byzantine) agents out of ``n`` each tolerates:

==================  ============================================================  =====================
rule                what it computes                                              tolerates f of n
==================  ============================================================  =====================
``fedavg``          mean weighted by trajectory counts                            0 (one bad agent moves it anywhere)
``fisher``          per coordinate: sum_i w_i F_i x_i / sum_i w_i F_i              0
``median``          coordinate-wise median                                        f <= (n - 1) // 2
``trimmed_mean``    per coordinate: drop the f largest and f smallest, average    f (given; 2f < n)
``krum``            the update closest (sum of squared distances to its            f with n >= 2f + 3
                    n - f - 2 nearest) to the others; ``multi_krum`` averages
                    the m best
``ties``            TIES-merging: trim to top-density magnitudes, elect sign by   0 (for merging adapters of
                    mass, average the agreeing entries                             different tasks)
``dare``            drop-and-rescale (seeded) then average                        0
==================  ============================================================  =====================

:class:`MergeBook` keeps the merged state, its version, and for every agent the highest
push sequence number it has accepted: a retried push (same ``agent_id`` and ``seq``) or an
older one is ignored, so nothing is counted twice; a newer push from the same agent in the
same round replaces its pending one (one vote per agent per round).

Pooled evidence. Names for which an update carries ``evidence`` (additive sufficient
statistics gathered since the sender's previous push or install, e.g. the LLM router's
natural parameters: precision, precision-weighted mean and counts) are not merged by the
rule: the merged value is the last merged value plus the sum of every update's evidence
(:func:`pool_evidence`; a product of Gaussian posteriors when the statistics are natural
parameters), so N agents' new data all count, and nothing counts twice (a state pushed
again with no new data has zero evidence; a newer push replacing a pending one adds its
evidence to the pending one's). An update without evidence for such a name contributes its
value minus the last merged value. Pooled evidence tolerates no bad agent (a forged huge
precision wins).

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.merge import AgentUpdate, MergeBook
    >>> book = MergeBook("median")
    >>> for i, v in enumerate([1.0, 2.0, 3.0, 1000.0, 2.5]):
    ...     _ = book.submit(AgentUpdate(f"a{i}", seq=1, params={"B": np.full(2, v)}, weight=10))
    >>> book.submit(AgentUpdate("a0", seq=1, params={"B": np.full(2, 1.0)}, weight=10))  # retried push
    False
    >>> r = book.merge()
    >>> r.version, r.params["B"].tolist()
    (1, [2.5, 2.5])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "MergeError",
    "AgentUpdate",
    "MergeResult",
    "MergeRule",
    "MergeBook",
    "RULES",
    "get_rule",
    "fedavg",
    "fisher_weighted",
    "coordinate_median",
    "trimmed_mean",
    "krum",
    "ties",
    "dare",
    "flatten_state",
    "unflatten_state",
    "tolerated_faults",
    "state_distance",
    "pool_evidence",
]


class MergeError(ValueError):
    """Updates cannot be merged: shapes or names differ, values are not finite, bad rule."""


# ---------------------------------------------------------------------------------------
# flat <-> nested state
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# updates
# ---------------------------------------------------------------------------------------
@dataclass
class AgentUpdate:
    """One agent's pushed adapter state for a merge round.

    ``seq`` increases with every push of that agent (retries reuse it); ``base_version`` is
    the merged version the agent had installed when it trained; ``weight`` the number of
    trajectories behind this state (fedavg weight); ``fisher`` its diagonal Fisher by name;
    ``evidence``: for names that pool instead of merging (see the module docs), the additive
    statistics gathered since the sender's previous push or install (same shapes as params).
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
        if isinstance(self.seq, bool) or not isinstance(self.seq, (int, np.integer)) or self.seq < 0:
            raise MergeError(f"update {self.agent_id}: seq must be an integer >= 0, got {self.seq!r}")
        self.seq = int(self.seq)
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not math.isfinite(w) or w < 0:
            raise MergeError(f"update {self.agent_id}: weight must be a finite number >= 0, got {w!r}")
        self.weight = float(w)
        if not isinstance(self.params, Mapping) or not self.params:
            raise MergeError(f"update {self.agent_id}: params must be a non-empty mapping of arrays")
        self.params = {k: _check_array(v, f"update {self.agent_id}: params[{k!r}]") for k, v in self.params.items()}
        if self.fisher is not None:
            if not isinstance(self.fisher, Mapping):
                raise MergeError(f"update {self.agent_id}: fisher must be a mapping of arrays")
            fish = {}
            for k, v in self.fisher.items():
                arr = _check_array(v, f"update {self.agent_id}: fisher[{k!r}]")
                if k in self.params and arr.shape != self.params[k].shape:
                    raise MergeError(f"update {self.agent_id}: fisher[{k!r}] has shape {arr.shape}, "
                                     f"params has {self.params[k].shape}")
                if np.any(arr < 0):
                    raise MergeError(f"update {self.agent_id}: fisher[{k!r}] has negative entries")
                fish[k] = arr
            self.fisher = fish
        if self.evidence is not None:
            if not isinstance(self.evidence, Mapping):
                raise MergeError(f"update {self.agent_id}: evidence must be a mapping of arrays")
            ev = {}
            for k, v in self.evidence.items():
                arr = _check_array(v, f"update {self.agent_id}: evidence[{k!r}]")
                if k not in self.params or arr.shape != self.params[k].shape:
                    raise MergeError(f"update {self.agent_id}: evidence[{k!r}] must match a parameter's shape "
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
        return out


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


def pool_evidence(base: Mapping[str, np.ndarray], deltas: Sequence[Mapping[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """``base + sum(deltas)`` per name of ``base`` (float64): pooling additive evidence.

    With natural parameters of Gaussians (precision and precision-weighted mean) this is the
    product of the posteriors; with counts, their total. Every delta must hold every name.

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
        out[k] = acc
    return out


def _check_compatible(updates: Sequence[AgentUpdate]) -> list[AgentUpdate]:
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


def _stack(ups: Sequence[AgentUpdate], name: str) -> np.ndarray:
    return np.stack([np.asarray(u.params[name], np.float64) for u in ups])


def _weights(ups: Sequence[AgentUpdate]) -> np.ndarray:
    w = np.array([u.weight for u in ups], np.float64)
    if w.sum() <= 0:
        w = np.ones(len(ups))
    return w / w.sum()


def _cast(out: dict[str, np.ndarray], ups: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    ref = ups[0].params
    return {k: out[k].astype(ref[k].dtype if ref[k].dtype.kind == "f" else np.float64) for k in sorted(out)}


# ---------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------
def fedavg(updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """Trajectory-weighted mean (FedAvg). Tolerates no bad agent.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.array([0.0])}, weight=1),
        ...      AgentUpdate("b", 0, {"x": np.array([4.0])}, weight=3)]
        >>> fedavg(u)["x"].tolist()
        [3.0]
    """
    ups = _check_compatible(updates)
    w = _weights(ups)
    out = {k: np.tensordot(w, _stack(ups, k), axes=1) for k in ups[0].params}
    return _cast(out, ups)


def fisher_weighted(updates: Sequence[AgentUpdate], *, eps: float = 1e-12) -> dict[str, np.ndarray]:
    """Per-coordinate Fisher-weighted mean: coordinates an agent is confident about count more.

    ``sum_i w_i F_i x_i / sum_i w_i F_i`` with w_i the trajectory weights; a name without a
    Fisher in some update, or a coordinate where all Fishers are ~0, falls back to fedavg.
    Tolerates no bad agent (a forged huge Fisher wins its coordinates).

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.array([0.0, 0.0])}, fisher={"x": np.array([1.0, 0.0])}),
        ...      AgentUpdate("b", 0, {"x": np.array([4.0, 4.0])}, fisher={"x": np.array([3.0, 0.0])})]
        >>> fisher_weighted(u)["x"].tolist()
        [3.0, 2.0]
    """
    ups = _check_compatible(updates)
    w = _weights(ups)
    out = {}
    for k in ups[0].params:
        x = _stack(ups, k)
        avg = np.tensordot(w, x, axes=1)
        if all(u.fisher is not None and k in u.fisher for u in ups):
            F = np.stack([np.asarray(u.fisher[k], np.float64) for u in ups]) * w.reshape((-1,) + (1,) * (x.ndim - 1))
            den = F.sum(axis=0)
            num = (F * x).sum(axis=0)
            ok = den > eps
            avg = np.where(ok, num / np.where(ok, den, 1.0), avg)
        out[k] = avg
    return _cast(out, ups)


def coordinate_median(updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """Coordinate-wise median. Tolerates f <= (n - 1) // 2 arbitrary agents per coordinate.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abc", [1.0, 2.0, 1e9])]
        >>> coordinate_median(u)["x"].tolist()
        [2.0]
    """
    ups = _check_compatible(updates)
    return _cast({k: np.median(_stack(ups, k), axis=0) for k in ups[0].params}, ups)


def _default_f(n: int, frac: float = 0.2) -> int:
    return max(0, min(max(1, math.ceil(frac * n)) if n >= 3 else 0, (n - 1) // 2))


def trimmed_mean(updates: Sequence[AgentUpdate], *, f: int | None = None, trim: float = 0.2) -> dict[str, np.ndarray]:
    """Per coordinate, drop the ``f`` largest and ``f`` smallest values and average the rest.

    ``f`` defaults to ``ceil(trim * n)`` capped at ``(n - 1) // 2``. Tolerates ``f`` bad agents.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abcde", [1., 2., 3., 4., -1e9])]
        >>> trimmed_mean(u, f=1)["x"].tolist()
        [2.0]
    """
    ups = _check_compatible(updates)
    n = len(ups)
    f = _default_f(n, trim) if f is None else int(f)
    if f < 0 or 2 * f >= n:
        raise MergeError(f"trimmed_mean: f={f} needs 0 <= 2f < n={n}")
    out = {}
    for k in ups[0].params:
        x = np.sort(_stack(ups, k), axis=0)
        out[k] = x[f:n - f].mean(axis=0)
    return _cast(out, ups)


def _flat_matrix(ups: Sequence[AgentUpdate]) -> np.ndarray:
    names = sorted(ups[0].params)
    return np.stack([np.concatenate([np.asarray(u.params[k], np.float64).ravel() for k in names]) for u in ups])


def krum(updates: Sequence[AgentUpdate], *, f: int | None = None, m: int = 1) -> dict[str, np.ndarray]:
    """Krum (Blanchard et al. 2017); with ``m > 1`` Multi-Krum (mean of the m best).

    Score of update i = sum of squared distances to its ``n - f - 2`` nearest other updates;
    the lowest score wins. Tolerates ``f`` bad agents when ``n >= 2f + 3``; ``f`` defaults to
    the largest such value. Ties break by agent id.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abcde", [1., 1.1, 0.9, 1.05, 50.])]
        >>> krum(u, f=1)["x"].tolist()
        [1.05]
    """
    ups = _check_compatible(updates)
    n = len(ups)
    if f is None:
        f = max(0, (n - 3) // 2)
    if f < 0 or n < 2 * f + 3:
        raise MergeError(f"krum: f={f} needs n >= 2f + 3, got n={n}")
    if not 1 <= m <= n:
        raise MergeError(f"krum: m={m} must be in [1, n={n}]")
    X = _flat_matrix(ups)
    sq = np.sum(X * X, axis=1)
    D = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
    k_near = n - f - 2
    scores = np.empty(n)
    for i in range(n):
        d = np.delete(D[i], i)
        scores[i] = np.sort(d)[:k_near].sum()
    order = np.lexsort((np.arange(n), scores))[:m]
    chosen = sorted(int(i) for i in order)
    out = {k: np.mean(np.stack([np.asarray(ups[i].params[k], np.float64) for i in chosen]), axis=0)
           for k in ups[0].params}
    return _cast(out, ups)


def ties(updates: Sequence[AgentUpdate], *, density: float = 0.2) -> dict[str, np.ndarray]:
    """TIES-merging (Yadav et al. 2023) of task vectors (adapter states relative to zero).

    Per name: keep each update's top ``density`` fraction of entries by magnitude, elect a
    sign per coordinate by total mass, average the kept entries that agree with it. Meant for
    merging adapters trained on different tasks; tolerates no bad agent.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.array([1.0, -3.0])}), AgentUpdate("b", 0, {"x": np.array([3.0, 1.0])})]
        >>> ties(u, density=1.0)["x"].tolist()
        [2.0, -3.0]
    """
    if not 0 < density <= 1:
        raise MergeError(f"ties: density must be in (0, 1], got {density}")
    ups = _check_compatible(updates)
    out = {}
    for k in ups[0].params:
        x = _stack(ups, k)
        flat = x.reshape(len(ups), -1)
        keep = max(1, int(math.ceil(density * flat.shape[1])))
        trimmed = np.zeros_like(flat)
        for i in range(len(ups)):
            idx = np.argsort(-np.abs(flat[i]), kind="stable")[:keep]
            trimmed[i, idx] = flat[i, idx]
        sign = np.sign(trimmed.sum(axis=0))
        agree = (np.sign(trimmed) == sign) & (trimmed != 0)
        cnt = agree.sum(axis=0)
        merged = np.where(cnt > 0, (trimmed * agree).sum(axis=0) / np.maximum(cnt, 1), 0.0)
        out[k] = merged.reshape(x.shape[1:])
    return _cast(out, ups)


def dare(updates: Sequence[AgentUpdate], *, p: float = 0.5, seed: int = 0) -> dict[str, np.ndarray]:
    """DARE (Yu et al. 2024): drop each entry with probability ``p``, rescale by 1/(1-p), average.

    Seeded per (seed, agent id, name), so the merge is deterministic. Tolerates no bad agent.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.ones(4)}), AgentUpdate("b", 0, {"x": np.ones(4)})]
        >>> dare(u, p=0.0)["x"].tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    if not 0 <= p < 1:
        raise MergeError(f"dare: p must be in [0, 1), got {p}")
    ups = _check_compatible(updates)
    w = _weights(ups)
    out = {}
    for k in ups[0].params:
        acc = 0.0
        for wi, u in zip(w, ups, strict=True):
            x = np.asarray(u.params[k], np.float64)
            key = [seed] + list(f"{u.agent_id}\x00{k}".encode())
            rng = np.random.default_rng(key)
            mask = rng.random(x.shape) >= p
            acc = acc + wi * np.where(mask, x / (1.0 - p), 0.0)
        out[k] = np.asarray(acc)
    return _cast(out, ups)


def tolerated_faults(rule: str, n: int, **kw: Any) -> int:
    """How many arbitrary agents of ``n`` the named rule tolerates (see the module table).

    Example:
        >>> [tolerated_faults(r, 5) for r in ("fedavg", "median", "trimmed_mean", "krum")]
        [0, 2, 1, 1]
    """
    name = _canonical(rule)
    if name in ("median",):
        return max(0, (n - 1) // 2)
    if name == "trimmed_mean":
        f = kw.get("f")
        return _default_f(n, kw.get("trim", 0.2)) if f is None else int(f)
    if name in ("krum", "multi_krum"):
        f = kw.get("f")
        return max(0, (n - 3) // 2) if f is None else int(f)
    return 0


@dataclass(frozen=True)
class MergeRule:
    """A named rule with its keyword arguments; call it on a list of updates.

    Example:
        >>> get_rule("trimmed_mean", f=1).name
        'trimmed_mean'
    """

    name: str
    fn: Callable[..., dict[str, np.ndarray]]
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self, updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
        return self.fn(updates, **dict(self.kwargs))

    def tolerates(self, n: int) -> int:
        """Bad agents of ``n`` this rule tolerates."""
        return tolerated_faults(self.name, n, **dict(self.kwargs))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.kwargs)}


def _multi_krum(updates: Sequence[AgentUpdate], *, f: int | None = None, m: int | None = None) -> dict[str, np.ndarray]:
    n = len(updates)
    if f is None:
        f = max(0, (n - 3) // 2)
    return krum(updates, f=f, m=m if m is not None else max(1, n - f))


RULES: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "fedavg": fedavg,
    "fisher": fisher_weighted,
    "median": coordinate_median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "multi_krum": _multi_krum,
    "ties": ties,
    "dare": dare,
}
_ALIASES = {"mean": "fedavg", "avg": "fedavg", "fisher_weighted": "fisher", "coordinate_median": "median",
            "trimmed-mean": "trimmed_mean", "trimmedmean": "trimmed_mean", "multi-krum": "multi_krum",
            "multikrum": "multi_krum"}


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise MergeError(f"merge rule must be a name, got {name!r}")
    key = name.strip().lower().replace(" ", "_")
    key = _ALIASES.get(key, key).replace("-", "_")
    if key not in RULES:
        import difflib

        close = difflib.get_close_matches(key, list(RULES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MergeError(f"unknown merge rule {name!r}{hint}; known: {sorted(RULES)}")
    return key


def get_rule(name: str | MergeRule | Mapping[str, Any], **kwargs: Any) -> MergeRule:
    """A :class:`MergeRule` by name (``"median"``), or from ``{"name": ..., **kwargs}``.

    Example:
        >>> get_rule({"name": "krum", "f": 1}).kwargs
        (('f', 1),)
    """
    if isinstance(name, MergeRule):
        return name
    if isinstance(name, Mapping):
        d = dict(name)
        if "name" not in d:
            raise MergeError("merge rule mapping needs a 'name'")
        nm = d.pop("name")
        d.update(kwargs)
        return get_rule(nm, **d)
    key = _canonical(name)
    import inspect

    params = inspect.signature(RULES[key]).parameters
    for k in kwargs:
        if k not in params or k == "updates":
            raise MergeError(f"merge rule {key!r} has no option {k!r}")
    return MergeRule(key, RULES[key], tuple(sorted(kwargs.items())))


# ---------------------------------------------------------------------------------------
# the merge book: versioned, idempotent rounds
# ---------------------------------------------------------------------------------------
@dataclass
class MergeResult:
    """The outcome of one merge round."""

    version: int
    params: dict[str, np.ndarray]
    agents: list[str]
    rule: str
    n_trajectories: float
    fisher: dict[str, np.ndarray] | None = None
    evidence: dict[str, np.ndarray] | None = None   # the round's pooled evidence (sum of the updates')


class MergeBook:
    """Collects pushes, merges them by a rule, and keeps the version and dedup record.

    ``submit`` returns True when the update was taken, False when it was a retry or older
    than one already accepted from that agent (it is then ignored). ``merge`` applies the
    rule to the pending updates (at least ``min_updates``; names carrying evidence are pooled
    instead, see the module docs), bumps the version and clears the round.
    ``state_dict``/``load_state_dict`` make it checkpointable (merged params, version,
    per-agent last sequence numbers), so a restarted coordinator still rejects retries of
    pushes it had acknowledged.

    Example:
        >>> import numpy as np
        >>> b = MergeBook("fedavg")
        >>> b.submit(AgentUpdate("x", 3, {"w": np.ones(2)}))
        True
        >>> b.submit(AgentUpdate("x", 2, {"w": np.zeros(2)}))   # older than seq 3: ignored
        False
        >>> b.merge().params["w"].tolist(), b.version
        ([1.0, 1.0], 1)
    """

    def __init__(self, rule: str | MergeRule | Mapping[str, Any] = "fedavg", *, min_updates: int = 1,
                 **rule_kwargs: Any) -> None:
        self.rule = get_rule(rule, **rule_kwargs)
        if isinstance(min_updates, bool) or not isinstance(min_updates, int) or min_updates < 1:
            raise MergeError(f"min_updates must be an integer >= 1, got {min_updates!r}")
        self.min_updates = min_updates
        self.version = 0
        self.merged: dict[str, np.ndarray] | None = None
        self.merged_fisher: dict[str, np.ndarray] | None = None
        self.last_seq: dict[str, int] = {}
        self.pending: dict[str, AgentUpdate] = {}
        self.history: list[dict[str, Any]] = []

    def submit(self, update: AgentUpdate) -> bool:
        """Take one push; False if it was already seen (same or older seq from that agent)."""
        if not isinstance(update, AgentUpdate):
            raise MergeError(f"submit() takes an AgentUpdate, got {type(update).__name__}")
        last = self.last_seq.get(update.agent_id)
        if last is not None and update.seq <= last:
            return False
        ref = self.merged if self.merged is not None else (
            next(iter(self.pending.values())).params if self.pending else None)
        if ref is not None:
            if set(ref) != set(update.params):
                diff = sorted(set(ref) ^ set(update.params))
                raise MergeError(f"update {update.agent_id} does not match the merged state's names: {diff}")
            for k, v in update.params.items():
                if v.shape != ref[k].shape:
                    raise MergeError(f"update {update.agent_id}: params[{k!r}] has shape {v.shape}, "
                                     f"merged state has {ref[k].shape}")
        prev = self.pending.get(update.agent_id)
        if prev is not None and prev.evidence and update.evidence:
            # a newer push replaces the pending one as the agent's vote, but its evidence only
            # covers the time since that push: both count
            ev = {k: v + prev.evidence[k] if k in prev.evidence else v for k, v in update.evidence.items()}
            update = replace(update, evidence=ev)
        self.last_seq[update.agent_id] = update.seq
        self.pending[update.agent_id] = update
        return True

    @property
    def pending_agents(self) -> list[str]:
        """Agent ids with an update waiting for the next merge, sorted."""
        return sorted(self.pending)

    def merge(self) -> MergeResult | None:
        """Merge the pending updates; None if fewer than ``min_updates`` are waiting."""
        if len(self.pending) < self.min_updates:
            return None
        ups = [self.pending[a] for a in sorted(self.pending)]
        params, evidence = self._pool(ups)
        rest = [k for k in ups[0].params if k not in params]
        if rest:
            params.update(self.rule([u.only(rest) for u in ups] if evidence else ups))
        params = {k: params[k] for k in sorted(params)}
        fisher = None
        if all(u.fisher for u in ups):
            names = sorted(set.intersection(*(set(u.fisher) for u in ups)))  # type: ignore[arg-type]
            w = _weights(ups)
            fisher = {k: np.tensordot(w, np.stack([np.asarray(u.fisher[k], np.float64) for u in ups]),  # type: ignore[index]
                                      axes=1).astype(np.float32) for k in names}
        self.version += 1
        self.merged = params
        self.merged_fisher = fisher
        self.pending = {}
        total = float(sum(u.weight for u in ups))
        self.history.append({"version": self.version, "agents": [u.agent_id for u in ups], "rule": self.rule.name,
                             "n_trajectories": total})
        del self.history[:-100]
        return MergeResult(self.version, params, [u.agent_id for u in ups], self.rule.name, total, fisher,
                           evidence)

    def _pool(self, ups: Sequence[AgentUpdate]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """The pooled names' merged values (last merged + every update's evidence) and the
        round's evidence; ``({}, None)`` when no update carries evidence."""
        names = sorted({k for u in ups for k in (u.evidence or ())})
        if not names:
            return {}, None
        base = {}
        for k in names:
            if self.merged is not None and k in self.merged:
                base[k] = self.merged[k]
            else:   # first merge: the state the evidence was gathered on (the prior, for fresh agents)
                u = next(u for u in ups if u.evidence and k in u.evidence)
                base[k] = np.asarray(u.params[k], np.float64) - u.evidence[k]  # type: ignore[index]
        deltas = [{k: u.evidence[k] if u.evidence and k in u.evidence
                   else np.asarray(u.params[k], np.float64) - np.asarray(base[k], np.float64) for k in names}
                  for u in ups]
        pooled = pool_evidence(base, deltas)
        evidence = pool_evidence({k: np.zeros(np.shape(base[k])) for k in names}, deltas)
        ref = ups[0].params
        return {k: v.astype(ref[k].dtype if ref[k].dtype.kind == "f" else np.float64) for k, v in pooled.items()}, \
            evidence

    def state_dict(self) -> dict[str, Any]:
        """Plain data for the msgpack codec (arrays kept)."""
        return {"rule": self.rule.to_dict(), "min_updates": self.min_updates, "version": self.version,
                "merged": self.merged, "merged_fisher": self.merged_fisher, "last_seq": dict(self.last_seq),
                "history": list(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (pending updates are not part of it)."""
        try:
            version = int(state["version"])
            last_seq = {str(k): int(v) for k, v in dict(state["last_seq"]).items()}
            merged = state.get("merged")
            merged = None if merged is None else {str(k): np.asarray(v) for k, v in merged.items()}
            mf = state.get("merged_fisher")
            mf = None if mf is None else {str(k): np.asarray(v) for k, v in mf.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MergeError(f"malformed merge book state: {exc}") from exc
        self.version, self.last_seq, self.merged, self.merged_fisher = version, last_seq, merged, mf
        self.history = list(state.get("history", []))
        self.pending = {}
