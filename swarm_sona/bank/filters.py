"""Retrieval filters: one validated description, translated by each backend and by the cache.

:class:`PatternFilter` holds what a caller may filter on: ``min_reward``, ``success``,
``agents`` (the pattern's agent id is one of them), ``task_type`` (one or several),
``source`` (``stored``/``distilled``) and ``metadata`` conditions. :meth:`PatternFilter.conditions`
lowers it to a list of :class:`Condition` (``match``, ``any`` or ``range`` on a payload key)
that the Qdrant Edge and qdrant-client backends map onto their own filter classes.

Metadata conditions, per key (nested keys with dots, e.g. ``"repo.lang"``):
a string or int matches exactly; a list of strings or of ints matches any of them; a float
matches exactly (as a closed range); a mapping with ``gt``/``gte``/``lt``/``lte`` is a range.
Booleans cannot be filtered on: qdrant-edge-py 0.9 turns a boolean match value into an
integer, which then matches nothing. For the same reason ``success`` is filtered through the
payload's keyword field ``outcome`` (``"success"``/``"failure"``), which every pattern carries.

Example:
    >>> f = PatternFilter.build(min_reward=0.8, success=True, agents="coder", metadata={"lang": "py"})
    >>> [(c.kind, c.key, c.value) for c in f.conditions()]
    [('range', 'reward', {'gte': 0.8}), ('match', 'outcome', 'success'), ('any', 'agent_id', ['coder']), ('match', 'metadata.lang', 'py')]
    >>> f.cache_filterable
    False
    >>> PatternFilter.build(metadata={"lang": {"near": 1}})
    Traceback (most recent call last):
    ...
    swarm_sona.bank.errors.BankInputError: metadata filter 'lang': unknown range key 'near' (use gt, gte, lt, lte)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm_sona.bank.errors import BankInputError
from swarm_sona.bank.pattern import SOURCES, check_reward

__all__ = ["Condition", "PatternFilter"]

_RANGE_KEYS = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Condition:
    """One payload condition: ``kind`` is ``match`` (value), ``any`` (list) or ``range`` (dict)."""

    kind: str
    key: str
    value: Any


def _str_tuple(v: Any, what: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return (v,)
    if isinstance(v, Iterable):
        out = tuple(v)
        for x in out:
            if not isinstance(x, str):
                raise BankInputError(f"{what} must be strings, got {x!r}")
        if not out:
            raise BankInputError(f"{what} must not be an empty list (it would match nothing)")
        return out
    raise BankInputError(f"{what} must be a string or a list of strings, got {v!r}")


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
        raise BankInputError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _metadata_condition(key: Any, v: Any) -> Condition:
    if not isinstance(key, str) or not key or key.startswith(".") or key.endswith("."):
        raise BankInputError(f"metadata filter key must be a non-empty string (dots for nesting), got {key!r}")
    path = f"metadata.{key}"
    if isinstance(v, (bool, np.bool_)):
        raise BankInputError(f"metadata filter {key!r}: booleans cannot be filtered on (the embedded engine matches "
                             "them as integers); store the flag as a string such as 'yes'/'no'")
    if isinstance(v, str):
        return Condition("match", path, v)
    if isinstance(v, (int, np.integer)):
        return Condition("match", path, int(v))
    if isinstance(v, (float, np.floating)):
        x = _number(v, f"metadata filter {key!r}")
        return Condition("range", path, {"gte": x, "lte": x})
    if isinstance(v, Mapping):
        rng = {}
        for rk, rv in v.items():
            if rk not in _RANGE_KEYS:
                raise BankInputError(f"metadata filter {key!r}: unknown range key {rk!r} (use gt, gte, lt, lte)")
            rng[rk] = _number(rv, f"metadata filter {key!r}.{rk}")
        if not rng:
            raise BankInputError(f"metadata filter {key!r}: empty range")
        return Condition("range", path, rng)
    if isinstance(v, (list, tuple)):
        items = list(v)
        if not items:
            raise BankInputError(f"metadata filter {key!r}: empty list (it would match nothing)")
        if all(isinstance(x, str) for x in items):
            return Condition("any", path, items)
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in items):
            return Condition("any", path, [int(x) for x in items])
        raise BankInputError(f"metadata filter {key!r}: a list must hold only strings or only integers")
    raise BankInputError(f"metadata filter {key!r}: unsupported value {v!r} "
                         "(use a string, int, bool, float, list, or a range mapping)")


@dataclass(frozen=True)
class PatternFilter:
    """Validated retrieval filter (build it with :meth:`build`)."""

    min_reward: float | None = None
    success: bool | None = None
    agents: tuple[str, ...] | None = None
    task_types: tuple[str, ...] | None = None
    source: str | None = None
    metadata: tuple[Condition, ...] = ()

    @classmethod
    def build(cls, *, min_reward: Any = None, success: Any = None, agents: Any = None, task_type: Any = None,
              source: Any = None, metadata: Mapping[str, Any] | None = None) -> PatternFilter:
        """Validate filter arguments; raises :class:`BankInputError` naming the bad one."""
        mr = None if min_reward is None else check_reward(min_reward, "min_reward")
        if success is not None and not isinstance(success, (bool, np.bool_)):
            raise BankInputError(f"success filter must be true, false or None, got {success!r}")
        if source is not None and source not in SOURCES:
            raise BankInputError(f"source filter must be one of {list(SOURCES)}, got {source!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise BankInputError(f"metadata filter must be a mapping, got {type(metadata).__name__}")
        md = tuple(_metadata_condition(k, v) for k, v in (metadata or {}).items())
        return cls(min_reward=mr, success=None if success is None else bool(success),
                   agents=_str_tuple(agents, "source_agents"), task_types=_str_tuple(task_type, "task_type"),
                   source=source, metadata=md)

    @property
    def cache_filterable(self) -> bool:
        """True when the hot-path cache's columns can evaluate this filter (no metadata conditions)."""
        return not self.metadata

    @property
    def is_empty(self) -> bool:
        """True when the filter keeps everything."""
        return self == PatternFilter()

    def conditions(self) -> list[Condition]:
        """The filter as a conjunction of payload conditions."""
        out: list[Condition] = []
        if self.min_reward is not None:
            out.append(Condition("range", "reward", {"gte": self.min_reward}))
        if self.success is not None:
            out.append(Condition("match", "outcome", "success" if self.success else "failure"))
        if self.agents is not None:
            out.append(Condition("any", "agent_id", list(self.agents)))
        if self.task_types is not None:
            out.append(Condition("any", "task_type", list(self.task_types)))
        if self.source is not None:
            out.append(Condition("match", "source", self.source))
        out.extend(self.metadata)
        return out
