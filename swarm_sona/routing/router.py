"""The LLMRouter facade: one object composing pricing, strategies, the bandit posterior,
decisions under constraints, and the cascade.

Models come from :class:`~swarm_sona.routing.config.LLMRouterConfig` (name, cost per 1M tokens
as the guide quotes prices, or per call with ``costUnit: 'call'``; prior quality, speed or latency). For every task the router estimates each model's
success probability (:mod:`~swarm_sona.routing.posterior`), removes the models that violate a
constraint and picks one by the strategy (:mod:`~swarm_sona.routing.decision`,
:mod:`~swarm_sona.routing.strategies`); costs come from :mod:`~swarm_sona.routing.pricing`,
the retry cascade from :mod:`~swarm_sona.routing.cascade`.

:meth:`LLMRouter.route` takes the integration guide's call as written: ``route({"task": ...,
"priority": "quality", "maxCost": 5.0, "minQuality": 0.9, "timeout": 30000})`` or the same as
keyword arguments (snake or camel case); ``timeout`` is in milliseconds, ``timeout_s`` in
seconds. ``minQuality`` and ``maxCost`` are hard limits on the expected values whatever the
exploration; ``priority`` overrides the strategy for the call.

A routing decision (embedding excluded) is a few small matrix-vector products on
preallocated buffers plus a loop over the models.

Example:
    >>> from swarm_sona.routing.router import LLMRouter
    >>> r = LLMRouter({"models": [{"name": "small", "cost": 0.25, "quality": 0.6},
    ...                           {"name": "big", "cost": 3.00, "quality": 0.9}],
    ...                "strategy": "quality", "exploration": "none"}, dim=8)
    >>> d = r.route("prove the lemma")       # 4 input + 256 output tokens at $3 per 1M
    >>> d.model, round(d.expected_quality, 2), d["estimatedCost"]
    ('big', 0.9, 0.00078)
    >>> r.route({"task": "prove the lemma", "maxCost": 0.0005}).model
    'small'
    >>> r.feedback("prove the lemma", "small", success=True, reward=1.0, cost=0.001, latency=0.2)
    >>> r.spent
    0.001
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.core.executor import Executor, Outcome, Task
from swarm_sona.embedding.embedders import Embedder
from swarm_sona.routing.cascade import CascadeResult, run_cascade
from swarm_sona.routing.config import LLMRouterConfig
from swarm_sona.routing.decision import (
    Decider,
    RouteDecision,
    RouteRequest,
    check_number,
    check_numbers,
    parse_route_request,
)
from swarm_sona.routing.errors import RouterError
from swarm_sona.routing.features import TaskFeatures
from swarm_sona.routing.posterior import EVIDENCE_KEYS
from swarm_sona.routing.posterior_full import make_posterior
from swarm_sona.routing.pricing import Pricing, estimate_tokens, model_speeds
from swarm_sona.routing.strategies import get_strategy

__all__ = ["LLMRouter", "EVIDENCE_KEYS", "estimate_tokens"]

_STATE_KIND = "llm_router"
_STATE_VERSION = 1


class LLMRouter:
    """Learned LLM router (see the module documentation and the modules it composes).

    ``config``: an :class:`LLMRouterConfig` or a mapping for it; ``dim``: the task-embedding
    dimension; ``embedder``: used when a task comes without an embedding (default
    ``HashingEmbedder(dim)``, created on first use). Components: ``pricing``, ``posterior``
    (:class:`~swarm_sona.routing.posterior.BanditPosterior`, or with ``posterior: 'full'``
    :class:`~swarm_sona.routing.posterior_full.FullPosterior`), ``decider``.

    Example:
        >>> r = LLMRouter({"models": [{"name": "a", "cost": 1.0, "quality": 0.5, "costUnit": "call"},
        ...                           {"name": "b", "cost": 2.0, "quality": 0.8, "costUnit": "call"}],
        ...                "strategy": "cost-optimized", "exploration": "none"}, dim=4)
        >>> r.route(embedding=np.zeros(4), min_quality=0.7).model
        'b'
        >>> LLMRouter({"models": []})
        Traceback (most recent call last):
        ...
        swarm_sona.routing.errors.RouterError: llm_router.models: the router needs at least one model
    """

    def __init__(self, config: LLMRouterConfig | Mapping[str, Any] | None = None, *, dim: int = 256,
                 embedder: Embedder | None = None) -> None:
        cfg = config if isinstance(config, LLMRouterConfig) else LLMRouterConfig.from_dict(config)
        if not cfg.models:
            raise RouterError("llm_router.models: the router needs at least one model")
        get_strategy(cfg.strategy)          # an unknown or unimportable strategy fails here
        self.config = cfg
        self.names: tuple[str, ...] = tuple(m.name for m in cfg.models)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.features = TaskFeatures(dim, self.names, embedder)
        self.dim = self.features.dim
        self.pricing = Pricing(cfg)
        self.posterior = make_posterior(cfg, self.dim)   # llm_router.posterior: diagonal or full
        self.decider = Decider(cfg, self.names, model_speeds(cfg.models), self.posterior.exp_lat)
        self._W = self.posterior.W          # the live posterior means (updated in place)
        self._rng = self.posterior.rng      # the exploration generator
        self.spent = 0.0

    @property
    def embedder(self) -> Embedder:
        """The embedder used for tasks given without an embedding."""
        return self.features.embedder

    @property
    def remaining_budget(self) -> float | None:
        """Run budget minus the cost reported so far, or None without a run budget."""
        rb = self.config.run_budget
        return None if rb is None else rb - self.spent

    def reset_run(self) -> None:
        """Start a new run: the run budget's spend goes back to zero (learning is kept)."""
        self.spent = 0.0

    # ---- input ---------------------------------------------------------------------------------
    def task_text(self, task: Task | str | None) -> str | None:
        """The text of a task given as text, :class:`Task` or None."""
        if task is None or isinstance(task, str):
            return task
        if isinstance(task, Task):
            return task.text
        raise RouterError(f"task must be a str, a Task or None, got {type(task).__name__}")

    def _model_index(self, model: str) -> int:
        i = self.index.get(model) if isinstance(model, str) else None
        if i is None:
            raise RouterError(f"unknown model {model!r}; models are {list(self.names)}")
        return i

    # ---- estimates -------------------------------------------------------------------------------
    def estimate_cost(self, task: Task | str | None, model: str) -> float:
        """Estimated cost in USD of running ``task`` on ``model``.

        Example:
            >>> r = LLMRouter({"models": [{"name": "m", "cost": 2.0}],
            ...                "output_tokens": 0, "chars_per_token": 4}, dim=4)
            >>> r.estimate_cost("x" * 400, "m")
            0.0002
        """
        i = self._model_index(model)
        return self.pricing.costs(self.task_text(task))[i]

    def success_probabilities(self, task: Task | str | None = None, *, embedding: Any = None,
                              head_probs: Any = None) -> np.ndarray:
        """Mean estimated success probability of every model (in config order) for a task.

        Example:
            >>> r = LLMRouter({"models": [{"name": "a", "quality": 0.3}, {"name": "b", "quality": 0.7}]}, dim=4)
            >>> r.success_probabilities(embedding=np.zeros(4)).round(2).tolist()
            [0.3, 0.7]
        """
        x = self.features.load(self.task_text(task), embedding)
        mean, _ = self.posterior.estimates(x, self.features.head(head_probs), explore=False)
        return np.array(mean)

    # ---- routing --------------------------------------------------------------------------------
    def route(self, task: Task | str | Mapping[str, Any] | None = None, *, embedding: Any = None,
              head_probs: Any = None, priority: str | None = None, max_cost: float | None = None,
              min_quality: float | None = None, timeout: float | None = None, timeout_s: float | None = None,
              **options: Any) -> RouteDecision:
        """Pick a model for ``task`` (text, :class:`Task`, or the guide's request mapping;
        ``embedding`` skips embedding it).

        ``priority`` overrides the strategy for this call; ``max_cost`` (USD), ``min_quality``
        (in [0, 1]) and ``timeout`` (ms; or ``timeout_s`` in seconds) are constraints; camelCase
        spellings (``maxCost=...``) are accepted. Raises :class:`NoModelError` /
        :class:`BudgetExhaustedError` as described in :mod:`~swarm_sona.routing.decision`.

        Example:
            >>> r = LLMRouter({"models": [{"name": "fast", "quality": 0.6, "latency_s": 0.5},
            ...     {"name": "slow", "quality": 0.9, "latency_s": 40}], "strategy": "quality",
            ...     "exploration": "none"}, dim=4)
            >>> r.route("t", timeout=30000).model, r.route("t", timeoutS=60).model
            ('fast', 'slow')
        """
        if options or (task is not None and type(task) is not str and not isinstance(task, Task)):
            given = {k: v for k, v in (("embedding", embedding), ("head_probs", head_probs), ("priority", priority),
                                       ("max_cost", max_cost), ("min_quality", min_quality),
                                       ("timeout", timeout), ("timeout_s", timeout_s)) if v is not None}
            req = parse_route_request(task if isinstance(task, Mapping) else None, **given, **options)
            if not isinstance(task, Mapping) and task is not None:
                req = RouteRequest(task, req.embedding, req.head_probs, req.priority, req.max_cost,
                                   req.min_quality, req.timeout_s)
            return self._route(req.task, req.embedding, req.head_probs, req.priority, req.max_cost,
                               req.min_quality, req.timeout_s)
        if timeout is not None:
            if timeout_s is not None:
                raise RouterError("route: give timeout (milliseconds) or timeout_s (seconds), not both")
            timeout_s = check_number(timeout, "timeout (milliseconds)", lo=0.0) / 1000.0
        return self._route(task, embedding, head_probs, priority, max_cost, min_quality, timeout_s)

    def _route(self, task: Any, embedding: Any, head_probs: Any, priority: str | None,
               max_cost: Any, min_quality: Any, timeout_s: Any) -> RouteDecision:
        text = self.task_text(task)
        c = self.decider.constraints(priority, max_cost, min_quality, timeout_s)
        head = self.features.head(head_probs)
        costs = self.pricing.costs(text)
        x = self.features.load(text, embedding)
        self.features.remember(text, x)
        mean, dec = self.posterior.estimates(x, head, explore=True)
        return self.decider.decide(c, costs, mean, dec, self.decider.caps(c.max_cost, 0.0, self.spent))

    def route_batch(self, tasks: Sequence[Task | str | None], *, embeddings: Any = None, head_probs: Any = None,
                    **options: Any) -> list[RouteDecision]:
        """Route many tasks against the router's current state, with vectorised estimates.

        The decisions are those of calling :meth:`route` on each task in order with no
        :meth:`feedback` in between: same estimates (up to float rounding), same exploration
        draws from the router's generator, same constraints (``options``: those of
        :meth:`route`). ``embeddings``: (n, dim) (None: the texts are embedded in one call);
        ``head_probs``: an (n, M) array, or one entry per task in any form :meth:`route`
        accepts (None entries allowed). Everything is validated before any state changes.

        Example:
            >>> r = LLMRouter({"models": [{"name": "a", "cost": 1.0, "quality": 0.5, "costUnit": "call"},
            ...                           {"name": "b", "cost": 2.0, "quality": 0.8, "costUnit": "call"}],
            ...                "strategy": "quality", "exploration": "none"}, dim=4)
            >>> [d.model for d in r.route_batch([None, None], embeddings=np.zeros((2, 4)), max_cost=1.5)]
            ['a', 'a']
        """
        if isinstance(tasks, (str, Task, Mapping)):
            raise RouterError("route_batch takes a sequence of tasks; use route() for one task")
        req = parse_route_request(**{k: v for k, v in options.items() if v is not None})
        if req.task is not None or req.embedding is not None or req.head_probs is not None:
            raise RouterError("route_batch: pass the tasks, embeddings and head_probs as its own arguments")
        texts = [self.task_text(t) for t in tasks]
        c = self.decider.constraints(req.priority, req.max_cost, req.min_quality, req.timeout_s)
        X = self.features.batch(texts, embeddings)
        head = self.features.batch_head(head_probs, len(texts))
        costs_all = [self.pricing.costs(t) for t in texts] if self.pricing.token_priced else None
        if not texts:
            return []
        mean, dec = self.posterior.estimates_batch(X, head)
        last = next((i for i in range(len(texts) - 1, -1, -1) if texts[i] is not None), None)
        if last is not None:   # as after routing the tasks one by one
            self.features.remember(texts[last], X[last])
        caps = self.decider.caps(c.max_cost, 0.0, self.spent)
        mean_l = mean.tolist()
        dec_l = mean_l if dec is mean else dec.tolist()
        if costs_all is None:   # per-call prices: the batch shares everything but the estimates
            return self.decider.decide_batch(c, list(self.pricing.per_call), mean_l, dec_l, caps)
        return [self.decider.decide(c, costs_all[i], mean_l[i], dec_l[i], caps) for i in range(len(texts))]


    # ---- learning --------------------------------------------------------------------------------
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
            reward = check_number(reward, "reward", lo=0.0, hi=1.0)
        cost = check_number(cost, "cost", lo=0.0)
        if latency is not None:
            latency = check_number(latency, "latency", lo=0.0)
        x = self.features.load(self.task_text(task), embedding)
        y = 1.0 if success else 0.0
        self.posterior.update(i, x, y)
        self.posterior.record(i, bool(success), y if reward is None else reward, cost, latency)
        self.spent += cost

    def feedback_batch(self, tasks: Sequence[Task | str | None], models: Sequence[str], successes: Sequence[bool],
                       rewards: Sequence[float | None] | None = None, costs: Sequence[float] | None = None,
                       latencies: Sequence[float | None] | None = None, *, embeddings: Any = None) -> None:
        """:meth:`feedback` for many outcomes: the same state as calling it row by row, in order.

        Every input is validated before anything changes (a bad row leaves the router as it
        was). ``embeddings``: (n, dim); None: like :meth:`feedback`, a row whose text is the
        last routed text reuses its features, the others are embedded in one call.

        Example:
            >>> r = LLMRouter({"models": [{"name": "a"}, {"name": "b"}]}, dim=4)
            >>> r.feedback_batch([None, None], ["a", "b"], [True, False], costs=[0.5, 0.25],
            ...                  embeddings=np.eye(4)[:2])
            >>> [m["calls"] for m in r.stats()["models"].values()], r.spent
            ([1, 1], 0.75)
        """
        if isinstance(tasks, (str, Task)):
            raise RouterError("feedback_batch takes a sequence of tasks; use feedback() for one task")
        texts = [t if type(t) is str else self.task_text(t) for t in tasks]
        n = len(texts)
        models, successes = list(models), list(successes)
        for what, seq in (("models", models), ("successes", successes), ("rewards", rewards), ("costs", costs),
                          ("latencies", latencies)):
            if seq is not None and len(seq) != n:
                raise RouterError(f"feedback_batch: {len(seq)} {what} for {n} tasks")
        try:
            idx = [self.index[m] for m in models]
        except (KeyError, TypeError):   # the row that is not a model, named
            idx = [self._model_index(m) for m in models]
        if not all(type(s) is bool for s in successes):
            for s in successes:
                if not isinstance(s, (bool, np.bool_)):
                    raise RouterError(f"success must be a bool, got {s!r}")
        ys = [1.0 if s else 0.0 for s in successes]
        if rewards is None:
            rw = ys
        elif None in rewards:
            rw = [y if r is None else check_number(r, "reward", lo=0.0, hi=1.0) for y, r in zip(ys, rewards, strict=True)]
        else:
            rw = check_numbers(rewards, "reward", lo=0.0, hi=1.0)
        cs = [0.0] * n if costs is None else check_numbers(costs, "cost", lo=0.0)
        if latencies is None:
            lt = None
        elif None in latencies:
            lt = [None if v is None else check_number(v, "latency", lo=0.0) for v in latencies]
        else:
            lt = list(check_numbers(latencies, "latency", lo=0.0))
        X = self.features.batch_reusing_last(texts, embeddings)
        self.posterior.update_batch(idx, X, ys)   # one kernel call for the chunk (diagonal)
        self.posterior.record_batch(idx, successes, rw, cs, lt)
        spent = self.spent
        for c in cs:
            spent += c
        self.spent = spent

    # ---- cascade ---------------------------------------------------------------------------------
    def run_cascade(self, task: Task | str | Mapping[str, Any], executor: Executor, *,
                    patterns: list[dict[str, Any]] | None = None, learn: bool = True,
                    on_attempt: Callable[[Task, str, Outcome], None] | None = None, **options: Any
                    ) -> CascadeResult:
        """Route ``task``, run it with ``executor`` (``executor(task, model, patterns) ->
        Outcome``) and, with ``retry_with_upgrade``, retry failures upward with every
        attempt's cost counted (:mod:`~swarm_sona.routing.cascade`). ``task`` may be the
        guide's request mapping; ``options``: those of :meth:`route`; ``learn`` /
        ``on_attempt``: how each attempt is learned (:func:`~swarm_sona.routing.cascade.run_cascade`).

        Example:
            >>> from swarm_sona.core.executor import Outcome
            >>> r = LLMRouter({"models": [{"name": "s", "cost": 1, "quality": 0.6, "costUnit": "call"},
            ...     {"name": "b", "cost": 5, "quality": 0.9, "costUnit": "call"}], "strategy": "cost-optimized",
            ...     "retryWithUpgrade": True, "maxCostPerTask": 5.5, "exploration": "none"}, dim=4)
            >>> ex = lambda t, m, p: Outcome("", float(m == "b"), m == "b", cost_usd=float(1 if m == "s" else 5))
            >>> res = r.execute({"task": "hard task"}, ex)
            >>> [a.model for a in res.attempts], res.total_cost, res.stop_reason
            (['s'], 1.0, 'budget')
        """
        mapping = task if isinstance(task, Mapping) else None
        req = parse_route_request(mapping, **{k: v for k, v in options.items() if v is not None})
        text = req.task if mapping is not None else task
        if not isinstance(text, (str, Task)):
            raise RouterError(f"run_cascade: the task must be a text or a Task, got {type(text).__name__}")
        return run_cascade(self, text, executor, req, patterns=patterns, learn=learn, on_attempt=on_attempt)

    #: the guide-facing name of :meth:`run_cascade` (a cascade for a user's own executor)
    execute = run_cascade

    # ---- statistics and state ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-model calls, success rate, mean reward, cost; run spend and remaining budget."""
        p = self.posterior
        models = {}
        for i, n in enumerate(self.names):
            c = float(p.calls[i])
            models[n] = {"calls": int(round(c)), "success_rate": p.successes[i] / c if c else None,
                         "mean_reward": p.reward_sum[i] / c if c else None, "cost": float(p.cost_sum[i]),
                         "expected_latency": p.exp_lat[i]}
        return {"models": models, "spent": self.spent, "remaining_budget": self.remaining_budget,
                "strategy": self.config.strategy, "exploration": self.config.exploration}

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (lists, floats, numpy arrays) for :mod:`swarm_sona.core.codec` checkpoints.

        Example:
            >>> from swarm_sona.core import codec
            >>> r = LLMRouter({"models": [{"name": "a"}]}, dim=4)
            >>> r2 = LLMRouter({"models": [{"name": "a"}]}, dim=4)
            >>> r2.load_state_dict(codec.unpackb(codec.packb(r.state_dict())))
        """
        return {"kind": _STATE_KIND, "version": _STATE_VERSION, "models": list(self.names), "dim": self.dim,
                **self.posterior.arrays(), "spent": float(self.spent)}

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
        out = self.posterior.check_arrays(state)
        check_number(state.get("spent"), "router state 'spent'", lo=0.0)
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Install a state from :meth:`state_dict` (validated first; on error nothing changes)."""
        self.posterior.load_arrays(self._check_state(state))
        self.spent = float(state["spent"])

    def consolidate(self, weight: float = 1.0) -> None:
        """EWC at a task boundary for a router that forgets (``evidence_decay`` < 1): what the
        posterior knows now becomes the anchor its evidence decays towards, at ``weight`` times
        its precision beyond the prior (the penalty ``(weight / 2) sum F (w - w*)^2`` with the
        Laplace precision as F; see :mod:`~swarm_sona.routing.posterior`). The engine calls it at
        each task boundary with ``weight = ewc.strength / 1000`` (the guide's ``ewc.lambda`` 0.4
        -> 0.667, 0.5 -> 1). Needs posterior 'diagonal'.

        Example:
            >>> def a_after_b(weight):
            ...     r = LLMRouter({"models": [{"name": "m"}], "exploration": "none", "evidenceDecay": 0.5}, dim=2)
            ...     for _ in range(20): r.feedback(None, "m", True, embedding=[1.0, 0.0])    # task A
            ...     r.consolidate(weight)
            ...     for _ in range(20): r.feedback(None, "m", False, embedding=[0.0, 1.0])   # task B
            ...     return round(float(r.success_probabilities(embedding=[1.0, 0.0])[0]), 2)
            >>> a_after_b(0.0), a_after_b(1.0)     # A's success estimate: forgotten / kept
            (0.43, 0.65)
        """
        self.posterior.consolidate(weight)

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
        return self.posterior.evidence()

    def prior_evidence(self) -> dict[str, np.ndarray]:
        """:meth:`evidence` of the prior (a router that has seen nothing)."""
        return self.posterior.prior_evidence()

    def state_from_evidence(self, evidence: Mapping[str, Any]) -> dict[str, Any]:
        """A :meth:`state_dict` with the learned part given by ``evidence`` (the inverse of
        :meth:`evidence`); the prior and ``spent`` are this router's. Raises
        :class:`RouterError` for a missing key, a wrong shape or a precision <= 0.

        Example:
            >>> r = LLMRouter({"models": [{"name": "m"}], "exploration": "none"}, dim=2)
            >>> r.feedback(None, "m", True, embedding=[1.0, 0.0])
            >>> r2 = LLMRouter({"models": [{"name": "m"}], "exploration": "none"}, dim=2)
            >>> r2.load_state_dict(r2.state_from_evidence(r.evidence()))
            >>> bool(np.allclose(r2.state_dict()["weights"], r.state_dict()["weights"]))
            True
        """
        return {**self.state_dict(), **self.posterior.arrays_from_evidence(evidence)}

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
        base_arrays = None if base is None else self._check_state(base)
        base_spent = 0.0 if base is None else float(base["spent"])
        out = {**self.state_dict(), **self.posterior.merged(checked, base_arrays)}
        out["spent"] = base_spent + sum(float(s["spent"]) - base_spent for s in states)
        return out

    def __repr__(self) -> str:
        return (f"LLMRouter(models={list(self.names)}, strategy={self.config.strategy!r}, "
                f"exploration={self.config.exploration!r}, dim={self.dim})")
