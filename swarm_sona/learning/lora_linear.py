"""A frozen linear layer carrying several named LoRA adapters (:mod:`.lora`), which can be
activated, merged into the base weight and unmerged again; its base optionally stored quantised
(:mod:`.quantization`).

Example:
    >>> import numpy as np
    >>> from swarm_sona.learning.lora import BaseLoRA
    >>> rng = np.random.default_rng(0)
    >>> layer = LoRALinear(rng.normal(size=(4, 6)).astype(np.float32), name="q")
    >>> layer.add_adapter("default", BaseLoRA(6, 4, rank=2, alpha=4.0, name="q"))
    >>> x = rng.normal(size=(3, 6)).astype(np.float32)
    >>> bool(np.array_equal(layer(x), x @ layer.W.T))  # B = 0: nothing changes
    True
    >>> layer.adapters["default"].B[:] = 0.5
    >>> y = layer(x)
    >>> layer.merge("default"); bool(np.allclose(layer(x), y, atol=1e-5))
    True
    >>> layer.unmerge("default"); sorted(layer.merged)
    []
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.learning.edits import EditVersion
from swarm_sona.learning.lora import LoRAAdapter, LoRAError
from swarm_sona.learning.quantization import (
    DEFAULT_GROUP_SIZE,
    QuantizedWeight,
    StoredWeight,
    canonical_scheme,
    quantize_weight,
)

__all__ = ["LoRALinear"]


class LoRALinear:
    """A frozen linear layer ``y = x W^T + b`` with several named LoRA adapters.

    Active, unmerged adapters add their delta in :meth:`forward`; :meth:`merge` folds an
    adapter into ``W`` (then it costs nothing at inference and cannot be trained) and
    :meth:`unmerge` takes it out again. :meth:`merged_copy` returns a dense merged weight,
    optionally quantised, without touching the layer. Code that writes ``W``/``b`` or an
    adapter's arrays in place must call :meth:`touch` (or the adapter's ``touch``) so that
    caches keyed on :meth:`state_key` are refreshed.

    With ``quantization`` ('nf4'/'4bit', 'int8'/'8bit'; :mod:`.quantization`) the frozen base
    (:attr:`base`) is stored as group-wise codes only; forward and backward run the C kernels on
    the codes (``x @ W^T``, ``g @ W``): ``W`` reads as a fresh read-only dequantised array (for
    export; ``layer.W = new`` replaces it), adapters stay float, merge/unmerge re-quantise.

    Example:
        >>> import numpy as np
        >>> from swarm_sona.learning.lora import BaseLoRA
        >>> lin = LoRALinear(np.eye(3, dtype=np.float32), name="o")
        >>> lin.add_adapter("a", BaseLoRA(3, 3, rank=1, alpha=1.0, name="o"))
        >>> lin.add_adapter("b", BaseLoRA(3, 3, rank=1, alpha=1.0, name="o", seed=1))
        >>> lin.set_active(["a"]); lin.active
        ('a',)
        >>> q = LoRALinear(np.eye(64, dtype=np.float32), quantization="4bit")
        >>> q.base.nbytes, q.W.flags.writeable, bool(np.array_equal(q.W, np.eye(64)))
        (2304, False, True)
    """

    version = EditVersion()  # W, adapter set, activation or merging changed; bumps the edit epoch

    def __init__(self, W: np.ndarray, b: np.ndarray | None = None, *, name: str = "",
                 dtype: Any = None, quantization: str | None = None,
                 group_size: int = DEFAULT_GROUP_SIZE) -> None:
        W = np.asarray(W)
        if W.ndim != 2:
            raise LoRAError(f"{name or 'linear'}: W must be 2-D, got shape {W.shape}")
        self.dtype = np.dtype(dtype or (W.dtype if W.dtype in (np.float32, np.float64) else np.float32))
        self.d_out, self.d_in = W.shape
        self.base = StoredWeight(W, self.dtype, quantization, group_size, where=name or "linear")
        self.b = np.zeros(self.d_out, self.dtype) if b is None else np.array(b, dtype=self.dtype)
        if self.b.shape != (self.d_out,):
            raise LoRAError(f"{name or 'linear'}: b has shape {self.b.shape}, expected ({self.d_out},)")
        self.name = name
        self.adapters: dict[str, LoRAAdapter] = {}
        self._active: tuple[str, ...] = ()
        self.merged: set[str] = set()
        self.version = 0  # bumped when W, the adapter set, activation or merging changes

    @property
    def W(self) -> np.ndarray:
        """The base weight (d_out, d_in); dequantised (fresh, read-only) when quantised."""
        return self.base.array()

    @W.setter
    def W(self, W: np.ndarray) -> None:
        self.base.assign(W)  # re-quantised under the base's scheme

    def base_state(self) -> dict[str, Any]:
        """The frozen base as stored, for a checkpoint (copies): ``{"scheme": None, "W", "b"}``
        (float), or a quantised base's codes and scales, ``{"scheme", "shape", "group_size",
        "codes", "absmax", "b"}`` (:meth:`QuantizedWeight.to_dict`): no float copy of it.

        Example:
            >>> import numpy as np
            >>> st = LoRALinear(np.eye(64, dtype=np.float32), quantization="4bit").base_state()
            >>> st["scheme"], st["codes"].nbytes + st["absmax"].nbytes, "W" in st
            ('nf4', 2304, False)
        """
        q = self.base.quantized
        if q is None:
            return {"scheme": None, "W": self.W.copy(), "b": self.b.copy()}
        return {**q.to_dict(), "b": self.b.copy()}

    def set_base(self, W: np.ndarray | QuantizedWeight) -> None:
        """Replace the base weight: a float matrix is stored under the base's scheme (quantised
        when it has one); a :class:`QuantizedWeight` of the base's scheme and group size is
        stored as is (bit-exact: what :meth:`base_state` saved), of another one it is
        dequantised and stored under the base's scheme.

        Example:
            >>> import numpy as np
            >>> a = LoRALinear(np.eye(64, dtype=np.float32), quantization="8bit")
            >>> b = LoRALinear(np.zeros((64, 64), np.float32), quantization="8bit")
            >>> b.set_base(a.base.quantized); b.base.quantized is a.base.quantized
            True
        """
        if isinstance(W, QuantizedWeight):
            if W.scheme == self.base.scheme and W.group_size == self.base.group_size:
                self.base.load_quantized(W)
            else:
                self.base.assign(W.dequantize(self.dtype))
        else:
            self.base.assign(W)
        self.version += 1

    def touch(self) -> None:
        """Record that W or b changed in place."""
        self.version += 1

    def state_key(self) -> tuple[Any, ...]:
        """Changes whenever this layer's effective weight may have changed (for caches)."""
        return (self.version, self.base.version, tuple((n, id(ad), ad.version) for n, ad in self._live()))

    # ---- adapter management ---------------------------------------------------------------
    def add_adapter(self, adapter_name: str, adapter: LoRAAdapter, *, activate: bool = True) -> None:
        """Attach ``adapter`` under ``adapter_name`` (shapes must fit ``W``)."""
        if adapter_name in self.adapters:
            raise LoRAError(f"{self.name}: adapter {adapter_name!r} already exists")
        if (adapter.d_out, adapter.d_in) != (self.d_out, self.d_in):
            raise LoRAError(f"{self.name}: adapter {adapter_name!r} is ({adapter.d_out}, {adapter.d_in}), "
                            f"layer is {(self.d_out, self.d_in)}")
        if adapter.dtype != self.dtype:
            raise LoRAError(f"{self.name}: adapter dtype {adapter.dtype} differs from layer dtype {self.dtype}")
        self.adapters[adapter_name] = adapter
        if activate:
            self._active = (*self._active, adapter_name)
        self.version += 1

    def remove_adapter(self, adapter_name: str) -> LoRAAdapter:
        """Detach an adapter (unmerging it first if merged); returns it."""
        self._check_name(adapter_name)
        if adapter_name in self.merged:
            self.unmerge(adapter_name)
        self._active = tuple(n for n in self._active if n != adapter_name)
        self.version += 1
        return self.adapters.pop(adapter_name)

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the adapters applied in forward (merged ones are applied through W)."""
        return self._active

    def set_active(self, names: Iterable[str]) -> None:
        """Choose which adapters forward applies; merged adapters must stay active."""
        names = tuple(names)
        for n in names:
            self._check_name(n)
        missing = self.merged - set(names)
        if missing:
            raise LoRAError(f"{self.name}: merged adapter(s) {sorted(missing)} must be unmerged before deactivating")
        self._active = names
        self.version += 1

    def _check_name(self, adapter_name: str) -> None:
        if adapter_name not in self.adapters:
            raise LoRAError(f"{self.name}: no adapter named {adapter_name!r} (have {sorted(self.adapters)})")

    def merge(self, adapter_name: str) -> None:
        """Fold ``s B A`` of an active adapter into W."""
        self._check_name(adapter_name)
        if adapter_name in self.merged:
            raise LoRAError(f"{self.name}: adapter {adapter_name!r} is already merged")
        if adapter_name not in self._active:
            raise LoRAError(f"{self.name}: adapter {adapter_name!r} is not active; activate it before merging")
        self.W = self.W + self.adapters[adapter_name].weight_delta()
        self.merged.add(adapter_name)
        self.version += 1

    def unmerge(self, adapter_name: str) -> None:
        """Take a merged adapter's ``s B A`` out of W again."""
        self._check_name(adapter_name)
        if adapter_name not in self.merged:
            raise LoRAError(f"{self.name}: adapter {adapter_name!r} is not merged")
        self.W = self.W - self.adapters[adapter_name].weight_delta()
        self.merged.discard(adapter_name)
        self.version += 1

    def merged_copy(self, quantization: str | None = None) -> dict[str, np.ndarray]:
        """Dense weight with every active adapter folded in: ``{"W", "b"}``; with
        ``quantization="int8"`` ``{"q": int8, "scales": float32, "b"}`` (per-row symmetric), with
        ``"nf4"``/``"4bit"`` ``{"q": packed uint8, "scales": group absmax, "b"}`` (see :mod:`.quantization`)."""
        W = np.array(self.W, copy=True)
        for n in self._active:
            if n not in self.merged:
                W += self.adapters[n].weight_delta()
        scheme = canonical_scheme(quantization)
        if scheme is None:
            return {"W": W, "b": self.b.copy()}
        if scheme == "nf4":
            qw = quantize_weight(W, "nf4", self.base.group_size)
            return {"q": qw.codes, "scales": qw.absmax, "b": self.b.astype(np.float32)}
        q, scales = _nk.quantize_int8(np.ascontiguousarray(W, dtype=np.float32))
        return {"q": q, "scales": scales, "b": self.b.astype(np.float32)}

    # ---- forward / backward --------------------------------------------------------------
    def _live(self) -> list[tuple[str, LoRAAdapter]]:
        return [(n, self.adapters[n]) for n in self._active if n not in self.merged]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inference forward (no dropout) for x (d_in,) or (n, d_in); a quantised base is applied
        from its codes (:meth:`StoredWeight.apply`)."""
        y = self.base.apply(x)
        y += self.b
        for _, ad in self._live():
            y += ad.delta(x)
        return y

    def forward(self, x: np.ndarray, *, training: bool = False,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Forward for x (n, d_in) returning (y, ctx) for :meth:`backward` (a quantised base is
        applied from its codes both ways: no float copy of it is made or kept)."""
        y = self.base.apply(x)
        y += self.b
        ctxs = {}
        for n, ad in self._live():
            d, c = ad.forward(x, training=training, rng=rng)
            y += d
            ctxs[n] = c
        return y, {"x": x, "adapters": ctxs}

    def backward(self, ctx: Mapping[str, Any], gy: np.ndarray, *, need_input_grad: bool = True
                 ) -> tuple[np.ndarray | None, dict[str, dict[str, np.ndarray]]]:
        """Exact gradients: ``(gx, {adapter_name: {"A": gA, "B": gB}})`` (frozen A omitted)."""
        grads: dict[str, dict[str, np.ndarray]] = {}
        gx = self.base.apply_t(gy) if need_input_grad else None
        for n, c in ctx["adapters"].items():
            gA, gB, gxa = self.adapters[n].backward(c, gy, need_input_grad=need_input_grad)
            grads[n] = {"B": gB} if gA is None else {"A": gA, "B": gB}
            if gx is not None and gxa is not None:
                gx += gxa
        return gx, grads

    def __repr__(self) -> str:
        return (f"LoRALinear(name={self.name!r}, shape={(self.d_out, self.d_in)}, adapters={sorted(self.adapters)}, "
                f"active={self._active}, quantization={self.base.scheme!r})")
