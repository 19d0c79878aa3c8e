"""Executors: what running a task on a model means (see :mod:`swarm_sona.executors.base`)."""

from swarm_sona.executors.base import Executor, Outcome, OutcomeError, Task

__all__ = ["Executor", "Outcome", "OutcomeError", "Task"]
