"""swarm_sona: self-optimizing agent swarms on Ray.

Public API (more is re-exported as the subsystems land):

Example:
    >>> import swarm_sona
    >>> cfg = swarm_sona.SONAConfig(dim=64)
    >>> cfg.dim
    64
"""

from swarm_sona.bank import (
    BankError,
    BankInputError,
    BankLockedError,
    BankUnavailableError,
    Pattern,
    ReasoningBank,
    ScoreWeights,
)
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.rules import get_rule
from swarm_sona.consensus.topologies import Topology, TopologyError, get_topology
from swarm_sona.consensus.updates import AgentUpdate, MergeError
from swarm_sona.core.codec import CheckpointError, CodecError
from swarm_sona.core.config import ConfigError
from swarm_sona.core.trajectory import Step, Trajectory, TrajectoryError
from swarm_sona.embedding.embedders import (
    Embedder,
    EmbedderError,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    get_embedder,
)
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.sona import SONA, EngineError
from swarm_sona.executors import Executor, Outcome, Task
from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.executors.table import RoutingTable, TableError, TableExecutor, load_routing_table
from swarm_sona.learning.config import EWCConfig, LoRAConfig
from swarm_sona.learning.errors import ModelError
from swarm_sona.learning.ewc import EWC, EWCError
from swarm_sona.learning.lora import BaseLoRA, LoRAAdapter, LoRAError, MicroLoRA
from swarm_sona.learning.lora_linear import LoRALinear
from swarm_sona.learning.model import SONAModel
from swarm_sona.routing import (
    BudgetExhaustedError,
    CascadeResult,
    LLMRouter,
    NoModelError,
    RouteDecision,
    RouterError,
    register_strategy,
)
from swarm_sona.routing.config import LLMRouterConfig, ModelSpec
from swarm_sona.runtime.config import AgentSpec, SwarmConfig
from swarm_sona.runtime.results import SwarmStats, SyncSummary, TaskResult
from swarm_sona.runtime.swarm import SwarmError, SwarmSONA


def _installed_version() -> str:
    """The distribution's version (its one home is pyproject.toml), read from the installed metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swarm-sona")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"


__version__ = _installed_version()

__all__ = [
    "BaseLoRA",
    "EWC",
    "EWCError",
    "EngineError",
    "LoRAAdapter",
    "LoRAError",
    "LoRALinear",
    "MicroLoRA",
    "ModelError",
    "SONA",
    "SONAModel",
    "AgentSpec",
    "AgentUpdate",
    "MergeBook",
    "MergeError",
    "OpenAIChatExecutor",
    "SimulatedExecutor",
    "SwarmConfig",
    "SwarmError",
    "SwarmSONA",
    "SwarmStats",
    "SyncSummary",
    "TaskResult",
    "Topology",
    "TopologyError",
    "get_rule",
    "get_topology",
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
    "BankError",
    "BankInputError",
    "BankLockedError",
    "BankUnavailableError",
    "EmbedderError",
    "Pattern",
    "ReasoningBank",
    "ScoreWeights",
    "SentenceTransformerEmbedder",
    "get_embedder",
    "BudgetExhaustedError",
    "CascadeResult",
    "LLMRouter",
    "NoModelError",
    "RouteDecision",
    "RouterError",
    "register_strategy",
    "RoutingTable",
    "TableError",
    "TableExecutor",
    "load_routing_table",
]
