"""Spans: their names, the no-op fast path, secret-free attributes, task traces.

:data:`SPAN_NAMES` lists the spans swarm_sona creates; :data:`TRACE_KEY` is where an actor
envelope carries the W3C trace context; :func:`safe_attributes` keeps secrets out of attributes;
:data:`NOOP_SPAN` is what every span call returns with tracing off. :func:`start_linked_root` starts a span that roots a new
trace and links to another span: each task is its own trace (a few spans) instead of a
1,000-span run, and still leads back to its batch and run.

Example:
    >>> from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
    >>> tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    >>> with tel.span("batch") as batch:
    ...     carrier = tel.inject()
    >>> tel.begin_task(parent=carrier, attributes={"task.id": "t1"}).end()
    >>> task = [s for s in tel.memory_spans() if s.name == "task"][0]
    >>> task.parent is None, task.links[0].context.span_id == batch.get_span_context().span_id
    (True, True)
    >>> task.context.trace_id != batch.get_span_context().trace_id
    True
    >>> tel.shutdown()
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from swarm_sona.core.config import Secret

__all__ = ["SCOPE", "TRACE_KEY", "SPAN_NAMES", "RUN_TRACE_ATTR", "NoopSpan", "NOOP_SPAN", "safe_attributes",
           "start_linked_root"]

SCOPE = "swarm_sona"
"""Instrumentation scope of every span and instrument."""
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

RUN_TRACE_ATTR = "swarm_sona.run.trace_id"
"""Attribute of a task's root span: the trace id (32 hex digits) of the run it belongs to."""


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



class NoopSpan:
    """What :meth:`Telemetry.span` yields when tracing is off: every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> NoopSpan:
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


NOOP_SPAN = NoopSpan()


def start_linked_root(tracer: Any, propagator: Any, name: str, link: Mapping[str, str] | None,
                      attributes: Mapping[str, Any] | None) -> Any:
    """Start span ``name`` as the root of a new trace, linked to the span of the W3C carrier ``link``.

    The link (attribute ``swarm_sona.link = "parent"``) points at the carrier's span and
    :data:`RUN_TRACE_ATTR` holds its trace id, so a trace UI leads from the task back to its
    batch and run. Without a valid carrier the span is a plain new root. The span is not made
    current; end it with ``span.end()``. The new trace is sampled on its own (``sample_ratio``).
    """
    from opentelemetry import context as context_api
    from opentelemetry import trace as trace_api

    attrs = dict(attributes or {})
    links = []
    if link:
        linked = trace_api.get_current_span(propagator.extract(link)).get_span_context()
        if linked.is_valid:
            links.append(trace_api.Link(linked, {"swarm_sona.link": "parent"}))
            attrs[RUN_TRACE_ATTR] = format(linked.trace_id, "032x")
    return tracer.start_span(name, context=context_api.Context(), attributes=attrs, links=links)
