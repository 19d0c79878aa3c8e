"""Configs of the learning core: :class:`LoRAConfig` (BaseLoRA / MicroLoRA adapters) and
:class:`EWCConfig` (EWC++), plus :class:`ModelShape`, what :meth:`SONAModel.from_config` reads
from an engine config.

Example:
    >>> from swarm_sona.learning.config import EWCConfig, LoRAConfig
    >>> LoRAConfig.from_dict({"rank": 4, "targetModules": ["q", "v"]}).target_modules
    ('q', 'v')
    >>> EWCConfig.from_dict({"lambda": 0.5}).strength   # the guide's 0-1 scale
    1000.0
    >>> LoRAConfig.from_dict({"rnak": 4})
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: lora: unknown key 'rnak' (did you mean 'rank'?)
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.learning.quantization import SCHEME_ALIASES, canonical_scheme

__all__ = ["LoRAConfig", "EWCConfig", "ModelShape", "RouterModels", "RouterPrior", "STRENGTH_REF",
           "guide_lambda_to_strength", "strength_to_guide_lambda", "router_anchor_weight"]


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
#: the penalty strength of the guide's ``lambda`` 0.5 (the internal default before the guide's scale)
STRENGTH_REF = 1000.0
#: odds cap of :func:`guide_lambda_to_strength`: lambda 1 means strength ``STRENGTH_REF * 1000``
_MAX_ODDS = 1000.0
_OLD_SCALE_WARNED = False


def guide_lambda_to_strength(lam: float) -> float:
    """The integration guide's ``ewc.lambda`` (0-1) -> the internal penalty strength
    ``s = 1000 * lambda / (1 - lambda)`` (odds capped at 1000, so lambda 1 gives 1e6).

    lambda 0.5 is the strength that was the default (1000); 0.4 -> 667; 0.9 -> 9000; 0 -> 0.

    Example:
        >>> [round(guide_lambda_to_strength(x)) for x in (0.0, 0.4, 0.5, 0.9, 1.0)]
        [0, 667, 1000, 9000, 1000000]
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ConfigError(f"ewc.lambda: the guide's scale is 0-1, got {lam!r}")
    odds = _MAX_ODDS if lam >= 1.0 else min(lam / (1.0 - lam), _MAX_ODDS)
    return float(STRENGTH_REF * odds)


def router_anchor_weight(strength: float) -> float:
    """The weight of a decaying router's EWC anchor at penalty strength ``s``: ``s / 1000``
    (the guide's lambda 0.4 -> 0.667, 0.5 -> 1; see ``LLMRouter.consolidate``).

    Example:
        >>> round(router_anchor_weight(guide_lambda_to_strength(0.4)), 3), router_anchor_weight(1000.0)
        (0.667, 1.0)
    """
    return float(strength) / STRENGTH_REF


def strength_to_guide_lambda(strength: float) -> float:
    """Inverse of :func:`guide_lambda_to_strength`: ``lambda = s / (s + 1000)``.

    Example:
        >>> strength_to_guide_lambda(1000.0), round(strength_to_guide_lambda(2000.0), 4)
        (0.5, 0.6667)
    """
    return float(strength / (strength + STRENGTH_REF)) if strength > 0 else 0.0


