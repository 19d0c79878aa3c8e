"""The metric instruments of swarm_sona: names, kinds, units, labels, and bounded label values.

:data:`METRICS` defines every instrument (its OpenTelemetry name, kind, unit and labels);
:func:`prometheus_name` says what the Prometheus exporter calls it. :class:`LabelBound` caps
the distinct values of each label (agent ids, model names): with 100 agents and a cap of 64,
the first 64 agents seen keep their own series and the rest share one ``other`` series, so a
large swarm cannot blow up the number of exported series. :func:`metric_points` turns a
metrics snapshot into plain points (the ``memory`` reader of the tests).

Example:
    >>> bound = LabelBound(2)
    >>> [bound("agent", a) for a in ("coder-1", "coder-2", "coder-3", "coder-1")]
    ['coder-1', 'coder-2', 'other', 'coder-1']
    >>> bound.overflow
    {'agent': 1}
    >>> prometheus_name("swarm_sona.tasks")
    'swarm_sona_tasks_total'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MetricDef", "METRICS", "OTHER", "LabelBound", "prometheus_name", "create_instruments", "metric_points"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
                     0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNIT_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


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
    MetricDef("swarm_sona.reward", "histogram", "1", "Reward per task", ("agent",), UNIT_BUCKETS),
    MetricDef("swarm_sona.cost", "counter", "{USD}", "Spend in USD", ("agent", "model")),
    MetricDef("swarm_sona.router.decisions", "counter", "{decision}", "Routing decisions per model",
              ("agent", "model")),
    MetricDef("swarm_sona.router.share", "gauge", "1", "Share of tasks routed to each model so far", ("model",)),
    MetricDef("swarm_sona.learn.duration", "histogram", "s", "Instant-loop learning step latency", ("agent",),
              LATENCY_BUCKETS_S),
    MetricDef("swarm_sona.retrieve.duration", "histogram", "s", "ReasoningBank retrieval latency", ("agent",),
              LATENCY_BUCKETS_S),
    MetricDef("swarm_sona.bank.size", "gauge", "{pattern}", "Patterns in the ReasoningBank"),
    MetricDef("swarm_sona.adapter.norm", "gauge", "1", "Frobenius norm of an agent's adapter", ("agent",)),
    MetricDef("swarm_sona.ewc.penalty", "gauge", "1", "EWC++ penalty at the last background step (0 until the agent has an anchor)", ("agent",)),
    MetricDef("swarm_sona.merge.lag", "gauge", "{version}", "Merged versions an agent is behind its coordinator",
              ("agent",)),
    MetricDef("swarm_sona.run.duration", "gauge", "s", "Seconds the swarm has streamed tasks (tasks / this = "
              "throughput; a batch job's dashboards need no rate())"),
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


def create_instruments(meter: Any) -> dict[str, Any]:
    """One OpenTelemetry instrument per entry of :data:`METRICS`, created on ``meter``: name -> instrument."""
    out: dict[str, Any] = {}
    for d in METRICS.values():
        if d.kind == "counter":
            inst = meter.create_counter(d.name, unit=d.unit, description=d.description)
        elif d.kind == "gauge":
            inst = meter.create_gauge(d.name, unit=d.unit, description=d.description)
        else:
            inst = meter.create_histogram(d.name, unit=d.unit, description=d.description,
                                          explicit_bucket_boundaries_advisory=list(d.buckets or ()))
        out[d.name] = inst
    return out


OTHER = "other"
"""The label value shared by every value past a label's cap."""


class LabelBound:
    """Caps the distinct values of each metric label at ``cap`` (0 = no cap).

    The first ``cap`` values of a label are kept as they are; every later new value is
    recorded as :data:`OTHER` (a gauge recorded under ``other`` holds the last value set). The
    first value past the cap of a label logs one warning. :attr:`overflow` counts, per label,
    the records that went to ``other``. Thread-safe; a value already seen costs one set lookup.

    Example:
        >>> bound = LabelBound(1)
        >>> bound("model", "small"), bound("model", "large"), bound("agent", "a")
        ('small', 'other', 'a')
        >>> LabelBound(0)("model", "large")
        'large'
    """

    def __init__(self, cap: int) -> None:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ValueError(f"LabelBound: cap must be an integer >= 0 (0 = no cap), got {cap!r}")
        self.cap = cap
        self.overflow: dict[str, int] = {}
        """Records folded into ``other``, by label name."""
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: str) -> str:
        """``value`` if it is one of the first ``cap`` values of ``label`` (or ``other`` itself), else ``other``."""
        if not self.cap or value == OTHER:
            return value
        seen = self._seen.get(label)
        if seen is not None and value in seen:
            return value
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) < self.cap:
                seen.add(value)
                return value
            first = label not in self.overflow
            self.overflow[label] = self.overflow.get(label, 0) + 1
        if first:
            log.warning("telemetry: more than %d distinct values of metric label %r; %r and later new ones are "
                        "recorded as %r (telemetry.maxLabelValues)", self.cap, label, value, OTHER)
        return OTHER

    def values(self, label: str) -> frozenset[str]:
        """The values of ``label`` kept so far (``other`` not included)."""
        return frozenset(self._seen.get(label, ()))


def metric_points(data: Any) -> dict[str, list[dict[str, Any]]]:
    """Plain points of an OpenTelemetry ``MetricsData`` snapshot: name -> points.

    A point is ``{"attributes": {...}, "value": v}`` for counters and gauges and
    ``{"attributes", "count", "sum", "min", "max", "bucket_counts", "bounds"}`` for histograms.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for rm in (data.resource_metrics if data else ()):
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                pts = out.setdefault(m.name, [])
                for p in m.data.data_points:
                    attrs: Mapping[str, Any] = dict(p.attributes or {})
                    if hasattr(p, "bucket_counts"):
                        pts.append({"attributes": attrs, "count": p.count, "sum": p.sum, "min": p.min,
                                    "max": p.max, "bucket_counts": list(p.bucket_counts),
                                    "bounds": list(p.explicit_bounds)})
                    else:
                        pts.append({"attributes": attrs, "value": p.value})
    return out
