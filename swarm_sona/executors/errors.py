"""How a chat call fails: the error kinds, the exceptions, and the classification of an HTTP answer.

Infrastructure failures are not task failures: a call that fails for good becomes an
:class:`~swarm_sona.core.executor.Outcome` with ``error_kind`` set to one of
:data:`ERROR_KINDS` (``auth`` 401/403, ``rate_limit`` 429 after its retries, ``server`` 5xx,
``timeout``, ``network``, ``request`` other 4xx, ``response`` an unusable body), or, with
``on_error="raise"``, an :class:`ExecutorError` carrying the kind. :func:`classify_response`
turns one HTTP answer into its parsed JSON or a :class:`CallError` (with ``Retry-After`` and the
status); :func:`classify_transport` does the same for an exception of the transport.

Example:
    >>> from swarm_sona.executors.errors import classify_response
    >>> err = classify_response(429, {"retry-after": "2"}, b"slow down", "http://x/v1/chat/completions")
    >>> err.kind, err.retry_after, err.status
    ('rate_limit', 2.0, 429)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ERROR_KINDS", "INFRA_KINDS", "ExecutorError", "CallError", "classify_response", "classify_transport"]

#: the values of ``Outcome.error_kind`` the chat executor returns
ERROR_KINDS = ("auth", "rate_limit", "server", "timeout", "network", "request", "response")
#: kinds that say the model's service is unwell (what a circuit breaker counts), not the request
INFRA_KINDS = ("server", "timeout", "network")

Scrub = Callable[[str, "int | None"], str]


class ExecutorError(RuntimeError):
    """The endpoint failed for good (after retries) or returned something unusable; ``kind`` says how.

    Example:
        >>> ExecutorError("HTTP 401", kind="auth").kind
        'auth'
    """

    def __init__(self, message: str, *, kind: str = "response") -> None:
        super().__init__(message)
        self.kind = kind


class CallError(Exception):
    """One attempt's failure: its kind, scrubbed message, Retry-After (seconds) and HTTP status.

    Example:
        >>> CallError("timeout", "read timed out").retry_after is None
        True
    """

    def __init__(self, kind: str, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.retry_after, self.status = kind, retry_after, status


def _no_scrub(text: str, limit: int | None) -> str:
    return text if limit is None else text[:limit]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ra = headers.get("retry-after")
    try:
        value = float(ra) if ra is not None else None
    except ValueError:
        return None
    if value is not None and not (math.isfinite(value) and value >= 0):
        return None
    return value


def classify_response(status: int, headers: Mapping[str, str], content: bytes, endpoint: str, *,
                      scrub: Scrub = _no_scrub, max_error_chars: int = 200) -> dict[str, Any] | CallError:
    """The parsed JSON object of a 2xx answer, else the classified error (retryable or not).

    The body of an error is scrubbed (``scrub(text, limit)``) before it is cut to
    ``max_error_chars`` (a cut must not leave half a key), whitespace folded.

    Example:
        >>> classify_response(200, {}, b'{"choices": []}', "http://x")
        {'choices': []}
        >>> classify_response(503, {}, b"overloaded", "http://x").kind
        'server'
    """
    if 200 <= status < 300:
        try:
            parsed = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return CallError("response", scrub(f"{endpoint}: response is not JSON: {exc}", max_error_chars + 120))
        if not isinstance(parsed, dict):
            return CallError("response", scrub(f"{endpoint}: response is not a JSON object", max_error_chars + 120))
        return parsed
    detail = scrub(" ".join(content[:4096].decode("utf-8", "replace").split()), max_error_chars)
    kind = ("auth" if status in (401, 403) else "rate_limit" if status == 429 else "timeout" if status == 408
            else "server" if status >= 500 else "request")
    return CallError(kind, f"{endpoint}: HTTP {status}: {detail}".strip(), _retry_after(headers), status)


def classify_transport(exc: BaseException, endpoint: str, *, scrub: Scrub = _no_scrub,
                       max_error_chars: int = 200) -> CallError:
    """A transport exception (httpx's, ``OSError``, ``TimeoutError``) as a ``timeout`` or ``network`` error.

    Example:
        >>> classify_transport(TimeoutError(), "http://x").kind
        'timeout'
    """
    try:
        import httpx
        timeouts: tuple[type[BaseException], ...] = (httpx.TimeoutException, TimeoutError)
    except ModuleNotFoundError:   # optional dependency: only the stdlib's timeout then
        timeouts = (TimeoutError,)
    kind = "timeout" if isinstance(exc, timeouts) else "network"
    reason = str(exc) or type(exc).__name__
    return CallError(kind, scrub(f"{endpoint}: {type(exc).__name__}: {reason}", max_error_chars + 120))
