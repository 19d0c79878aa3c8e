"""LoRA adapters: low-rank updates of frozen linear maps.

For a frozen base weight ``W`` (d_out x d_in) an adapter adds ``s * B @ (A @ x)``:

* ``A`` (r x d_in) is drawn from a seed (uniform in +-1/sqrt(d_in), as PEFT's Kaiming-uniform
  init); with ``shared_a_seed`` every agent derives the *same* A for a module and trains B
  only (FFA-LoRA), so averaging B across agents is exactly averaging their weight deltas.
* ``B`` (d_out x r) starts at zero, so a new adapter changes nothing (bit-identical outputs).
* ``s = alpha / r``, or ``alpha / sqrt(r)`` with rank-stabilised LoRA (rsLoRA).
* Dropout acts on the adapter's input, in training only (inverted dropout).

:class:`LoRAAdapter` is one (A, B) pair with forward, exact backward and plain-dict
export/import. :class:`MicroLoRA` is the rank 1-2 square adapter on the model's final hidden
state (instant loop); :class:`BaseLoRA` the rank 4-32 adapter on an inner module (background
loop). The frozen linear layer that carries named adapters is
:class:`~swarm_sona.learning.lora_linear.LoRALinear`.

The float32 math runs through :mod:`swarm_sona.kernels` (``lora_delta``,
``lora_grad``, ``micro_apply``); float64 adapters (used for gradient checks) run the same
formulas in numpy.

Example:
    >>> import numpy as np
    >>> ad = BaseLoRA(6, 4, rank=2, alpha=4.0, name="q")
    >>> x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    >>> bool(np.array_equal(ad.delta(x), np.zeros((3, 4), np.float32)))  # B = 0: nothing changes
    True
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.learning.config import LoRAConfig
from swarm_sona.learning.edits import EditVersion

__all__ = [
    "LoRAError",
    "LoRAAdapter",
    "MicroLoRA",
    "BaseLoRA",
    "lora_scaling",
    "draw_a",
]


class LoRAError(ValueError):
    """Invalid adapter shape, rank, state or operation (the message says which)."""


def lora_scaling(rank: int, alpha: float, use_rslora: bool = False) -> float:
    """``alpha / r`` or, with rsLoRA, ``alpha / sqrt(r)``.

    Example:
        >>> lora_scaling(8, 16), lora_scaling(4, 8, use_rslora=True)
        (2.0, 4.0)
    """
    return float(alpha / (math.sqrt(rank) if use_rslora else rank))


def draw_a(seed: int, name: str, rank: int, d_in: int, dtype: Any = np.float32) -> np.ndarray:
    """The seeded A of module ``name``: uniform in +-1/sqrt(d_in), shape (rank, d_in).

    The draw depends only on (seed, name, shape), so every process derives the same A.

    Example:
        >>> bool(np.array_equal(draw_a(7, "q", 2, 5), draw_a(7, "q", 2, 5)))
        True
        >>> bool(np.array_equal(draw_a(7, "q", 2, 5), draw_a(7, "v", 2, 5)))
        False
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8")), rank, d_in])
    bound = 1.0 / math.sqrt(d_in)
    return rng.uniform(-bound, bound, size=(rank, d_in)).astype(dtype)


