"""The engine's error type and checkpoint kind (shared by every engine module).

Example:
    >>> from swarm_sona.engine.errors import EngineError
    >>> issubclass(EngineError, ValueError)
    True
"""

from __future__ import annotations

__all__ = ["EngineError", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "sona-engine"


class EngineError(ValueError):
    """Bad input to the engine (the message names it); the engine state is unchanged."""
