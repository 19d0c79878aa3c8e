"""Configs of the learning core: :class:`LoRAConfig` (BaseLoRA / MicroLoRA adapters) and
:class:`EWCConfig` (EWC++), plus :class:`ModelShape`, what :meth:`SONAModel.from_config` reads
from an engine config.

Example:
    >>> from swarm_sona.learning.config import EWCConfig, LoRAConfig
    >>> LoRAConfig.from_dict({"rank": 4, "targetModules": ["q", "v"]}).target_modules
    ('q', 'v')
    >>> EWCConfig.from_dict({"lambda": 500.0}).lambda_
    500.0
    >>> LoRAConfig.from_dict({"rnak": 4})
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: lora: unknown key 'rnak' (did you mean 'rank'?)
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.learning.quantization import SCHEME_ALIASES, canonical_scheme

__all__ = ["LoRAConfig", "EWCConfig", "ModelShape", "RouterModels", "RouterPrior"]


@dataclass(frozen=True)
class LoRAConfig(ConfigBase):
    """LoRA adapter settings (BaseLoRA on the target modules; MicroLoRA on the final hidden state).

    Example:
        >>> LoRAConfig(rank=8, alpha=16).scaling
        2.0
        >>> LoRAConfig(rank=4, alpha=8, use_rslora=True).scaling
        4.0
        >>> LoRAConfig.from_dict({"quantization": "4bit"}).quantization
        'nf4'
    """

    _section: ClassVar[str] = "lora"

    rank: int = field_doc("BaseLoRA rank r (4-32 typical); the update is s * B @ A with A (r, d_in).", 8)
    alpha: float = field_doc("Scaling numerator: s = alpha / r (or alpha / sqrt(r) with rsLoRA).", 16.0)
    dropout: float = field_doc("Dropout on the adapter input, applied in training only; in [0, 1).", 0.0)
    target_modules: tuple[str, ...] = field_doc(
        "Model modules that get a BaseLoRA: any of q, k, v, o, mlp_in, mlp_out.", ("q", "v"))
    quantization: str | None = field_doc(
        "Store the frozen base weights group-wise quantised, dequantised on apply: None, 'nf4' "
        "(alias '4bit', QLoRA NormalFloat4) or 'int8' (alias '8bit'); see learning/quantization.py.", None)
    quantization_group_size: int = field_doc("Entries per quantisation group (one float32 absmax each); even.", 64)
    use_rslora: bool = field_doc("Rank-stabilised scaling alpha / sqrt(r) instead of alpha / r.", False)
    shared_a_seed: int | None = field_doc(
        "If set, every agent derives the same A from this seed and trains B only (FFA-LoRA).", None)
    train_a: bool = field_doc("Train A as well as B (ignored, i.e. False, when shared_a_seed is set).", True)
    micro_rank: int = field_doc("MicroLoRA rank (1-2), updated on every trajectory.", 1)
    micro_alpha: float = field_doc("MicroLoRA scaling numerator.", 1.0)
    seed: int = field_doc("Seed for drawing A when shared_a_seed is not set.", 0)

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int):
            raise ConfigError(f"{self._where('rank')}: expected an integer, got {self.rank!r}")
        self._check_range("rank", 1, 256)
        self._check_range("alpha", 0, lo_open=True)
        self._check_range("dropout", 0, 1, hi_open=True)
        self._check_range("micro_rank", 1, 2)
        self._check_range("micro_alpha", 0, lo_open=True)
        valid = ("q", "k", "v", "o", "mlp_in", "mlp_out")
        tm = tuple(self.target_modules)
        object.__setattr__(self, "target_modules", tm)
        for m in tm:
            if m not in valid:
                close = difflib.get_close_matches(str(m), valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{self._where('target_modules')}: unknown module {m!r}{hint}; valid: {list(valid)}")
        if len(set(tm)) != len(tm):
            raise ConfigError(f"{self._where('target_modules')}: duplicate module in {list(tm)}")
        if self.quantization is not None:
            self._check_choice("quantization", (None, *SCHEME_ALIASES))
            object.__setattr__(self, "quantization", canonical_scheme(self.quantization))
        g = self.quantization_group_size
        if isinstance(g, bool) or not isinstance(g, int) or g % 2:
            raise ConfigError(f"{self._where('quantization_group_size')}: expected an even integer, got {g!r}")
        self._check_range("quantization_group_size", 2, 65536)

    @property
    def scaling(self) -> float:
        """s = alpha / r, or alpha / sqrt(r) with rsLoRA."""
        return float(self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank))

    @property
    def micro_scaling(self) -> float:
        """MicroLoRA scaling micro_alpha / micro_rank."""
        return float(self.micro_alpha / self.micro_rank)


# =====================================================================================
# EWC++
# =====================================================================================
@dataclass(frozen=True)
class EWCConfig(ConfigBase):
    """EWC++ settings: online EMA Fisher, penalty strength, task-boundary detection.

    ``mode='offline'`` is accepted as the integration guide's name for ``'separate'``
    (one Fisher and anchor per task, as in the original EWC paper).

    Example:
        >>> EWCConfig.from_dict({"lambda": 1000, "mode": "offline"}).mode
        'separate'
    """

    _section: ClassVar[str] = "ewc"

    lambda_: float = field_doc("Penalty strength lambda in (lambda/2) * sum F (theta - theta*)^2; >= 0.", 1000.0)
    fisher_samples: int = field_doc("n: Fisher EMA is updated with mean(g^2) over the last n steps.", 10)
    fisher_decay: float = field_doc("a: weight of the new estimate in F <- (1-a) F + a mean(g^2); in (0, 1].", 0.9)
    mode: Literal["online", "separate", "offline"] = field_doc(
        "online: one running Fisher; separate (alias offline): one Fisher + anchor per task.", "online")
    normalize: bool = field_doc("Min-max normalise the Fisher at consolidation.", True)
    checkpointing: bool = field_doc("Write the Fisher and anchors into engine checkpoints.", True)
    detect_boundaries: bool = field_doc("Detect task boundaries from a shift of the gradient statistics.", True)
    boundary_z: float = field_doc("z-score of the running gradient mean above which a boundary is declared.", 3.0)
    boundary_min_samples: int = field_doc("Minimum steps in the current task before a boundary may be detected.", 50)

    def __post_init__(self) -> None:
        self._check_range("lambda_", 0)
        self._check_range("fisher_samples", 1)
        self._check_range("fisher_decay", 0, 1, lo_open=True)
        self._check_choice("mode", ("online", "separate", "offline"))
        if self.mode == "offline":
            object.__setattr__(self, "mode", "separate")
        self._check_range("boundary_z", 0, lo_open=True)
        self._check_range("boundary_min_samples", 1)



# =====================================================================================
# What the model is built from
# =====================================================================================
class RouterPrior(Protocol):
    """A routable model as the model's router head sees it: its prior quality."""

    @property
    def quality(self) -> float: ...


class RouterModels(Protocol):
    """The router settings the model reads: the routable models (one router-head row each)."""

    @property
    def models(self) -> Sequence[RouterPrior]: ...


class ModelShape(Protocol):
    """The fields of an engine config that :meth:`~swarm_sona.learning.model.SONAModel.from_config`
    reads (``SONAConfig`` has them all); the learning layer does not know the engine's config.

    Example:
        >>> from types import SimpleNamespace
        >>> from swarm_sona.learning.model import SONAModel
        >>> shape = SimpleNamespace(dim=8, mlp_hidden=8, model_seed=0, lora=LoRAConfig(rank=2),
        ...                         llm_router=SimpleNamespace(models=[SimpleNamespace(quality=0.7)]))
        >>> SONAModel.from_config(shape).n_router
        1
    """

    @property
    def dim(self) -> int: ...

    @property
    def mlp_hidden(self) -> int: ...

    @property
    def model_seed(self) -> int: ...

    @property
    def lora(self) -> LoRAConfig: ...

    @property
    def llm_router(self) -> RouterModels: ...