def _as_int(v: Any, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise LoRAError(f"{what} must be an integer, got {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise LoRAError(f"{what} must be {rng}, got {v}")
    return v


class LoRAAdapter:
    """One low-rank update ``s * B @ A`` of a (d_out x d_in) linear map (see module docs).

    ``trainable`` names the parameters an optimiser may change: ``("A", "B")``, or ``("B",)``
    when ``train_a`` is false or ``shared_a_seed`` is set.

    Example:
        >>> ad = LoRAAdapter(8, 4, rank=2, alpha=4.0, name="v")
        >>> ad.A.shape, ad.B.shape, ad.scale, ad.trainable
        ((2, 8), (4, 2), 2.0, ('A', 'B'))
        >>> float(np.abs(ad.delta(np.ones(8, np.float32))).max())
        0.0
    """

    min_rank = 1
    max_rank = 256

    version = EditVersion()  # every change of A or B; bumps the edit epoch

    def __init__(self, d_in: int, d_out: int, rank: int = 8, alpha: float = 16.0, *,
                 use_rslora: bool = False, dropout: float = 0.0, seed: int = 0,
                 shared_a_seed: int | None = None, train_a: bool = True, name: str = "",
                 dtype: Any = np.float32, kernels: ModuleType | None = None) -> None:
        self.d_in = _as_int(d_in, "d_in", 1)
        self.d_out = _as_int(d_out, "d_out", 1)
        self.rank = _as_int(rank, f"{type(self).__name__} rank", self.min_rank, self.max_rank)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise LoRAError(f"alpha must be a finite number > 0, got {alpha!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise LoRAError(f"dropout must be in [0, 1), got {dropout!r}")
        self.alpha = float(alpha)
        self.use_rslora = bool(use_rslora)
        self.dropout = float(dropout)
        self.name = str(name)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise LoRAError(f"dtype must be float32 or float64, got {self.dtype}")
        self.shared_a_seed = None if shared_a_seed is None else int(shared_a_seed)
        self.seed = int(seed)
        self.scale = lora_scaling(self.rank, self.alpha, self.use_rslora)
        a_seed = self.shared_a_seed if self.shared_a_seed is not None else self.seed
        self.A = draw_a(a_seed, self.name, self.rank, self.d_in, self.dtype)
        self.B = np.zeros((self.d_out, self.rank), dtype=self.dtype)
        self.train_a = bool(train_a) and self.shared_a_seed is None
        self.trainable: tuple[str, ...] = ("A", "B") if self.train_a else ("B",)
        self._k = kernels if kernels is not None else _nk
        self._fast = self.dtype == np.float32
        self.version = 0  # bumped by every method that changes A or B (see touch)

    # ---- construction from config ------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: LoRAConfig, d_in: int, d_out: int, *, name: str = "",
                    dtype: Any = np.float32, kernels: ModuleType | None = None) -> LoRAAdapter:
        """An adapter with the rank/alpha/dropout/seeds of a :class:`LoRAConfig`."""
        return cls(d_in, d_out, cfg.rank, cfg.alpha, use_rslora=cfg.use_rslora, dropout=cfg.dropout,
                   seed=cfg.seed, shared_a_seed=cfg.shared_a_seed, train_a=cfg.train_a, name=name,
                   dtype=dtype, kernels=kernels)

    # ---- math --------------------------------------------------------------------------
    def delta(self, x: np.ndarray) -> np.ndarray:
        """``s * B @ (A @ x)`` for x (d_in,) or rows of x (n, d_in); no dropout."""
        if self._fast:
            return self._k.lora_delta(x, self.A, self.B, self.scale)
        return self.scale * ((x @ self.A.T) @ self.B.T)

    def forward(self, x: np.ndarray, *, training: bool = False,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Delta and the context :meth:`backward` needs. Dropout only when ``training``."""
        mask = None
        if training and self.dropout > 0.0:
            if rng is None:
                raise LoRAError("training with dropout needs an rng")
            keep = 1.0 - self.dropout
            mask = (rng.random(x.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
            xd = x * mask
        else:
            xd = x
        return self.delta(xd), {"x": xd, "mask": mask}

    def backward(self, ctx: Mapping[str, Any], g: np.ndarray, *,
                 need_input_grad: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Exact gradients of ``sum(g * delta)``: ``(gA or None, gB, gx or None)``.

        ``gA`` is None when A is frozen; rows of x and g are summed over.
        """
        xd = ctx["x"]
        if self._fast:
            gA, gB = self._k.lora_grad(xd, g, self.A, self.B, self.scale)
        else:
            x2, g2 = np.atleast_2d(xd), np.atleast_2d(g)
            gB = self.scale * (g2.T @ (x2 @ self.A.T))
            gA = self.scale * ((g2 @ self.B).T @ x2)
        gx = None
        if need_input_grad:
            gx = self.scale * ((g @ self.B) @ self.A)
            if ctx.get("mask") is not None:
                gx = gx * ctx["mask"]
        return (gA if self.train_a else None), gB, gx

    def weight_delta(self) -> np.ndarray:
        """The dense update ``s * B @ A`` (d_out x d_in)."""
        return (self.scale * (self.B @ self.A)).astype(self.dtype, copy=False)

    def reset(self) -> None:
        """B back to zero (the adapter changes nothing again); A is kept."""
        self.B[...] = 0
        self.touch()

    def touch(self) -> None:
        """Record that A or B changed in place (invalidates cached merged weights)."""
        self.version += 1

    def parameters(self) -> dict[str, np.ndarray]:
        """The trainable arrays by name (views: in-place updates change the adapter)."""
        return {n: getattr(self, n) for n in self.trainable}

    def norm(self) -> float:
        """Frobenius norm of the dense update s * B @ A (0 for a fresh adapter)."""
        z = self.B.T.astype(np.float64) @ self.B.astype(np.float64)
        w = self.A.astype(np.float64) @ self.A.T.astype(np.float64)
        return float(self.scale * math.sqrt(max(float(np.sum(z * w)), 0.0)))

    # ---- export / import ----------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"A": array, "B": array}`` (copies)."""
        return {"A": self.A.copy(), "B": self.B.copy()}

    def load_state_dict(self, state: Mapping[str, Any], *, where: str = "") -> None:
        """Install A and/or B from a plain dict; shapes and finiteness are checked first.

        With a shared A (FFA-LoRA) an incoming A must equal the derived one.
        """
        where = where or f"adapter {self.name!r}"
        new = {}
        if not isinstance(state, Mapping):
            raise LoRAError(f"{where}: expected a mapping with 'A'/'B', got {type(state).__name__}")
        unknown = set(state) - {"A", "B"}
        if unknown:
            raise LoRAError(f"{where}: unknown key(s) {sorted(unknown)}; expected 'A' and 'B'")
        for key, shape in (("A", self.A.shape), ("B", self.B.shape)):
            if key not in state:
                continue
            arr = np.asarray(state[key])
            if arr.shape != shape:
                raise LoRAError(f"{where}.{key}: shape {arr.shape}, expected {shape}")
            if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
                raise LoRAError(f"{where}.{key}: must be finite numbers")
            new[key] = arr.astype(self.dtype)
        if "A" in new and self.shared_a_seed is not None and not np.allclose(new["A"], self.A, atol=1e-6):
            raise LoRAError(f"{where}.A differs from the shared A derived from shared_a_seed={self.shared_a_seed}")
        for key, arr in new.items():
            getattr(self, key)[...] = arr
        self.touch()

    def to_dict(self) -> dict[str, Any]:
        """Hyper-parameters and arrays as plain data (see :meth:`from_dict`)."""
        return {"kind": type(self).__name__, "name": self.name, "d_in": self.d_in, "d_out": self.d_out,
                "rank": self.rank, "alpha": self.alpha, "use_rslora": self.use_rslora,
                "dropout": self.dropout, "seed": self.seed, "shared_a_seed": self.shared_a_seed,
                "train_a": self.train_a, "A": self.A.copy(), "B": self.B.copy()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, kernels: ModuleType | None = None,
                  dtype: Any = None) -> LoRAAdapter:
        """Rebuild an adapter exported with :meth:`to_dict` (``dtype``: that of A unless given)."""
        if not isinstance(d, Mapping):
            raise LoRAError(f"adapter dict must be a mapping, got {type(d).__name__}")
        kinds = {"LoRAAdapter": LoRAAdapter, "MicroLoRA": MicroLoRA, "BaseLoRA": BaseLoRA}
        kind_name = d.get("kind", cls.__name__)
        if kind_name not in kinds:
            raise LoRAError(f"unknown adapter kind {kind_name!r} (known: {sorted(kinds)})")
        try:
            A = np.asarray(d["A"])
            kw = dict(use_rslora=d.get("use_rslora", False), dropout=d.get("dropout", 0.0), seed=d.get("seed", 0),
                      shared_a_seed=d.get("shared_a_seed"), train_a=d.get("train_a", True), name=d.get("name", ""),
                      dtype=dtype or (A.dtype if A.dtype in (np.float32, np.float64) else np.float32),
                      kernels=kernels)
            if kind_name == "MicroLoRA":
                if d["d_in"] != d["d_out"]:
                    raise LoRAError(f"MicroLoRA is square; got d_in={d['d_in']}, d_out={d['d_out']}")
                ad: LoRAAdapter = MicroLoRA(d["d_in"], d["rank"], d["alpha"], **kw)
            else:
                ad = kinds[kind_name](d["d_in"], d["d_out"], d["rank"], d["alpha"], **kw)
        except KeyError as exc:
            raise LoRAError(f"adapter dict lacks key {exc.args[0]!r}") from exc
        ad.load_state_dict({"A": d["A"], "B": d["B"]}, where=f"adapter {ad.name!r}")
        return ad

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, d_in={self.d_in}, d_out={self.d_out}, "
                f"rank={self.rank}, scale={self.scale:g}, trainable={self.trainable})")


class BaseLoRA(LoRAAdapter):
    """The adapter on an inner module of the model (rank 4-32 typical), trained in
    mini-batches by the background loop and by ``finetune``.

    Example:
        >>> BaseLoRA(16, 16, rank=8, alpha=16).scale
        2.0
    """


class MicroLoRA(LoRAAdapter):
    """Rank 1-2 square adapter on the final hidden state: ``h + s * B @ (A @ h)``.

    Updated on every trajectory by the instant loop (kernel ``instant_step``).

    Example:
        >>> m = MicroLoRA(4, rank=1, alpha=1.0)
        >>> h = np.ones(4, np.float32)
        >>> bool(np.array_equal(m.apply(h), h))
        True
    """

    max_rank = 2

    def __init__(self, dim: int, rank: int = 1, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(dim, dim, rank, alpha, **kwargs)

    @classmethod
    def from_config(cls, cfg: LoRAConfig, d_in: int, d_out: int | None = None, *, name: str = "micro",
                    dtype: Any = np.float32, kernels: ModuleType | None = None) -> MicroLoRA:
        """MicroLoRA with ``micro_rank`` / ``micro_alpha`` and the config's seeds."""
        if d_out is not None and d_out != d_in:
            raise LoRAError(f"MicroLoRA is square; got d_in={d_in}, d_out={d_out}")
        return cls(d_in, cfg.micro_rank, cfg.micro_alpha, seed=cfg.seed, shared_a_seed=cfg.shared_a_seed,
                   train_a=cfg.train_a, name=name, dtype=dtype, kernels=kernels)

    def apply(self, h: np.ndarray, *, finite: bool = False) -> Any:
        """``h + s * B @ (A @ h)`` for h (d,) or (n, d); with ``finite=True``, ``None`` when h
        or the result holds a NaN or an inf (checked inside the kernel's own pass)."""
        if self._fast:
            return self._k.micro_apply(h, self.A, self.B, self.scale, finite)
        with np.errstate(invalid="ignore", over="ignore"):
            out = h + self.delta(h)
        if finite and not (np.isfinite(h).all() and np.isfinite(out).all()):
            return None
        return out
