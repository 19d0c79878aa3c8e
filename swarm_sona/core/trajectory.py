"""Trajectory and Step records: what an agent did on one task and how it turned out.

A :class:`Trajectory` is the unit the engine learns from: the task's embedding, optional
step embeddings (the attention block reads them), the model the router chose and the
outcome (reward in [0, 1], success, cost, latency). Construction validates everything, so
a NaN reward or a vector of the wrong dimension never reaches the learner.

Example:
    >>> import numpy as np
    >>> from swarm_sona.core.trajectory import Trajectory, Step
    >>> t = Trajectory(task="sum two numbers", embedding=np.ones(4, np.float32) / 2,
    ...                steps=[Step(action="wrote code", reward=0.5)], model="small",
    ...                reward=1.0, success=True)
    >>> t.reward, t.success
    (1.0, True)
    >>> Trajectory(task="x", embedding=np.ones(4), reward=float("nan"))
    Traceback (most recent call last):
    ...
    swarm_sona.core.trajectory.TrajectoryError: trajectory reward must be a finite number in [0, 1], got nan
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Step", "Trajectory", "TrajectoryError", "check_number", "check_vector"]


class TrajectoryError(ValueError):
    """A trajectory or step holds invalid data (NaN, wrong dimension, reward out of range)."""


def check_vector(v: Any, dim: int | None = None, *, what: str = "vector") -> np.ndarray:
    """Return ``v`` as a contiguous float32 1-D array, or raise naming the problem.

    Example:
        >>> check_vector([1, 2], 2).dtype
        dtype('float32')
    """
    if type(v) is np.ndarray and v.dtype == np.float32 and v.ndim == 1 and v.flags.c_contiguous:
        if dim is not None and v.shape[0] != dim:
            raise TrajectoryError(f"{what} has dimension {v.shape[0]}, expected {dim}")
        if not np.isfinite(v).all():
            raise TrajectoryError(f"{what} contains NaN or inf")
        return v   # already what the slow path below returns (np.ascontiguousarray returns v itself)
    try:
        arr = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise TrajectoryError(f"{what} is not numeric: {exc}") from exc
    if arr.ndim != 1:
        raise TrajectoryError(f"{what} must be 1-D, got shape {arr.shape}")
    if dim is not None and arr.shape[0] != dim:
        raise TrajectoryError(f"{what} has dimension {arr.shape[0]}, expected {dim}")
    if not np.isfinite(arr).all():
        raise TrajectoryError(f"{what} contains NaN or inf")
    return np.ascontiguousarray(arr)


def check_number(v: Any, what: str, *, upper: float | None = None,
                 error: type[ValueError] = TrajectoryError) -> float:
    """``v`` as a float if it is a finite number >= 0 (and <= ``upper``), else ``error`` naming ``what``.

    Example:
        >>> check_number(0.5, "reward", upper=1.0)
        0.5
    """
    if type(v) is float and 0.0 <= v < math.inf and (upper is None or v <= upper):
        return v   # the common case, without the checks below (NaN fails the comparisons)
    bounds = f"in [0, {upper:g}]" if upper is not None else ">= 0"
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise error(f"{what} must be a finite number {bounds}, got {v!r}")
    f = float(v)
    if not math.isfinite(f) or f < 0.0 or (upper is not None and f > upper):
        raise error(f"{what} must be a finite number {bounds}, got {v!r}")
    return f


@dataclass
class Step:
    """One step of a trajectory: what was done, its embedding (optional), its reward."""

    action: str = ""
    embedding: np.ndarray | None = None
    reward: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reward = check_number(self.reward, "step reward", upper=1.0)
        if self.embedding is not None:
            self.embedding = check_vector(self.embedding, what="step embedding")


@dataclass
class Trajectory:
    """A task's execution record; the engine learns from it (see module docs)."""

    task: str
    embedding: np.ndarray
    steps: list[Step] = field(default_factory=list)
    model: str | None = None
    reward: float = 0.0
    success: bool = False
    cost_usd: float = 0.0
    latency_s: float = 0.0
    agent_id: str | None = None
    task_type: str | None = None
    output: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.task, str):
            raise TrajectoryError(f"trajectory task must be a string, got {type(self.task).__name__}")
        self.embedding = check_vector(self.embedding, what="trajectory embedding")
        self.reward = check_number(self.reward, "trajectory reward", upper=1.0)
        if not isinstance(self.success, (bool, np.bool_)):
            raise TrajectoryError(f"trajectory success must be a bool, got {self.success!r}")
        self.success = bool(self.success)
        self.cost_usd = check_number(self.cost_usd, "trajectory cost_usd")
        self.latency_s = check_number(self.latency_s, "trajectory latency_s")
        for i, s in enumerate(self.steps):
            if not isinstance(s, Step):
                raise TrajectoryError(f"trajectory step {i} is {type(s).__name__}, expected Step")
            if s.embedding is not None and s.embedding.shape != self.embedding.shape:
                raise TrajectoryError(
                    f"step {i} embedding has dimension {s.embedding.shape[0]}, "
                    f"expected {self.embedding.shape[0]}")

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.embedding.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain data (numpy arrays kept) for the msgpack codec."""
        return {
            "task": self.task, "embedding": self.embedding, "model": self.model,
            "reward": self.reward, "success": self.success, "cost_usd": self.cost_usd,
            "latency_s": self.latency_s, "agent_id": self.agent_id, "task_type": self.task_type,
            "output": self.output, "id": self.id, "created_at": self.created_at,
            "metadata": self.metadata,
            "steps": [{"action": s.action, "embedding": s.embedding, "reward": s.reward,
                       "metadata": s.metadata} for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trajectory:
        """Inverse of :meth:`to_dict`; validates like the constructor."""
        if not isinstance(d, dict):
            raise TrajectoryError(f"trajectory must be a mapping, got {type(d).__name__}")
        d = dict(d)
        steps = [Step(**s) for s in d.pop("steps", [])]
        try:
            return cls(steps=steps, **d)
        except TypeError as exc:
            raise TrajectoryError(f"malformed trajectory: {exc}") from exc
