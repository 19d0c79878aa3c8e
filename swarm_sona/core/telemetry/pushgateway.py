"""Pushing metrics to a Prometheus Pushgateway: periodically during a run and once at its end (batch jobs).

A failed push never raises: the first failure of a series logs one warning line, the next
ones are logged at debug level until a push succeeds again.

Example:
    >>> from swarm_sona.core.telemetry.prometheus import PrometheusExport
    >>> gw = Pushgateway("http://127.0.0.1:1", PrometheusExport("Pushgateway push").registry,
    ...                  interval_s=3600, job="swarm-sona", instance="laptop")
    >>> gw.push(timeout_s=0.5), gw.pushes      # nothing listens on port 1
    (False, 0)
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

__all__ = ["Pushgateway", "default_instance"]

log = logging.getLogger(__name__)


def default_instance() -> str:
    """The ``instance`` label of a pushed group when none is configured: this host's name."""
    return socket.gethostname() or "localhost"


class Pushgateway:
    """Pushes the metrics of ``registry`` to ``url`` under ``{job, instance}``, replacing that group.

    :meth:`start` pushes every ``interval_s`` in a daemon thread; :meth:`stop` ends the thread
    and pushes the last values (they stay on the Pushgateway for Prometheus to scrape).
    """

    def __init__(self, url: str, registry: Any, *, interval_s: float, job: str, instance: str) -> None:
        if not interval_s > 0:
            raise ValueError(f"Pushgateway: interval_s must be > 0, got {interval_s!r}")
        self.url = url
        self.registry = registry
        self.interval_s = float(interval_s)
        self.job = job
        self.instance = instance
        self.pushes = 0
        """Successful pushes so far."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failing = False

    def start(self) -> None:
        """Start pushing every ``interval_s`` seconds (a daemon thread)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="swarm-sona-metrics-push", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.push()

    def stop(self) -> None:
        """Stop the periodic pushes and push once more (the final values of the run)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            self.push()

    def push(self, timeout_s: float = 2.0) -> bool:
        """Push the current values now; returns whether it succeeded (never raises)."""
        from prometheus_client import push_to_gateway

        with self._lock:
            try:
                push_to_gateway(self.url, job=self.job, registry=self.registry,
                                grouping_key={"instance": self.instance}, timeout=timeout_s)
            except Exception as exc:   # unreachable, refused, an HTTP error: the job goes on
                reason = getattr(exc, "reason", None) or exc
                if not self._failing:
                    log.warning("telemetry: cannot push metrics to the Pushgateway at %s: %s (retrying every %g s)",
                                self.url, reason, self.interval_s)
                else:
                    log.debug("telemetry: push to %s failed again: %s", self.url, reason)
                self._failing = True
                return False
            if self._failing:
                log.info("telemetry: pushing metrics to %s again", self.url)
            self._failing = False
            self.pushes += 1
            return True
