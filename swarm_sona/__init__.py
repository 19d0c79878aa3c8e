"""swarm_sona: self-optimizing agent swarms on Ray.

Public API (more is re-exported as the subsystems land):

Example:
    >>> import swarm_sona
    >>> cfg = swarm_sona.SONAConfig(dim=64)
    >>> cfg.dim
    64
"""

from swarm_sona.codec import CheckpointError, CodecError
from swarm_sona.config import (
    ConfigError,
    EWCConfig,
    LLMRouterConfig,
    LoRAConfig,
    ModelSpec,
    ReasoningBankConfig,
    SONAConfig,
)
from swarm_sona.embed import Embedder, HashingEmbedder
from swarm_sona.executors import Executor, Outcome, Task
from swarm_sona.trajectory import Step, Trajectory, TrajectoryError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CodecError",
    "ConfigError",
    "EWCConfig",
    "Embedder",
    "Executor",
    "HashingEmbedder",
    "LLMRouterConfig",
    "LoRAConfig",
    "ModelSpec",
    "Outcome",
    "ReasoningBankConfig",
    "SONAConfig",
    "Step",
    "Task",
    "Trajectory",
    "TrajectoryError",
]
