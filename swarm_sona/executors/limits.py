"""Rate limits per model, shared by the agents of a swarm: requests/min, tokens/min, cool-downs, fallbacks.

Providers publish per-model budgets in requests per minute (rpm) and tokens per minute (tpm).
:class:`RateLimitConfig` states them per model; a :class:`RateLimiter` paces the calls of one
process by two token buckets per model (:mod:`~swarm_sona.executors.buckets`): one request, and
the request's estimated tokens (prompt + ``max_tokens``, corrected by the answer's ``usage``
afterwards), are reserved before each attempt (a slot, first come first served), so the calls
never run ahead of the budget. At its slot a call is released (:meth:`RateLimiter.release`)
against a second requests bucket that counts real send times and takes no debt: a process
that stalled (a loaded machine wakes its sleepers late, all at once) sends its backlog at the
budget's pace, not in one burst.

Shared by a swarm through leased shares: the agents are separate processes, so each holds
``1 / shares`` of every budget (``shares`` = the number of agents; :meth:`RateLimiter.leased`);
together they stay within the provider's limits without talking to each other. With
``rebalance_s`` and a lease broker attached (:meth:`RateLimiter.attach_lease`,
:mod:`~swarm_sona.executors.leases`) the shares follow demand instead: every ``rebalance_s``
seconds the limiter reports the attempts it was asked for and runs its buckets at the share the
broker returns, and a call that would wait longer than ``rebalance_s`` for its budget reserves
nothing yet (it asks again then, at the share of that moment), so an idle agent's budget goes to
the busy ones within a period or two. A budget is
used at ``headroom`` of its published size (0.95 leaves 5 % for clock and network skew), and a
bucket holds ``burst_s`` seconds of it.

A 429's ``Retry-After`` holds the whole model (every call of this process to it) until then.
A model that fails ``failure_threshold`` times in a row for an infrastructure reason (5xx,
timeout, connection) is cooled down for ``cooldown_s`` seconds, then half-open (one probe;
:mod:`~swarm_sona.executors.breaker`).

Nothing is dropped: a call whose model is cooled down, or would wait longer than ``max_wait_s``
for its budget, goes to the model's ``fallback`` (followed in a chain) when one is configured
and available; otherwise it waits for its own model. :meth:`RateLimiter.admit` says which model
a call uses and how long it waits first; time comes from ``clock`` (a fake clock in tests).

Example:
    >>> from swarm_sona.executors.limits import RateLimitConfig, RateLimiter
    >>> cfg = RateLimitConfig(models={"gpt-4o": {"rpm": 120}}, burst_s=0.5, headroom=1.0)
    >>> t = [0.0]
    >>> lim = RateLimiter(cfg, clock=lambda: t[0])
    >>> [lim.admit("gpt-4o").wait_s for _ in range(3)]   # a bucket of 1 request, one per 0.5 s
    [0.0, 0.5, 1.0]
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.executors.breaker import CircuitBreaker
from swarm_sona.executors.buckets import TokenBucket
from swarm_sona.executors.errors import INFRA_KINDS
from swarm_sona.executors.leases import LeaseSource

__all__ = ["ModelLimits", "RateLimitConfig", "RateLimiter", "Permit", "LimiterStats"]


@dataclass(frozen=True)
class ModelLimits(ConfigBase):
    """The published budget of one model.

    Example:
        >>> ModelLimits(rpm=500, tpm=30_000).tpm
        30000
    """

    _section: ClassVar[str] = "rate_limits.models"

    rpm: float = field_doc("Requests per minute the provider allows for this model (0 = no limit).", 0.0)
    tpm: float = field_doc("Tokens per minute (prompt + completion) allowed for this model (0 = no limit).", 0.0)

    def __post_init__(self) -> None:
        self._check_range("rpm", 0.0)
        self._check_range("tpm", 0.0)


@dataclass(frozen=True)
class RateLimitConfig(ConfigBase):
    """Per-model budgets, the share of them this process holds, cool-downs and fallbacks (module docs).

    Example:
        >>> RateLimitConfig(models={"a": {"rpm": 60}}, fallback={"a": "b"}).models["a"].rpm
        60.0
        >>> RateLimitConfig(fallback={"a": "a"})
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: rate_limits.fallback: 'a' falls back to itself
    """

    _section: ClassVar[str] = "rate_limits"

    models: dict[str, ModelLimits] = field_doc("Model name -> its budget ({rpm, tpm}); models not named are "
                                               "limited by `default`.", factory=dict)
    default: ModelLimits = field_doc("Budget of a model not named in `models` (0 = no limit).", factory=ModelLimits)
    shares: int = field_doc("Processes sharing these budgets (the swarm's agents): each holds 1/shares of each.", 1)
    headroom: float = field_doc("Share of each published budget used, in (0, 1] (0.95 keeps 5 % for skew).", 1.0)
    burst_s: float = field_doc("Seconds of budget a bucket holds: the burst allowed above the steady pace.", 1.0)
    completion_tokens: int = field_doc("Completion tokens reserved per request when it sets no max_tokens.", 256)
    failure_threshold: int = field_doc("Consecutive infrastructure failures (5xx, timeout, connection) that cool "
                                       "a model down (0 = never).", 3)
    cooldown_s: float = field_doc("Seconds a model stays cooled down before one probe call may go.", 30.0)
    max_wait_s: float = field_doc("Longest wait for a model's budget before a call goes to its fallback "
                                  "(without an available fallback it waits as long as needed).", 10.0)
    fallback: dict[str, str] = field_doc("Model -> the model its calls go to while it is cooled down or "
                                         "over budget (followed in a chain).", factory=dict)
    rebalance_s: float = field_doc("Seconds between rebalancing the shares by demand through a lease broker "
                                   "(0 = fixed shares of 1/shares each).", 0.0)

    def __post_init__(self) -> None:
        if not isinstance(self.models, Mapping):
            raise ConfigError(f"rate_limits.models: expected a mapping, got {type(self.models).__name__}")
        models = {str(k): v if isinstance(v, ModelLimits) else ModelLimits.from_dict(v, path=f"rate_limits.models.{k}")
                  for k, v in self.models.items()}
        object.__setattr__(self, "models", models)
        if not isinstance(self.default, ModelLimits):
            object.__setattr__(self, "default", ModelLimits.from_dict(self.default, path="rate_limits.default"))
        if isinstance(self.shares, bool) or not isinstance(self.shares, int) or self.shares < 1:
            raise ConfigError(f"rate_limits.shares: must be an integer >= 1, got {self.shares!r}")
        self._check_range("headroom", 0.0, 1.0, lo_open=True)
        self._check_range("burst_s", 0.0, lo_open=True)
        for name in ("completion_tokens", "failure_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"rate_limits.{name}: must be an integer >= 0, got {v!r}")
        self._check_range("cooldown_s", 0.0)
        self._check_range("max_wait_s", 0.0)
        self._check_range("rebalance_s", 0.0)
        for a, b in self.fallback.items():
            if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
                raise ConfigError(f"rate_limits.fallback: names must be non-empty strings, got {a!r} -> {b!r}")
            if a == b:
                raise ConfigError(f"rate_limits.fallback: {a!r} falls back to itself")

    def limits_of(self, model: str) -> ModelLimits:
        """The budget of ``model`` (its own, else ``default``)."""
        return self.models.get(model, self.default)

    def chain(self, model: str) -> list[str]:
        """``model`` and its fallbacks in order (a cycle is cut where it closes)."""
        out = [model]
        while (nxt := self.fallback.get(out[-1])) is not None and nxt not in out:
            out.append(nxt)
        return out


@dataclass(frozen=True)
class Permit:
    """What :meth:`RateLimiter.admit` decided for one attempt.

    ``model``: the model to call (None: nothing is available yet; wait ``wait_s`` and ask
    again); ``wait_s``: seconds to wait before calling; ``tokens``: the tokens reserved (for
    :meth:`RateLimiter.settle`); ``fallback_from``: the model asked for when ``model`` is its fallback.

    Example:
        >>> Permit("b", 0.0, 10.0, fallback_from="a").fallback_from
        'a'
    """

    model: str | None
    wait_s: float
    tokens: float = 0.0
    fallback_from: str | None = None


@dataclass(frozen=True)
class LimiterStats:
    """What a limiter did: admissions, those that waited and for how long, fallbacks, cool-downs.

    Example:
        >>> LimiterStats().cooldowns
        {}
    """

    admitted: int = 0
    waited: int = 0
    wait_s: float = 0.0
    fallbacks: int = 0
    cooldowns: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.cooldowns is None:
            object.__setattr__(self, "cooldowns", {})


class _ModelState:
    def __init__(self, limits: ModelLimits, cfg: RateLimitConfig, now: float, share: float) -> None:
        self.limits, self.burst_s = limits, cfg.burst_s
        scale = cfg.headroom * share / 60.0   # per second, this process's share
        self.requests = TokenBucket(*self._pace(limits.rpm * scale), now) if limits.rpm > 0 else None
        self.tokens = TokenBucket(*self._pace(limits.tpm * scale), now) if limits.tpm > 0 else None
        # real send times, no debt; at least one request so that one can always go
        self.sent = TokenBucket(*self._pace(limits.rpm * scale, 1.0), now) if limits.rpm > 0 else None
        self.breaker = CircuitBreaker(cfg.failure_threshold, cfg.cooldown_s)
        self.not_before = -math.inf
        self.asked = 0   # attempts asked for since the last rebalance (the demand reported)

    def _pace(self, rate: float, least: float = 1e-9) -> tuple[float, float]:
        return max(rate, 1e-9), max(rate * self.burst_s, least)

    def set_share(self, cfg: RateLimitConfig, share: float, now: float) -> None:
        """Run the buckets at ``share`` of the budget from now on."""
        scale = cfg.headroom * share / 60.0
        for bucket, per_min, least in ((self.requests, self.limits.rpm, 1e-9), (self.tokens, self.limits.tpm, 1e-9),
                                       (self.sent, self.limits.rpm, 1.0)):
            if bucket is not None:
                bucket.set_rate(*self._pace(per_min * scale, least), now)

    def wait(self, tokens: float, now: float) -> float:
        w = max(0.0, self.not_before - now)
        if self.requests is not None:
            w = max(w, self.requests.wait_for(1.0, now))
        if self.tokens is not None:
            w = max(w, self.tokens.wait_for(tokens, now))
        return w

    def take(self, tokens: float, now: float) -> float:
        w = max(0.0, self.not_before - now)
        for bucket, amount in ((self.requests, 1.0), (self.tokens, tokens)):
            if bucket is not None:
                got = bucket.reserve(amount, now)
                w = max(w, got or 0.0)
        return w


class RateLimiter:
    """Paces one process's calls per model within its share of the budgets (module docs); thread-safe.

    A copy (pickled to a Ray actor, or ``copy.copy``) starts with full buckets and closed
    breakers; executor copies in one process share one limiter.

    Example:
        >>> lim = RateLimiter(RateLimitConfig(models={"a": {"rpm": 60}}, fallback={"a": "b"}, max_wait_s=0.5),
        ...                   clock=lambda: 0.0)
        >>> lim.admit("a").model, lim.admit("a").model   # the second would wait 1 s: it goes to b
        ('a', 'b')
    """

    def __init__(self, config: RateLimitConfig | Mapping[str, Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config if isinstance(config, RateLimitConfig) else RateLimitConfig.from_dict(config)
        self.clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, _ModelState] = {}
        self._stats = {"admitted": 0, "waited": 0, "wait_s": 0.0, "fallbacks": 0}
        self._lease: LeaseSource | None = None
        self._member = ""
        self._floor_share = 0.0
        self._share: dict[str, float] = {}   # model -> the share held (rebalanced)
        self._synced = -math.inf

    def attach_lease(self, source: LeaseSource, member: str, floor_share: float) -> None:
        """Take this limiter's shares from ``source`` (a :class:`~swarm_sona.executors.leases.LeaseBroker`
        or a client of one) as ``member``, every ``rebalance_s`` seconds; ``floor_share``: the share
        used while the broker cannot be reached (its guaranteed minimum).

        Example:
            >>> from swarm_sona.executors.leases import LeaseBroker
            >>> lim = RateLimiter({"default": {"rpm": 600}, "shares": 2, "rebalance_s": 0.5}, clock=lambda: 0.0)
            >>> lim.attach_lease(LeaseBroker(["a", "b"]), "a", floor_share=0.1)
            >>> lim.admit("m").wait_s, lim.share("m")
            (0.0, 0.5)
        """
        if self.config.rebalance_s <= 0:
            raise ValueError("attach_lease: rate_limits.rebalance_s is 0 (fixed shares); set it > 0 to rebalance")
        if not 0.0 <= floor_share <= 1.0:
            raise ValueError(f"attach_lease: floor_share must be in [0, 1], got {floor_share!r}")
        self._lease, self._member, self._floor_share = source, str(member), float(floor_share)

    def share(self, model: str) -> float:
        """The share of ``model``'s budget this limiter holds now."""
        with self._lock:
            return self._share.get(model, 1.0 / self.config.shares)

    def _sync(self, now: float) -> None:
        """Every ``rebalance_s``: report the demand, run at the shares the broker returns (under the lock)."""
        if self._lease is None or now - self._synced < self.config.rebalance_s:
            return
        span = max(1e-3, now - self._synced) if math.isfinite(self._synced) else self.config.rebalance_s
        demand = {m: st.asked / span for m, st in self._models.items()}
        for st in self._models.values():
            st.asked = 0
        self._synced = now
        try:
            got = dict(self._lease.rebalance(self._member, demand))
        except Exception:   # broker unreachable: only the guaranteed minimum is safe to use
            got = {m: min(self._share.get(m, 1.0 / self.config.shares), self._floor_share) for m in self._models}
        for m, share in got.items():
            self._share[m] = float(share)
            if m in self._models:
                self._models[m].set_share(self.config, float(share), now)

    def leased(self, shares: int) -> RateLimiter:
        """A fresh limiter holding ``1/shares`` of every budget (one agent of ``shares``)."""
        return RateLimiter(self.config.replace(shares=shares), self.clock)

    def counts_tokens(self, model: str) -> bool:
        """Whether a call to ``model`` (or to one of its fallbacks) has a tokens/min budget to reserve."""
        return any(self.config.limits_of(m).tpm > 0 for m in self.config.chain(model))

    def _state(self, model: str, now: float) -> _ModelState:
        st = self._models.get(model)
        if st is None:
            st = self._models[model] = _ModelState(self.config.limits_of(model), self.config, now,
                                                   self._share.get(model, 1.0 / self.config.shares))
        return st

    def admit(self, model: str, tokens: float = 0.0) -> Permit:
        """Choose the model of the next attempt and reserve its budget (see :class:`Permit`)."""
        with self._lock:
            now = self.clock()
            self._sync(now)
            self._state(model, now).asked += 1
            chain = self.config.chain(model)
            for i, name in enumerate(chain):
                st = self._state(name, now)
                last = i == len(chain) - 1
                if not (i == 0 or st.breaker.state(now) == "closed"):
                    continue   # a fallback is used only while it is healthy
                if st.wait(tokens, now) > self.config.max_wait_s and not (i == 0 and last):
                    continue
                if not st.breaker.allow(now):
                    continue
                return self._grant(name, st, tokens, now, model if i else None)
            own = self._state(model, now)
            if own.breaker.allow(now):   # over budget and no fallback free: it waits its turn
                return self._grant(model, own, tokens, now, None)
            return Permit(None, max(own.breaker.retry_in(now), 1e-3))   # cooled down: wait, then ask again

    def _grant(self, name: str, st: _ModelState, tokens: float, now: float, fallback_from: str | None) -> Permit:
        every = self.config.rebalance_s
        if self._lease is not None and st.breaker.state(now) == "closed" and st.wait(tokens, now) > every:
            return Permit(None, every)   # reserve nothing yet: ask again at the share of that moment
        w = st.take(tokens, now)
        self._stats["admitted"] += 1
        if w > 0:
            self._stats["waited"] += 1
            self._stats["wait_s"] += w
        if fallback_from is not None:
            self._stats["fallbacks"] += 1
        return Permit(name, w, tokens, fallback_from)

    def release(self, permit: Permit) -> float:
        """At a permit's slot, right before sending: 0.0 = send now (counted as sent), else the
        seconds to wait before asking again (the budget's pace by real send times)."""
        if permit.model is None:
            return 0.0
        with self._lock:
            now = self.clock()
            st = self._state(permit.model, now)
            return 0.0 if st.sent is None else st.sent.take_now(1.0, now)

    def settle(self, permit: Permit, used_tokens: float) -> None:
        """Correct a reservation by the tokens actually used (unused ones go back)."""
        if permit.model is None:
            return
        with self._lock:
            st = self._state(permit.model, self.clock())
            if st.tokens is not None and used_tokens < permit.tokens:
                st.tokens.refund(permit.tokens - used_tokens, self.clock())
            elif st.tokens is not None and used_tokens > permit.tokens:
                st.tokens.reserve(used_tokens - permit.tokens, self.clock())

    def report(self, model: str, error_kind: str | None, retry_after: float | None = None) -> bool:
        """The result of one attempt on ``model``: None = answered; an error kind otherwise.

        Infrastructure kinds count toward the model's cool-down; a 429's ``retry_after`` holds
        the model until then; other kinds (auth, request, a 429 without the header) are no verdict.
        Returns whether this report cooled the model down.
        """
        with self._lock:
            now = self.clock()
            st = self._state(model, now)
            opened = st.breaker.opened
            if error_kind is None:
                st.breaker.record(True, now)
            elif error_kind in INFRA_KINDS:
                st.breaker.record(False, now)
            else:
                st.breaker.release()
            if error_kind == "rate_limit" and retry_after is not None:
                st.not_before = max(st.not_before, now + retry_after)
            return st.breaker.opened > opened

    def state(self, model: str) -> str:
        """The model's breaker state: ``closed``, ``open`` or ``half-open``."""
        with self._lock:
            now = self.clock()
            return self._state(model, now).breaker.state(now)

    def stats(self) -> LimiterStats:
        """What this limiter did so far."""
        with self._lock:
            cool = {m: st.breaker.opened for m, st in self._models.items() if st.breaker.opened}
            return LimiterStats(cooldowns=cool, **self._stats)  # type: ignore[arg-type]

    def __reduce__(self) -> Any:   # a copy starts fresh (no lock, no state): one limiter per process
        return (_rebuild, (self.config, self.clock, self._lease, self._member, self._floor_share))

    def __repr__(self) -> str:
        return f"RateLimiter(shares={self.config.shares}, models={sorted(self.config.models)})"


def _rebuild(config: RateLimitConfig, clock: Callable[[], float], lease: LeaseSource | None, member: str,
             floor_share: float) -> RateLimiter:
    """A limiter's copy: fresh buckets and breakers, the same lease (a copy in a Ray actor rebalances too)."""
    lim = RateLimiter(config, clock)
    if lease is not None:
        lim.attach_lease(lease, member, floor_share)
    return lim
