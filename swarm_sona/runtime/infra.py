"""Infrastructure failures that stop a run: an endpoint failing (auth, rate limit, server...),
not the model, ``infra_error_limit`` results in a row.

Example:
    >>> from swarm_sona.runtime.infra import InfraGuard
    >>> guard = InfraGuard(limit=2)
    >>> guard.see({"error_kind": "auth", "error": "HTTP 401"}) is None
    True
    >>> guard.see({"error_kind": "auth", "error": "HTTP 401"}).message
    '2 calls in a row failed for an infrastructure reason (auth): HTTP 401'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarm_sona.executors.openai_chat import ERROR_KINDS

__all__ = ["INFRA_ERROR_KINDS", "InfraStop", "InfraGuard"]

log = logging.getLogger(__name__)
#: ``error_kind`` values of an endpoint's failure (not the model's): they stop a run when repeated
INFRA_ERROR_KINDS = frozenset(ERROR_KINDS)


@dataclass(frozen=True)
class InfraStop:
    """Why a run stopped early: ``count`` results in a row failed for an infrastructure reason.

    Example:
        >>> s = InfraStop(kind="auth", count=3, error="http://127.0.0.1:9/v1/chat/completions: HTTP 401: bad key")
        >>> s.message
        '3 calls in a row failed for an infrastructure reason (auth): http://127.0.0.1:9/v1/chat/completions: HTTP 401: bad key'
    """

    kind: str
    count: int
    error: str

    @property
    def message(self) -> str:
        """One line naming the cause (what ``swarm-sona run`` prints)."""
        return f"{self.count} calls in a row failed for an infrastructure reason ({self.kind}): {self.error}"


class InfraGuard:
    """Counts infrastructure failures in a row over a run's results; after ``limit`` of them
    (0 = never) :attr:`stop` names the cause. A result without ``error_kind`` ends the streak;
    a task failure of another kind (``execute``, ``hook``...) neither extends nor ends it.

    Example:
        >>> g = InfraGuard(limit=0)
        >>> [g.see({"error_kind": "server"}) for _ in range(5)], g.stop
        ([None, None, None, None, None], None)
    """

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"InfraGuard: limit must be an integer >= 0 (0 = never stop), got {limit!r}")
        self.limit = limit
        self.streak = 0
        self.stop: InfraStop | None = None

    def see(self, result: Mapping[str, Any]) -> InfraStop | None:
        """Account one result; returns the :class:`InfraStop` when this result triggers it."""
        kind = result.get("error_kind")
        if kind in INFRA_ERROR_KINDS:
            self.streak += 1
            if self.limit and self.streak >= self.limit and self.stop is None:
                self.stop = InfraStop(kind=str(kind), count=self.streak,
                                      error=str(result.get("error") or kind)[:300])
                log.error("stopping the run: %s", self.stop.message)
                return self.stop
        elif kind is None:
            self.streak = 0
        return None
