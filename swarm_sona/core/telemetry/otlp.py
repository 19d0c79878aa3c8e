"""OTLP exporters, bounded and skipped while the collector is down.

Each export is bounded by ``otlp_timeout_s`` (retries included; the SDK would wait 10 s). Before
exporting, a TCP connect checks the collector; while it does not accept connections every
export fails at once (re-checked every few seconds) and one warning line per endpoint says so,
so a run without a collector neither waits nor floods the log.

Example:
    >>> otlp_address("http://collector:4318", grpc=False), otlp_address(None, grpc=True)
    (('collector', 4318), ('localhost', 4317))
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from swarm_sona.core.config import ConfigError
from swarm_sona.core.telemetry.config import TelemetryConfig

__all__ = ["otlp_exporter", "otlp_address", "guard_export", "OTLP_RECHECK_S"]

log = logging.getLogger(__name__)

def otlp_exporter(config: TelemetryConfig, signal: str, warned: set[str]) -> Any:
    """The OTLP span (``signal="trace"``) or metric exporter of a resolved ``config``, guarded by :func:`guard_export`.

    ``warned`` holds the endpoints already warned about (shared by one Telemetry's exporters).
    Raises ConfigError when the ``otlp`` extra is not installed.
    """
    grpc = config.otlp_protocol == "grpc"
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
        raise ConfigError(f"telemetry: the OTLP exporter ({config.otlp_protocol}) is not installed; "
                          f"pip install 'swarm-sona[otlp]' ({exc.name} missing)") from exc
    endpoint = config.otlp_endpoint
    if endpoint and not grpc and not endpoint.rstrip("/").endswith(("/v1/traces", "/v1/metrics")):
        endpoint = endpoint.rstrip("/") + ("/v1/traces" if signal == "trace" else "/v1/metrics")
    timeout = float(config.otlp_timeout_s)
    exporter = cls(endpoint=endpoint, timeout=timeout) if endpoint else cls(timeout=timeout)
    guard_export(exporter, signal, otlp_address(config.otlp_endpoint, grpc), warned, min(0.5, timeout))
    return exporter


def otlp_address(endpoint: str | None, grpc: bool) -> tuple[str, int]:
    """(host, port) an OTLP exporter connects to (its defaults: localhost:4317 grpc, :4318 http)."""
    raw = endpoint or ("localhost:4317" if grpc else "localhost:4318")
    parts = urlsplit(raw if "://" in raw else "http://" + raw)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else (4317 if grpc else 4318)
    return parts.hostname or "localhost", int(port)


OTLP_RECHECK_S = 5.0


def guard_export(exporter: Any, signal: str, address: tuple[str, int], warned: set[str], probe_s: float) -> None:
    """Make ``exporter.export`` return FAILURE at once while the collector does not accept connections.

    The SDK's exporters retry with backoff for their whole timeout on every batch (and again at
    shutdown), logging each attempt; with no collector a run would wait and log for tens of
    seconds. Before exporting, a TCP connect (``probe_s``) checks the collector, at most every
    few seconds while it is down; the first failure logs one warning line per endpoint.
    """
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
            state["down_until"] = now + OTLP_RECHECK_S
            if where not in warned:
                warned.add(where)
                log.warning("telemetry: OTLP collector at %s unreachable (%s): spans and metrics are dropped "
                            "until it answers", where, exc.strerror or exc)
            return failure
        return inner(*args, **kwargs)

    exporter.export = export

