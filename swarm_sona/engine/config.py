"""The engine's config: :class:`SONAConfig` composes the configs of the parts it builds
(:class:`~swarm_sona.learning.config.LoRAConfig`, :class:`~swarm_sona.learning.config.EWCConfig`,
:class:`~swarm_sona.bank.config.ReasoningBankConfig`, :class:`~swarm_sona.routing.config.LLMRouterConfig`).

Example:
    >>> from swarm_sona.engine.config import SONAConfig
    >>> cfg = SONAConfig.from_dict({"lora": {"rank": 8, "targetModules": ["q", "v"]},
    ...                             "ewc": {"lambda": 500.0, "mode": "online"}})
    >>> cfg.lora.target_modules, cfg.ewc.lambda_
    (('q', 'v'), 500.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.learning.config import EWCConfig, LoRAConfig
from swarm_sona.routing.config import LLMRouterConfig

__all__ = ["SONAConfig", "default_checkpoint_path", "CHECKPOINT_DIR"]


_RUVECTOR_WARNED = False

#: where ``ewc.checkpointing: true`` without ``checkpointPath`` writes (under the working directory)
CHECKPOINT_DIR = "sona-checkpoints"


def default_checkpoint_path(agent_id: str | None, base: str | Path | None = None) -> Path:
    """The periodic checkpoint file of ``checkpoint_path: 'auto'``:
    ``<base or the working directory>/sona-checkpoints/<agent_id or 'default'>/sona.ckpt``.

    Example:
        >>> default_checkpoint_path("coder-1", "/srv").as_posix()
        '/srv/sona-checkpoints/coder-1/sona.ckpt'
    """
    return Path(Path.cwd() if base is None else base).absolute() / CHECKPOINT_DIR / (agent_id or "default") / "sona.ckpt"


def _guide_sona_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """The guide's SONA shorthands (see :meth:`SONAConfig.from_dict`) turned into plain keys."""
    global _RUVECTOR_WARNED
    out = dict(data)
    ewc = out.get("ewc")
    if isinstance(ewc, Mapping) and ewc.get("checkpointing") is True \
            and not any(k in out for k in ("checkpoint_path", "checkpointPath")):
        out["checkpoint_path"] = "auto"    # the guide's `checkpointing: true` alone: the default place
    rb_key = next((k for k in ("reasoning_bank", "reasoningBank") if k in out), None)
    rb = out.get(rb_key) if rb_key else None
    if not isinstance(rb, Mapping):
        return out
    rb = dict(rb)
    if rb.get("backend") == "ruvector":
        rb["backend"] = "edge"
        if not _RUVECTOR_WARNED:
            _RUVECTOR_WARNED = True
            import warnings

            warnings.warn("reasoning_bank.backend 'ruvector' (the npm package's store) maps to the embedded "
                          "Qdrant Edge backend 'edge'; write backend: 'edge' to silence this", stacklevel=4)
    dims = rb.get("dimensions")
    if dims is not None and "dim" not in out and rb.get("enabled", True) is not False:
        out["dim"] = dims
    out[rb_key] = rb  # type: ignore[index]
    return out


