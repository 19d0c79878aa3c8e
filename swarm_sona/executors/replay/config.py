"""The replay endpoint's settings (:class:`ReplayConfig`) and the lognormal shape of its latency.

Example:
    >>> from swarm_sona.executors.replay.config import ReplayConfig
    >>> ReplayConfig(data="tests/data/routellm_slice", rate_limit_rpm=600).rate_limit_rpm
    600
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from swarm_sona.core.config import ConfigBase, ConfigError, Secret, field_doc

__all__ = ["ReplayConfig", "lognormal_sigma", "Z99"]

Z99 = 2.3263478740408408   # standard normal quantile of 0.99


def lognormal_sigma(median_s: float, p99_s: float) -> float:
    """The lognormal shape with this median and 99th percentile.

    Example:
        >>> round(lognormal_sigma(0.5, 0.5 * math.exp(2.3263478740408408)), 6)
        1.0
    """
    return math.log(p99_s / median_s) / Z99


def _check_int(where: str, v: object, lo: int, hi: int | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        span = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"replay.{where}: must be an integer {span}, got {v!r}")


@dataclass(frozen=True)
class ReplayConfig(ConfigBase):
    """Settings of the replay endpoint (see :mod:`swarm_sona.executors.replay`).

    Example:
        >>> ReplayConfig(data="tests/data/routellm_slice", max_concurrency=64).max_concurrency
        64
        >>> ReplayConfig(data="x", latency_p99_s=0.1, latency_median_s=0.5)
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: replay.latency_p99_s: must be >= latency_median_s (0.5), got 0.1
    """

    _section: ClassVar[str] = "replay"

    data: str = field_doc("Folder of RouteLLM-style CSV files (prompt, then True/False per model).", "")
    port: int = field_doc("TCP port on 127.0.0.1 (0 = any free port).", 0)
    latency_median_s: float = field_doc("Median of the lognormal service latency, seconds (0 = no delay).", 0.8)
    latency_p99_s: float = field_doc("99th percentile of the service latency, seconds (>= the median).", 5.0)
    max_concurrency: int = field_doc("Requests served at once; one more is answered 429 with Retry-After.", 256)
    retry_after_s: float = field_doc("Retry-After sent with a 429, seconds (fractions allowed).", 1.0)
    rate_limit_rpm: int = field_doc("Requests per minute admitted per model (a token bucket); one more is "
                                    "answered 429 with Retry-After = when it would be admitted (0 = no limit).", 0)
    rate_burst: int = field_doc("Size of each model's request bucket: requests admitted at once above the "
                                "rpm pace (0 = one second's worth, at least 1).", 0)
    rate_limit_tpm: int = field_doc("Tokens per minute admitted per model: prompt + max_tokens charged at admission, "
                                    "corrected by the completion's tokens; a request over it is answered 429 with "
                                    "Retry-After = when it would be admitted (0 = no limit).", 0)
    tpm_burst: int = field_doc("Size of each model's tokens bucket (0 = one second's worth of rate_limit_tpm, at "
                               "least 1).", 0)
    error_rate: float = field_doc("Share of admitted requests answered 503 after their latency, in [0, 0.5].", 0.0)
    model_error_rates: dict[str, float] = field_doc("Model -> its own share answered 503, in [0, 1] (1 = a model "
                                                    "that is down); overrides error_rate.", factory=dict)
    api_key_env: str | None = field_doc("Environment variable holding the bearer key required (None = no auth).",
                                        None)
    api_key: Secret | None = field_doc("A literal bearer key required (prefer api_key_env).", None)
    prices: dict[str, float] = field_doc("USD per 1M tokens per model (input = output); default RouteLLM's.",
                                         factory=dict)
    seed: int = field_doc("Seed of the latency and error draws.", 0)
    record_in_flight: bool = field_doc("Keep a timeline of the requests in flight (admissions and completions) "
                                       "for ReplayServer.in_flight_profile (profiling; off: nothing kept).", False)

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError("replay.data: give the folder of the recorded outcomes table (e.g. --data DIR)")
        _check_int("port", self.port, 0, 65535)
        self._check_range("latency_median_s", 0.0)
        self._check_range("latency_p99_s", 0.0)
        if self.latency_p99_s < self.latency_median_s:
            raise ConfigError(f"replay.latency_p99_s: must be >= latency_median_s ({self.latency_median_s}), "
                              f"got {self.latency_p99_s}")
        _check_int("max_concurrency", self.max_concurrency, 1)
        self._check_range("retry_after_s", 0.0)
        _check_int("rate_limit_rpm", self.rate_limit_rpm, 0)
        _check_int("rate_burst", self.rate_burst, 0)
        _check_int("rate_limit_tpm", self.rate_limit_tpm, 0)
        _check_int("tpm_burst", self.tpm_burst, 0)
        self._check_range("error_rate", 0.0, 0.5)
        for m, r in self.model_error_rates.items():
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
                raise ConfigError(f"replay.model_error_rates[{m!r}]: must be a number in [0, 1], got {r!r}")
        if not isinstance(self.record_in_flight, bool):
            raise ConfigError(f"replay.record_in_flight: must be true or false, got {self.record_in_flight!r}")
        for m, p in self.prices.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
                raise ConfigError(f"replay.prices[{m!r}]: must be a finite number >= 0, got {p!r}")

    @property
    def bucket_size(self) -> float:
        """Requests each model's bucket holds (``rate_burst``, else one second of ``rate_limit_rpm``)."""
        return float(self.rate_burst or max(1.0, self.rate_limit_rpm / 60.0))

    @property
    def tokens_bucket_size(self) -> float:
        """Tokens each model's bucket holds (``tpm_burst``, else one second of ``rate_limit_tpm``)."""
        return float(self.tpm_burst or max(1.0, self.rate_limit_tpm / 60.0))
