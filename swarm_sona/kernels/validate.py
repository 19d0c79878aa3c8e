"""Argument checking and one-time conversion shared by both kernel backends.

Rules (the same whichever backend is active):

- read-only array inputs are converted once to C-contiguous float32 (int8 for a quantised
  matrix, bool for a mask) when they are not already; non-numeric input is refused;
- arrays updated in place (``instant_step``'s parameters, ``fisher_update``'s ``F``) must
  already be writable, C-contiguous float32 numpy arrays: a converted copy would silently
  drop the update, so they are refused instead;
- shapes are checked against each other before any kernel runs.

Every refusal is a :class:`KernelInputError` (a ``ValueError`` and a ``TypeError``) whose
message names the kernel and the argument.

Example:
    >>> import numpy as np
    >>> from swarm_sona.kernels.validate import f32, KernelInputError
    >>> f32("demo", "x", [1, 2, 3], (1,)).dtype
    dtype('float32')
    >>> try:
    ...     f32("demo", "x", np.zeros((2, 2)), (1,))
    ... except KernelInputError as exc:
    ...     print(exc)
    demo: argument 'x' must be 1-D, got shape (2, 2)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "KernelInputError",
    "f32",
    "f32_inplace",
    "real",
    "integer",
    "lora_args",
    "lora_grad_args",
    "instant_step_args",
    "instant_steps_args",
    "bandit_args",
    "fisher_args",
    "ewc_args",
    "search_args",
    "topk_int8_args",
    "topk_int8_rerank_args",
    "topk_int4_rerank_args",
    "quantize_int4_args",
    "kmeans_args",
    "ivf_probe_args",
    "ivf_topk_args",
    "hash_args",
    "qweight_args",
    "qlinear_args",
    "row_range",
    "QUANT_SCHEMES",
]

F32 = np.dtype(np.float32)
I8 = np.dtype(np.int8)
U8 = np.dtype(np.uint8)


class KernelInputError(ValueError, TypeError):
    """A kernel argument has the wrong type, dtype, shape or layout; the message names it."""


def _ndim_text(ndim: Sequence[int]) -> str:
    return " or ".join(f"{n}-D" for n in ndim)


def _array(fn: str, name: str, x: Any) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise KernelInputError(f"{fn}: argument {name!r} is not array-like ({exc})") from exc
    if a.dtype.kind not in "biuf":
        raise KernelInputError(f"{fn}: argument {name!r} must hold real numbers, got dtype {a.dtype}")
    return a


def real_array(fn: str, name: str, x: Any) -> np.ndarray:
    """An input as an array of real numbers, in its own dtype (KernelInputError otherwise)."""
    return _array(fn, name, x)


def f32(fn: str, name: str, x: Any, ndim: Sequence[int] | None = None) -> np.ndarray:
    """A read-only input as C-contiguous float32 (no copy when it already is one)."""
    if isinstance(x, np.ndarray) and x.dtype == F32 and x.flags.c_contiguous:
        a = x
    else:
        a = np.ascontiguousarray(_array(fn, name, x), dtype=F32)
    if ndim is not None and a.ndim not in ndim:
        raise KernelInputError(f"{fn}: argument {name!r} must be {_ndim_text(ndim)}, got shape {a.shape}")
    return a


def f32_inplace(fn: str, name: str, x: Any, ndim: Sequence[int] | None = None) -> np.ndarray:
    """An array the kernel updates in place: must already be writable C-contiguous float32."""
    if not isinstance(x, np.ndarray):
        raise KernelInputError(f"{fn}: argument {name!r} is updated in place and must be a numpy float32 "
                               f"array, got {type(x).__name__}")
    if x.dtype != F32:
        raise KernelInputError(f"{fn}: argument {name!r} is updated in place and must be float32, got "
                               f"{x.dtype} (a converted copy would lose the update)")
    if not x.flags.c_contiguous:
        raise KernelInputError(f"{fn}: argument {name!r} is updated in place and must be C-contiguous "
                               f"(keep the parameter in a contiguous array, e.g. np.ascontiguousarray once)")
    if not x.flags.writeable:
        raise KernelInputError(f"{fn}: argument {name!r} is read-only but is updated in place")
    if ndim is not None and x.ndim not in ndim:
        raise KernelInputError(f"{fn}: argument {name!r} must be {_ndim_text(ndim)}, got shape {x.shape}")
    return x


def real(fn: str, name: str, x: Any) -> float:
    """A real scalar as a Python float."""
    if isinstance(x, (str, bytes)):
        raise KernelInputError(f"{fn}: argument {name!r} must be a real number, got {type(x).__name__}")
    try:
        return float(x)
    except (TypeError, ValueError) as exc:
        raise KernelInputError(f"{fn}: argument {name!r} must be a real number, got {x!r}") from exc


def integer(fn: str, name: str, x: Any) -> int:
    """An integer scalar (anything with ``__index__``) as a Python int."""
    try:
        return operator.index(x)
    except TypeError as exc:
        raise KernelInputError(f"{fn}: argument {name!r} must be an integer, got {x!r}") from exc


def _shape_error(fn: str, name: str, want: str, got: tuple[int, ...]) -> KernelInputError:
    return KernelInputError(f"{fn}: argument {name!r} must have shape {want}, got {got}")


# ---- per-kernel argument sets -------------------------------------------------------------

def lora_args(fn: str, x: Any, A: Any, B: Any, scale: Any, *,
              square: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(x, A, B, scale) of ``lora_delta`` (``square=False``) or ``micro_apply`` (``square=True``)."""
    xname = "h" if square else "x"
    x = f32(fn, xname, x, (1, 2))
    A = f32(fn, "A", A, (2,))
    B = f32(fn, "B", B, (2,))
    d_in, r = x.shape[-1], A.shape[0]
    if A.shape[1] != d_in:
        raise _shape_error(fn, "A", f"(r, {d_in}) to match {xname}", A.shape)
    if B.shape[1] != r or (square and B.shape[0] != d_in):
        raise _shape_error(fn, "B", f"({d_in if square else 'd_out'}, {r})", B.shape)
    return x, A, B, real(fn, "scale", scale)


