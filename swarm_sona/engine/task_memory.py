"""Learning a task from its patterns, with EWC++ keeping earlier tasks (the guide's
``learn({task, patterns, preserveTaskMemory})``).

The patterns become trajectories of the task (their input texts embedded), learned by the
instant loop and then by ``background_steps`` Adam mini-batches drawn from these patterns only;
their gradients feed the EWC++ Fisher. With ``preserve_task_memory`` the switch from the
previous task is a task boundary: EWC++ consolidates there (anchors = the parameters the
previous task left, importance = its Fisher), so the penalty pulls the new task's training
back toward what the previous one learned.

Example:
    >>> from swarm_sona.engine.sona import SONA
    >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "background_every": 0})
    >>> a = sona.learn({"task": "implement-auth", "patterns": ["hash passwords", "issue tokens"]})
    >>> b = sona.learn({"task": "implement-database", "patterns": ["add an index"], "preserveTaskMemory": True})
    >>> a["boundary"], b["boundary"], b["previous_task"], sona.stats()["ewc"]["consolidations"]
    (False, True, 'implement-auth', 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from swarm_sona.bank import Pattern
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine import inputs
from swarm_sona.engine.errors import EngineError

if TYPE_CHECKING:
    from swarm_sona.engine.sona import SONA

__all__ = ["PatternLearnResult", "learn_patterns", "PATTERN_KEYS"]

PATTERN_KEYS = ("task", "input", "output", "reward", "success", "metadata")


class PatternLearnResult(TypedDict):
    """What ``learn({task, patterns, preserveTaskMemory})`` did (``boundary``: EWC++ consolidated
    the previous task at the switch)."""

    task: str
    learned: int
    steps: int
    loss: float | None
    ewc_penalty: float | None
    boundary: bool
    previous_task: str | None
    version: int


def _pattern_list(patterns: Any) -> list[Any]:
    if patterns is None or isinstance(patterns, (str, Mapping)):
        raise EngineError("learn: patterns must be a non-empty list of texts, Patterns or mappings")
    try:
        items = list(patterns)
    except TypeError:
        raise EngineError(f"learn: patterns must be a list, got {type(patterns).__name__}") from None
    if not items:
        raise EngineError("learn: no patterns given")
    return items


def pattern_trajectory(sona: SONA, task: str, i: int, p: Any) -> Trajectory:
    """Pattern ``i`` (a text, a Pattern or a mapping with :data:`PATTERN_KEYS`) as a trajectory
    of ``task``: its input (or own task) text embedded, reward default 1.0, success default
    reward >= 0.5, stamped with the engine's agent id."""
    if isinstance(p, str):
        p = {"input": p}
    elif isinstance(p, Pattern):
        p = {"input": p.input or p.task, "output": p.output, "reward": p.reward, "success": p.success}
    if not isinstance(p, Mapping):
        raise EngineError(f"learn: pattern {i} must be a text, a Pattern or a mapping, got {type(p).__name__}")
    kw = inputs.guide_args(f"learn: pattern {i}", (p,), {}, PATTERN_KEYS)
    text = kw.get("input") or kw.get("task")
    if not isinstance(text, str) or not text:
        raise EngineError(f"learn: pattern {i} needs an input (or task) text")
    reward = kw.get("reward", 1.0)
    t = {"task": task, "embedding": sona.embed(text), "output": str(kw.get("output", "")), "reward": reward,
         "success": kw.get("success", isinstance(reward, (int, float)) and reward >= 0.5),
         "metadata": dict(kw.get("metadata") or {}), "agent_id": sona.agent_id}
    try:
        return inputs.trajectories(t, sona.dim, 0)[0]
    except EngineError as exc:
        raise EngineError(f"{exc} (pattern {i})") from None


def learn_patterns(sona: SONA, task: Any, patterns: Any, *, preserve_task_memory: bool = False) -> PatternLearnResult:
    """Train ``sona`` on ``task``'s patterns as a task of its own (see module docs)."""
    if not isinstance(task, str) or not task:
        raise EngineError(f"learn: task must be a non-empty string, got {task!r}")
    if not isinstance(preserve_task_memory, bool):
        raise EngineError(f"learn: preserveTaskMemory must be true or false, got {preserve_task_memory!r}")
    trajs = [pattern_trajectory(sona, task, i, p) for i, p in enumerate(_pattern_list(patterns))]
    prev = sona.task
    boundary = preserve_task_memory and prev is not None and prev != task
    if boundary:
        sona.consolidate(prev)
    sona.learn_trajectories(trajs)
    steps = sona.background_loop.train_on(trajs, sona.config.background_steps, sona.counters)
    sona.task = task
    return {"task": task, "learned": len(trajs), "steps": len(steps),
            "loss": float(np.mean([s["loss"] for s in steps])) if steps else None,
            "ewc_penalty": float(np.mean([s["ewc_penalty"] for s in steps])) if steps else None,
            "boundary": boundary, "previous_task": prev, "version": sona.version}
