"""Token buckets with reservations: the pace of a requests/min or tokens/min budget.

A :class:`TokenBucket` holds up to ``capacity`` units and refills at ``rate`` units per second.
:meth:`TokenBucket.reserve` takes ``amount`` units now and returns how long the caller must wait
before it may use them: the level may go below zero (a debt that later reservations queue
behind, first come first served), so a request larger than the bucket is delayed, never
refused. ``max_wait_s`` makes a reservation conditional: when the wait would be longer, nothing
is taken and None is returned (the caller can go elsewhere). :meth:`TokenBucket.refund` gives
units back (a request that used fewer tokens than reserved). Time is passed in (``now``), so the
maths is tested with a fake clock.

Example:
    >>> from swarm_sona.executors.buckets import TokenBucket
    >>> b = TokenBucket(rate=2.0, capacity=2.0, now=0.0)   # 120/min, bursts of 2
    >>> [b.reserve(1, now=0.0) for _ in range(4)]
    [0.0, 0.0, 0.5, 1.0]
    >>> b.reserve(1, now=0.0, max_wait_s=1.0) is None
    True
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]


class TokenBucket:
    """Reservations against a refilling budget (module docs); not thread-safe (the limiter locks).

    Example:
        >>> TokenBucket(rate=0.0, capacity=1.0)
        Traceback (most recent call last):
        ...
        ValueError: TokenBucket: rate must be a positive finite number, got 0.0
    """

    def __init__(self, rate: float, capacity: float, now: float = 0.0) -> None:
        for name, v in (("rate", rate), ("capacity", capacity)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"TokenBucket: {name} must be a positive finite number, got {v!r}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self.level = self.capacity
        self.at = float(now)

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
            self.at = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds a reservation of ``amount`` made now would wait (nothing is taken)."""
        self._refill(now)
        return max(0.0, (amount - self.level) / self.rate) if amount > self.level else 0.0

    def reserve(self, amount: float, now: float, max_wait_s: float | None = None) -> float | None:
        """Take ``amount`` and return the seconds to wait before using it; None (nothing taken)
        when that would exceed ``max_wait_s``."""
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) \
                or amount < 0:
            raise ValueError(f"TokenBucket.reserve: amount must be a finite number >= 0, got {amount!r}")
        wait = self.wait_for(amount, now)
        if max_wait_s is not None and wait > max_wait_s:
            return None
        self.level -= amount
        return wait

    def take_now(self, amount: float, now: float) -> float:
        """Take ``amount`` only if it is there now (no debt): 0.0 when taken, else the seconds
        until it would be (nothing taken). What pacing by real send times uses: after a stall
        the bucket holds at most ``capacity``, so a backlog cannot go out at once."""
        wait = self.wait_for(amount, now)
        if wait <= 0.0:
            self.level -= amount
        return wait

    def set_rate(self, rate: float, capacity: float, now: float) -> None:
        """Change the pace (a rebalanced share): refilled at the old rate until ``now``, then the
        new ``rate`` and ``capacity`` (the level is cut to the new capacity, never raised).

        Example:
            >>> b = TokenBucket(rate=1.0, capacity=4.0, now=0.0)
            >>> b.set_rate(2.0, 2.0, now=0.0); b.level, b.wait_for(3.0, now=0.0)
            (2.0, 0.5)
        """
        for name, v in (("rate", rate), ("capacity", capacity)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"TokenBucket.set_rate: {name} must be a positive finite number, got {v!r}")
        self._refill(now)
        self.rate, self.capacity = float(rate), float(capacity)
        self.level = min(self.level, self.capacity)

    def refund(self, amount: float, now: float) -> None:
        """Give back ``amount`` units taken earlier (never above ``capacity``)."""
        self._refill(now)
        self.level = min(self.capacity, self.level + max(0.0, amount))

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}/s, capacity={self.capacity:g}, level={self.level:g})"
