"""OpenTelemetry set-up and the instrument names of swarm_sona.

One :class:`Telemetry` object per process owns a tracer provider and a meter provider of the
OpenTelemetry SDK (never the process-global ones, so several can coexist in tests). What it
exports is chosen by :class:`TelemetryConfig` or, for every field left unset, by the
standard ``OTEL_*`` environment variables:

=====================  ===============================  =========================================
field                  environment variable             values
=====================  ===============================  =========================================
traces_exporter        OTEL_TRACES_EXPORTER             none, console, otlp, memory
metrics_exporter       OTEL_METRICS_EXPORTER            none, console, otlp, prometheus, memory
otlp_protocol          OTEL_EXPORTER_OTLP_PROTOCOL      grpc, http/protobuf
otlp_endpoint          OTEL_EXPORTER_OTLP_ENDPOINT      e.g. http://collector:4317
prometheus_host/port   OTEL_EXPORTER_PROMETHEUS_HOST/   127.0.0.1 / 9464 (0 = a free port)
                       OTEL_EXPORTER_PROMETHEUS_PORT
service_name           OTEL_SERVICE_NAME                swarm-sona
metric_interval_s      OTEL_METRIC_EXPORT_INTERVAL      ms in the env var, seconds in the config
enabled                OTEL_SDK_DISABLED=true           turns everything off
=====================  ===============================  =========================================

``exporters`` is a shorthand that sets both signals at once (``prometheus`` only applies to
metrics). OTLP needs the ``otlp`` extra, Prometheus the ``prometheus`` extra.

Redaction: ``redact`` (default ``none``) names a redactor of :mod:`swarm_sona.core.redaction`
(``secrets``, ``email``, ``"secrets+email"``, ``"package.module:function"``) or is a callable. It is
applied to every finished span before any exporter or the actor relay sees it: every string
attribute value (and string items of list values), every string attribute of span events
(``exception.message`` and ``exception.stacktrace`` of recorded exceptions, which often quote a
prompt) and the status description. Span names, attribute keys and resource attributes are not
redacted. With ``none`` nothing is wrapped and spans cost what they did.

Telemetry off is a fast path: :meth:`Telemetry.span` returns a shared no-op context manager
and every ``record_*`` method returns after one attribute test.

Trace context crosses process boundaries inside the actors' msgpack envelopes as a W3C
``traceparent`` carrier (:meth:`Telemetry.inject` / the ``parent=`` argument of
:meth:`Telemetry.span`). Actor processes run in *relay* mode: their finished spans are
buffered, drained into the results they send back (:meth:`Telemetry.relay_drain`, plain
msgpack-safe dicts) and exported by the driver (:meth:`Telemetry.relay_ingest`) through its
own exporters, so one trace spans driver -> agent -> coordinator whatever the exporter.

Example:
    >>> from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
    >>> tel = Telemetry(TelemetryConfig(exporters="memory"))
    >>> with tel.span("batch") as sp:
    ...     carrier = tel.inject()          # goes into the envelope to an agent
    >>> with tel.span("task", parent=carrier):
    ...     with tel.span("learn"):
    ...         tel.record_learning(12e-6, agent="coder-1")
    >>> tree = {s.name: s for s in tel.memory_spans()}
    >>> tree["task"].parent.span_id == tree["batch"].context.span_id
    True
    >>> tel.memory_metrics()["swarm_sona.learn.duration"][0]["count"]
    1
    >>> tel.shutdown()
    >>> off = Telemetry(TelemetryConfig(enabled=False))
    >>> off.enabled, off.inject()
    (False, {})
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from swarm_sona.core.config import ConfigBase, ConfigError, Secret, field_doc

__all__ = [
    "TelemetryConfig",
    "Telemetry",
    "SPAN_NAMES",
    "METRICS",
    "MetricDef",
    "TRACE_KEY",
    "configure",
    "configured",
    "using",
    "current",
    "shutdown",
    "prometheus_name",
    "safe_attributes",
]

log = logging.getLogger(__name__)

SCOPE = "swarm_sona"
TRACE_KEY = "trace"
"""Key of the W3C trace-context carrier inside an actor envelope (a dict)."""

SPAN_NAMES: tuple[str, ...] = (
    "run",          # driver: the whole job
    "batch",        # driver: one batch of tasks dispatched to one agent
    "task",         # agent: one task end to end
    "retrieve",     # agent: ReasoningBank retrieval
    "route",        # agent: router decision
    "execute",      # agent: executor call
    "learn",        # agent: instant-loop learning step
    "background",   # agent: background loop (BaseLoRA + EWC++ + distillation)
    "push",         # agent: adapter delta pushed to the parent
    "merge",        # coordinator: consensus merge of deltas
    "consolidate",  # coordinator: EWC++ consolidation of the merged adapter
    "checkpoint",   # coordinator / agent: checkpoint write
)

_TRACE_EXPORTERS = ("none", "console", "otlp", "memory")
_METRIC_EXPORTERS = ("none", "console", "otlp", "prometheus", "memory")

_LATENCY_BUCKETS_S = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
                      0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_UNIT_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class MetricDef:
    """One instrument: OpenTelemetry name, kind (counter, gauge, histogram), unit, description, labels."""

    name: str
    kind: str
    unit: str
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None


METRICS: dict[str, MetricDef] = {m.name: m for m in (
    MetricDef("swarm_sona.tasks", "counter", "{task}", "Tasks finished", ("agent", "model", "success")),
    MetricDef("swarm_sona.success_rate", "gauge", "1", "Success rate over the run so far"),
    MetricDef("swarm_sona.reward", "histogram", "1", "Reward per task", ("agent",), _UNIT_BUCKETS),
    MetricDef("swarm_sona.cost", "counter", "{USD}", "Spend in USD", ("agent", "model")),
    MetricDef("swarm_sona.router.decisions", "counter", "{decision}", "Routing decisions per model",
              ("agent", "model")),
    MetricDef("swarm_sona.router.share", "gauge", "1", "Share of tasks routed to each model so far", ("model",)),
    MetricDef("swarm_sona.learn.duration", "histogram", "s", "Instant-loop learning step latency", ("agent",),
              _LATENCY_BUCKETS_S),
    MetricDef("swarm_sona.retrieve.duration", "histogram", "s", "ReasoningBank retrieval latency", ("agent",),
              _LATENCY_BUCKETS_S),
    MetricDef("swarm_sona.bank.size", "gauge", "{pattern}", "Patterns in the ReasoningBank"),
    MetricDef("swarm_sona.adapter.norm", "gauge", "1", "Frobenius norm of an agent's adapter", ("agent",)),
    MetricDef("swarm_sona.ewc.penalty", "gauge", "1", "EWC++ penalty of the last consolidation", ("agent",)),
    MetricDef("swarm_sona.merge.lag", "gauge", "{version}", "Merged versions an agent is behind its coordinator",
              ("agent",)),
)}


def prometheus_name(metric: str, sample: str = "") -> str:
    """The name under which the Prometheus exporter publishes ``metric`` (a key of METRICS).

    Counters get ``_total``; time units become ``_seconds``; ``{annotations}`` and ``1`` add
    nothing. ``sample`` is ``bucket``/``sum``/``count`` for histogram series.

    Example:
        >>> prometheus_name("swarm_sona.tasks"), prometheus_name("swarm_sona.learn.duration", "bucket")
        ('swarm_sona_tasks_total', 'swarm_sona_learn_duration_seconds_bucket')
    """
    d = METRICS[metric]
    base = "".join(c if c.isalnum() else "_" for c in d.name)
    unit = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}.get(d.unit, "")
    if unit and not base.endswith("_" + unit):
        base += "_" + unit
    if d.kind == "counter":
        base += "_total"
    if sample:
        base += "_" + sample
    return base


# =====================================================================================
# Config
# =====================================================================================
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

    def __post_init__(self) -> None:
        for name, valid in (("exporters", _METRIC_EXPORTERS), ("traces_exporter", _TRACE_EXPORTERS),
                            ("metrics_exporter", _METRIC_EXPORTERS)):
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
        if self.push_url is not None:
            object.__setattr__(self, "push_url", _check_push_url(self.push_url, self._where("push_url")))
        from swarm_sona.core.redaction import check_redactor

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
            traces = traces if traces is not None else tuple(e for e in self.exporters if e in _TRACE_EXPORTERS)
            metrics = metrics if metrics is not None else self.exporters
        if traces is None:
            traces = _split(env.get("OTEL_TRACES_EXPORTER")) or ("none",)
        if metrics is None:
            metrics = _split(env.get("OTEL_METRICS_EXPORTER")) or ("none",)
        traces = tuple(e for e in traces if e != "none")
        metrics = tuple(e for e in metrics if e != "none")
        for name, vals, valid in (("traces_exporter", traces, _TRACE_EXPORTERS),
                                  ("metrics_exporter", metrics, _METRIC_EXPORTERS)):
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


# =====================================================================================
# Secrets never become attributes
# =====================================================================================
_SECRET_ATTR = re.compile(r"(?i)(?:^|[._-])(?:api[._-]?key|secret|password|passwd|authorization|credentials?|"
                          r"(?:auth|access|bearer|api|id|refresh)[._-]?token)(?:$|[._-])")


def safe_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Span/resource attributes with ``***`` for every :class:`~swarm_sona.core.config.Secret` value and
    every value under a credential-like name (``api_key``, ``*.password``, ``auth_token``...);
    the mapping itself when there is none (the common case: no copy).

    Example:
        >>> safe_attributes({"agent": "coder-1", "bank.api_key": "k", "tokens": 12})
        {'agent': 'coder-1', 'bank.api_key': '***', 'tokens': 12}
    """
    if not attributes:
        return attributes

    def secret(k: Any, v: Any) -> bool:
        return isinstance(v, Secret) or (isinstance(k, str) and _SECRET_ATTR.search(k) is not None)

    if not any(secret(k, v) for k, v in attributes.items()):
        return attributes
    return {k: "***" if secret(k, v) else v for k, v in attributes.items()}


