"""Retention of a ReasoningBank: expiry by age and a cap per task type.

Retention (``config.retention``, see :class:`~swarm_sona.bank.config.RetentionConfig`): with
``max_age`` set, a pattern whose ``created_at`` is older than ``clock() - max_age`` is never
returned or counted (the cache masks it; store queries get a ``created_at`` range condition)
and is deleted at the next prune: when the bank opens, every ``prune_every`` stored patterns,
on :meth:`ReasoningBank.flush` and on :meth:`ReasoningBank.prune`. With
``max_per_task_type`` set, every store deletes, per task type it wrote, the patterns beyond the
cap (oldest first, lowest reward first among equally old, then by id); the ids a store returns
may thus already be gone when one call writes more than the cap. :meth:`ReasoningBank.stats`
reports what was pruned. With a server collection that several processes write, the cap at
store time counts this process's view (its cache); :meth:`ReasoningBank.prune` counts the store.

:class:`RetentionKeeper` decides what to delete and counts what it deleted; the bank gives it a
``delete`` function (which also drops the ids from its caches and tells its delete listeners).
The hot-path cache selects the victims when it sees every write (the embedded bank); otherwise
the store does (``store=True``: scrolls with a ``created_at`` range or per task type).

Example:
    >>> from types import SimpleNamespace
    >>> limits = SimpleNamespace(active=True, max_age=3600.0, max_per_task_type=None, prune_every=0)
    >>> keeper = RetentionKeeper(limits, None, None, clock=lambda: 7200.0, delete=lambda ids: None)
    >>> keeper.cutoff()
    3600.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm_sona.bank.cache import HotCache
from swarm_sona.bank.filters import Condition, PatternFilter

__all__ = ["RetentionKeeper", "PruneCounts", "ids_created_before", "count_created_before", "over_cap_ids"]


def ids_created_before(cache: HotCache, cutoff: float) -> list[str]:
    """Ids of the cached rows created before ``cutoff`` (epoch seconds)."""
    n = cache.n
    if n == 0 or cutoff <= cache.oldest:
        return []
    ids = cache.ids
    return [ids[r] for r in np.flatnonzero(cache.created[:n] < cutoff).tolist()]


def count_created_before(cache: HotCache, cutoff: float) -> int:
    """Cached rows created before ``cutoff``."""
    n = cache.n
    return 0 if n == 0 or cutoff <= cache.oldest else int(np.count_nonzero(cache.created[:n] < cutoff))


def over_cap_ids(cache: HotCache, cap: int, task_types: Iterable[str | None] | None = None) -> list[str]:
    """Ids to delete so that no task type (None = the rows without one) has more than ``cap``
    cached rows: per group the oldest first, the lowest reward first among equally old, then by
    id. ``task_types``: the groups to check (None = every group).

    Example:
        >>> c = HotCache(dim=2, capacity=10)
        >>> c.upsert(["a", "b", "c"], np.eye(2, dtype=np.float32)[[0, 1, 0]],
        ...          [{"reward": 0.9, "created_at": 1.0, "task_type": "t"},
        ...           {"reward": 0.1, "created_at": 1.0, "task_type": "t"},
        ...           {"reward": 0.5, "created_at": 2.0, "task_type": "t"}])
        >>> over_cap_ids(c, 1)
        ['b', 'a']
    """
    n = cache.n
    if n <= cap:
        return []
    col = cache.cols["task_type"][:n]
    codes = cache.codes("task_type")
    if task_types is None:
        counts = np.bincount(col + 1)
        groups = [g - 1 for g in np.flatnonzero(counts > cap).tolist()]
    else:
        groups = sorted({-1 if t is None else codes.get(t, -2) for t in task_types} - {-2})
    out: list[str] = []
    ids = cache.ids
    for g in groups:
        rows = np.flatnonzero(col == g)
        if len(rows) <= cap:
            continue
        gids = [ids[r] for r in rows.tolist()]
        order = np.lexsort((np.array(gids), cache.reward[rows], cache.created[rows]))
        out += [gids[i] for i in order[: len(rows) - cap].tolist()]
    return out


@dataclass
class PruneCounts:
    """Totals of what retention deleted: ``expired``, ``over_cap``, ``runs`` (prunes of expired
    patterns) and ``last_at`` (clock time of the last one, None before any).

    Example:
        >>> PruneCounts().expired
        0
    """

    expired: int = 0
    over_cap: int = 0
    runs: int = 0
    last_at: float | None = None


class RetentionKeeper:
    """Applies ``config`` (a :class:`~swarm_sona.bank.config.RetentionConfig`) to a bank's
    ``backend`` and hot-path ``cache`` (see module docs); ``delete(ids)`` deletes for it."""

    def __init__(self, config: Any, backend: Any, cache: Any, *, clock: Callable[[], float],
                 delete: Callable[[Sequence[str]], None]) -> None:
        self.config = config
        self.backend = backend
        self.cache = cache
        self.clock = clock
        self.delete = delete
        self.counts = PruneCounts()
        self.since_prune = 0

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return bool(self.config.active)

    def cutoff(self) -> float | None:
        """Creation time before which patterns are expired (None: no max_age)."""
        age = self.config.max_age
        return None if age is None else self.clock() - age

    def conditions(self, filt: PatternFilter) -> list[Condition]:
        """The store conditions of ``filt`` plus, with a max_age, ``created_at >= cutoff``."""
        conds = filt.conditions()
        cutoff = self.cutoff()
        if cutoff is not None:
            conds.append(Condition("range", "created_at", {"gte": cutoff}))
        return conds

    def _ran(self) -> None:
        self.counts.runs += 1
        self.counts.last_at = self.clock()
        self.since_prune = 0

    def after_store(self, task_types: set[str | None], n: int, *, store: bool) -> None:
        """Retention after a write of ``n`` patterns: the per-task-type cap for the types written,
        and every ``prune_every`` stored patterns the expired ones."""
        ret = self.config
        if not ret.active:
            return
        if ret.max_per_task_type is not None:
            self.counts.over_cap += self.enforce_caps(task_types, store=store)
        if ret.max_age is not None and ret.prune_every:
            self.since_prune += n
            if self.since_prune >= ret.prune_every:
                self.counts.expired += self.prune_expired(store=store)
                self._ran()

    def expire(self, *, store: bool) -> None:
        """Delete the expired patterns now (no-op without a max_age) and count the run."""
        if self.config.max_age is not None:
            self.counts.expired += self.prune_expired(store=store)
            self._ran()

    def prune_expired(self, *, store: bool) -> int:
        """Delete the expired patterns; returns how many."""
        cutoff = self.cutoff()
        if cutoff is None:
            return 0
        if not store:
            ids = ids_created_before(self.cache, cutoff)
        else:
            cond = [Condition("range", "created_at", {"lt": cutoff})]
            ids = [p.id for batch in self.backend.scroll(batch=2048, with_vectors=False, conditions=cond)
                   for p in batch]
        self.delete(ids)
        return len(ids)

    def enforce_caps(self, task_types: set[str | None] | None, *, store: bool) -> int:
        """Delete the patterns beyond ``max_per_task_type`` in the given task types (None = all)."""
        cap = self.config.max_per_task_type
        if cap is None:
            return 0
        ids = over_cap_ids(self.cache, cap, task_types) if not store else self._store_over_cap(cap, task_types)
        self.delete(ids)
        return len(ids)

    def _store_over_cap(self, cap: int, task_types: set[str | None] | None) -> list[str]:
        """:func:`over_cap_ids` computed from the store (scrolls the affected groups)."""
        groups: dict[Any, list[tuple[float, float, str]]] = {}
        typed = None if task_types is None or None in task_types else sorted(t for t in task_types if t is not None)
        if typed is not None:  # only typed groups: count first, scroll only the groups over the cap
            typed = [t for t in typed if self.backend.count([Condition("any", "task_type", [t])]) > cap]
            if not typed:
                return []
            cond = [Condition("any", "task_type", typed)]
        else:
            cond = []
        for batch in self.backend.scroll(batch=2048, with_vectors=False, conditions=cond):
            for p in batch:
                t = p.payload.get("task_type")
                if task_types is None or t in task_types:
                    groups.setdefault(t, []).append((float(p.payload.get("created_at", 0.0)),
                                                     float(p.payload.get("reward", 0.0)), p.id))
        out: list[str] = []
        for rows in groups.values():
            if len(rows) > cap:
                rows.sort()
                out += [pid for _, _, pid in rows[: len(rows) - cap]]
        return out

    def prune(self, *, store: bool) -> dict[str, int]:
        """Every limit now, over every task type: ``{"expired": n, "over_cap": m}`` deleted."""
        expired = self.prune_expired(store=store)
        over = self.enforce_caps(None, store=store)
        self.counts.expired += expired
        self.counts.over_cap += over
        self._ran()
        return {"expired": expired, "over_cap": over}

    def stats(self, pending: int | None) -> dict[str, Any]:
        """The ``retention`` part of the bank's stats (``pending``: expired, not yet deleted)."""
        ret, c = self.config, self.counts
        return {"max_age_s": ret.max_age, "max_per_task_type": ret.max_per_task_type,
                "prune_every": ret.prune_every, "pruned_expired": c.expired, "pruned_over_cap": c.over_cap,
                "prune_runs": c.runs, "last_prune_at": c.last_at, "expired_pending": pending}
