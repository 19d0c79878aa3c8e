"""The process-wide Telemetry: :func:`configure`, :func:`current`, :func:`shutdown`, :func:`using`, :func:`configured`.

Until :func:`configure` is called, :func:`current` is a disabled instance (every call a no-op).

Example:
    >>> from swarm_sona.core import telemetry
    >>> with telemetry.configured({"enabled": False}) as tel:
    ...     telemetry.current() is tel
    True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from swarm_sona.core.telemetry.config import TelemetryConfig
from swarm_sona.core.telemetry.facade import Telemetry

__all__ = ["configure", "current", "shutdown", "using", "configured"]

_DISABLED = Telemetry(TelemetryConfig(enabled=False))
_current: Telemetry = _DISABLED
_current_lock = threading.Lock()


def configure(config: TelemetryConfig | Mapping[str, Any] | None = None, *, relay: bool = False,
              attributes: Mapping[str, Any] | None = None) -> Telemetry:
    """Set up this process's telemetry (replacing and shutting down a previous one); returns it.

    Example:
        >>> from swarm_sona.core import telemetry
        >>> tel = telemetry.configure({"enabled": False})
        >>> telemetry.current() is tel
        True
    """
    global _current
    tel = Telemetry(config, relay=relay, attributes=attributes)
    with _current_lock:
        old, _current = _current, tel
    if old is not _DISABLED and old is not tel:
        old.shutdown()
    return tel


def current() -> Telemetry:
    """This process's telemetry (a disabled instance until :func:`configure` is called)."""
    return _current


def shutdown() -> None:
    """Shut down this process's telemetry and fall back to the disabled instance."""
    global _current
    with _current_lock:
        old, _current = _current, _DISABLED
    if old is not _DISABLED:
        old.shutdown()


@contextmanager
def using(tel: Telemetry) -> Iterator[Telemetry]:
    """Make an existing Telemetry this process's current one for a ``with`` block (not shut down after).

    Example:
        >>> from swarm_sona.core import telemetry
        >>> t = Telemetry(TelemetryConfig(enabled=False))
        >>> with telemetry.using(t):
        ...     telemetry.current() is t
        True
    """
    global _current
    with _current_lock:
        old, _current = _current, tel
    try:
        yield tel
    finally:
        with _current_lock:
            _current = old


@contextmanager
def configured(config: TelemetryConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> Iterator[Telemetry]:
    """:func:`configure` for the duration of a ``with`` block, then :func:`shutdown`."""
    tel = configure(config, **kwargs)
    try:
        yield tel
    finally:
        if current() is tel:
            shutdown()
        else:
            tel.shutdown()
