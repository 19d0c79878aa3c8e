"""The tracer provider of one :class:`~swarm_sona.core.telemetry.Telemetry`: exporters, relay, redaction.

Example:
    >>> from swarm_sona.core.telemetry import TelemetryConfig
    >>> t = tracer_provider(TelemetryConfig(traces_exporter="memory").resolve({}), None)
    >>> len(t.processors), t.memory is not None
    (1, True)
    >>> t.provider.shutdown()
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from swarm_sona.core.redaction import resolve_redactor
from swarm_sona.core.telemetry.config import TelemetryConfig
from swarm_sona.core.telemetry.otlp import otlp_exporter
from swarm_sona.core.telemetry.redacting import RedactingProcessor
from swarm_sona.core.telemetry.relay import RelayExporter

__all__ = ["Tracing", "tracer_provider"]


@dataclass(frozen=True)
class Tracing:
    """What :func:`tracer_provider` built: the provider, its span processors, the memory exporter (or None)."""

    provider: Any
    processors: tuple[Any, ...]
    memory: Any = None


def tracer_provider(config: TelemetryConfig, resource: Any, *, relay_buffer: deque[Any] | None = None,
                    otlp_warned: set[str] | None = None) -> Tracing:
    """The SDK tracer provider of a resolved ``config``, with its processors (a :class:`Tracing`).

    With ``relay_buffer`` (actor processes) finished spans are appended to it instead of being
    exported; otherwise one processor per configured exporter (memory, console, otlp). Every
    processor is wrapped by the configured redactor. ``otlp_warned``: see
    :func:`~swarm_sona.core.telemetry.otlp.otlp_exporter`.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)))
    processors: list[Any] = []
    memory: Any = None
    if relay_buffer is not None:
        relay: Any = RelayExporter(relay_buffer)  # duck-typed SpanExporter (no SDK import at module load)
        processors.append(SimpleSpanProcessor(relay))
    else:
        for name in config.traces_exporter or ():
            if name == "memory":
                from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

                memory = InMemorySpanExporter()
                processors.append(SimpleSpanProcessor(memory))
            elif name == "console":
                from opentelemetry.sdk.trace.export import ConsoleSpanExporter

                processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
            elif name == "otlp":
                processors.append(BatchSpanProcessor(otlp_exporter(config, "trace", set() if otlp_warned is None else otlp_warned)))
    redactor = resolve_redactor(config.redact, "telemetry.redact")
    if redactor is not None:
        processors = [RedactingProcessor(p, redactor) for p in processors]
    for p in processors:
        provider.add_span_processor(p)
    return Tracing(provider, tuple(processors), memory)