@dataclass(frozen=True)
class SONAConfig(ConfigBase):
    """Settings of the in-process SONA engine and its parts.

    Example:
        >>> SONAConfig(dim=128).lora.rank
        8
    """

    _section: ClassVar[str] = "sona"

    dim: int = field_doc("Embedding / hidden dimension d of the model.", 256)
    mlp_hidden: int = field_doc("Width of the MLP inside the block.", 256)
    max_steps: int = field_doc("Max step embeddings per trajectory fed to the attention block.", 8)
    model_seed: int = field_doc("Seed of the frozen base weights.", 0)
    lora: LoRAConfig = field_doc("LoRA adapters.", factory=LoRAConfig)
    ewc: EWCConfig = field_doc("EWC++.", factory=EWCConfig)
    reasoning_bank: ReasoningBankConfig = field_doc("ReasoningBank.", factory=ReasoningBankConfig)
    llm_router: LLMRouterConfig = field_doc("LLM router.", factory=LLMRouterConfig)
    micro_lora: bool = field_doc("MicroLoRA on the final hidden state; False: it adds nothing and never trains "
                                 "(the instant loop then trains the heads only).", True)
    head_gate: bool = field_doc("Gate the router-head blend on its measured accuracy: the head's share of "
                                "llm_router.head_weight follows a running log-loss against the bandit's on the "
                                "same outcomes (engine.head_gate); False: the head is always blended in.", False)
    head_gate_window: int = field_doc("Outcomes the head gate's moving-average log-loss spans; the gate stays shut "
                                      "for the first window // 10.", 500)
    instant_lr: float = field_doc("SGD step size of the instant loop (MicroLoRA + heads).", 0.05)
    background_lr: float = field_doc("Adam step size of the background loop (BaseLoRA + heads).", 5e-3)
    background_every: int = field_doc("Run the background loop every N learned trajectories (0 = on demand only).", 100)
    background_steps: int = field_doc("Mini-batch steps per background cycle.", 4)
    batch_size: int = field_doc("Background mini-batch size.", 64)
    replay_size: int = field_doc("Replay buffer capacity in trajectories.", 4096)
    grad_clip: float = field_doc("Clip gradient norms to this value (0 = off).", 5.0)
    agent_id: str | None = field_doc("The engine's identity: stamped on the patterns it stores and the trajectories "
                                     "it learns (retrieval by source_agents).", None)
    checkpoint_every: int = field_doc("With ewc.checkpointing and checkpoint_path: write a checkpoint every N "
                                      "learning steps (learned trajectories + finetune steps); 0 = never.", 1000)
    checkpoint_path: str | None = field_doc(
        "File of the periodic checkpoints (atomic, previous kept as .prev; SONA.load restores it); 'auto' = "
        "./sona-checkpoints/<agent_id or 'default'>/sona.ckpt (what ewc.checkpointing: true alone means in a "
        "mapping); None = no periodic checkpoints.", None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, path: str | None = None) -> SONAConfig:
        """As :meth:`ConfigBase.from_dict`, plus the guide's shorthands: ``reasoningBank.dimensions``
        sets ``dim`` when ``dim`` is not given, ``reasoningBank.backend: 'ruvector'`` (the npm
        package's store) maps to the embedded ``edge`` backend, with a warning saying so, and
        ``ewc: {checkpointing: true}`` without ``checkpointPath`` writes to the default place
        (``checkpoint_path: 'auto'``).

        Example:
            >>> SONAConfig.from_dict({"reasoningBank": {"dimensions": 64}}).dim
            64
            >>> SONAConfig.from_dict({"ewc": {"checkpointing": True}}).checkpoint_path
            'auto'
        """
        if isinstance(data, Mapping) and not isinstance(data, SONAConfig):
            data = _guide_sona_keys(data)
        return super().from_dict(data, path=path)  # type: ignore[return-value]

    @property
    def embedder_name(self) -> str:
        """The embedder the engine and its bank use when none is given: ``reasoning_bank.embedder``
        (``'hashing'`` is ``hashing-v1-<dim>``; others as named, e.g. ``'minilm'``).

        Example:
            >>> SONAConfig(dim=64).embedder_name
            'hashing-v1-64'
        """
        name = self.reasoning_bank.embedder
        return f"hashing-v1-{self.dim}" if name in ("hashing", "hash") else name

    def periodic_checkpoints(self) -> SONAConfig:
        """This config with ``checkpoint_path: 'auto'`` resolved (:func:`default_checkpoint_path`
        of ``agent_id``, under the working directory now); unchanged otherwise.

        Example:
            >>> SONAConfig(checkpoint_path="auto", agent_id="a").periodic_checkpoints().checkpoint_path.endswith(
            ...     "sona-checkpoints/a/sona.ckpt")
            True
        """
        if self.checkpoint_path != "auto":
            return self
        return self.replace(checkpoint_path=str(default_checkpoint_path(self.agent_id)))

    def __post_init__(self) -> None:
        self._check_range("dim", 2, 8192)
        self._check_range("mlp_hidden", 1, 65536)
        self._check_range("max_steps", 0, 1024)
        self._check_range("instant_lr", 0)
        self._check_range("background_lr", 0)
        self._check_range("background_every", 0)
        self._check_range("background_steps", 0)
        self._check_range("batch_size", 1)
        self._check_range("replay_size", 1)
        self._check_range("grad_clip", 0)
        self._check_range("checkpoint_every", 0)
        self._check_range("head_gate_window", 1)
        if self.checkpoint_path is not None and (not isinstance(self.checkpoint_path, str) or not self.checkpoint_path):
            raise ConfigError(f"{self._where('checkpoint_path')}: must be a file path, 'auto' or None, "
                              f"got {self.checkpoint_path!r}")
        if self.agent_id is not None and (not isinstance(self.agent_id, str) or not self.agent_id):
            raise ConfigError(f"{self._where('agent_id')}: must be a non-empty string or None, got {self.agent_id!r}")
        rb_dim = self.reasoning_bank.dimensions
        if self.reasoning_bank.enabled and rb_dim is not None and rb_dim != self.dim:
            raise ConfigError(
                f"reasoning_bank.dimensions: {self.reasoning_bank.dimensions} differs from sona.dim {self.dim}")
