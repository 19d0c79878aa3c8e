"""The engine's counters and running statistics, shared by its loops and its checkpoints.

Example:
    >>> from swarm_sona.engine.counters import EngineCounters
    >>> c = EngineCounters()
    >>> c.ema("reward_ema", 1.0); c.ema("reward_ema", 0.0); round(c.reward_ema, 2)
    0.99
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EngineCounters"]


@dataclass
class EngineCounters:
    """Counts of learned trajectories and cycles, and exponential moving averages (decay 0.99)."""

    version: int = 0
    n_learned: int = 0
    n_since_background: int = 0
    n_since_sync: int = 0
    n_background: int = 0
    n_boundaries: int = 0
    n_since_consolidation: int = 0
    n_consolidations: int = 0
    value_loss_ema: float | None = None
    router_acc_ema: float | None = None
    reward_ema: float | None = None

    def ema(self, name: str, x: float) -> None:
        """Update the moving average ``name`` with ``x`` (the first value starts it)."""
        old = getattr(self, name)
        setattr(self, name, x if old is None else 0.99 * old + 0.01 * x)

    def count(self, k: int) -> None:
        """``k`` more trajectories learned."""
        self.n_learned += k
        self.n_since_background += k
        self.n_since_sync += k
        self.n_since_consolidation += k

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what checkpoints hold under ``counters``)."""
        return dataclasses.asdict(self)

    def load(self, c: Mapping[str, Any]) -> None:
        """Restore from :meth:`to_dict` (missing entries reset to their defaults)."""
        for f in dataclasses.fields(self):
            v = c.get(f.name, f.default)
            setattr(self, f.name, v if f.name.endswith("_ema") else int(v))  # type: ignore[arg-type]
