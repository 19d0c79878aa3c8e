"""Configs of the learned LLM router: :class:`ModelSpec` (one routable model),
:class:`LLMRouterConfig` and :data:`ROUTER_STRATEGY_NAMES` (the strategy names a config may use;
:func:`swarm_sona.routing.register_strategy` adds to it).

Example:
    >>> from swarm_sona.routing.config import LLMRouterConfig
    >>> LLMRouterConfig.from_dict({"models": [{"name": "m", "quality": 0.7}], "retryWithUpgrade": True}).retry_with_upgrade
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from swarm_sona.core.config import ConfigBase, ConfigError, field_doc

__all__ = ["ModelSpec", "LLMRouterConfig", "ROUTER_STRATEGY_NAMES"]


@dataclass(frozen=True)
class ModelSpec(ConfigBase):
    """One routable model.

    ``cost`` is USD per 1M tokens (``cost_unit='1m_tokens'``, the default: the integration
    guide quotes published prices per 1M tokens) or USD per call (``cost_unit='call'``). A
    per-token price is turned into a per-task estimate from the task text's estimated input
    tokens plus ``expected_output_tokens`` (None: the router's ``output_tokens``); see
    :mod:`~swarm_sona.routing.pricing`.

    Example:
        >>> m = ModelSpec.from_dict({"name": "claude-sonnet-4-5", "cost": 3.00, "expectedOutputTokens": 500})
        >>> m.cost_unit, m.expected_output_tokens
        ('1m_tokens', 500)
        >>> ModelSpec.from_dict({"name": "flat", "cost": 0.02, "costUnit": "call"}).cost_unit
        'call'
    """

    _section: ClassVar[str] = "model"

    name: str = field_doc("Model name as the executor knows it.", "")
    cost: float = field_doc("Price in USD per 1M tokens, or per call with cost_unit 'call'; >= 0.", 0.0)
    quality: float = field_doc("Prior probability of success, in [0, 1].", 0.5)
    speed: float | None = field_doc("Relative speed in (0, 1] (1 = fastest); or give latency_s.", None)
    latency_s: float | None = field_doc("Typical latency in seconds (> 0).", None, alias=("latency",))
    cost_unit: Literal["call", "1m_tokens"] = field_doc("Unit of `cost`: '1m_tokens' (USD per 1M tokens) or 'call'.",
                                                        "1m_tokens")
    expected_output_tokens: int | None = field_doc(
        "Output tokens a call is expected to produce, for per-1M-token estimates (None = llm_router.output_tokens).",
        None)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{self._where('name')}: a model needs a non-empty name")
        self._check_range("cost", 0)
        self._check_range("quality", 0, 1)
        if self.speed is not None:
            self._check_range("speed", 0, 1, lo_open=True)
        if self.latency_s is not None:
            self._check_range("latency_s", 0, lo_open=True)
        self._check_choice("cost_unit", ("call", "1m_tokens"))
        if self.expected_output_tokens is not None:
            if isinstance(self.expected_output_tokens, bool) or not isinstance(self.expected_output_tokens, int):
                raise ConfigError(f"{self._where('expected_output_tokens')}: expected an integer, "
                                  f"got {self.expected_output_tokens!r}")
            self._check_range("expected_output_tokens", 0)


#: Names of the LLM router strategies a config may name: the built-in four, plus those added
#: with ``swarm_sona.routing.register_strategy`` (which appends here; the functions live there).
ROUTER_STRATEGY_NAMES: list[str] = ["quality", "speed", "cost-optimized", "balanced"]


@dataclass(frozen=True)
class LLMRouterConfig(ConfigBase):
    """Learned LLM router settings.

    Example:
        >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "small", "cost": 0.25, "quality": 0.6},
        ...     {"name": "big", "cost": 3.00, "quality": 0.9}], "strategy": "balanced", "fallback": "small"})
        >>> [m.name for m in cfg.models]
        ['small', 'big']
    """

    _section: ClassVar[str] = "llm_router"

    models: tuple[ModelSpec, ...] = field_doc("The routable models.", factory=tuple)
    strategy: str = field_doc(
        "Objective: quality, speed, cost-optimized, balanced (weights below), a registered strategy "
        "or 'package.module:function' (imported where the router is built, e.g. in each Ray worker).", "balanced")
    fallback: str | None = field_doc("Model used when no model satisfies the constraints.", None)
    retry_with_upgrade: bool = field_doc("On failure retry on the next better model (cascade).", False)
    max_cost_per_task: float | None = field_doc("Per-task budget in USD over all attempts.", None)
    run_budget: float | None = field_doc("Budget in USD for the whole run.", None)
    on_no_model: Literal["fallback", "raise"] = field_doc("When constraints exclude every model: use fallback or raise.", "fallback")
    quality_weight: float = field_doc("balanced: weight on expected quality.", 1.0)
    cost_weight: float = field_doc("balanced: weight on normalised cost.", 0.5)
    speed_weight: float = field_doc("balanced: weight on speed.", 0.1)
    exploration: Literal["thompson", "linucb", "none"] = field_doc("Bandit exploration; none = deterministic serving.", "thompson")
    posterior: Literal["diagonal", "full", "full-logistic"] = field_doc(
        "Per-model posterior: diagonal (logistic Laplace, O(dim) per update), full (Bayesian linear regression "
        "with a full covariance, O(dim^2) per update) or full-logistic (the logistic Laplace model with a full "
        "covariance); see swarm_sona.routing.posterior_full.", "diagonal")
    evidence_decay: float = field_doc(
        "Forgetting factor in (0, 1] for model quality that drifts: each update of a model first multiplies its "
        "evidence beyond the anchor by this (about 1 / (1 - g) recent outcomes kept); the anchor is the prior "
        "until an EWC consolidation (LLMRouter.consolidate, or the engine's task boundaries at ewc.lambda) moves "
        "it. 1 = keep all evidence (exact Bayesian update). Needs posterior 'diagonal'.", 1.0)
    learning_rate: float = field_doc(
        "Multiplier of the per-model predictors' diagonal Newton step (1 = the Laplace update); full "
        "posterior: the weight of each observation (1 = exact Bayesian linear regression).", 1.0)
    prior_strength: float = field_doc("Pseudo-observations the quality prior is worth (warm start).", 10.0)
    seed: int = field_doc("Seed for exploration.", 0)
    regularization: float = field_doc("Prior precision (L2 strength) of each embedding-feature weight (full posterior: the ridge "
        "lambda); > 0.", 1.0)
    exploration_scale: float = field_doc("thompson: posterior-std multiplier; linucb: the UCB alpha; >= 0.", 1.0)
    head_weight: float = field_doc(
        "Max weight of the engine's router-head probability in the quality estimate, in [0, 1].", 0.5)
    chars_per_token: float = field_doc("Input-token estimate for per-1M-token prices: ceil(len(task text) / this).", 4.0)
    output_tokens: int = field_doc("Expected output tokens per call, for per-1M-token prices (a model's "
                                   "expected_output_tokens overrides it).", 256)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        names = [m.name for m in self.models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"{self._where('models')}: duplicate model name(s) {sorted(dup)}")
        if ":" not in self.strategy:   # "package.module:function" is imported by the router
            self._check_choice("strategy", tuple(ROUTER_STRATEGY_NAMES))
        if self.fallback is not None and self.models and self.fallback not in names:
            raise ConfigError(f"{self._where('fallback')}: unknown model {self.fallback!r}; models are {names}")
        for n in ("max_cost_per_task", "run_budget"):
            if getattr(self, n) is not None:
                self._check_range(n, 0)
        self._check_choice("on_no_model", ("fallback", "raise"))
        for n in ("quality_weight", "cost_weight", "speed_weight"):
            self._check_range(n, 0)
        self._check_choice("exploration", ("thompson", "linucb", "none"))
        self._check_choice("posterior", ("diagonal", "full", "full-logistic"))
        self._check_range("evidence_decay", 0, 1, lo_open=True)
        if self.evidence_decay < 1 and self.posterior != "diagonal":
            raise ConfigError(f"{self._where('evidence_decay')}: below 1 it needs posterior 'diagonal', "
                              f"got posterior {self.posterior!r}")
        self._check_range("learning_rate", 0, lo_open=True)
        self._check_range("prior_strength", 0)
        self._check_range("regularization", 0, lo_open=True)
        self._check_range("exploration_scale", 0)
        self._check_range("head_weight", 0, 1)
        self._check_range("chars_per_token", 0, lo_open=True)
        self._check_range("output_tokens", 0)

