"""The executor protocol: what "running a task" means.

An executor is any callable ``(task, model, patterns) -> Outcome``. ``task`` is a
:class:`Task`, ``model`` the name the router chose, ``patterns`` the ReasoningBank hits
(a list of dicts, possibly empty). The :class:`Outcome` carries the output text, a reward
in [0, 1], success, the cost in USD and the latency in seconds.

Example:
    >>> from swarm_sona.executors.base import Task, Outcome
    >>> def echo(task, model, patterns):
    ...     return Outcome(output=task.text, reward=1.0, success=True, cost_usd=0.0, latency_s=0.0)
    >>> echo(Task(text="hi"), "small", []).success
    True
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Task", "Outcome", "Executor", "OutcomeError"]


class OutcomeError(ValueError):
    """An executor returned an invalid outcome (reward outside [0, 1], NaN, negative cost)."""


@dataclass
class Task:
    """A unit of work: its text, an optional type/family, and free metadata."""

    text: str
    task_type: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Task.text must be a string, got {type(self.text).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "task_type": self.task_type, "id": self.id, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(**d)


@dataclass
class Outcome:
    """The result of running a task on a model."""

    output: str
    reward: float
    success: bool
    cost_usd: float = 0.0
    latency_s: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.reward
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or not 0 <= r <= 1:
            raise OutcomeError(f"outcome reward must be a finite number in [0, 1], got {r!r}")
        self.reward = float(r)
        for name in ("cost_usd", "latency_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise OutcomeError(f"outcome {name} must be a finite number >= 0, got {v!r}")
        self.success = bool(self.success)


@runtime_checkable
class Executor(Protocol):
    """``(task, model, patterns) -> Outcome``."""

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:  # pragma: no cover
        ...
