"""The numpy backend: argument checks of :mod:`.validate`, then the numpy reference.

Active when the extension is missing or ``SWARM_SONA_NATIVE=0``. Same signatures, same
argument rules and errors as :mod:`.native_backend`.

Example:
    >>> import numpy as np
    >>> from swarm_sona.kernels import numpy_backend as nb
    >>> nb.micro_apply([1.0, 1.0], np.ones((1, 2)), np.ones((2, 1)), 0.5).tolist()
    [2.0, 2.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from swarm_sona.kernels import reference
from swarm_sona.kernels import validate as v

__all__ = [*reference.__all__]  # the kernel names; signatures as in reference.py


def finite_norm(x: Any) -> bool:
    """See :func:`swarm_sona.kernels.reference.finite_norm`."""
    return reference.finite_norm(v.real_array("finite_norm", "x", x))


def lora_delta(x: Any, A: Any, B: Any, scale: float) -> np.ndarray:
    """See :func:`swarm_sona.kernels.reference.lora_delta`."""
    return reference.lora_delta(*v.lora_args("lora_delta", x, A, B, scale, square=False))


def micro_apply(h: Any, A: Any, B: Any, scale: float, finite: bool = False) -> Any:
    """See :func:`swarm_sona.kernels.reference.micro_apply`."""
    return reference.micro_apply(*v.lora_args("micro_apply", h, A, B, scale, square=True), finite=finite)


def lora_grad(x: Any, g: Any, A: Any, B: Any, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.lora_grad`."""
    return reference.lora_grad(*v.lora_grad_args(x, g, A, B, scale))


