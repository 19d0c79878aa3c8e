"""The merge-rule registry: :class:`MergeRule` (a rule's name, aliases, tolerance, robustness,
norm clip, bound options and function), :data:`RULES`, :func:`register_rule`,
:func:`unregister_rule`, :func:`get_rule` and :func:`tolerated_faults`.

A rule is found by its name or an alias, or by an import reference
``"package.module:attribute"`` (a :class:`MergeRule` that module made with
:func:`register_rule`, or a plain rule function, which then tolerates no bad agent): the
module is imported on first use and the rule is registered under the reference, which is also
its name. A registration lives in one process; a reference travels with the rule's name, so
the coordinators of a swarm (other Ray processes) import the module themselves.

Example:
    >>> r = get_rule("swarm_sona.consensus.rules.robust:coordinate_median")
    >>> r.name, r.tolerates(5), get_rule(r.to_dict()) == r
    ('swarm_sona.consensus.rules.robust:coordinate_median', 0, True)
    >>> unregister_rule(r.name)
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

from swarm_sona.consensus.rules.averaging import fedavg
from swarm_sona.consensus.updates import AgentUpdate, MergeError, check_compatible, clip_updates
from swarm_sona.core.references import import_reference, is_reference

__all__ = ["MergeRule", "RULES", "register_rule", "unregister_rule", "get_rule", "tolerated_faults", "DEFAULT_CLIP",
           "RuleFn", "Tolerance"]

DEFAULT_CLIP = 3.0
"""Default norm clip of robust rules: a multiple of the median agent's update / evidence norm."""

RuleFn = Callable[..., dict[str, np.ndarray]]
Tolerance = Callable[..., int]


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
    if is_reference(name):   # "package.module:attribute": exact, imported on first use
        return RULES.get(name) or _import_rule(name)
    key = _key(name)
    if key in RULES:
        return RULES[key]
    for r in RULES.values():
        if key in r.aliases:
            return r
    return None


def _import_rule(ref: str) -> MergeRule:
    """Import the rule ``ref`` names and register it under ``ref`` (also its name)."""
    obj = import_reference(ref, "merge rule", MergeError)
    if isinstance(obj, MergeRule):
        _check_fn(ref, obj.fn)
        rule = replace(obj, name=ref, aliases=(), kwargs=(), clip=_check_clip(obj.clip, f"merge rule {ref!r}"))
    elif callable(obj):
        _check_fn(ref, obj)
        rule = _build_rule(ref, obj, tolerates=0, tolerance_doc=None, aliases=(), robust=None, clip="default",
                           description="")
    else:
        raise MergeError(f"merge rule {ref!r}: {type(obj).__name__} is neither a MergeRule nor a function")
    RULES[ref] = rule
    return rule


def _check_fn(name: str, fn: Any) -> None:
    if not callable(fn):
        raise MergeError(f"register_rule({name!r}): fn must be callable, got {fn!r}")
    try:
        first = next(iter(inspect.signature(fn).parameters.values()), None)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        first = None
    if first is None or first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        raise MergeError(f"register_rule({name!r}): fn must take the list of updates as its first argument")


def _check_clip(clip: Any, where: str) -> float | None:
    if clip is not None and (isinstance(clip, (bool, str)) or not isinstance(clip, (int, float))
                             or not math.isfinite(clip) or clip < 1):
        raise MergeError(f"{where}: clip must be None or a finite number >= 1, got {clip!r}")
    return None if clip is None else float(clip)


