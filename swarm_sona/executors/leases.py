"""Rebalanced rate-limit shares: a broker that moves an idle agent's unused budget to busy ones.

With fixed leases each of N agents holds ``1/N`` of every budget
(:meth:`~swarm_sona.executors.limits.RateLimiter.leased`), so one busy agent among idle ones runs
at ``1/N`` of what the provider allows. A :class:`LeaseBroker` (one per swarm: a small Ray actor
in a swarm, :mod:`~swarm_sona.runtime.lease`; a plain object in one process) hands out shares by
demand instead. Every ``rebalance_s`` seconds (``RateLimitConfig.rebalance_s``) an agent's limiter
reports its demand per model (attempts it asked for per second, re-asks of waiting ones
included) and gets back its share of each model's budget, a fraction in (0, 1]:

* each member is guaranteed ``floor / N`` (so an idle agent that gets work can start at once);
  the rest goes in proportion to the reported demands (all idle: ``1/N`` each);
* the shares held never add up to more than 1, counting released ones until they mature: a
  share a member gives up is handed to others only ``grace_s`` seconds later (its limiter
  applies the smaller share when the reply arrives, so nobody runs at the old pace meanwhile);
* a member silent for ``2 x rebalance_s + grace_s`` seconds holds only its floor: its limiter
  asks again before it admits a call on a share older than ``rebalance_s``, and an admitted call
  waits at most ``rebalance_s`` more (see the limiter), so reclaiming then is safe and a dead or
  idle agent's share returns to the others.

A limiter's buckets run at ``share x budget`` (their size too), so the swarm together never
runs ahead of the budget, as with fixed shares.

Example:
    >>> from swarm_sona.executors.leases import LeaseBroker
    >>> t = [0.0]
    >>> broker = LeaseBroker(["a", "b", "c", "d"], floor=0.2, grace_s=1.0, rebalance_s=0.5, clock=lambda: t[0])
    >>> broker.rebalance("a", {"m": 50.0})["m"]      # the others hold theirs
    0.25
    >>> t[0] = 0.4; [round(broker.rebalance(x, {"m": 0.0})["m"], 3) for x in "bcd"]   # idle: down to the floor
    [0.05, 0.05, 0.05]
    >>> t[0] = 1.0; broker.rebalance("a", {"m": 50.0})["m"]      # released, not matured yet
    0.25
    >>> t[0] = 1.5; round(broker.rebalance("a", {"m": 50.0})["m"], 3)
    0.85
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["LeaseBroker", "LeaseSource", "LeaseSeat"]


class LeaseSource(Protocol):
    """What a limiter asks for its shares: ``rebalance(member, demand) -> {model: share}``
    (``demand``: attempts per second asked per model; a model missing from the reply keeps
    ``1 / members``)."""

    def rebalance(self, member: str, demand: Mapping[str, float]) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class LeaseSeat:
    """One agent's seat at a broker: the ``source`` (a broker or a client of one), the agent's
    ``member`` name and the ``floor_share`` its limiter falls back to without the broker.

    Example:
        >>> LeaseSeat(LeaseBroker(["a", "b"]), "a", 0.1).member
        'a'
    """

    source: LeaseSource
    member: str
    floor_share: float


def _check_number(name: str, v: object, lo: float, hi: float | None = None, lo_open: bool = False) -> float:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
    if not ok:
        span = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise ValueError(f"LeaseBroker: {name} must be a finite number {span}, got {v!r}")
    return float(v)  # type: ignore[arg-type]


class _ModelShares:
    """One model's shares: held per member, released ones maturing, last demand per member."""

    def __init__(self, members: Sequence[str]) -> None:
        self.held = dict.fromkeys(members, 1.0 / len(members))
        self.demand = dict.fromkeys(members, 0.0)
        self.releasing: list[tuple[float, float]] = []   # (matures at, share)

    def free(self, now: float) -> float:
        self.releasing = [(t, s) for t, s in self.releasing if t > now]
        return max(0.0, 1.0 - sum(self.held.values()) - sum(s for _, s in self.releasing))