def forward_one(e: Any, WovT: Any, bov: Any, WinT: Any, bin_: Any, WoutT: Any, bout: Any, A: Any, B: Any,
                scale: float, wv: Any, bv: Any, Wr: Any, br: Any, eps: float
                ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.forward_one`."""
    return reference.forward_one(*v.forward_one_args(e, WovT, bov, WinT, bin_, WoutT, bout, A, B, scale, wv, bv,
                                                     Wr, br, eps))


def instant_step(h: Any, A: np.ndarray, B: np.ndarray, scale: float, wv: np.ndarray, bv: np.ndarray,
                 Wr: np.ndarray, br: np.ndarray, arm: int, reward: float, success: float, lr: float,
                 train_a: bool = False, clip: float = 0.0) -> tuple[float, float]:
    """See :func:`swarm_sona.kernels.reference.instant_step` (in place)."""
    a = v.instant_step_args(h, A, B, scale, wv, bv, Wr, br, arm, reward, success, lr, train_a, clip)
    vv, u = reference.instant_step(*a)
    return float(vv), float(u)


def instant_steps(H: Any, A: np.ndarray, B: np.ndarray, scale: float, wv: np.ndarray, bv: np.ndarray,
                  Wr: np.ndarray, br: np.ndarray, arms: Any, rewards: Any, successes: Any, lr: float,
                  train_a: bool = False, clip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.instant_steps` (in place; checked once per chunk)."""
    H, A, B, scale, wv, bv, Wr, br, arms, rs, lr, train_a, clip = v.instant_steps_args(
        H, A, B, scale, wv, bv, Wr, br, arms, rewards, successes, lr, train_a, clip)
    return reference.instant_steps(H, A, B, scale, wv, bv, Wr, br, arms, rs[:, 0], rs[:, 1], lr, train_a, clip)


def bandit_update(W: np.ndarray, P: np.ndarray, V: np.ndarray, idx: Any, X: Any, y: Any, lr: float,
                  decay: float = 1.0, AP: Any = None, AE: Any = None) -> int:
    """See :func:`swarm_sona.kernels.reference.bandit_update` (in place)."""
    return reference.bandit_update(*v.bandit_args(W, P, V, idx, X, y, lr, decay, AP, AE))


def fisher_update(F: np.ndarray, g2_mean: Any, a: float) -> np.ndarray:
    """See :func:`swarm_sona.kernels.reference.fisher_update` (in place, returns F)."""
    return reference.fisher_update(*v.fisher_args(F, g2_mean, a))


def ewc_penalty_grad(theta: Any, anchor: Any, F: Any, lam: float) -> tuple[float, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.ewc_penalty_grad`."""
    return reference.ewc_penalty_grad(*v.ewc_args(theta, anchor, F, lam))


def topk(matrix: Any, query: Any, k: int, *, mask: Any = None, values: Any = None,
         min_value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.topk`."""
    matrix, query, k, mask, values, min_value = v.search_args(matrix, query, k, mask, values, min_value)
    return reference.topk(matrix, query, k, mask=mask, values=values, min_value=min_value)


def topk_int8(q: np.ndarray, scales: Any, query: Any, k: int, *, mask: Any = None, values: Any = None,
              min_value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.topk_int8`."""
    q, scales, query, k, mask, values, min_value = v.topk_int8_args(q, scales, query, k, mask, values, min_value)
    return reference.topk_int8(q, scales, query, k, mask=mask, values=values, min_value=min_value)


def topk_int8_rerank(q: Any, scales: Any, matrix: Any, query: Any, k: int, candidates: int, *, mask: Any = None,
                     values: Any = None, min_value: float | None = None,
                     ranges: Any = None,
                     rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.topk_int8_rerank`."""
    q, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows = \
        v.topk_int8_rerank_args(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges,
                                 rows)
    return reference.topk_int8_rerank(q, scales, matrix, query, k, candidates, mask=mask, values=values,
                                      min_value=min_value, ranges=ranges, rows=rows)


def topk_int4_rerank(q: Any, scales: Any, matrix: Any, query: Any, k: int, candidates: int, *, mask: Any = None,
                     values: Any = None, min_value: float | None = None,
                     ranges: Any = None,
                     rows: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.topk_int4_rerank`."""
    q, scales, matrix, query, k, candidates, mask, values, min_value, ranges, rows = \
        v.topk_int4_rerank_args(q, scales, matrix, query, k, candidates, mask, values, min_value, ranges,
                                 rows)
    return reference.topk_int4_rerank(q, scales, matrix, query, k, candidates, mask=mask, values=values,
                                      min_value=min_value, ranges=ranges, rows=rows)


def quantize_int4(matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.quantize_int4`."""
    return reference.quantize_int4(v.quantize_int4_args(matrix))


def quantize_int8(matrix: Any) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.quantize_int8`."""
    return reference.quantize_int8(v.f32("quantize_int8", "matrix", matrix, (2,)))


def kmeans_assign(X: Any, C: Any) -> tuple[np.ndarray, np.ndarray]:
    """See :func:`swarm_sona.kernels.reference.kmeans_assign`."""
    return reference.kmeans_assign(*v.kmeans_args(X, C))


def ivf_probe(centroids: Any, norms: Any, sizes: Any, query: Any, need: float) -> np.ndarray:
    """See :func:`swarm_sona.kernels.reference.ivf_probe`."""
    return reference.ivf_probe(*v.ivf_probe_args(centroids, norms, sizes, query, need))


def ivf_topk(q: Any, scales: Any, matrix: Any, query: Any, k: int, candidates: int, exact_rows: int, centroids: Any,
             norms: Any, sizes: Any, offsets: Any, ordered: int, need: float, *, mask: Any = None, values: Any = None,
             min_value: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """See :func:`swarm_sona.kernels.reference.ivf_topk`."""
    a = v.ivf_topk_args(q, scales, matrix, query, k, candidates, exact_rows, centroids, norms, sizes, offsets,
                        ordered, need, mask, values, min_value)
    return reference.ivf_topk(*a[:13], mask=a[13], values=a[14], min_value=a[15])


def hash_embed(texts: Any, dim: int, w_word: float = 1.0, w_bigram: float = 0.5,
               w_char: float = 0.25) -> np.ndarray:
    """See :func:`swarm_sona.kernels.reference.hash_embed`."""
    return reference.hash_embed(*v.hash_args(texts, dim, w_word, w_bigram, w_char))


def dequantize_rows(codes: Any, absmax: Any, shape: Any, group_size: int, scheme: str, lo: int = 0,
                    hi: int | None = None) -> np.ndarray:
    """See :func:`swarm_sona.kernels.reference.dequantize_rows`."""
    codes, absmax, shape, g, scheme = v.qweight_args("dequantize_rows", codes, absmax, shape, group_size, scheme)
    lo, hi = v.row_range("dequantize_rows", lo, hi, shape[0])
    return reference.dequantize_rows(codes, absmax, shape, g, scheme, lo, hi)


def qlinear(x: Any, codes: Any, absmax: Any, shape: Any, group_size: int, scheme: str) -> np.ndarray:
    """See :func:`swarm_sona.kernels.reference.qlinear`."""
    return reference.qlinear(*v.qlinear_args("qlinear", x, codes, absmax, shape, group_size, scheme,
                                             transpose=False))


def qlinear_t(g: Any, codes: Any, absmax: Any, shape: Any, group_size: int, scheme: str) -> np.ndarray:
    """See :func:`swarm_sona.kernels.reference.qlinear_t`."""
    return reference.qlinear_t(*v.qlinear_args("qlinear_t", g, codes, absmax, shape, group_size, scheme,
                                               transpose=True))
