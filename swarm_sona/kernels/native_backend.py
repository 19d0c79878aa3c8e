"""The native backend: thin wrappers over the compiled extension ``_native``.

Importing this module raises ``ImportError`` when the extension was not built. The hot paths
(``micro_apply``, ``lora_delta``, ``instant_step``) go straight to C, which parses the
buffers itself; only when an input is not already right (dtype, layout, shape) does the
wrapper run the checks of :mod:`.validate` (convert once or refuse) and call again. Batch
kernels are validated here, their outputs allocated here, and they release the GIL in C.

One deliberate exception: LoRA on many rows at rank > 2 (``lora_delta``/``micro_apply`` with
>= 16 rows, ``lora_grad`` with >= 8) is a matrix product, where numpy's BLAS beats the plain C
loops (measured ~2x at 64 x 256, r = 8); those shapes run the numpy reference. Rank 1-2
(MicroLoRA) and single rows stay in C.

Example:
    >>> import numpy as np
    >>> from swarm_sona.kernels import native_backend as nb  # doctest: +SKIP
    >>> nb.micro_apply(np.ones(2, np.float32), np.ones((1, 2), np.float32),
    ...                np.ones((2, 1), np.float32), 0.5).tolist()  # doctest: +SKIP
    [2.0, 2.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from swarm_sona.kernels import (
    _native,  # ImportError if not built
    reference,
)
from swarm_sona.kernels import validate as v

__all__ = ["ISA", "INT8_ISA", *reference.__all__]  # the kernel names; signatures as in reference.py

ISA: str = _native.isa()

_lora_apply = _native.lora_apply
_finite_norm = _native.finite_norm
_instant_step = _native.instant_step
_FORWARD: Any = getattr(_native, "forward_one", None)    # None in an older build
_STEPS: Any = getattr(_native, "instant_steps", None)    # chunk kernels (None in an older build)
_BANDIT: Any = getattr(_native, "bandit_update", None)
_topk_int8_rerank = _native.topk_int8_rerank
_topk_int4_rerank = _native.topk_int4_rerank
INT8_ISA: str = _native.int8_isa()
_NI = NotImplemented
GEMM_MIN_RANK = 2  # rank above which, with enough rows, LoRA runs as BLAS GEMMs (see module doc)
GEMM_MIN_ROWS = 16
GRAD_GEMM_MIN_ROWS = 8
#: Rows of x from which the quantised products dequantise W in tiles for BLAS (below: the C
#: kernel streams W row by row, each row decoded once for all rows of x).
QGEMM_MIN_ROWS = 8
Q_ISA: str = _native.q_isa()
_QBITS = {"nf4": 4, "int8": 8}
_I64 = np.dtype(np.int64)
_F32 = np.dtype(np.float32)


def _checked(result: Any, fn: str) -> Any:
    if result is _NI:  # validation passed but the C side still refused: a bug, never silent
        raise RuntimeError(f"{fn}: native kernel refused arguments that passed validation")
    return result


def _is_gemm(x: np.ndarray, A: np.ndarray, min_rows: int) -> bool:
    return x.ndim == 2 and A.shape[0] > GEMM_MIN_RANK and x.shape[0] >= min_rows


def finite_norm(x: Any) -> bool:
    """True when the float32 sum of squares of ``x`` is finite (float32 C-contiguous: one C pass); see
    :func:`swarm_sona.kernels.reference.finite_norm`."""
    ok = _finite_norm(x)
    return reference.finite_norm(v.real_array("finite_norm", "x", x)) if ok is _NI else ok  # type: ignore[no-any-return]


def lora_delta(x: Any, A: Any, B: Any, scale: float) -> np.ndarray:
    """``scale * B @ (A @ x)``; see :func:`swarm_sona.kernels.reference.lora_delta`."""
    out = _lora_apply(x, A, B, scale, False)
    if out is _NI:
        args = v.lora_args("lora_delta", x, A, B, scale, square=False)
        if _is_gemm(args[0], args[1], GEMM_MIN_ROWS):
            return reference.lora_delta(*args)
        out = _checked(_lora_apply(*args, False), "lora_delta")
    return out


def micro_apply(h: Any, A: Any, B: Any, scale: float, finite: bool = False) -> Any:
    """``h + scale * B @ (A @ h)`` (``None`` with ``finite=True`` when h or the result holds a
    NaN or an inf); see :func:`swarm_sona.kernels.reference.micro_apply`."""
    out = _lora_apply(h, A, B, scale, True, finite)
    if out is _NI:
        args = v.lora_args("micro_apply", h, A, B, scale, square=True)
        if _is_gemm(args[0], args[1], GEMM_MIN_ROWS):
            return reference.micro_apply(*args, finite=finite)
        out = _checked(_lora_apply(*args, True, finite), "micro_apply")
    return out


def forward_one(e: Any, WovT: Any, bov: Any, WinT: Any, bin_: Any, WoutT: Any, bout: Any, A: Any, B: Any,
                scale: float, wv: Any, bv: Any, Wr: Any, br: Any, eps: float
                ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """The one-token inference forward in one C call; see :func:`swarm_sona.kernels.reference.forward_one`."""
    res = _NI if _FORWARD is None else _FORWARD(e, WovT, bov, WinT, bin_, WoutT, bout, A, B, scale, wv, bv, Wr, br,
                                                eps)
    if res is _NI:
        args = v.forward_one_args(e, WovT, bov, WinT, bin_, WoutT, bout, A, B, scale, wv, bv, Wr, br, eps)
        res = reference.forward_one(*args) if _FORWARD is None else _checked(_FORWARD(*args), "forward_one")
    return res  # type: ignore[no-any-return]


def instant_step(h: Any, A: np.ndarray, B: np.ndarray, scale: float, wv: np.ndarray, bv: np.ndarray,
                 Wr: np.ndarray, br: np.ndarray, arm: int, reward: float, success: float, lr: float,
                 train_a: bool = False, clip: float = 0.0) -> tuple[float, float]:
    """Fused instant-loop step, in place; see :func:`swarm_sona.kernels.reference.instant_step`."""
    res = _instant_step(h, A, B, scale, wv, bv, Wr, br, arm, reward, success, lr, train_a, clip)
    if res is _NI:
        args = v.instant_step_args(h, A, B, scale, wv, bv, Wr, br, arm, reward, success, lr, train_a, clip)
        res = _checked(_instant_step(*args), "instant_step")
    return res


def instant_steps(H: Any, A: np.ndarray, B: np.ndarray, scale: float, wv: np.ndarray, bv: np.ndarray,
                  Wr: np.ndarray, br: np.ndarray, arms: Any, rewards: Any, successes: Any, lr: float,
                  train_a: bool = False, clip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`instant_step` for a whole chunk in one C call (arguments checked once, at this
    boundary); see :func:`swarm_sona.kernels.reference.instant_steps`."""
    args = v.instant_steps_args(H, A, B, scale, wv, bv, Wr, br, arms, rewards, successes, lr, train_a, clip)
    H, A, B, scale, wv, bv, Wr, br, arms, rs, lr, train_a, clip = args
    if _STEPS is None:   # an extension built before this kernel: the C step row by row
        n = H.shape[0]
        vals, probs = np.empty(n), np.empty(n)
        for k in range(n):
            vals[k], probs[k] = _checked(_instant_step(H[k], A, B, scale, wv, bv, Wr, br, int(arms[k]), rs[k, 0],
                                                       rs[k, 1], lr, train_a, clip), "instant_steps")
        return vals, probs
    vu = np.empty((H.shape[0], 2))
    _STEPS(*args, vu)
    return vu[:, 0], vu[:, 1]


