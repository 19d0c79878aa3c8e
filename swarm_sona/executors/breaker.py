"""A circuit breaker per model: cool down a model that keeps failing for infrastructure reasons.

After ``threshold`` consecutive infrastructure failures (5xx, timeouts, connection errors) a
model is *open* (cooled down) for ``cooldown_s`` seconds: no call goes to it. Then it is
*half-open*: one probe call may go; its success closes the breaker (failures forgotten), its
failure opens it for another ``cooldown_s``. A success at any time resets the count. Time is
passed in (``now``), so the states are tested with a fake clock.

Example:
    >>> from swarm_sona.executors.breaker import CircuitBreaker
    >>> cb = CircuitBreaker(threshold=2, cooldown_s=10.0)
    >>> cb.record(False, now=0.0); cb.record(False, now=1.0)
    >>> cb.state(now=5.0), cb.allow(now=5.0), cb.retry_in(now=5.0)
    ('open', False, 6.0)
    >>> cb.allow(now=11.0), cb.allow(now=11.0), cb.state(now=11.0)   # one probe at a time
    (True, False, 'half-open')
    >>> cb.record(True, now=11.5); cb.state(now=11.5)
    'closed'
"""

from __future__ import annotations

import math

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Closed / open / half-open states of one model (module docs); not thread-safe (the limiter locks).

    ``threshold`` 0 never opens.

    Example:
        >>> CircuitBreaker(threshold=0, cooldown_s=1.0).allow(now=0.0)
        True
    """

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(f"CircuitBreaker: threshold must be an integer >= 0, got {threshold!r}")
        if isinstance(cooldown_s, bool) or not isinstance(cooldown_s, (int, float)) or not math.isfinite(cooldown_s) \
                or cooldown_s < 0:
            raise ValueError(f"CircuitBreaker: cooldown_s must be a finite number >= 0, got {cooldown_s!r}")
        self.threshold = threshold
        self.cooldown_s = float(cooldown_s)
        self.failures = 0
        self.open_until: float | None = None
        self.probing = False
        self.opened = 0   # times it opened (cool-downs)

    def state(self, now: float) -> str:
        """``closed``, ``open`` (cooling down) or ``half-open`` (a probe may go or is out)."""
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half-open"

    def allow(self, now: float) -> bool:
        """Whether a call may go now (in half-open: the one probe, which this call becomes)."""
        st = self.state(now)
        if st == "closed":
            return True
        if st == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def retry_in(self, now: float) -> float:
        """Seconds until a call may go (0 when it may now; while a probe is out, a poll of at most 1 s)."""
        st = self.state(now)
        if st == "closed" or (st == "half-open" and not self.probing):
            return 0.0
        if st == "open":
            assert self.open_until is not None
            return self.open_until - now
        return min(self.cooldown_s, 1.0)

    def record(self, ok: bool, now: float) -> None:
        """The result of a call that went: success closes, an infrastructure failure counts."""
        if ok:
            self.failures, self.open_until, self.probing = 0, None, False
            return
        self.failures += 1
        half_open_probe = self.probing or (self.open_until is not None and now >= self.open_until)
        if self.threshold and (half_open_probe or self.failures >= self.threshold):
            self.open_until, self.probing = now + self.cooldown_s, False
            self.opened += 1

    def release(self) -> None:
        """A probe that went nowhere (no verdict): let another probe go."""
        self.probing = False