@dataclass(frozen=True)
class EWCConfig(ConfigBase):
    """EWC++ settings: online EMA Fisher, penalty strength, task boundaries, online consolidation.

    ``lambda`` is the integration guide's 0-1 scale ("0.4-0.5 for good memory preservation"):
    :meth:`from_dict` maps it onto the internal ``strength`` by :func:`guide_lambda_to_strength`
    (``s = 1000 lambda / (1 - lambda)``: 0.4 -> 667, 0.5 -> 1000, the old default). A ``lambda``
    above 1 is a config on the old internal scale: read as ``strength`` as it is, with a warning
    (once per process). ``strength`` reaches the internal scale directly. ``mode='offline'`` is
    accepted as the guide's name for ``'separate'`` (one Fisher and anchor per task).

    Example:
        >>> EWCConfig.from_dict({"lambda": 0.4}).strength
        666.6666666666667
        >>> EWCConfig.from_dict({"lambda": 0.5, "mode": "offline"}).mode
        'separate'
        >>> EWCConfig(strength=200.0).guide_lambda
        0.16666666666666666
    """

    _section: ClassVar[str] = "ewc"

    strength: float = field_doc(
        "Internal penalty strength s in (s/2) sum F (theta - theta*)^2, >= 0. The guide's ewc.lambda (0-1) sets it: "
        "s = 1000 lambda / (1 - lambda), so 0.4 -> 667, 0.5 -> 1000 (default), 0.9 -> 9000, 1 -> 1e6.", STRENGTH_REF)
    fisher_samples: int = field_doc("n: Fisher EMA is updated with mean(g^2) over the last n steps.", 10)
    fisher_decay: float = field_doc("a: weight of the new estimate in F <- (1-a) F + a mean(g^2); in (0, 1].", 0.9)
    mode: Literal["online", "separate", "offline"] = field_doc(
        "online: one running Fisher; separate (alias offline): one Fisher + anchor per task.", "online")
    normalize: bool = field_doc("Min-max normalise the Fisher at consolidation.", True)
    checkpointing: bool = field_doc("Write the Fisher and anchors into engine checkpoints.", True)
    detect_boundaries: bool = field_doc("Detect task boundaries from a shift of the gradient statistics.", True)
    boundary_z: float = field_doc("z-score of the running gradient mean above which a boundary is declared.", 3.0)
    boundary_min_samples: int = field_doc("Minimum steps in the current task before a boundary may be detected.", 50)
    consolidate_every: int = field_doc(
        "Online consolidation: anchor at the end of the first background cycle after every N learned "
        "trajectories, without a task boundary (0 = only at explicit or detected boundaries).", 0)

    @classmethod
    def from_dict(cls, data: Any, *, path: str | None = None) -> EWCConfig:
        """As :meth:`ConfigBase.from_dict`, plus the guide's ``lambda`` (0-1, mapped onto
        ``strength``; above 1: the old internal scale, warned once). ``lambda`` and ``strength``
        together are refused.

        Example:
            >>> EWCConfig.from_dict({"lambda": 0.5}).strength
            1000.0
            >>> EWCConfig.from_dict({"lambda": 0.5, "strength": 3.0})
            Traceback (most recent call last):
            ...
            swarm_sona.core.config.ConfigError: ewc: give lambda (the guide's 0-1 scale) or strength (internal), not both
        """
        if isinstance(data, Mapping) and not isinstance(data, EWCConfig):
            data = _guide_lambda(data, path or cls._section)
        return super().from_dict(data, path=path)  # type: ignore[return-value]

    @property
    def lambda_(self) -> float:
        """The penalty strength the maths uses (= ``strength``; the attribute name readers such
        as the consensus coordinator use)."""
        return self.strength

    @property
    def guide_lambda(self) -> float:
        """``strength`` on the guide's 0-1 scale (:func:`strength_to_guide_lambda`)."""
        return strength_to_guide_lambda(self.strength)

    def __post_init__(self) -> None:
        self._check_range("strength", 0)
        self._check_range("fisher_samples", 1)
        self._check_range("fisher_decay", 0, 1, lo_open=True)
        self._check_choice("mode", ("online", "separate", "offline"))
        if self.mode == "offline":
            object.__setattr__(self, "mode", "separate")
        self._check_range("boundary_z", 0, lo_open=True)
        self._check_range("boundary_min_samples", 1)
        if isinstance(self.consolidate_every, bool) or not isinstance(self.consolidate_every, int):
            raise ConfigError(f"{self._where('consolidate_every')}: expected an integer, got {self.consolidate_every!r}")
        self._check_range("consolidate_every", 0)
        if self.consolidate_every and self.mode != "online":
            raise ConfigError(f"{self._where('consolidate_every')}: needs mode 'online' (mode {self.mode!r} keeps "
                              "one anchor per task, which would grow by one every consolidate_every trajectories)")


def _guide_lambda(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``lambda`` (the guide's key) turned into ``strength`` (see :class:`EWCConfig`)."""
    global _OLD_SCALE_WARNED
    out = dict(data)
    keys = [k for k in ("lambda", "lambda_") if k in out]
    if not keys:
        return out
    if len(keys) > 1:
        raise ConfigError(f"{where}: key 'lambda' given twice (as {keys})")
    if "strength" in out:
        raise ConfigError(f"{where}: give lambda (the guide's 0-1 scale) or strength (internal), not both")
    lam = out.pop(keys[0])
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
        raise ConfigError(f"{where}.lambda: expected a number in [0, 1] (the guide's scale), got {lam!r}")
    if lam > 1.0:
        if not _OLD_SCALE_WARNED:
            _OLD_SCALE_WARNED = True
            warnings.warn(f"{where}.lambda {lam:g} is on the old internal scale: read as strength {lam:g} "
                          f"(= lambda {strength_to_guide_lambda(float(lam)):.4g} on the guide's 0-1 scale); "
                          "write lambda in [0, 1] or strength to silence this", stacklevel=4)
        out["strength"] = float(lam)
    else:
        out["strength"] = guide_lambda_to_strength(float(lam))
    return out



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
