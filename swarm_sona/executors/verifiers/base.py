"""What every verifier shares: the verdict, the protocol, the error, the expected answer.

Example:
    >>> from swarm_sona.executors.verifiers.base import VerifierResult
    >>> VerifierResult(1.0, True).error_kind is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from swarm_sona.core.executor import Task

__all__ = ["VerifierError", "VerifierResult", "Verifier", "expected_value"]


class VerifierError(ValueError):
    """A verifier was configured wrongly or the task lacks what it needs (e.g. no expected answer)."""


@dataclass(frozen=True)
class VerifierResult:
    """A verdict: reward in [0, 1], success, what was extracted, a short detail, an infra error kind."""

    reward: float
    success: bool
    extracted: str | None = None
    detail: str = ""
    error_kind: str | None = None


class Verifier(Protocol):
    """``(task, output) -> VerifierResult``."""

    def __call__(self, task: Task, output: str) -> VerifierResult:  # pragma: no cover
        ...


def expected_value(task: Task, key: str) -> Any:
    """``task.metadata[key]``, the answer to verify against (a clear :class:`VerifierError` when absent).

    Example:
        >>> expected_value(Task("q", metadata={"expected": "4"}), "expected")
        '4'
    """
    value = task.metadata.get(key) if task.metadata else None
    if value is None:
        raise VerifierError(f"task {task.id!r} has no metadata[{key!r}] (the expected answer) to verify against")
    return value
