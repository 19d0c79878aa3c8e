"""The background loop: Adam mini-batches on BaseLoRA + value/router heads with EWC++.

Each step draws a mini-batch (from the replay buffer, or from a given set of trajectories for
:meth:`BackgroundLoop.train_on`), runs the network forward and backward, feeds the gradients to
EWC++ (a detected task boundary consolidates it), adds the EWC++ penalty's gradient, clips and
takes an Adam step. With ``ewc.consolidate_every`` N > 0, a cycle that ends N or more learned
trajectories after the last consolidation consolidates EWC++ online (anchors = the parameters
the cycle leaves, Fisher = the running estimate), so EWC++ anchors in one stream without a
detected boundary. A cycle ends by distilling the trajectories learned since the last cycle
into the bank (when one is attached).

Example:
    >>> from swarm_sona.engine.sona import SONA
    >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "background_every": 0, "background_steps": 2})
    >>> _ = sona.learn({"task": "add two numbers", "output": "a + b", "reward": 1.0})
    >>> res = sona.background()
    >>> res["ran"], res["steps"], res["version"]
    (True, 2, 1)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np

from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.activations import Activations
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.counters import EngineCounters
from swarm_sona.engine.replay import Replay
from swarm_sona.learning.ewc import EWC
from swarm_sona.learning.heads import bce_with_logits
from swarm_sona.learning.model import SONAModel
from swarm_sona.learning.optim import Adam, clip_grad_norm

__all__ = ["BackgroundLoop", "BackgroundResult", "StepLoss"]


class StepLoss(TypedDict):
    """Losses of one background step."""

    loss: float
    value_loss: float
    router_loss: float
    ewc_penalty: float
    boundary: bool


class BackgroundResult(TypedDict, total=False):
    """What a background cycle did (``ran`` False: not due, nothing else but steps/version)."""

    ran: bool
    steps: int
    loss: float | None
    value_loss: float | None
    router_loss: float | None
    ewc_penalty: float
    boundaries: int
    consolidated: bool
    distilled: Any
    replay: int
    duration_ms: float
    version: int


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


class BackgroundLoop:
    """Background-loop steps and cycles of one engine (see module docs)."""

    def __init__(self, config: SONAConfig, model: SONAModel, ewc: EWC, optimizer: Adam, arms: dict[str, int],
                 acts: Activations, rng: np.random.Generator) -> None:
        self.config = config
        self.model = model
        self.ewc = ewc
        self.optimizer = optimizer
        self.arms = arms
        self.acts = acts
        self.rng = rng
        self.last: dict[str, Any] | None = None

    def step(self, batch: Sequence[Trajectory], counters: EngineCounters, *, detect: bool | None = None) -> StepLoss:
        """One Adam step on ``batch`` with the EWC++ penalty (``detect``: boundary detection,
        None = the EWC config's)."""
        model = self.model
        params = model.parameters(("base", "value", "router"))
        E = np.stack([t.embedding for t in batch])
        steps = [self.acts.step_vectors(t.steps) for t in batch] if any(t.steps for t in batch) else None
        X, mask = model.pack(E, steps)
        out, cache = model.forward_batch(X, mask, training=True, rng=self.rng)
        rewards = np.array([t.reward for t in batch], np.float64)
        lv, gv = bce_with_logits(out["value_logit"], rewards)
        grads_out: dict[str, np.ndarray] = {"value_logit": gv}
        lr_ = 0.0
        M = model.n_router
        if M:
            arms = np.array([self.arms.get(t.model, -1) if t.model is not None else -1 for t in batch])
            rows = np.flatnonzero(arms >= 0)
            if rows.size:
                target = np.zeros((len(batch), M))
                weight = np.zeros((len(batch), M))
                weight[rows, arms[rows]] = 1.0
                target[rows, arms[rows]] = [1.0 if batch[int(i)].success else 0.0 for i in rows]
                lr_, gr = bce_with_logits(out["router_logits"], target, weight)
                grads_out["router_logits"] = gr
        g = model.backward(cache, grads_out)
        grads = {k: g[k] for k in params if k in g}
        boundary = bool(self.ewc.observe(grads, detect=detect))
        if boundary:
            counters.n_boundaries += 1
            self.ewc.consolidate(params, task=f"detected-{counters.n_boundaries}")
        pen, pg = self.ewc.penalty(params)
        for k, v in pg.items():
            grads[k] = grads[k] + v if k in grads else v
        clip_grad_norm(grads, self.config.grad_clip)
        self.optimizer.step(params, grads)
        model.touch()
        return {"loss": lv + lr_ + pen, "value_loss": lv, "router_loss": lr_, "ewc_penalty": pen,
                "boundary": boundary}

    def _steps(self, pool: Sequence[Trajectory], n_steps: int, counters: EngineCounters,
               detect: bool | None) -> list[StepLoss]:
        n = len(pool)
        out = []
        for _ in range(n_steps if n else 0):
            bs = min(self.config.batch_size, n)
            idx = self.rng.choice(n, size=bs, replace=False)
            out.append(self.step([pool[i] for i in idx.tolist()], counters, detect=detect))
        self.acts.clear()
        return out

    def run(self, replay: Replay, pending: deque[Trajectory], counters: EngineCounters, bank: Any) -> BackgroundResult:
        """One cycle: ``background_steps`` mini-batches from the replay buffer, then distil
        the pending trajectories into ``bank`` (if not None)."""
        t0 = time.perf_counter()
        losses = self._steps(replay.items, self.config.background_steps, counters, None)
        consolidated = self.consolidate_if_due(counters) if losses else False
        distilled = None
        if bank is not None and pending:
            distilled = bank.distill(list(pending))
        pending.clear()
        counters.n_since_background = 0
        counters.n_background += 1
        if losses:
            counters.version += 1
        res: BackgroundResult = {
            "ran": True, "steps": len(losses), "loss": _mean([s["loss"] for s in losses]),
            "value_loss": _mean([s["value_loss"] for s in losses]),
            "router_loss": _mean([s["router_loss"] for s in losses]),
            "ewc_penalty": _mean([s["ewc_penalty"] for s in losses]) or 0.0,
            "boundaries": sum(s["boundary"] for s in losses), "consolidated": consolidated,
            "distilled": distilled, "replay": len(replay),
            "duration_ms": (time.perf_counter() - t0) * 1e3, "version": counters.version}
        self.last = {k: v for k, v in res.items() if k != "distilled"}
        return res

    def consolidate_if_due(self, counters: EngineCounters) -> bool:
        """Online consolidation (``ewc.consolidate_every`` N > 0): when N or more trajectories
        were learned since the last consolidation, anchor EWC++ at the current parameters with
        the running Fisher; returns whether it did."""
        every = self.config.ewc.consolidate_every
        if every <= 0 or counters.n_since_consolidation < every:
            return False
        counters.n_consolidations += 1
        counters.n_since_consolidation = 0
        self.ewc.consolidate(self.model.parameters(("base", "value", "router")),
                             task=f"online-{counters.n_consolidations}")
        return True

    def train_on(self, trajs: Sequence[Trajectory], n_steps: int, counters: EngineCounters) -> list[StepLoss]:
        """``n_steps`` mini-batches drawn from ``trajs`` only (a task trained as a task of its
        own); the gradients feed the EWC++ Fisher, boundary detection off (the caller sets it)."""
        losses = self._steps(list(trajs), n_steps, counters, False)
        if losses:
            counters.version += 1
        return losses