# =====================================================================================
# No-op fast path
# =====================================================================================
class _NoopSpan:
    """What :meth:`Telemetry.span` yields when tracing is off: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        return None

    def record_exception(self, exc: BaseException) -> None:
        return None

    def is_recording(self) -> bool:
        return False

    def end(self, end_time: int | None = None) -> None:
        return None


_NOOP_SPAN = _NoopSpan()


# =====================================================================================
# Telemetry
# =====================================================================================
class Telemetry:
    """The telemetry of one process: spans, metrics, propagation and (in actors) span relay.

    ``relay=True`` (actor processes) buffers finished spans for :meth:`relay_drain` instead of
    exporting them, and records no metrics: the driver records them from the results and
    stats it receives (so one Prometheus endpoint serves the whole run). ``attributes`` become resource attributes (e.g. role, agent id).

    Example:
        >>> tel = Telemetry(TelemetryConfig(traces_exporter="memory"), relay=True)
        >>> with tel.span("task", attributes={"agent": "coder-1"}):
        ...     pass
        >>> [s["name"] for s in tel.relay_drain()]
        ['task']
        >>> tel.shutdown()
    """

    def __init__(self, config: TelemetryConfig | Mapping[str, Any] | None = None, *, relay: bool = False,
                 attributes: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> None:
        cfg = config if isinstance(config, TelemetryConfig) else TelemetryConfig.from_dict(config or {})
        self.config = cfg.resolve(environ)
        self.relay = relay
        self.tracing = bool(self.config.traces_exporter)
        self.metering = bool(self.config.metrics_exporter or self.config.push_url) and not relay
        self.enabled = self.tracing or self.metering
        self._lock = threading.Lock()
        self._closed = False
        self._span_processors: list[Any] = []
        self._memory_spans: Any = None
        self._memory_metrics: Any = None
        self._relay_buffer: deque[Any] | None = None
        self._prom_server: Any = None
        self._prom_thread: Any = None
        self._prom_reader: Any = None
        self._prom_registry: Any = None
        self.prometheus_url: str | None = None
        self.push_url: str | None = None
        self._push_stop = threading.Event()
        self._push_thread: threading.Thread | None = None
        self._push_lock = threading.Lock()
        self._push_failing = False
        self.pushes = 0
        """Successful pushes to the Pushgateway so far."""
        self._otlp_warned: set[str] = set()
        self._tracer: Any = None
        self._tracer_provider: Any = None
        self._meter_provider: Any = None
        self._instruments: dict[str, Any] = {}
        self._propagator: Any = None
        self._resource: Any = None
        if not self.enabled:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        res_attrs: dict[str, Any] = {"service.name": self.config.service_name}
        res_attrs.update({k: v for k, v in (safe_attributes(attributes) or {}).items() if v is not None})
        self._resource = Resource.create(res_attrs)
        self._propagator = TraceContextTextMapPropagator()
        if self.tracing:
            self._setup_tracing()
        if self.metering:
            self._setup_metrics()

    # ---- set-up ---------------------------------------------------------------------
    def _setup_tracing(self) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        sampler = ParentBased(TraceIdRatioBased(self.config.sample_ratio))
        provider = TracerProvider(resource=self._resource, sampler=sampler)
        processors: list[Any] = []
        if self.relay:
            self._relay_buffer = deque(maxlen=max(1, self.config.relay_max_spans))
            relay: Any = _RelayExporter(self._relay_buffer)  # duck-typed SpanExporter (no SDK import at module load)
            processors.append(SimpleSpanProcessor(relay))
        else:
            for name in self.config.traces_exporter or ():
                if name == "memory":
                    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

                    self._memory_spans = InMemorySpanExporter()
                    processors.append(SimpleSpanProcessor(self._memory_spans))
                elif name == "console":
                    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                    processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
                elif name == "otlp":
                    processors.append(BatchSpanProcessor(self._otlp_exporter("trace")))
        from swarm_sona.core.redaction import resolve_redactor

        redactor = resolve_redactor(self.config.redact, "telemetry.redact")
        if redactor is not None:
            processors = [_RedactingProcessor(p, redactor) for p in processors]
        for p in processors:
            provider.add_span_processor(p)
        self._span_processors = processors
        self._tracer_provider = provider
        self._tracer = provider.get_tracer(SCOPE)

    def _otlp_exporter(self, signal: str) -> Any:
        grpc = self.config.otlp_protocol == "grpc"
        try:
            if signal == "trace":
                cls: Any
                if grpc:
                    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as cls
                else:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as cls
            else:
                if grpc:
                    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as cls
                else:
                    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as cls
        except ImportError as exc:
            raise ConfigError(f"telemetry: the OTLP exporter ({self.config.otlp_protocol}) is not installed; "
                              f"pip install 'swarm-sona[otlp]' ({exc.name} missing)") from exc
        endpoint = self.config.otlp_endpoint
        if endpoint and not grpc and not endpoint.rstrip("/").endswith(("/v1/traces", "/v1/metrics")):
            endpoint = endpoint.rstrip("/") + ("/v1/traces" if signal == "trace" else "/v1/metrics")
        timeout = float(self.config.otlp_timeout_s)
        exporter = cls(endpoint=endpoint, timeout=timeout) if endpoint else cls(timeout=timeout)
        _guard_export(exporter, signal, _otlp_address(self.config.otlp_endpoint, grpc), self._otlp_warned,
                      min(0.5, timeout))
        return exporter

    def _setup_metrics(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            InMemoryMetricReader,
            PeriodicExportingMetricReader,
        )

        readers: list[Any] = []
        interval_ms = self.config.metric_interval_s * 1000.0  # type: ignore[operator]
        for name in self.config.metrics_exporter or ():
            if name == "memory":
                self._memory_metrics = InMemoryMetricReader()
                readers.append(self._memory_metrics)
            elif name == "console":
                readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(),
                                                             export_interval_millis=interval_ms))
            elif name == "otlp":
                readers.append(PeriodicExportingMetricReader(self._otlp_exporter("metric"),
                                                             export_interval_millis=interval_ms))
            elif name == "prometheus":
                readers.append(self._start_prometheus())
        if self.config.push_url and self._prom_reader is None:
            readers.append(self._prometheus_reader())
        self._meter_provider = MeterProvider(metric_readers=readers, resource=self._resource)
        meter = self._meter_provider.get_meter(SCOPE)
        for d in METRICS.values():
            if d.kind == "counter":
                inst = meter.create_counter(d.name, unit=d.unit, description=d.description)
            elif d.kind == "gauge":
                inst = meter.create_gauge(d.name, unit=d.unit, description=d.description)
            else:
                inst = meter.create_histogram(d.name, unit=d.unit, description=d.description,
                                              explicit_bucket_boundaries_advisory=list(d.buckets or ()))
            self._instruments[d.name] = inst
        if self.config.push_url:
            self.push_url = self.config.push_url
            self._push_thread = threading.Thread(target=self._push_loop, name="swarm-sona-metrics-push", daemon=True)
            self._push_thread.start()

    def _prometheus_reader(self) -> Any:
        """The Prometheus reader and its registry (one per process, shared by the endpoint and the pusher)."""
        if self._prom_reader is not None:
            return self._prom_reader
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            what = "Pushgateway push" if self.config.push_url else "Prometheus exporter"
            raise ConfigError(f"telemetry: the {what} needs the Prometheus exporter; "
                              "pip install 'swarm-sona[prometheus]'") from exc
        self._prom_registry = CollectorRegistry(auto_describe=True)
        self._prom_reader = PrometheusMetricReader(registry=self._prom_registry)
        return self._prom_reader

    def _start_prometheus(self) -> Any:
        reader = self._prometheus_reader()
        from prometheus_client import start_http_server

        host, port = self.config.prometheus_host or "127.0.0.1", int(self.config.prometheus_port or 0)
        try:
            self._prom_server, self._prom_thread = start_http_server(port, addr=host, registry=self._prom_registry)
        except OSError as exc:
            reader.shutdown()
            self._prom_reader = self._prom_registry = None
            raise ConfigError(f"telemetry.prometheus_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound = self._prom_server.server_address
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        self.prometheus_url = f"http://{shown}:{bound[1]}/metrics"
        return reader

    # ---- Pushgateway ------------------------------------------------------------------
    def _push_loop(self) -> None:
        while not self._push_stop.wait(self.config.push_interval_s):
            self.push()

    def push(self, timeout_s: float = 2.0) -> bool:
        """Push the current metric values to the Pushgateway now (replacing this job's group there).

        Returns whether the push succeeded. A failure never raises: the first one of a series is
        logged as one warning line, the rest at debug level until a push succeeds again. False
        (and nothing sent) when no ``push_url`` is configured.

        Example:
            >>> tel = Telemetry(TelemetryConfig(push_url="http://127.0.0.1:1", push_interval_s=3600))
            >>> tel.push(timeout_s=0.5)     # nothing listens on port 1
            False
            >>> tel.shutdown()
        """
        if not self.push_url or self._prom_registry is None:
            return False
        from prometheus_client import push_to_gateway

        job = self.config.push_job or self.config.service_name or "swarm-sona"
        instance = self.config.push_instance or _hostname()
        with self._push_lock:
            try:
                push_to_gateway(self.push_url, job=job, registry=self._prom_registry,
                                grouping_key={"instance": instance}, timeout=timeout_s)
            except Exception as exc:   # unreachable, refused, an HTTP error: the job goes on
                reason = getattr(exc, "reason", None) or exc
                if not self._push_failing:
                    log.warning("telemetry: cannot push metrics to the Pushgateway at %s: %s (retrying every %g s)",
                                self.push_url, reason, self.config.push_interval_s)
                else:
                    log.debug("telemetry: push to %s failed again: %s", self.push_url, reason)
                self._push_failing = True
                return False
            if self._push_failing:
                log.info("telemetry: pushing metrics to %s again", self.push_url)
            self._push_failing = False
            self.pushes += 1
            return True

    # ---- spans ----------------------------------------------------------------------
    def span(self, name: str, *, attributes: Mapping[str, Any] | None = None,
             parent: Mapping[str, str] | None = None) -> Any:
        """A context manager around a span named ``name`` (one of SPAN_NAMES by convention).

        ``parent`` is a W3C carrier from :meth:`inject` (e.g. taken out of an envelope); without
        it the span is a child of the current span. With tracing off: a shared no-op object.
        """
        if not self.tracing:
            return _NOOP_SPAN
        ctx = self._propagator.extract(parent) if parent else None
        return self._tracer.start_as_current_span(name, context=ctx, attributes=safe_attributes(attributes))

    def begin(self, name: str, *, attributes: Mapping[str, Any] | None = None,
              parent: Mapping[str, str] | None = None) -> Any:
        """Start a span that is ended explicitly (``span.end()``), e.g. across an asynchronous call.

        It is a child of ``parent`` (a carrier) or of the current span, and does not become current.
        With tracing off: the shared no-op span.
        """
        if not self.tracing:
            return _NOOP_SPAN
        ctx = self._propagator.extract(parent) if parent else None
        return self._tracer.start_span(name, context=ctx, attributes=safe_attributes(attributes))

    def inject(self, carrier: dict[str, str] | None = None, *, span: Any = None) -> dict[str, str]:
        """W3C trace context (``traceparent``) of ``span`` (default: the current span) as a dict;
        ``{}`` when tracing is off."""
        out: dict[str, str] = {} if carrier is None else carrier
        if self.tracing:
            if span is not None and span is not _NOOP_SPAN:
                from opentelemetry import trace as trace_api

                self._propagator.inject(out, context=trace_api.set_span_in_context(span))
            else:
                self._propagator.inject(out)
        return out

    def attach_trace(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Put the current trace context into ``envelope[TRACE_KEY]`` (no key at all when off); returns it."""
        if self.tracing:
            envelope[TRACE_KEY] = self.inject()
        return envelope

    # ---- relay (actors -> driver) ---------------------------------------------------
    def relay_drain(self) -> list[dict[str, Any]]:
        """Finished spans buffered in relay mode, as msgpack-safe dicts; empties the buffer."""
        buf = self._relay_buffer
        if not buf:
            return []
        out = []
        while buf:
            out.append(_span_to_dict(buf.popleft()))
        return out

    def relay_ingest(self, spans: Sequence[Mapping[str, Any]]) -> int:
        """Export spans relayed from other processes through this process's span exporters.

        Returns how many were accepted; malformed entries are skipped (and logged), never raised.
        """
        if not self.tracing or not spans or self.relay:
            if self.relay and self._relay_buffer is not None:   # an intermediate hop: pass them on
                for d in spans:
                    self._relay_buffer.append(_RelayedSpan(d))
                return len(spans)
            return 0
        n = 0
        for d in spans:
            try:
                span = _span_from_dict(d)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("telemetry: dropping a malformed relayed span: %s", exc)
                continue
            for p in self._span_processors:
                p.on_end(span)
            n += 1
        return n

    # ---- metrics --------------------------------------------------------------------
    def record_task(self, *, agent: str, model: str, success: bool, reward: float, cost_usd: float) -> None:
        """One finished task: tasks, reward, cost and the routing decision that chose ``model``."""
        if not self.metering:
            return
        ins = self._instruments
        ins["swarm_sona.tasks"].add(1, {"agent": agent, "model": model, "success": bool(success)})
        ins["swarm_sona.reward"].record(float(reward), {"agent": agent})
        ins["swarm_sona.cost"].add(float(cost_usd), {"agent": agent, "model": model})
        ins["swarm_sona.router.decisions"].add(1, {"agent": agent, "model": model})

    def record_learning(self, seconds: float, *, agent: str) -> None:
        """Latency of one instant-loop learning step."""
        if self.metering:
            self._instruments["swarm_sona.learn.duration"].record(float(seconds), {"agent": agent})

    def record_retrieval(self, seconds: float, *, agent: str) -> None:
        """Latency of one ReasoningBank retrieval."""
        if self.metering:
            self._instruments["swarm_sona.retrieve.duration"].record(float(seconds), {"agent": agent})

    def set_merge_lag(self, versions: int, *, agent: str) -> None:
        """How many merged versions an agent's installed adapter is behind its coordinator's."""
        if self.metering:
            self._instruments["swarm_sona.merge.lag"].set(int(versions), {"agent": agent})

    def set_success_rate(self, rate: float) -> None:
        """Success rate over the run so far."""
        if self.metering:
            self._instruments["swarm_sona.success_rate"].set(float(rate))

    def set_routing_share(self, shares: Mapping[str, float]) -> None:
        """Share of tasks routed to each model so far."""
        if self.metering:
            g = self._instruments["swarm_sona.router.share"]
            for model, share in shares.items():
                g.set(float(share), {"model": model})

    def set_bank_size(self, patterns: int) -> None:
        """Patterns in the ReasoningBank."""
        if self.metering:
            self._instruments["swarm_sona.bank.size"].set(int(patterns))

    def set_adapter_norm(self, norm: float, *, agent: str) -> None:
        """Norm of an agent's adapter (drift from the shared base)."""
        if self.metering:
            self._instruments["swarm_sona.adapter.norm"].set(float(norm), {"agent": agent})

    def set_ewc_penalty(self, penalty: float, *, agent: str) -> None:
        """EWC++ penalty at the last consolidation."""
        if self.metering:
            self._instruments["swarm_sona.ewc.penalty"].set(float(penalty), {"agent": agent})

    # ---- test access ----------------------------------------------------------------
    def memory_spans(self) -> list[Any]:
        """Finished spans held by the ``memory`` trace exporter (ReadableSpan objects)."""
        if self._memory_spans is None:
            raise ConfigError("telemetry: the 'memory' trace exporter is not configured")
        return list(self._memory_spans.get_finished_spans())

    def memory_metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Current values of the ``memory`` metric reader: name -> points.

        A point is ``{"attributes": {...}, "value": v}`` for counters and gauges and
        ``{"attributes", "count", "sum", "min", "max", "bucket_counts", "bounds"}`` for histograms.
        """
        if self._memory_metrics is None:
            raise ConfigError("telemetry: the 'memory' metric exporter is not configured")
        data = self._memory_metrics.get_metrics_data()
        out: dict[str, list[dict[str, Any]]] = {}
        for rm in (data.resource_metrics if data else ()):
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    pts = out.setdefault(m.name, [])
                    for p in m.data.data_points:
                        attrs = dict(p.attributes or {})
                        if hasattr(p, "bucket_counts"):
                            pts.append({"attributes": attrs, "count": p.count, "sum": p.sum, "min": p.min,
                                        "max": p.max, "bucket_counts": list(p.bucket_counts),
                                        "bounds": list(p.explicit_bounds)})
                        else:
                            pts.append({"attributes": attrs, "value": p.value})
        return out

    # ---- lifecycle ------------------------------------------------------------------
    def flush(self, timeout_s: float = 5.0) -> None:
        """Export everything pending now (push exporters, and a push to the Pushgateway)."""
        ms = int(timeout_s * 1000)
        if self._tracer_provider is not None:
            self._tracer_provider.force_flush(ms)
        if self._meter_provider is not None:
            try:
                self._meter_provider.force_flush(ms)
            except Exception as exc:  # a collector that is down must not kill the job
                log.warning("telemetry: metric flush failed: %s", exc)
        if self.push_url and not self._closed:
            self.push(timeout_s=min(timeout_s, 2.0))

    def shutdown(self) -> None:
        """Flush, stop the exporters and the Prometheus endpoint. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._push_thread is not None:
            self._push_stop.set()
            self._push_thread.join(timeout=5)
            self._push_thread = None
            self.push()   # the last values of a batch job stay on the Pushgateway for Prometheus to scrape
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            try:
                self._meter_provider.shutdown()
            except Exception as exc:
                log.warning("telemetry: metric shutdown failed: %s", exc)
        if self._prom_server is not None:
            self._prom_server.shutdown()
            self._prom_server.server_close()
            self._prom_server = None
        self.tracing = self.metering = self.enabled = False

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        c = self.config
        return (f"Telemetry(traces={list(c.traces_exporter or ())}, metrics={list(c.metrics_exporter or ())}, "
                f"relay={self.relay})")


def _otlp_address(endpoint: str | None, grpc: bool) -> tuple[str, int]:
    """(host, port) an OTLP exporter connects to (its defaults: localhost:4317 grpc, :4318 http)."""
    from urllib.parse import urlsplit

    raw = endpoint or ("localhost:4317" if grpc else "localhost:4318")
    parts = urlsplit(raw if "://" in raw else "http://" + raw)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else (4317 if grpc else 4318)
    return parts.hostname or "localhost", int(port)


_OTLP_RECHECK_S = 5.0


def _guard_export(exporter: Any, signal: str, address: tuple[str, int], warned: set[str], probe_s: float) -> None:
    """Make ``exporter.export`` return FAILURE at once while the collector does not accept connections.

    The SDK's exporters retry with backoff for their whole timeout on every batch (and again at
    shutdown), logging each attempt; with no collector a run would wait and log for tens of
    seconds. Before exporting, a TCP connect (``probe_s``) checks the collector, at most every
    few seconds while it is down; the first failure logs one warning line per endpoint.
    """
    import socket

    from opentelemetry.sdk.metrics.export import MetricExportResult
    from opentelemetry.sdk.trace.export import SpanExportResult

    failure: Any = SpanExportResult.FAILURE if signal == "trace" else MetricExportResult.FAILURE
    inner = exporter.export
    state = {"down_until": 0.0}
    where = f"{address[0]}:{address[1]}"

    def export(*args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now < state["down_until"]:
            return failure
        try:
            socket.create_connection(address, timeout=probe_s).close()
        except OSError as exc:
            state["down_until"] = now + _OTLP_RECHECK_S
            if where not in warned:
                warned.add(where)
                log.warning("telemetry: OTLP collector at %s unreachable (%s): spans and metrics are dropped "
                            "until it answers", where, exc.strerror or exc)
            return failure
        return inner(*args, **kwargs)

    exporter.export = export


def _hostname() -> str:
    import socket

    return socket.gethostname() or "localhost"


# =====================================================================================
# Relay encoding
# =====================================================================================
class _RelayExporter:
    """A span exporter that appends finished spans to a bounded deque (drained by the actor)."""

    def __init__(self, buffer: deque[Any]) -> None:
        self._buffer = buffer

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self._buffer.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _RelayedSpan:
    """A span dict received from another process and passed on unchanged by an intermediate hop."""

    __slots__ = ("data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data


class _RedactingProcessor:
    """A span processor that hands a redacted copy of every finished span to ``inner``."""

    def __init__(self, inner: Any, fn: Callable[[str], str]) -> None:
        self._inner = inner
        self._fn = fn

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def _on_ending(self, span: Any) -> None:
        hook = getattr(self._inner, "_on_ending", None)
        if hook is not None:
            hook(span)

    def on_end(self, span: Any) -> None:
        self._inner.on_end(redacted_span(span, self._fn))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _redact_attrs(attrs: Any, fn: Callable[[str], str]) -> dict[str, Any] | None:
    """Attributes with ``fn`` applied to string values (and string items of sequences); None when
    nothing changed."""
    if not attrs:
        return None
    out: dict[str, Any] = {}
    changed = False
    for k, v in attrs.items():
        if isinstance(v, str):
            nv: Any = fn(v)
        elif isinstance(v, (tuple, list)) and any(isinstance(x, str) for x in v):
            nv = tuple(fn(x) if isinstance(x, str) else x for x in v)
        else:
            nv = v
        if nv is not v and nv != v:
            changed = True
        out[k] = nv
    return out if changed else None


def redacted_span(span: Any, fn: Callable[[str], str]) -> Any:
    """``span`` (a finished ReadableSpan) with ``fn`` applied to its string attributes, its
    events' string attributes and its status description; the span itself when nothing changes.

    Example:
        >>> from opentelemetry.sdk.trace import ReadableSpan
        >>> s = redacted_span(ReadableSpan("task", attributes={"task.text": "key sk-abc123abc123abc123", "n": 1}),
        ...                   lambda t: t.replace("sk-abc123abc123abc123", "[REDACTED]"))
        >>> dict(s.attributes)
        {'task.text': 'key [REDACTED]', 'n': 1}
    """
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace.status import Status

    attrs = _redact_attrs(span.attributes, fn)
    events = list(span.events or ())
    events_changed = False
    for i, e in enumerate(events):
        ea = _redact_attrs(e.attributes, fn)
        if ea is not None:
            events[i] = Event(e.name, ea, e.timestamp)
            events_changed = True
    status = span.status
    desc = status.description
    if desc:
        nd = fn(desc)
        if nd != desc:
            status = Status(status.status_code, nd)
    if attrs is None and not events_changed and status is span.status:
        return span
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource,
        attributes=attrs if attrs is not None else span.attributes, events=events, links=span.links, kind=span.kind,
        status=status, start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope)


def _attrs_plain(attrs: Any) -> dict[str, Any]:
    out = {}
    for k, v in (attrs or {}).items():
        out[str(k)] = list(v) if isinstance(v, tuple) else v
    return out


def _span_to_dict(span: Any) -> dict[str, Any]:
    if isinstance(span, _RelayedSpan):
        return dict(span.data)
    ctx = span.context
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "flags": int(ctx.trace_flags),
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else None,
        "parent_remote": bool(parent.is_remote) if parent is not None else False,
        "kind": int(span.kind.value),
        "start": int(span.start_time or 0),
        "end": int(span.end_time or 0),
        "attributes": _attrs_plain(span.attributes),
        "events": [[e.name, int(e.timestamp), _attrs_plain(e.attributes)] for e in span.events],
        "status": [int(span.status.status_code.value), span.status.description or ""],
        "resource": _attrs_plain(span.resource.attributes),
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else SCOPE,
    }


def _span_from_dict(d: Mapping[str, Any]) -> Any:
    from opentelemetry import trace as trace_api
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace.status import Status, StatusCode

    trace_id = int(d["trace_id"], 16)
    flags = trace_api.TraceFlags(int(d.get("flags", 1)))
    ctx = trace_api.SpanContext(trace_id, int(d["span_id"], 16), is_remote=True, trace_flags=flags)
    parent = None
    if d.get("parent_span_id"):
        parent = trace_api.SpanContext(trace_id, int(d["parent_span_id"], 16),
                                       is_remote=bool(d.get("parent_remote")), trace_flags=flags)
    code, desc = d.get("status") or (0, "")
    return ReadableSpan(
        name=str(d["name"]), context=ctx, parent=parent,
        resource=Resource.create(dict(d.get("resource") or {})),
        attributes={k: tuple(v) if isinstance(v, list) else v for k, v in (d.get("attributes") or {}).items()},
        events=[Event(str(n), {k: tuple(v) if isinstance(v, list) else v for k, v in (a or {}).items()}, int(ts))
                for n, ts, a in d.get("events") or ()],
        kind=trace_api.SpanKind(int(d.get("kind", 0))),
        status=Status(StatusCode(int(code)), desc or None) if int(code) == 2 else Status(StatusCode(int(code))),
        start_time=int(d["start"]), end_time=int(d["end"]),
        instrumentation_scope=InstrumentationScope(str(d.get("scope") or SCOPE)),
    )


# =====================================================================================
# Process-wide instance
# =====================================================================================
_DISABLED = Telemetry(TelemetryConfig(enabled=False))
_current: Telemetry = _DISABLED
_current_lock = threading.Lock()


def configure(config: TelemetryConfig | Mapping[str, Any] | None = None, *, relay: bool = False,
              attributes: Mapping[str, Any] | None = None) -> Telemetry:
    """Set up this process's telemetry (replacing and shutting down a previous one); returns it.

    Example:
        >>> from swarm_sona.core import telemetry
        >>> tel = telemetry.configure({"enabled": False})
        >>> telemetry.current() is tel
        True
    """
    global _current
    tel = Telemetry(config, relay=relay, attributes=attributes)
    with _current_lock:
        old, _current = _current, tel
    if old is not _DISABLED and old is not tel:
        old.shutdown()
    return tel


def current() -> Telemetry:
    """This process's telemetry (a disabled instance until :func:`configure` is called)."""
    return _current


def shutdown() -> None:
    """Shut down this process's telemetry and fall back to the disabled instance."""
    global _current
    with _current_lock:
        old, _current = _current, _DISABLED
    if old is not _DISABLED:
        old.shutdown()


@contextmanager
def using(tel: Telemetry) -> Iterator[Telemetry]:
    """Make an existing Telemetry this process's current one for a ``with`` block (not shut down after).

    Example:
        >>> from swarm_sona.core import telemetry
        >>> t = Telemetry(TelemetryConfig(enabled=False))
        >>> with telemetry.using(t):
        ...     telemetry.current() is t
        True
    """
    global _current
    with _current_lock:
        old, _current = _current, tel
    try:
        yield tel
    finally:
        with _current_lock:
            _current = old


@contextmanager
def configured(config: TelemetryConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[Telemetry]:
    """:func:`configure` for the duration of a ``with`` block, then :func:`shutdown`."""
    tel = configure(config, **kwargs)
    try:
        yield tel
    finally:
        if current() is tel:
            shutdown()
        else:
            tel.shutdown()
