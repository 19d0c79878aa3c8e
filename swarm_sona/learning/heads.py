"""The model's heads and their maths, in one place: losses on head logits, the sigmoid, the
supervised task heads, and MicroLoRA + heads applied to hidden states (forward and backward).

Given the final hidden state ``h`` (n, d) of the block (:mod:`swarm_sona.learning.model`)::

    hm     = h + s_m B_m A_m h                  MicroLoRA
    value  = sigmoid(w_v . hm + b_v)            predicted reward
    router = sigmoid(W_r hm + b_r)              success probability per model (bandit arm)
    task t = softmax(W_t hm + b_t)              supervised task heads (``finetune``)

:func:`heads_backward` turns gradients of the head logits (and of ``hm``) into the heads' and
MicroLoRA's parameter gradients and the gradient w.r.t. ``h``, which
:mod:`swarm_sona.learning.backward` carries through the block.

Example:
    >>> import numpy as np
    >>> from swarm_sona.learning.model import SONAModel
    >>> m = SONAModel(dim=8, mlp_hidden=8, n_router=2)
    >>> out = apply_heads(m, np.ones((3, 8), np.float32) / 8)
    >>> out["router_probs"].shape, out["hidden"].shape
    ((3, 2), (3, 8))
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm_sona.learning.errors import ModelError

if TYPE_CHECKING:   # the model imports this module; its type only for annotations
    from swarm_sona.learning.model import SONAModel

__all__ = ["bce_with_logits", "softmax_cross_entropy", "sigmoid", "sigmoid_scalar", "TaskHead", "plain_label",
           "apply_heads", "apply_heads_one", "heads_backward"]


# ------------------------------------------------------------------------------------------
# losses and link functions
# ------------------------------------------------------------------------------------------
def bce_with_logits(logits: np.ndarray, targets: np.ndarray,
                    weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Weighted mean binary cross-entropy on logits and its gradient w.r.t. the logits.

    The mean is over the total weight (entries with weight 0 are ignored).

    Example:
        >>> loss, g = bce_with_logits(np.zeros(2), np.array([1.0, 0.0]))
        >>> round(loss, 4), g.tolist()
        (0.6931, [-0.25, 0.25])
    """
    z = np.asarray(logits, np.float64)
    t = np.asarray(targets, np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)
    total = float(w.sum())
    if total <= 0:
        return 0.0, np.zeros_like(logits)
    per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    p = 0.5 * (1.0 + np.tanh(0.5 * z))  # stable sigmoid
    g = w * (p - t) / total
    return float(np.sum(w * per) / total), g.astype(np.asarray(logits).dtype, copy=False)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean softmax cross-entropy of integer ``labels``; returns (loss, dloss/dlogits, probs).

    Example:
        >>> loss, g, p = softmax_cross_entropy(np.zeros((1, 4)), np.array([2]))
        >>> round(loss, 4), p.round(2).tolist()
        (1.3863, [[0.25, 0.25, 0.25, 0.25]])
    """
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    rows = np.arange(n)
    loss = float(-np.mean(np.log(np.maximum(p[rows, labels], 1e-300))))
    g = p.copy()
    g[rows, labels] -= 1.0
    g /= n
    return loss, g, p


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Elementwise logistic function (tanh form: no overflow).

    Example:
        >>> sigmoid(np.array([0.0])).tolist()
        [0.5]
    """
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def sigmoid_scalar(z: float) -> float:
    """The logistic function of one float, without overflow.

    Example:
        >>> sigmoid_scalar(0.0), round(sigmoid_scalar(-800.0), 6)
        (0.5, 0.0)
    """
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


# ------------------------------------------------------------------------------------------
# task heads
# ------------------------------------------------------------------------------------------
class TaskHead:
    """A softmax classification head for one supervised task; ``classes`` are the labels.

    Example:
        >>> h = TaskHead("sentiment", 4, ["neg", "pos"])
        >>> h.W.shape, h.encode(["pos", "neg"]).tolist()
        ((2, 4), [1, 0])
    """

    def __init__(self, name: str, dim: int, classes: Sequence[Hashable], *, dtype: Any = np.float32,
                 seed: int = 0) -> None:
        self.name = name
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.classes: list[Any] = []
        self._index: dict[Any, int] = {}
        self.W = np.zeros((0, dim), self.dtype)
        self.b = np.zeros(0, self.dtype)
        self._seed = seed
        self.add_classes(classes)

    def add_classes(self, classes: Iterable[Hashable]) -> list[Any]:
        """Append rows for labels not seen before; returns the new labels."""
        new = []
        for c in classes:
            c = plain_label(c)
            if c not in self._index:
                self._index[c] = len(self.classes)
                self.classes.append(c)
                new.append(c)
        if new:
            rng = np.random.default_rng([self._seed, zlib.crc32(self.name.encode()), len(self.classes)])
            rows = (rng.standard_normal((len(new), self.dim)) / math.sqrt(self.dim)).astype(self.dtype)
            self.W = np.ascontiguousarray(np.vstack([self.W, rows]))
            self.b = np.concatenate([self.b, np.zeros(len(new), self.dtype)])
        return new

    def encode(self, labels: Iterable[Hashable]) -> np.ndarray:
        """Labels -> row indices (unknown label: ModelError naming it)."""
        out = []
        for lab in labels:
            key = plain_label(lab)
            if key not in self._index:
                raise ModelError(f"task {self.name!r}: unknown label {lab!r} (classes: {self.classes})")
            out.append(self._index[key])
        return np.asarray(out, np.int64)

    def decode(self, idx: np.ndarray) -> list[Any]:
        """Row indices -> labels."""
        return [self.classes[int(i)] for i in idx]