def bandit_update(W: np.ndarray, P: np.ndarray, V: np.ndarray, idx: Any, X: Any, y: Any, lr: float,
                  decay: float = 1.0, AP: Any = None, AE: Any = None) -> int:
    """The router posterior's update for a chunk in C; see :func:`swarm_sona.kernels.reference.bandit_update`.

    Arguments that are already exactly right (the router's own arrays) go straight to C, which
    re-checks every type and size before changing anything; anything else is checked (and
    converted or refused with :class:`~.validate.KernelInputError`) first.
    """
    if _BANDIT is None:   # an extension built before this kernel
        return reference.bandit_update(*v.bandit_args(W, P, V, idx, X, y, lr, decay, AP, AE))
    try:
        return int(_BANDIT(W, P, V, idx, X, y, lr, decay, AP, AE))
    except (TypeError, ValueError):
        pass
    return int(_BANDIT(*v.bandit_args(W, P, V, idx, X, y, lr, decay, AP, AE)))


def lora_grad(x: Any, g: Any, A: Any, B: Any, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(gA, gB); see :func:`swarm_sona.kernels.reference.lora_grad`."""
    x2, g2, A, B, scale = v.lora_grad_args(x, g, A, B, scale)
    if _is_gemm(x2, A, GRAD_GEMM_MIN_ROWS):
        return reference.lora_grad(x2, g2, A, B, scale)
    gA = np.empty(A.shape, _F32)
    gB = np.empty(B.shape, _F32)
    _native.lora_grad(x2, g2, A, B, scale, gA, gB)
    return gA, gB


def fisher_update(F: np.ndarray, g2_mean: Any, a: float) -> np.ndarray:
    """EWC++ EMA in place, returns F; see :func:`swarm_sona.kernels.reference.fisher_update`."""
    F, g, a = v.fisher_args(F, g2_mean, a)
    _native.fisher_update(F, g, a)
    return F


def ewc_penalty_grad(theta: Any, anchor: Any, F: Any, lam: float) -> tuple[float, np.ndarray]:
    """(penalty, gradient); see :func:`swarm_sona.kernels.reference.ewc_penalty_grad`."""
    theta, anchor, F, lam = v.ewc_args(theta, anchor, F, lam)
    g = np.empty(theta.shape, _F32)
    return _native.ewc_penalty_grad(theta, anchor, F, lam, g), g


def _search(call: Any, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    kk = max(0, min(k, n))
    idx = np.empty(kk, _I64)
    sc = np.empty(kk, _F32)
    m = call(kk, idx, sc)
    return (idx, sc) if m == kk else (idx[:m].copy(), sc[:m].copy())


def topk(matrix: Any, query: Any, k: int, *, mask: Any = None, values: Any = None,
         min_value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows by dot product; see :func:`swarm_sona.kernels.reference.topk`."""
    matrix, query, k, mask, values, min_value = v.search_args(matrix, query, k, mask, values, min_value)
    return _search(lambda kk, i, s: _native.topk(matrix, query, kk, mask, values, min_value, i, s),
                   matrix.shape[0], k)


def topk_int8(q: np.ndarray, scales: Any, query: Any, k: int, *, mask: Any = None, values: Any = None,
              min_value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over an int8 matrix; see :func:`swarm_sona.kernels.reference.topk_int8`."""
    q, scales, query, k, mask, values, min_value = v.topk_int8_args(q, scales, query, k, mask, values, min_value)
    return _search(lambda kk, i, s: _native.topk_int8(q, scales, query, kk, mask, values, min_value, i, s),
                   q.shape[0], k)


def topk_int8_rerank(q: Any, scales: Any, matrix: Any, query: Any, k: int, candidates: int, *, mask: Any = None,
                     values: Any = None, min_value: float | None = None,
                     ranges: Any = None,
                     rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """int8 proposal + float32 re-rank; see :func:`swarm_sona.kernels.reference.topk_int8_rerank`."""
    res = _topk_int8_rerank(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows)
    if res is _NI:
        args = v.topk_int8_rerank_args(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges,
                                       rows)
        res = _checked(_topk_int8_rerank(*args), "topk_int8_rerank")
    return res


def topk_int4_rerank(q: Any, scales: Any, matrix: Any, query: Any, k: int, candidates: int, *, mask: Any = None,
                     values: Any = None, min_value: float | None = None,
                     ranges: Any = None,
                     rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """int4 proposal + float32 re-rank; see :func:`swarm_sona.kernels.reference.topk_int4_rerank`."""
    res = _topk_int4_rerank(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows)
    if res is _NI:
        args = v.topk_int4_rerank_args(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges,
                                       rows)
        res = _checked(_topk_int4_rerank(*args), "topk_int4_rerank")
    return res


def quantize_int4(matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-row int4, packed; see :func:`swarm_sona.kernels.reference.quantize_int4`."""
    matrix = v.quantize_int4_args(matrix)
    n, d = matrix.shape
    packed = np.empty((n, (d + 1) // 2), np.uint8)
    scales = np.empty(n, _F32)
    _native.quantize_int4(matrix, packed, scales)
    return packed, scales


def quantize_int8(matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8; see :func:`swarm_sona.kernels.reference.quantize_int8`."""
    matrix = v.f32("quantize_int8", "matrix", matrix, (2,))
    q = np.empty(matrix.shape, np.int8)
    scales = np.empty(matrix.shape[0], _F32)
    _native.quantize_int8(matrix, q, scales)
    return q, scales


def kmeans_assign(X: Any, C: Any) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid; see :func:`swarm_sona.kernels.reference.kmeans_assign`."""
    X, C = v.kmeans_args(X, C)
    labels = np.empty(X.shape[0], _I64)
    d2 = np.empty(X.shape[0], _F32)
    _native.kmeans_assign(X, C, labels, d2)
    return labels, d2


def ivf_probe(centroids: Any, norms: Any, sizes: Any, query: Any, need: float) -> np.ndarray:
    """The ivf lists to scan, in C; see :func:`swarm_sona.kernels.reference.ivf_probe`."""
    res = _native.ivf_probe(centroids, norms, sizes, query, need)
    if res is _NI:
        res = _checked(_native.ivf_probe(*v.ivf_probe_args(centroids, norms, sizes, query, need)), "ivf_probe")
    return res  # type: ignore[no-any-return]


def ivf_topk(q: Any, scales: Any, matrix: Any, query: Any, k: int, candidates: int, exact_rows: int, centroids: Any,
             norms: Any, sizes: Any, offsets: Any, ordered: int, need: float, *, mask: Any = None, values: Any = None,
             min_value: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """An ivf query in one C call; see :func:`swarm_sona.kernels.reference.ivf_topk`."""
    res = _native.ivf_topk(q, scales, matrix, query, k, candidates, exact_rows, centroids, norms, sizes, offsets,
                           ordered, need, mask, values, min_value)
    if res is _NI:
        res = _checked(_native.ivf_topk(*v.ivf_topk_args(q, scales, matrix, query, k, candidates, exact_rows,
                                                          centroids, norms, sizes, offsets, ordered, need, mask,
                                                          values, min_value)), "ivf_topk")
    return res  # type: ignore[no-any-return]


def hash_embed(texts: Any, dim: int, w_word: float = 1.0, w_bigram: float = 0.5,
               w_char: float = 0.25) -> np.ndarray:
    """Hashing embedder rows; see :func:`swarm_sona.kernels.reference.hash_embed`."""
    texts, dim, ww, wb, wc = v.hash_args(texts, dim, w_word, w_bigram, w_char)
    out = np.empty((len(texts), dim), _F32)
    _native.hash_embed(texts, dim, ww, wb, wc, out)
    return out


def _qdequant(codes: np.ndarray, absmax: np.ndarray, shape: tuple[int, int], g: int, scheme: str,
              lo: int, hi: int) -> np.ndarray:
    out = np.empty((hi - lo, shape[1]), _F32)
    _native.qdequant(codes, absmax, g, _QBITS[scheme], lo * shape[1], out)
    return out


def dequantize_rows(codes: Any, absmax: Any, shape: Any, group_size: int, scheme: str, lo: int = 0,
                    hi: int | None = None) -> np.ndarray:
    """Rows of a quantised W in C; see :func:`swarm_sona.kernels.reference.dequantize_rows`."""
    codes, absmax, shape, g, scheme = v.qweight_args("dequantize_rows", codes, absmax, shape, group_size, scheme)
    lo, hi = v.row_range("dequantize_rows", lo, hi, shape[0])
    return _qdequant(codes, absmax, shape, g, scheme, lo, hi)


def _qproduct(fn: str, x: Any, codes: Any, absmax: Any, shape: Any, group_size: int, scheme: str,
              transpose: bool) -> np.ndarray:
    x, codes, absmax, shp, g, scheme = v.qlinear_args(fn, x, codes, absmax, shape, group_size, scheme,
                                                      transpose=transpose)
    x2 = x if x.ndim == 2 else x[None, :]
    if x2.shape[0] >= QGEMM_MIN_ROWS:
        y = reference.tiled_qlinear(x2, shp, lambda lo, hi: _qdequant(codes, absmax, shp, g, scheme, lo, hi),
                                    transpose=transpose)
    else:
        y = np.empty((x2.shape[0], shp[0] if not transpose else shp[1]), _F32)
        _native.qlinear(x2, codes, absmax, shp[0], shp[1], g, _QBITS[scheme], transpose, y)
    return y[0] if x.ndim == 1 else y


def qlinear(x: Any, codes: Any, absmax: Any, shape: Any, group_size: int, scheme: str) -> np.ndarray:
    """``x @ W^T`` on the quantised W in C; see :func:`swarm_sona.kernels.reference.qlinear`."""
    return _qproduct("qlinear", x, codes, absmax, shape, group_size, scheme, False)


def qlinear_t(g: Any, codes: Any, absmax: Any, shape: Any, group_size: int, scheme: str) -> np.ndarray:
    """``g @ W`` on the quantised W in C; see :func:`swarm_sona.kernels.reference.qlinear_t`."""
    return _qproduct("qlinear_t", g, codes, absmax, shape, group_size, scheme, True)
