"""Log record formats of the ``swarm-sona`` command: ``text`` (one readable line) or ``json``.

``json`` writes every record as one JSON object on one line (a newline inside a message is
escaped), for a log shipper to parse: ``time`` (UTC, ISO 8601 with milliseconds), ``level``,
``logger``, ``message`` and, when the record is logged inside an OpenTelemetry span (tracing
on: a task's ``execute`` span in an agent, a ``batch`` span in the driver), ``trace_id`` (32 hex
digits) and ``span_id`` (16 hex digits) of that span, so a log line can be joined with its
trace. A record with an exception adds ``exc_info`` (the formatted traceback); ``stack_info``
likewise. The format is chosen by ``swarm-sona --log-format json`` or
``SWARM_SONA_LOG_FORMAT=json`` (:func:`log_format`; the option wins).

Example:
    >>> import logging
    >>> rec = logging.LogRecord("swarm_sona.demo", logging.WARNING, __file__, 1, "bank at %s", ("/tmp/b",), None)
    >>> rec.created, rec.msecs = 0.0, 0.0
    >>> print(JsonLogFormatter().format(rec))
    {"time": "1970-01-01T00:00:00.000Z", "level": "WARNING", "logger": "swarm_sona.demo", "message": "bank at /tmp/b"}
    >>> log_format(environ={"SWARM_SONA_LOG_FORMAT": "JSON"}), log_format("text", environ={"SWARM_SONA_LOG_FORMAT": "json"})
    ('json', 'text')
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["LOG_FORMATS", "TEXT_FORMAT", "JsonLogFormatter", "log_format", "log_formatter", "span_ids"]

#: the formats :func:`log_format` accepts
LOG_FORMATS = ("text", "json")
#: the ``text`` format's line (a ``logging.Formatter`` format string)
TEXT_FORMAT = "swarm-sona: %(levelname)s %(name)s: %(message)s"


def span_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the current OpenTelemetry span, None outside a (recorded) span.

    Example:
        >>> span_ids() is None      # no span is current here
        True
    """
    from opentelemetry import trace  # here, not at the head: a text-format CLI never pays for the import

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docs for the keys).

    Example:
        >>> import logging
        >>> rec = logging.LogRecord("x", logging.INFO, __file__, 1, "two\\nlines", (), None)
        >>> line = JsonLogFormatter().format(rec)
        >>> "\\n" in line, json.loads(line)["message"]
        (False, 'two\\nlines')
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        ids = span_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def log_format(option: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The log format: ``option`` (``--log-format``) if given, else ``SWARM_SONA_LOG_FORMAT``, else
    ``text``; case-insensitive. A ValueError names a value that is neither ``text`` nor ``json``.

    Example:
        >>> log_format(), log_format("JSON")
        ('text', 'json')
        >>> log_format(environ={"SWARM_SONA_LOG_FORMAT": "yaml"})
        Traceback (most recent call last):
        ...
        ValueError: SWARM_SONA_LOG_FORMAT='yaml': not a log format (text or json)
    """
    env = os.environ if environ is None else environ
    if option is not None:
        raw, where = option, "--log-format"
    else:
        raw, where = (env.get("SWARM_SONA_LOG_FORMAT") or "").strip() or "text", "SWARM_SONA_LOG_FORMAT"
    fmt = raw.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"{where}={raw!r}: not a log format (text or json)")
    return fmt


def log_formatter(fmt: str) -> logging.Formatter:
    """The formatter of a format named by :func:`log_format`.

    Example:
        >>> type(log_formatter("json")).__name__, log_formatter("text")._fmt == TEXT_FORMAT
        ('JsonLogFormatter', True)
    """
    if fmt == "json":
        return JsonLogFormatter()
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format {fmt!r}: expected one of {', '.join(LOG_FORMATS)}")