def lora_grad_args(x: Any, g: Any, A: Any, B: Any,
                   scale: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(x, g, A, B, scale) of ``lora_grad`` with x and g made 2-D (rows)."""
    fn = "lora_grad"
    x = f32(fn, "x", x, (1, 2))
    g = f32(fn, "g", g, (1, 2))
    A = f32(fn, "A", A, (2,))
    B = f32(fn, "B", B, (2,))
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    g2 = g.reshape(1, -1) if g.ndim == 1 else g
    r, d_in, d_out = A.shape[0], x2.shape[1], g2.shape[1]
    if g2.shape[0] != x2.shape[0]:
        raise _shape_error(fn, "g", f"({x2.shape[0]}, d_out) (one row per row of x)", g.shape)
    if A.shape[1] != d_in:
        raise _shape_error(fn, "A", f"(r, {d_in})", A.shape)
    if B.shape != (d_out, r):
        raise _shape_error(fn, "B", f"({d_out}, {r})", B.shape)
    return x2, g2, A, B, real(fn, "scale", scale)


def instant_step_args(h: Any, A: Any, B: Any, scale: Any, wv: Any, bv: Any, Wr: Any, br: Any, arm: Any,
                      reward: Any, success: Any, lr: Any, train_a: Any, clip: Any, *,
                      fn: str = "instant_step") -> tuple[Any, ...]:
    """All arguments of ``instant_step``, checked; in-place ones must already be right
    (``fn``: the kernel named in errors)."""
    h = f32(fn, "h", h, (1,))
    A = f32_inplace(fn, "A", A, (2,))
    B = f32_inplace(fn, "B", B, (2,))
    wv = f32_inplace(fn, "wv", wv, (1,))
    bv = f32_inplace(fn, "bv", bv, (1,))
    Wr = f32_inplace(fn, "Wr", Wr, (2,))
    br = f32_inplace(fn, "br", br, (1,))
    d, r, M = h.shape[0], A.shape[0], Wr.shape[0]
    if A.shape[1] != d:
        raise _shape_error(fn, "A", f"(r, {d})", A.shape)
    if B.shape != (d, r):
        raise _shape_error(fn, "B", f"({d}, {r})", B.shape)
    if wv.shape != (d,):
        raise _shape_error(fn, "wv", f"({d},)", wv.shape)
    if bv.shape != (1,):
        raise _shape_error(fn, "bv", "(1,)", bv.shape)
    if Wr.shape[1] != d:
        raise _shape_error(fn, "Wr", f"(M, {d})", Wr.shape)
    if br.shape != (M,):
        raise _shape_error(fn, "br", f"({M},)", br.shape)
    arm = integer(fn, "arm", arm)
    arm = max(arm, -1)  # every negative arm means "no router label"
    if arm >= M:
        raise KernelInputError(f"{fn}: argument 'arm' is {arm} but the router head has {M} rows (use -1 for none)")
    return (h, A, B, real(fn, "scale", scale), wv, bv, Wr, br, arm, real(fn, "reward", reward),
            real(fn, "success", success), real(fn, "lr", lr), bool(train_a), real(fn, "clip", clip))


def forward_one_args(e: Any, WovT: Any, bov: Any, WinT: Any, bin_: Any, WoutT: Any, bout: Any, A: Any, B: Any,
                     scale: Any, wv: Any, bv: Any, Wr: Any, br: Any, eps: Any) -> tuple[Any, ...]:
    """All arguments of ``forward_one``, checked and made C-contiguous float32."""
    fn = "forward_one"
    e = f32(fn, "e", e, (1,))
    d = e.shape[0]
    if d == 0:
        raise _shape_error(fn, "e", "(d,) with d >= 1", e.shape)
    WovT = f32(fn, "WovT", WovT, (2,))
    WinT = f32(fn, "WinT", WinT, (2,))
    H = WinT.shape[1]
    A = f32(fn, "A", A, (2,))
    Wr = f32(fn, "Wr", Wr, (2,))
    r, M = A.shape[0], Wr.shape[0]
    want = {"WovT": (WovT, (d, d)), "bov": (bov, (d,)), "WinT": (WinT, (d, H)), "bin": (bin_, (H,)),
            "WoutT": (WoutT, (H, d)), "bout": (bout, (d,)), "A": (A, (r, d)), "B": (B, (d, r)), "wv": (wv, (d,)),
            "bv": (bv, (1,)), "Wr": (Wr, (M, d)), "br": (br, (M,))}
    out: dict[str, np.ndarray] = {}
    for name, (x, shape) in want.items():
        a = f32(fn, name, x, (len(shape),))
        if a.shape != shape:
            raise _shape_error(fn, name, str(shape), a.shape)
        out[name] = a
    eps = real(fn, "eps", eps)
    if not eps >= 0:
        raise KernelInputError(f"{fn}: argument 'eps' must be >= 0, got {eps!r}")
    return (e, out["WovT"], out["bov"], out["WinT"], out["bin"], out["WoutT"], out["bout"], out["A"], out["B"],
            real(fn, "scale", scale), out["wv"], out["bv"], out["Wr"], out["br"], eps)


def _f64(fn: str, name: str, x: Any, shape: tuple[int, ...]) -> np.ndarray:
    a = np.ascontiguousarray(_array(fn, name, x), dtype=np.float64)
    if a.shape != shape:
        raise _shape_error(fn, name, str(shape), a.shape)
    return a


def _indices(fn: str, name: str, x: Any, n: int, hi: int, *, negative_ok: bool) -> np.ndarray:
    a = _array(fn, name, x)
    if a.dtype.kind not in "biu":
        raise KernelInputError(f"{fn}: argument {name!r} must hold integers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.shape != (n,):
        raise _shape_error(fn, name, f"({n},)", a.shape)
    if a.size and (int(a.max()) >= hi or (not negative_ok and int(a.min()) < 0)):
        bad = int(a.max()) if int(a.max()) >= hi else int(a.min())
        raise KernelInputError(f"{fn}: argument {name!r} holds {bad}, outside [{0 if not negative_ok else -1}, {hi})")
    return a


def _f64_inplace(fn: str, name: str, x: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise KernelInputError(f"{fn}: argument {name!r} is updated in place and must be a float64 numpy array, "
                               f"got {got}")
    if not (x.flags.c_contiguous and x.flags.writeable):
        raise KernelInputError(f"{fn}: argument {name!r} is updated in place and must be writable and C-contiguous")
    if x.ndim != 2 or (shape is not None and x.shape != shape):
        raise _shape_error(fn, name, "(M, D)" if shape is None else str(shape), x.shape)
    return x


def instant_steps_args(H: Any, A: Any, B: Any, scale: Any, wv: Any, bv: Any, Wr: Any, br: Any, arms: Any,
                       rewards: Any, successes: Any, lr: Any, train_a: Any, clip: Any) -> tuple[Any, ...]:
    """All arguments of ``instant_steps``, checked once for the whole chunk: H (n, d) rows,
    arms (n,) integers (negative: no router label), rewards / successes (n,) real; the
    parameters as for ``instant_step`` (in place). Returns them with arms as int64 and
    ``rs`` = (n, 2) float64 [reward, success] in place of rewards and successes."""
    fn = "instant_steps"
    H = f32(fn, "H", H, (2,))
    n, d = H.shape
    h0 = H[0] if n else np.zeros(d, F32)
    _, A, B, scale, wv, bv, Wr, br, _, _, _, lr, train_a, clip = instant_step_args(
        h0, A, B, scale, wv, bv, Wr, br, -1, 0.0, 0.0, lr, train_a, clip, fn=fn)
    arms = _indices(fn, "arms", arms, n, Wr.shape[0], negative_ok=True)
    arms = np.maximum(arms, -1)
    rs = np.empty((n, 2))
    rs[:, 0] = _f64(fn, "rewards", rewards, (n,))
    rs[:, 1] = _f64(fn, "successes", successes, (n,))
    return H, A, B, scale, wv, bv, Wr, br, arms, rs, lr, train_a, clip


def bandit_args(W: Any, P: Any, V: Any, idx: Any, X: Any, y: Any, lr: Any, decay: Any = 1.0, AP: Any = None,
                AE: Any = None) -> tuple[Any, ...]:
    """(W, P, V, idx, X, y, lr, decay, AP, AE) of ``bandit_update``: W, P, V (M, D) writable
    float64 (in place); idx (n,) integers in [0, M); X (n, D) and y (n,) as float64; decay in
    (0, 1]; below 1 the anchor AP, AE (M, D) as float64 (else None)."""
    fn = "bandit_update"
    W = _f64_inplace(fn, "W", W, None)
    P = _f64_inplace(fn, "P", P, W.shape)
    V = _f64_inplace(fn, "V", V, W.shape)
    M, D = W.shape
    Xa = np.ascontiguousarray(_array(fn, "X", X), dtype=np.float64)
    if Xa.ndim != 2 or Xa.shape[1] != D:
        raise _shape_error(fn, "X", f"(n, {D})", Xa.shape)
    n = Xa.shape[0]
    d = real(fn, "decay", decay)
    if not 0.0 < d <= 1.0:
        raise KernelInputError(f"{fn}: decay must be in (0, 1], got {d!r}")
    ap = ae = None
    if d < 1.0:
        if AP is None or AE is None:
            raise KernelInputError(f"{fn}: decay < 1 needs the anchor arrays AP and AE")
        ap, ae = _f64(fn, "AP", AP, W.shape), _f64(fn, "AE", AE, W.shape)
    return (W, P, V, _indices(fn, "idx", idx, n, M, negative_ok=False), Xa, _f64(fn, "y", y, (n,)), real(fn, "lr", lr),
            d, ap, ae)


def fisher_args(F: Any, g2_mean: Any, a: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """(F, g2_mean, a) of ``fisher_update``; g2_mean is broadcast to F's shape."""
    fn = "fisher_update"
    F = f32_inplace(fn, "F", F)
    g = f32(fn, "g2_mean", g2_mean)
    if g.shape != F.shape:
        try:
            g = np.ascontiguousarray(np.broadcast_to(g, F.shape))
        except ValueError as exc:
            raise _shape_error(fn, "g2_mean", f"{F.shape} (or broadcastable to it)", g.shape) from exc
    return F, g, real(fn, "a", a)


def ewc_args(theta: Any, anchor: Any, F: Any, lam: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(theta, anchor, F, lam) of ``ewc_penalty_grad``, broadcast to one common shape."""
    fn = "ewc_penalty_grad"
    arrs = [f32(fn, n, v) for n, v in (("theta", theta), ("anchor", anchor), ("F", F))]
    shapes = [a.shape for a in arrs]
    if not (shapes[0] == shapes[1] == shapes[2]):
        try:
            shape = np.broadcast_shapes(*shapes)
        except ValueError as exc:
            raise KernelInputError(f"{fn}: theta, anchor and F have incompatible shapes {shapes}") from exc
        arrs = [np.ascontiguousarray(np.broadcast_to(a, shape)) for a in arrs]
    return arrs[0], arrs[1], arrs[2], real(fn, "lam", lam)


def _row_filter(fn: str, n: int, mask: Any, values: Any,
                min_value: Any) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
    if mask is not None:
        m = mask if isinstance(mask, np.ndarray) and mask.dtype == np.bool_ else _array(fn, "mask", mask) != 0
        m = np.ascontiguousarray(m)
        if m.shape != (n,):
            raise _shape_error(fn, "mask", f"({n},)", m.shape)
        mask = m
    if min_value is not None:
        min_value = real(fn, "min_value", min_value)
    if values is not None:
        values = f32(fn, "values", values, (1,))
        if values.shape != (n,):
            raise _shape_error(fn, "values", f"({n},)", values.shape)
    return mask, values, min_value


def search_args(matrix: Any, query: Any, k: Any, mask: Any, values: Any,
                min_value: Any) -> tuple[Any, ...]:
    """(matrix, query, k, mask, values, min_value) of ``topk``."""
    fn = "topk"
    matrix = f32(fn, "matrix", matrix, (2,))
    query = f32(fn, "query", query, (1,))
    if query.shape[0] != matrix.shape[1]:
        raise _shape_error(fn, "query", f"({matrix.shape[1]},) to match the matrix", query.shape)
    return (matrix, query, integer(fn, "k", k), *_row_filter(fn, matrix.shape[0], mask, values, min_value))


def topk_int8_args(q: Any, scales: Any, query: Any, k: Any, mask: Any, values: Any,
                   min_value: Any) -> tuple[Any, ...]:
    """(q, scales, query, k, mask, values, min_value) of ``topk_int8``."""
    fn = "topk_int8"
    q = _codes(fn, q, I8, "an int8 array from quantize_int8")
    n, d = q.shape
    scales, query = _scales_query(fn, n, d, scales, query)
    return (q, scales, query, integer(fn, "k", k), *_row_filter(fn, n, mask, values, min_value))


def _scales_query(fn: str, n: int, d: int, scales: Any, query: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-row scales (n,) and a query (d,) of a quantised search, as float32."""
    scales = f32(fn, "scales", scales, (1,))
    if scales.shape != (n,):
        raise _shape_error(fn, "scales", f"({n},)", scales.shape)
    query = f32(fn, "query", query, (1,))
    if query.shape != (d,):
        raise _shape_error(fn, "query", f"({d},)", query.shape)
    return scales, query


INT8_MAX_DIM = 65536  # int8 x int8 sums stay within int32 up to here


def topk_int8_rerank_args(q: Any, scales: Any, matrix: Any, query: Any, k: Any, candidates: Any, mask: Any,
                          values: Any, min_value: Any, ranges: Any = None,
                          rows: Any = None) -> tuple[Any, ...]:
    """(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows)
    of ``topk_int8_rerank``.

    ``k`` is clamped to [0, n] and ``candidates`` to [k, n] (the same search); ``values`` is
    float64 here (compared in float64).
    """
    return _rerank_args("topk_int8_rerank", 8, q, scales, matrix, query, k, candidates, mask, values, min_value,
                        ranges, rows)


def topk_int4_rerank_args(q: Any, scales: Any, matrix: Any, query: Any, k: Any, candidates: Any, mask: Any,
                          values: Any, min_value: Any, ranges: Any = None,
                          rows: Any = None) -> tuple[Any, ...]:
    """The arguments of ``topk_int4_rerank`` (as :func:`topk_int8_rerank_args`; ``q`` packed uint8)."""
    return _rerank_args("topk_int4_rerank", 4, q, scales, matrix, query, k, candidates, mask, values, min_value,
                        ranges, rows)


def quantize_int4_args(matrix: Any) -> np.ndarray:
    """The matrix of ``quantize_int4``: 2-D float32, finite."""
    matrix = f32("quantize_int4", "matrix", matrix, (2,))
    if not np.all(np.isfinite(matrix)):
        raise KernelInputError("quantize_int4: argument 'matrix' contains NaN or inf")
    return matrix


def _codes(fn: str, q: Any, dtype: np.dtype, source: str) -> np.ndarray:
    """A quantised matrix: exactly ``dtype`` (a conversion would change the codes' meaning), 2-D."""
    if not isinstance(q, np.ndarray) or q.dtype != dtype:
        got = q.dtype if isinstance(q, np.ndarray) else type(q).__name__
        raise KernelInputError(f"{fn}: argument 'q' must be {source}, got {got}")
    q = np.ascontiguousarray(q)
    if q.ndim != 2:
        raise KernelInputError(f"{fn}: argument 'q' must be 2-D, got shape {q.shape}")
    return q


def _rerank_args(fn: str, bits: int, q: Any, scales: Any, matrix: Any, query: Any, k: Any, candidates: Any,
                 mask: Any, values: Any, min_value: Any, ranges: Any,
                 rows: Any = None) -> tuple[Any, ...]:
    q = _codes(fn, q, *((I8, "an int8 array from quantize_int8") if bits == 8 else
                        (U8, "a uint8 array from quantize_int4")))
    matrix = f32(fn, "matrix", matrix, (2,))
    n, d = matrix.shape
    if d > INT8_MAX_DIM:
        raise KernelInputError(f"{fn}: argument 'matrix' has {d} columns; at most {INT8_MAX_DIM} are supported")
    want = (n, d) if bits == 8 else (n, (d + 1) // 2)
    if q.shape != want:
        raise _shape_error(fn, "q", f"{want} for a matrix of shape {matrix.shape}", q.shape)
    scales, query = _scales_query(fn, n, d, scales, query)
    if not np.all(np.isfinite(query)):
        raise KernelInputError(f"{fn}: argument 'query' contains NaN or inf")
    k = max(0, min(integer(fn, "k", k), n))
    candidates = max(k, min(integer(fn, "candidates", candidates), n))
    mask, _, min_value = _row_filter(fn, n, mask, None, min_value)
    if values is not None:
        v = values if isinstance(values, np.ndarray) and values.dtype == np.float64 else _array(fn, "values", values)
        values = np.ascontiguousarray(v, dtype=np.float64)
        if values.shape != (n,):
            raise _shape_error(fn, "values", f"({n},)", values.shape)
    if ranges is not None:
        r = _array(fn, "ranges", ranges)
        if r.dtype.kind not in "iu" and r.size:
            raise KernelInputError(f"{fn}: argument 'ranges' must hold integers, got dtype {r.dtype}")
        if r.size and (r.ndim != 2 or r.shape[1] != 2):
            raise _shape_error(fn, "ranges", "(r, 2) of [lo, hi) pairs", r.shape)
        ranges = np.ascontiguousarray(r, dtype=np.int64) if r.size else np.zeros((0, 2), np.int64)
        flat = ranges.ravel()
        if flat.size and (flat[0] < 0 or flat[-1] > n or np.any(np.diff(flat) < 0)):
            raise KernelInputError(f"{fn}: argument 'ranges' must be increasing, disjoint [lo, hi) row ranges "
                                   f"within [0, {n}]")
    if rows is not None:
        if ranges is not None:
            raise KernelInputError(f"{fn}: arguments 'rows' and 'ranges' exclude each other")
        r = _array(fn, "rows", rows)
        if r.dtype.kind not in "iu" and r.size:
            raise KernelInputError(f"{fn}: argument 'rows' must hold integers, got dtype {r.dtype}")
        if r.ndim != 1:
            raise _shape_error(fn, "rows", "(m,)", r.shape)
        if r.size and (r.min() < 0 or r.max() >= n):
            raise KernelInputError(f"{fn}: argument 'rows' must hold row numbers within [0, {n})")
        rows = np.ascontiguousarray(r, dtype=np.int64)
        if np.unique(rows).size != rows.size:
            raise KernelInputError(f"{fn}: argument 'rows' must not repeat a row")
    return q, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows


def kmeans_args(X: Any, C: Any) -> tuple[np.ndarray, np.ndarray]:
    """(X, C) of ``kmeans_assign``: X (n, d), C (k, d) with k >= 1 when n > 0."""
    fn = "kmeans_assign"
    X = f32(fn, "X", X, (2,))
    C = f32(fn, "C", C, (2,))
    if C.shape[1] != X.shape[1]:
        raise _shape_error(fn, "C", f"(k, {X.shape[1]}) to match X", C.shape)
    if X.shape[0] > 0 and C.shape[0] == 0:
        raise KernelInputError(f"{fn}: argument 'C' has no centroid")
    return X, C


def ivf_probe_args(centroids: Any, norms: Any, sizes: Any, query: Any, need: Any,
                   fn: str = "ivf_probe") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """(centroids, norms, sizes, query, need) of ``ivf_probe``: centroids (L, d), norms (L,)
    float32, sizes (L,) integers >= 0, a finite query (d,) and a finite ``need``."""
    C = f32(fn, "centroids", centroids, (2,))
    L, d = C.shape
    norms = f32(fn, "norms", norms, (1,))
    if norms.shape != (L,):
        raise _shape_error(fn, "norms", f"({L},)", norms.shape)
    sizes = _indices(fn, "sizes", sizes, L, np.iinfo(np.int64).max, negative_ok=False)
    query = f32(fn, "query", query, (1,))
    if query.shape != (d,):
        raise _shape_error(fn, "query", f"({d},)", query.shape)
    if not np.isfinite(query).all():
        raise KernelInputError(f"{fn}: argument 'query' holds NaN or infinity")
    need = real(fn, "need", need)
    if not math.isfinite(need):
        raise KernelInputError(f"{fn}: argument 'need' must be finite, got {need!r}")
    return C, norms, sizes, query, need


def ivf_topk_args(q: Any, scales: Any, matrix: Any, query: Any, k: Any, candidates: Any, exact_rows: Any,
                  centroids: Any, norms: Any, sizes: Any, offsets: Any, ordered: Any, need: Any, mask: Any,
                  values: Any, min_value: Any) -> tuple[Any, ...]:
    """The arguments of ``ivf_topk``: those of ``topk_int8_rerank`` (no ranges / rows), those of
    ``ivf_probe`` (centroids of the matrix's width), ``offsets`` (L + 1,) non-decreasing integers
    >= 0, ``ordered`` in [0, n] and ``exact_rows`` >= 0."""
    fn = "ivf_topk"
    q, scales, matrix, query, k, candidates, mask, values, min_value, _, _ = _rerank_args(
        fn, 8, q, scales, matrix, query, k, candidates, mask, values, min_value, None)
    n, d = matrix.shape
    centroids = f32(fn, "centroids", centroids, (2,))
    if centroids.shape[1] != d:
        raise _shape_error(fn, "centroids", f"(L, {d}) to match the matrix", centroids.shape)
    centroids, norms, sizes, query, need = ivf_probe_args(centroids, norms, sizes, query, need, fn)
    L = centroids.shape[0]
    offsets = _indices(fn, "offsets", offsets, L + 1, np.iinfo(np.int64).max, negative_ok=False)
    if np.any(np.diff(offsets) < 0):
        raise KernelInputError(f"{fn}: argument 'offsets' must be non-decreasing (list j holds rows "
                               f"offsets[j]:offsets[j + 1])")
    ordered = integer(fn, "ordered", ordered)
    if not 0 <= ordered <= n:
        raise KernelInputError(f"{fn}: argument 'ordered' must be within [0, {n}], got {ordered}")
    exact_rows = integer(fn, "exact_rows", exact_rows)
    if exact_rows < 0:
        raise KernelInputError(f"{fn}: argument 'exact_rows' must be >= 0, got {exact_rows}")
    return (q, scales, matrix, query, k, candidates, exact_rows, centroids, norms, sizes, offsets, ordered, need,
            mask, values, min_value)


def hash_args(texts: Any, dim: Any, w_word: Any, w_bigram: Any,
              w_char: Any) -> tuple[list[str], int, float, float, float]:
    """(texts, dim, weights...) of ``hash_embed``: a list of str and a positive dim."""
    fn = "hash_embed"
    if isinstance(texts, (str, bytes)):
        raise KernelInputError(f"{fn}: argument 'texts' must be a list of str, not a single {type(texts).__name__}")
    texts = texts if isinstance(texts, list) else list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise KernelInputError(f"{fn}: argument 'texts' item {i} is {type(t).__name__}, expected str")
    dim = integer(fn, "dim", dim)
    if dim < 1:
        raise KernelInputError(f"{fn}: argument 'dim' must be >= 1, got {dim}")
    return texts, dim, real(fn, "w_word", w_word), real(fn, "w_bigram", w_bigram), real(fn, "w_char", w_char)


# ---- quantised linear layers ------------------------------------------------------------------

#: Schemes of the quantised linear kernels and the code dtype each takes.
QUANT_SCHEMES = {"nf4": U8, "int8": I8}


def qweight_args(fn: str, codes: Any, absmax: Any, shape: Any, group_size: Any, scheme: Any
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int], int, str]:
    """(codes, absmax, shape, group_size, scheme) of a group-wise quantised W (see
    :func:`swarm_sona.kernels.reference.qlinear`): codes of exactly the scheme's dtype, long
    enough for ``shape``; absmax float32 with one scale per group."""
    if scheme not in QUANT_SCHEMES:
        raise KernelInputError(f"{fn}: argument 'scheme' must be one of {sorted(QUANT_SCHEMES)}, got {scheme!r}")
    try:
        d_out, d_in = (integer(fn, "shape", s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise KernelInputError(f"{fn}: argument 'shape' must be (d_out, d_in), got {shape!r}") from exc
    if d_out < 0 or d_in < 0:
        raise KernelInputError(f"{fn}: argument 'shape' must be non-negative, got {(d_out, d_in)}")
    g = integer(fn, "group_size", group_size)
    if not 2 <= g <= 65536 or g % 2:
        raise KernelInputError(f"{fn}: argument 'group_size' must be even and in [2, 65536], got {g}")
    dtype = QUANT_SCHEMES[scheme]
    if not isinstance(codes, np.ndarray) or codes.dtype != dtype:
        got = codes.dtype if isinstance(codes, np.ndarray) else type(codes).__name__
        raise KernelInputError(f"{fn}: argument 'codes' must be a {dtype} array for scheme {scheme!r}, got {got}")
    codes = np.ascontiguousarray(codes).reshape(-1)
    absmax = f32(fn, "absmax", absmax, (1,))
    size = d_out * d_in
    need = (size + 1) // 2 if scheme == "nf4" else size
    if codes.size < need:
        raise KernelInputError(f"{fn}: argument 'codes' has {codes.size} entries; a {scheme} matrix of shape "
                               f"{(d_out, d_in)} needs {need}")
    if absmax.size < -(-size // g):
        raise KernelInputError(f"{fn}: argument 'absmax' has {absmax.size} scales; {(d_out, d_in)} in groups of "
                               f"{g} needs {-(-size // g)}")
    return codes, absmax, (d_out, d_in), g, scheme


def qlinear_args(fn: str, x: Any, codes: Any, absmax: Any, shape: Any, group_size: Any, scheme: Any, *,
                 transpose: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], int, str]:
    """(x, codes, absmax, shape, group_size, scheme) of ``qlinear`` (x (d_in,) or (n, d_in)) or,
    with ``transpose``, of ``qlinear_t`` (x (d_out,) or (n, d_out))."""
    codes, absmax, shp, g, scheme = qweight_args(fn, codes, absmax, shape, group_size, scheme)
    name = "g" if transpose else "x"
    x = f32(fn, name, x, (1, 2))
    want = shp[0] if transpose else shp[1]
    if x.shape[-1] != want:
        raise _shape_error(fn, name, f"(..., {want}) for a matrix of shape {shp}", x.shape)
    return x, codes, absmax, shp, g, scheme


def row_range(fn: str, lo: Any, hi: Any, n: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` (hi None: n) within ``[0, n]``."""
    lo = integer(fn, "lo", lo)
    hi = n if hi is None else integer(fn, "hi", hi)
    if not 0 <= lo <= hi <= n:
        raise KernelInputError(f"{fn}: rows [{lo}, {hi}) are not within [0, {n}]")
    return lo, hi
