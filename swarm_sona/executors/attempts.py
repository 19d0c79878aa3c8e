"""The attempts of one chat call: the rate limiter chooses each attempt's model and wait, the
retry policy decides what is retried, and the counters see both.

:class:`CallAttempts` is driven by the executor's synchronous and asynchronous request loops
alike: :meth:`~CallAttempts.before` (model and seconds to wait before the next attempt; a model
of None means "wait, then ask again": for the attempt's slot, then for its release), then :meth:`~CallAttempts.answered` or
:meth:`~CallAttempts.failed` (seconds to wait before a retry; raises the error when it is final).

Example:
    >>> import random
    >>> from swarm_sona.executors.attempts import CallAttempts
    >>> from swarm_sona.executors.retry import RetryPolicy
    >>> from swarm_sona.executors.usage import UsageCounters
    >>> from swarm_sona.executors.limits import RateLimiter
    >>> att = CallAttempts("m", 100.0, RetryPolicy(), random.Random(0), RateLimiter({}), UsageCounters())
    >>> att.before(), att.before()   # admitted (no wait), then released
    ((None, 0.0), ('m', 0.0))
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from swarm_sona.executors.errors import CallError
from swarm_sona.executors.limits import Permit, RateLimiter
from swarm_sona.executors.retry import RetryPolicy, RetryState
from swarm_sona.executors.usage import UsageCounters, response_usage

__all__ = ["CallAttempts"]


class CallAttempts:
    """One call's attempts (module docs): ``model`` asked for, ``tokens`` estimated per attempt.

    Example:
        >>> import random
        >>> from swarm_sona.executors.retry import RetryPolicy
        >>> from swarm_sona.executors.usage import UsageCounters
        >>> att = CallAttempts("m", 0.0, RetryPolicy(max_retries=0), random.Random(0), None, UsageCounters())
        >>> att.failed(CallError("server", "503", status=503))
        Traceback (most recent call last):
        ...
        swarm_sona.executors.errors.CallError: 503
    """

    def __init__(self, model: str, tokens: float, policy: RetryPolicy, rng: random.Random,
                 limiter: RateLimiter | None, usage: UsageCounters) -> None:
        self.asked = model
        self.model = model
        self.tokens = tokens
        self.policy, self.rng, self.limiter, self.usage = policy, rng, limiter, usage
        self.state = RetryState()
        self.permit: Permit | None = None
        self.pending: Permit | None = None   # admitted, waiting for its slot and release
        self.fallback_from: str | None = None

    @property
    def retries(self) -> int:
        """Retries so far."""
        return self.state.retries

    def before(self) -> tuple[str | None, float]:
        """The model of the next attempt and the seconds to wait before it (model None: wait, ask again)."""
        if self.limiter is None:
            return self.model, 0.0
        if self.pending is not None:   # its slot has come: released at the budget's pace of real sends
            wait = self.limiter.release(self.pending)
            if wait > 0:
                self.usage.add(limiter_wait_s=wait)
                return None, wait
            p, self.pending = self.pending, None
            assert p.model is not None
            return p.model, 0.0
        p = self.permit = self.limiter.admit(self.asked, self.tokens)
        if p.wait_s > 0:
            self.usage.add(limiter_waits=1, limiter_wait_s=p.wait_s)
        if p.model is not None:
            if p.fallback_from is not None:
                self.usage.add(fallbacks=1)
            self.model, self.fallback_from = p.model, p.fallback_from
            self.pending = p
        return None, p.wait_s

    def answered(self, resp: Mapping[str, Any]) -> None:
        """The attempt was answered: the model is healthy, the reservation corrected by ``usage``."""
        if self.limiter is None or self.permit is None:
            return
        self.limiter.report(self.model, None)
        u = response_usage(resp)
        try:
            used = float(u.get("total_tokens") or (int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0))))
        except (TypeError, ValueError):
            used = self.tokens
        self.limiter.settle(self.permit, used)

    def failed(self, err: CallError) -> float:
        """Seconds to wait before the retry (counted); raises ``err`` when it is final."""
        if self.limiter is not None and self.permit is not None:
            if self.limiter.report(self.model, err.kind, err.retry_after):
                self.usage.add(cooldowns=1)
            self.limiter.settle(self.permit, 0.0 if err.kind == "rate_limit" else self.tokens)
        delay = self.policy.next_delay(err, self.state, self.rng)
        if delay is None:
            raise err
        self.usage.add(retries=1, rate_limited=1 if err.kind == "rate_limit" else 0)
        return delay