def _tolerance(name: str, tolerates: int | Tolerance, tolerance_doc: str | None) -> tuple[Tolerance, str]:
    """The tolerance function and its words for a constant or a function."""
    if callable(tolerates):
        return tolerates, tolerance_doc or "see its tolerance function"
    if isinstance(tolerates, int) and not isinstance(tolerates, bool) and tolerates >= 0:
        const = tolerates

        def tol(n: int, **_: Any) -> int:
            return min(const, (n - 1) // 2)

        return tol, tolerance_doc or str(const)
    raise MergeError(f"register_rule({name!r}): tolerates must be an integer >= 0 or a function, got {tolerates!r}")


def _build_rule(name: str, fn: RuleFn, *, tolerates: int | Tolerance, tolerance_doc: str | None,
                aliases: tuple[str, ...], robust: bool | None, clip: float | None | str, description: str) -> MergeRule:
    tol, doc = _tolerance(name, tolerates, tolerance_doc)
    rule = MergeRule(name, fn, tol, doc, aliases, False, None, (), description or (fn.__doc__ or "").strip().split("\n")[0])
    is_robust = rule.tolerates(7) > 0 if robust is None else bool(robust)
    c = (DEFAULT_CLIP if is_robust else None) if clip == "default" else clip
    return replace(rule, robust=is_robust, clip=_check_clip(c, f"register_rule({name!r})"))


def _check_free(name: str, names: Sequence[str], replace_existing: bool) -> None:
    """Names and aliases must not belong to another rule (nor to any rule, unless replacing)."""
    for n in names:
        hit = _lookup(n)
        if hit is None or (replace_existing and hit.name == name):
            continue
        if replace_existing:
            raise MergeError(f"register_rule({name!r}): {n!r} belongs to the rule {hit.name!r}")
        raise MergeError(f"register_rule({name!r}): {n!r} is already the merge rule {hit.name!r}; "
                         f"pass replace_existing=True to replace it")


def register_rule(name: str, fn: RuleFn, *, tolerates: int | Tolerance = 0, tolerance_doc: str | None = None,
                  aliases: Sequence[str] = (), robust: bool | None = None, clip: float | None | str = "default",
                  description: str = "", replace_existing: bool = False) -> MergeRule:
    """Register a merge rule; returns its :class:`MergeRule`.

    ``fn(updates, **options) -> {name: array}`` receives the updates sorted by agent id with
    identical names and shapes. ``tolerates``: a constant, or ``f(n, **options) -> int``.
    ``robust`` defaults to "tolerates at least one bad agent of 7"; ``clip`` defaults to
    :data:`DEFAULT_CLIP` for robust rules and None otherwise. Names and aliases are
    lower-case identifiers and must not clash with registered ones (unless ``replace_existing``).
    A config names a rule registered in a user's module as ``"package.module:attribute"``
    (the attribute holding the returned rule), so that every process imports that module.

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
    _check_fn(name, fn)
    als = tuple(_key(a) for a in aliases)
    for a in als:
        if not _NAME.match(a) or a == name:
            raise MergeError(f"register_rule({name!r}): bad alias {a!r}")
    if not replace_existing:
        _check_free(name, (name, *als), False)
    rule = _build_rule(name, fn, tolerates=tolerates, tolerance_doc=tolerance_doc, aliases=als, robust=robust,
                       clip=clip, description=description)
    if replace_existing:
        _check_free(name, (name, *als), True)
    RULES[name] = rule
    return rule


def unregister_rule(name: str) -> None:
    """Remove a registered rule (by its canonical name, or the import reference it was found by).

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
        raise MergeError(f"unknown merge rule {name!r}{hint}; known: {sorted(RULES)} "
                         f"(or 'package.module:attribute' of a user's rule)")
    return rule


def get_rule(name: str | MergeRule | Mapping[str, Any], **kwargs: Any) -> MergeRule:
    """A :class:`MergeRule` by name or alias (``"median"``), by import reference
    (``"package.module:attribute"``), or from ``{"name": ..., **options}``.

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
    clip = _check_clip(kw.pop("clip", rule.clip), f"merge rule {rule.name!r}")
    params = inspect.signature(rule.fn).parameters
    first = next(iter(params), None)
    for k in kw:
        if k not in params or k == first or params[k].kind not in (params[k].KEYWORD_ONLY,
                                                                   params[k].POSITIONAL_OR_KEYWORD):
            raise MergeError(f"merge rule {rule.name!r} has no option {k!r}")
    return replace(rule, clip=clip, kwargs=tuple(sorted(kw.items())))


def tolerated_faults(rule: str | MergeRule | Mapping[str, Any], n: int, **kw: Any) -> int:
    """How many arbitrary agents of ``n`` the rule tolerates (see the table in :mod:`swarm_sona.consensus.rules`).

    Example:
        >>> [tolerated_faults(r, 5) for r in ("fedavg", "median", "trimmed_mean", "krum")]
        [0, 2, 1, 1]
    """
    return get_rule(rule, **kw).tolerates(n)
