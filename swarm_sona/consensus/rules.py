"""Merge rules as one registry: each rule is a :class:`MergeRule` carrying its name, aliases,
the number of bad agents it tolerates, whether it is robust, its norm clip, its options and
its function. :func:`register_rule` adds one (from any package); :func:`get_rule` finds one by
name or alias and binds options. All rules are deterministic: updates are ordered by agent
id before any arithmetic.

==================  ============================================================  =====================
rule                what it computes                                              tolerates f of n
==================  ============================================================  =====================
``fedavg``          mean weighted by trajectory counts (overflow-safe)            0 (one bad agent moves it anywhere)
``fisher``          per coordinate: sum_i w_i F_i x_i / sum_i w_i F_i              0
``median``          coordinate-wise median                                        f <= (n - 1) // 2 (just under half)
``trimmed_mean``    per coordinate: drop the f largest and f smallest, average    f (given, default ceil(0.2 n)); 2f < n
``krum``            the update closest (sum of squared distances to its            f with n >= 2f + 3
                    n - f - 2 nearest) to the others; ``multi_krum`` averages
                    the m best
``ties``            TIES-merging: trim to top-density magnitudes, elect sign by   0 (for merging adapters of
                    mass, average the agreeing entries                             different tasks)
``dare``            drop-and-rescale (seeded) then average                        0
==================  ============================================================  =====================

A *robust* rule (tolerance > 0: median, trimmed_mean, krum, multi_krum) trusts nothing an
agent reports about itself: it ignores the self-reported weights, aggregates the Fisher with
itself (not a weighted mean), reports the round's trajectory count as ``n x median weight``,
and by default clips every update's norm (``clip=3.0``: no update farther from the reference
than 3x the median agent's distance, see :func:`~swarm_sona.consensus.updates.clip_updates`)
and every agent's pooled evidence (3x the median agent's evidence). Non-robust rules weight by
the (validated) counts, aggregate the Fisher by the overflow-safe weighted mean and do not clip
unless given ``clip=``.

Stated bound (checked by ``tests/test_byzantine.py``): with at most ``tolerates(n)`` bad agents,
whatever they send (poisoned parameters, forged Fisher, the largest allowed weight), the merged
parameters and Fisher of median, trimmed_mean, krum and multi_krum each stay within the
diameter of the honest agents' bounding box (per name: ``||max_i x_i - min_i x_i||``, honest
agents only) of the merge of the honest agents alone.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.rules import get_rule
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> ups = [AgentUpdate(a, 0, {"x": np.array([v])}, weight=w)
    ...        for a, v, w in zip("abc", [1.0, 2.0, 1e9], [5, 5, 10 ** 12])]
    >>> r = get_rule("median")
    >>> r(ups)["x"].tolist(), r.tolerates(3), r.count(ups)
    ([2.0], 1, 15.0)
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from swarm_sona.consensus.updates import AgentUpdate, MergeError, check_compatible, clip_updates

__all__ = ["MergeRule", "RULES", "register_rule", "unregister_rule", "get_rule", "tolerated_faults", "fedavg",
           "fisher_weighted", "coordinate_median", "trimmed_mean", "krum", "multi_krum", "ties", "dare",
           "DEFAULT_CLIP"]

DEFAULT_CLIP = 3.0
"""Default norm clip of robust rules: a multiple of the median agent's update / evidence norm."""

RuleFn = Callable[..., dict[str, np.ndarray]]
Tolerance = Callable[..., int]


def _stack(ups: Sequence[AgentUpdate], name: str) -> np.ndarray:
    return np.stack([np.asarray(u.params[name], np.float64) for u in ups])


def _weights(ups: Sequence[AgentUpdate]) -> np.ndarray:
    """Normalised trajectory weights, computed overflow-safe (scaled by the largest first)."""
    w = np.array([u.weight for u in ups], np.float64)
    m = float(w.max()) if len(w) else 0.0
    if not m > 0 or not math.isfinite(m):
        return np.full(len(ups), 1.0 / max(1, len(ups)))
    w = w / m
    return w / w.sum()


