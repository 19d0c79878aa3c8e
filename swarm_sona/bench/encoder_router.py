"""The router of ``bench ablation``'s ``adapted`` variant: the linear bandit over raw features and a
pretrained encoder's pooled output with a low-rank adapter on that output, trained online.

The adapter learns through the bandit itself (a neural-linear bandit whose last layer is the
LLMRouter's per-model Bayesian posterior): no separate head, and the exploration stays the
bandit's. The encoder's activations are computed once per prompt and cached (the bench's
features), so an outcome costs one rank-r update on top of the bandit's.

Example:
    >>> import numpy as np
    >>> r = AdaptedEncoderRouter({"models": [{"name": "w"}, {"name": "s"}]}, 4, raw_dim=1, rank=2)
    >>> r.B.shape, r.A.shape
    ((3, 2), (2, 3))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from swarm_sona.core.executor import Task
from swarm_sona.routing.posterior import sigmoid
from swarm_sona.routing.router import LLMRouter

__all__ = ["AdaptedEncoderRouter"]


class AdaptedEncoderRouter:
    """An LLMRouter on ``[hashed ; z]`` with ``z = e + s B phi(A e)``: a low-rank adapter on an
    encoder's pooled output ``e`` (the features' last ``dim - raw_dim`` columns), trained online.

    ``A`` (r x d, seeded Gaussian / sqrt(d)) stays fixed; ``B`` (d x r) starts at zero, so a
    new router routes exactly as the bandit on ``[hashed ; e]``. Every outcome of model ``m``
    steps ``B`` by ``lr`` along the log-likelihood gradient of the bandit's own success
    predictor ``sigmoid(w_m . [hashed ; z ; 1])`` (its posterior mean ``w_m``: the Bayesian last
    layer); the bandit then learns the outcome on the features it routed with. ``s = 1 / r``.

    Example:
        >>> r = AdaptedEncoderRouter({"models": [{"name": "w", "quality": 0.6}, {"name": "s"}]}, 6, raw_dim=2)
        >>> x = np.array([1, 0, 0.5, 0.5, 0.5, 0.5], np.float32)
        >>> r.route("q", embedding=x).model in ("w", "s")
        True
        >>> for _ in range(2):   # B's gradient runs through the bandit's weights, zero before its first update
        ...     r.feedback("q", "s", True, embedding=x)
        >>> bool(np.abs(r.B).sum() > 0)
        True
    """

    def __init__(self, router_cfg: Mapping[str, Any], dim: int, *, raw_dim: int, rank: int = 16, lr: float = 0.05,
                 act: str = "linear", seed: int = 0) -> None:
        if not 0 <= raw_dim < dim:
            raise ValueError(f"raw_dim must be in [0, dim={dim}), got {raw_dim}")
        if act not in ("linear", "tanh"):
            raise ValueError(f"act must be 'linear' or 'tanh', got {act!r}")
        self.router = LLMRouter(dict(router_cfg), dim=dim)
        self.index = self.router.index
        enc = dim - raw_dim
        self.raw_dim, self.lr, self.act, self.scale = raw_dim, float(lr), act, 1.0 / rank
        self.A = (np.random.default_rng(seed).standard_normal((rank, enc)) / math.sqrt(enc)).astype(np.float32)
        self.B = np.zeros((enc, rank), np.float32)

    def features(self, embedding: Any) -> tuple[np.ndarray, np.ndarray]:
        """``([hashed ; z], phi(A e))`` of a raw feature row."""
        x = np.asarray(embedding, np.float32)
        a = self.A @ x[self.raw_dim:]
        if self.act == "tanh":
            a = np.tanh(a)
        out = x.copy()
        out[self.raw_dim:] += self.scale * (self.B @ a)
        return out, a

    def route(self, task: Task | str, *, embedding: Any) -> Any:
        """The bandit's decision on the adapted features."""
        return self.router.route(task, embedding=self.features(embedding)[0])

    def success_probabilities(self, task: Task | str | None = None, *, embedding: Any) -> np.ndarray:
        """Mean success probability per model on the adapted features."""
        return self.router.success_probabilities(embedding=self.features(embedding)[0])

    def feedback(self, task: Task | str | None, model: str, success: bool, reward: float | None = None,
                 cost: float = 0.0, latency: float | None = None, *, embedding: Any) -> None:
        """Learn one outcome: the adapter's SGD step, then the bandit's update on the routed features."""
        x, a = self.features(embedding)
        w = self.router.posterior.W[self.index[model]]
        p = sigmoid(float(w[:-1] @ x + w[-1]))
        g = (float(success) - p) * self.scale * w[self.raw_dim:-1]
        self.router.feedback(task, model, success, reward, cost, latency, embedding=x)
        self.B += self.lr * np.outer(g, a).astype(np.float32)
