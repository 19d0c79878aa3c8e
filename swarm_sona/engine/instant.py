"""The instant loop: one SGD step per trajectory on MicroLoRA + value/router heads.

No backward through the network: the kernel ``instant_step`` updates MicroLoRA and the heads
from the cached pre-MicroLoRA hidden state. The value head learns the reward; the router head
learns the chosen model's success (bandit feedback: only that model's row; a model not in the
configured table updates the value head only). Learned trajectories go to the replay buffer
and to the pending list the background loop distils; an attached router gets their feedback.
With a :class:`~.head_gate.HeadGate`, each routed outcome is first scored by the gate: the
router's bandit estimate and its head blend for the chosen model, both before the router learns
from the outcome (and the head's probability before its own step).

Example:
    >>> import numpy as np
    >>> from swarm_sona.engine.sona import SONA
    >>> from swarm_sona.core.trajectory import Trajectory
    >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "background_every": 0})
    >>> t = Trajectory(task="x", embedding=sona.embed("x"), reward=1.0, success=True)
    >>> values = []
    >>> loss = sona.instant.run([t], sona.activations, sona.counters, None, values)
    >>> len(values), len(sona.replay), loss > 0
    (1, 1, True)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.activations import Activations
from swarm_sona.engine.counters import EngineCounters
from swarm_sona.engine.head_gate import HeadGate
from swarm_sona.engine.replay import Replay
from swarm_sona.learning.model import SONAModel

__all__ = ["InstantLoop"]


class InstantLoop:
    """Instant-loop steps of one engine (see module docs).

    ``arms``: model name -> router-head row. ``replay`` and ``pending`` receive every learned
    trajectory. ``gate``: the head gate that scores routed outcomes (None: no gate).
    """

    def __init__(self, model: SONAModel, arms: dict[str, int], lr: float, clip: float, replay: Replay,
                 pending: deque[Trajectory], gate: HeadGate | None = None) -> None:
        self.gate = gate
        self.model = model
        self.arms = arms
        self.lr = lr
        self.clip = clip
        self.replay = replay
        self.pending = pending

    def run(self, trajs: Sequence[Trajectory], acts: Activations, counters: EngineCounters, router: Any,
            values: list[float]) -> float:
        """Steps for ``trajs`` in order (no background in between); appends each value-head
        prediction (before its update) to ``values``; returns the summed value loss."""
        if len(trajs) == 1 and not trajs[0].steps:
            return self.run_one(trajs[0], acts, counters, router, values)
        if any(t.steps for t in trajs):
            rows: list[list[np.ndarray]] | None = [acts.step_vectors(t.steps) if t.steps else [] for t in trajs]
        else:
            rows = None
        E = np.stack([t.embedding for t in trajs])
        H = acts.hidden_batch(E, rows)
        model, arms, log = self.model, self.arms, math.log
        arm_l = [arms.get(t.model, -1) if t.model is not None else -1 for t in trajs]
        rewards = [t.reward for t in trajs]
        vals, probs = _steps(model, H, arm_l, rewards, [1.0 if t.success else 0.0 for t in trajs], self.lr, self.clip)
        loss_sum = 0.0
        vl_ema, rw_ema, acc_ema = counters.value_loss_ema, counters.reward_ema, counters.router_acc_ema
        fed = []
        heads: list[float] = []
        for t, arm, r, v, u in zip(trajs, arm_l, rewards, vals, probs, strict=True):
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
                heads.append(u)
        self.replay.extend(trajs)
        self.pending.extend(trajs)
        counters.value_loss_ema, counters.reward_ema, counters.router_acc_ema = vl_ema, rw_ema, acc_ema
        if router is not None and fed:
            if self.gate is not None:
                _score_head(self.gate, router, fed, heads, arms)
            _feedback(router, fed, E if len(fed) == len(trajs) else None)
        return loss_sum


    def run_one(self, t: Trajectory, acts: Activations, counters: EngineCounters, router: Any,
                values: list[float]) -> float:
        """:meth:`run` of one trajectory without steps: the same state, without the chunk's
        stacking and row loops (the single-call API path: ``sona.learn(trajectory)``)."""
        arm = self.arms.get(t.model, -1) if t.model is not None else -1
        r = t.reward
        v, u = self.model.instant_step(acts.hidden(t.embedding, []), arm, r, 1.0 if t.success else 0.0,
                                       self.lr, self.clip)
        values.append(v)
        vc = min(max(v, 1e-7), 1 - 1e-7)
        loss = -(r * math.log(vc) + (1.0 - r) * math.log(1.0 - vc))
        c = counters
        c.value_loss_ema = loss if c.value_loss_ema is None else 0.99 * c.value_loss_ema + 0.01 * loss
        c.reward_ema = r if c.reward_ema is None else 0.99 * c.reward_ema + 0.01 * r
        self.replay.append(t)
        self.pending.append(t)
        if arm >= 0:
            hit = 1.0 if (u >= 0.5) == t.success else 0.0
            c.router_acc_ema = hit if c.router_acc_ema is None else 0.99 * c.router_acc_ema + 0.01 * hit
            if router is not None:
                if self.gate is not None:
                    _score_head(self.gate, router, [t], [u], self.arms)
                _feedback(router, [t])
        return loss


def _steps(model: SONAModel, H: np.ndarray, arms: list[int], rewards: list[float], successes: list[float],
           lr: float, clip: float) -> tuple[list[float], list[float]]:
    """The instant-loop steps of a chunk, in order: one ``instant_steps`` kernel call (arguments
    checked once for the chunk) when the model's kernels have it, else one ``instant_step`` per row.
    Returns the value-head and router-head predictions, each before its row's update."""
    batch = getattr(model.kernels, "instant_steps", None)
    if batch is None or len(arms) < 2:
        vu = [model.instant_step(h, a, r, s, lr, clip) for h, a, r, s in zip(H, arms, rewards, successes, strict=True)]
        return [float(v) for v, _ in vu], [float(u) for _, u in vu]
    micro = model.micro
    v, u = batch(H, micro.A, micro.B, micro.scale, model.value_w, model.value_b, model.router_W, model.router_b,
                 np.asarray(arms, np.int64), rewards, successes, lr, micro.train_a, clip)
    return v.tolist(), u.tolist()