def _wmean(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``sum_i w_i x_i`` for normalised ``w``, overflow-safe: scaled by max |x| first."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m == 0.0:
        return np.zeros(x.shape[1:])
    return np.tensordot(w, x / m, axes=1) * m


def _cast(out: dict[str, np.ndarray], ups: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    ref = ups[0].params
    res = {}
    for k in sorted(out):
        dt = ref[k].dtype if ref[k].dtype.kind == "f" else np.float64
        with np.errstate(over="ignore"):
            v = np.asarray(out[k]).astype(dt)
        if not np.all(np.isfinite(v)):
            raise MergeError(f"merged {k!r} is not finite in {dt} (values beyond its range)")
        res[k] = v
    return res


# ---------------------------------------------------------------------------------------
# the rule functions
# ---------------------------------------------------------------------------------------
def fedavg(updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """Trajectory-weighted mean (FedAvg), overflow-safe. Tolerates no bad agent.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate("a", 0, {"x": np.array([0.0])}, weight=1),
        ...      AgentUpdate("b", 0, {"x": np.array([4.0])}, weight=3)]
        >>> fedavg(u)["x"].tolist()
        [3.0]
    """
    ups = check_compatible(updates)
    w = _weights(ups)
    return _cast({k: _wmean(w, _stack(ups, k)) for k in ups[0].params}, ups)


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
    ups = check_compatible(updates)
    w = _weights(ups)
    out = {}
    for k in ups[0].params:
        x = _stack(ups, k)
        mean = _wmean(w, x)
        if all(u.fisher is not None and k in u.fisher for u in ups):
            F = np.stack([np.asarray(u.fisher[k], np.float64) for u in ups])  # type: ignore[index]
            fm = float(F.max()) if F.size else 0.0
            F = F / fm if fm > 0 else F
            wf = w.reshape((-1,) + (1,) * (x.ndim - 1)) * F
            den = wf.sum(axis=0)
            num = _wmean(np.ones(len(ups)), wf * x) if x.size else np.zeros(x.shape[1:])
            out[k] = np.where(den > eps, num / np.maximum(den, eps), mean)
        else:
            out[k] = mean
    return _cast(out, ups)


def coordinate_median(updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray]:
    """Coordinate-wise median. Tolerates f <= (n - 1) // 2 arbitrary agents per coordinate.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abc", [1.0, 2.0, 1e9])]
        >>> coordinate_median(u)["x"].tolist()
        [2.0]
    """
    ups = check_compatible(updates)
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
    ups = check_compatible(updates)
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
    the largest such value. Ties break by agent id. Distances are computed on values scaled
    by the largest magnitude, so huge poisoned values cannot overflow them.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abcde", [1., 1.1, 0.9, 1.05, 50.])]
        >>> krum(u, f=1)["x"].tolist()
        [1.05]
    """
    ups = check_compatible(updates)
    n = len(ups)
    if f is None:
        f = max(0, (n - 3) // 2)
    if f < 0 or n < 2 * f + 3:
        raise MergeError(f"krum: f={f} needs n >= 2f + 3, got n={n}")
    if not 1 <= m <= n:
        raise MergeError(f"krum: m={m} must be in [1, n={n}]")
    X = _flat_matrix(ups)
    scale = float(np.max(np.abs(X))) if X.size else 0.0
    X = X / scale if scale > 0 else X
    D = np.array([[float(np.sum((X[i] - X[j]) ** 2)) for j in range(n)] for i in range(n)])
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


def multi_krum(updates: Sequence[AgentUpdate], *, f: int | None = None, m: int | None = None) -> dict[str, np.ndarray]:
    """Multi-Krum: the mean of the ``m`` (default ``n - f``) best Krum scores.

    Example:
        >>> import numpy as np
        >>> u = [AgentUpdate(a, 0, {"x": np.array([v])}) for a, v in zip("abcde", [1., 2., 3., 2., 90.])]
        >>> multi_krum(u, f=1)["x"].tolist()
        [2.0]
    """
    n = len(updates)
    if f is None:
        f = max(0, (n - 3) // 2)
    return krum(updates, f=f, m=m if m is not None else max(1, n - f))


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
    ups = check_compatible(updates)
    out = {}
    for k in ups[0].params:
        x = _stack(ups, k)
        flat = x.reshape(len(ups), -1)
        keep = max(1, int(math.ceil(density * flat.shape[1])))
        trimmed = np.zeros_like(flat)
        for i in range(len(ups)):
            idx = np.argsort(-np.abs(flat[i]), kind="stable")[:keep]
            trimmed[i, idx] = flat[i, idx]
        m = float(np.max(np.abs(trimmed))) if trimmed.size else 0.0
        sign = np.sign((trimmed / m).sum(axis=0)) if m > 0 else np.zeros(flat.shape[1])
        agree = (np.sign(trimmed) == sign) & (trimmed != 0)
        cnt = agree.sum(axis=0)
        tot = ((trimmed / m) * agree).sum(axis=0) * m if m > 0 else np.zeros(flat.shape[1])
        merged = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)
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
    ups = check_compatible(updates)
    w = _weights(ups)
    out = {}
    for k in ups[0].params:
        rows = []
        for u in ups:
            x = np.asarray(u.params[k], np.float64)
            key = [seed] + list(f"{u.agent_id}\x00{k}".encode())
            mask = np.random.default_rng(key).random(x.shape) >= p
            rows.append(np.where(mask, x, 0.0))
        out[k] = _wmean(w, np.stack(rows)) / (1.0 - p)
    return _cast(out, ups)


# ---------------------------------------------------------------------------------------
# the rule object and its registry
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MergeRule:
    """A merge rule: name, aliases, tolerance, robustness, norm clip, bound options, function.

    ``tolerance(n, **options)`` is how many arbitrary agents of ``n`` the rule tolerates
    (``tolerance_doc`` says it in words); ``robust`` rules ignore self-reported weights,
    aggregate the Fisher with themselves and clip by default; ``clip`` is the multiple of the
    median agent's norm that bounds every update and every agent's pooled evidence (None: no
    clipping). Call it on a list of updates (``base``: the last merged state, the reference
    of the clip).

    Example:
        >>> r = get_rule("trimmed_mean", f=1)
        >>> r.name, r.robust, r.clip, r.tolerates(5), get_rule("fedavg").clip
        ('trimmed_mean', True, 3.0, 1, None)
    """

    name: str
    fn: RuleFn
    tolerance: Tolerance
    tolerance_doc: str = "0"
    aliases: tuple[str, ...] = ()
    robust: bool = False
    clip: float | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()
    description: str = ""

    def __call__(self, updates: Sequence[AgentUpdate], *,
                 base: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        ups = check_compatible(updates)
        if self.clip is not None and len(ups) > 1:
            ups = clip_updates(ups, self.clip, base)
        return self.fn(ups, **dict(self.kwargs))

    def tolerates(self, n: int) -> int:
        """Bad agents of ``n`` this rule tolerates (an integer, capped at ``(n - 1) // 2``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise MergeError(f"tolerates: n must be an integer >= 1, got {n!r}")
        f = self.tolerance(n, **dict(self.kwargs))
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 0:
            raise MergeError(f"merge rule {self.name!r}: its tolerance must be an integer >= 0, got {f!r}")
        return min(int(f), (n - 1) // 2)   # no rule tolerates half or more

    def merge_fisher(self, updates: Sequence[AgentUpdate]) -> dict[str, np.ndarray] | None:
        """The round's merged Fisher (float32) over the names every update has a Fisher for:
        robust rules apply themselves to the Fishers (self-reported weights ignored), the others
        the overflow-safe trajectory-weighted mean. None if some update has no Fisher."""
        ups = sorted(updates, key=lambda u: u.agent_id)
        if not ups or not all(u.fisher for u in ups):
            return None
        names = sorted(set.intersection(*(set(u.fisher or ()) for u in ups)))
        names = [k for k in names if len({np.shape(u.fisher[k]) for u in ups}) == 1]  # type: ignore[index]
        if not names:
            return None
        fups = [u.with_params({k: np.asarray(u.fisher[k], np.float64) for k in names}) for u in ups]  # type: ignore[index]
        merged = self.fn(fups, **dict(self.kwargs)) if self.robust else fedavg(fups)
        return {k: np.maximum(np.asarray(v, np.float64), 0.0).astype(np.float32) for k, v in merged.items()}

    def count(self, updates: Sequence[AgentUpdate]) -> float:
        """The trajectory count the merged state stands for: robust rules ``n x median weight``
        (rounded; bad agents cannot inflate it), others the sum of the validated weights."""
        w = [u.weight for u in updates]
        if not w:
            return 0.0
        if self.robust:
            return float(round(len(w) * float(np.median(w))))
        return float(math.fsum(w))

    def to_dict(self) -> dict[str, Any]:
        """``{"name", **options}`` (with ``clip`` when it differs from the rule's default).

        Example:
            >>> get_rule("median", clip=None).to_dict()
            {'name': 'median', 'clip': None}
        """
        d: dict[str, Any] = {"name": self.name, **dict(self.kwargs)}
        if RULES.get(self.name) is not None and self.clip != RULES[self.name].clip:
            d["clip"] = self.clip
        return d


RULES: dict[str, MergeRule] = {}
"""The registry: canonical name -> :class:`MergeRule` (unbound options). Add with :func:`register_rule`."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _lookup(name: str) -> MergeRule | None:
    key = _key(name)
    if key in RULES:
        return RULES[key]
    for r in RULES.values():
        if key in r.aliases:
            return r
    return None


def register_rule(name: str, fn: RuleFn, *, tolerates: int | Tolerance = 0, tolerance_doc: str | None = None,
                  aliases: Sequence[str] = (), robust: bool | None = None, clip: float | None | str = "default",
                  description: str = "", replace_existing: bool = False) -> MergeRule:
    """Register a merge rule; returns its :class:`MergeRule`.

    ``fn(updates, **options) -> {name: array}`` receives the updates sorted by agent id with
    identical names and shapes. ``tolerates``: a constant, or ``f(n, **options) -> int``.
    ``robust`` defaults to "tolerates at least one bad agent of 7"; ``clip`` defaults to
    :data:`DEFAULT_CLIP` for robust rules and None otherwise. Names and aliases are
    lower-case identifiers and must not clash with registered ones (unless ``replace_existing``).

    Example:
        >>> import numpy as np
        >>> def midrange(updates):
        ...     return {k: (np.max([u.params[k] for u in updates], 0) + np.min([u.params[k] for u in updates], 0)) / 2
        ...             for k in updates[0].params}
        >>> r = register_rule("midrange", midrange, aliases=("mid",))
        >>> get_rule("mid").name, r.tolerates(5)
        ('midrange', 0)
        >>> unregister_rule("midrange")
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise MergeError(f"register_rule: name must be a lower-case identifier, got {name!r}")
    if not callable(fn):
        raise MergeError(f"register_rule({name!r}): fn must be callable, got {fn!r}")
    try:
        first = next(iter(inspect.signature(fn).parameters.values()), None)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        first = None
    if first is None or first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        raise MergeError(f"register_rule({name!r}): fn must take the list of updates as its first argument")
    als = tuple(_key(a) for a in aliases)
    for a in als:
        if not _NAME.match(a) or a == name:
            raise MergeError(f"register_rule({name!r}): bad alias {a!r}")
    if not replace_existing:
        for n in (name, *als):
            hit = _lookup(n)
            if hit is not None:
                raise MergeError(f"register_rule({name!r}): {n!r} is already the merge rule {hit.name!r}; "
                                 f"pass replace_existing=True to replace it")
    if callable(tolerates):
        tol = tolerates
        doc = tolerance_doc or "see its tolerance function"
    elif isinstance(tolerates, int) and not isinstance(tolerates, bool) and tolerates >= 0:
        const = tolerates

        def tol(n: int, **_: Any) -> int:
            return min(const, (n - 1) // 2)

        doc = tolerance_doc or str(const)
    else:
        raise MergeError(f"register_rule({name!r}): tolerates must be an integer >= 0 or a function, got {tolerates!r}")
    rule = MergeRule(name, fn, tol, doc, als, False, None, (), description or (fn.__doc__ or "").strip().split("\n")[0])
    is_robust = rule.tolerates(7) > 0 if robust is None else bool(robust)
    c = (DEFAULT_CLIP if is_robust else None) if clip == "default" else clip
    if c is not None and (isinstance(c, (bool, str)) or not isinstance(c, (int, float)) or not math.isfinite(c)
                          or c < 1):
        raise MergeError(f"register_rule({name!r}): clip must be None or a finite number >= 1, got {c!r}")
    rule = replace(rule, robust=is_robust, clip=None if c is None else float(c))
    if replace_existing:
        for n in (name, *als):
            hit = _lookup(n)
            if hit is not None and hit.name != name:
                raise MergeError(f"register_rule({name!r}): {n!r} belongs to the rule {hit.name!r}")
    RULES[name] = rule
    return rule


def unregister_rule(name: str) -> None:
    """Remove a registered rule (by its canonical name).

    Example:
        >>> unregister_rule("no_such_rule")
        Traceback (most recent call last):
        ...
        swarm_sona.consensus.updates.MergeError: unregister_rule: no merge rule 'no_such_rule'
    """
    if name not in RULES:
        raise MergeError(f"unregister_rule: no merge rule {name!r}")
    del RULES[name]


def _canonical(name: str) -> MergeRule:
    if not isinstance(name, str):
        raise MergeError(f"merge rule must be a name, got {name!r}")
    rule = _lookup(name)
    if rule is None:
        names = sorted(set(RULES) | {a for r in RULES.values() for a in r.aliases})
        close = difflib.get_close_matches(_key(name), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MergeError(f"unknown merge rule {name!r}{hint}; known: {sorted(RULES)}")
    return rule


def get_rule(name: str | MergeRule | Mapping[str, Any], **kwargs: Any) -> MergeRule:
    """A :class:`MergeRule` by name or alias (``"median"``), or from ``{"name": ..., **options}``.

    ``clip=`` (a number >= 1, or None) overrides the rule's norm clip; the other options must
    be keyword parameters of the rule's function.

    Example:
        >>> get_rule({"name": "krum", "f": 1}).kwargs
        (('f', 1),)
        >>> get_rule("coordinate-median").name
        'median'
    """
    if isinstance(name, MergeRule):
        return replace(name, kwargs=tuple(sorted({**dict(name.kwargs), **kwargs}.items()))) if kwargs else name
    if isinstance(name, Mapping):
        d = dict(name)
        if "name" not in d:
            raise MergeError("merge rule mapping needs a 'name'")
        nm = d.pop("name")
        d.update(kwargs)
        return get_rule(nm, **d)
    rule = _canonical(name)
    kw = dict(kwargs)
    clip = kw.pop("clip", rule.clip)
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not math.isfinite(clip)
                             or clip < 1):
        raise MergeError(f"merge rule {rule.name!r}: clip must be None or a finite number >= 1, got {clip!r}")
    params = inspect.signature(rule.fn).parameters
    first = next(iter(params), None)
    for k in kw:
        if k not in params or k == first or params[k].kind not in (params[k].KEYWORD_ONLY,
                                                                   params[k].POSITIONAL_OR_KEYWORD):
            raise MergeError(f"merge rule {rule.name!r} has no option {k!r}")
    return replace(rule, clip=None if clip is None else float(clip), kwargs=tuple(sorted(kw.items())))


def tolerated_faults(rule: str | MergeRule | Mapping[str, Any], n: int, **kw: Any) -> int:
    """How many arbitrary agents of ``n`` the rule tolerates (see the module table).

    Example:
        >>> [tolerated_faults(r, 5) for r in ("fedavg", "median", "trimmed_mean", "krum")]
        [0, 2, 1, 1]
    """
    return get_rule(rule, **kw).tolerates(n)


def _krum_f(n: int, f: int | None = None, **_: Any) -> int:
    return max(0, (n - 3) // 2) if f is None else int(f)


def _trim_f(n: int, f: int | None = None, trim: float = 0.2) -> int:
    return _default_f(n, trim) if f is None else int(f)


register_rule("fedavg", fedavg, aliases=("mean", "avg"), tolerance_doc="0 (one bad agent moves it anywhere)")
register_rule("fisher", fisher_weighted, aliases=("fisher_weighted",), tolerance_doc="0 (a forged Fisher wins)")
register_rule("median", coordinate_median, aliases=("coordinate_median",),
              tolerates=lambda n, **_: max(0, (n - 1) // 2), tolerance_doc="f <= (n - 1) // 2")
register_rule("trimmed_mean", trimmed_mean, aliases=("trimmedmean",), tolerates=_trim_f,
              tolerance_doc="f (default ceil(trim n), 2f < n)")
register_rule("krum", krum, tolerates=_krum_f, tolerance_doc="f with n >= 2f + 3")
register_rule("multi_krum", multi_krum, aliases=("multikrum",), tolerates=_krum_f,
              tolerance_doc="f with n >= 2f + 3")
register_rule("ties", ties, tolerance_doc="0 (merges adapters of different tasks)")
register_rule("dare", dare, tolerance_doc="0")
