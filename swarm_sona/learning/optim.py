"""Adam over named numpy parameters (in place), and global-norm gradient clipping.

Parameters are addressed by name, so a parameter that appears later (a new task head)
simply starts its own moments and step count; one that grew along its first axis keeps the
moments of its old rows.

Example:
    >>> import numpy as np
    >>> from swarm_sona.learning.optim import Adam
    >>> w = {"w": np.array([1.0, -1.0], np.float32)}
    >>> opt = Adam(lr=0.1)
    >>> opt.step(w, {"w": np.array([2.0, -2.0], np.float32)})
    >>> [round(float(x), 3) for x in w["w"]]
    [0.9, -0.9]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Adam", "clip_grad_norm", "OptimizerError"]


class OptimizerError(ValueError):
    """Invalid optimiser settings, gradients or state."""


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so that their global L2 norm is <= ``max_norm`` (0 = off).

    Returns the norm before clipping.

    Example:
        >>> g = {"a": np.array([3.0, 4.0])}
        >>> clip_grad_norm(g, 1.0), g["a"].round(6).tolist()
        (5.0, [0.6, 0.8])
    """
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if max_norm > 0 and total > max_norm:
        s = max_norm / total
        for k in grads:
            grads[k] = grads[k] * s
    return total


class Adam:
    """Adam (Kingma & Ba) with bias correction, per-parameter step counts.

    Example:
        >>> Adam(lr=1e-3).lr
        0.001
    """

    def __init__(self, lr: float = 5e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            raise OptimizerError(f"lr must be a finite number >= 0, got {lr!r}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise OptimizerError(f"betas must be in [0, 1), got {betas!r}")
        self.lr = float(lr)
        self.b1, self.b2 = float(b1), float(b2)
        self.eps = float(eps)
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t: dict[str, int] = {}

    def _moments(self, name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        m = self.m.get(name)
        if m is None or m.shape != shape:
            new_m, new_v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
            if m is not None and m.ndim == len(shape) and m.shape[1:] == shape[1:] and m.shape[0] <= shape[0]:
                new_m[: m.shape[0]] = m
                new_v[: m.shape[0]] = self.v[name]
            else:
                self.t[name] = 0
            self.m[name], self.v[name] = new_m, new_v
        return self.m[name], self.v[name]

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], *,
             lr: float | None = None) -> None:
        """Update every parameter that has a gradient, in place."""
        lr = self.lr if lr is None else float(lr)
        for name, g in grads.items():
            if name not in params:
                continue
            p = params[name]
            if g.shape != p.shape:
                raise OptimizerError(f"gradient of {name!r} has shape {g.shape}, parameter has {p.shape}")
            m, v = self._moments(name, p.shape)
            t = self.t.get(name, 0) + 1
            self.t[name] = t
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * (g * g)
            step = lr * math.sqrt(1 - self.b2 ** t) / (1 - self.b1 ** t)
            p -= (step * m / (np.sqrt(v) + self.eps)).astype(p.dtype, copy=False)

    def state_dict(self) -> dict[str, Any]:
        """Moments and step counts as plain data."""
        return {"lr": self.lr, "betas": [self.b1, self.b2], "eps": self.eps,
                "m": {k: v.copy() for k, v in self.m.items()}, "v": {k: v.copy() for k, v in self.v.items()},
                "t": dict(self.t)}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict` (validated first)."""
        try:
            m = {str(k): np.asarray(a, np.float32) for k, a in dict(st["m"]).items()}
            v = {str(k): np.asarray(a, np.float32) for k, a in dict(st["v"]).items()}
            t = {str(k): int(n) for k, n in dict(st["t"]).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise OptimizerError(f"malformed optimiser state: {exc}") from exc
        if set(m) != set(v) or any(m[k].shape != v[k].shape for k in m):
            raise OptimizerError("optimiser state: first and second moments do not match")
        self.m, self.v, self.t = m, v, t
