"""numpy reference implementations of every hot-path kernel.

These define the semantics; the C kernels in this package must match them within the
tolerances stated in the tests (float32: rtol 1e-4 / atol 1e-5 unless a test says otherwise).
All array inputs are float32 unless stated; shapes are documented per function.

Example:
    >>> import numpy as np
    >>> from swarm_sona.kernels import reference as ref
    >>> A = np.ones((1, 3), np.float32); B = np.ones((3, 1), np.float32)
    >>> ref.micro_apply(np.ones(3, np.float32), A, B, 0.5).tolist()
    [2.5, 2.5, 2.5]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from swarm_sona.kernels.hashing_reference import hashing_embed_reference

#: The 16 NormalFloat4 levels (quantiles of N(0, 1) scaled to [-1, 1], an exact zero; QLoRA,
#: bitsandbytes' ``nf4``): entry = ``NF4_LEVELS[code] * absmax`` of its group.
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
NF4_PAIRS = np.stack([NF4_LEVELS[np.arange(256) & 0x0F], NF4_LEVELS[np.arange(256) >> 4]], axis=1)
"""byte -> (level of its low nibble, level of its high nibble), shape (256, 2)."""
#: Entries of W dequantised at a time by the batched quantised products (a transient float32
#: tile of at most this many entries, 1 MiB; never the whole matrix).
QTILE_ENTRIES = 1 << 18

__all__ = [
    "finite_norm",
    "lora_delta",
    "micro_apply",
    "lora_grad",
    "instant_step",
    "forward_one",
    "instant_steps",
    "bandit_update",
    "fisher_update",
    "ewc_penalty_grad",
    "topk",
    "topk_int8",
    "topk_int8_rerank",
    "topk_int4_rerank",
    "quantize_int8",
    "quantize_int4",
    "kmeans_assign",
    "ivf_probe",
    "ivf_topk",
    "hash_embed",
    "dequantize_rows",
    "qlinear",
    "qlinear_t",
]


def finite_norm(x: np.ndarray) -> bool:
    """True when the float32 sum of squares of ``x`` is finite: no NaN or inf, and no entry so
    large that the squared norm overflows (what a network fed ``x`` needs)."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.ascontiguousarray(x, np.float32).ravel()
        return bool(np.isfinite(np.dot(a, a)))


def lora_delta(x: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float) -> np.ndarray:
    """``scale * B @ (A @ x)`` for x (d_in,) or rows of x (n, d_in); A (r, d_in), B (d_out, r)."""
    return (scale * ((x @ A.T) @ B.T)).astype(np.float32, copy=False)


def micro_apply(h: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float, finite: bool = False) -> Any:
    """MicroLoRA on hidden state(s): ``h + scale * B @ (A @ h)``; h (d,) or (n, d), A (r, d), B (d, r).

    ``finite=True``: ``None`` instead of the result when h or the result holds a NaN or an inf
    (the check rides on the kernel's own pass, so callers need not scan h first)."""
    if not finite:
        return (h + lora_delta(h, A, B, scale)).astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        out = (h + lora_delta(h, A, B, scale)).astype(np.float32, copy=False)
    return out if np.isfinite(h).all() and np.isfinite(out).all() else None


