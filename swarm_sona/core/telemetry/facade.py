"""The :class:`Telemetry` facade: one process's spans, metrics, propagation and span relay.

It composes the parts of this package: the tracer provider (:mod:`.tracing`), the metric
instruments with bounded labels (:mod:`.instruments`), OTLP (:mod:`.otlp`), the Prometheus
endpoint (:mod:`.prometheus`), the Pushgateway pusher (:mod:`.pushgateway`) and the relay
encoding of actor spans (:mod:`.relay`).

Example:
    >>> tel = Telemetry(TelemetryConfig(metrics_exporter="memory", max_label_values=2))
    >>> for agent in ("a", "b", "c", "d"):
    ...     tel.record_learning(1e-5, agent=agent)
    >>> sorted(p["attributes"]["agent"] for p in tel.memory_metrics()["swarm_sona.learn.duration"])
    ['a', 'b', 'other']
    >>> tel.shutdown()
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from swarm_sona.core.config import ConfigError
from swarm_sona.core.telemetry.config import TelemetryConfig
from swarm_sona.core.telemetry.instruments import LabelBound, create_instruments, metric_points
from swarm_sona.core.telemetry.otlp import otlp_exporter
from swarm_sona.core.telemetry.prometheus import PrometheusExport
from swarm_sona.core.telemetry.pushgateway import Pushgateway, default_instance
from swarm_sona.core.telemetry.relay import RelayedSpan, span_from_dict, span_to_dict
from swarm_sona.core.telemetry.spans import NOOP_SPAN, SCOPE, TRACE_KEY, safe_attributes, start_linked_root
from swarm_sona.core.telemetry.tracing import tracer_provider

__all__ = ["Telemetry"]

log = logging.getLogger(__name__)


class Telemetry:
    """The telemetry of one process: spans, metrics, propagation and (in actors) span relay.

    ``relay=True`` (actor processes) buffers finished spans for :meth:`relay_drain` instead of
    exporting them, and records no metrics: the driver records them from the results and
    stats it receives (so one Prometheus endpoint serves the whole run). ``attributes`` become
    resource attributes (e.g. role, agent id). Metric label values (agent ids, model names) are
    capped at ``max_label_values`` distinct values per label, later ones share ``other``.

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
        self.labels = LabelBound(self.config.max_label_values)
        """The cap on distinct metric label values (``labels.overflow``: records folded into ``other``)."""
        self.prometheus_url: str | None = None
        self.push_url: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._span_processors: tuple[Any, ...] = ()
        self._memory_spans: Any = None
        self._memory_metrics: Any = None
        self._relay_buffer: deque[Any] | None = None
        self._prom: PrometheusExport | None = None
        self._pusher: Pushgateway | None = None
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

    @property
    def pushes(self) -> int:
        """Successful pushes to the Pushgateway so far."""
        return self._pusher.pushes if self._pusher is not None else 0

    # ---- set-up ---------------------------------------------------------------------
    def _setup_tracing(self) -> None:
        if self.relay:
            self._relay_buffer = deque(maxlen=max(1, self.config.relay_max_spans))
        built = tracer_provider(self.config, self._resource, relay_buffer=self._relay_buffer,
                                otlp_warned=self._otlp_warned)
        self._span_processors = built.processors
        self._memory_spans = built.memory
        self._tracer_provider = built.provider
        self._tracer = built.provider.get_tracer(SCOPE)

    def _setup_metrics(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            InMemoryMetricReader,
            PeriodicExportingMetricReader,
        )

        cfg = self.config
        readers: list[Any] = []
        interval_ms = float(cfg.metric_interval_s or 10.0) * 1000.0
        for name in cfg.metrics_exporter or ():
            if name == "memory":
                self._memory_metrics = InMemoryMetricReader()
                readers.append(self._memory_metrics)
            elif name == "console":
                readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(),
                                                             export_interval_millis=interval_ms))
            elif name == "otlp":
                readers.append(PeriodicExportingMetricReader(otlp_exporter(cfg, "metric", self._otlp_warned),
                                                             export_interval_millis=interval_ms))
            elif name == "prometheus":
                self._prom = PrometheusExport("Prometheus exporter")
                self.prometheus_url = self._prom.serve(cfg.prometheus_host or "127.0.0.1", int(cfg.prometheus_port or 0))
                readers.append(self._prom.reader)
        if cfg.push_url and self._prom is None:
            self._prom = PrometheusExport("Pushgateway push")
            readers.append(self._prom.reader)
        self._meter_provider = MeterProvider(metric_readers=readers, resource=self._resource)
        self._instruments = create_instruments(self._meter_provider.get_meter(SCOPE))
        if cfg.push_url and self._prom is not None:
            self.push_url = cfg.push_url
            self._pusher = Pushgateway(cfg.push_url, self._prom.registry, interval_s=cfg.push_interval_s,
                                       job=cfg.push_job or cfg.service_name or "swarm-sona",
                                       instance=cfg.push_instance or default_instance())
            self._pusher.start()

    # ---- Pushgateway ------------------------------------------------------------------
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
        return self._pusher.push(timeout_s) if self._pusher is not None else False

    # ---- spans ----------------------------------------------------------------------
    def span(self, name: str, *, attributes: Mapping[str, Any] | None = None,
             parent: Mapping[str, str] | None = None) -> Any:
        """A context manager around a span named ``name`` (one of SPAN_NAMES by convention).

        ``parent`` is a W3C carrier from :meth:`inject` (e.g. taken out of an envelope); without
        it the span is a child of the current span. With tracing off: a shared no-op object.
        """
        if not self.tracing:
            return NOOP_SPAN
        ctx = self._propagator.extract(parent) if parent else None
        return self._tracer.start_as_current_span(name, context=ctx, attributes=safe_attributes(attributes))

    def begin(self, name: str, *, attributes: Mapping[str, Any] | None = None,
              parent: Mapping[str, str] | None = None) -> Any:
        """Start a span that is ended explicitly (``span.end()``), e.g. across an asynchronous call.

        It is a child of ``parent`` (a carrier) or of the current span, and does not become current.
        With tracing off: the shared no-op span.
        """
        if not self.tracing:
            return NOOP_SPAN
        ctx = self._propagator.extract(parent) if parent else None
        return self._tracer.start_span(name, context=ctx, attributes=safe_attributes(attributes))

    def begin_task(self, *, parent: Mapping[str, str] | None = None,
                   attributes: Mapping[str, Any] | None = None) -> Any:
        """Start the ``task`` span of one task (ended explicitly, like :meth:`begin`).

        With ``task_traces`` on (the default) it roots a trace of its own, linked to the span of
        the carrier ``parent`` (the batch, in the run's trace) and carrying the run's trace id
        (``swarm_sona.run.trace_id``): a run of N tasks is N small traces plus the run's. With
        ``task_traces`` off it is a child of ``parent``, as :meth:`begin` makes it. Its children
        (route, execute, learn) take its :meth:`inject` carrier as their parent.

        Example:
            >>> tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
            >>> with tel.span("batch"):
            ...     carrier = tel.inject()
            >>> for i in range(3):
            ...     tel.begin_task(parent=carrier, attributes={"task.id": str(i)}).end()
            >>> len({s.context.trace_id for s in tel.memory_spans() if s.name == "task"})
            3
            >>> tel.shutdown()
        """
        if not self.tracing:
            return NOOP_SPAN
        if not self.config.task_traces:
            return self.begin("task", attributes=attributes, parent=parent)
        return start_linked_root(self._tracer, self._propagator, "task", parent, safe_attributes(attributes))

    def inject(self, carrier: dict[str, str] | None = None, *, span: Any = None) -> dict[str, str]:
        """W3C trace context (``traceparent``) of ``span`` (default: the current span) as a dict;
        ``{}`` when tracing is off."""
        out: dict[str, str] = {} if carrier is None else carrier
        if self.tracing:
            if span is not None and span is not NOOP_SPAN:
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
            out.append(span_to_dict(buf.popleft()))
        return out

    def relay_ingest(self, spans: Sequence[Mapping[str, Any]]) -> int:
        """Export spans relayed from other processes through this process's span exporters.

        Returns how many were accepted; malformed entries are skipped (and logged), never raised.
        """
        if not self.tracing or not spans or self.relay:
            if self.relay and self._relay_buffer is not None:   # an intermediate hop: pass them on
                for d in spans:
                    self._relay_buffer.append(RelayedSpan(d))
                return len(spans)
            return 0
        n = 0
        for d in spans:
            try:
                span = span_from_dict(d)
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
        ins, bound = self._instruments, self.labels
        agent, model = bound("agent", agent), bound("model", model)
        ins["swarm_sona.tasks"].add(1, {"agent": agent, "model": model, "success": bool(success)})
        ins["swarm_sona.reward"].record(float(reward), {"agent": agent})
        ins["swarm_sona.cost"].add(float(cost_usd), {"agent": agent, "model": model})
        ins["swarm_sona.router.decisions"].add(1, {"agent": agent, "model": model})

    def record_learning(self, seconds: float, *, agent: str) -> None:
        """Latency of one instant-loop learning step."""
        if self.metering:
            self._instruments["swarm_sona.learn.duration"].record(float(seconds), {"agent": self.labels("agent", agent)})

    def record_retrieval(self, seconds: float, *, agent: str) -> None:
        """Latency of one ReasoningBank retrieval."""
        if self.metering:
            self._instruments["swarm_sona.retrieve.duration"].record(float(seconds),
                                                                     {"agent": self.labels("agent", agent)})

    def set_merge_lag(self, versions: int, *, agent: str) -> None:
        """How many merged versions an agent's installed adapter is behind its coordinator's."""
        if self.metering:
            self._instruments["swarm_sona.merge.lag"].set(int(versions), {"agent": self.labels("agent", agent)})

    def set_success_rate(self, rate: float) -> None:
        """Success rate over the run so far."""
        if self.metering:
            self._instruments["swarm_sona.success_rate"].set(float(rate))

    def set_routing_share(self, shares: Mapping[str, float]) -> None:
        """Share of tasks routed to each model so far (models past the label cap add up under ``other``)."""
        if self.metering:
            summed: dict[str, float] = {}
            for model, share in shares.items():
                key = self.labels("model", model)
                summed[key] = summed.get(key, 0.0) + float(share)
            g = self._instruments["swarm_sona.router.share"]
            for model, share in summed.items():
                g.set(share, {"model": model})

    def set_bank_size(self, patterns: int) -> None:
        """Patterns in the ReasoningBank."""
        if self.metering:
            self._instruments["swarm_sona.bank.size"].set(int(patterns))

    def set_run_duration(self, seconds: float) -> None:
        """Seconds the swarm has streamed tasks so far (``swarm_sona_run_duration_seconds``)."""
        if self.metering:
            self._instruments["swarm_sona.run.duration"].set(float(seconds))

    def set_adapter_norm(self, norm: float, *, agent: str) -> None:
        """Norm of an agent's adapter (drift from the shared base)."""
        if self.metering:
            self._instruments["swarm_sona.adapter.norm"].set(float(norm), {"agent": self.labels("agent", agent)})

    def set_ewc_penalty(self, penalty: float, *, agent: str) -> None:
        """EWC++ penalty at the last consolidation."""
        if self.metering:
            self._instruments["swarm_sona.ewc.penalty"].set(float(penalty), {"agent": self.labels("agent", agent)})

    # ---- test access ----------------------------------------------------------------
    def memory_spans(self) -> list[Any]:
        """Finished spans held by the ``memory`` trace exporter (ReadableSpan objects)."""
        if self._memory_spans is None:
            raise ConfigError("telemetry: the 'memory' trace exporter is not configured")
        return list(self._memory_spans.get_finished_spans())

    def memory_metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Current values of the ``memory`` metric reader: name -> points (see
        :func:`~swarm_sona.core.telemetry.instruments.metric_points`)."""
        if self._memory_metrics is None:
            raise ConfigError("telemetry: the 'memory' metric exporter is not configured")
        return metric_points(self._memory_metrics.get_metrics_data())

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
        if self._pusher is not None:
            self._pusher.stop()   # the last values of a batch job stay on the Pushgateway for Prometheus to scrape
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            try:
                self._meter_provider.shutdown()
            except Exception as exc:
                log.warning("telemetry: metric shutdown failed: %s", exc)
        if self._prom is not None:
            self._prom.close()
        self.tracing = self.metering = self.enabled = False

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        c = self.config
        return (f"Telemetry(traces={list(c.traces_exporter or ())}, metrics={list(c.metrics_exporter or ())}, "
                f"relay={self.relay})")
