"""Executors: what running a task on a model means (see :mod:`swarm_sona.core.executor`)."""

from swarm_sona.core.executor import Executor, Outcome, OutcomeError, Task

__all__ = ["Executor", "Outcome", "OutcomeError", "Task"]
