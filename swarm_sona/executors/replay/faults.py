"""Fault injection of the replay endpoint: service latency, replayed 5xx, and the per-model rate limits.

Latency is lognormal with the configured median and p99 (``sigma = ln(p99 / median) / 2.326``);
a share ``error_rate`` of the admitted requests (``model_error_rates[model]`` of a model's)
fails with 503 after its latency.

Rate limits per model, as providers publish them (token buckets,
:class:`~swarm_sona.executors.buckets.TokenBucket`):

* ``rate_limit_rpm``: a bucket of ``bucket_size`` requests refilled at rpm / 60 per second; a
  request finding it empty is answered 429 with ``Retry-After`` = the seconds until a request
  would be admitted.
* ``rate_limit_tpm``: a bucket of ``tokens_bucket_size`` tokens refilled at tpm / 60 per
  second. A request is charged its prompt tokens + its ``max_tokens`` at admission (what
  OpenAI counts against a tokens/min limit) and corrected by the completion's real tokens when
  answered (the unused part goes back; a request without ``max_tokens`` pays its completion
  then). It is admitted when the bucket holds its charge (or is full: a request larger than
  the bucket is delayed, never refused for good), else 429 with ``Retry-After`` = when it would be.

A request is admitted only when both budgets have room; a refused one takes from neither.
:class:`TrafficShaper` is not thread-safe: the server calls it under its lock.

Example:
    >>> from swarm_sona.executors.replay.config import ReplayConfig
    >>> shaper = TrafficShaper(ReplayConfig(data="x", rate_limit_rpm=60, rate_burst=1))
    >>> shaper.admit("m", now=0.0), shaper.admit("m", now=0.25)
    (None, Refusal(retry_after=0.75, limit='rpm'))
    >>> tpm = TrafficShaper(ReplayConfig(data="x", rate_limit_tpm=600, tpm_burst=20))   # 10 tokens/s
    >>> tpm.admit("m", now=0.0, tokens=15), tpm.admit("m", now=0.0, tokens=15)
    (None, Refusal(retry_after=1.0, limit='tpm'))
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from swarm_sona.executors.buckets import TokenBucket
from swarm_sona.executors.replay.config import ReplayConfig, lognormal_sigma

__all__ = ["TrafficShaper", "Refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted: the ``Retry-After`` seconds and the ``limit`` it hit.

    Example:
        >>> Refusal(0.5, "tpm").limit
        'tpm'
    """

    retry_after: float
    limit: Literal["rpm", "tpm"]


class TrafficShaper:
    """Latency draws, replayed errors and per-model request and token buckets of one server (module docs).

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
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}

    def latency(self) -> float:
        """One service latency draw, seconds."""
        if self.config.latency_median_s <= 0:
            return 0.0
        return self.config.latency_median_s * math.exp(self.sigma * self.rng.gauss(0.0, 1.0))

    def fails(self, model: str) -> bool:
        """Whether an admitted request to ``model`` is answered 503 (a draw at its error rate)."""
        rate = self.config.model_error_rates.get(model, self.config.error_rate)
        return rate > 0 and self.rng.random() < rate

    def _buckets(self, model: str, now: float) -> tuple[TokenBucket | None, TokenBucket | None]:
        cfg = self.config
        req = self._requests.get(model)
        if req is None and cfg.rate_limit_rpm > 0:
            req = self._requests[model] = TokenBucket(cfg.rate_limit_rpm / 60.0, cfg.bucket_size, now)
        tok = self._tokens.get(model)
        if tok is None and cfg.rate_limit_tpm > 0:
            tok = self._tokens[model] = TokenBucket(cfg.rate_limit_tpm / 60.0, cfg.tokens_bucket_size, now)
        return req, tok

    def admit(self, model: str, now: float, tokens: float = 0.0) -> Refusal | None:
        """Admit one request charged ``tokens``: None (both budgets taken from), else the :class:`Refusal`."""
        req, tok = self._buckets(model, now)
        if req is not None:
            wait = req.wait_for(1.0, now)
            if wait > 0:
                return Refusal(wait, "rpm")
        if tok is not None:
            wait = tok.wait_for(min(float(tokens), tok.capacity), now)
            if wait > 0:
                return Refusal(wait, "tpm")
            tok.reserve(float(tokens), now)
        if req is not None:
            req.reserve(1.0, now)
        return None

    def settle(self, model: str, charged: float, used: float, now: float) -> None:
        """Correct an admitted request's token charge by what it really used."""
        _, tok = self._buckets(model, now)
        if tok is None or used == charged:
            return
        if used < charged:
            tok.refund(charged - used, now)
        else:
            tok.reserve(used - charged, now)
