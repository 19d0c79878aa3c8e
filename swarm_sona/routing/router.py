"""The learned LLM router: strategies, constraints, budgets, cascades and a contextual bandit.

Models come from :class:`~swarm_sona.core.config.LLMRouterConfig` (name, cost per call or per 1M
tokens, prior quality, speed or latency). For every task the router estimates each model's
success probability, removes the models that violate a constraint, and picks one by the
strategy:

- ``quality``: highest expected quality (ties: cheaper).
- ``speed``: fastest (ties: higher quality, then cheaper).
- ``cost-optimized``: cheapest (ties: higher quality). Combine with ``min_quality`` to get
  "the cheapest model good enough for this task".
- ``balanced``: highest ``quality_weight * q - cost_weight * cost / max_cost + speed_weight * speed``
  (costs normalised by the dearest model's estimate for the same task).

Constraints (per call, plus the budgets of the config): ``max_cost`` (USD, estimated),
``min_quality`` (expected success probability), ``timeout`` (expected latency in seconds;
a model whose latency is unknown is not excluded), ``max_cost_per_task`` (over all attempts of
a cascade) and ``run_budget`` (cost reported to :meth:`LLMRouter.feedback` so far). When every
model is excluded the router names which constraint excluded which model, then uses the
``fallback`` model, or raises :class:`NoModelError` (``on_no_model='raise'`` or no fallback).
Budgets are hard limits: if the budgets exclude the fallback too, it raises
:class:`BudgetExhaustedError`.

Costs. ``cost_unit='call'``: the cost. ``cost_unit='1m_tokens'``: ``cost * tokens / 1e6`` with
``tokens = ceil(len(text) / chars_per_token) + output_tokens`` (:func:`estimate_tokens`).
Speed: ``speed`` when given, else ``fastest latency / latency_s`` over the models that give a
latency, else 0.5 (unknown). Expected latency: the mean of the spec's ``latency_s`` (worth one
observation) and the latencies reported to :meth:`feedback`; ``None`` while unknown.

Learning (a contextual bandit). Each model has a logistic success predictor over the task
features ``x = [embedding, 1]`` with a diagonal Gaussian (Laplace) posterior: mean ``w`` and
precision ``P``. The prior is the warm start: the bias weight's mean is ``logit(quality)``
with precision ``prior_strength * q (1 - q)``, every feature weight has mean 0 and precision
``regularization``, so a new router's mean estimate is exactly the quality prior (a static
router). :meth:`feedback` updates only the chosen model (bandit feedback), online::

    p = sigmoid(w . x);  P += p (1 - p) x^2;  w += learning_rate * (y - p) x / P

with ``y = success``. The learned state reads as additive evidence (:meth:`LLMRouter.evidence`:
precisions, precision-weighted means ``P * w`` and the counters): routers that learned from
different tasks combine by adding what each gained (:meth:`LLMRouter.merge_states`, a product
of the Gaussian posteriors; the swarm's coordinators pool the agents' routers the same way,
see :mod:`swarm_sona.consensus.merge`).

Decisions: ``exploration='thompson'`` draws the logit from its posterior
``N(w . x, exploration_scale^2 * sum(x^2 / P))`` (exactly the distribution of ``w . x`` for
``w`` drawn from the posterior); ``'linucb'`` uses the optimistic ``w . x + exploration_scale *
sd``; ``'none'`` uses the mean (deterministic serving). The reported ``expected_quality`` is
always the mean estimate. Optional ``head_probs`` (the engine's router head, one probability
per model) are blended in: ``q = (1 - b) q_bandit + b p_head`` with ``b = head_weight * n /
(n + prior_strength)`` where ``n`` is the model's feedback count, so a fresh head (whose
weights are still random) has no say.

A routing decision (embedding excluded) is a few small matrix-vector products on
preallocated buffers plus a loop over the models.

Example:
    >>> from swarm_sona.routing.router import LLMRouter
    >>> r = LLMRouter({"models": [{"name": "small", "cost": 0.001, "quality": 0.6},
    ...                           {"name": "big", "cost": 0.03, "quality": 0.9}],
    ...                "strategy": "quality", "exploration": "none"}, dim=8)
    >>> d = r.route("prove the lemma")
    >>> d.model, round(d.expected_quality, 2), d["estimated_cost"]
    ('big', 0.9, 0.03)
    >>> r.route("prove the lemma", max_cost=0.01).model
    'small'
    >>> r.feedback("prove the lemma", "small", success=True, reward=1.0, cost=0.001, latency=0.2)
    >>> r.spent
    0.001
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarm_sona.consensus.updates import pool_evidence
from swarm_sona.core.config import LLMRouterConfig
from swarm_sona.core.executor import Executor, Outcome, Task
from swarm_sona.embedding.embedders import Embedder, HashingEmbedder

__all__ = [
    "STRATEGIES",
    "RouterError",
    "NoModelError",
    "BudgetExhaustedError",
    "RouteDecision",
    "Attempt",
    "CascadeResult",
    "LLMRouter",
    "estimate_tokens",
    "EVIDENCE_KEYS",
]

STRATEGIES = ("quality", "speed", "cost-optimized", "balanced")
_PRIORITY_ALIASES = {"cost": "cost-optimized", "cost_optimized": "cost-optimized", "cheap": "cost-optimized",
                     "fast": "speed", "latency": "speed"}
_BUDGET_CONSTRAINTS = ("max_cost_per_task", "run_budget")
_STATE_KIND = "llm_router"
_STATE_VERSION = 1
_EPS = 1e-12
#: the learned state as additive statistics (:meth:`LLMRouter.evidence`): the posteriors'
#: natural parameters (precision, precision-weighted mean) and the counters
EVIDENCE_KEYS = ("precision", "eta", "calls", "successes", "reward_sum", "cost_sum", "latency_sum", "latency_n")


class RouterError(ValueError):
    """The router was built or called with invalid input; the message names what was wrong."""


class NoModelError(RouterError):
    """No model satisfies the constraints (and no fallback may be used).

    ``exclusions`` maps each model to the constraints that excluded it.
    """

    def __init__(self, message: str, exclusions: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(message)
        self.exclusions: dict[str, list[str]] = {k: list(v) for k, v in (exclusions or {}).items()}


class BudgetExhaustedError(NoModelError):
    """The per-task or run budget cannot pay for any model, the fallback included."""


def estimate_tokens(text: str, *, chars_per_token: float = 4.0, output_tokens: int = 0) -> int:
    """Token estimate used with per-1M-token prices: ``ceil(len(text) / chars_per_token) + output_tokens``.

    Example:
        >>> estimate_tokens("x" * 10, chars_per_token=4.0, output_tokens=1)
        4
    """
    return int(math.ceil(len(text) / chars_per_token)) + int(output_tokens)


@dataclass
class RouteDecision(Mapping[str, Any]):
    """The router's answer; also readable like a dict (``d["model"]``).

    ``alternatives``: the other models, each ``{model, estimated_cost, expected_quality,
    expected_latency, score, excluded}`` (``excluded``: the constraints that ruled it out,
    empty when it was feasible but scored lower), best first.
    """

    model: str
    estimated_cost: float
    expected_quality: float
    expected_latency: float | None
    reason: str
    alternatives: list[dict[str, Any]]
    strategy: str
    score: float
    fallback: bool = False
    excluded: dict[str, list[str]] = field(default_factory=dict)

    _KEYS = ("model", "estimated_cost", "expected_quality", "expected_latency", "reason", "alternatives",
             "strategy", "score", "fallback", "excluded")

    def __getitem__(self, key: str) -> Any:
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return {k: getattr(self, k) for k in self._KEYS}


@dataclass
class Attempt:
    """One attempt of a cascade: the decision and what the executor returned."""

    model: str
    decision: RouteDecision
    outcome: Outcome


@dataclass
class CascadeResult:
    """The result of :meth:`LLMRouter.run_cascade`.

    ``stop_reason``: ``success``, ``no_retry`` (retry_with_upgrade is off), ``no_better_model``,
    ``budget`` (better models exist but the budgets exclude them) or ``constraints`` (they are
    excluded by max_cost / timeout).
    """

    attempts: list[Attempt]
    stop_reason: str

    @property
    def outcome(self) -> Outcome:
        """The last attempt's outcome."""
        return self.attempts[-1].outcome

    @property
    def model(self) -> str:
        """The last model tried."""
        return self.attempts[-1].model

    @property
    def success(self) -> bool:
        return self.attempts[-1].outcome.success

    @property
    def total_cost(self) -> float:
        """Cost of every attempt."""
        return float(sum(a.outcome.cost_usd for a in self.attempts))

    @property
    def total_latency(self) -> float:
        return float(sum(a.outcome.latency_s for a in self.attempts))


