"""The Prometheus side of one Telemetry: the reader with its registry, and the optional ``/metrics`` endpoint.

The registry is shared by the pull endpoint (long-running jobs) and the Pushgateway pusher
(batch jobs, :mod:`swarm_sona.core.telemetry.pushgateway`). Needs the ``prometheus`` extra.

Example:
    >>> prom = PrometheusExport("Prometheus exporter")
    >>> url = prom.serve("127.0.0.1", 0)      # 0 = any free port
    >>> url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    True
    >>> prom.close()
"""

from __future__ import annotations

from typing import Any

from swarm_sona.core.config import ConfigError

__all__ = ["PrometheusExport"]


class PrometheusExport:
    """A ``PrometheusMetricReader`` on its own registry (never the process-global one).

    ``what`` names the feature that needs it in the error raised when the extra is missing.
    """

    def __init__(self, what: str = "Prometheus exporter") -> None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            raise ConfigError(f"telemetry: the {what} needs the Prometheus exporter; "
                              "pip install 'swarm-sona[prometheus]'") from exc
        self.registry: Any = CollectorRegistry(auto_describe=True)
        self.reader: Any = PrometheusMetricReader(registry=self.registry)
        self.url: str | None = None
        """The endpoint's address once :meth:`serve` runs (``http://host:port/metrics``)."""
        self._server: Any = None
        self._thread: Any = None

    def serve(self, host: str, port: int) -> str:
        """Serve ``/metrics`` on ``host:port`` (0 = a free port) in a daemon thread; returns its URL.

        Raises ConfigError naming the address when it cannot listen there.
        """
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            self.reader.shutdown()
            raise ConfigError(f"telemetry.prometheus_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        bound = self._server.server_address
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        self.url = f"http://{shown}:{bound[1]}/metrics"
        return self.url

    def close(self) -> None:
        """Stop the endpoint (if any). Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