def plain_label(c: Any) -> Any:
    """A label as the heads key it: an int or a str (numpy scalars unwrapped, integral floats
    as ints); anything else raises :class:`ModelError`.

    Example:
        >>> plain_label(np.int64(3)), plain_label(2.0), plain_label("pos")
        (3, 2, 'pos')
    """
    if isinstance(c, np.generic):
        c = c.item()
    if isinstance(c, bool) or not isinstance(c, (int, str)):
        if isinstance(c, float) and c.is_integer():
            return int(c)
        raise ModelError(f"labels must be integers or strings, got {c!r}")
    return c


# ------------------------------------------------------------------------------------------
# MicroLoRA + heads on hidden states
# ------------------------------------------------------------------------------------------
def apply_heads(model: SONAModel, h: np.ndarray, task: str | None = None) -> dict[str, Any]:
    """MicroLoRA and the heads on hidden states ``h`` (n, d) or (d,): ``{"h", "hidden",
    "value_logit", "value", "router_logits", "router_probs"}`` (+ ``task_logits``)."""
    hm = model.micro.apply(h)
    vl = hm @ model.value_w + model.value_b[0]
    rl = hm @ model.router_W.T + model.router_b
    out: dict[str, Any] = {"h": h, "hidden": hm, "value_logit": vl, "value": sigmoid(vl),
                           "router_logits": rl, "router_probs": sigmoid(rl)}
    if task is not None:
        head = model.task_head(task)
        out["task_logits"] = hm @ head.W.T + head.b
    return out


def apply_heads_one(model: SONAModel, h: np.ndarray, task: str | None = None) -> dict[str, Any]:
    """:func:`apply_heads` for one 1-D hidden state, on scalars where the heads have one output."""
    hm = model.micro.apply(h)
    vl = float(hm @ model.value_w) + float(model.value_b[0])
    rl = model.router_W @ hm
    rl += model.router_b
    out: dict[str, Any] = {"h": h, "hidden": hm, "value_logit": vl, "value": sigmoid_scalar(vl),
                           "router_logits": rl, "router_probs": sigmoid(rl)}
    if task is not None:
        head = model.task_head(task)
        out["task_logits"] = head.W @ hm + head.b
    return out


def heads_backward(model: SONAModel, cache: Mapping[str, Any], grads: Mapping[str, np.ndarray],
                   out: dict[str, np.ndarray]) -> np.ndarray:
    """Gradients of the heads and MicroLoRA into ``out`` (by parameter name), from gradients
    of ``value_logit`` (n,), ``router_logits`` (n, M), ``task_logits`` (n, C) and ``hidden``
    (n, d) (any subset); returns the gradient w.r.t. the pre-MicroLoRA hidden state ``h``."""
    n, d, dt = cache["n"], model.dim, model.dtype
    hm = cache["hm"]
    g_hm = np.zeros((n, d), dt)
    if grads.get("hidden") is not None:
        g_hm += grads["hidden"]
    if grads.get("value_logit") is not None:
        gv = np.asarray(grads["value_logit"], dt).reshape(n)
        out["value.w"] = gv @ hm
        out["value.b"] = np.array([gv.sum()], dt)
        g_hm += np.outer(gv, model.value_w)
    if grads.get("router_logits") is not None and model.n_router:
        gr = np.asarray(grads["router_logits"], dt).reshape(n, model.n_router)
        out["router.W"] = gr.T @ hm
        out["router.b"] = gr.sum(axis=0)
        g_hm += gr @ model.router_W
    if grads.get("task_logits") is not None:
        task = cache.get("task")
        if task is None:
            raise ModelError("task_logits gradient given but the forward ran without a task")
        head = model.task_heads[task]
        gt = np.asarray(grads["task_logits"], dt)
        out[f"task.{task}.W"] = gt.T @ hm
        out[f"task.{task}.b"] = gt.sum(axis=0)
        g_hm += gt @ head.W
    # MicroLoRA: hm = h + s B A h
    gA, gB, g_h = model.micro.backward({"x": cache["h"], "mask": None}, g_hm)
    g_h += g_hm
    out["micro.B"] = gB
    if gA is not None:
        out["micro.A"] = gA
    return g_h
