"""Token accounting and spend: a response's ``usage`` priced per model, and an executor's counters.

Prices are USD per 1M input / output tokens per model; a model without a price costs 0.
:func:`price_usage` reads ``prompt_tokens`` / ``completion_tokens`` from a response's ``usage``
(missing or malformed counts as 0). :class:`UsageCounters` holds one executor's counts (calls,
retries, 429s retried, final errors by kind, limiter waits, tokens, USD) behind a lock;
:meth:`UsageCounters.snapshot` is the typed :class:`ExecutorStats`.

Example:
    >>> from swarm_sona.executors.usage import price_usage
    >>> price_usage({"prompt_tokens": 1000, "completion_tokens": 500}, (1.0, 2.0))
    (1000, 500, 0.002)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExecutorStats", "UsageCounters", "price_usage", "response_usage"]


@dataclass(frozen=True)
class ExecutorStats:
    """Counts of one executor: calls, retries, 429s retried, final errors by kind, tokens, USD,
    and what the rate limiter did (attempts that waited and seconds waited, calls sent to a
    fallback, cool-downs of a model this executor's failures started).

    Example:
        >>> ExecutorStats(calls=2, retries=1, rate_limited=1).errors
        {}
    """

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    limiter_waits: int = 0
    limiter_wait_s: float = 0.0
    fallbacks: int = 0
    cooldowns: int = 0


def response_usage(resp: Mapping[str, Any]) -> dict[str, Any]:
    """The response's ``usage`` mapping ({} when absent or not a mapping).

    Example:
        >>> response_usage({"usage": None})
        {}
    """
    raw = resp.get("usage")
    return raw if isinstance(raw, dict) else {}


def price_usage(usage: Mapping[str, Any], price: tuple[float, float]) -> tuple[int, int, float]:
    """Prompt tokens, completion tokens and USD of ``usage`` at ``price`` (USD per 1M in, out).

    Example:
        >>> price_usage({"prompt_tokens": "x"}, (1.0, 1.0))
        (0, 0, 0.0)
    """
    pin, pout = price
    try:
        pt, ct = int(usage.get("prompt_tokens", 0) or 0), int(usage.get("completion_tokens", 0) or 0)
    except (TypeError, ValueError):
        pt = ct = 0
    return pt, ct, max(0.0, (pt * pin + ct * pout) / 1e6)


class UsageCounters:
    """Thread-safe counters of one executor (module docs); a copy starts from a copy of the counts.

    Example:
        >>> c = UsageCounters()
        >>> c.add(calls=1, cost_usd=0.5); c.error("auth")
        >>> s = c.snapshot(); (s.calls, s.cost_usd, s.errors)
        (1, 0.5, {'auth': 1})
    """

    _FIELDS = ("calls", "retries", "rate_limited", "prompt_tokens", "completion_tokens", "cost_usd",
               "limiter_waits", "limiter_wait_s", "fallbacks", "cooldowns")

    def __init__(self, counts: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        c = dict(counts or {})
        self._values: dict[str, Any] = {k: c.get(k, 0) for k in self._FIELDS}
        self._errors: dict[str, int] = dict(c.get("errors", {}))

    def add(self, **amounts: float) -> None:
        """Add to the named counters (unknown names are refused)."""
        with self._lock:
            for k, v in amounts.items():
                if k not in self._values:
                    raise KeyError(f"unknown counter {k!r}; known: {', '.join(self._FIELDS)}")
                self._values[k] += v

    def error(self, kind: str) -> None:
        """Count one final error of ``kind``."""
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def get(self, name: str) -> Any:
        """One counter's value."""
        with self._lock:
            return self._values[name]

    def snapshot(self) -> ExecutorStats:
        """The counts so far."""
        with self._lock:
            return ExecutorStats(errors=dict(self._errors), **self._values)

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": {**self._values, "errors": dict(self._errors)}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["counts"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"UsageCounters({self.snapshot()!r})"
