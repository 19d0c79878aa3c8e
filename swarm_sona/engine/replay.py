"""The replay buffer of learned trajectories and its column-wise checkpoint layout.

Example:
    >>> import numpy as np
    >>> from swarm_sona.core.trajectory import Trajectory
    >>> from swarm_sona.engine.replay import Replay
    >>> r = Replay(2)
    >>> for i in range(3):
    ...     r.append(Trajectory(task=f"t{i}", embedding=np.ones(4, np.float32)))
    >>> [t.task for t in r.ordered()], len(Replay.from_state(r.state(4), 4, 2))
    (['t1', 't2'], 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.errors import EngineError

__all__ = ["Replay"]

# replay columns in checkpoints (besides embedding, success, steps)
_TEXT = ("task", "model", "agent_id", "task_type", "output", "id")
_NUM = ("reward", "cost_usd", "latency_s", "created_at")


class Replay:
    """Fixed-capacity ring buffer of trajectories with O(1) random access (``items[i]``)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.items: list[Trajectory] = []
        self.pos = 0

    def __len__(self) -> int:
        return len(self.items)

    def append(self, t: Trajectory) -> None:
        """Add one trajectory (the oldest goes once the buffer is full)."""
        if len(self.items) < self.capacity:
            self.items.append(t)
        else:
            self.items[self.pos] = t
            self.pos = (self.pos + 1) % self.capacity

    def extend(self, ts: Sequence[Trajectory]) -> None:
        """:meth:`append` each of ``ts`` in order (the free slots filled in one step)."""
        free = self.capacity - len(self.items)
        if free > 0:
            self.items.extend(ts[:free])
            ts = ts[free:]
        for t in ts:
            self.append(t)

    def ordered(self) -> list[Trajectory]:
        """Oldest first."""
        return self.items[self.pos:] + self.items[:self.pos]

    def state(self, dim: int) -> dict[str, Any]:
        """Column-wise: ``{"n", "embedding": (n, dim), <field>: column}`` (numbers as arrays,
        strings as lists, ``metadata`` and ``steps`` as sparse ``[row, value]`` pairs). A handful
        of columns instead of n records keeps checkpoints fast to write, verify and read."""
        items = self.ordered()
        cols: dict[str, Any] = {"n": len(items), "embedding": np.stack([t.embedding for t in items]) if items
                                else np.zeros((0, dim), np.float32)}
        for f in _TEXT:
            cols[f] = [getattr(t, f) for t in items]
        for f in _NUM:
            cols[f] = np.array([getattr(t, f) for t in items], np.float64)
        cols["success"] = np.array([t.success for t in items], bool)
        cols["metadata"] = [[i, t.metadata] for i, t in enumerate(items) if t.metadata]
        cols["steps"] = [[i, [{"action": st.action, "embedding": st.embedding, "reward": st.reward,
                               "metadata": st.metadata} for st in t.steps]] for i, t in enumerate(items) if t.steps]
        return cols

    @staticmethod
    def trajectories_from_state(raw: Any, dim: int) -> list[Trajectory]:
        """Trajectories from :meth:`state` columns (or the older list of ``to_dict`` records)."""
        if not isinstance(raw, Mapping):
            return [Trajectory.from_dict(d) for d in raw]
        n = raw["n"]
        E = np.asarray(raw["embedding"])
        if E.shape != (n, dim):
            raise EngineError(f"replay embeddings have shape {E.shape}, expected ({n}, {dim})")
        for f in (*_TEXT, *_NUM, "success"):
            if len(raw[f]) != n:
                raise EngineError(f"replay column {f!r} has {len(raw[f])} entries, expected {n}")
        num = {f: np.asarray(raw[f], np.float64).tolist() for f in _NUM}
        success = [bool(v) for v in raw["success"]]
        sparse: dict[str, dict[int, Any]] = {}
        for f in ("metadata", "steps"):
            sparse[f] = {}
            for pair in raw[f]:
                if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], int) \
                        or not 0 <= pair[0] < n:
                    raise EngineError(f"replay column {f!r}: malformed entry {pair!r:.60}")
                sparse[f][pair[0]] = pair[1]
        meta, steps = sparse["metadata"], sparse["steps"]
        return [Trajectory.from_dict({"embedding": E[i], "success": success[i], "steps": steps.get(i, []),
                                      "metadata": meta.get(i, {}), **{f: raw[f][i] for f in _TEXT},
                                      **{f: num[f][i] for f in _NUM}})
                for i in range(n)]

    @classmethod
    def from_state(cls, raw: Any, dim: int, capacity: int) -> Replay:
        """A buffer holding the trajectories of :meth:`state` (checked against ``dim``)."""
        out = cls(capacity)
        for i, t in enumerate(cls.trajectories_from_state(raw, dim)):
            if t.dim != dim:
                raise EngineError(f"replay trajectory {i} has dimension {t.dim}, expected {dim}")
            out.append(t)
        return out
