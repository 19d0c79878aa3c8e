"""SONA, the in-process engine: composes the learning core, the router and a ReasoningBank.
"""

from swarm_sona.engine.sona import SONA, EngineError

__all__ = ["SONA", "EngineError"]
