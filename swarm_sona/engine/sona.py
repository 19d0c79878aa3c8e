"""SONA: the in-process learning engine (model + LoRA + EWC++ + replay), one per agent.

* :meth:`SONA.forward` runs the model for a task embedding and caches the pre-MicroLoRA
  hidden state, so that :meth:`SONA.learn` (the *instant loop*) is one SGD step on
  MicroLoRA + value/router heads with no backward through the network (kernel
  ``instant_step``): value head on the reward, router head on the chosen model's success
  (bandit feedback: only that model's row learns; a model not in
  ``config.llm_router.models`` updates the value head only).
* Every ``config.background_every`` learned trajectories, or on demand,
  :meth:`SONA.background` runs the *background loop*: Adam mini-batches from the replay
  buffer on BaseLoRA + value/router heads with the EWC++ penalty (task boundaries detected
  from the gradient statistics consolidate EWC++), then distils the buffered trajectories
  into ``sona.bank`` when one is attached.
* :meth:`SONA.finetune` trains a task head + BaseLoRA on labelled examples (EWC++ penalty
  from earlier consolidations; the end of each call is an explicit task boundary);
  :meth:`SONA.predict` uses the head.
* :meth:`SONA.route` asks ``sona.router`` (an LLMRouter) when attached, passing the
  embedding and the router head's probabilities; without one it picks the model whose router
  head is most confident (greedy, within ``max_cost``/``min_quality``).
* :meth:`SONA.save` / :meth:`SONA.load` write and read atomic, checksummed checkpoints
  (a corrupt file is refused; the previous checkpoint is used when valid).
* :meth:`SONA.export_delta` / :meth:`SONA.import_state` move adapter/head state between
  agents and the coordinator.

Invalid input (wrong dimension, NaN/inf, empty examples, unknown config keys) raises a
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

import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.core import codec
from swarm_sona.core.codec import CheckpointError
from swarm_sona.core.config import SONAConfig
from swarm_sona.core.trajectory import Step, Trajectory, TrajectoryError, check_vector
from swarm_sona.embedding.embedders import Embedder, HashingEmbedder
from swarm_sona.learning.ewc import EWC, EWCError
from swarm_sona.learning.lora import LoRAError
from swarm_sona.learning.model import ModelError, SONAModel, bce_with_logits, plain_label, softmax_cross_entropy
from swarm_sona.learning.optim import Adam, OptimizerError, clip_grad_norm

__all__ = ["SONA", "EngineError", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "sona-engine"
_H_CACHE_SIZE = 1024
# replay columns in checkpoints (besides embedding, success, steps)
_REPLAY_TEXT = ("task", "model", "agent_id", "task_type", "output", "id")
_REPLAY_NUM = ("reward", "cost_usd", "latency_s", "created_at")


class EngineError(ValueError):
    """Bad input to the engine (the message names it); the engine state is unchanged."""


class _Replay:
    """Fixed-capacity ring buffer of trajectories with O(1) random access."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.items: list[Trajectory] = []
        self.pos = 0

    def __len__(self) -> int:
        return len(self.items)

    def append(self, t: Trajectory) -> None:
        if len(self.items) < self.capacity:
            self.items.append(t)
        else:
            self.items[self.pos] = t
            self.pos = (self.pos + 1) % self.capacity

    def ordered(self) -> list[Trajectory]:
        return self.items[self.pos:] + self.items[:self.pos]


def _big_ints_to_str(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _big_ints_to_str(v) for k, v in obj.items()}
    if isinstance(obj, int) and not isinstance(obj, bool) and not -(2 ** 63) <= obj < 2 ** 64:
        return {"__bigint__": str(obj)}
    return obj


