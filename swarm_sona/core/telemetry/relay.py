"""Span relay from actor processes to the driver: the buffering exporter and the msgpack-safe span encoding.

An actor's finished spans are appended to a bounded deque (:class:`RelayExporter`), drained
as plain dicts (:func:`span_to_dict`) into the results it sends back, and rebuilt by the
driver (:func:`span_from_dict`) for its own exporters: names, ids, parent, kind, times,
attributes, events, status, resource, scope and links survive the trip.

Example:
    >>> from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
    >>> tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    >>> with tel.span("task", attributes={"agent": "a"}):
    ...     pass
    >>> d = span_to_dict(tel.memory_spans()[0])
    >>> d["name"], d["attributes"], span_from_dict(d).context.span_id == int(d["span_id"], 16)
    ('task', {'agent': 'a'}, True)
    >>> tel.shutdown()
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from swarm_sona.core.telemetry.spans import SCOPE

__all__ = ["RelayExporter", "RelayedSpan", "span_to_dict", "span_from_dict"]


class RelayExporter:
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


class RelayedSpan:
    """A span dict received from another process and passed on unchanged by an intermediate hop."""

    __slots__ = ("data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data


def _attrs_plain(attrs: Any) -> dict[str, Any]:
    out = {}
    for k, v in (attrs or {}).items():
        out[str(k)] = list(v) if isinstance(v, tuple) else v
    return out


def _plain_attrs_in(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (attrs or {}).items()}


def span_to_dict(span: Any) -> dict[str, Any]:
    """A finished span (or a :class:`RelayedSpan` passed on) as a msgpack-safe dict."""
    if isinstance(span, RelayedSpan):
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
        "links": [[format(ln.context.trace_id, "032x"), format(ln.context.span_id, "016x"),
                   int(ln.context.trace_flags), _attrs_plain(ln.attributes)] for ln in span.links or ()],
    }


def span_from_dict(d: Mapping[str, Any]) -> Any:
    """The ReadableSpan encoded by :func:`span_to_dict` (KeyError, TypeError or ValueError when malformed)."""
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
    links = [trace_api.Link(trace_api.SpanContext(int(t, 16), int(s, 16), is_remote=True,
                                                  trace_flags=trace_api.TraceFlags(int(f))), _plain_attrs_in(a))
             for t, s, f, a in d.get("links") or ()]
    code, desc = d.get("status") or (0, "")
    return ReadableSpan(
        name=str(d["name"]), context=ctx, parent=parent,
        resource=Resource.create(dict(d.get("resource") or {})),
        attributes=_plain_attrs_in(d.get("attributes")),
        events=[Event(str(n), _plain_attrs_in(a), int(ts)) for n, ts, a in d.get("events") or ()], links=links,
        kind=trace_api.SpanKind(int(d.get("kind", 0))),
        status=Status(StatusCode(int(code)), desc or None) if int(code) == 2 else Status(StatusCode(int(code))),
        start_time=int(d["start"]), end_time=int(d["end"]),
        instrumentation_scope=InstrumentationScope(str(d.get("scope") or SCOPE)),
    )
