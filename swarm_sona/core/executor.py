"""The executor protocol: what "running a task" means.

An executor is any callable ``(task, model, patterns) -> Outcome``. ``task`` is a
:class:`Task`, ``model`` the name the router chose, ``patterns`` the ReasoningBank hits
(a list of dicts, possibly empty). The :class:`Outcome` carries the output text, a reward
in [0, 1], success, the cost in USD and the latency in seconds.

Example:
    >>> from swarm_sona.core.executor import Task, Outcome
    >>> def echo(task, model, patterns):
    ...     return Outcome(output=task.text, reward=1.0, success=True, cost_usd=0.0, latency_s=0.0)
    >>> echo(Task(text="hi"), "small", []).success
    True
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from swarm_sona.core.trajectory import check_number

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
    #: None for a real answer; else why there is none (an infrastructure failure, not the model's:
    #: "auth", "rate_limit", "server", "timeout", "network", "request", "response"). A learner
    #: should not count such an outcome as the model failing the task.
    error_kind: str | None = None

    def __post_init__(self) -> None:
        self.reward = check_number(self.reward, "outcome reward", upper=1.0, error=OutcomeError)
        self.cost_usd = check_number(self.cost_usd, "outcome cost_usd", error=OutcomeError)
        self.latency_s = check_number(self.latency_s, "outcome latency_s", error=OutcomeError)
        self.success = bool(self.success)


@runtime_checkable
class Executor(Protocol):
    """``(task, model, patterns) -> Outcome``."""

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:  # pragma: no cover
        ...
