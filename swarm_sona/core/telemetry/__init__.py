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

The package, one concept a module: :mod:`.config` (TelemetryConfig), :mod:`.instruments`
(metric names, units, labels and the cap on distinct label values), :mod:`.spans` (span
names, the no-op fast path, secret-free attributes, task traces), :mod:`.tracing` (the tracer
provider), :mod:`.redacting` (span redaction), :mod:`.relay` (actor span relay), :mod:`.otlp`
(bounded OTLP exporters), :mod:`.prometheus` (the ``/metrics`` endpoint), :mod:`.pushgateway`
(the pusher), :mod:`.facade` (:class:`Telemetry`) and :mod:`.process` (the process-wide instance).

Bounded labels: metric label values (agent ids, model names) are capped at
``max_label_values`` (64) distinct values per label; later values are recorded as ``other``,
so a swarm of hundreds of agents exports a bounded number of series (0 = no cap).

One trace per task: :meth:`Telemetry.begin_task` starts a task's span as the root of its own
trace, linked to its batch span in the run's trace (``task_traces``, on by default).

Telemetry off is a fast path: :meth:`Telemetry.span` returns a shared no-op context manager
and every ``record_*`` method returns after one attribute test.

Trace context crosses process boundaries inside the actors' msgpack envelopes as a W3C
``traceparent`` carrier (:meth:`Telemetry.inject` / the ``parent=`` argument of
:meth:`Telemetry.span`). Actor processes run in *relay* mode: their finished spans are
buffered, drained into the results they send back (:meth:`Telemetry.relay_drain`, plain
msgpack-safe dicts) and exported by the driver (:meth:`Telemetry.relay_ingest`) through its
own exporters, so a trace spans driver -> agent -> coordinator whatever the exporter (a task span
started with :meth:`Telemetry.begin_task` roots its own trace, linked to the run's).

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

from swarm_sona.core.telemetry.config import METRIC_EXPORTERS, TRACE_EXPORTERS, TelemetryConfig
from swarm_sona.core.telemetry.facade import Telemetry
from swarm_sona.core.telemetry.instruments import METRICS, OTHER, LabelBound, MetricDef, prometheus_name
from swarm_sona.core.telemetry.process import configure, configured, current, shutdown, using
from swarm_sona.core.telemetry.redacting import redacted_span
from swarm_sona.core.telemetry.spans import RUN_TRACE_ATTR, SPAN_NAMES, TRACE_KEY, safe_attributes

__all__ = [
    "TelemetryConfig",
    "Telemetry",
    "SPAN_NAMES",
    "METRICS",
    "MetricDef",
    "TRACE_KEY",
    "RUN_TRACE_ATTR",
    "OTHER",
    "LabelBound",
    "TRACE_EXPORTERS",
    "METRIC_EXPORTERS",
    "configure",
    "configured",
    "using",
    "current",
    "shutdown",
    "prometheus_name",
    "safe_attributes",
    "redacted_span",
]
