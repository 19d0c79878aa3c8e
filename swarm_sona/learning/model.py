"""The small network the adapters adapt.

Input: a task embedding ``e`` (d,), optionally followed by step embeddings ``s_1..s_m`` of
the trajectory: the token sequence ``X = [e, s_1, ..., s_m]`` (T = 1 + m tokens, padded
batches carry a mask). One pre-norm attention block in which the task token queries every
token, then a pre-norm MLP, then a final normalisation to a unit-length hidden state::

    xn  = LN(X)                                 (per token, no affine)
    q   = Lq(xn_0);  K = Lk(xn);  V = Lv(xn)    (single head; with T = 1 the softmax is 1 and
    p   = softmax(q K^T / sqrt(d))               q, k are skipped: exactly the same output)
    h1  = e + Lo(p V)
    h2  = h1 + Lmlp_out(relu(Lmlp_in(LN(h1))))
    h   = LN(h2) / sqrt(d)                      final hidden state (unit norm)
    hm  = h + s_m B_m A_m h                     MicroLoRA
    value  = sigmoid(w_v . hm + b_v)            predicted reward
    router = sigmoid(W_r hm + b_r)              success probability per model (bandit arm)
    task t = softmax(W_t hm + b_t)              supervised task heads (``finetune``)

Every ``L*`` is a :class:`~swarm_sona.learning.lora.LoRALinear` whose base weight is drawn from
``seed`` (or loaded from a checkpoint) and stays frozen; the modules listed in
``lora.target_modules`` carry a :class:`~swarm_sona.learning.lora.BaseLoRA` named ``"default"``.
Only adapters and heads train. The router head's biases start at the logit of each model's
prior quality, so the head is warm-started from the router config.

:meth:`SONAModel.forward_batch` returns the outputs and a cache; :meth:`SONAModel.backward`
turns gradients of the head logits (and optionally of the hidden state) into exact gradients
of every trainable parameter and of the input. The instant loop needs no backward through the
network: it reuses the pre-MicroLoRA hidden state ``h`` cached at forward time
(:meth:`SONAModel.instant_step`, kernel ``instant_step``).

Parameter names: ``"<module>.A"``/``"<module>.B"`` for the default BaseLoRA,
``"<module>[<adapter>].A"`` for other named adapters, ``"micro.A"``/``"micro.B"``,
``"value.w"``, ``"value.b"``, ``"router.W"``, ``"router.b"``, ``"task.<name>.W"``,
``"task.<name>.b"``.

Example:
    >>> import numpy as np
    >>> from swarm_sona.learning.model import SONAModel
    >>> m = SONAModel(dim=16, mlp_hidden=32, n_router=2)
    >>> out = m.forward(np.ones(16, np.float32) / 4)
    >>> out["hidden"].shape, 0 < out["value"] < 1, out["router_probs"].shape
    ((16,), True, (2,))
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.learning.config import LoRAConfig, ModelShape
from swarm_sona.learning.lora import BaseLoRA, LoRAAdapter, LoRAError, LoRALinear, MicroLoRA

__all__ = [
    "MODULES",
    "DEFAULT_ADAPTER",
    "ModelError",
    "TaskHead",
    "SONAModel",
    "bce_with_logits",
    "softmax_cross_entropy",
]

MODULES = ("q", "k", "v", "o", "mlp_in", "mlp_out")
DEFAULT_ADAPTER = "default"
_LN_EPS = 1e-5


class ModelError(ValueError):
    """Invalid model input, parameter state or head (the message names what)."""


# ------------------------------------------------------------------------------------------
# losses
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


# ------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------
def _layer_norm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    inv = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + _LN_EPS)
    xc *= inv
    return xc, inv


def _layer_norm_backward(xhat: np.ndarray, inv: np.ndarray, g: np.ndarray) -> np.ndarray:
    gm = g.mean(axis=-1, keepdims=True)
    gxm = (g * xhat).mean(axis=-1, keepdims=True)
    return inv * (g - gm - xhat * gxm)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _sigmoid_scalar(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


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
    if isinstance(c, np.generic):
        c = c.item()
    if isinstance(c, bool) or not isinstance(c, (int, str)):
        if isinstance(c, float) and c.is_integer():
            return int(c)
        raise ModelError(f"labels must be integers or strings, got {c!r}")
    return c


# ------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------
class SONAModel:
    """Frozen seeded attention+MLP block with LoRA adapters, MicroLoRA and heads (module docs).

    Example:
        >>> import numpy as np
        >>> m = SONAModel(dim=8, mlp_hidden=8, lora=LoRAConfig(rank=2, target_modules=("v", "mlp_in")))
        >>> sorted(m.parameters(("base",)))
        ['mlp_in.A', 'mlp_in.B', 'v.A', 'v.B']
    """

    def __init__(self, dim: int = 256, mlp_hidden: int = 256, *, n_router: int = 0,
                 router_prior: Sequence[float] | None = None, lora: LoRAConfig | None = None,
                 seed: int = 0, dtype: Any = np.float32, kernels: ModuleType | None = None,
                 micro: bool = True) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ModelError(f"dim must be an integer >= 2, got {dim!r}")
        if isinstance(mlp_hidden, bool) or not isinstance(mlp_hidden, int) or mlp_hidden < 1:
            raise ModelError(f"mlp_hidden must be a positive integer, got {mlp_hidden!r}")
        self.dim = dim
        self.mlp_hidden = mlp_hidden
        self.dtype = np.dtype(dtype)
        self.seed = int(seed)
        self.lora_config = lora or LoRAConfig()
        self._k = kernels if kernels is not None else _nk
        self._inv_sqrt_d = self.dtype.type(1.0 / math.sqrt(dim))
        self._inv_d = self.dtype.type(1.0 / dim)
        rng = np.random.default_rng(self.seed)
        shapes = {"q": (dim, dim), "k": (dim, dim), "v": (dim, dim), "o": (dim, dim),
                  "mlp_in": (mlp_hidden, dim), "mlp_out": (dim, mlp_hidden)}
        gains = {"mlp_in": 2.0}
        self.layers: dict[str, LoRALinear] = {}
        for name in MODULES:
            d_out, d_in = shapes[name]
            W = rng.standard_normal((d_out, d_in)) * math.sqrt(gains.get(name, 1.0) / d_in)
            self.layers[name] = LoRALinear(W, None, name=name, dtype=self.dtype)
        for name in self.lora_config.target_modules:
            lin = self.layers[name]
            lin.add_adapter(DEFAULT_ADAPTER, BaseLoRA.from_config(self.lora_config, lin.d_in, lin.d_out, name=name,
                                                                  dtype=self.dtype, kernels=self._k))
        self.micro_enabled = bool(micro)
        self.micro = MicroLoRA.from_config(self.lora_config, dim, dtype=self.dtype, kernels=self._k)
        self._switch_micro()
        head_rng = np.random.default_rng([self.seed, 0x4EAD])
        self.value_w = (head_rng.standard_normal(dim) / math.sqrt(dim)).astype(self.dtype)
        self.value_b = np.zeros(1, self.dtype)
        if isinstance(n_router, bool) or not isinstance(n_router, int) or n_router < 0:
            raise ModelError(f"n_router must be an integer >= 0, got {n_router!r}")
        self.router_W = np.ascontiguousarray(
            (head_rng.standard_normal((n_router, dim)) / math.sqrt(dim)).astype(self.dtype))
        prior = np.full(n_router, 0.5) if router_prior is None else np.asarray(router_prior, np.float64)
        if prior.shape != (n_router,):
            raise ModelError(f"router_prior has {prior.shape[0] if prior.ndim else 0} entries, expected {n_router}")
        prior = np.clip(prior, 0.02, 0.98)
        self.router_b = np.log(prior / (1 - prior)).astype(self.dtype)
        self.task_heads: dict[str, TaskHead] = {}
        self._version = 0
        self._fused: dict[str, np.ndarray] = {}
        self._fused_key: tuple[Any, ...] | None = None

    def _switch_micro(self) -> None:
        """MicroLoRA off (``micro=False``): its scale is 0, so it adds nothing to the hidden state
        and gets zero gradient (instant loop and backward); its arrays stay, so states and
        consensus layouts are those of a model with MicroLoRA on."""
        if not self.micro_enabled:
            self.micro.scale = 0.0

    def touch(self) -> None:
        """Record an in-place change of base weights or adapter arrays.

        Inference (:meth:`encode`, :meth:`forward`) uses cached effective weights (adapters
        folded in, ``o`` and ``v`` fused when there is one token); the engine's optimisers call
        this after every update. Call it after editing adapter arrays by hand.
        """
        self._version += 1

    def _fused_weights(self) -> dict[str, np.ndarray]:
        key = (self._version, tuple(lin.state_key() for lin in self.layers.values()))
        if key != self._fused_key:
            eff = {m: lin.merged_copy() for m, lin in self.layers.items() if m not in ("q", "k")}
            Wv, bv = eff["v"]["W"].astype(np.float64), eff["v"]["b"].astype(np.float64)
            Wo, bo = eff["o"]["W"].astype(np.float64), eff["o"]["b"].astype(np.float64)
            dt = self.dtype
            self._fused = {
                # one token: softmax over one key is 1, so h1 = e + Wo (Wv xn + bv) + bo
                "WovT": np.ascontiguousarray((Wo @ Wv).T, dtype=dt), "bov": (Wo @ bv + bo).astype(dt),
                "WinT": np.ascontiguousarray(eff["mlp_in"]["W"].T, dtype=dt), "bin": eff["mlp_in"]["b"].astype(dt),
                "WoutT": np.ascontiguousarray(eff["mlp_out"]["W"].T, dtype=dt),
                "bout": eff["mlp_out"]["b"].astype(dt),
            }
            self._fused_key = key
        return self._fused

    @classmethod
    def from_config(cls, cfg: ModelShape, *, dtype: Any = np.float32,
                    kernels: ModuleType | None = None) -> SONAModel:
        """The model an engine with config ``cfg`` uses (router rows = ``cfg.llm_router.models``;
        MicroLoRA off when ``cfg`` has ``micro_lora`` False, as ``SONAConfig`` may)."""
        models = cfg.llm_router.models
        return cls(cfg.dim, cfg.mlp_hidden, n_router=len(models), router_prior=[m.quality for m in models],
                   lora=cfg.lora, seed=cfg.model_seed, dtype=dtype, kernels=kernels,
                   micro=bool(getattr(cfg, "micro_lora", True)))

    @property
    def n_router(self) -> int:
        """Rows of the router head (one per routable model)."""
        return int(self.router_W.shape[0])

    # ---- input handling -------------------------------------------------------------------
    def tokens(self, embedding: Any, steps: Sequence[Any] | None) -> np.ndarray:
        e = np.asarray(embedding, dtype=self.dtype)
        if e.shape != (self.dim,):
            raise ModelError(f"embedding has shape {e.shape}, expected ({self.dim},)")
        if not steps:
            return e.reshape(1, 1, self.dim)
        X = np.empty((1, 1 + len(steps), self.dim), self.dtype)
        X[0, 0] = e
        for i, s in enumerate(steps):
            s = np.asarray(s, dtype=self.dtype)
            if s.shape != (self.dim,):
                raise ModelError(f"step embedding {i} has shape {s.shape}, expected ({self.dim},)")
            X[0, 1 + i] = s
        return X

    def pack(self, embeddings: Any, steps: Sequence[Sequence[Any] | None] | None = None,
             max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Stack task embeddings (n, d) and per-row step lists into a padded (n, T, d) batch
        and its mask (None when no row has steps). ``max_steps`` keeps the last steps."""
        E = np.asarray(embeddings, dtype=self.dtype)
        if E.ndim != 2 or E.shape[1] != self.dim:
            raise ModelError(f"embeddings have shape {E.shape}, expected (n, {self.dim})")
        n = E.shape[0]
        if steps is None or not any(steps):
            return E.reshape(n, 1, self.dim), None
        if len(steps) != n:
            raise ModelError(f"got {len(steps)} step lists for {n} embeddings")
        rows = [list(s or []) for s in steps]
        if max_steps is not None:
            rows = [r[len(r) - max_steps:] if max_steps > 0 else [] for r in rows]
        T = 1 + max(len(r) for r in rows)
        X = np.zeros((n, T, self.dim), self.dtype)
        mask = np.zeros((n, T), bool)
        X[:, 0] = E
        mask[:, 0] = True
        for i, r in enumerate(rows):
            for j, s in enumerate(r):
                s = np.asarray(s, dtype=self.dtype)
                if s.shape != (self.dim,):
                    raise ModelError(f"row {i} step embedding {j} has shape {s.shape}, expected ({self.dim},)")
                X[i, 1 + j] = s
                mask[i, 1 + j] = True
        return X, mask

    # ---- forward ------------------------------------------------------------------------------
    def _as_batch(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim == 2:
            X = X[:, None, :]
        if X.ndim != 3 or X.shape[2] != self.dim:
            raise ModelError(f"batch has shape {X.shape}, expected (n, T, {self.dim}) or (n, {self.dim})")
        return X

    def encode(self, X: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Inference: final hidden states ``h`` (n, d) before MicroLoRA for tokens X (n, T, d).

        Runs on the cached effective weights (see :meth:`touch`); agrees with
        :meth:`forward_batch` up to float rounding.
        """
        X = self._as_batch(X)
        n, T, d = X.shape
        f = self._fused_weights()
        x0 = X[:, 0]
        if T == 1:
            h1 = _layer_norm(x0)[0] @ f["WovT"]
            h1 += f["bov"]
        else:
            L = self.layers
            xn, _ = _layer_norm(X)
            q = L["q"](xn[:, 0])
            flat = xn.reshape(n * T, d)
            K = L["k"](flat).reshape(n, T, d)
            V = L["v"](flat).reshape(n, T, d)
            p = self._attention_probs(q, K, mask)
            h1 = L["o"](np.einsum("nt,ntd->nd", p, V))
        h1 += x0
        u = _layer_norm(h1)[0] @ f["WinT"]
        u += f["bin"]
        np.maximum(u, 0, out=u)
        h2 = u @ f["WoutT"]
        h2 += f["bout"]
        h2 += h1
        h = _layer_norm(h2)[0]
        h *= self._inv_sqrt_d
        return h

    def _ln1(self, x: np.ndarray) -> np.ndarray:
        xc = x - x.sum() * self._inv_d
        var = float(xc @ xc) * float(self._inv_d)
        xc *= self.dtype.type(1.0 / math.sqrt(var + _LN_EPS))
        return xc

    def encode_one(self, e: np.ndarray) -> np.ndarray:
        """:meth:`encode` for one task embedding without steps, on 1-D vectors."""
        f = self._fused_weights()
        h1 = self._ln1(e) @ f["WovT"]
        h1 += f["bov"]
        h1 += e
        u = self._ln1(h1) @ f["WinT"]
        u += f["bin"]
        np.maximum(u, 0, out=u)
        h2 = u @ f["WoutT"]
        h2 += f["bout"]
        h2 += h1
        h = self._ln1(h2)
        h *= self._inv_sqrt_d
        return h

    def _attention_probs(self, q: np.ndarray, K: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        s = np.einsum("nd,ntd->nt", q, K) * self._inv_sqrt_d
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def heads(self, h: np.ndarray, task: str | None = None) -> dict[str, Any]:
        """Apply MicroLoRA and the heads to hidden states h (n, d) or (d,)."""
        hm = self.micro.apply(h)
        vl = hm @ self.value_w + self.value_b[0]
        rl = hm @ self.router_W.T + self.router_b
        out: dict[str, Any] = {"h": h, "hidden": hm, "value_logit": vl, "value": _sigmoid(vl),
                               "router_logits": rl, "router_probs": _sigmoid(rl)}
        if task is not None:
            head = self.task_head(task)
            out["task_logits"] = hm @ head.W.T + head.b
        return out

    def forward(self, embedding: Any, steps: Sequence[Any] | None = None, *, task: str | None = None) -> dict[str, Any]:
        """One input: ``{"h", "hidden", "value", "value_logit", "router_probs", "router_logits"}``.

        ``h`` is the pre-MicroLoRA hidden state the instant loop reuses; ``hidden`` what the
        heads see.
        """
        X = self.tokens(embedding, steps)
        h = self.encode_one(X[0, 0]) if X.shape[1] == 1 else self.encode(X)[0]
        hm = self.micro.apply(h)
        vl = float(hm @ self.value_w) + float(self.value_b[0])
        rl = self.router_W @ hm
        rl += self.router_b
        out: dict[str, Any] = {"h": h, "hidden": hm, "value_logit": vl, "value": _sigmoid_scalar(vl),
                               "router_logits": rl, "router_probs": _sigmoid(rl)}
        if task is not None:
            head = self.task_head(task)
            out["task_logits"] = head.W @ hm + head.b
        return out

    def forward_batch(self, X: np.ndarray, mask: np.ndarray | None = None, *, task: str | None = None,
                      training: bool = False, rng: np.random.Generator | None = None
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Batched forward with a cache for :meth:`backward`.

        X (n, T, d) tokens (or (n, d) task embeddings only), ``mask`` (n, T) bool of valid
        tokens (token 0 must be valid). ``training`` enables adapter dropout (needs ``rng``).
        """
        X = self._as_batch(X)
        n, T, d = X.shape
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != (n, T) or not mask[:, 0].all():
                raise ModelError(f"mask must be (n, T) = {(n, T)} with token 0 valid")
            if mask.all():
                mask = None
        L = self.layers
        c: dict[str, Any] = {"n": n, "T": T}
        xn, c["ln0_inv"] = _layer_norm(X)
        c["xn"] = xn
        kw: dict[str, Any] = {"training": training, "rng": rng}
        if T == 1:
            att, c["v"] = L["v"].forward(xn[:, 0], **kw)
        else:
            q, c["q"] = L["q"].forward(xn[:, 0], **kw)
            flat = xn.reshape(n * T, d)
            K, c["k"] = L["k"].forward(flat, **kw)
            V, c["v"] = L["v"].forward(flat, **kw)
            K = K.reshape(n, T, d)
            V = V.reshape(n, T, d)
            p = self._attention_probs(q, K, mask)
            att = np.einsum("nt,ntd->nd", p, V)
            c.update(q_out=q, K=K, V=V, p=p)
        o, c["o"] = L["o"].forward(att, **kw)
        h1 = X[:, 0] + o
        h1n, c["ln1_inv"] = _layer_norm(h1)
        c["h1n"] = h1n
        u, c["mlp_in"] = L["mlp_in"].forward(h1n, **kw)
        c["relu"] = u > 0
        a = u * c["relu"]
        m, c["mlp_out"] = L["mlp_out"].forward(a, **kw)
        h2 = h1 + m
        hn, c["ln2_inv"] = _layer_norm(h2)
        c["hn"] = hn
        h = hn * self._inv_sqrt_d
        out = self.heads(h, task)
        c["h"] = h
        c["hm"] = out["hidden"]
        c["task"] = task
        return out, c

    # ---- backward -----------------------------------------------------------------------------
    def backward(self, cache: Mapping[str, Any], grads: Mapping[str, np.ndarray], *,
                 need_input_grad: bool = False) -> dict[str, np.ndarray]:
        """Exact gradients from gradients of the outputs.

        ``grads`` may hold ``value_logit`` (n,), ``router_logits`` (n, M), ``task_logits``
        (n, C) (for the cache's task) and ``hidden`` (n, d) (w.r.t. the post-MicroLoRA
        hidden state). Returns gradients of every trainable parameter by name (see module
        docs; heads only when their output gradient was given) and ``"input"`` (n, T, d)
        when ``need_input_grad``.
        """
        n, T, d = cache["n"], cache["T"], self.dim
        hm = cache["hm"]
        out: dict[str, np.ndarray] = {}
        g_hm = np.zeros((n, d), self.dtype)
        if grads.get("hidden") is not None:
            g_hm += grads["hidden"]
        if grads.get("value_logit") is not None:
            gv = np.asarray(grads["value_logit"], self.dtype).reshape(n)
            out["value.w"] = gv @ hm
            out["value.b"] = np.array([gv.sum()], self.dtype)
            g_hm += np.outer(gv, self.value_w)
        if grads.get("router_logits") is not None and self.n_router:
            gr = np.asarray(grads["router_logits"], self.dtype).reshape(n, self.n_router)
            out["router.W"] = gr.T @ hm
            out["router.b"] = gr.sum(axis=0)
            g_hm += gr @ self.router_W
        if grads.get("task_logits") is not None:
            task = cache.get("task")
            if task is None:
                raise ModelError("task_logits gradient given but the forward ran without a task")
            head = self.task_heads[task]
            gt = np.asarray(grads["task_logits"], self.dtype)
            out[f"task.{task}.W"] = gt.T @ hm
            out[f"task.{task}.b"] = gt.sum(axis=0)
            g_hm += gt @ head.W
        # MicroLoRA: hm = h + s B A h
        gA, gB, g_h = self.micro.backward({"x": cache["h"], "mask": None}, g_hm)
        g_h += g_hm
        out["micro.B"] = gB
        if gA is not None:
            out["micro.A"] = gA
        L = self.layers
        g_h2 = _layer_norm_backward(cache["hn"], cache["ln2_inv"], g_h * self._inv_sqrt_d)
        g_a, ga = L["mlp_out"].backward(cache["mlp_out"], g_h2)
        self._collect(out, "mlp_out", ga)
        assert g_a is not None  # input gradients are on by default
        g_u = g_a * cache["relu"]
        g_h1n, ga = L["mlp_in"].backward(cache["mlp_in"], g_u)
        self._collect(out, "mlp_in", ga)
        assert g_h1n is not None
        g_h1 = g_h2 + _layer_norm_backward(cache["h1n"], cache["ln1_inv"], g_h1n)
        g_att, ga = L["o"].backward(cache["o"], g_h1)
        self._collect(out, "o", ga)
        assert g_att is not None
        if T == 1:
            g_x0n, ga = L["v"].backward(cache["v"], g_att, need_input_grad=need_input_grad)
            self._collect(out, "v", ga)
            g_xn = None if g_x0n is None else g_x0n[:, None, :]
        else:
            p, V, K, q = cache["p"], cache["V"], cache["K"], cache["q_out"]
            gV = p[:, :, None] * g_att[:, None, :]
            gp = np.einsum("nd,ntd->nt", g_att, V)
            gs = p * (gp - (p * gp).sum(axis=1, keepdims=True)) * self._inv_sqrt_d
            gq = np.einsum("nt,ntd->nd", gs, K)
            gK = gs[:, :, None] * q[:, None, :]
            g_v, ga = L["v"].backward(cache["v"], gV.reshape(n * T, d), need_input_grad=need_input_grad)
            self._collect(out, "v", ga)
            g_k, ga = L["k"].backward(cache["k"], gK.reshape(n * T, d), need_input_grad=need_input_grad)
            self._collect(out, "k", ga)
            g_q, ga = L["q"].backward(cache["q"], gq, need_input_grad=need_input_grad)
            self._collect(out, "q", ga)
            g_xn = None
            if need_input_grad:
                assert g_v is not None and g_k is not None and g_q is not None
                g_xn = (g_v + g_k).reshape(n, T, d)
                g_xn[:, 0] += g_q
        if need_input_grad:
            assert g_xn is not None
            gX = _layer_norm_backward(cache["xn"], cache["ln0_inv"], g_xn)
            gX[:, 0] += g_h1
            out["input"] = gX
        return out

    @staticmethod
    def _collect(out: dict[str, np.ndarray], module: str, adapter_grads: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        for aname, g in adapter_grads.items():
            prefix = module if aname == DEFAULT_ADAPTER else f"{module}[{aname}]"
            for pname, arr in g.items():
                out[f"{prefix}.{pname}"] = arr

    # ---- parameters -----------------------------------------------------------------------------
    def adapter(self, module: str, adapter_name: str = DEFAULT_ADAPTER) -> LoRAAdapter:
        """The adapter ``adapter_name`` on ``module`` (ModelError if absent)."""
        if module not in self.layers:
            raise ModelError(f"unknown module {module!r} (modules: {list(MODULES)})")
        lin = self.layers[module]
        if adapter_name not in lin.adapters:
            raise ModelError(f"module {module!r} has no adapter {adapter_name!r}")
        return lin.adapters[adapter_name]

    def base_adapters(self) -> dict[str, LoRAAdapter]:
        """The default BaseLoRA per target module."""
        return {m: self.layers[m].adapters[DEFAULT_ADAPTER] for m in self.lora_config.target_modules
                if DEFAULT_ADAPTER in self.layers[m].adapters}

    def parameters(self, groups: Iterable[str] = ("base", "value", "router")) -> dict[str, np.ndarray]:
        """Trainable arrays by name (views; in-place updates change the model).

        Groups: ``base`` (default BaseLoRA), ``adapters`` (every named unmerged adapter),
        ``micro``, ``value``, ``router``, ``tasks`` (all task heads) or ``task:<name>``.
        """
        out: dict[str, np.ndarray] = {}
        for g in groups:
            if g in ("base", "adapters"):
                for m in MODULES:
                    lin = self.layers[m]
                    for aname, ad in lin.adapters.items():
                        if aname in lin.merged or aname not in lin.active:
                            continue
                        if g == "base" and aname != DEFAULT_ADAPTER:
                            continue
                        prefix = m if aname == DEFAULT_ADAPTER else f"{m}[{aname}]"
                        for pname, arr in ad.parameters().items():
                            out[f"{prefix}.{pname}"] = arr
            elif g == "micro":
                for pname, arr in self.micro.parameters().items():
                    out[f"micro.{pname}"] = arr
            elif g == "value":
                out["value.w"] = self.value_w
                out["value.b"] = self.value_b
            elif g == "router":
                if self.n_router:
                    out["router.W"] = self.router_W
                    out["router.b"] = self.router_b
            elif g == "tasks" or g.startswith("task:"):
                names = list(self.task_heads) if g == "tasks" else [g[5:]]
                for t in names:
                    head = self.task_head(t)
                    out[f"task.{t}.W"] = head.W
                    out[f"task.{t}.b"] = head.b
            else:
                raise ModelError(f"unknown parameter group {g!r} "
                                 "(use base, adapters, micro, value, router, tasks, task:<name>)")
        return out

    # ---- task heads -------------------------------------------------------------------------------
    def task_head(self, task: str) -> TaskHead:
        """The head of ``task`` (ModelError naming known tasks if absent)."""
        try:
            return self.task_heads[task]
        except KeyError:
            raise ModelError(f"no task head {task!r} (known: {sorted(self.task_heads)})") from None

    def ensure_task_head(self, task: str, classes: Iterable[Hashable]) -> TaskHead:
        """Create the head of ``task`` or extend it with unseen classes."""
        if not isinstance(task, str) or not task:
            raise ModelError(f"task name must be a non-empty string, got {task!r}")
        if task not in self.task_heads:
            self.task_heads[task] = TaskHead(task, self.dim, list(classes), dtype=self.dtype, seed=self.seed)
        else:
            self.task_heads[task].add_classes(classes)
        return self.task_heads[task]

    # ---- instant loop ------------------------------------------------------------------------------
    def instant_step(self, h: np.ndarray, arm: int, reward: float, success: float, lr: float,
                     clip: float = 0.0) -> tuple[float, float]:
        """One SGD step on MicroLoRA + value/router heads from a cached hidden state ``h``
        (kernel ``instant_step``, in place). Returns (value, router prob) before the step."""
        return self._k.instant_step(h, self.micro.A, self.micro.B, self.micro.scale, self.value_w, self.value_b,
                                    self.router_W, self.router_b, arm, reward, success, lr,
                                    self.micro.train_a, clip)

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self, *, include_base: bool = True) -> dict[str, Any]:
        """Plain data: base weights (optional), every adapter, MicroLoRA, heads."""
        st: dict[str, Any] = {"dim": self.dim, "mlp_hidden": self.mlp_hidden, "seed": self.seed,
                              "adapters": {m: {a: ad.to_dict() for a, ad in lin.adapters.items()}
                                           for m, lin in self.layers.items() if lin.adapters},
                              "merged": {m: sorted(lin.merged) for m, lin in self.layers.items() if lin.merged},
                              "active": {m: list(lin.active) for m, lin in self.layers.items()},
                              "micro": self.micro.to_dict(), "heads": self.heads_state()}
        if include_base:
            st["base"] = {m: {"W": lin.W.copy(), "b": lin.b.copy()} for m, lin in self.layers.items()}
        return st

    def heads_state(self) -> dict[str, Any]:
        """``{"value": {"w", "b"}, "router": {"W", "b"}, "tasks": {name: {"W", "b", "classes"}}}``."""
        return {"value": {"w": self.value_w.copy(), "b": self.value_b.copy()},
                "router": {"W": self.router_W.copy(), "b": self.router_b.copy()},
                "tasks": {t: {"W": h.W.copy(), "b": h.b.copy(), "classes": list(h.classes)}
                          for t, h in self.task_heads.items()}}

    def load_heads(self, heads: Mapping[str, Any], *, where: str = "heads") -> None:
        """Install heads exported by :meth:`heads_state` (validated first; all or nothing)."""
        if not isinstance(heads, Mapping):
            raise ModelError(f"{where}: expected a mapping, got {type(heads).__name__}")
        unknown = set(heads) - {"value", "router", "tasks"}
        if unknown:
            raise ModelError(f"{where}: unknown key(s) {sorted(unknown)}; expected value, router, tasks")
        plan: list[tuple[Any, str, np.ndarray]] = []
        if "value" in heads:
            v = heads["value"]
            plan += [(self, "value_w", _arr(v, "w", (self.dim,), f"{where}.value")),
                     (self, "value_b", _arr(v, "b", (1,), f"{where}.value"))]
        if "router" in heads:
            r = heads["router"]
            plan += [(self, "router_W", _arr(r, "W", (self.n_router, self.dim), f"{where}.router")),
                     (self, "router_b", _arr(r, "b", (self.n_router,), f"{where}.router"))]
        new_heads = {}
        for t, hd in dict(heads.get("tasks") or {}).items():
            w = f"{where}.tasks.{t}"
            if not isinstance(hd, Mapping) or "classes" not in hd:
                raise ModelError(f"{w}: expected a mapping with W, b, classes")
            classes = [plain_label(c) for c in hd["classes"]]
            if len(set(classes)) != len(classes):
                raise ModelError(f"{w}.classes: duplicate labels")
            C = len(classes)
            head = TaskHead(t, self.dim, classes, dtype=self.dtype, seed=self.seed)
            head.W = _arr(hd, "W", (C, self.dim), w).astype(self.dtype)
            head.b = _arr(hd, "b", (C,), w).astype(self.dtype)
            new_heads[t] = head
        for obj, attr, arr in plan:
            getattr(obj, attr)[...] = arr
        self.task_heads.update(new_heads)

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        """Install a :meth:`state_dict` (shapes checked; base weights replaced when present)."""
        if not isinstance(st, Mapping):
            raise ModelError(f"model state must be a mapping, got {type(st).__name__}")
        if st.get("dim") != self.dim or st.get("mlp_hidden") != self.mlp_hidden:
            raise ModelError(f"model state is for dim={st.get('dim')}, mlp_hidden={st.get('mlp_hidden')}; "
                             f"this model has dim={self.dim}, mlp_hidden={self.mlp_hidden}")
        base = st.get("base")
        new_base = {}
        if base is not None:
            for m, lin in self.layers.items():
                if m not in base:
                    raise ModelError(f"model state: base weights of {m!r} missing")
                new_base[m] = (_arr(base[m], "W", lin.W.shape, f"base.{m}"), _arr(base[m], "b", lin.b.shape, f"base.{m}"))
        new_adapters: dict[str, dict[str, LoRAAdapter]] = {}
        for m, ads in dict(st.get("adapters") or {}).items():
            if m not in self.layers:
                raise ModelError(f"model state: unknown module {m!r}")
            new_adapters[m] = {}
            for a, d in ads.items():
                try:
                    ad = LoRAAdapter.from_dict(d, kernels=self._k, dtype=self.dtype)
                except LoRAError as exc:
                    raise ModelError(f"model state: adapter {m}/{a}: {exc}") from exc
                lin = self.layers[m]
                if (ad.d_out, ad.d_in) != lin.W.shape:
                    raise ModelError(f"model state: adapter {m}/{a} shape ({ad.d_out}, {ad.d_in}) != {lin.W.shape}")
                new_adapters[m][a] = ad
        try:
            micro = LoRAAdapter.from_dict(st["micro"], kernels=self._k, dtype=self.dtype)
        except (KeyError, LoRAError) as exc:
            raise ModelError(f"model state: micro adapter: {exc}") from exc
        if not isinstance(micro, MicroLoRA) or micro.d_in != self.dim:
            raise ModelError("model state: micro adapter has the wrong kind or dimension")
        heads = st.get("heads") or {}
        self.load_heads(heads, where="model state heads")  # validates before changing (heads only)
        for m, (W, b) in new_base.items():
            self.layers[m].W[...] = W
            self.layers[m].b[...] = b
        for m, lin in self.layers.items():
            lin.adapters = dict(new_adapters.get(m, {}))
            lin.merged = set(dict(st.get("merged") or {}).get(m, []))
            lin.set_active(a for a in dict(st.get("active") or {}).get(m, list(lin.adapters)) if a in lin.adapters)
        self.micro = micro  # type: ignore[assignment]
        self._switch_micro()
        self.task_heads = {t: h for t, h in self.task_heads.items() if t in dict(heads.get("tasks") or {})}


def _arr(d: Any, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    if not isinstance(d, Mapping) or key not in d:
        raise ModelError(f"{where}: missing {key!r}")
    a = np.asarray(d[key])
    if a.shape != tuple(shape):
        raise ModelError(f"{where}.{key}: shape {a.shape}, expected {tuple(shape)}")
    if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
        raise ModelError(f"{where}.{key}: must be finite numbers")
    return np.ascontiguousarray(a, dtype=np.float64)
