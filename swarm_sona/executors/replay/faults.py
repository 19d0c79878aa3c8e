"""Fault injection of the replay endpoint: service latency, replayed 5xx, and the per-model rate limit.

Latency is lognormal with the configured median and p99 (``sigma = ln(p99 / median) / 2.326``);
a share ``error_rate`` of the admitted requests (``model_error_rates[model]`` of a model's)
fails with 503 after its latency. With
``rate_limit_rpm`` each model has a token bucket of ``bucket_size`` requests refilled at
rpm / 60 per second: a request finding it empty is answered 429 with ``Retry-After`` = the
seconds until a request would be admitted (what a provider's requests/min limit does).
:class:`TrafficShaper` is not thread-safe: the server calls it under its lock.

Example:
    >>> from swarm_sona.executors.replay.config import ReplayConfig
    >>> shaper = TrafficShaper(ReplayConfig(data="x", rate_limit_rpm=60, rate_burst=1))
    >>> shaper.admit("m", now=0.0), shaper.admit("m", now=0.25)
    (None, 0.75)
"""

from __future__ import annotations

import math
import random

from swarm_sona.executors.replay.config import ReplayConfig, lognormal_sigma

__all__ = ["TrafficShaper"]


class TrafficShaper:
    """Latency draws, replayed errors and per-model request buckets of one server (module docs).

    Example:
        >>> from swarm_sona.executors.replay.config import ReplayConfig
        >>> TrafficShaper(ReplayConfig(data="x", latency_median_s=0, latency_p99_s=0)).latency()
        0.0
    """

    def __init__(self, config: ReplayConfig) -> None:
        self.config = config
        self.sigma = lognormal_sigma(config.latency_median_s, config.latency_p99_s) \
            if config.latency_median_s > 0 else 0.0
        self.rng = random.Random(config.seed)
        self.rate = config.rate_limit_rpm / 60.0
        self.size = config.bucket_size
        self._buckets: dict[str, tuple[float, float]] = {}   # model -> (tokens, at)

    def latency(self) -> float:
        """One service latency draw, seconds."""
        if self.config.latency_median_s <= 0:
            return 0.0
        return self.config.latency_median_s * math.exp(self.sigma * self.rng.gauss(0.0, 1.0))

    def fails(self, model: str) -> bool:
        """Whether an admitted request to ``model`` is answered 503 (a draw at its error rate)."""
        rate = self.config.model_error_rates.get(model, self.config.error_rate)
        return rate > 0 and self.rng.random() < rate

    def admit(self, model: str, now: float) -> float | None:
        """Take one request from ``model``'s bucket: None when admitted, else the Retry-After in seconds."""
        if self.rate <= 0:
            return None
        tokens, at = self._buckets.get(model, (self.size, now))
        tokens = min(self.size, tokens + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[model] = (tokens - 1.0, now)
            return None
        self._buckets[model] = (tokens, now)
        return (1.0 - tokens) / self.rate
