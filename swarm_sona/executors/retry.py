"""The retry policy of a chat call: what is retried, how often, and how long to wait.

Connection errors, timeouts, HTTP 408/409 and 5xx are retried up to ``max_retries`` times,
HTTP 429 up to ``rate_limit_retries`` times (a rate limit means "wait", not "broken"); the wait
is ``Retry-After`` when the server sends it (plus up to ``jitter`` of itself, so waiters do not
return in lockstep), else ``backoff_s * 2^n`` (at most ``max_backoff_s``) jittered by up to
``jitter`` of itself. 401/403, other 4xx and unusable bodies are final at once.

Example:
    >>> import random
    >>> from swarm_sona.executors.errors import CallError
    >>> from swarm_sona.executors.retry import RetryPolicy, RetryState
    >>> policy = RetryPolicy(max_retries=1, jitter=0.0, backoff_s=0.5)
    >>> state = RetryState()
    >>> policy.next_delay(CallError("server", "503", status=503), state, random.Random(0))
    0.5
    >>> policy.next_delay(CallError("server", "503", status=503), state, random.Random(0)) is None
    True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from swarm_sona.executors.errors import CallError

__all__ = ["RetryPolicy", "RetryState", "RETRY_STATUS"]

#: HTTP statuses worth another attempt
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def _check_int(name: str, v: object, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


@dataclass
class RetryState:
    """Attempts of one call so far: retries after other errors and after 429s.

    Example:
        >>> RetryState(attempt=1, rl_attempt=2).retries
        3
    """

    attempt: int = 0
    rl_attempt: int = 0

    @property
    def retries(self) -> int:
        """All retries so far."""
        return self.attempt + self.rl_attempt


@dataclass(frozen=True)
class RetryPolicy:
    """Retry counts and the jittered exponential backoff (module docs); validated on construction.

    Example:
        >>> RetryPolicy(max_retries=-1)
        Traceback (most recent call last):
        ...
        ValueError: max_retries must be an integer >= 0, got -1
    """

    max_retries: int = 3
    rate_limit_retries: int = 10
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        _check_int("max_retries", self.max_retries, 0)
        _check_int("rate_limit_retries", self.rate_limit_retries, 0)
        for name in ("backoff_s", "max_backoff_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if isinstance(self.jitter, bool) or not (isinstance(self.jitter, (int, float)) and 0.0 <= self.jitter <= 1.0):
            raise ValueError(f"jitter must be a number in [0, 1], got {self.jitter!r}")

    def delay(self, err: CallError, attempt: int, rl_attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait before the next attempt, or None when ``err`` is final."""
        if err.status is not None and err.status not in RETRY_STATUS or err.kind in ("auth", "request", "response"):
            return None
        if err.kind == "rate_limit":
            if rl_attempt >= self.rate_limit_retries:
                return None
        elif attempt >= self.max_retries:
            return None
        if err.retry_after is not None:   # honoured, plus jitter so waiters do not return in lockstep
            return min(err.retry_after * (1.0 + self.jitter * rng.random()), self.max_backoff_s)
        n = rl_attempt if err.kind == "rate_limit" else attempt
        cap = min(self.max_backoff_s, self.backoff_s * (2 ** n))
        return cap * (1.0 - self.jitter + self.jitter * rng.random())   # jittered exponential

    def next_delay(self, err: CallError, state: RetryState, rng: random.Random) -> float | None:
        """:meth:`delay` for ``state``, which counts the attempt when there is one (None: final)."""
        d = self.delay(err, state.attempt, state.rl_attempt, rng)
        if d is not None:
            if err.kind == "rate_limit":
                state.rl_attempt += 1
            else:
                state.attempt += 1
        return None if d is None else max(0.0, d)