def _score_head(gate: HeadGate, router: Any, fed: list[Trajectory], heads: list[float],
                arms: dict[str, int]) -> None:
    """The gate's scores of the routed outcomes: bandit alone vs full blend for the chosen model."""
    q0s, q1s, ys = [], [], []
    for t, u in zip(fed, heads, strict=True):
        i = arms[t.model]  # type: ignore[index]
        q0 = np.asarray(router.success_probabilities(embedding=t.embedding), np.float64)
        hv = q0.copy()
        hv[i] = u
        q1 = router.success_probabilities(embedding=t.embedding, head_probs=hv)
        q0s.append(float(q0[i]))
        q1s.append(float(q1[i]))
        ys.append(1.0 if t.success else 0.0)
    gate.record_many(q0s, q1s, ys)


def _feedback(router: Any, fed: list[Trajectory], E: np.ndarray | None = None) -> None:
    """The router's feedback for the trajectories of its models (one batched call for many;
    ``E``: their embeddings already stacked, or None)."""
    fb = getattr(router, "feedback_batch", None)
    if fb is not None and len(fed) > 1:  # one trajectory: the plain call is cheaper
        fb([t.task for t in fed], [t.model for t in fed], [t.success for t in fed],
           [t.reward for t in fed], [t.cost_usd for t in fed], [t.latency_s for t in fed],
           embeddings=np.stack([t.embedding for t in fed]) if E is None else E)
    else:
        for t in fed:
            router.feedback(t.task, model=t.model, success=t.success, reward=t.reward,
                            cost=t.cost_usd, latency=t.latency_s, embedding=t.embedding)
