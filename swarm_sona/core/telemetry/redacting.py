"""Redaction of finished spans before any exporter or the actor relay sees them.

Example:
    >>> from opentelemetry.sdk.trace import ReadableSpan
    >>> s = redacted_span(ReadableSpan("task", attributes={"prompt": "mail bob@example.com"}),
    ...                   lambda t: t.replace("bob@example.com", "[EMAIL]"))
    >>> s.attributes["prompt"]
    'mail [EMAIL]'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["RedactingProcessor", "redacted_span"]


class RedactingProcessor:
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
