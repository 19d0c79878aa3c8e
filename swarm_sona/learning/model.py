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

then MicroLoRA and the heads (value, router, task heads) on ``h``: their maths lives in
:mod:`swarm_sona.learning.heads`.

Every ``L*`` is a :class:`~swarm_sona.learning.lora_linear.LoRALinear` whose base weight is drawn from
``seed`` (or loaded from a checkpoint) and stays frozen; the modules listed in
``lora.target_modules`` carry a :class:`~swarm_sona.learning.lora.BaseLoRA` named ``"default"``.
Only adapters and heads train. The router head's biases start at the logit of each model's
prior quality, so the head is warm-started from the router config.

:meth:`SONAModel.forward_batch` returns the outputs and a cache; :meth:`SONAModel.backward`
(:mod:`swarm_sona.learning.backward`) turns gradients of the head logits (and optionally of the
hidden state) into exact gradients of every trainable parameter and of the input. The instant
loop needs no backward through the network: it reuses the pre-MicroLoRA hidden state ``h``
cached at forward time (:meth:`SONAModel.instant_step`, kernel ``instant_step``). State export
and import: :mod:`swarm_sona.learning.model_state`. Parameter names:
:mod:`swarm_sona.learning.param_names`.

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
from collections.abc import Hashable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.learning import backward as _backward
from swarm_sona.learning import model_state
from swarm_sona.learning.config import LoRAConfig, ModelShape
from swarm_sona.learning.edits import EditVersion, epoch
from swarm_sona.learning.errors import ModelError
from swarm_sona.learning.heads import TaskHead, apply_heads, apply_heads_one, sigmoid_scalar
from swarm_sona.learning.lora import BaseLoRA, LoRAAdapter, MicroLoRA
from swarm_sona.learning.lora_linear import LoRALinear
from swarm_sona.learning.norm import LN_EPS, layer_norm
from swarm_sona.learning.param_names import DEFAULT_ADAPTER, MODULES, named_parameters
from swarm_sona.learning.quantization import QuantizationError, QuantizedWeight

__all__ = ["SONAModel"]