def lora_grad(x: np.ndarray, g: np.ndarray, A: np.ndarray, B: np.ndarray,
              scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``sum(g * lora_delta(x))`` w.r.t. A and B (summed over rows).

    x (n, d_in) or (d_in,), g (n, d_out) or (d_out,). Returns (gA (r, d_in), gB (d_out, r)).
    """
    x2 = np.atleast_2d(x)
    g2 = np.atleast_2d(g)
    z = x2 @ A.T  # (n, r)
    gB = scale * (g2.T @ z)
    gA = scale * ((g2 @ B).T @ x2)
    return gA.astype(np.float32, copy=False), gB.astype(np.float32, copy=False)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


def _layer_norm(x: np.ndarray, eps: float) -> np.ndarray:
    xc = x.astype(np.float64) - x.mean(dtype=np.float64)
    return xc / np.sqrt(xc @ xc / x.shape[0] + eps)


def forward_one(e: np.ndarray, WovT: np.ndarray, bov: np.ndarray, WinT: np.ndarray, bin_: np.ndarray,
                WoutT: np.ndarray, bout: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float, wv: np.ndarray,
                bv: np.ndarray, Wr: np.ndarray, br: np.ndarray, eps: float
                ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    """Inference forward of one task token through the fused one-token block, then MicroLoRA
    and the value/router heads (``SONAModel.forward`` of an embedding without steps)::

        h1 = e + LN(e) WovT + bov;   u = relu(LN(h1) WinT + bin);   h2 = h1 + u WoutT + bout
        h = LN(h2) / sqrt(d);   hm = h + scale B (A h)
        value_logit = wv.hm + bv;   router_logits = Wr hm + br;   router_probs = sigmoid(router_logits)

    ``LN(x) = (x - mean) / sqrt(var + eps)``, no affine. Shapes: e (d,), WovT (d, d), WinT (d, H),
    WoutT (H, d), A (r, d), B (d, r), wv (d,), bv (1,), Wr (M, d), br (M,). Returns
    ``(h, hm, value_logit, router_logits, router_probs)``, arrays float32.
    """
    d = e.shape[0]
    f = np.float32
    h1 = (e + (_layer_norm(e, eps).astype(f) @ WovT + bov)).astype(f)
    u = np.maximum(_layer_norm(h1, eps).astype(f) @ WinT + bin_, 0).astype(f)
    h2 = (h1 + (u @ WoutT + bout)).astype(f)
    h = (_layer_norm(h2, eps) / np.sqrt(d)).astype(f)
    hm = micro_apply(h, A, B, scale)
    rl = (Wr @ hm + br).astype(f)
    return h, hm, float(hm @ wv) + float(bv[0]), rl, (0.5 * (1.0 + np.tanh(0.5 * rl))).astype(f)


def instant_step(h: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float,
                 wv: np.ndarray, bv: np.ndarray, Wr: np.ndarray, br: np.ndarray,
                 arm: int, reward: float, success: float, lr: float,
                 train_a: bool = False, clip: float = 0.0) -> tuple[float, float]:
    """One instant-loop SGD step on MicroLoRA + heads from a cached hidden state. In place.

    h (d,) cached final hidden state (before MicroLoRA); A (r, d), B (d, r) MicroLoRA;
    wv (d,), bv (1,) value head; Wr (M, d), br (M,) router head; ``arm`` the chosen model's
    row (-1: no router label). Math (BCE on logits, sigmoid outputs)::

        z  = A h;  h2 = h + scale * B z
        v  = sigmoid(wv.h2 + bv);       gv = v - reward
        u  = sigmoid(Wr[arm].h2 + br[arm]); gu = u - success     (0 when arm < 0)
        gh = gv * wv + gu * Wr[arm]
        gB = scale * outer(gh, z);  gA = scale * outer(B^T gh, h)  (if train_a)
        wv -= lr*gv*h2; bv -= lr*gv; Wr[arm] -= lr*gu*h2; br[arm] -= lr*gu
        B -= lr*gB; A -= lr*gA

    All gradients are computed before any parameter changes. If ``clip > 0`` the update
    ``gh`` (hence gB, gA) is rescaled so that ``||gh||_2 <= clip``. Returns (v, u) before the
    update (u = nan when arm < 0).
    """
    z = A @ h
    h2 = h + scale * (B @ z)
    v = _sigmoid(float(wv @ h2 + bv[0]))
    gv = v - reward
    gh = gv * wv.astype(np.float64)
    u = float("nan")
    gu = 0.0
    if arm >= 0:
        u = _sigmoid(float(Wr[arm] @ h2 + br[arm]))
        gu = u - success
        gh = gh + gu * Wr[arm]
    if clip > 0:
        n = float(np.linalg.norm(gh))
        if n > clip:
            gh = gh * (clip / n)
    gB = scale * np.outer(gh, z)
    gA = scale * np.outer(B.T @ gh, h) if train_a else None
    wv -= np.float32(lr * gv) * h2
    bv[0] -= np.float32(lr * gv)
    if arm >= 0:
        Wr[arm] -= np.float32(lr * gu) * h2
        br[arm] -= np.float32(lr * gu)
    B -= (lr * gB).astype(np.float32)
    if gA is not None:
        A -= (lr * gA).astype(np.float32)
    return v, u


def instant_steps(H: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float, wv: np.ndarray, bv: np.ndarray,
                  Wr: np.ndarray, br: np.ndarray, arms: np.ndarray, rewards: np.ndarray, successes: np.ndarray,
                  lr: float, train_a: bool = False, clip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`instant_step` for every row of ``H`` (n, d) in order, in place: row k with
    ``arms[k]``, ``rewards[k]``, ``successes[k]`` on the parameters as row k - 1 left them.
    Returns (values (n,), router probs (n,)) as float64, each before its row's update.

    Example:
        >>> d = 4; A = np.zeros((1, d), np.float32); B = np.zeros((d, 1), np.float32)
        >>> wv, bv = np.zeros(d, np.float32), np.zeros(1, np.float32)
        >>> Wr, br = np.zeros((2, d), np.float32), np.zeros(2, np.float32)
        >>> v, u = instant_steps(np.ones((2, d), np.float32), A, B, 1.0, wv, bv, Wr, br,
        ...                      np.array([0, -1]), np.ones(2), np.ones(2), 0.1)
        >>> float(v[0]), bool(v[1] > v[0]), bool(np.isnan(u[1]))
        (0.5, True, True)
    """
    n = H.shape[0]
    values, probs = np.empty(n), np.empty(n)
    for k in range(n):
        values[k], probs[k] = instant_step(H[k], A, B, scale, wv, bv, Wr, br, int(arms[k]), float(rewards[k]),
                                           float(successes[k]), lr, train_a, clip)
    return values, probs


def bandit_update(W: np.ndarray, P: np.ndarray, V: np.ndarray, idx: np.ndarray, X: np.ndarray, y: np.ndarray,
                  lr: float, decay: float = 1.0, AP: np.ndarray | None = None, AE: np.ndarray | None = None) -> int:
    """The router posterior's diagonal Bayesian logistic update (float64, in place) for every
    row of ``X`` (n, D) in order; row k updates model ``i = idx[k]`` with label ``y[k]``::

        z = W[i] . x;  p = sigmoid(z);  P[i] += x^2 p (1 - p);  V[i] = 1 / P[i]
        W[i] += lr (y - p) x V[i]

    With ``decay`` < 1 (the evidence forgetting factor), model i's evidence beyond the anchor
    (precision ``AP``, precision-weighted mean ``AE``, both (M, D)) is first multiplied by
    ``decay`` in natural parameters: ``P[i] <- AP[i] + decay (P[i] - AP[i])``, ``P[i] W[i] <-
    AE[i] + decay (P[i] W[i] - AE[i])`` (with the old P[i] on the right).

    Returns -1, or the first row whose ``z`` is not finite (it and later rows are not applied).

    Example:
        >>> W, P = np.zeros((1, 2)), np.ones((1, 2)); V = 1 / P
        >>> bandit_update(W, P, V, np.array([0]), np.array([[1.0, 1.0]]), np.array([1.0]), 1.0)
        -1
        >>> W.tolist(), P.tolist()
        ([[0.4, 0.4]], [[1.25, 1.25]])
        >>> AP, AE = np.ones((1, 2)), np.zeros((1, 2))
        >>> bandit_update(W, P, V, np.array([0]), np.array([[0.0, 0.0]]), np.array([1.0]), 1.0, 0.5, AP, AE)
        -1
        >>> P.tolist(), W.tolist()
        ([[1.125, 1.125]], [[0.2222222222222222, 0.2222222222222222]])
    """
    x2 = np.empty(W.shape[1])
    forget = decay < 1.0
    if forget and (AP is None or AE is None):
        raise ValueError("bandit_update: decay < 1 needs the anchor arrays AP and AE")
    for k in range(X.shape[0]):
        i, xb = int(idx[k]), X[k]
        w, pr, v = W[i], P[i], V[i]
        if forget:
            assert AP is not None and AE is not None
            pr_d = AP[i] + decay * (pr - AP[i])
            w_d = (AE[i] + decay * (pr * w - AE[i])) / pr_d
            z = float(w_d @ xb)
            if not math.isfinite(z):
                return k
            pr[:] = pr_d
            w[:] = w_d
        else:
            z = float(w @ xb)
            if not math.isfinite(z):
                return k
        p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        np.multiply(xb, xb, out=x2)
        x2 *= p * (1.0 - p)
        pr += x2
        np.divide(1.0, pr, out=v)
        np.multiply(xb, v, out=x2)
        x2 *= lr * (float(y[k]) - p)
        w += x2
    return -1


def fisher_update(F: np.ndarray, g2_mean: np.ndarray, a: float) -> np.ndarray:
    """EWC++ EMA in place: ``F <- (1 - a) F + a g2_mean``; returns F."""
    F *= np.float32(1.0 - a)
    F += np.float32(a) * g2_mean
    return F


def ewc_penalty_grad(theta: np.ndarray, anchor: np.ndarray, F: np.ndarray,
                     lam: float) -> tuple[float, np.ndarray]:
    """Penalty ``(lam/2) sum F (theta - anchor)^2`` and its gradient ``lam F (theta - anchor)``."""
    d = theta - anchor
    g = (lam * F * d).astype(np.float32, copy=False)
    return float(0.5 * lam * np.sum(F.astype(np.float64) * d.astype(np.float64) ** 2)), g


def topk(matrix: np.ndarray, query: np.ndarray, k: int, *, mask: np.ndarray | None = None,
         values: np.ndarray | None = None, min_value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of ``matrix`` (n, d) by dot product with ``query`` (d,), best first.

    ``mask`` (n,) bool keeps rows where True; ``values`` (n,) float32 with ``min_value``
    keeps rows where ``values >= min_value``. Ties break by lower row index. Returns
    (indices int64 (m,), scores float32 (m,)) with m = min(k, rows kept).
    """
    if matrix.shape[0] == 0 or k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return _best_kept((matrix @ query).astype(np.float32), k, mask, values, min_value)


def _best_kept(scores: np.ndarray, k: int, mask: np.ndarray | None, values: np.ndarray | None,
               min_value: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The k best ``scores`` among rows kept by ``mask`` and ``values >= min_value``; ties by row."""
    keep = np.ones(scores.shape[0], bool)
    if mask is not None:
        keep &= mask
    if values is not None and min_value is not None:
        keep &= values >= min_value
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    s = scores[idx].astype(np.float32)
    order = np.lexsort((idx, -s))[:k]
    return idx[order].astype(np.int64), s[order]


def quantize_int8(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 quantisation: returns (q int8 (n, d), scales float32 (n,))."""
    amax = np.abs(matrix).max(axis=1) if matrix.size else np.zeros(matrix.shape[0], np.float32)
    scales = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(matrix / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


def topk_int8(q: np.ndarray, scales: np.ndarray, query: np.ndarray, k: int, *,
              mask: np.ndarray | None = None, values: np.ndarray | None = None,
              min_value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k over an int8-quantised matrix: score_i = scales[i] * (q[i] . query)."""
    if q.shape[0] == 0 or k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return _best_kept((q.astype(np.float32) @ query) * scales, k, mask, values, min_value)


def topk_int8_rerank(q: np.ndarray, scales: np.ndarray, matrix: np.ndarray, query: np.ndarray, k: int,
                     candidates: int, *, mask: np.ndarray | None = None, values: np.ndarray | None = None,
                     min_value: float | None = None, ranges: np.ndarray | None = None,
                     rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two-stage top-k: an int8 x int8 scan proposes ``candidates`` rows, float32 re-ranks them.

    ``q`` (n, d) int8 with ``scales`` (n,) float32 is the int8 copy of ``matrix`` (n, d) float32
    (normally from :func:`quantize_int8`, but any int8 codes define a valid search). The query
    (d,), finite, is quantised as one row: ``qq, qs = quantize_int8(query[None])``. Stage 1
    scores the rows kept by the filter with integer dot products, exactly:
    ``approx_i = float32(q[i] . qq) * (scales[i] * qs)`` (all float32); the best
    ``max(candidates, k)`` of them (ties to the lower row) go to stage 2, which re-scores them
    exactly, ``matrix[i] . query`` in float32, and returns the best k of those, best first (ties
    to the lower row, NaN last). ``mask`` (n,) bool keeps rows where True; ``values`` (n,)
    **float64** with ``min_value`` keeps rows where ``values >= min_value`` in float64;
    ``ranges`` (r, 2) int64 of increasing, disjoint ``[lo, hi)`` row ranges within [0, n] keeps
    only the rows inside them (one pass over several runs of rows); ``rows`` (m,) int64 of
    distinct row numbers in [0, n), in any order, replaces ``ranges``: only the listed rows are
    considered (the lists an ivf probe picks). The result does not depend on the order of ``rows``.
    Returns (indices int64 (m,), exact scores float32 (m,)), m = min(k, rows kept).

    The result equals the exact filtered :func:`topk` of ``matrix`` whenever the true top k are
    among the candidates; with unit vectors the int8 score is within ~1e-3 of the exact one.
    """
    d = matrix.shape[1]
    qq, qs = quantize_int8(query.reshape(1, d))
    dots = q.astype(np.int32) @ qq[0].astype(np.int32)
    return _rerank(dots, scales, qs[0], matrix, query, k, candidates, mask, values, min_value, ranges, rows)


def quantize_int4(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int4, two codes per byte: returns (packed uint8 (n, ceil(d/2)), scales float32 (n,)).

    ``scale = max|x| / 7`` (1 for an all-zero row), ``code = clip(rint(x / scale), -7, 7) + 8``
    in 1..15; byte b holds dim 2b in its low nibble and dim 2b + 1 in its high nibble (8, i.e.
    zero, pads an odd dimension). The matrix must be finite.
    """
    n, d = matrix.shape
    amax = np.abs(matrix).max(axis=1) if matrix.size else np.zeros(n, np.float32)
    scales = np.where(amax > 0, amax / 7.0, 1.0).astype(np.float32)
    codes = np.full((n, d + d % 2), 8, np.uint8)
    codes[:, :d] = (np.clip(np.rint(matrix / scales[:, None]), -7, 7) + 8).astype(np.uint8)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8), scales


def topk_int4_rerank(q: np.ndarray, scales: np.ndarray, matrix: np.ndarray, query: np.ndarray, k: int,
                     candidates: int, *, mask: np.ndarray | None = None, values: np.ndarray | None = None,
                     min_value: float | None = None, ranges: np.ndarray | None = None,
                     rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk_int8_rerank` over int4 codes: half the bytes scanned, ~16x the rounding error.

    ``q`` (n, ceil(d/2)) uint8 packed as by :func:`quantize_int4` (any bytes are valid codes),
    ``scales`` (n,), ``matrix`` (n, d). The query is quantised to int8 (``qq, qs`` as in
    :func:`topk_int8_rerank`) and ``approx_i = float32(sum_j (code_ij - 8) * qq_j) * (scales[i] * qs)``
    (the pad nibble of an odd dimension meets a zero query code); the rest is
    :func:`topk_int8_rerank`'s. For unit vectors the int4 score is within ~1e-2 of the cosine, so
    it wants a few hundred candidates where int8 wants tens.
    """
    n, d = matrix.shape
    qq, qs = quantize_int8(query.reshape(1, d))
    codes = np.empty((n, 2 * q.shape[1]), np.int32)
    codes[:, 0::2] = q & 15
    codes[:, 1::2] = q >> 4
    dots = (codes[:, :d] - 8) @ qq[0].astype(np.int32)
    return _rerank(dots, scales, qs[0], matrix, query, k, candidates, mask, values, min_value, ranges, rows)


def _rerank(dots: np.ndarray, scales: np.ndarray, qs: np.float32, matrix: np.ndarray, query: np.ndarray, k: int,
            candidates: int, mask: np.ndarray | None, values: np.ndarray | None, min_value: float | None,
            ranges: np.ndarray | None, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2 of the quantised searches: filter, best candidates by approx, exact re-rank."""
    n = matrix.shape[0]
    if n == 0 or k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    approx = dots.astype(np.float32) * (scales * qs)
    keep = np.ones(n, bool)
    if mask is not None:
        keep &= mask
    if values is not None and min_value is not None:
        keep &= values >= min_value
    if ranges is not None:
        inside = np.zeros(n + 1, np.int64)
        np.add.at(inside, ranges[:, 0], 1)
        np.add.at(inside, ranges[:, 1], -1)
        keep &= np.cumsum(inside[:n]) > 0
    if rows is not None:
        listed = np.zeros(n, bool)
        listed[rows] = True
        keep &= listed
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    cand = idx[np.lexsort((idx, -approx[idx]))[: max(int(candidates), int(k))]]
    exact = (matrix[cand] @ query).astype(np.float32)
    order = np.lexsort((cand, -exact))[:k]
    return cand[order].astype(np.int64), exact[order]


def kmeans_assign(X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by squared Euclidean distance: X (n, d), C (k, d) ->
    (labels int64 (n,), squared distances float32 (n,)); ties go to the lower centroid index."""
    if X.shape[0] == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    d2 = (X * X).sum(1)[:, None] - 2.0 * (X @ C.T) + (C * C).sum(1)[None, :]
    d2 = np.maximum(d2, 0.0)
    labels = np.argmin(d2, axis=1)
    return labels.astype(np.int64), d2[np.arange(X.shape[0]), labels].astype(np.float32)


def ivf_probe(centroids: np.ndarray, norms: np.ndarray, sizes: np.ndarray, query: np.ndarray,
              need: float) -> np.ndarray:
    """The ivf lists to scan for ``query``: centroids (L, d), ``norms`` their squared norms (L,),
    ``sizes`` each list's row count (L,) -> list numbers (int64, increasing). The lists are taken
    nearest first by squared distance to the query (``norms - 2 centroids @ query``: the query's
    own norm is common to all; ties to the lower list, NaN last) until their sizes sum to at
    least ``need`` (at least one list; all of them when they never do)."""
    L = centroids.shape[0]
    if L == 0:
        return np.empty(0, np.int64)
    d2 = (norms - np.float32(2.0) * (centroids @ query)).astype(np.float32)
    order = np.lexsort((np.arange(L), np.isnan(d2), d2))
    covered = np.cumsum(sizes[order].astype(np.float64))
    take = min(L, int(np.searchsorted(covered, need)) + 1)
    return np.sort(order[:take]).astype(np.int64)


def ivf_runs(lists: np.ndarray, offsets: np.ndarray, ordered: int, n: int) -> np.ndarray:
    """The row runs ((r, 2) int64, increasing) of ``lists`` over rows stored in list order: list
    j holds rows ``offsets[j]:offsets[j + 1]`` (clipped to ``ordered``, the rows in list order),
    and the rows ``ordered:n`` appended since follow as one more run."""
    runs = np.stack([np.minimum(offsets[lists], ordered), np.minimum(offsets[lists + 1], ordered)], 1)
    if ordered < n:
        runs = np.concatenate([runs, [[ordered, n]]])
    return runs.astype(np.int64).reshape(-1, 2)


def ivf_topk(q: np.ndarray, scales: np.ndarray, matrix: np.ndarray, query: np.ndarray, k: int,
             candidates: int, exact_rows: int, centroids: np.ndarray, norms: np.ndarray, sizes: np.ndarray,
             offsets: np.ndarray, ordered: int, need: float, *, mask: np.ndarray | None = None,
             values: np.ndarray | None = None, min_value: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """An ivf query in one call: :func:`ivf_probe` picks the lists (``centroids``, ``norms``,
    ``sizes``, ``need``), :func:`ivf_runs` turns them into row runs (``offsets``, ``ordered``: the
    rows are stored in list order) and :func:`topk_int8_rerank` searches those runs with
    ``candidates`` candidates, or with every row of the runs as a candidate (an exact float32
    scan) when they hold at most ``exact_rows`` rows. Returns (indices, scores, rows in the runs)."""
    lists = ivf_probe(centroids, norms, sizes, query, need)
    runs = ivf_runs(lists, offsets, ordered, matrix.shape[0])
    count = int((runs[:, 1] - runs[:, 0]).sum())
    cand = max(count, k) if count <= exact_rows else candidates
    idx, sc = topk_int8_rerank(q, scales, matrix, query, k, cand, mask=mask, values=values, min_value=min_value,
                               ranges=runs)
    return idx, sc, count


def hash_embed(texts: list[str], dim: int, w_word: float = 1.0, w_bigram: float = 0.5,
               w_char: float = 0.25) -> np.ndarray:
    """The hashing embedder over a list of texts (see :mod:`swarm_sona.embedding.embedders`)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i] = hashing_embed_reference(t, dim, w_word, w_bigram, w_char)
    return out


# ---- linear layers over a group-wise quantised weight ----------------------------------------
# W (d_out, d_in) is flattened row-major and cut into groups of ``group_size`` (even) entries,
# one float32 ``absmax`` per group (the last group zero-padded). ``scheme`` "nf4": ``codes`` uint8
# with two codes per byte, low nibble first, entry = NF4_LEVELS[code] * absmax; "int8": ``codes``
# int8, entry = (code * float32(1/127)) * absmax (both products in float32).

def dequantize_rows(codes: np.ndarray, absmax: np.ndarray, shape: tuple[int, int], group_size: int, scheme: str,
                    lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Rows ``[lo, hi)`` of the quantised W as float32 ``(hi - lo, d_in)`` (the C kernels
    dequantise to the same bits)."""
    d_out, d_in = shape
    hi = d_out if hi is None else hi
    a, b = lo * d_in, hi * d_in
    if scheme == "nf4":
        s = a - (a & 1)
        levels = NF4_PAIRS[codes[s >> 1:(b + 1) >> 1]].reshape(-1)[a - s:b - s]
    else:
        levels = codes[a:b].astype(np.float32) * np.float32(1.0 / 127)
    g0 = a // group_size
    scale = np.repeat(absmax[g0:-(-b // group_size)], group_size)[a - g0 * group_size:b - g0 * group_size]
    return (levels * scale).reshape(hi - lo, d_in)


def tiled_qlinear(x2: np.ndarray, shape: tuple[int, int], dequant: Callable[[int, int], np.ndarray], *,
                  transpose: bool, tile_entries: int = QTILE_ENTRIES) -> np.ndarray:
    """``x2 @ W^T`` (x2 (n, d_in)) or, with ``transpose``, ``x2 @ W`` (x2 (n, d_out)), W taken in
    tiles of rows ``dequant(lo, hi)`` of at most ``tile_entries`` entries (BLAS per tile)."""
    d_out, d_in = shape
    rows = max(1, tile_entries // max(d_in, 1))
    n = x2.shape[0]
    y = np.zeros((n, d_in), np.float32) if transpose else np.empty((n, d_out), np.float32)
    for lo in range(0, d_out, rows):
        hi = min(d_out, lo + rows)
        tile = dequant(lo, hi)
        if transpose:
            y += x2[:, lo:hi] @ tile
        else:
            y[:, lo:hi] = x2 @ tile.T
    return y


def qlinear(x: np.ndarray, codes: np.ndarray, absmax: np.ndarray, shape: tuple[int, int], group_size: int,
            scheme: str) -> np.ndarray:
    """``x @ W^T`` for the quantised W (d_out, d_in) and x (d_in,) or (n, d_in): a linear layer's
    forward on its quantised base, without a float copy of W."""
    x2 = x if x.ndim == 2 else x[None, :]
    y = tiled_qlinear(x2, shape, lambda lo, hi: dequantize_rows(codes, absmax, shape, group_size, scheme, lo, hi),
                      transpose=False)
    return y[0] if x.ndim == 1 else y


def qlinear_t(g: np.ndarray, codes: np.ndarray, absmax: np.ndarray, shape: tuple[int, int], group_size: int,
              scheme: str) -> np.ndarray:
    """``g @ W`` for g (d_out,) or (n, d_out): the input gradient of :func:`qlinear`."""
    g2 = g if g.ndim == 2 else g[None, :]
    y = tiled_qlinear(g2, shape, lambda lo, hi: dequantize_rows(codes, absmax, shape, group_size, scheme, lo, hi),
                      transpose=True)
    return y[0] if g.ndim == 1 else y