def _str_to_big_ints(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__bigint__"}:
            return int(obj["__bigint__"])
        return {k: _str_to_big_ints(v) for k, v in obj.items()}
    return obj


ROUTE_CONSTRAINTS = frozenset({"priority", "max_cost", "min_quality", "timeout"})


class SONA:
    """The learning engine (see module docs).

    ``config``: :class:`SONAConfig`, a dict (camelCase or snake_case keys) or None.
    ``embedder``: defaults to ``HashingEmbedder(config.dim)``. ``bank``: a ReasoningBank
    (``distill`` is called by the background loop). ``router``: an LLMRouter (``route`` is
    called by :meth:`route`; ``feedback`` by :meth:`learn` for trajectories whose model is in
    ``config.llm_router.models``); the default ``"auto"`` builds one from
    ``config.llm_router`` when it lists models, ``None`` routes by the router head alone
    (no exploration). ``kernels``: the kernel namespace (default
    :mod:`swarm_sona.kernels`; benchmarks pass the numpy reference).

    Example:
        >>> SONA({"dim": 16, "mlp_hidden": 16}).apply(np.ones(16, np.float32)).shape
        (16,)
    """

    def __init__(self, config: SONAConfig | Mapping[str, Any] | None = None, *, embedder: Embedder | None = None,
                 bank: Any = None, router: Any = "auto", kernels: ModuleType | None = None) -> None:
        cfg = config if isinstance(config, SONAConfig) else SONAConfig.from_dict(config or {})
        self.config = cfg
        self.dim = cfg.dim
        if embedder is None:
            embedder = HashingEmbedder(cfg.dim)
        if getattr(embedder, "dim", None) != cfg.dim:
            raise EngineError(f"embedder dimension {getattr(embedder, 'dim', None)} differs from config dim {cfg.dim}")
        self.embedder = embedder
        self.bank = bank
        if isinstance(router, str):
            if router != "auto":
                raise EngineError(f"router must be an LLMRouter, None or 'auto', got {router!r}")
            router = None
            if cfg.llm_router.models:  # a configured model table gets its learned router
                from swarm_sona.routing.router import LLMRouter

                router = LLMRouter(cfg.llm_router, dim=cfg.dim, embedder=embedder)
        self.router = router
        self.kernels = kernels if kernels is not None else _nk
        self.model = SONAModel.from_config(cfg, kernels=self.kernels)
        self.ewc = EWC(cfg.ewc, kernels=self.kernels)
        self.optimizer = Adam(cfg.background_lr)
        self.model_names = [m.name for m in cfg.llm_router.models]
        self._arm = {n: i for i, n in enumerate(self.model_names)}
        self._costs = {m.name: m.cost for m in cfg.llm_router.models}
        self.replay = _Replay(cfg.replay_size)
        self._pending: deque[Trajectory] = deque(maxlen=cfg.replay_size)
        self._hcache: dict[bytes, np.ndarray] = {}
        self._rng = np.random.default_rng([cfg.model_seed, 0x5EED])
        self.hooks: list[Any] = []
        self.version = 0
        self.n_learned = 0
        self.n_since_background = 0
        self.n_since_sync = 0
        self.n_background = 0
        self.n_boundaries = 0
        self.value_loss_ema: float | None = None
        self.router_acc_ema: float | None = None
        self.reward_ema: float | None = None
        self.last_background: dict[str, Any] | None = None
        self.finetune_history: list[dict[str, Any]] = []
        self._lr = cfg.instant_lr
        self._clip = cfg.grad_clip
        self._max_steps = cfg.max_steps

    # ---- embedding and forward ------------------------------------------------------------------
    def embed(self, text: str) -> np.ndarray:
        """Embed one text with the engine's embedder: float32 (dim,)."""
        if not isinstance(text, str):
            raise EngineError(f"embed: expected a string, got {type(text).__name__}")
        return np.asarray(self.embedder.embed([text])[0], np.float32)

    def _vector(self, v: Any, what: str) -> np.ndarray:
        try:
            return check_vector(v, self.dim, what=what)
        except TrajectoryError as exc:
            raise EngineError(str(exc)) from None

    def _step_vectors(self, steps: Sequence[Any] | None) -> list[np.ndarray]:
        if not steps or self._max_steps == 0:
            return []
        out = []
        for i, s in enumerate(steps):
            e = s.embedding if isinstance(s, Step) else s
            if e is None:
                continue
            out.append(self._vector(e, f"step {i} embedding"))
        return out[-self._max_steps:]

    def hidden(self, e: np.ndarray, steps: list[np.ndarray]) -> np.ndarray:
        key = e.tobytes() if not steps else b"".join([e.tobytes(), *(s.tobytes() for s in steps)])
        h = self._hcache.get(key)
        if h is None:
            h = self.model.encode_one(e) if not steps else self.model.encode(self.model.tokens(e, steps))[0]
            if len(self._hcache) >= _H_CACHE_SIZE:
                del self._hcache[next(iter(self._hcache))]
            self._hcache[key] = h
        return h

    def forward(self, embedding: Any, steps: Sequence[Any] | None = None) -> dict[str, Any]:
        """Model outputs for one task: ``{"hidden", "value", "router_probs"}``.

        ``steps``: step embeddings (arrays or :class:`Step` objects). Caches the activations
        the instant loop reuses when this input is learned.
        """
        e = self._vector(embedding, "embedding")
        h = self.hidden(e, self._step_vectors(steps))
        m = self.model
        hm = m.micro.apply(h)
        vl = float(hm @ m.value_w) + float(m.value_b[0])
        rl = m.router_W @ hm
        rl += m.router_b
        return {"hidden": hm, "value": 1.0 / (1.0 + math.exp(-vl)) if vl > -700 else 0.0,
                "router_probs": 0.5 * (1.0 + np.tanh(0.5 * rl))}

    def _matrix(self, X: Any, what: str) -> np.ndarray:
        """(n, dim) float32 C-contiguous, finite; EngineError naming ``what`` otherwise."""
        try:
            E = np.ascontiguousarray(X, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EngineError(f"{what} are not numeric: {exc}") from None
        if E.ndim != 2 or E.shape[1] != self.dim:
            raise EngineError(f"{what} have shape {E.shape}, expected (n, {self.dim})")
        finite = np.isfinite(E).all(axis=1)
        if not finite.all():
            raise EngineError(f"{what}: row {int(np.argmin(finite))} contains NaN or inf")
        return E

    def _hidden_batch(self, E: np.ndarray, steps: list[list[np.ndarray]] | None) -> np.ndarray:
        """Pre-MicroLoRA hidden states (n, d) of checked rows: cached rows are reused, the
        others are encoded in one batched pass and cached (as :meth:`_hidden` does per row)."""
        n = E.shape[0]
        cache = self._hcache
        keys = [E[i].tobytes() if not steps or not steps[i] else
                b"".join([E[i].tobytes(), *(s.tobytes() for s in steps[i])]) for i in range(n)]
        H = np.empty((n, self.dim), np.float32)
        miss = []
        for i, k in enumerate(keys):
            h = cache.get(k)
            if h is None:
                miss.append(i)
            else:
                H[i] = h
        if miss:
            if steps is None or not any(steps[i] for i in miss):
                Hm = self.model.encode(E[miss])
            else:
                X, mask = self.model.pack(E[miss], [steps[i] for i in miss])
                Hm = self.model.encode(X, mask)
            H[miss] = Hm
            for j, i in enumerate(miss):
                if len(cache) >= _H_CACHE_SIZE:
                    del cache[next(iter(cache))]
                cache[keys[i]] = Hm[j]
        return H

    def forward_batch(self, embeddings: Any, steps: Sequence[Sequence[Any] | None] | None = None) -> dict[str, Any]:
        """Model outputs for many tasks in one vectorised pass.

        Returns ``{"h", "hidden", "value", "router_probs"}`` with one row per task: ``h``
        (n, d) the pre-MicroLoRA hidden states, ``hidden`` (n, d), ``value`` (n,),
        ``router_probs`` (n, M). Row ``i`` equals ``forward(embeddings[i], steps[i])`` up to
        float rounding (same state, batched matrix products instead of one vector at a
        time), and the activations are cached for :meth:`learn` exactly as :meth:`forward`
        caches them. ``steps``: None or one list of step embeddings per row.

        Example:
            >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "llm_router": {"models": [{"name": "m"}]}})
            >>> E = sona.embedder.embed(["add numbers", "sort a list"])
            >>> out = sona.forward_batch(E)
            >>> out["router_probs"].shape, bool(np.isclose(out["value"][1], sona.forward(E[1])["value"]))
            ((2, 1), True)
        """
        E = self._matrix(embeddings, "forward_batch: embeddings")
        n = E.shape[0]
        rows = None
        if steps is not None:
            steps = list(steps)
            if len(steps) != n:
                raise EngineError(f"forward_batch: {len(steps)} step lists for {n} embeddings")
            rows = [self._step_vectors(s) for s in steps]
            if not any(rows):
                rows = None
        H = self._hidden_batch(E, rows) if n else np.empty((0, self.dim), np.float32)
        m = self.model
        hm = m.micro.apply(H) if n else H.copy()
        vl = hm @ m.value_w
        vl += m.value_b[0]
        rl = hm @ m.router_W.T
        rl += m.router_b
        return {"h": H, "hidden": hm, "value": 0.5 * (1.0 + np.tanh(0.5 * vl)),
                "router_probs": 0.5 * (1.0 + np.tanh(0.5 * rl))}

    def apply(self, vector: Any, task: str | None = None) -> Any:
        """MicroLoRA applied to a (dim,) vector or the rows of an (n, dim) array.

        ``apply(pattern, task)``: a stored pattern (a :class:`~swarm_sona.bank.Pattern`,
        its ``to_dict()``, or its id when a bank is attached) merged with a new task; see
        :meth:`apply_pattern`.
        """
        if task is not None or isinstance(vector, (str, Mapping)) or hasattr(vector, "guidance"):
            return self.apply_pattern(vector, task)
        v = vector
        if not (isinstance(v, np.ndarray) and v.dtype == np.float32 and v.flags.c_contiguous):
            try:
                v = np.ascontiguousarray(v, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise EngineError(f"apply: vector is not numeric: {exc}") from None
        if v.ndim not in (1, 2) or v.shape[-1] != self.dim:
            raise EngineError(f"apply: vector has shape {v.shape}, expected ({self.dim},) or (n, {self.dim})")
        if v.ndim == 1:
            if not math.isfinite(float(v @ v)):
                raise EngineError("apply: vector contains NaN or inf (or values too large)")
        elif not np.isfinite(v).all():
            raise EngineError("apply: vectors contain NaN or inf")
        return self.model.micro.apply(v)

    # ---- ReasoningBank ----------------------------------------------------------------------------------
    def _need_bank(self, what: str) -> Any:
        if self.bank is None:
            raise EngineError(f"{what} needs a ReasoningBank: SONA(config, bank=ReasoningBank(...))")
        if getattr(self.bank, "dim", self.dim) != self.dim:
            raise EngineError(f"{what}: the bank holds {self.bank.dim}-d vectors, the engine is {self.dim}-d")
        return self.bank

    def store_pattern(self, task: str, input: str, output: str, reward: float, success: bool,
                      metadata: Mapping[str, Any] | None = None, agent_id: str | None = None, **kwargs: Any) -> str:
        """Store a pattern in the attached bank (``ReasoningBank.store_pattern``); returns its id."""
        return self._need_bank("store_pattern").store_pattern(task, input, output, reward, success, metadata,
                                                              agent_id, **kwargs)

    def retrieve_patterns(self, query: Any = None, k: int | None = None, **filters: Any) -> list[Any]:
        """Patterns similar to a task text or vector (``ReasoningBank.retrieve_patterns``, same filters)."""
        return self._need_bank("retrieve_patterns").retrieve_patterns(query, k, **filters)

    def apply_pattern(self, pattern: Any, task: str | None) -> dict[str, Any]:
        """A stored pattern's guidance merged with a new task.

        Returns ``{"task", "pattern_id", "pattern_task", "guidance", "prompt", "similarity",
        "expected_reward", "embedding"}``: ``prompt`` is the guidance followed by the new task,
        ``similarity`` the cosine between the new task's embedding and the pattern's vector,
        ``expected_reward`` the pattern's reward scaled by that similarity (clipped at 0),
        ``embedding`` the new task's embedding with MicroLoRA applied. With a bank attached the
        pattern's use is recorded (``mark_used``).
        """
        from swarm_sona.bank.pattern import Pattern

        if not isinstance(task, str) or not task.strip():
            raise EngineError("apply(pattern, task): task must be a non-empty string")
        if isinstance(pattern, str):
            found = self._need_bank("apply").get(pattern)
            if found is None:
                raise EngineError(f"apply: no pattern {pattern!r} in the bank")
            pattern = found
        elif isinstance(pattern, Mapping):
            if "id" not in pattern or "task" not in pattern:
                raise EngineError("apply: a pattern mapping needs at least 'id' and 'task'")
            vec = pattern.get("vector")
            pattern = Pattern.from_payload(pattern["id"], pattern,
                                           vector=None if vec is None else np.asarray(vec, np.float32))
        elif not isinstance(pattern, Pattern):
            raise EngineError(f"apply: expected a Pattern, its dict or its id, got {type(pattern).__name__}")
        e = self.embed(task)
        pv = pattern.vector if pattern.vector is not None else self.embed(pattern.task)
        pv = self._vector(pv, "pattern vector")
        ne, npv = float(np.linalg.norm(e)), float(np.linalg.norm(pv))
        sim = float(e @ pv) / (ne * npv) if ne > 0 and npv > 0 else 0.0
        guidance = pattern.guidance()
        if self.bank is not None:
            self.bank.mark_used(pattern.id)
        return {"task": task, "pattern_id": pattern.id, "pattern_task": pattern.task, "guidance": guidance,
                "prompt": f"{guidance}\n\nNew task: {task}", "similarity": sim,
                "expected_reward": float(pattern.reward) * max(0.0, sim), "embedding": self.apply(e)}

    # ---- instant loop ---------------------------------------------------------------------------------
    def _check_trajectories(self, traj: Any) -> list[Trajectory]:
        if isinstance(traj, Trajectory):
            trajs = [traj]
        elif isinstance(traj, Mapping):
            trajs = [traj]  # type: ignore[list-item]
        else:
            try:
                trajs = list(traj)
            except TypeError:
                raise EngineError(f"learn: expected a Trajectory or a list of them, got {type(traj).__name__}") from None
        if not trajs:
            raise EngineError("learn: no trajectories given")
        out = []
        for i, t in enumerate(trajs):
            if isinstance(t, Mapping):
                try:
                    t = Trajectory.from_dict(dict(t))
                except TrajectoryError as exc:
                    raise EngineError(f"learn: trajectory {i}: {exc}") from None
            if not isinstance(t, Trajectory):
                raise EngineError(f"learn: item {i} is {type(t).__name__}, expected Trajectory")
            e = t.embedding
            if not isinstance(e, np.ndarray) or e.shape != (self.dim,):
                got = e.shape[0] if isinstance(e, np.ndarray) and e.ndim == 1 else np.shape(e)
                raise EngineError(f"learn: trajectory {i} embedding has dimension {got}, expected {self.dim}")
            if e.dtype != np.float32:
                raise EngineError(f"learn: trajectory {i} embedding has dtype {e.dtype}, expected float32")
            if not math.isfinite(float(e @ e)):
                raise EngineError(f"learn: trajectory {i} embedding contains NaN or inf")
            r = t.reward
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
                raise EngineError(f"learn: trajectory {i} reward must be a finite number in [0, 1], got {r!r}")
            if t.steps:
                try:
                    self._step_vectors(t.steps)
                except EngineError as exc:
                    raise EngineError(f"learn: trajectory {i}: {exc}") from None
            out.append(t)
        return out

    def learn(self, traj: Trajectory | Iterable[Trajectory]) -> dict[str, Any]:
        """Instant loop for each trajectory, in order; background loop every ``background_every``.

        A list gives exactly the state of learning its trajectories one call at a time: the
        background loop runs right after the trajectory that completes a period (so later
        ones learn on the updated network). The hidden states come from the activations
        cached by :meth:`forward` / :meth:`forward_batch` (rows not cached are encoded in one
        batched pass), and an attached router gets its feedback in one
        ``feedback_batch`` call per stretch between background runs when it has one.

        Returns ``{"learned", "background", "background_at", "value", "value_loss",
        "version"}`` (``value``: the value head's predictions before the updates;
        ``background_at``: indices of the trajectories after which the background loop ran)
        and ``background_result`` (the last cycle's) when the background loop ran.
        """
        trajs = self._check_trajectories(traj)
        for hook in self.hooks:
            fn = getattr(hook, "before_learn", None)
            if fn is not None:
                fn(self, trajs)
        n = len(trajs)
        every = self.config.background_every
        values: list[float] = []
        loss_sum = 0.0
        result: dict[str, Any] = {"learned": n, "background": False, "background_at": []}
        i = 0
        while i < n:
            j = n if every <= 0 else min(n, i + max(1, every - self.n_since_background))
            loss_sum += self._instant(trajs[i:j], values)
            k = j - i
            self.n_learned += k
            self.n_since_background += k
            self.n_since_sync += k
            if every > 0 and self.n_since_background >= every:
                result["background_result"] = self.background(force=True)
                result["background"] = True
                result["background_at"].append(j - 1)
            i = j
        result.update(value=values[0] if n == 1 else values, value_loss=loss_sum / n, version=self.version)
        for hook in self.hooks:
            fn = getattr(hook, "after_learn", None)
            if fn is not None:
                fn(self, result)
        return result

    def _instant(self, trajs: Sequence[Trajectory], values: list[float]) -> float:
        """Instant-loop steps for ``trajs`` in order (no background in between); returns the loss sum."""
        if any(t.steps for t in trajs):
            rows: list[list[np.ndarray]] | None = [self._step_vectors(t.steps) if t.steps else [] for t in trajs]
        else:
            rows = None
        H = self._hidden_batch(np.stack([t.embedding for t in trajs]), rows)
        model = self.model
        lr, clip = self._lr, self._clip
        arms = self._arm
        log = math.log
        loss_sum = 0.0
        vl_ema, rw_ema, acc_ema = self.value_loss_ema, self.reward_ema, self.router_acc_ema
        fed = []
        for t, h in zip(trajs, H, strict=True):
            arm = arms.get(t.model, -1) if t.model is not None else -1
            r = t.reward
            v, u = model.instant_step(h, arm, r, 1.0 if t.success else 0.0, lr, clip)
            values.append(v)
            vc = min(max(v, 1e-7), 1 - 1e-7)
            loss = -(r * log(vc) + (1.0 - r) * log(1.0 - vc))
            loss_sum += loss
            vl_ema = loss if vl_ema is None else 0.99 * vl_ema + 0.01 * loss
            rw_ema = r if rw_ema is None else 0.99 * rw_ema + 0.01 * r
            if arm >= 0:
                hit = 1.0 if (u >= 0.5) == t.success else 0.0
                acc_ema = hit if acc_ema is None else 0.99 * acc_ema + 0.01 * hit
                fed.append(t)
            self.replay.append(t)
            self._pending.append(t)
        self.value_loss_ema, self.reward_ema, self.router_acc_ema = vl_ema, rw_ema, acc_ema
        if self.router is not None and fed:
            fb = getattr(self.router, "feedback_batch", None)
            if fb is not None and len(fed) > 1:  # one trajectory: the plain call is cheaper
                fb([t.task for t in fed], [t.model for t in fed], [t.success for t in fed],
                   [t.reward for t in fed], [t.cost_usd for t in fed], [t.latency_s for t in fed],
                   embeddings=np.stack([t.embedding for t in fed]))
            else:
                for t in fed:
                    self.router.feedback(t.task, model=t.model, success=t.success, reward=t.reward,
                                         cost=t.cost_usd, latency=t.latency_s, embedding=t.embedding)
        return loss_sum

    # ---- background loop -------------------------------------------------------------------------------
    def _batch(self, trajs: Sequence[Trajectory]) -> tuple[np.ndarray, np.ndarray | None]:
        E = np.stack([t.embedding for t in trajs])
        steps = [self._step_vectors(t.steps) for t in trajs] if any(t.steps for t in trajs) else None
        return self.model.pack(E, steps)

    def background(self, force: bool = True) -> dict[str, Any]:
        """Background loop: ``background_steps`` Adam mini-batches from the replay buffer on
        BaseLoRA + value/router heads with the EWC++ penalty; then distil the trajectories
        buffered since the last cycle into ``self.bank`` (if set).

        With ``force=False`` it only runs when ``background_every`` trajectories arrived since
        the last cycle. Returns ``{"ran", "steps", "loss", "value_loss", "router_loss",
        "ewc_penalty", "boundaries", "distilled", "duration_ms", "version"}``.
        """
        every = self.config.background_every
        if not force and (every == 0 or self.n_since_background < every):
            return {"ran": False, "steps": 0, "version": self.version}
        t0 = time.perf_counter()
        cfg = self.config
        model = self.model
        params = model.parameters(("base", "value", "router"))
        n = len(self.replay)
        steps_done = 0
        losses, vlosses, rlosses, pens = [], [], [], []
        boundaries = 0
        M = model.n_router
        for _ in range(cfg.background_steps if n else 0):
            bs = min(cfg.batch_size, n)
            idx = self._rng.choice(n, size=bs, replace=False)
            batch = [self.replay.items[i] for i in idx]
            X, mask = self._batch(batch)
            out, cache = model.forward_batch(X, mask, training=True, rng=self._rng)
            rewards = np.array([t.reward for t in batch], np.float64)
            lv, gv = bce_with_logits(out["value_logit"], rewards)
            grads_out: dict[str, np.ndarray] = {"value_logit": gv}
            lr_ = 0.0
            if M:
                arms = np.array([self._arm.get(t.model, -1) if t.model is not None else -1 for t in batch])
                rows = np.flatnonzero(arms >= 0)
                if rows.size:
                    target = np.zeros((bs, M))
                    weight = np.zeros((bs, M))
                    weight[rows, arms[rows]] = 1.0
                    target[rows, arms[rows]] = [1.0 if batch[i].success else 0.0 for i in rows]
                    lr_, gr = bce_with_logits(out["router_logits"], target, weight)
                    grads_out["router_logits"] = gr
            g = model.backward(cache, grads_out)
            grads = {k: g[k] for k in params if k in g}
            if self.ewc.observe(grads):
                boundaries += 1
                self.n_boundaries += 1
                self.ewc.consolidate(params, task=f"detected-{self.n_boundaries}")
            pen, pg = self.ewc.penalty(params)
            for k, v in pg.items():
                grads[k] = grads[k] + v if k in grads else v
            clip_grad_norm(grads, cfg.grad_clip)
            self.optimizer.step(params, grads)
            model.touch()
            steps_done += 1
            losses.append(lv + lr_ + pen)
            vlosses.append(lv)
            rlosses.append(lr_)
            pens.append(pen)
        self._hcache.clear()
        distilled = None
        if self.bank is not None and self._pending:
            distilled = self.bank.distill(list(self._pending))
        self._pending.clear()
        self.n_since_background = 0
        self.n_background += 1
        if steps_done:
            self.version += 1
        res = {"ran": True, "steps": steps_done, "loss": float(np.mean(losses)) if losses else None,
               "value_loss": float(np.mean(vlosses)) if vlosses else None,
               "router_loss": float(np.mean(rlosses)) if rlosses else None,
               "ewc_penalty": float(np.mean(pens)) if pens else 0.0, "boundaries": boundaries,
               "distilled": distilled, "replay": n, "duration_ms": (time.perf_counter() - t0) * 1e3,
               "version": self.version}
        self.last_background = {k: v for k, v in res.items() if k != "distilled"}
        for hook in self.hooks:
            fn = getattr(hook, "after_background", None)
            if fn is not None:
                fn(self, res)
        return res

    def consolidate(self, task: str | None = None) -> None:
        """Explicit task boundary: EWC++ anchors = current adapters/heads, Fisher normalised."""
        self.ewc.consolidate(self.model.parameters(("base", "value", "router", "tasks")), task=task)

    # ---- supervised fine-tuning --------------------------------------------------------------------------
    def _examples(self, examples: Any, what: str) -> tuple[np.ndarray, list[Any]]:
        if isinstance(examples, tuple) and len(examples) == 2 and isinstance(examples[0], np.ndarray) \
                and examples[0].ndim == 2:
            X, labels = examples
            labels = list(labels)
            if len(labels) != X.shape[0]:
                raise EngineError(f"{what}: {X.shape[0]} inputs but {len(labels)} labels")
            if X.shape[0] == 0:
                raise EngineError(f"{what}: no examples given")
            if X.shape[1] != self.dim:
                raise EngineError(f"{what}: inputs have dimension {X.shape[1]}, expected {self.dim}")
            try:
                X = np.ascontiguousarray(X, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise EngineError(f"{what}: inputs are not numeric: {exc}") from None
            bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
            if bad.size:
                raise EngineError(f"{what}: example {int(bad[0])} contains NaN or inf")
        else:
            try:
                pairs = list(examples)
            except TypeError:
                raise EngineError(f"{what}: examples must be (input, label) pairs or (X, y)") from None
            if not pairs:
                raise EngineError(f"{what}: no examples given")
            X = np.empty((len(pairs), self.dim), np.float32)
            labels = []
            texts: list[tuple[int, str]] = []
            for i, p in enumerate(pairs):
                if not isinstance(p, (tuple, list)) or len(p) != 2:
                    raise EngineError(f"{what}: example {i} must be an (input, label) pair, got {p!r:.60}")
                x, lab = p
                if isinstance(x, str):
                    texts.append((i, x))
                else:
                    X[i] = self._vector(x, f"{what}: example {i} input")
                labels.append(lab)
            if texts:
                X[[i for i, _ in texts]] = self.embedder.embed([t for _, t in texts])
        try:
            labels = [plain_label(lab) for lab in labels]
        except ModelError as exc:
            raise EngineError(f"{what}: {exc}") from None
        return X, labels

    def finetune(self, task: str, examples: Any, epochs: int = 5, *, lr: float | None = None,
                 batch_size: int | None = None, consolidate: bool = True, seed: int | None = None,
                 replay: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Supervised training of the task head ``task`` and BaseLoRA on labelled examples.

        ``examples``: ``(input, label)`` pairs (input = text or (dim,) vector), or a tuple
        ``(X (n, dim) array, labels)``. Labels are ints or strings; the head gains classes as
        new labels appear. ``replay``: ``{other_task: examples}`` mixed into the same shuffled
        mini-batches, each example through its own task head (rehearsal; joint training).
        Adam (``lr`` default ``config.background_lr``) over ``epochs`` passes, loss = mean
        cross-entropy + the EWC++ penalty of earlier consolidations; with ``consolidate`` the
        end of the call is a task boundary (Fisher normalised, anchors taken). Returns
        ``{"task", "n", "epochs", "steps", "loss", "train_acc", "ewc_penalty", "classes",
        "duration_s"}`` (``n``, ``loss`` and ``train_acc`` over all examples, replay included).
        """
        t0 = time.perf_counter()
        if not isinstance(task, str) or not task:
            raise EngineError(f"finetune: task must be a non-empty string, got {task!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise EngineError(f"finetune: epochs must be an integer >= 1, got {epochs!r}")
        bs = self.config.batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise EngineError(f"finetune: batch_size must be an integer >= 1, got {bs!r}")
        lr = self.config.background_lr if lr is None else lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise EngineError(f"finetune: lr must be a finite number > 0, got {lr!r}")
        if replay is not None and not isinstance(replay, Mapping):
            raise EngineError(f"finetune: replay must be a mapping task -> examples, got {type(replay).__name__}")
        groups: list[tuple[str, np.ndarray, list[Any]]] = [(task, *self._examples(examples, "finetune"))]
        for rt, rex in (replay or {}).items():
            if not isinstance(rt, str) or not rt:
                raise EngineError(f"finetune: replay task names must be non-empty strings, got {rt!r}")
            if rt == task:
                raise EngineError(f"finetune: replay names the task being trained ({task!r}); pass its examples once")
            groups.append((rt, *self._examples(rex, f"finetune: replay[{rt!r}]")))
        model = self.model
        Xs, ys, gid = [], [], []
        heads = []
        for g, (name, X, labels) in enumerate(groups):
            classes = list(dict.fromkeys(labels))
            if all(isinstance(c, int) for c in classes) or all(isinstance(c, str) for c in classes):
                classes = sorted(classes)
            head = model.ensure_task_head(name, classes)
            heads.append(head)
            Xs.append(X)
            ys.append(head.encode(labels))
            gid.append(np.full(len(labels), g))
        X = np.concatenate(Xs) if len(Xs) > 1 else Xs[0]
        y = np.concatenate(ys) if len(ys) > 1 else ys[0]
        G = np.concatenate(gid) if len(gid) > 1 else gid[0]
        params = model.parameters(("base", *(f"task:{name}" for name, _, _ in groups)))
        opt = Adam(lr)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        n = X.shape[0]
        steps = 0
        loss_sum = 0.0
        correct = 0
        pens: list[float] = []
        for ep in range(epochs):
            order = rng.permutation(n)
            loss_sum = 0.0
            correct = 0
            for s in range(0, n, bs):
                b = order[s:s + bs]
                out, cache = model.forward_batch(X[b], training=True, rng=rng)
                hm = out["hidden"]
                g_hidden = np.zeros_like(hm)
                grads: dict[str, np.ndarray] = {}
                gb = G[b]
                for g in np.unique(gb):
                    rows = np.flatnonzero(gb == g)
                    head = heads[g]
                    logits = hm[rows] @ head.W.T + head.b
                    loss, g_logits, probs = softmax_cross_entropy(logits, y[b][rows])
                    g_logits *= len(rows) / len(b)  # mean over the whole batch
                    grads[f"task.{head.name}.W"] = (g_logits.T @ hm[rows]).astype(np.float32)
                    grads[f"task.{head.name}.b"] = g_logits.sum(axis=0).astype(np.float32)
                    g_hidden[rows] = g_logits @ head.W
                    loss_sum += loss * len(rows)
                    if ep == epochs - 1:
                        correct += int(np.sum(np.argmax(probs, axis=1) == y[b][rows]))
                gm = model.backward(cache, {"hidden": g_hidden})
                grads.update({k: gm[k] for k in params if k in gm})
                self.ewc.observe(grads, detect=False)
                pen, pg = self.ewc.penalty(params)
                for k, v in pg.items():
                    grads[k] = grads[k] + v if k in grads else v
                clip_grad_norm(grads, self.config.grad_clip)
                opt.step(params, grads)
                model.touch()
                steps += 1
                pens.append(pen)
        if consolidate:
            self.consolidate(task)
        self._hcache.clear()
        self.version += 1
        res = {"task": task, "n": n, "epochs": epochs, "steps": steps, "loss": loss_sum / n,
               "train_acc": correct / n, "ewc_penalty": float(np.mean(pens)) if pens else 0.0,
               "classes": list(heads[0].classes), "duration_s": time.perf_counter() - t0}
        self.finetune_history.append({k: v for k, v in res.items() if k != "classes"})
        return res

    def _inputs(self, X: Any, what: str) -> tuple[np.ndarray, bool]:
        if isinstance(X, str):
            return self.embedder.embed([X]), True
        if isinstance(X, np.ndarray) and X.ndim == 1:
            return self._vector(X, f"{what}: input")[None, :], True
        if isinstance(X, np.ndarray) and X.ndim == 2:
            if X.shape[1] != self.dim:
                raise EngineError(f"{what}: inputs have dimension {X.shape[1]}, expected {self.dim}")
            X = np.ascontiguousarray(X, np.float32)
            if not np.isfinite(X).all():
                raise EngineError(f"{what}: inputs contain NaN or inf")
            return X, False
        items = list(X)
        if not items:
            return np.empty((0, self.dim), np.float32), False
        out = np.empty((len(items), self.dim), np.float32)
        texts = [(i, x) for i, x in enumerate(items) if isinstance(x, str)]
        for i, x in enumerate(items):
            if not isinstance(x, str):
                out[i] = self._vector(x, f"{what}: input {i}")
        if texts:
            out[[i for i, _ in texts]] = self.embedder.embed([t for _, t in texts])
        return out, False

    def predict_proba(self, task: str, X: Any) -> np.ndarray:
        """Class probabilities (n, C) of task head ``task`` (columns: ``classes(task)``)."""
        try:
            head = self.model.task_head(task)
        except ModelError as exc:
            raise EngineError(f"predict: {exc}") from None
        E, _ = self._inputs(X, "predict")
        if E.shape[0] == 0:
            return np.empty((0, len(head.classes)), np.float32)
        h = self.model.encode(E)
        logits = self.model.micro.apply(h) @ head.W.T + head.b
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, task: str, X: Any) -> Any:
        """Labels from task head ``task``: one label for one input (text or vector), else a list."""
        p = self.predict_proba(task, X)
        labels = self.model.task_heads[task].decode(np.argmax(p, axis=1))
        single = isinstance(X, str) or (isinstance(X, np.ndarray) and X.ndim == 1)
        return labels[0] if single else labels

    def classes(self, task: str) -> list[Any]:
        """Labels of task head ``task`` in column order."""
        try:
            return list(self.model.task_head(task).classes)
        except ModelError as exc:
            raise EngineError(str(exc)) from None

    # ---- routing ---------------------------------------------------------------------------------------------
    def route(self, task_text: str, *, embedding: Any = None, **constraints: Any) -> dict[str, Any]:
        """Choose a model for a task.

        Delegates to ``self.router.route(task_text, embedding=..., head_probs={model: p},
        **constraints)`` when a router is attached. Without one: the model with the highest
        router-head success probability among those with ``cost <= max_cost`` and probability
        ``>= min_quality`` (ties: cheaper first); returns ``{"model", "expected_quality",
        "estimated_cost", "head_probs", "reason"}``.
        """
        if not isinstance(task_text, str):
            raise EngineError(f"route: task_text must be a string, got {type(task_text).__name__}")
        unknown = set(constraints) - ROUTE_CONSTRAINTS
        if unknown:
            raise EngineError(f"route: unknown constraint(s) {sorted(unknown)}; "
                              f"known: {sorted(ROUTE_CONSTRAINTS)}")
        e = self.embed(task_text) if embedding is None else self._vector(embedding, "route: embedding")
        out = self.forward(e)
        head_probs = {n: float(p) for n, p in zip(self.model_names, out["router_probs"], strict=True)}
        if self.router is not None:
            return self.router.route(task_text, embedding=e, head_probs=head_probs, **constraints)
        return self._route_by_head(head_probs, constraints)

    def route_batch(self, task_texts: Sequence[str], *, embeddings: Any = None,
                    **constraints: Any) -> list[dict[str, Any]]:
        """Choose a model for each of many tasks: one :meth:`forward_batch`, one router call.

        The decisions are those of :meth:`route` on each task in order with no learning in
        between (the router's ``route_batch`` draws its exploration noise in the same order);
        ``embeddings`` (n, dim) skips embedding the texts (embedded in one call otherwise).
        The activations are cached for :meth:`learn`.

        Example:
            >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "llm_router": {"models": [
            ...     {"name": "small", "cost": 0.001}, {"name": "big", "cost": 0.03}]}})
            >>> [d["model"] for d in sona.route_batch(["add numbers", "prove a theorem"], max_cost=0.01)]
            ['small', 'small']
        """
        if isinstance(task_texts, str) or not all(isinstance(t, str) for t in task_texts):
            raise EngineError("route_batch: task_texts must be a list of strings")
        texts = list(task_texts)
        if embeddings is None:
            E = self.embedder.embed(texts) if texts else np.empty((0, self.dim), np.float32)
        else:
            E = embeddings
        E = self._matrix(E, "route_batch: embeddings")
        if E.shape[0] != len(texts):
            raise EngineError(f"route_batch: {E.shape[0]} embeddings for {len(texts)} tasks")
        P = self.forward_batch(E)["router_probs"]
        r = self.router
        if r is not None:
            if hasattr(r, "route_batch") and tuple(getattr(r, "names", ())) == tuple(self.model_names):
                return list(r.route_batch(texts, embeddings=E, head_probs=P, **constraints))
            return [r.route(t, embedding=e, head_probs=dict(zip(self.model_names, p.tolist(), strict=True)),
                            **constraints) for t, e, p in zip(texts, E, P, strict=True)]
        return [self._route_by_head(dict(zip(self.model_names, p.tolist(), strict=True)), constraints) for p in P]

    def _route_by_head(self, head_probs: dict[str, float], constraints: Mapping[str, Any]) -> dict[str, Any]:
        """Routing without an LLMRouter: the router head's most confident model within constraints."""
        unknown = set(constraints) - {"max_cost", "min_quality"}
        if unknown:
            raise EngineError(f"route: unknown constraint(s) {sorted(unknown)} without a router "
                              "(supported: max_cost, min_quality)")
        if not self.model_names:
            raise EngineError("route: no models configured (config.llm_router.models) and no router attached")
        max_cost = constraints.get("max_cost")
        min_q = constraints.get("min_quality")
        cands = [n for n in self.model_names
                 if (max_cost is None or self._costs[n] <= max_cost) and (min_q is None or head_probs[n] >= min_q)]
        reason = "router head (no LLMRouter attached): highest predicted success"
        if not cands:
            fb = self.config.llm_router.fallback
            cands = [fb] if fb else [min(self.model_names, key=lambda n: self._costs[n])]
            reason = "no model satisfies the constraints: fallback"
        best = max(cands, key=lambda n: (head_probs[n], -self._costs[n]))
        return {"model": best, "expected_quality": head_probs[best], "estimated_cost": self._costs[best],
                "head_probs": head_probs, "reason": reason}

    # ---- hooks, stats ---------------------------------------------------------------------------------------
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
        m = self.model
        return {"dim": self.dim, "version": self.version, "n_learned": self.n_learned,
                "n_background": self.n_background, "n_since_background": self.n_since_background,
                "replay": len(self.replay), "pending": len(self._pending),
                "value_loss_ema": self.value_loss_ema, "router_acc_ema": self.router_acc_ema,
                "reward_ema": self.reward_ema,
                "adapter_norms": {k: ad.norm() for k, ad in m.base_adapters().items()},
                "micro_norm": m.micro.norm(), "tasks": sorted(m.task_heads), "models": list(self.model_names),
                "ewc": self.ewc.stats(), "last_background": self.last_background,
                "kernels": self.kernels.info()["active"] if hasattr(self.kernels, "info") else "numpy",
                "bank": self.bank is not None, "router": self.router is not None}

    # ---- export / import --------------------------------------------------------------------------------------
    def export_delta(self) -> dict[str, Any]:
        """``{"adapters": {module | "micro": {"A", "B"}}, "heads": {...}, "fisher": {param: arr},
        "n_trajectories", "n_since_sync", "version"}`` (copies). ``fisher`` is the running
        EWC++ Fisher of the parameters trained by the background loop / finetune."""
        m = self.model
        adapters = {k: ad.state_dict() for k, ad in m.base_adapters().items()}
        adapters["micro"] = m.micro.state_dict()
        known = m.parameters(("base", "value", "router", "tasks"))
        fisher = {k: f for k, f in self.ewc.importance().items() if k in known and f.shape == known[k].shape}
        return {"adapters": adapters, "heads": m.heads_state(), "fisher": fisher,
                "n_trajectories": self.n_learned, "n_since_sync": self.n_since_sync, "version": self.version}

    def import_state(self, merged: Mapping[str, Any]) -> None:
        """Install a merged state (layout of :meth:`export_delta`; any subset of adapters and
        heads). A ``fisher`` entry anchors EWC++ at the imported parameters with that Fisher.
        Everything is validated before anything changes."""
        if not isinstance(merged, Mapping):
            raise EngineError(f"import_state: expected a mapping, got {type(merged).__name__}")
        unknown = set(merged) - {"adapters", "heads", "fisher", "n_trajectories", "n_since_sync", "version"}
        if unknown:
            raise EngineError(f"import_state: unknown key(s) {sorted(unknown)}")
        m = self.model
        targets = dict(m.base_adapters())
        targets["micro"] = m.micro
        adapters = merged.get("adapters") or {}
        if not isinstance(adapters, Mapping):
            raise EngineError("import_state: adapters must be a mapping")
        staged = []
        for name, st in adapters.items():
            if name not in targets:
                raise EngineError(f"import_state: unknown adapter {name!r} (have {sorted(targets)})")
            probe = targets[name]
            try:  # validate on a throw-away copy
                tmp = type(probe).from_dict(probe.to_dict(), kernels=self.kernels)
                tmp.load_state_dict(st, where=f"import_state: adapters.{name}")
            except LoRAError as exc:
                raise EngineError(str(exc)) from None
            staged.append((probe, tmp))
        heads = merged.get("heads")
        heads = self._complete_heads(heads) if heads else None
        fisher = merged.get("fisher") or {}
        version = merged.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise EngineError(f"import_state: version must be an integer, got {version!r}")
        if fisher:
            params_after = m.parameters(("base", "value", "router", "tasks"))
            for k, f in fisher.items():
                if k not in params_after or np.shape(f) != params_after[k].shape:
                    raise EngineError(f"import_state: fisher entry {k!r} does not match a parameter")
                if not np.all(np.isfinite(f)) or np.any(np.asarray(f) < 0):
                    raise EngineError(f"import_state: fisher entry {k!r} must be finite and >= 0")
        if heads:
            try:
                m.load_heads(heads, where="import_state: heads")
            except ModelError as exc:
                raise EngineError(str(exc)) from None
        for probe, tmp in staged:
            probe.A[...] = tmp.A
            probe.B[...] = tmp.B
            probe.touch()
        m.touch()
        self._hcache.clear()
        if fisher:
            self.ewc.set_anchor(m.parameters(("base", "value", "router", "tasks")), fisher, task="imported")
        if version is not None:
            self.version = version
        self.n_since_sync = 0

    def _complete_heads(self, heads: Any) -> dict[str, Any]:
        """Task heads imported without ``classes`` keep the classes of the existing head."""
        if not isinstance(heads, Mapping):
            raise EngineError("import_state: heads must be a mapping")
        out = dict(heads)
        tasks = out.get("tasks")
        if tasks:
            if not isinstance(tasks, Mapping):
                raise EngineError("import_state: heads.tasks must be a mapping")
            full = {}
            for t, hd in tasks.items():
                hd = dict(hd) if isinstance(hd, Mapping) else hd
                if isinstance(hd, dict) and "classes" not in hd:
                    if t not in self.model.task_heads:
                        raise EngineError(f"import_state: heads.tasks.{t}: unknown task and no classes given")
                    hd["classes"] = list(self.model.task_heads[t].classes)
                full[t] = hd
            out["tasks"] = full
        return out

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds (plain data + arrays)."""
        st: dict[str, Any] = {
            "format": CHECKPOINT_KIND, "config": self._config_for_checkpoint(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self._replay_state(),
            "pending": [t.id for t in self._pending],
            "counters": {"version": self.version, "n_learned": self.n_learned,
                         "n_since_background": self.n_since_background, "n_since_sync": self.n_since_sync,
                         "n_background": self.n_background, "n_boundaries": self.n_boundaries,
                         "value_loss_ema": self.value_loss_ema, "router_acc_ema": self.router_acc_ema,
                         "reward_ema": self.reward_ema},
            "rng": _big_ints_to_str(self._rng.bit_generator.state),
            "embedder": getattr(self.embedder, "name", type(self.embedder).__name__),
        }
        if self.config.ewc.checkpointing:
            st["ewc"] = self.ewc.state_dict()
        if self.router is not None and hasattr(self.router, "state_dict"):
            st["router"] = self.router.state_dict()
        return st

    def _replay_state(self) -> dict[str, Any]:
        """The replay buffer, column-wise: ``{"n", "embedding": (n, dim), <field>: column}``
        (numbers as arrays, strings as lists, ``steps`` as ``Trajectory.to_dict`` step lists).
        A handful of columns instead of n records keeps checkpoints fast to write, verify and
        read."""
        items = self.replay.ordered()
        cols: dict[str, Any] = {"n": len(items), "embedding": np.stack([t.embedding for t in items]) if items
                                else np.zeros((0, self.dim), np.float32)}
        for f in _REPLAY_TEXT:
            cols[f] = [getattr(t, f) for t in items]
        for f in _REPLAY_NUM:
            cols[f] = np.array([getattr(t, f) for t in items], np.float64)
        cols["success"] = np.array([t.success for t in items], bool)
        # sparse: [row, value] pairs for the (usually few) trajectories with metadata / steps
        cols["metadata"] = [[i, t.metadata] for i, t in enumerate(items) if t.metadata]
        cols["steps"] = [[i, [{"action": st.action, "embedding": st.embedding, "reward": st.reward,
                               "metadata": st.metadata} for st in t.steps]] for i, t in enumerate(items) if t.steps]
        return {"replay": cols}

    def _replay_from_state(self, raw: Any) -> list[Trajectory]:
        """Trajectories from :meth:`_replay_state` columns (or the older list of ``to_dict`` records)."""
        if not isinstance(raw, Mapping):
            return [Trajectory.from_dict(d) for d in raw]
        n = raw["n"]
        E = np.asarray(raw["embedding"])
        if E.shape != (n, self.dim):
            raise EngineError(f"replay embeddings have shape {E.shape}, expected ({n}, {self.dim})")
        for f in (*_REPLAY_TEXT, *_REPLAY_NUM, "success"):
            if len(raw[f]) != n:
                raise EngineError(f"replay column {f!r} has {len(raw[f])} entries, expected {n}")
        num = {f: np.asarray(raw[f], np.float64).tolist() for f in _REPLAY_NUM}
        success = [bool(v) for v in raw["success"]]
        sparse: dict[str, dict[int, Any]] = {}
        for f in ("metadata", "steps"):
            sparse[f] = {}
            for pair in raw[f]:
                if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], int) \
                        or not 0 <= pair[0] < n:
                    raise EngineError(f"replay column {f!r}: malformed entry {pair!r:.60}")
                sparse[f][pair[0]] = pair[1]
        meta, steps = sparse["metadata"], sparse["steps"]
        return [Trajectory.from_dict({"embedding": E[i], "success": success[i], "steps": steps.get(i, []),
                                      "metadata": meta.get(i, {}), **{f: raw[f][i] for f in _REPLAY_TEXT},
                                      **{f: num[f][i] for f in _REPLAY_NUM}})
                for i in range(n)]

    def _config_for_checkpoint(self) -> dict[str, Any]:
        cfg = self.config.to_dict()
        rb = cfg.get("reasoning_bank")
        if isinstance(rb, dict) and rb.get("api_key"):
            rb["api_key"] = None  # secrets never go into checkpoints
        return cfg

    def save(self, path: str | Path) -> None:
        """Write an atomic, checksummed checkpoint (the previous one is kept as ``path.prev``)."""
        codec.write_checkpoint(path, self.state_dict(), kind=CHECKPOINT_KIND)

    @classmethod
    def load(cls, path: str | Path, *, embedder: Embedder | None = None, bank: Any = None, router: Any = "auto",
             kernels: ModuleType | None = None) -> SONA:
        """Rebuild an engine from :meth:`save`'s checkpoint. A corrupt or truncated file is
        refused (:class:`~swarm_sona.core.codec.CheckpointError`) unless ``path.prev`` is valid,
        which is then used. The router's state is restored when it has ``load_state_dict``."""
        st = codec.read_checkpoint(path, kind=CHECKPOINT_KIND)
        if not isinstance(st, Mapping) or st.get("format") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path}: not a SONA engine checkpoint")
        try:
            eng = cls(st["config"], embedder=embedder, bank=bank, router=router, kernels=kernels)
            eng._load_state(st)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: unusable engine checkpoint: {exc}") from exc
        return eng

    def _load_state(self, st: Mapping[str, Any]) -> None:
        replay = self._replay_from_state(st.get("replay", []))
        for i, t in enumerate(replay):
            if t.dim != self.dim:
                raise EngineError(f"replay trajectory {i} has dimension {t.dim}, expected {self.dim}")
        try:
            self.model.load_state_dict(st["model"])
            if "ewc" in st:
                self.ewc.load_state_dict(st["ewc"])
            self.optimizer.load_state_dict(st["optimizer"])
        except (ModelError, EWCError, OptimizerError) as exc:
            raise EngineError(str(exc)) from None
        self.model.touch()
        for t in replay:
            self.replay.append(t)
        by_id = {t.id: t for t in replay}
        self._pending.extend(by_id[i] for i in st.get("pending", []) if i in by_id)
        c = st.get("counters", {})
        self.version = int(c.get("version", 0))
        self.n_learned = int(c.get("n_learned", 0))
        self.n_since_background = int(c.get("n_since_background", 0))
        self.n_since_sync = int(c.get("n_since_sync", 0))
        self.n_background = int(c.get("n_background", 0))
        self.n_boundaries = int(c.get("n_boundaries", 0))
        self.value_loss_ema = c.get("value_loss_ema")
        self.router_acc_ema = c.get("router_acc_ema")
        self.reward_ema = c.get("reward_ema")
        if "rng" in st:
            self._rng.bit_generator.state = _str_to_big_ints(st["rng"])
        if "router" in st and self.router is not None and hasattr(self.router, "load_state_dict"):
            self.router.load_state_dict(st["router"])

    def __repr__(self) -> str:
        return (f"SONA(dim={self.dim}, version={self.version}, learned={self.n_learned}, "
                f"tasks={sorted(self.model.task_heads)}, models={self.model_names})")