class LeaseBroker:
    """Shares of every model's budget by demand (module docs); thread-safe, picklable to a Ray actor.

    ``members``: the agents; ``floor``: the share of the budget kept as guaranteed minimums
    (each member ``floor / N``), in [0, 1]; ``grace_s``: seconds before a released share is
    handed out again; ``rebalance_s``: the members' reporting period.

    Example:
        >>> LeaseBroker([])
        Traceback (most recent call last):
        ...
        ValueError: LeaseBroker: needs at least one member
    """

    def __init__(self, members: Sequence[str], *, floor: float = 0.2, grace_s: float = 1.0,
                 rebalance_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.members = [str(m) for m in members]
        if not self.members:
            raise ValueError("LeaseBroker: needs at least one member")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"LeaseBroker: members must be distinct, got {self.members}")
        self.floor = _check_number("floor", floor, 0.0, 1.0)
        self.grace_s = _check_number("grace_s", grace_s, 0.0)
        self.rebalance_s = _check_number("rebalance_s", rebalance_s, 0.0, lo_open=True)
        self.clock = clock
        self._models: dict[str, _ModelShares] = {}
        self._seen = dict.fromkeys(self.members, clock())
        self._lock = threading.Lock()

    def _reclaim(self, now: float) -> None:
        """Members silent too long keep only their floor (their limiters ask before using more)."""
        ttl = 2 * self.rebalance_s + self.grace_s
        base = self.floor / len(self.members)
        for m, seen in self._seen.items():
            if now - seen > ttl:
                for ms in self._models.values():
                    if ms.held[m] > base:
                        ms.releasing.append((now, ms.held[m] - base))   # the member cannot be using it
                        ms.held[m], ms.demand[m] = base, 0.0

    def _target(self, ms: _ModelShares) -> dict[str, float]:
        n = len(self.members)
        total = sum(ms.demand.values())
        if total <= 0:
            return dict.fromkeys(self.members, 1.0 / n)
        base = self.floor / n
        return {m: base + (1.0 - self.floor) * d / total for m, d in ms.demand.items()}

    def rebalance(self, member: str, demand: Mapping[str, float]) -> dict[str, float]:
        """Record ``member``'s demand per model and return its shares (every model it or anyone reported)."""
        if member not in self._seen:
            raise ValueError(f"LeaseBroker: unknown member {member!r}; members are {self.members}")
        with self._lock:
            now = self.clock()
            self._seen[member] = now
            for model, d in demand.items():
                ms = self._models.get(model)
                if ms is None:
                    ms = self._models[model] = _ModelShares(self.members)
                ms.demand[member] = max(0.0, float(d)) if math.isfinite(float(d)) else 0.0
            self._reclaim(now)
            out: dict[str, float] = {}
            for model, ms in self._models.items():
                want, have = self._target(ms)[member], ms.held[member]
                if want < have:
                    ms.releasing.append((now + self.grace_s, have - want))
                    ms.held[member] = want
                elif want > have:
                    ms.held[member] = have + min(want - have, ms.free(now))
                out[model] = ms.held[member]
            return out

    def seat(self, member: str) -> LeaseSeat:
        """``member``'s seat at this broker (its floor share is ``floor / members``)."""
        if member not in self._seen:
            raise ValueError(f"LeaseBroker: unknown member {member!r}; members are {self.members}")
        return LeaseSeat(self, member, self.floor / len(self.members))

    def shares(self) -> dict[str, dict[str, float]]:
        """Every model's shares as held now (member -> share)."""
        with self._lock:
            return {m: dict(ms.held) for m, ms in self._models.items()}

    def __reduce__(self) -> tuple[object, ...]:   # a copy (e.g. Ray's) starts with equal shares
        return (_rebuild, (self.members, self.floor, self.grace_s, self.rebalance_s))


def _rebuild(members: Sequence[str], floor: float, grace_s: float, rebalance_s: float) -> LeaseBroker:
    return LeaseBroker(members, floor=floor, grace_s=grace_s, rebalance_s=rebalance_s)