class SONAModel:
    """Frozen seeded attention+MLP block with LoRA adapters, MicroLoRA and heads (module docs).

    Example:
        >>> import numpy as np
        >>> m = SONAModel(dim=8, mlp_hidden=8, lora=LoRAConfig(rank=2, target_modules=("v", "mlp_in")))
        >>> sorted(m.parameters(("base",)))
        ['mlp_in.A', 'mlp_in.B', 'v.A', 'v.B']
    """

    _version = EditVersion()  # model-level edits (touch); bumps the edit epoch

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
        self.kernels = kernels if kernels is not None else _nk
        self.inv_sqrt_d = self.dtype.type(1.0 / math.sqrt(dim))
        self._inv_d = self.dtype.type(1.0 / dim)
        rng = np.random.default_rng(self.seed)
        shapes = {"q": (dim, dim), "k": (dim, dim), "v": (dim, dim), "o": (dim, dim),
                  "mlp_in": (mlp_hidden, dim), "mlp_out": (dim, mlp_hidden)}
        gains = {"mlp_in": 2.0}
        self.layers: dict[str, LoRALinear] = {}
        for name in MODULES:
            d_out, d_in = shapes[name]
            W = rng.standard_normal((d_out, d_in)) * math.sqrt(gains.get(name, 1.0) / d_in)
            self.layers[name] = LoRALinear(W, None, name=name, dtype=self.dtype,
                                           quantization=self.lora_config.quantization,
                                           group_size=self.lora_config.quantization_group_size)
        for name in self.lora_config.target_modules:
            lin = self.layers[name]
            lin.add_adapter(DEFAULT_ADAPTER, BaseLoRA.from_config(self.lora_config, lin.d_in, lin.d_out, name=name,
                                                                  dtype=self.dtype, kernels=self.kernels))
        self.micro_enabled = bool(micro)
        self.micro = MicroLoRA.from_config(self.lora_config, dim, dtype=self.dtype, kernels=self.kernels)
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
        self._fused_key: int | None = None

    def _switch_micro(self) -> None:
        """MicroLoRA off (``micro=False``): its scale is 0, so it adds nothing to the hidden state
        and gets zero gradient (instant loop and backward); its arrays stay, so states and
        consensus layouts are those of a model with MicroLoRA on."""
        if not self.micro_enabled:
            self.micro.scale = 0.0

    def touch(self) -> None:
        """Record an in-place change of base weights or adapter arrays.

        Inference (:meth:`encode`, :meth:`forward`) uses cached effective weights (adapters
        folded in, ``o`` and ``v`` fused when there is one token; none with a quantised base,
        see :attr:`quantized`); the engine's optimisers call this after every update. Call it
        after editing adapter arrays by hand.
        """
        self._version += 1

    @property
    def quantized(self) -> bool:
        """True when a layer's base is stored quantised: inference then runs the layers on their
        codes (base from the C kernels + float adapters) and keeps no fused float copy."""
        return any(lin.base.scheme is not None for lin in self.layers.values())

    def _ov(self, xn: np.ndarray, f: dict[str, np.ndarray] | None) -> np.ndarray:
        """``Lo(Lv(xn))`` of one token: fused float weights ``f``, or (``f`` None) the quantised
        layers themselves."""
        if f is None:
            return self.layers["o"](self.layers["v"](xn))
        y = xn @ f["WovT"]
        y += f["bov"]
        return y

    def _mlp(self, h1n: np.ndarray, f: dict[str, np.ndarray] | None) -> np.ndarray:
        """``Lmlp_out(relu(Lmlp_in(h1n)))`` at inference (fused float weights ``f``, or the
        quantised layers when ``f`` is None)."""
        if f is None:
            u = self.layers["mlp_in"](h1n)
            np.maximum(u, 0, out=u)
            return self.layers["mlp_out"](u)
        u = h1n @ f["WinT"]
        u += f["bin"]
        np.maximum(u, 0, out=u)
        h2 = u @ f["WoutT"]
        h2 += f["bout"]
        return h2

    def _fused_weights(self) -> dict[str, np.ndarray] | None:
        """The fused float inference weights, or None with a quantised base (inference then runs
        the layers on their codes and no float copy is kept). Rebuilt when the edit epoch
        (:mod:`~swarm_sona.learning.edits`) moved since the last build: one integer compare."""
        key = epoch()
        if key != self._fused_key:
            if self.quantized:
                self._fused = {}
            else:
                eff = {m: lin.merged_copy() for m, lin in self.layers.items() if m not in ("q", "k")}
                Wv, bv = eff["v"]["W"].astype(np.float64), eff["v"]["b"].astype(np.float64)
                Wo, bo = eff["o"]["W"].astype(np.float64), eff["o"]["b"].astype(np.float64)
                dt = self.dtype
                self._fused = {
                    # one token: softmax over one key is 1, so h1 = e + Wo (Wv xn + bv) + bo
                    "WovT": np.ascontiguousarray((Wo @ Wv).T, dtype=dt), "bov": (Wo @ bv + bo).astype(dt),
                    "WinT": np.ascontiguousarray(eff["mlp_in"]["W"].T, dtype=dt),
                    "bin": eff["mlp_in"]["b"].astype(dt),
                    "WoutT": np.ascontiguousarray(eff["mlp_out"]["W"].T, dtype=dt),
                    "bout": eff["mlp_out"]["b"].astype(dt),
                }
            self._fused_key = key
        return self._fused or None

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
        x0 = X[:, 0]
        f = self._fused_weights()
        if T == 1:
            h1 = self._ov(layer_norm(x0)[0], f)
        else:
            L = self.layers
            xn, _ = layer_norm(X)
            q = L["q"](xn[:, 0])
            flat = xn.reshape(n * T, d)
            K = L["k"](flat).reshape(n, T, d)
            V = L["v"](flat).reshape(n, T, d)
            p = self._attention_probs(q, K, mask)
            h1 = L["o"](np.einsum("nt,ntd->nd", p, V))
        h1 += x0
        h2 = self._mlp(layer_norm(h1)[0], f)
        h2 += h1
        h = layer_norm(h2)[0]
        h *= self.inv_sqrt_d
        return h

    def _ln1(self, x: np.ndarray) -> np.ndarray:
        xc = x - x.sum() * self._inv_d
        var = float(xc @ xc) * float(self._inv_d)
        xc *= self.dtype.type(1.0 / math.sqrt(var + LN_EPS))
        return xc

    def encode_one(self, e: np.ndarray) -> np.ndarray:
        """:meth:`encode` for one task embedding without steps, on 1-D vectors."""
        f = self._fused_weights()
        h1 = self._ov(self._ln1(e), f)
        h1 += e
        h2 = self._mlp(self._ln1(h1), f)
        h2 += h1
        h = self._ln1(h2)
        h *= self.inv_sqrt_d
        return h

    def _attention_probs(self, q: np.ndarray, K: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        s = np.einsum("nd,ntd->nt", q, K) * self.inv_sqrt_d
        if mask is not None:
            s = np.where(mask, s, -np.inf)
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def heads(self, h: np.ndarray, task: str | None = None) -> dict[str, Any]:
        """Apply MicroLoRA and the heads to hidden states h (n, d) or (d,)
        (:func:`~swarm_sona.learning.heads.apply_heads`)."""
        return apply_heads(self, h, task)

    def forward(self, embedding: Any, steps: Sequence[Any] | None = None, *, task: str | None = None) -> dict[str, Any]:
        """One input: ``{"h", "hidden", "value", "value_logit", "router_probs", "router_logits"}``.

        ``h`` is the pre-MicroLoRA hidden state the instant loop reuses; ``hidden`` what the
        heads see.
        """
        X = self.tokens(embedding, steps)
        if X.shape[1] > 1:
            return apply_heads_one(self, self.encode(X)[0], task)
        f = self._fused_weights()
        fused_one = getattr(self.kernels, "forward_one", None)
        if f is None or fused_one is None or self.dtype != np.float32:
            return apply_heads_one(self, self.encode_one(X[0, 0]), task)
        mi = self.micro   # one kernel call: the block, MicroLoRA and the value/router heads
        h, hm, vl, rl, rp = fused_one(X[0, 0], f["WovT"], f["bov"], f["WinT"], f["bin"], f["WoutT"], f["bout"],
                                      mi.A, mi.B, mi.scale, self.value_w, self.value_b, self.router_W,
                                      self.router_b, LN_EPS)
        out: dict[str, Any] = {"h": h, "hidden": hm, "value_logit": vl, "value": sigmoid_scalar(vl),
                               "router_logits": rl, "router_probs": rp}
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
        xn, c["ln0_inv"] = layer_norm(X)
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
        h1n, c["ln1_inv"] = layer_norm(h1)
        c["h1n"] = h1n
        u, c["mlp_in"] = L["mlp_in"].forward(h1n, **kw)
        c["relu"] = u > 0
        a = u * c["relu"]
        m, c["mlp_out"] = L["mlp_out"].forward(a, **kw)
        h2 = h1 + m
        hn, c["ln2_inv"] = layer_norm(h2)
        c["hn"] = hn
        h = hn * self.inv_sqrt_d
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
        return _backward.backward(self, cache, grads, need_input_grad=need_input_grad)

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
        """Trainable arrays by name (views; in-place updates change the model); groups as in
        :func:`~swarm_sona.learning.param_names.named_parameters`."""
        return named_parameters(self, groups)

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
        return self.kernels.instant_step(h, self.micro.A, self.micro.B, self.micro.scale, self.value_w, self.value_b,
                                    self.router_W, self.router_b, arm, reward, success, lr,
                                    self.micro.train_a, clip)

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self, *, include_base: bool = True) -> dict[str, Any]:
        """Plain data: base weights (optional), every adapter, MicroLoRA, heads
        (:func:`~swarm_sona.learning.model_state.model_state`). Each layer's base is stored as
        it is kept (:meth:`LoRALinear.base_state`): float ``{"scheme": None, "W", "b"}``, or a
        quantised base's codes and per-group scales (``lora.quantization``: a 4bit base is
        about 14 % of its float32 size), which :meth:`load_state_dict` restores bit-exactly.

        Example:
            >>> m = SONAModel(dim=64, mlp_hidden=64, lora=LoRAConfig(quantization="4bit"))
            >>> sorted(m.state_dict()["base"]["q"])
            ['absmax', 'b', 'codes', 'group_size', 'scheme', 'shape']
        """
        st = model_state.model_state(self, include_base=False)
        if include_base:
            st["base"] = {m: lin.base_state() for m, lin in self.layers.items()}
        return st

    def heads_state(self) -> dict[str, Any]:
        """``{"value": {"w", "b"}, "router": {"W", "b"}, "tasks": {name: {"W", "b", "classes"}}}``."""
        return model_state.heads_state(self)

    def load_heads(self, heads: Mapping[str, Any], *, where: str = "heads") -> None:
        """Install heads exported by :meth:`heads_state` (validated first; all or nothing)."""
        model_state.load_heads(self, heads, where=where)

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        """Install a :meth:`state_dict` (shapes checked; base weights replaced when present;
        MicroLoRA stays off when this model has it off). A quantised base of this model's scheme
        and group size is installed as stored (its codes: the forward is bit for bit the saved
        model's); a float base (e.g. a checkpoint of schema 1) is stored under this model's
        scheme, re-quantised when it has one. Everything is validated before anything changes.

        Example:
            >>> import numpy as np
            >>> a = SONAModel(dim=64, mlp_hidden=64, lora=LoRAConfig(quantization="8bit"))
            >>> b = SONAModel(dim=64, mlp_hidden=64, seed=1, lora=LoRAConfig(quantization="8bit"))
            >>> b.load_state_dict(a.state_dict())
            >>> x = np.ones(64, np.float32)
            >>> bool(np.array_equal(a.forward(x)["hidden"], b.forward(x)["hidden"]))
            True
        """
        if not isinstance(st, Mapping):
            raise ModelError(f"model state must be a mapping, got {type(st).__name__}")
        same_shape = st.get("dim") == self.dim and st.get("mlp_hidden") == self.mlp_hidden
        base = self._staged_base(st["base"]) if same_shape and st.get("base") is not None else None
        # validates the rest (the dimensions first), then installs it
        model_state.load_model_state(self, {**st, "base": None})
        for m, (W, b) in (base or {}).items():
            self.layers[m].set_base(W)
            self.layers[m].b[...] = b
        self._switch_micro()

    def _staged_base(self, base: Any) -> dict[str, tuple[np.ndarray | QuantizedWeight, np.ndarray]]:
        """Every layer's base weight and bias from a state's ``base``, validated (ModelError)."""
        if not isinstance(base, Mapping):
            raise ModelError(f"model state: base must be a mapping, got {type(base).__name__}")
        out: dict[str, tuple[np.ndarray | QuantizedWeight, np.ndarray]] = {}
        for m, lin in self.layers.items():
            entry = base.get(m)
            if not isinstance(entry, Mapping):
                raise ModelError(f"model state: base weights of {m!r} missing")
            where = f"base.{m}"
            b = model_state.checked_array(entry, "b", lin.b.shape, where)
            if entry.get("scheme") is None:
                out[m] = (model_state.checked_array(entry, "W", lin.base.shape, where), b)
                continue
            try:
                q = QuantizedWeight.from_dict(entry, where=where)
            except QuantizationError as exc:
                raise ModelError(f"model state: {exc}") from None
            if q.shape != lin.base.shape:
                raise ModelError(f"model state: {where}.shape: {list(q.shape)}, expected {list(lin.base.shape)}")
            out[m] = (q, b)
        return out

