"""What telemetry exports and where: :class:`TelemetryConfig`, resolved against the ``OTEL_*`` variables.

Example:
    >>> from swarm_sona.core.telemetry import TelemetryConfig
    >>> cfg = TelemetryConfig(exporters="memory", max_label_values=8).resolve({})
    >>> cfg.traces_exporter, cfg.metrics_exporter, cfg.max_label_values, cfg.task_traces
    (('memory',), ('memory',), 8, True)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.core.redaction import check_redactor

__all__ = ["TelemetryConfig", "TRACE_EXPORTERS", "METRIC_EXPORTERS"]

TRACE_EXPORTERS = ("none", "console", "otlp", "memory")
"""Span exporters a config may name."""
METRIC_EXPORTERS = ("none", "console", "otlp", "prometheus", "memory")
"""Metric exporters a config may name."""


def _split(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = v.split(",")
    return tuple(s.strip().lower() for s in v if s.strip())


def _env_bool(raw: str | None) -> bool | None:
    if raw is None or not raw.strip():
        return None
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TelemetryConfig(ConfigBase):
    """Which telemetry to export and where; unset fields come from ``OTEL_*`` variables.

    Example:
        >>> TelemetryConfig.from_dict({"exporters": ["prometheus"], "prometheusPort": 0}).resolve({}).metrics_exporter
        ('prometheus',)
        >>> TelemetryConfig().resolve({"OTEL_TRACES_EXPORTER": "console"}).traces_exporter
        ('console',)
        >>> TelemetryConfig(exporters="zipkin")
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: telemetry.exporters: unknown exporter 'zipkin'; valid: none, console, otlp, prometheus, memory
    """

    _section: ClassVar[str] = "telemetry"

    enabled: bool | None = field_doc("False turns telemetry off; None = on when an exporter is configured "
                                "(OTEL_SDK_DISABLED=true also turns it off).", None)
    exporters: tuple[str, ...] | str | None = field_doc(
        "Shorthand for both signals: none, console, otlp, prometheus (metrics only), memory (tests).", None)
    traces_exporter: tuple[str, ...] | str | None = field_doc(
        "Span exporters: none, console, otlp, memory (default: exporters, then OTEL_TRACES_EXPORTER).", None)
    metrics_exporter: tuple[str, ...] | str | None = field_doc(
        "Metric exporters: none, console, otlp, prometheus, memory (default: exporters, then "
        "OTEL_METRICS_EXPORTER).", None)
    otlp_protocol: str | None = field_doc("grpc or http/protobuf (default OTEL_EXPORTER_OTLP_PROTOCOL, then grpc).", None)
    otlp_endpoint: str | None = field_doc("OTLP collector endpoint (default OTEL_EXPORTER_OTLP_ENDPOINT, then the "
                                     "exporter's own default).", None)
    prometheus_host: str | None = field_doc("Prometheus endpoint address (default OTEL_EXPORTER_PROMETHEUS_HOST, "
                                       "then 127.0.0.1).", None)
    prometheus_port: int | None = field_doc("Prometheus endpoint port, 0 = any free port (default "
                                       "OTEL_EXPORTER_PROMETHEUS_PORT, then 9464).", None)
    service_name: str | None = field_doc("service.name resource attribute (default OTEL_SERVICE_NAME, then swarm-sona).",
                                    None)
    metric_interval_s: float | None = field_doc("Export interval of push exporters (console, otlp) in seconds "
                                           "(default OTEL_METRIC_EXPORT_INTERVAL ms, then 10 s).", None)
    sample_ratio: float = field_doc("Fraction of traces sampled at the root (children follow their parent).", 1.0)
    redact: str | Callable[[str], str] | None = field_doc(
        "Redactor applied to string span attributes, span event attributes (exception messages) and status "
        "descriptions before export or relay: none, secrets, email, 'a+b', 'package.module:function', or a callable "
        "(see swarm_sona.core.redaction).", "none")
    relay_max_spans: int = field_doc("Actors: max finished spans buffered for relay to the driver (oldest dropped).",
                                20000)
    push_url: str | None = field_doc("Prometheus Pushgateway (http://host:9091): metrics are pushed every "
                                     "push_interval_s and once more at the end (batch jobs); None = no push.", None)
    push_interval_s: float = field_doc("Seconds between two pushes to the Pushgateway during a run.", 5.0)
    push_job: str | None = field_doc("job label of the pushed group (default: service_name).", None)
    push_instance: str | None = field_doc("instance label of the pushed group (default: the host name; the next run "
                                          "from the same host replaces the group).", None)
    otlp_timeout_s: float = field_doc("Bound in seconds on one OTLP export, retries included (the SDK waits 10 s).",
                                      2.0)
    max_label_values: int = field_doc("Distinct values kept per metric label (agent, model): later new values are "
                                      "recorded as 'other', so 100 agents export at most this many series per "
                                      "label; 0 = no cap.", 64)
    task_traces: bool = field_doc("True: each task is its own trace, its root span linked to the batch span of the "
                                  "run's trace (and carrying the run's trace id); False: tasks are children of their "
                                  "batch, one trace per run.", True)

    def __post_init__(self) -> None:
        for name, valid in (("exporters", METRIC_EXPORTERS), ("traces_exporter", TRACE_EXPORTERS),
                            ("metrics_exporter", METRIC_EXPORTERS)):
            vals = _split(getattr(self, name))
            object.__setattr__(self, name, vals)
            for v in vals or ():
                if v not in valid:
                    raise ConfigError(f"{self._where(name)}: unknown exporter {v!r}; valid: {', '.join(valid)}")
        if self.otlp_protocol is not None:
            self._check_choice("otlp_protocol", ("grpc", "http/protobuf"))
        if self.prometheus_port is not None:
            self._check_range("prometheus_port", 0, 65535)
        if self.metric_interval_s is not None:
            self._check_range("metric_interval_s", 0, lo_open=True)
        self._check_range("sample_ratio", 0, 1)
        self._check_range("relay_max_spans", 0)
        self._check_range("push_interval_s", 0, lo_open=True)
        self._check_range("otlp_timeout_s", 0, 60, lo_open=True)
        self._check_range("max_label_values", 0, 1_000_000)
        if self.push_url is not None:
            object.__setattr__(self, "push_url", _check_push_url(self.push_url, self._where("push_url")))
        check_redactor(self.redact, self._where("redact"))

    def resolve(self, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        """A copy with every unset field filled from ``environ`` (default ``os.environ``) or defaults."""
        env = os.environ if environ is None else environ
        enabled = self.enabled
        if _env_bool(env.get("OTEL_SDK_DISABLED")):
            enabled = False
        traces = self.traces_exporter
        metrics = self.metrics_exporter
        if self.exporters is not None:
            traces = traces if traces is not None else tuple(e for e in self.exporters if e in TRACE_EXPORTERS)
            metrics = metrics if metrics is not None else self.exporters
        if traces is None:
            traces = _split(env.get("OTEL_TRACES_EXPORTER")) or ("none",)
        if metrics is None:
            metrics = _split(env.get("OTEL_METRICS_EXPORTER")) or ("none",)
        traces = tuple(e for e in traces if e != "none")
        metrics = tuple(e for e in metrics if e != "none")
        for name, vals, valid in (("traces_exporter", traces, TRACE_EXPORTERS),
                                  ("metrics_exporter", metrics, METRIC_EXPORTERS)):
            for v in vals:
                if v not in valid:
                    raise ConfigError(f"{self._where(name)}: unknown exporter {v!r} (from the environment); "
                                      f"valid: {', '.join(valid)}")
        if enabled is None:
            enabled = bool(traces or metrics or self.push_url)
        push_url = self.push_url if enabled else None
        if not enabled:
            traces, metrics = (), ()
        interval = self.metric_interval_s
        if interval is None:
            raw = env.get("OTEL_METRIC_EXPORT_INTERVAL")
            interval = float(raw) / 1000.0 if raw and raw.strip() else 10.0
        port = self.prometheus_port
        if port is None:
            raw = env.get("OTEL_EXPORTER_PROMETHEUS_PORT")
            port = int(raw) if raw and raw.strip() else 9464
        return dataclasses.replace(
            self, enabled=enabled, exporters=None, traces_exporter=traces, metrics_exporter=metrics,
            otlp_protocol=self.otlp_protocol or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc",
            otlp_endpoint=self.otlp_endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
            prometheus_host=self.prometheus_host or env.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "127.0.0.1",
            prometheus_port=port,
            service_name=self.service_name or env.get("OTEL_SERVICE_NAME") or "swarm-sona",
            metric_interval_s=interval, push_url=push_url)


def _check_push_url(url: Any, where: str) -> str:
    """A Pushgateway address as ``http[s]://host:port[/path]`` (``host:port`` gets ``http://``)."""
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: must be a Pushgateway URL such as http://127.0.0.1:9091, got {url!r}")
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.query or parts.fragment:
        raise ConfigError(f"{where}: must be a Pushgateway URL such as http://127.0.0.1:9091, got {url!r}")
    return raw.rstrip("/")
