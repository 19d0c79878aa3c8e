"""The JSON log format: one object per line, with the current span's trace and span ids inside a span."""

from __future__ import annotations

import io
import json
import logging

import pytest

from swarm_sona.core.log_format import JsonLogFormatter, log_format, log_formatter
from swarm_sona.core.telemetry import Telemetry, TelemetryConfig


@pytest.fixture
def captured():
    """A logger writing through the JSON formatter into a buffer: (logger, buffer)."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("swarm_sona.test_log_format")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buf
    logger.removeHandler(handler)


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_outside_a_span_a_record_has_no_trace_ids(captured):
    logger, buf = captured
    logger.warning("bank at %s\nsecond line", "/tmp/b")
    [rec] = _lines(buf)
    assert set(rec) == {"time", "level", "logger", "message"}
    assert rec["level"] == "WARNING" and rec["logger"] == "swarm_sona.test_log_format"
    assert rec["message"] == "bank at /tmp/b\nsecond line" and rec["time"].endswith("Z")


def test_inside_a_span_a_record_carries_its_trace_and_span_ids(captured):
    logger, buf = captured
    tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    try:
        with tel.span("batch"):
            with tel.span("execute"):
                logger.warning("inside")
        logger.info("after")
        spans = {s.name: s for s in tel.memory_spans()}
    finally:
        tel.shutdown()
    inside, after = _lines(buf)
    ex = spans["execute"].context
    assert inside["trace_id"] == format(ex.trace_id, "032x") and len(inside["trace_id"]) == 32
    assert inside["span_id"] == format(ex.span_id, "016x") and len(inside["span_id"]) == 16
    assert "trace_id" not in after and "span_id" not in after


def test_an_exception_is_kept_in_the_object(captured):
    logger, buf = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed")
    [rec] = _lines(buf)
    assert rec["level"] == "ERROR" and "RuntimeError: boom" in rec["exc_info"]


def test_the_format_comes_from_the_option_then_the_environment():
    assert log_format(environ={}) == "text"
    assert log_format(environ={"SWARM_SONA_LOG_FORMAT": " Json "}) == "json"
    assert log_format("text", environ={"SWARM_SONA_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ValueError, match="--log-format='xml'"):
        log_format("xml")
    with pytest.raises(ValueError, match="log format 'xml'"):
        log_formatter("xml")
