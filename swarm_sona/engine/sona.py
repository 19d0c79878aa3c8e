"""SONA: the in-process learning engine (model + LoRA + EWC++ + replay), one per agent.

A small facade over the engine's parts, each in its own module:

* :mod:`.activations`: :meth:`SONA.forward` / :meth:`SONA.forward_batch` run the model and
  cache the pre-MicroLoRA hidden states the instant loop reuses.
* :mod:`.instant`: :meth:`SONA.learn` runs the *instant loop* (one SGD step on MicroLoRA +
  value/router heads per trajectory, no backward through the network).
* :mod:`.background`: every ``config.background_every`` learned trajectories, or on demand,
  :meth:`SONA.background` runs Adam mini-batches on BaseLoRA + heads with the EWC++ penalty,
  then distils the buffered trajectories into the bank.
* :mod:`.finetune`: :meth:`SONA.finetune` trains a task head + BaseLoRA on labelled examples;
  :meth:`SONA.predict` uses the head.
* :mod:`.routing`: :meth:`SONA.route` asks the attached LLMRouter, or the router head alone;
  :mod:`.execute`: :meth:`SONA.execute` runs a user's executor through the router's cascade.
* :mod:`.patterns`: :meth:`SONA.store_pattern` / :meth:`SONA.retrieve_patterns` /
  :meth:`SONA.apply` through the bank, which SONA builds from ``reasoningBank`` when asked.
* :mod:`.state`: :meth:`SONA.state_dict` / :meth:`SONA.load_state_dict` (``save`` / ``load``:
  atomic, checksummed checkpoint files), :meth:`SONA.export_delta` / :meth:`SONA.import_state`,
  periodic checkpoints.

The guide's call shapes work as written: one mapping with camelCase or snake_case keys
(``learn({task, output, reward})`` embeds the task; ``learn({task, patterns,
preserveTaskMemory})``; ``finetune({task, examples, epochs})``; ``storePattern({...})``;
``retrievePatterns({task, k, minReward, sourceAgents})``). Invalid input raises a
``ValueError`` subclass naming the problem before anything changes.

Example:
    >>> import numpy as np
    >>> from swarm_sona.engine.sona import SONA
    >>> from swarm_sona.core.trajectory import Trajectory
    >>> sona = SONA({"dim": 32, "mlp_hidden": 32, "background_every": 0,
    ...              "llm_router": {"models": [{"name": "small"}, {"name": "big"}]}})
    >>> e = sona.embed("add two numbers")
    >>> before = sona.forward(e)["value"]
    >>> r = sona.learn(Trajectory(task="add two numbers", embedding=e, model="big", reward=1.0, success=True))
    >>> r["learned"], sona.forward(e)["value"] > before
    (1, True)
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypedDict

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.bank import Pattern
from swarm_sona.core import codec
from swarm_sona.core.codec import CheckpointError
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.embedding.embedders import Embedder, get_embedder
from swarm_sona.engine import inputs, state, task_memory
from swarm_sona.engine.activations import Activations, Forward, ForwardBatch
from swarm_sona.engine.background import BackgroundLoop, BackgroundResult
from swarm_sona.engine.benchmark import BenchmarkRequest, BenchmarkResult, run_benchmark
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.counters import EngineCounters
from swarm_sona.engine.errors import CHECKPOINT_KIND, EngineError
from swarm_sona.engine.execute import ExecuteResult, head_probs
from swarm_sona.engine.execute import execute as run_execute
from swarm_sona.engine.finetune import Finetuner, FinetuneResult
from swarm_sona.engine.head_gate import HeadGate
from swarm_sona.engine.instant import InstantLoop
from swarm_sona.engine.patterns import AppliedPattern, PatternAccess, bank_from_config
from swarm_sona.engine.replay import Replay
from swarm_sona.engine.routing import ROUTE_CONSTRAINTS, HeadRouting, route_with_router
from swarm_sona.engine.task_memory import PatternLearnResult
from swarm_sona.learning.config import router_anchor_weight
from swarm_sona.learning.ewc import EWC
from swarm_sona.learning.model import SONAModel
from swarm_sona.learning.optim import Adam
from swarm_sona.routing.decision import parse_route_request
from swarm_sona.routing.router import LLMRouter

__all__ = ["SONA", "EngineError", "CHECKPOINT_KIND", "ROUTE_CONSTRAINTS", "LearnResult", "PatternLearnResult"]

_TRAJ_KEYS = tuple(f.name for f in dataclasses.fields(Trajectory))
_LEARN_KEYS = (*_TRAJ_KEYS, "input", "patterns", "preserve_task_memory")
_FINETUNE_KEYS = ("task", "examples", "epochs", "lr", "batch_size", "consolidate", "seed", "replay")


class LearnResult(TypedDict, total=False):
    """What :meth:`SONA.learn` did (``value``: the value head's predictions before the updates)."""

    learned: int
    background: bool
    background_at: list[int]
    background_result: BackgroundResult
    value: float | list[float]
    value_loss: float
    version: int
    stored: list[str]


class SONA:
    """The learning engine (see module docs).

    ``config``: :class:`SONAConfig`, a dict (camelCase or snake_case keys) or None.
    ``embedder``: defaults to the configured one (``reasoningBank.embedder``: hashing). ``bank``: a ReasoningBank,
    None, or ``"auto"`` (default): built from ``config.reasoning_bank`` when ``config`` is a
    mapping whose ``reasoningBank`` section says ``enabled: true`` as the guide's samples do (a
    section without it only configures, and a :class:`SONAConfig` object builds none, so agent
    actors keep their shared store); ``"config"`` builds it whenever the section is enabled.
    ``router``: an LLMRouter, None (route by the router head alone) or ``"auto"`` (built from
    ``config.llm_router`` when it lists models). ``kernels``: the kernel namespace.

    Example:
        >>> SONA({"dim": 16, "mlp_hidden": 16}).apply(np.ones(16, np.float32)).shape
        (16,)
    """

    def __init__(self, config: SONAConfig | Mapping[str, Any] | None = None, *, embedder: Embedder | None = None,
                 bank: Any = "auto", router: Any = "auto", kernels: ModuleType | None = None) -> None:
        cfg = config if isinstance(config, SONAConfig) else SONAConfig.from_dict(config or {})
        self.config, self.dim, self.agent_id = cfg, cfg.dim, cfg.agent_id
        embedder = get_embedder(cfg.embedder_name, cfg.dim) if embedder is None else embedder
        if getattr(embedder, "dim", None) != cfg.dim:
            raise EngineError(f"embedder dimension {getattr(embedder, 'dim', None)} differs from config dim {cfg.dim}")
        self.embedder = embedder
        self.router = self._build_router(router)
        self.kernels = kernels if kernels is not None else _nk
        self.model = SONAModel.from_config(cfg, kernels=self.kernels)
        self.ewc = EWC(cfg.ewc, kernels=self.kernels)
        self.optimizer = Adam(cfg.background_lr)
        self.model_names = [m.name for m in cfg.llm_router.models]
        arms = {n: i for i, n in enumerate(self.model_names)}
        self.replay = Replay(cfg.replay_size)
        self.pending: deque[Trajectory] = deque(maxlen=cfg.replay_size)
        self.rng = np.random.default_rng([cfg.model_seed, 0x5EED])
        self.counters = EngineCounters()
        self.hooks: list[Any] = []
        self.task: str | None = None  # the task learn({task, patterns}) trained last
        self.activations = Activations(self.model, cfg.dim, cfg.max_steps)
        self.head_gate = HeadGate(cfg.head_gate_window) if cfg.head_gate else None
        self.instant = InstantLoop(self.model, arms, cfg.instant_lr, cfg.grad_clip, self.replay, self.pending,
                                   self.head_gate)
        self.background_loop = BackgroundLoop(cfg, self.model, self.ewc, self.optimizer, arms, self.activations,
                                              self.rng)
        self.finetuner = Finetuner(cfg, self.model, self.ewc, self.embedder.embed)
        self.head_routing = HeadRouting(cfg.llm_router)
        self.patterns = PatternAccess(lambda: self.bank, cfg.dim, cfg.agent_id, self.embed, self.activations.apply)
        self.checkpoints = state.PeriodicCheckpoints(cfg.periodic_checkpoints())
        self.bank = self._build_bank(bank, config)

    def _build_router(self, router: Any) -> Any:
        if not isinstance(router, str):
            return router
        if router != "auto":
            raise EngineError(f"router must be an LLMRouter, None or 'auto', got {router!r}")
        if not self.config.llm_router.models:
            return None
        return LLMRouter(self.config.llm_router, dim=self.dim, embedder=self.embedder)

    def _build_bank(self, bank: Any, given: Any) -> Any:
        if not isinstance(bank, str):
            return bank
        if bank not in ("auto", "config"):
            raise EngineError(f"bank must be a ReasoningBank, None, 'auto' or 'config', got {bank!r}")
        sections = [given[k] for k in ("reasoningBank", "reasoning_bank") if k in given] if isinstance(given, Mapping) else []
        asked = any(isinstance(sec, Mapping) and sec.get("enabled") is True for sec in sections)
        return bank_from_config(self.config.reasoning_bank, self.embedder) if bank == "config" or asked else None

    # ---- counters (kept on EngineCounters; these read as before) --------------------------
    @property
    def version(self) -> int:
        """Bumped by every update of the shared adapters (background cycle, finetune, import)."""
        return self.counters.version

    @property
    def n_learned(self) -> int:
        """Trajectories learned so far."""
        return self.counters.n_learned

    @property
    def n_background(self) -> int:
        """Background cycles run so far."""
        return self.counters.n_background

    @property
    def last_background(self) -> dict[str, Any] | None:
        """The last background cycle's result (without ``distilled``)."""
        return self.background_loop.last

    @property
    def finetune_history(self) -> list[dict[str, Any]]:
        """One entry per :meth:`finetune` call."""
        return self.finetuner.history

    # ---- embedding and forward -------------------------------------------------------------
    def embed(self, text: str) -> np.ndarray:
        """Embed one text with the engine's embedder: float32 (dim,)."""
        if not isinstance(text, str):
            raise EngineError(f"embed: expected a string, got {type(text).__name__}")
        return np.asarray(self.embedder.embed([text])[0], np.float32)

    def hidden(self, e: np.ndarray, steps: list[np.ndarray]) -> np.ndarray:
        """Pre-MicroLoRA hidden state of a checked input (cached; see :mod:`.activations`)."""
        return self.activations.hidden(e, steps)

    def forward(self, embedding: Any, steps: Sequence[Any] | None = None) -> Forward:
        """Model outputs for one task: ``{"hidden", "value", "router_probs"}`` (activations cached)."""
        return self.activations.forward(embedding, steps)

    def forward_batch(self, embeddings: Any, steps: Sequence[Sequence[Any] | None] | None = None) -> ForwardBatch:
        """Model outputs for many tasks in one pass: ``{"h", "hidden", "value", "router_probs"}``.

        Example:
            >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "llm_router": {"models": [{"name": "m"}]}})
            >>> E = sona.embedder.embed(["add numbers", "sort a list"])
            >>> out = sona.forward_batch(E)
            >>> out["router_probs"].shape, bool(np.isclose(out["value"][1], sona.forward(E[1])["value"]))
            ((2, 1), True)
        """
        return self.activations.forward_batch(embeddings, steps)

    def apply(self, vector: Any, task: str | None = None) -> Any:
        """MicroLoRA applied to a (dim,) vector or (n, dim) rows; ``apply(pattern, task)``: a
        stored pattern (Pattern, its dict or its id) merged with a new task (:meth:`apply_pattern`)."""
        if task is None and type(vector) is np.ndarray:
            return self.activations.apply(vector)
        if task is not None or isinstance(vector, (str, Mapping)) or hasattr(vector, "guidance"):
            return self.apply_pattern(vector, task)
        return self.activations.apply(vector)

    # ---- ReasoningBank -----------------------------------------------------------------------
    def store_pattern(self, *args: Any, **kwargs: Any) -> str:
        """Store a pattern in the bank: ``(task, input, output, reward, success, metadata=None,
        agent_id=None, **kw)`` or one mapping in the guide's keys; ``agent_id`` defaults to the
        engine's. Returns the pattern id."""
        return self.patterns.store(args, kwargs)

    def retrieve_patterns(self, query: Any = None, k: int | None = None, **filters: Any) -> list[Pattern]:
        """Patterns similar to a task text or vector (``ReasoningBank.retrieve_patterns`` filters),
        or one mapping ``{task, k, minReward, sourceAgents, ...}``."""
        return self.patterns.retrieve(query, k, filters)

    storePattern = store_pattern
    retrievePatterns = retrieve_patterns

    def apply_pattern(self, pattern: Any, task: str | None) -> AppliedPattern:
        """A stored pattern's guidance merged with a new task (see :meth:`.PatternAccess.apply`)."""
        return self.patterns.apply(pattern, task)

    # ---- instant loop --------------------------------------------------------------------------
    def learn(self, traj: Trajectory | Iterable[Trajectory] | Mapping[str, Any]) -> LearnResult | PatternLearnResult:
        """Instant loop for each trajectory, in order; background loop every ``background_every``.

        ``traj``: a Trajectory, a list of them, or one mapping in the guide's keys:
        ``{task, output, reward}`` (embedded here; stored as a pattern when a bank is attached)
        or ``{task, patterns, preserveTaskMemory}`` (:meth:`learn_patterns`). A list gives
        exactly the state of learning its trajectories one call at a time. Returns
        ``{"learned", "background", "background_at", "value", "value_loss", "version"}``
        (+ ``background_result`` when the background loop ran, ``stored`` pattern ids).
        """
        if type(traj) is Trajectory:   # the single-call path: no mapping, list or pattern handling
            t = inputs.one_trajectory(traj, self.dim, self.config.max_steps)
            if self.agent_id is not None and t.agent_id is None:
                t = dataclasses.replace(t, agent_id=self.agent_id)
            if t.steps or self.hooks:
                return self.learn_trajectories([t])
            return self._learn_one(t)
        stored: list[str] = []
        if isinstance(traj, Mapping):
            kw = inputs.guide_args("learn", (traj,), {}, _LEARN_KEYS)
            if "patterns" in kw or "preserve_task_memory" in kw:
                return self.learn_patterns(kw.get("task"), kw.get("patterns"),
                                           preserve_task_memory=kw.get("preserve_task_memory", False))
            trajs = [inputs.guide_trajectory(kw, self.embed, self.dim, self.config.max_steps)]
        else:
            trajs = inputs.trajectories(traj, self.dim, self.config.max_steps)
        trajs = self._stamped(trajs)
        if isinstance(traj, Mapping):
            stored = self.patterns.store_learned(traj, trajs[0])
        result = self.learn_trajectories(trajs)
        if stored:
            result["stored"] = stored
        return result

    def _stamped(self, trajs: list[Trajectory]) -> list[Trajectory]:
        """``trajs`` with this engine's ``agent_id`` where they carry none."""
        if self.agent_id is None:
            return trajs
        return [t if t.agent_id is not None else dataclasses.replace(t, agent_id=self.agent_id) for t in trajs]

    def _learn_one(self, t: Trajectory) -> LearnResult:
        """:meth:`learn_trajectories` of one checked trajectory without steps and with no hooks:
        the same state and result, without the chunk loop (the single-call API path)."""
        c = self.counters
        values: list[float] = []
        loss = self.instant.run_one(t, self.activations, c, self.router, values)
        c.count(1)
        result: LearnResult = {"learned": 1, "background": False, "background_at": []}
        self._background_if_due(result, 0)
        result["value"] = values[0]
        result["value_loss"] = loss
        result["version"] = c.version
        self.checkpoints.tick(self, 1)
        return result

    def _background_if_due(self, result: LearnResult, at: int) -> None:
        """Run the background cycle when ``background_every`` trajectories arrived since the last
        one, recording it in ``result`` as after trajectory ``at``."""
        every = self.config.background_every
        if every > 0 and self.counters.n_since_background >= every:
            result["background_result"] = self.background(force=True)
            result["background"] = True
            result["background_at"].append(at)

    def learn_trajectories(self, trajs: list[Trajectory]) -> LearnResult:
        """The instant loop (and background cycles on schedule) over checked trajectories."""
        for hook in self.hooks:
            fn = getattr(hook, "before_learn", None)
            if fn is not None:
                fn(self, trajs)
        n, every, c = len(trajs), self.config.background_every, self.counters
        values: list[float] = []
        loss_sum = 0.0
        result: LearnResult = {"learned": n, "background": False, "background_at": []}
        i = 0
        while i < n:
            j = n if every <= 0 else min(n, i + max(1, every - c.n_since_background))
            loss_sum += self.instant.run(trajs[i:j], self.activations, c, self.router, values)
            c.count(j - i)
            self._background_if_due(result, j - 1)
            i = j
        result["value"] = values[0] if n == 1 else values
        result["value_loss"] = loss_sum / n
        result["version"] = c.version
        for hook in self.hooks:
            fn = getattr(hook, "after_learn", None)
            if fn is not None:
                fn(self, result)
        self.checkpoints.tick(self, n)
        return result

    def learn_patterns(self, task: Any, patterns: Any, *, preserve_task_memory: bool = False) -> PatternLearnResult:
        """Train on a task's patterns as a task of its own; ``preserve_task_memory``: the switch
        from the previous task is an EWC++ boundary (see :func:`.task_memory.learn_patterns`)."""
        return task_memory.learn_patterns(self, task, patterns, preserve_task_memory=preserve_task_memory)

    # ---- background loop, consolidation ---------------------------------------------------------
    def background(self, force: bool = True) -> BackgroundResult:
        """Background loop: ``background_steps`` Adam mini-batches from the replay buffer on
        BaseLoRA + heads with the EWC++ penalty, then distil the trajectories buffered since the
        last cycle into the bank. ``force=False``: only when ``background_every`` trajectories
        arrived since the last cycle."""
        every = self.config.background_every
        if not force and (every == 0 or self.counters.n_since_background < every):
            return {"ran": False, "steps": 0, "version": self.version}
        res = self.background_loop.run(self.replay, self.pending, self.counters, self.bank)
        if res.get("boundaries"):
            self._consolidate_router()
        for hook in self.hooks:
            fn = getattr(hook, "after_background", None)
            if fn is not None:
                fn(self, res)
        return res

    def consolidate(self, task: str | None = None) -> None:
        """Explicit task boundary: EWC++ anchors = current adapters/heads, Fisher normalised; a
        router that forgets (``llm_router.evidence_decay`` < 1) is consolidated too."""
        self.ewc.consolidate(self.model.parameters(("base", "value", "router", "tasks")), task=task)
        self.counters.n_since_consolidation = 0
        self._consolidate_router()

    def _consolidate_router(self) -> None:
        """A task boundary reaches the router when its evidence decays: its anchor becomes what it
        knows now, at :func:`~swarm_sona.learning.config.router_anchor_weight` of ``ewc.strength``
        (0 -> the anchor back to the prior)."""
        r = self.router
        if r is not None and r.config.evidence_decay < 1.0:
            r.consolidate(router_anchor_weight(self.ewc.lam))

    # ---- supervised fine-tuning -----------------------------------------------------------------
    def finetune(self, task: Any = None, examples: Any = None, epochs: int = 5, **kw: Any) -> FinetuneResult:
        """Supervised training of task head ``task`` and BaseLoRA on labelled examples.

        ``finetune(task, examples, epochs=5, lr=None, batch_size=None, consolidate=True, seed=None,
        replay=None)`` or the guide's ``finetune({task, examples, epochs})``. ``examples``:
        ``(input, label)`` pairs or ``{input, output}`` mappings (input = text or vector), or
        ``(X (n, dim), labels)``. ``replay``: ``{other_task: examples}`` rehearsed in the same
        mini-batches. Loss = cross-entropy + the EWC++ penalty; with ``consolidate`` the end of
        the call is a task boundary. Returns :class:`~.finetune.FinetuneResult`.
        """
        if isinstance(task, Mapping):
            args = inputs.guide_args("finetune", (task,), kw, _FINETUNE_KEYS)
        else:
            args = inputs.guide_args("finetune", (), {"task": task, "examples": examples, "epochs": epochs, **kw},
                                     _FINETUNE_KEYS)
        consolidate = args.pop("consolidate", True)
        res = self.finetuner.finetune(args.pop("task", None), args.pop("examples", None), args.pop("epochs", 5),
                                      rng=self.rng, **args)
        if consolidate:
            self.consolidate(res["task"])
        self.activations.clear()
        self.counters.version += 1
        self.checkpoints.tick(self, res["steps"])
        return res

    def predict_proba(self, task: str, X: Any) -> np.ndarray:
        """Class probabilities (n, C) of task head ``task`` (columns: :meth:`classes`)."""
        return self.finetuner.predict_proba(task, X)

    def predict(self, task: str, X: Any) -> Any:
        """Labels from task head ``task``: one label for one input (text or vector), else a list."""
        return self.finetuner.predict(task, X)

    def classes(self, task: str) -> list[Any]:
        """Labels of task head ``task`` in column order."""
        return self.finetuner.classes(task)

    # ---- routing ---------------------------------------------------------------------------------
    def route(self, task: str | Mapping[str, Any], *, embedding: Any = None, **options: Any) -> Any:
        """Choose a model for a task: the attached router's decision, or without one the router
        head's most confident model within ``max_cost`` / ``min_quality``.

        ``task`` is the task text, or the guide's request mapping ``{task, priority, maxCost,
        minQuality, timeout}`` (camelCase or snake_case; ``timeout`` in milliseconds as the guide
        has it, ``timeout_s`` in seconds); options may also come as keywords.

        Example:
            >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "llm_router": {"models": [
            ...     {"name": "small", "cost": 0.25, "quality": 0.6}, {"name": "big", "cost": 3.0, "quality": 0.9}]}})
            >>> sona.route({"task": "prove a theorem", "minQuality": 0.8, "timeout": 30000})["model"]
            'big'
        """
        req = parse_route_request(task if isinstance(task, Mapping) else {"task": task},
                                  **({} if embedding is None else {"embedding": embedding}), **options)
        if not isinstance(req.task, str):
            raise EngineError(f"route: the task must be a string, got {type(req.task).__name__}")
        e = self.embed(req.task) if req.embedding is None else inputs.vector(req.embedding, self.dim,
                                                                             "route: embedding")
        head, gated = head_probs(self, e)
        if self.router is not None:
            return self.router.route(req.task, embedding=e, head_probs=gated, priority=req.priority,
                                     max_cost=req.max_cost, min_quality=req.min_quality, timeout_s=req.timeout_s)
        return self.head_routing.decide_request(head, req)

    def route_batch(self, task_texts: Sequence[str], *, embeddings: Any = None, **constraints: Any) -> list[Any]:
        """:meth:`route` for many tasks: one :meth:`forward_batch`, one router call.

        Example:
            >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "llm_router": {"models": [
            ...     {"name": "small", "cost": 0.001, "costUnit": "call"},
            ...     {"name": "big", "cost": 0.03, "costUnit": "call"}]}})
            >>> [d["model"] for d in sona.route_batch(["add numbers", "prove a theorem"], max_cost=0.01)]
            ['small', 'small']
        """
        if isinstance(task_texts, str) or not all(isinstance(t, str) for t in task_texts):
            raise EngineError("route_batch: task_texts must be a list of strings")
        texts = list(task_texts)
        if embeddings is None:
            embeddings = self.embedder.embed(texts) if texts else np.empty((0, self.dim), np.float32)
        E = inputs.matrix(embeddings, self.dim, "route_batch: embeddings")
        if E.shape[0] != len(texts):
            raise EngineError(f"route_batch: {E.shape[0]} embeddings for {len(texts)} tasks")
        P = self.forward_batch(E)["router_probs"]
        if self.router is not None:
            G = P if self.head_gate is None else self.head_gate.head_probs_batch(self.router, E, P)
            return route_with_router(self.router, self.model_names, texts, E, G, constraints)
        return [self.head_routing.decide(dict(zip(self.model_names, p.tolist(), strict=True)), constraints, t)
                for p, t in zip(P, texts, strict=True)]

    def execute(self, task: Any, executor: Any, **options: Any) -> ExecuteResult:
        """The guide's ``retryWithUpgrade`` / ``maxCostPerTask`` cascade for your own executor
        ``(task, model, patterns) -> Outcome``, every attempt learned (:mod:`.execute`)."""
        return run_execute(self, task, executor, options)

    def benchmark(self, *args: Any, **kwargs: Any) -> BenchmarkResult:
        """The guide's ``benchmark({learningIterations, retrievalQueries, routingDecisions})`` (:mod:`.benchmark`)."""
        return run_benchmark(self, BenchmarkRequest.parse(args, kwargs))

    # ---- hooks, stats -----------------------------------------------------------------------------
    def add_hook(self, hook: Any) -> None:
        """Register an object with optional ``before_learn(sona, trajs)``,
        ``after_learn(sona, result)``, ``after_background(sona, result)`` methods."""
        if not any(hasattr(hook, m) for m in ("before_learn", "after_learn", "after_background")):
            raise EngineError("add_hook: hook has none of before_learn, after_learn, after_background")
        self.hooks.append(hook)

    def remove_hook(self, hook: Any) -> None:
        """Unregister a hook (no-op if absent)."""
        self.hooks = [h for h in self.hooks if h is not hook]

    def stats(self) -> dict[str, Any]:
        """Counters, losses, adapter norms, EWC++ and kernel info (plain data)."""
        m, c = self.model, self.counters
        return {"dim": self.dim, "version": c.version, "n_learned": c.n_learned, "n_background": c.n_background,
                "n_since_background": c.n_since_background, "replay": len(self.replay), "pending": len(self.pending),
                "value_loss_ema": c.value_loss_ema, "router_acc_ema": c.router_acc_ema, "reward_ema": c.reward_ema,
                "adapter_norms": {k: ad.norm() for k, ad in m.base_adapters().items()},
                "micro_norm": m.micro.norm(), "tasks": sorted(m.task_heads), "models": list(self.model_names),
                "ewc": self.ewc.stats(), "last_background": self.last_background,
                "kernels": self.kernels.info()["active"] if hasattr(self.kernels, "info") else "numpy",
                "bank": self.bank is not None, "router": self.router is not None, "agent_id": self.agent_id,
                "checkpoints_written": self.checkpoints.written,
                "head_gate": None if self.head_gate is None else self.head_gate.stats()}

    # ---- state in and out (see :mod:`.state`) ------------------------------------------------------
    def export_delta(self) -> dict[str, Any]:
        """Adapters, heads, running Fisher and counters for consensus (:func:`.state.export_delta`)."""
        return state.export_delta(self)

    def import_state(self, merged: Mapping[str, Any]) -> None:
        """Install a merged state, validated first (:func:`.state.import_state`)."""
        state.import_state(self, merged)

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds (plain data + arrays)."""
        return state.state_dict(self)

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        """Install :meth:`state_dict`'s output (into an engine built from its ``config``)."""
        state.load_state_dict(self, st)

    def save(self, path: str | Path) -> None:
        """Write an atomic, checksummed checkpoint (the previous one is kept as ``path.prev``)."""
        state.save(self, path)

    @classmethod
    def load(cls, path: str | Path, *, embedder: Embedder | None = None, bank: Any = None, router: Any = "auto",
             kernels: ModuleType | None = None) -> SONA:
        """Rebuild an engine from :meth:`save`'s checkpoint. A corrupt or truncated file is
        refused (:class:`~swarm_sona.core.codec.CheckpointError`) unless ``path.prev`` is valid,
        which is then used."""
        st = codec.read_checkpoint(path, kind=CHECKPOINT_KIND)
        if not isinstance(st, Mapping) or st.get("format") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path}: not a SONA engine checkpoint")
        try:
            eng = cls(SONAConfig.from_dict(st["config"]), embedder=embedder, bank=bank, router=router,
                      kernels=kernels)
            eng.load_state_dict(st)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: unusable engine checkpoint: {exc}") from exc
        return eng

    def __repr__(self) -> str:
        return (f"SONA(dim={self.dim}, version={self.version}, learned={self.n_learned}, "
                f"tasks={sorted(self.model.task_heads)}, models={self.model_names})")