def _finite(v: Any, what: str, *, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise RouterError(f"{what} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise RouterError(f"{what} must be finite, got {v!r}")
    if lo is not None and f < lo:
        raise RouterError(f"{what} must be >= {lo}, got {v!r}")
    if hi is not None and f > hi:
        raise RouterError(f"{what} must be <= {hi}, got {v!r}")
    return f


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _sigmoid_array(z: np.ndarray) -> np.ndarray:
    """Elementwise :func:`_sigmoid` (the same two stable branches)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _fmt_usd(v: float) -> str:
    return f"${v:.4g}"


class LLMRouter:
    """Learned LLM router (see the module documentation for the rules and the maths).

    ``config``: an :class:`LLMRouterConfig` or a mapping for it; ``dim``: the task-embedding
    dimension; ``embedder``: used when a task comes without an embedding (default
    ``HashingEmbedder(dim)``, created on first use).

    Example:
        >>> r = LLMRouter({"models": [{"name": "a", "cost": 1.0, "quality": 0.5},
        ...                           {"name": "b", "cost": 2.0, "quality": 0.8}],
        ...                "strategy": "cost-optimized", "exploration": "none"}, dim=4)
        >>> import numpy as np
        >>> r.route(embedding=np.zeros(4), min_quality=0.7).model
        'b'
        >>> LLMRouter({"models": []})
        Traceback (most recent call last):
        ...
        swarm_sona.routing.router.RouterError: llm_router.models: the router needs at least one model
    """

    def __init__(self, config: LLMRouterConfig | Mapping[str, Any] | None = None, *, dim: int = 256,
                 embedder: Embedder | None = None) -> None:
        cfg = config if isinstance(config, LLMRouterConfig) else LLMRouterConfig.from_dict(config)
        if not cfg.models:
            raise RouterError("llm_router.models: the router needs at least one model")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise RouterError(f"dim must be a positive integer, got {dim!r}")
        dim = int(dim)
        if embedder is not None and getattr(embedder, "dim", dim) != dim:
            raise RouterError(f"embedder {getattr(embedder, 'name', embedder)!r} has dimension "
                              f"{embedder.dim}, the router expects {dim}")
        self.config = cfg
        self.dim = dim
        self._embedder = embedder
        self.names: tuple[str, ...] = tuple(m.name for m in cfg.models)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        M, D = len(self.names), dim + 1
        self._M, self._D = M, D

        # ---- static model facts -------------------------------------------------------
        self._per_call = np.array([m.cost if m.cost_unit == "call" else 0.0 for m in cfg.models])
        self._per_mtok = np.array([m.cost if m.cost_unit == "1m_tokens" else 0.0 for m in cfg.models])
        self._token_priced = bool(np.any(self._per_mtok > 0))
        self._per_call_l: list[float] = self._per_call.tolist()
        self._per_mtok_l: list[float] = self._per_mtok.tolist()
        lat_known = [m.latency_s for m in cfg.models if m.latency_s is not None]
        fastest = min(lat_known) if lat_known else None
        speeds = []
        for m in cfg.models:
            if m.speed is not None:
                speeds.append(float(m.speed))
            elif m.latency_s is not None and fastest is not None:
                speeds.append(float(fastest / m.latency_s))
            else:
                speeds.append(0.5)
        self._speed = speeds
        self._prior_quality = [float(m.quality) for m in cfg.models]
        self._strategy = cfg.strategy
        self._fallback = cfg.fallback

        # ---- learned state ---------------------------------------------------------------
        q = np.clip(np.array(self._prior_quality), 1e-3, 1 - 1e-3)
        self._W0 = np.zeros((M, D))
        self._W0[:, -1] = np.log(q / (1 - q))
        self._P0 = np.full((M, D), float(cfg.regularization))
        self._P0[:, -1] = np.maximum(cfg.prior_strength * q * (1 - q), 1e-3)
        self._W = self._W0.copy()
        self._P = self._P0.copy()
        self._V = 1.0 / self._P
        # counts are float64: pooled across agents they are sums, gossip-averaged they are
        # fractional effective counts (an integer rounding would keep gossip from converging)
        self._calls = np.zeros(M, np.float64)
        self._successes = np.zeros(M, np.float64)
        self._reward_sum = np.zeros(M)
        self._cost_sum = np.zeros(M)
        self._lat_sum = self._spec_lat_sum()
        self._lat_n = self._spec_lat_n()
        self._exp_lat: list[float | None] = [None] * M
        self._refresh_latency()
        self.spent = 0.0
        self._rng = np.random.default_rng(cfg.seed)

        # ---- preallocated buffers for the hot path ------------------------------------------
        self._xb = np.zeros(D)
        self._xb[-1] = 1.0
        self._x2 = np.zeros(D)
        self._mu = np.zeros(M)
        self._var = np.zeros(M)
        self._eps = np.zeros(M)
        self._last_text: str | None = None
        self._last_x = np.zeros(D)
        self._has_last = False

    # ------------------------------------------------------------------------------------
    # properties
    # ------------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The embedder used for tasks given without an embedding."""
        if self._embedder is None:
            self._embedder = HashingEmbedder(self.dim)
        return self._embedder

    @property
    def remaining_budget(self) -> float | None:
        """Run budget minus the cost reported so far, or None without a run budget."""
        rb = self.config.run_budget
        return None if rb is None else rb - self.spent

    def reset_run(self) -> None:
        """Start a new run: the run budget's spend goes back to zero (learning is kept)."""
        self.spent = 0.0

    # ------------------------------------------------------------------------------------
    # input handling
    # ------------------------------------------------------------------------------------
    def _text(self, task: Task | str | None) -> str | None:
        if task is None or isinstance(task, str):
            return task
        if isinstance(task, Task):
            return task.text
        raise RouterError(f"task must be a str, a Task or None, got {type(task).__name__}")

    def _load(self, text: str | None, embedding: Any) -> None:
        """Fill ``self._xb[:dim]`` with the task's features."""
        xb = self._xb
        if embedding is not None:
            if type(embedding) is np.ndarray and embedding.shape == (self.dim,):
                xb[:-1] = embedding
            else:
                try:
                    arr = np.asarray(embedding, dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise RouterError(f"embedding is not numeric: {exc}") from exc
                if arr.shape != (self.dim,):
                    raise RouterError(f"embedding has shape {arr.shape}, expected ({self.dim},)")
                xb[:-1] = arr
            return
        if text is None:
            raise RouterError("a task text or an embedding is needed")
        if self._has_last and text == self._last_text:
            xb[:] = self._last_x
            return
        vec = np.asarray(self.embedder.embed([text]), dtype=np.float64)
        if vec.shape != (1, self.dim):
            raise RouterError(f"embedder returned shape {vec.shape}, expected (1, {self.dim})")
        xb[:-1] = vec[0]

    def _head(self, head_probs: Any) -> list[float | None] | None:
        if head_probs is None:
            return None
        M = self._M
        out: list[float | None] = [None] * M
        if isinstance(head_probs, Mapping):
            for k, v in head_probs.items():
                i = self.index.get(k)
                if i is None:
                    raise RouterError(f"head_probs: unknown model {k!r}; models are {list(self.names)}")
                out[i] = _finite(v, f"head_probs[{k!r}]", lo=0.0, hi=1.0)
            return out
        arr = np.asarray(head_probs, dtype=np.float64).ravel()
        if arr.shape != (M,):
            raise RouterError(f"head_probs has {arr.size} entries, expected {M} (one per model)")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
            raise RouterError("head_probs must be probabilities in [0, 1]")
        return arr.tolist()

    def _strategy_of(self, priority: str | None) -> str:
        if priority is None:
            return self._strategy
        s = _PRIORITY_ALIASES.get(priority, priority)
        if s not in STRATEGIES:
            raise RouterError(f"priority must be one of {list(STRATEGIES)} (or 'cost', 'fast'), got {priority!r}")
        return s

    # ------------------------------------------------------------------------------------
    # estimates
    # ------------------------------------------------------------------------------------
    def _refresh_latency(self) -> None:
        self._exp_lat = [float(s / n) if n > 0 else None for s, n in zip(self._lat_sum, self._lat_n, strict=True)]

    def _estimates(self, head: list[float | None] | None, explore: bool) -> tuple[list[float], list[float]]:
        """Mean and decision success probabilities for the features in ``self._xb``.

        Small per-model vectors are handled as Python floats: for a handful of models that is
        several times faster than numpy's per-call overhead. :meth:`route_batch` computes the
        same estimates vectorised over tasks; routing one task through that code measured
        twice as slow (4 models, dim 256: 7.9 -> 14.9 us per :meth:`route`), so the two stay
        apart, pinned equal by the tests.
        """
        xb = self._xb
        np.dot(self._W, xb, out=self._mu)
        mu = self._mu.tolist()
        if not math.isfinite(math.fsum(mu)):
            raise RouterError("embedding contains NaN or inf")
        mean = [_sigmoid(m) for m in mu]
        mode = self.config.exploration if explore else "none"
        if mode == "none":
            dec = mean
        else:
            np.multiply(xb, xb, out=self._x2)
            np.dot(self._V, self._x2, out=self._var)
            sc = self.config.exploration_scale
            sqrt = math.sqrt
            if mode == "thompson":
                self._rng.standard_normal(out=self._eps)
                dec = [_sigmoid(m + sc * sqrt(v) * e)
                       for m, v, e in zip(mu, self._var.tolist(), self._eps.tolist(), strict=True)]
            else:
                dec = [_sigmoid(m + sc * sqrt(v)) for m, v in zip(mu, self._var.tolist(), strict=True)]
        if head is not None:
            hw, ps = self.config.head_weight, self.config.prior_strength
            calls = self._calls
            for i, h in enumerate(head):
                if h is None:
                    continue
                n = float(calls[i])
                b = hw * n / (n + ps) if n + ps > 0 else hw
                mean[i] = (1 - b) * mean[i] + b * h
                if dec is not mean:
                    dec[i] = (1 - b) * dec[i] + b * h
        return mean, dec

    def _costs(self, text: str | None) -> list[float]:
        if not self._token_priced:
            return list(self._per_call_l)
        if text is None:
            raise RouterError("per-1M-token prices need the task text to estimate tokens")
        cfg = self.config
        mtok = estimate_tokens(text, chars_per_token=cfg.chars_per_token, output_tokens=cfg.output_tokens) / 1e6
        return [c + m * mtok for c, m in zip(self._per_call_l, self._per_mtok_l, strict=True)]

    def estimate_cost(self, task: Task | str | None, model: str) -> float:
        """Estimated cost in USD of running ``task`` on ``model``.

        Example:
            >>> r = LLMRouter({"models": [{"name": "m", "cost": 2.0, "cost_unit": "1m_tokens"}],
            ...                "output_tokens": 0, "chars_per_token": 4}, dim=4)
            >>> r.estimate_cost("x" * 400, "m")
            0.0002
        """
        i = self._model_index(model)
        return self._costs(self._text(task))[i]

    def success_probabilities(self, task: Task | str | None = None, *, embedding: Any = None,
                              head_probs: Any = None) -> np.ndarray:
        """Mean estimated success probability of every model (in config order) for a task.

        Example:
            >>> r = LLMRouter({"models": [{"name": "a", "quality": 0.3}, {"name": "b", "quality": 0.7}]}, dim=4)
            >>> r.success_probabilities(embedding=np.zeros(4)).round(2).tolist()
            [0.3, 0.7]
        """
        self._load(self._text(task), embedding)
        head = self._head(head_probs)
        mean, _ = self._estimates(head, explore=False)
        return np.array(mean)

    # ------------------------------------------------------------------------------------
    # routing
    # ------------------------------------------------------------------------------------
    def _caps(self, max_cost: float | None, task_spent: float) -> list[tuple[str, float]]:
        caps: list[tuple[str, float]] = []
        if max_cost is not None:
            caps.append(("max_cost", max_cost))
        cfg = self.config
        if cfg.max_cost_per_task is not None:
            caps.append(("max_cost_per_task", cfg.max_cost_per_task - task_spent))
        if cfg.run_budget is not None:
            caps.append(("run_budget", cfg.run_budget - self.spent))
        return caps

    @staticmethod
    def _exclusions(cost: float, q: float, lat: float | None, caps: list[tuple[str, float]],
                    min_quality: float | None, timeout: float | None) -> list[str]:
        why: list[str] = []
        for label, cap in caps:
            if cost > cap + _EPS:
                left = "remaining " if label in _BUDGET_CONSTRAINTS else ""
                why.append(f"{label}: estimated {_fmt_usd(cost)} > {left}{_fmt_usd(max(cap, 0.0))}")
        if min_quality is not None and q < min_quality:
            why.append(f"min_quality: expected {q:.3f} < {min_quality:.3f}")
        if timeout is not None and lat is not None and lat > timeout:
            why.append(f"timeout: expected latency {lat:.3g}s > {timeout:.3g}s")
        return why

    def _utility(self, strategy: str, q: float, cost: float, speed: float, top_cost: float) -> tuple[float, ...]:
        if strategy == "quality":
            return (q, -cost)
        if strategy == "speed":
            return (speed, q, -cost)
        if strategy == "cost-optimized":
            return (-cost, q)
        cfg = self.config
        c = cost / top_cost if top_cost > 0 else 0.0
        return (cfg.quality_weight * q - cfg.cost_weight * c + cfg.speed_weight * speed, -cost)

    def route(self, task: Task | str | None = None, *, embedding: Any = None, head_probs: Any = None,
              priority: str | None = None, max_cost: float | None = None, min_quality: float | None = None,
              timeout: float | None = None) -> RouteDecision:
        """Pick a model for ``task`` (text or :class:`Task`; ``embedding`` skips embedding it).

        ``priority`` overrides the strategy for this call; ``max_cost`` (USD), ``min_quality``
        (in [0, 1]) and ``timeout`` (s) are constraints. Raises :class:`NoModelError` /
        :class:`BudgetExhaustedError` as described in the module documentation.
        """
        return self._route(task, embedding, head_probs, priority, max_cost, min_quality, timeout)

    def _route(self, task: Task | str | None, embedding: Any, head_probs: Any, priority: str | None,
               max_cost: float | None, min_quality: float | None, timeout: float | None) -> RouteDecision:
        text = self._text(task)
        strategy, max_cost, min_quality, timeout = self._constraints(priority, max_cost, min_quality, timeout)
        head = self._head(head_probs)
        costs = self._costs(text)
        self._load(text, embedding)
        if text is not None:
            self._last_text = text
            self._last_x[:] = self._xb
            self._has_last = True
        mean, dec = self._estimates(head, explore=True)
        return self._decide(strategy, costs, mean, dec, self._caps(max_cost, 0.0), min_quality, timeout)

    def route_batch(self, tasks: Sequence[Task | str | None], *, embeddings: Any = None, head_probs: Any = None,
                    priority: str | None = None, max_cost: float | None = None, min_quality: float | None = None,
                    timeout: float | None = None) -> list[RouteDecision]:
        """Route many tasks against the router's current state, with vectorised estimates.

        The decisions are those of calling :meth:`route` on each task in order with no
        :meth:`feedback` in between: same estimates (up to float rounding), same exploration
        draws from the router's generator, same constraints. ``embeddings``: (n, dim) (None:
        the texts are embedded in one call); ``head_probs``: an (n, M) array, or one entry per
        task in any form :meth:`route` accepts (None entries allowed). Everything is validated
        before any state changes.

        Example:
            >>> r = LLMRouter({"models": [{"name": "a", "cost": 1.0, "quality": 0.5},
            ...                           {"name": "b", "cost": 2.0, "quality": 0.8}],
            ...                "strategy": "quality", "exploration": "none"}, dim=4)
            >>> [d.model for d in r.route_batch([None, None], embeddings=np.zeros((2, 4)), max_cost=1.5)]
            ['a', 'a']
        """
        if isinstance(tasks, (str, Task)):
            raise RouterError("route_batch takes a sequence of tasks; use route() for one task")
        texts = [self._text(t) for t in tasks]
        n, M = len(texts), self._M
        strategy, max_cost, min_quality, timeout = self._constraints(priority, max_cost, min_quality, timeout)
        X = self._batch_features(texts, embeddings)
        head = self._batch_head(head_probs, n)
        costs_all = [self._costs(t) for t in texts] if self._token_priced else None
        if n == 0:
            return []
        mu = X @ self._W.T
        if not np.isfinite(mu).all():
            raise RouterError("embedding contains NaN or inf")
        mean = _sigmoid_array(mu)
        mode = self.config.exploration
        if mode == "none":
            dec = mean
        else:
            sd = np.sqrt((X * X) @ self._V.T)
            sd *= self.config.exploration_scale
            if mode == "thompson":
                sd *= self._rng.standard_normal((n, M))
            dec = _sigmoid_array(mu + sd)
        if head is not None:
            hw, ps = self.config.head_weight, self.config.prior_strength
            calls = self._calls.astype(np.float64)
            b = np.where(calls + ps > 0, hw * calls / np.maximum(calls + ps, _EPS), hw)
            has = ~np.isnan(head)
            blended = np.where(has, (1 - b) * mean + b * np.where(has, head, 0.0), mean)
            if dec is not mean:
                dec = np.where(has, (1 - b) * dec + b * np.where(has, head, 0.0), dec)
            mean = blended
            if mode == "none":
                dec = mean
        last = next((i for i in range(n - 1, -1, -1) if texts[i] is not None), None)
        if last is not None:   # as after routing the tasks one by one
            self._last_text = texts[last]
            self._last_x[:] = X[last]
            self._has_last = True
        caps = self._caps(max_cost, 0.0)
        mean_l = mean.tolist()
        dec_l = None if dec is mean else dec.tolist()
        costs_const = list(self._per_call_l)
        out = []
        for i in range(n):
            m = mean_l[i]
            out.append(self._decide(strategy, costs_all[i] if costs_all is not None else costs_const, m,
                                    m if dec_l is None else dec_l[i], caps, min_quality, timeout))
        return out

    def _batch_features(self, texts: list[str | None], embeddings: Any) -> np.ndarray:
        """(n, dim + 1) features ``[embedding, 1]``, checked."""
        n = len(texts)
        if embeddings is None:
            missing = [i for i, t in enumerate(texts) if t is None]
            if missing:
                raise RouterError(f"task {missing[0]}: a task text or an embedding is needed")
            E = np.asarray(self.embedder.embed(texts), dtype=np.float64) if n else np.zeros((0, self.dim))
        else:
            try:
                E = np.asarray(embeddings, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise RouterError(f"embeddings are not numeric: {exc}") from exc
        if E.shape != (n, self.dim):
            raise RouterError(f"embeddings have shape {E.shape}, expected ({n}, {self.dim})")
        X = np.empty((n, self._D))
        X[:, :-1] = E
        X[:, -1] = 1.0
        return X

    def _batch_head(self, head_probs: Any, n: int) -> np.ndarray | None:
        """(n, M) head probabilities with NaN where a model has none, or None."""
        if head_probs is None:
            return None
        if isinstance(head_probs, np.ndarray) and head_probs.ndim == 2:
            H = np.asarray(head_probs, dtype=np.float64)
            if H.shape != (n, self._M):
                raise RouterError(f"head_probs has shape {H.shape}, expected ({n}, {self._M})")
            if not np.isfinite(H).all() or (H < 0).any() or (H > 1).any():
                raise RouterError("head_probs must be probabilities in [0, 1]")
            return H
        rows = list(head_probs)
        if len(rows) != n:
            raise RouterError(f"head_probs has {len(rows)} entries for {n} tasks")
        H = np.full((n, self._M), np.nan)
        for i, hp in enumerate(rows):
            h = self._head(hp)
            if h is not None:
                H[i] = [np.nan if v is None else v for v in h]
        return H

    def _constraints(self, priority: str | None, max_cost: float | None, min_quality: float | None,
                     timeout: float | None) -> tuple[str, float | None, float | None, float | None]:
        """The strategy for ``priority`` and the checked per-call constraints."""
        strategy = self._strategy_of(priority)
        if max_cost is not None:
            max_cost = _finite(max_cost, "max_cost", lo=0.0)
        if min_quality is not None:
            min_quality = _finite(min_quality, "min_quality", lo=0.0, hi=1.0)
        if timeout is not None:
            timeout = _finite(timeout, "timeout", lo=0.0)
        return strategy, max_cost, min_quality, timeout

    def _decide(self, strategy: str, costs: list[float], mean: list[float], dec: list[float],
                caps: list[tuple[str, float]], min_quality: float | None, timeout: float | None) -> RouteDecision:
        """The decision for one task from its estimates (shared by :meth:`route` and :meth:`route_batch`)."""
        lats = self._exp_lat
        speeds = self._speed
        top_cost = max(costs)
        rows: list[tuple[tuple[float, ...], int]] = []
        excluded: dict[str, list[str]] = {}
        for i in range(self._M):
            name = self.names[i]
            c = costs[i]
            ok = True
            for _, cap in caps:
                if c > cap + _EPS:
                    ok = False
                    break
            if ok and min_quality is not None and dec[i] < min_quality:
                ok = False
            if ok and timeout is not None and lats[i] is not None and lats[i] > timeout:  # type: ignore[operator]
                ok = False
            if not ok:
                excluded[name] = self._exclusions(c, dec[i], lats[i], caps, min_quality, timeout)
                continue
            rows.append((self._utility(strategy, dec[i], c, speeds[i], top_cost), i))
        mode = self.config.exploration
        if rows:
            rows.sort(key=lambda r: r[0], reverse=True)
            best = rows[0][1]
            fallback = False
            why = (f"{strategy}: best of {len(rows)} feasible model(s) "
                   f"(expected quality {mean[best]:.3f}, estimated cost {_fmt_usd(costs[best])}"
                   f"{'' if mode == 'none' else f', {mode} exploration'})")
            if excluded:
                why += "; excluded: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in excluded.items())
        else:
            best, why = self._no_model(excluded, costs, mean, lats, caps, min_quality, timeout)
            fallback = True
        alternatives = [self._alt(i, costs, mean, u[0], None) for u, i in rows[1:]] if rows else []
        alternatives.extend(self._alt(self.index[k], costs, mean, None, v)
                            for k, v in excluded.items() if self.index[k] != best)
        score = rows[0][0][0] if rows else float("nan")
        return RouteDecision(model=self.names[best], estimated_cost=costs[best], expected_quality=mean[best],
                             expected_latency=lats[best], reason=why, alternatives=alternatives,
                             strategy=strategy, score=score, fallback=fallback, excluded=excluded)

    def _alt(self, i: int, costs: list[float], mean: list[float], score: float | None,
             why: list[str] | None) -> dict[str, Any]:
        return {"model": self.names[i], "estimated_cost": costs[i], "expected_quality": mean[i],
                "expected_latency": self._exp_lat[i], "score": score, "excluded": list(why or ())}

    def _no_model(self, excluded: dict[str, list[str]], costs: list[float], mean: list[float],
                  lats: list[float | None], caps: list[tuple[str, float]], min_quality: float | None,
                  timeout: float | None) -> tuple[int, str]:
        detail = "; ".join(f"{k} excluded by {', '.join(v)}" for k, v in excluded.items())
        msg = f"no model satisfies the constraints: {detail}"
        only_budget = all(any(r.startswith(_BUDGET_CONSTRAINTS) for r in v) for v in excluded.values())
        if self.config.on_no_model == "raise":
            raise (BudgetExhaustedError if only_budget else NoModelError)(msg, excluded)
        fb = self._fallback
        if fb is None:
            raise (BudgetExhaustedError if only_budget else NoModelError)(
                msg + " (and no fallback model is configured)", excluded)
        i = self.index[fb]
        budget_caps = [c for c in caps if c[0] in _BUDGET_CONSTRAINTS]
        over = self._exclusions(costs[i], mean[i], lats[i], budget_caps, None, None)
        if over:
            raise BudgetExhaustedError(msg + f"; the fallback {fb!r} is over budget too ({', '.join(over)})",
                                       excluded)
        return i, f"fallback {fb!r}: {msg}"

    # ------------------------------------------------------------------------------------
    # learning
    # ------------------------------------------------------------------------------------
    def _model_index(self, model: str) -> int:
        i = self.index.get(model) if isinstance(model, str) else None
        if i is None:
            raise RouterError(f"unknown model {model!r}; models are {list(self.names)}")
        return i

    def _update(self, i: int, xb: np.ndarray, y: float) -> None:
        """The posterior update of model ``i`` for features ``xb`` and label ``y`` (see the
        module docs), in place on preallocated buffers; raises before any change when
        ``w . x`` is not finite. Shared by :meth:`feedback` and :meth:`feedback_batch`."""
        w, P, V, x2 = self._W[i], self._P[i], self._V[i], self._x2
        z = float(w @ xb)
        if not math.isfinite(z):
            raise RouterError("embedding contains NaN or inf")
        p = _sigmoid(z)
        np.multiply(xb, xb, out=x2)
        x2 *= p * (1.0 - p)
        P += x2
        np.divide(1.0, P, out=V)
        np.multiply(xb, V, out=x2)
        x2 *= self.config.learning_rate * (y - p)
        w += x2

    def feedback(self, task: Task | str | None, model: str, success: bool, reward: float | None = None,
                 cost: float = 0.0, latency: float | None = None, *, embedding: Any = None) -> None:
        """Learn from the outcome of ``model`` on ``task`` (bandit feedback: that model only).

        ``success`` is the label of the model's success predictor; ``reward`` (in [0, 1]) is
        kept in the statistics; ``cost`` (USD) counts toward the run budget; ``latency`` (s)
        updates the model's expected latency. ``embedding`` defaults to the last routed
        task's features when the text is the same, else the embedder's vector.
        """
        i = self._model_index(model)
        if not isinstance(success, (bool, np.bool_)):
            raise RouterError(f"success must be a bool, got {success!r}")
        if reward is not None:
            reward = _finite(reward, "reward", lo=0.0, hi=1.0)
        cost = _finite(cost, "cost", lo=0.0)
        if latency is not None:
            latency = _finite(latency, "latency", lo=0.0)
        text = self._text(task)
        self._load(text, embedding)
        y = 1.0 if success else 0.0
        self._update(i, self._xb, y)
        self._calls[i] += 1
        self._successes[i] += int(success)
        self._reward_sum[i] += y if reward is None else reward
        self._cost_sum[i] += cost
        self.spent += cost
        if latency is not None:
            self._lat_sum[i] += latency
            self._lat_n[i] += 1
            self._exp_lat[i] = float(self._lat_sum[i] / self._lat_n[i])

    def feedback_batch(self, tasks: Sequence[Task | str | None], models: Sequence[str], successes: Sequence[bool],
                       rewards: Sequence[float | None] | None = None, costs: Sequence[float] | None = None,
                       latencies: Sequence[float | None] | None = None, *, embeddings: Any = None) -> None:
        """:meth:`feedback` for many outcomes: the same state as calling it row by row, in order.

        Every input is validated before anything changes (a bad row leaves the router as it
        was); then the per-model posterior updates run in order on preallocated buffers.
        ``embeddings``: (n, dim); None: like :meth:`feedback`, a row whose text is the last
        routed text reuses its features, the others are embedded in one call.

        Example:
            >>> r = LLMRouter({"models": [{"name": "a"}, {"name": "b"}]}, dim=4)
            >>> r.feedback_batch([None, None], ["a", "b"], [True, False], costs=[0.5, 0.25],
            ...                  embeddings=np.eye(4)[:2])
            >>> [m["calls"] for m in r.stats()["models"].values()], r.spent
            ([1, 1], 0.75)
        """
        if isinstance(tasks, (str, Task)):
            raise RouterError("feedback_batch takes a sequence of tasks; use feedback() for one task")
        texts = [self._text(t) for t in tasks]
        n = len(texts)
        models, successes = list(models), list(successes)
        for what, seq in (("models", models), ("successes", successes), ("rewards", rewards), ("costs", costs),
                          ("latencies", latencies)):
            if seq is not None and len(seq) != n:
                raise RouterError(f"feedback_batch: {len(seq)} {what} for {n} tasks")
        idx = [self._model_index(m) for m in models]
        for s in successes:
            if not isinstance(s, (bool, np.bool_)):
                raise RouterError(f"success must be a bool, got {s!r}")
        ys = [1.0 if s else 0.0 for s in successes]
        rw = ys if rewards is None else [y if r is None else _finite(r, "reward", lo=0.0, hi=1.0)
                                         for y, r in zip(ys, rewards, strict=True)]
        cs = [0.0] * n if costs is None else [_finite(c, "cost", lo=0.0) for c in costs]
        lt = None if latencies is None else [None if v is None else _finite(v, "latency", lo=0.0) for v in latencies]
        if embeddings is None and n:
            reuse = [self._has_last and t is not None and t == self._last_text for t in texts]
            todo = [i for i in range(n) if not reuse[i]]
            X = np.empty((n, self._D))
            X[:, -1] = 1.0
            if todo:
                X[todo] = self._batch_features([texts[i] for i in todo], None)
            for i in range(n):
                if reuse[i]:
                    X[i] = self._last_x
        else:
            X = self._batch_features(texts, embeddings)
        if not np.isfinite(X).all():
            raise RouterError("embedding contains NaN or inf")
        update = self._update
        for k in range(n):
            update(idx[k], X[k], ys[k])
        np.add.at(self._calls, idx, 1)
        np.add.at(self._successes, idx, [int(s) for s in successes])
        np.add.at(self._reward_sum, idx, rw)
        np.add.at(self._cost_sum, idx, cs)
        spent = self.spent
        for c in cs:
            spent += c
        self.spent = spent
        if lt is not None:
            rows = [k for k in range(n) if lt[k] is not None]
            if rows:
                li = [idx[k] for k in rows]
                np.add.at(self._lat_sum, li, [lt[k] for k in rows])
                np.add.at(self._lat_n, li, 1)
                for i in set(li):
                    self._exp_lat[i] = float(self._lat_sum[i] / self._lat_n[i])

    # ------------------------------------------------------------------------------------
    # cascade
    # ------------------------------------------------------------------------------------
    def run_cascade(self, task: Task | str, executor: Executor, *, patterns: list[dict[str, Any]] | None = None,
                    embedding: Any = None, head_probs: Any = None, priority: str | None = None,
                    max_cost: float | None = None, min_quality: float | None = None,
                    timeout: float | None = None, learn: bool = True) -> CascadeResult:
        """Route ``task``, run it with ``executor`` and, with ``retry_with_upgrade``, retry a
        failure on the next model up the quality order (this task's expected qualities at the
        start) until success, the models or the budgets run out. Every attempt's cost counts
        toward ``max_cost_per_task`` and the run budget; with ``learn`` each attempt is fed to
        :meth:`feedback`.

        Example:
            >>> from swarm_sona.core.executor import Outcome
            >>> r = LLMRouter({"models": [{"name": "s", "cost": 1, "quality": 0.6},
            ...     {"name": "b", "cost": 5, "quality": 0.9}], "strategy": "cost-optimized",
            ...     "retry_with_upgrade": True, "exploration": "none"}, dim=4)
            >>> ex = lambda t, m, p: Outcome("", float(m == "b"), m == "b", cost_usd=float(1 if m == "s" else 5))
            >>> res = r.run_cascade("hard task", ex)
            >>> [a.model for a in res.attempts], res.total_cost, res.success
            (['s', 'b'], 6.0, True)
        """
        task_obj = task if isinstance(task, Task) else Task(text=self._text(task) or "")
        patterns = list(patterns or [])
        # fix the task's features once: feedback and upgrades reuse them
        self._load(task_obj.text, embedding)
        x = self._xb.copy()
        head = self._head(head_probs)
        mean0, _ = self._estimates(head, explore=False)
        order = sorted(range(self._M), key=lambda i: (mean0[i], -self._prior_quality[i]))
        decision = self._route(task_obj, x[:-1], head_probs, priority, max_cost, min_quality, timeout)
        attempts: list[Attempt] = []
        task_spent = 0.0
        while True:
            outcome = executor(task_obj, decision.model, patterns)
            if not isinstance(outcome, Outcome):
                raise RouterError(f"executor returned {type(outcome).__name__}, expected Outcome")
            attempts.append(Attempt(decision.model, decision, outcome))
            task_spent += outcome.cost_usd
            if learn:
                self.feedback(task_obj, decision.model, outcome.success, outcome.reward, outcome.cost_usd,
                              outcome.latency_s, embedding=x[:-1])
            else:
                self.spent += outcome.cost_usd
            if outcome.success:
                return CascadeResult(attempts, "success")
            if not self.config.retry_with_upgrade:
                return CascadeResult(attempts, "no_retry")
            nxt, stop = self._upgrade(task_obj, x, head, order, [a.model for a in attempts], max_cost, timeout,
                                      task_spent)
            if nxt is None:
                return CascadeResult(attempts, stop)
            decision = nxt

    def _upgrade(self, task: Task, x: np.ndarray, head: list[float | None] | None, order: list[int], tried: list[str], max_cost: float | None,
                 timeout: float | None, task_spent: float) -> tuple[RouteDecision | None, str]:
        pos = order.index(self.index[tried[-1]])
        higher = [i for i in order[pos + 1:] if self.names[i] not in tried]
        if not higher:
            return None, "no_better_model"
        self._xb[:] = x
        costs = self._costs(task.text)
        mean, _ = self._estimates(head, explore=False)
        caps = self._caps(max_cost, task_spent)
        budget_only = True
        for i in higher:
            why = self._exclusions(costs[i], mean[i], self._exp_lat[i], caps, None, timeout)
            if not why:
                others = [self._alt(j, costs, mean, None, ["not the next model up"]) for j in higher if j != i]
                return RouteDecision(
                    model=self.names[i], estimated_cost=costs[i], expected_quality=mean[i],
                    expected_latency=self._exp_lat[i],
                    reason=f"retry_with_upgrade: {tried[-1]!r} failed; {self.names[i]!r} is the next model up",
                    alternatives=others, strategy="upgrade", score=mean[i]), ""
            budget_only = budget_only and all(r.startswith(_BUDGET_CONSTRAINTS) for r in why)
        return None, "budget" if budget_only else "constraints"

    # ------------------------------------------------------------------------------------
    # statistics and state
    # ------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-model calls, success rate, mean reward, cost; run spend and remaining budget."""
        models = {}
        for i, n in enumerate(self.names):
            c = float(self._calls[i])
            models[n] = {"calls": int(round(c)), "success_rate": self._successes[i] / c if c else None,
                         "mean_reward": self._reward_sum[i] / c if c else None, "cost": float(self._cost_sum[i]),
                         "expected_latency": self._exp_lat[i]}
        return {"models": models, "spent": self.spent, "remaining_budget": self.remaining_budget,
                "strategy": self._strategy, "exploration": self.config.exploration}

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (lists, floats, numpy arrays) for :mod:`swarm_sona.core.codec` checkpoints.

        Example:
            >>> from swarm_sona.core import codec
            >>> r = LLMRouter({"models": [{"name": "a"}]}, dim=4)
            >>> r2 = LLMRouter({"models": [{"name": "a"}]}, dim=4)
            >>> r2.load_state_dict(codec.unpackb(codec.packb(r.state_dict())))
        """
        return {"kind": _STATE_KIND, "version": _STATE_VERSION, "models": list(self.names), "dim": self.dim,
                "weights": self._W.copy(), "precision": self._P.copy(),
                "prior_weights": self._W0.copy(), "prior_precision": self._P0.copy(),
                "calls": self._calls.copy(), "successes": self._successes.copy(),
                "reward_sum": self._reward_sum.copy(), "cost_sum": self._cost_sum.copy(),
                "latency_sum": self._lat_sum.copy(), "latency_n": self._lat_n.copy(), "spent": float(self.spent)}

    def _check_state(self, state: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(state, Mapping):
            raise RouterError(f"router state must be a mapping, got {type(state).__name__}")
        if state.get("kind") != _STATE_KIND or state.get("version") != _STATE_VERSION:
            raise RouterError(f"not a router state of version {_STATE_VERSION} "
                              f"(kind={state.get('kind')!r}, version={state.get('version')!r})")
        if list(state.get("models", ())) != list(self.names):
            raise RouterError(f"router state is for models {list(state.get('models', ()))}, "
                              f"this router has {list(self.names)}")
        if state.get("dim") != self.dim:
            raise RouterError(f"router state has dim {state.get('dim')!r}, this router has {self.dim}")
        shapes = {"weights": (self._M, self._D), "precision": (self._M, self._D),
                  "prior_weights": (self._M, self._D), "prior_precision": (self._M, self._D),
                  "calls": (self._M,), "successes": (self._M,), "reward_sum": (self._M,), "cost_sum": (self._M,),
                  "latency_sum": (self._M,), "latency_n": (self._M,)}
        out: dict[str, np.ndarray] = {}
        for k, shp in shapes.items():
            try:
                a = np.asarray(state[k], dtype=np.float64)
            except KeyError as exc:
                raise RouterError(f"router state lacks {k!r}") from exc
            except (TypeError, ValueError) as exc:
                raise RouterError(f"router state {k!r} is not numeric") from exc
            if a.shape != shp or not np.all(np.isfinite(a)):
                raise RouterError(f"router state {k!r} must be finite with shape {shp}, got {a.shape}")
            out[k] = a
        if np.any(out["precision"] <= 0) or np.any(out["prior_precision"] <= 0):
            raise RouterError("router state precisions must be > 0")
        _finite(state.get("spent"), "router state 'spent'", lo=0.0)
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Install a state from :meth:`state_dict` (validated first; on error nothing changes)."""
        a = self._check_state(state)
        self._W[:] = a["weights"]
        self._P[:] = a["precision"]
        np.divide(1.0, self._P, out=self._V)
        self._W0[:] = a["prior_weights"]
        self._P0[:] = a["prior_precision"]
        self._calls[:] = a["calls"]
        self._successes[:] = a["successes"]
        self._reward_sum[:] = a["reward_sum"]
        self._cost_sum[:] = a["cost_sum"]
        self._lat_sum[:] = a["latency_sum"]
        self._lat_n[:] = a["latency_n"]
        self.spent = float(state["spent"])
        self._refresh_latency()

    # ---- the posterior as additive evidence ----------------------------------------------
    @staticmethod
    def _evidence_of(a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ev = {"precision": np.array(a["precision"], np.float64), "eta": a["precision"] * a["weights"]}
        for k in EVIDENCE_KEYS[2:]:
            ev[k] = np.array(a[k], np.float64)
        return ev

    def evidence(self) -> dict[str, np.ndarray]:
        """The learned state as additive statistics (float64), keys :data:`EVIDENCE_KEYS`:
        the natural parameters of each model's Gaussian posterior (``precision`` P and
        ``eta`` = P * mean) and the counters. Evidence from different data adds: the sum of
        two routers' gains over a shared base is the product of their posteriors
        (:meth:`merge_states`, and the swarm's coordinator merge).

        Example:
            >>> r = LLMRouter({"models": [{"name": "m"}]}, dim=2)
            >>> sorted(r.evidence()) == sorted(EVIDENCE_KEYS)
            True
        """
        return self._evidence_of({"weights": self._W, "precision": self._P, "calls": self._calls,
                                  "successes": self._successes, "reward_sum": self._reward_sum,
                                  "cost_sum": self._cost_sum, "latency_sum": self._lat_sum, "latency_n": self._lat_n})

    def prior_evidence(self) -> dict[str, np.ndarray]:
        """:meth:`evidence` of the prior (a router that has seen nothing)."""
        M = self._M
        return self._evidence_of({"weights": self._W0, "precision": self._P0, "calls": np.zeros(M),
                                  "successes": np.zeros(M), "reward_sum": np.zeros(M), "cost_sum": np.zeros(M),
                                  "latency_sum": self._spec_lat_sum(), "latency_n": self._spec_lat_n()})

    def state_from_evidence(self, evidence: Mapping[str, Any]) -> dict[str, Any]:
        """A :meth:`state_dict` with the learned part given by ``evidence`` (the inverse of
        :meth:`evidence`; counts are rounded); the prior and ``spent`` are this router's.
        Raises :class:`RouterError` for a missing key, a wrong shape or a precision <= 0.

        Example:
            >>> r = LLMRouter({"models": [{"name": "m"}], "exploration": "none"}, dim=2)
            >>> r.feedback(None, "m", True, embedding=[1.0, 0.0])
            >>> r2 = LLMRouter({"models": [{"name": "m"}], "exploration": "none"}, dim=2)
            >>> r2.load_state_dict(r2.state_from_evidence(r.evidence()))
            >>> bool(np.allclose(r2.state_dict()["weights"], r.state_dict()["weights"]))
            True
        """
        out = self.state_dict()
        ev = {}
        for k in EVIDENCE_KEYS:
            try:
                a = np.asarray(evidence[k], np.float64)
            except KeyError as exc:
                raise RouterError(f"router evidence lacks {k!r}") from exc
            except (TypeError, ValueError) as exc:
                raise RouterError(f"router evidence {k!r} is not numeric") from exc
            if a.shape != np.shape(out[k if k != "eta" else "weights"]) or not np.all(np.isfinite(a)):
                raise RouterError(f"router evidence {k!r} must be finite with shape "
                                  f"{np.shape(out[k if k != 'eta' else 'weights'])}, got {a.shape}")
            ev[k] = a
        if np.any(ev["precision"] <= 0):
            raise RouterError("router evidence: precisions must be > 0 (was the base right?)")
        out["precision"] = ev["precision"]
        out["weights"] = ev["eta"] / ev["precision"]
        for k in EVIDENCE_KEYS[2:]:
            out[k] = ev[k]
        return out

    def merge_states(self, states: Sequence[Mapping[str, Any]], base: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
        """Combine routers that learned from different tasks (e.g. agents of a swarm).

        Each state's information beyond ``base`` (default: the prior) is added: precisions add,
        means combine precision-weighted (the product of the Gaussian posteriors), counters add.
        Agents that started from a shared merged state pass it as ``base`` so nothing is
        counted twice. Returns a state for :meth:`load_state_dict`.

        Example:
            >>> a = LLMRouter({"models": [{"name": "m"}], "exploration": "none"}, dim=2)
            >>> b = LLMRouter({"models": [{"name": "m"}], "exploration": "none"}, dim=2)
            >>> a.feedback(None, "m", True, embedding=[1.0, 0.0]); b.feedback(None, "m", False, embedding=[0.0, 1.0])
            >>> merged = a.merge_states([a.state_dict(), b.state_dict()])
            >>> a.load_state_dict(merged); int(a.stats()["models"]["m"]["calls"])
            2
        """
        if not states:
            raise RouterError("merge_states needs at least one state")
        checked = [self._check_state(s) for s in states]
        if base is None:
            b = self.prior_evidence()
            base_spent = 0.0
        else:
            b = self._evidence_of(self._check_state(base))
            base_spent = float(base["spent"])
        evs = [self._evidence_of(c) for c in checked]
        out = self.state_from_evidence(pool_evidence(b, [{k: e[k] - b[k] for k in b} for e in evs]))
        out["prior_weights"] = checked[0]["prior_weights"]
        out["prior_precision"] = checked[0]["prior_precision"]
        out["spent"] = base_spent + sum(float(s["spent"]) - base_spent for s in states)
        return out

    def _spec_lat_sum(self) -> np.ndarray:
        return np.array([m.latency_s or 0.0 for m in self.config.models])

    def _spec_lat_n(self) -> np.ndarray:
        return np.array([1.0 if m.latency_s is not None else 0.0 for m in self.config.models])

    def __repr__(self) -> str:
        return (f"LLMRouter(models={list(self.names)}, strategy={self._strategy!r}, "
                f"exploration={self.config.exploration!r}, dim={self.dim})")
