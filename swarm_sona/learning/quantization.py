"""Group-wise weight quantisation of the frozen base weights (QLoRA-style), numpy reference.

A weight matrix is flattened row-major, cut into groups of ``group_size`` consecutive
entries (the last one zero-padded) and every group is scaled by its absolute maximum
(``absmax``, kept as one float32 per group):

* ``"nf4"`` (the integration guide's ``'4bit'``): each ``w / absmax`` in [-1, 1] is rounded to
  the nearest of the 16 NormalFloat4 levels of QLoRA (Dettmers et al. 2023; the levels of
  bitsandbytes' ``nf4``), two 4-bit codes per byte (low nibble first).
* ``"int8"`` (alias ``'8bit'``): ``round(127 * w / absmax)`` as int8 in [-127, 127].

Dequantisation is ``level[code] * absmax`` (nf4) or ``code * absmax / 127`` (int8); a group of
zeros stays exactly zero, and the entry of largest magnitude of a group is reproduced exactly
(up to float32 rounding). What it costs and saves, per entry:

=========  ===============================  =================================  ==============
scheme     stored bytes (group_size 64)     of float32                         max |error|
=========  ===============================  =================================  ==============
nf4        0.5 + 4/64 = 0.5625              14.1 %                             0.1519 absmax
int8       1 + 4/64 = 1.0625                26.6 %                             absmax / 254
=========  ===============================  =================================  ==============

The bound is half the widest gap between neighbouring levels times the group's absmax (plus
float32 rounding, :data:`ROUNDING`); :meth:`QuantizedWeight.error_bound` gives it per entry, so
for ``y = x W^T`` the error of output i is at most ``sum_j |x_j| bound_ij``. Measured on
Gaussian weights (group 64) the relative Frobenius error is about 0.092 (nf4) and 0.006 (int8).
Dequantisation and the products ``x @ W^T`` / ``g @ W`` run in the C kernels
(:func:`swarm_sona.kernels.qlinear`, :func:`~swarm_sona.kernels.qlinear_t`,
:func:`~swarm_sona.kernels.dequantize_rows`; numpy reference in :mod:`swarm_sona.kernels.reference`)
on the codes themselves: a layer never keeps a float copy of a quantised base
(:meth:`StoredWeight.apply`). Scales are not double-quantised (QLoRA's second step), which
would save a further 0.37 bits per entry.

Measured by ``swarm-sona bench learning --quantization`` (dim 1536, ``mlp_hidden`` 1536, one
BLAS thread, AMD EPYC 2 cores, 2026-12-02): base 56.6 MB float32, 15.0 MB int8 (26.6 %),
7.96 MB nf4 (14.1 %); every array of the engine 86.1 MB / 16.2 MB (18.8 %) / 9.1 MB (10.6 %:
the float engine also keeps its fused inference copy); forward of one embedding p50 819 / 264 /
355 us; background cycle p50 102 / 105 / 102 ms. Accuracy: see ``bench learning``.

Example:
    >>> import numpy as np
    >>> W = np.random.default_rng(0).normal(size=(64, 128)).astype(np.float32)
    >>> q = quantize_weight(W, "4bit")
    >>> q.scheme, q.shape, round(q.nbytes / W.nbytes, 3)
    ('nf4', (64, 128), 0.141)
    >>> bool(np.all(np.abs(q.dequantize() - W) <= q.error_bound()))
    True
    >>> quantize_weight(W, "3bit")
    Traceback (most recent call last):
    ...
    swarm_sona.learning.quantization.QuantizationError: unknown quantization '3bit' (use one of None, 'int8', '8bit', 'nf4', '4bit')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm_sona import kernels
from swarm_sona.kernels.reference import NF4_LEVELS
from swarm_sona.learning.edits import EditVersion

__all__ = [
    "QuantizationError",
    "QuantizedWeight",
    "StoredWeight",
    "quantize_weight",
    "canonical_scheme",
    "SCHEMES",
    "SCHEME_ALIASES",
    "NF4_LEVELS",
    "ERROR_FRACTION",
    "ROUNDING",
    "DEFAULT_GROUP_SIZE",
]

SCHEMES = ("int8", "nf4")
SCHEME_ALIASES = {"8bit": "int8", "4bit": "nf4", "int8": "int8", "nf4": "nf4"}
DEFAULT_GROUP_SIZE = 64

_NF4_MIDPOINTS = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2

#: Max |w - dequantize(w)| as a fraction of the group's absmax (half the widest level gap).
ERROR_FRACTION = {"nf4": float(np.max(np.diff(NF4_LEVELS)) / 2), "int8": 0.5 / 127}
#: Relative float32 rounding allowance added to every bound (a few ulps of absmax).
ROUNDING = 4 * float(np.finfo(np.float32).eps)


class QuantizationError(ValueError):
    """Unknown scheme, bad group size or a weight that cannot be quantised (the message says)."""


def canonical_scheme(scheme: Any) -> str | None:
    """``None`` or the canonical name of a scheme (``'4bit'`` -> ``'nf4'``, ``'8bit'`` -> ``'int8'``).

    Example:
        >>> canonical_scheme("4bit"), canonical_scheme("int8"), canonical_scheme(None)
        ('nf4', 'int8', None)
    """
    if scheme is None:
        return None
    if not isinstance(scheme, str) or scheme not in SCHEME_ALIASES:
        valid = ", ".join(["None", *(repr(s) for s in ("int8", "8bit", "nf4", "4bit"))])
        raise QuantizationError(f"unknown quantization {scheme!r} (use one of {valid})")
    return SCHEME_ALIASES[scheme]


def _check_group_size(group_size: Any) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise QuantizationError(f"group_size must be an integer, got {group_size!r}")
    if not 2 <= int(group_size) <= 65536 or int(group_size) % 2:
        raise QuantizationError(f"group_size must be even and in [2, 65536], got {group_size}")
    return int(group_size)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """A matrix stored as group-wise codes and float32 absmax scales (see the module docs).

    ``codes`` is uint8 (two nf4 codes per byte) or int8; ``absmax`` one float32 per group.

    Example:
        >>> import numpy as np
        >>> q = quantize_weight(np.eye(4, dtype=np.float32), "int8", group_size=4)
        >>> q.dequantize().tolist()[0], q.nbytes
        ([1.0, 0.0, 0.0, 0.0], 32)
    """

    scheme: str
    shape: tuple[int, int]
    group_size: int
    codes: np.ndarray
    absmax: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes stored: codes plus scales."""
        return int(self.codes.nbytes + self.absmax.nbytes)

    @property
    def size(self) -> int:
        """Entries of the matrix."""
        return int(self.shape[0] * self.shape[1])

    def dequantize(self, dtype: Any = np.float32) -> np.ndarray:
        """The (approximate) dense matrix, a new C-contiguous array of ``dtype`` (kernel
        ``dequantize_rows``)."""
        W = kernels.dequantize_rows(self.codes, self.absmax, self.shape, self.group_size, self.scheme)
        return np.ascontiguousarray(W, dtype=dtype)

    def matmul(self, x: Any) -> np.ndarray:
        """``x @ W^T`` (float32) for x (d_in,) or (n, d_in), from the codes (kernel ``qlinear``).

        Example:
            >>> import numpy as np
            >>> q = quantize_weight(np.eye(4, dtype=np.float32), "nf4", group_size=4)
            >>> q.matmul(np.arange(4.0)).tolist()
            [0.0, 1.0, 2.0, 3.0]
        """
        return kernels.qlinear(x, self.codes, self.absmax, self.shape, self.group_size, self.scheme)

    def matmul_t(self, g: Any) -> np.ndarray:
        """``g @ W`` (float32) for g (d_out,) or (n, d_out): the input gradient of :meth:`matmul`
        (kernel ``qlinear_t``)."""
        return kernels.qlinear_t(g, self.codes, self.absmax, self.shape, self.group_size, self.scheme)

    def error_bound(self) -> np.ndarray:
        """Per-entry bound on ``|W - dequantize()|`` (float32 array of the matrix's shape)."""
        per_group = self.absmax * np.float32(ERROR_FRACTION[self.scheme] + ROUNDING)
        flat = np.repeat(per_group, self.group_size)[: self.size]
        return flat.reshape(self.shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a checkpoint): ``{"scheme", "shape", "group_size", "codes", "absmax"}``,
        the codes and scales themselves (copies), so :meth:`from_dict` gives them back bit-exactly.

        Example:
            >>> import numpy as np
            >>> q = quantize_weight(np.eye(4, dtype=np.float32), "nf4", group_size=4)
            >>> d = q.to_dict(); d["scheme"], d["shape"], d["codes"].dtype.name, d["absmax"].tolist()
            ('nf4', [4, 4], 'uint8', [1.0, 1.0, 1.0, 1.0])
        """
        return {"scheme": self.scheme, "shape": [int(self.shape[0]), int(self.shape[1])],
                "group_size": int(self.group_size), "codes": self.codes.copy(), "absmax": self.absmax.copy()}

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "quantized weight") -> QuantizedWeight:
        """The weight of :meth:`to_dict`'s output, validated (scheme, shape, group size, the
        codes' dtype and count, finite scales >= 0): QuantizationError naming ``where`` and the
        field otherwise.

        Example:
            >>> import numpy as np
            >>> q = quantize_weight(np.arange(8.0).reshape(2, 4), "int8", group_size=4)
            >>> back = QuantizedWeight.from_dict(q.to_dict())
            >>> bool(np.array_equal(back.codes, q.codes)), back.shape
            (True, (2, 4))
            >>> QuantizedWeight.from_dict({**q.to_dict(), "codes": q.codes[:3]})
            Traceback (most recent call last):
            ...
            swarm_sona.learning.quantization.QuantizationError: quantized weight.codes: 3 int8 codes, expected 8
        """
        if not isinstance(d, Mapping):
            raise QuantizationError(f"{where}: expected a mapping, got {type(d).__name__}")
        missing = [k for k in ("scheme", "shape", "group_size", "codes", "absmax") if k not in d]
        if missing:
            raise QuantizationError(f"{where}: missing {', '.join(missing)}")
        try:
            scheme = canonical_scheme(d["scheme"])
            group = _check_group_size(d["group_size"])
        except QuantizationError as exc:
            raise QuantizationError(f"{where}: {exc}") from None
        if scheme is None:
            raise QuantizationError(f"{where}.scheme: None is not a quantised scheme")
        shape = d["shape"]
        if (not isinstance(shape, (list, tuple)) or len(shape) != 2
                or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise QuantizationError(f"{where}.shape: expected two integers > 0, got {shape!r}")
        rows, cols = int(shape[0]), int(shape[1])
        n_groups = -(-(rows * cols) // group)
        codes, absmax = np.asarray(d["codes"]), np.asarray(d["absmax"])
        dtype, n_codes = (np.uint8, n_groups * group // 2) if scheme == "nf4" else (np.int8, n_groups * group)
        if codes.dtype != dtype or codes.ndim != 1:
            raise QuantizationError(f"{where}.codes: expected a 1-D {np.dtype(dtype).name} array, "
                                    f"got {codes.dtype.name} of shape {codes.shape}")
        if codes.size != n_codes:
            raise QuantizationError(f"{where}.codes: {codes.size} {codes.dtype.name} codes, expected {n_codes}")
        if scheme == "int8" and codes.size and int(codes.min()) < -127:
            raise QuantizationError(f"{where}.codes: int8 codes must be in [-127, 127]")
        if absmax.dtype != np.float32 or absmax.shape != (n_groups,):
            raise QuantizationError(f"{where}.absmax: expected {n_groups} float32 scales, "
                                    f"got {absmax.dtype.name} of shape {absmax.shape}")
        if not np.all(np.isfinite(absmax)) or np.any(absmax < 0):
            raise QuantizationError(f"{where}.absmax: scales must be finite and >= 0")
        return cls(scheme, (rows, cols), group, np.ascontiguousarray(codes).copy(),
                   np.ascontiguousarray(absmax).copy())


def quantize_weight(W: Any, scheme: str, group_size: int = DEFAULT_GROUP_SIZE) -> QuantizedWeight:
    """Quantise a finite 2-D matrix group-wise by ``scheme`` (``'nf4'``/``'4bit'``, ``'int8'``/``'8bit'``).

    Example:
        >>> import numpy as np
        >>> q = quantize_weight(np.array([[0.5, -1.0], [0.0, 0.25]]), "nf4", group_size=2)
        >>> np.round(q.dequantize().astype(float), 4).tolist()
        [[0.4407, -1.0], [0.0, 0.25]]
    """
    name = canonical_scheme(scheme)
    if name is None:
        raise QuantizationError("quantize_weight needs a scheme ('int8' or 'nf4'), got None")
    g = _check_group_size(group_size)
    W = np.asarray(W)
    if W.ndim != 2 or W.dtype.kind not in "fiu":
        raise QuantizationError(f"can only quantise a 2-D numeric matrix, got shape {W.shape} dtype {W.dtype}")
    if not np.all(np.isfinite(W)):
        raise QuantizationError("weight matrix contains NaN or inf")
    flat = W.astype(np.float32).reshape(-1)
    n_groups = -(-flat.size // g)
    groups = np.zeros(n_groups * g, np.float32)
    groups[: flat.size] = flat
    groups = groups.reshape(n_groups, g)
    absmax = np.abs(groups).max(axis=1).astype(np.float32)
    norm = groups / np.where(absmax > 0, absmax, 1.0)[:, None]
    if name == "nf4":
        idx = np.searchsorted(_NF4_MIDPOINTS, norm.reshape(-1)).astype(np.uint8)
        codes = (idx[0::2] | (idx[1::2] << 4)).astype(np.uint8)
    else:
        codes = np.clip(np.rint(norm.reshape(-1) * 127), -127, 127).astype(np.int8)
    return QuantizedWeight(name, (int(W.shape[0]), int(W.shape[1])), g, codes, absmax)


class StoredWeight:
    """A frozen weight matrix kept as float or, with a ``scheme``, only as a :class:`QuantizedWeight`.

    :meth:`array` is the float array itself (writable), or a fresh read-only dequantised copy
    when quantised; :meth:`assign` replaces the matrix (re-quantising it), :meth:`requantize`
    switches the scheme; both bump ``version`` (for caches). ``where`` names the owner in errors.

    Example:
        >>> import numpy as np
        >>> w = StoredWeight(np.eye(64), np.float32, "int8")
        >>> w.scheme, w.nbytes, w.array().flags.writeable
        ('int8', 4352, False)
        >>> w.requantize(None); w.scheme, w.nbytes
        (None, 16384)
    """

    version = EditVersion()  # the stored base changed; bumps the edit epoch

    def __init__(self, W: Any, dtype: Any, scheme: str | None = None, group_size: int = DEFAULT_GROUP_SIZE,
                 *, where: str = "weight") -> None:
        W = np.asarray(W)
        if W.ndim != 2:
            raise QuantizationError(f"{where}: W must be 2-D, got shape {W.shape}")
        self.where = where
        self.dtype = np.dtype(dtype)
        self.group_size = _check_group_size(group_size)
        self.shape: tuple[int, int] = (int(W.shape[0]), int(W.shape[1]))
        self._float: np.ndarray | None = np.ascontiguousarray(W, dtype=self.dtype).copy()
        self.quantized: QuantizedWeight | None = None
        self.version = 0
        self.requantize(scheme, group_size)

    @property
    def scheme(self) -> str | None:
        """'nf4', 'int8' or None (stored as float)."""
        return None if self.quantized is None else self.quantized.scheme

    @property
    def nbytes(self) -> int:
        """Bytes stored (codes + scales when quantised)."""
        return self.quantized.nbytes if self.quantized is not None else int(self.array().nbytes)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x @ W^T`` for x (d_in,) or (n, d_in): on the codes when quantised (float32 kernels;
        a float64 layer dequantises a transient copy), else on the float array.

        Example:
            >>> import numpy as np
            >>> w = StoredWeight(np.eye(64), np.float32, "nf4")
            >>> bool(np.array_equal(w.apply(np.ones(64, np.float32)), np.ones(64)))
            True
        """
        if self.quantized is None:
            assert self._float is not None
            return x @ self._float.T
        if self.dtype != np.float32:
            return x @ self.array().T
        return self.quantized.matmul(x)

    def apply_t(self, g: np.ndarray) -> np.ndarray:
        """``g @ W`` for g (d_out,) or (n, d_out) (the input gradient of :meth:`apply`)."""
        if self.quantized is None:
            assert self._float is not None
            return g @ self._float
        if self.dtype != np.float32:
            return g @ self.array()
        return self.quantized.matmul_t(g)

    def array(self) -> np.ndarray:
        """The matrix: the stored float array, or a fresh read-only dequantised one."""
        if self.quantized is None:
            assert self._float is not None
            return self._float
        W = self.quantized.dequantize(self.dtype)
        W.flags.writeable = False
        return W

    def assign(self, W: Any) -> None:
        """Replace the matrix (same shape), re-quantising it under the current scheme."""
        W = np.asarray(W)
        if W.shape != self.shape:
            raise QuantizationError(f"{self.where}: W has shape {W.shape}, expected {self.shape}")
        if self.quantized is None:
            self._float = np.ascontiguousarray(W, dtype=self.dtype).copy()
        else:
            self.quantized = self._quantize(W, self.quantized.scheme, self.group_size)
        self.version += 1

    def requantize(self, scheme: str | None, group_size: int = DEFAULT_GROUP_SIZE) -> None:
        """Store under ``scheme`` (None: float); the values are those of the current matrix."""
        name = canonical_scheme(scheme)
        self.group_size = _check_group_size(group_size)
        if name is None and self.quantized is None:
            return
        W = self.array()
        self.quantized = None if name is None else self._quantize(W, name, group_size)
        self._float = np.ascontiguousarray(W, dtype=self.dtype).copy() if name is None else None
        self.version += 1

    def load_quantized(self, q: QuantizedWeight) -> None:
        """Store exactly ``q`` (its codes and scales, e.g. from a checkpoint: no re-quantisation,
        so the layer computes bit for bit what the saved one did); the scheme and group size
        become ``q``'s. Same shape required.

        Example:
            >>> import numpy as np
            >>> q = quantize_weight(np.eye(64), "nf4")
            >>> w = StoredWeight(np.zeros((64, 64)), np.float32); w.load_quantized(q)
            >>> w.scheme, w.quantized is q, bool(np.array_equal(w.array(), q.dequantize()))
            ('nf4', True, True)
        """
        if not isinstance(q, QuantizedWeight):
            raise QuantizationError(f"{self.where}: expected a QuantizedWeight, got {type(q).__name__}")
        if q.shape != self.shape:
            raise QuantizationError(f"{self.where}: quantized weight has shape {q.shape}, expected {self.shape}")
        self.quantized, self._float, self.group_size = q, None, q.group_size
        self.version += 1

    def _quantize(self, W: np.ndarray, scheme: str, group_size: int) -> QuantizedWeight:
        try:
            return quantize_weight(W, scheme, group_size)
        except QuantizationError as exc:
            raise QuantizationError(f"{self.where}: {exc}") from exc
