"""Every kernel of ``swarm_sona.kernels`` against its numpy reference.

Runs against the active backend (native when the extension is built; numpy under
``SWARM_SONA_NATIVE=0``, which CI also runs). Inputs are drawn by hypothesis with sizes 0 and
1, odd dimensions, non-contiguous / Fortran / float64 / list inputs for read-only arguments.
Where the math allows, values are small multiples of 1/2 so that float32 arithmetic is exact
in any summation order and results can be compared exactly (ties included); elsewhere the
tolerance is scaled by the magnitude of the terms.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from swarm_sona import kernels as nk
from swarm_sona.kernels import KernelInputError, numpy_backend
from swarm_sona.kernels import reference as ref

ACTIVE = nk.backend()
BACKENDS = [ACTIVE] if ACTIVE is numpy_backend else [ACTIVE, numpy_backend]
BACKEND_IDS = [b.__name__.rsplit(".", 1)[-1] for b in BACKENDS]
F32 = np.float32
# local settings (a global profile would change other modules' tests); KERNEL_EXAMPLES=2000 for a long run
kernel_settings = settings(deadline=None, max_examples=int(os.environ.get("KERNEL_EXAMPLES", "60")))

dims = st.integers(0, 9)
pos_dims = st.integers(1, 9)
halves = st.integers(-6, 6).map(lambda i: i / 2.0)
reals = st.floats(-2.0, 2.0, width=32, allow_subnormal=False)
LAYOUTS = ["c", "strided", "fortran", "float64", "list"]


def exact_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(F32, shape, elements=halves)


def float_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(F32, shape, elements=reals)


def relayout(a: np.ndarray, layout: str):
    """The same values in another dtype/layout (read-only inputs must accept all of them)."""
    if layout == "c":
        return a
    if layout == "strided":  # a non-contiguous view holding exactly a's values
        if a.ndim == 0:
            return a
        wide = np.repeat(a, 2, axis=-1)
        return wide[..., ::2]
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "float64":
        return a.astype(np.float64)
    return a.tolist() if a.size else a  # a nested list cannot hold an empty 2-D shape


def close(got, want, mag, rtol: float = 1e-4, atol: float = 2e-6) -> None:
    """allclose with the absolute tolerance scaled by the size of the terms that were summed."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.max(mag, initial=0.0))))


# ---- LoRA ---------------------------------------------------------------------------------

@st.composite
def lora_case(draw, square: bool, exact: bool):
    arrays = exact_arrays if exact else float_arrays
    n = draw(st.none() | dims)
    d_in = draw(dims)
    d_out = d_in if square else draw(dims)
    r = draw(st.integers(0, 4))
    x = draw(arrays((d_in,) if n is None else (n, d_in)))
    A = draw(arrays((r, d_in)))
    B = draw(arrays((d_out, r)))
    scale = draw(st.sampled_from([0.5, 1.0, 2.0]) if exact else st.floats(-2, 2))
    return x, A, B, scale, draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(LAYOUTS))


@kernel_settings
@given(lora_case(square=True, exact=True))
@example((np.zeros(0, F32), np.zeros((1, 0), F32), np.zeros((0, 1), F32), 1.0, "c", "c"))
@example((np.ones((1, 1), F32), np.ones((1, 1), F32), np.ones((1, 1), F32), 0.5, "strided", "float64"))
def test_micro_apply_exact(case):
    h, A, B, scale, lh, lw = case
    got = nk.micro_apply(relayout(h, lh), relayout(A, lw), relayout(B, lw), scale)
    np.testing.assert_array_equal(got, ref.micro_apply(h, A, B, scale))
    assert got.dtype == F32 and got.shape == h.shape


@kernel_settings
@given(lora_case(square=False, exact=True))
def test_lora_delta_exact(case):
    x, A, B, scale, lx, lw = case
    got = nk.lora_delta(relayout(x, lx), relayout(A, lw), B, scale)
    want = ref.lora_delta(x, A, B, scale)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == F32


@kernel_settings
@given(lora_case(square=False, exact=False))
def test_lora_delta_float(case):
    x, A, B, scale, lx, _ = case
    got = nk.lora_delta(relayout(x, lx), A, B, scale)
    mag = abs(scale) * (np.abs(x.astype(np.float64)) @ np.abs(A.T) @ np.abs(B.T))
    close(got, ref.lora_delta(x, A, B, scale), mag)


@kernel_settings
@given(lora_case(square=True, exact=False))
def test_micro_apply_float(case):
    h, A, B, scale, _, _ = case
    mag = np.abs(h) + abs(scale) * (np.abs(h.astype(np.float64)) @ np.abs(A.T) @ np.abs(B.T))
    close(nk.micro_apply(h, A, B, scale), ref.micro_apply(h, A, B, scale), mag)


@st.composite
def grad_case(draw):
    n = draw(st.none() | dims)
    d_in, d_out, r = draw(dims), draw(dims), draw(st.integers(0, 4))
    shape = (lambda d: (d,)) if n is None else (lambda d: (n, d))
    return (draw(float_arrays(shape(d_in))), draw(float_arrays(shape(d_out))), draw(float_arrays((r, d_in))),
            draw(float_arrays((d_out, r))), draw(st.floats(-2, 2)), draw(st.sampled_from(LAYOUTS)))


@kernel_settings
@given(grad_case())
def test_lora_grad(case):
    x, g, A, B, scale, layout = case
    gA, gB = nk.lora_grad(relayout(x, layout), relayout(g, layout), A, B, scale)
    wA, wB = ref.lora_grad(x, g, A, B, scale)
    x2, g2 = np.abs(np.atleast_2d(x)).astype(np.float64), np.abs(np.atleast_2d(g)).astype(np.float64)
    close(gA, wA, abs(scale) * ((g2 @ np.abs(B)).T @ x2))
    close(gB, wB, abs(scale) * (g2.T @ (x2 @ np.abs(A.T))))


# ---- instant loop -------------------------------------------------------------------------

@st.composite
def instant_case(draw):
    d = draw(st.integers(0, 11))
    r = draw(st.integers(1, 3))
    M = draw(st.integers(0, 4))
    arm = draw(st.integers(-1, M - 1))
    params = dict(
        A=draw(float_arrays((r, d))), B=draw(float_arrays((d, r))), wv=draw(float_arrays((d,))),
        bv=draw(float_arrays((1,))), Wr=draw(float_arrays((M, d))), br=draw(float_arrays((M,))))
    h = draw(float_arrays((d,)))
    scalars = dict(scale=draw(st.sampled_from([0.5, 1.0, 2.0])), arm=arm, reward=draw(st.floats(0, 1)),
                   success=draw(st.sampled_from([0.0, 1.0])), lr=draw(st.sampled_from([0.01, 0.1, 0.5])),
                   train_a=draw(st.booleans()), clip=draw(st.sampled_from([0.0, 0.3, 5.0])))
    return h, params, scalars, draw(st.sampled_from(LAYOUTS))


def _run_instant(fn, h, params, s):
    return fn(h, params["A"], params["B"], s["scale"], params["wv"], params["bv"], params["Wr"], params["br"],
              s["arm"], s["reward"], s["success"], s["lr"], s["train_a"], s["clip"])


@kernel_settings
@given(instant_case())
def test_instant_step(case):
    h, params, s, layout = case
    mine = {k: v.copy() for k, v in params.items()}
    theirs = {k: v.copy() for k, v in params.items()}
    v1, u1 = _run_instant(nk.instant_step, relayout(h, layout), mine, s)
    v2, u2 = _run_instant(ref.instant_step, h, theirs, s)
    assert isinstance(v1, float) and isinstance(u1, float)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-6)
    if s["arm"] < 0:
        assert np.isnan(u1) and np.isnan(u2)
    else:
        np.testing.assert_allclose(u1, u2, rtol=1e-5, atol=1e-6)
    mag = 1.0 + float(np.abs(h).sum()) * 4 * (1 + s["scale"]) ** 2
    for k in params:
        close(mine[k], theirs[k], mag, atol=1e-6)
        assert mine[k].dtype == F32


def _instant_params(d=6, r=2, M=3):
    rng = np.random.default_rng(1)
    f = lambda *shape: rng.standard_normal(shape).astype(F32)  # noqa: E731
    return f(d), dict(A=f(r, d), B=f(d, r), wv=f(d), bv=f(1), Wr=f(M, d), br=f(M))


_BAD_INPLACE = [
    ("A", lambda a: a.astype(np.float64), "float32"),
    ("B", lambda a: np.asfortranarray(np.repeat(a, 2, axis=1)[:, ::2]), "C-contiguous"),
    ("Wr", lambda a: a.tolist(), "numpy float32 array"),
    ("wv", lambda a: np.frombuffer(a.tobytes(), F32), "read-only"),
    ("bv", lambda a: np.zeros(2, F32), "shape (1,)"),
    ("br", lambda a: a[:-1].copy(), "shape (3,)"),
]


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("name,bad,words", _BAD_INPLACE, ids=[b[0] for b in _BAD_INPLACE])
def test_instant_step_refuses_bad_inplace_arrays_and_changes_nothing(backend, name, bad, words):
    h, params = _instant_params()
    before = {k: v.copy() for k, v in params.items()}
    params[name] = bad(params[name])
    with pytest.raises(KernelInputError, match=rf"instant_step: argument '{name}'.*{re.escape(words)}"):
        _run_instant(backend.instant_step, h, params, dict(scale=1.0, arm=1, reward=1.0, success=1.0, lr=0.1,
                                                            train_a=True, clip=0.0))
    for k, v in before.items():
        if k != name:
            np.testing.assert_array_equal(params[k], v)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_instant_step_refuses_arm_out_of_range(backend):
    h, p = _instant_params()
    with pytest.raises(KernelInputError, match="'arm' is 3 but the router head has 3 rows"):
        _run_instant(backend.instant_step, h, p, dict(scale=1.0, arm=3, reward=1.0, success=1.0, lr=0.1,
                                                      train_a=False, clip=0.0))
    before = {k: v.copy() for k, v in p.items()}
    _run_instant(backend.instant_step, h, p, dict(scale=1.0, arm=-(10**30), reward=1.0, success=1.0, lr=0.1,
                                                  train_a=False, clip=0.0))  # any negative arm: no router label
    np.testing.assert_array_equal(p["Wr"], before["Wr"])
    assert not np.array_equal(p["wv"], before["wv"])
    with pytest.raises(KernelInputError, match="'arm' must be an integer"):
        _run_instant(backend.instant_step, h, p, dict(scale=1.0, arm=1.5, reward=1.0, success=1.0, lr=0.1,
                                                      train_a=False, clip=0.0))


def test_instant_step_learns():
    """Repeated steps move the value head's prediction toward the reward."""
    h, p = _instant_params(d=16, r=1, M=2)
    first = None
    for _ in range(200):
        v, _u = nk.instant_step(h, p["A"], p["B"], 0.5, p["wv"], p["bv"], p["Wr"], p["br"], 0, 0.9, 1.0, 0.05)
        first = v if first is None else first
    assert abs(v - 0.9) < abs(first - 0.9) and abs(v - 0.9) < 0.05


# ---- EWC++ --------------------------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7)


@kernel_settings
@given(shapes.flatmap(lambda s: st.tuples(float_arrays(s), float_arrays(s))), st.floats(0, 1),
       st.sampled_from(LAYOUTS))
def test_fisher_update(arrs, a, layout):
    F, g = arrs
    F = np.abs(F)
    g2 = g * g
    mine, theirs = F.copy(), F.copy()
    out = nk.fisher_update(mine, relayout(g2, layout), a)
    assert out is mine
    ref.fisher_update(theirs, g2, a)
    close(mine, theirs, np.abs(F) + np.abs(g2))


def test_fisher_update_broadcasts_and_refuses_converted_copies():
    F = np.ones((2, 3), F32)
    nk.fisher_update(F, 3.0, 0.5)
    np.testing.assert_array_equal(F, np.full((2, 3), 2.0, F32))
    for bad in (np.ones((2, 3)), np.ones((3, 2), F32).T):
        with pytest.raises(KernelInputError, match="fisher_update: argument 'F'"):
            nk.fisher_update(bad, 1.0, 0.5)
    with pytest.raises(KernelInputError, match="'g2_mean' must have shape \\(2, 3\\)"):
        nk.fisher_update(F, np.ones(4, F32), 0.5)


@kernel_settings
@given(shapes.flatmap(lambda s: st.tuples(float_arrays(s), float_arrays(s), float_arrays(s))),
       st.floats(0, 100), st.sampled_from(LAYOUTS))
def test_ewc_penalty_grad(arrs, lam, layout):
    theta, anchor, F = arrs
    F = np.abs(F)
    pen, g = nk.ewc_penalty_grad(relayout(theta, layout), anchor, relayout(F, layout), lam)
    wpen, wg = ref.ewc_penalty_grad(theta, anchor, F, lam)
    assert isinstance(pen, float)
    np.testing.assert_allclose(pen, wpen, rtol=1e-5, atol=1e-6)
    close(g, wg, lam * F * (np.abs(theta) + np.abs(anchor)))


# ---- search -------------------------------------------------------------------------------

@st.composite
def search_case(draw):
    n, d = draw(dims), draw(dims)
    M = draw(exact_arrays((n, d)))
    q = draw(exact_arrays((d,)))
    k = draw(st.integers(-1, n + 2))
    mask = draw(st.none() | hnp.arrays(np.bool_, (n,)))
    values = draw(st.none() | exact_arrays((n,)))
    min_value = draw(st.none() | halves)
    return M, q, k, mask, values, min_value, draw(st.sampled_from(LAYOUTS))


@kernel_settings
@given(search_case())
def test_topk_exact_with_ties_and_filters(case):
    M, q, k, mask, values, min_value, layout = case
    idx, sc = nk.topk(relayout(M, layout), relayout(q, layout), k, mask=mask, values=values, min_value=min_value)
    widx, wsc = ref.topk(M, q, k, mask=mask, values=values, min_value=min_value)
    assert idx.dtype == np.int64 and sc.dtype == F32
    np.testing.assert_array_equal(idx, widx)
    np.testing.assert_array_equal(sc, wsc)


def test_topk_nan_scores_rank_last_and_int_mask_converts():
    M = np.array([[1.0], [np.nan], [3.0], [2.0]], F32)
    q = np.ones(1, F32)
    idx, sc = nk.topk(M, q, 4)
    np.testing.assert_array_equal(idx, ref.topk(M, q, 4)[0])
    assert idx.tolist() == [2, 3, 0, 1]
    assert nk.topk(M, q, 10**30)[0].tolist() == [2, 3, 0, 1]  # k beyond any index type
    idx, _ = nk.topk(M, q, 2, mask=[1, 0, 0, 1])
    assert idx.tolist() == [3, 0]
    idx, _ = nk.topk(M, q, 5, values=np.array([0.1, 0.2, 0.1, 0.3], F32), min_value=0.1)
    assert idx.tolist() == [2, 3, 0, 1]  # float32 comparison: 0.1f >= 0.1 holds


@kernel_settings
@given(hnp.arrays(F32, st.tuples(dims, dims), elements=reals), st.sampled_from(LAYOUTS))
@example(np.zeros((3, 0), F32), "c")
@example(np.array([[0.0, 0.0], [1.5, -127.0]], F32), "strided")
def test_quantize_int8(M, layout):
    q, s = nk.quantize_int8(relayout(M, layout))
    wq, ws = ref.quantize_int8(M)
    assert q.dtype == np.int8 and s.dtype == F32
    np.testing.assert_array_equal(s, ws)
    np.testing.assert_array_equal(q, wq)


@st.composite
def int8_case(draw):
    n, d = draw(dims), draw(dims)
    Q = draw(hnp.arrays(np.int8, (n, d), elements=st.integers(-127, 127)))
    scales = draw(hnp.arrays(F32, (n,), elements=st.sampled_from([0.25, 0.5, 1.0, 2.0])))
    q = draw(exact_arrays((d,)))
    k = draw(st.integers(-1, n + 2))
    mask = draw(st.none() | hnp.arrays(np.bool_, (n,)))
    values = draw(st.none() | exact_arrays((n,)))
    min_value = draw(st.none() | halves)
    return Q, scales, q, k, mask, values, min_value, draw(st.booleans())


@kernel_settings
@given(int8_case())
def test_topk_int8_exact(case):
    Q, scales, q, k, mask, values, min_value, strided = case
    Qin = np.repeat(Q, 2, axis=1)[:, ::2] if strided else Q
    idx, sc = nk.topk_int8(Qin, scales, q, k, mask=mask, values=values, min_value=min_value)
    widx, wsc = ref.topk_int8(Q, scales, q, k, mask=mask, values=values, min_value=min_value)
    np.testing.assert_array_equal(idx, widx)
    np.testing.assert_array_equal(sc, wsc)


def test_topk_int8_roundtrip_finds_the_same_neighbours():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((500, 33)).astype(F32)
    q, s = nk.quantize_int8(M)
    query = M[17] + 0.01
    assert nk.topk_int8(q, s, query, 1)[0].tolist() == [17]
    with pytest.raises(KernelInputError, match="'q' must be an int8 array"):
        nk.topk_int8(M, s, query, 1)


# the two-stage search: dims that exercise the 32- and 64-byte SIMD steps and their tails,
# row counts that exercise the 4-row groups and the 64-row blocks
rerank_dims = st.sampled_from([0, 1, 2, 7, 31, 32, 33, 63, 64, 65, 130, 259])
rerank_rows = st.integers(0, 9) | st.integers(60, 140)
INT8_PATHS = ([p for p, ok in nk.backend()._native.int8_paths() if ok]
              if nk.info()["active"] == "native" else ["numpy"])


@contextlib.contextmanager
def int8_path(path: str):
    """Switch the native int8 dot-product path for a block (nothing to switch on numpy)."""
    if path == "numpy":
        yield
        return
    native = nk.backend()._native
    assert native.set_int8_isa(path) == path
    try:
        yield
    finally:
        native.set_int8_isa(None)


@st.composite
def rerank_case(draw, bits: int = 8):
    n, d = draw(rerank_rows), draw(rerank_dims)
    if bits == 8:
        Q = draw(hnp.arrays(np.int8, (n, d), elements=st.integers(-128, 127)))
    else:  # any bytes are valid packed int4 codes
        Q = draw(hnp.arrays(np.uint8, (n, (d + 1) // 2), elements=st.integers(0, 255)))
    scales = draw(hnp.arrays(F32, (n,), elements=st.sampled_from([0.25, 0.5, 1.0, 2.0])))
    M = draw(exact_arrays((n, d)))
    q = draw(exact_arrays((d,)))
    k = draw(st.integers(-1, n + 2))
    cand = draw(st.integers(-1, n + 3))
    mask = draw(st.none() | hnp.arrays(np.bool_, (n,)))
    values = draw(st.none() | hnp.arrays(np.float64, (n,), elements=halves))
    min_value = draw(st.none() | halves)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    ranges = draw(st.none() | st.just(np.array(cuts[: len(cuts) // 2 * 2], np.int64).reshape(-1, 2)))
    # a row list in any order (an ivf probe's lists) replaces the ranges
    rows = None if ranges is not None else draw(st.none() | st.permutations(range(n)).flatmap(
        lambda p: st.integers(0, len(p)).map(lambda m: np.array(p[:m], np.int64))))
    return (Q, scales, M, q, k, cand, mask, values, min_value, ranges, rows, draw(st.sampled_from(LAYOUTS)),
            draw(st.booleans()))


@kernel_settings
@given(hnp.arrays(F32, st.tuples(dims, dims), elements=reals), st.sampled_from(LAYOUTS))
def test_quantize_int4_packs_two_codes_per_byte_within_half_a_step(M, layout):
    packed, s = nk.quantize_int4(relayout(M, layout))
    wp, ws = ref.quantize_int4(M)
    np.testing.assert_array_equal(packed, wp)
    np.testing.assert_array_equal(s, ws)
    n, d = M.shape
    assert packed.dtype == np.uint8 and packed.shape == (n, (d + 1) // 2) and s.dtype == F32
    codes = np.stack([packed & 15, packed >> 4], axis=2).reshape(n, 2 * packed.shape[1]).astype(np.int32)
    assert codes.size == 0 or (codes.min() >= 1 and codes.max() <= 15)
    assert d % 2 == 0 or np.all(codes[:, d] == 8)  # the pad nibble is a zero
    err = np.abs((codes[:, :d] - 8) * s[:, None] - M)
    assert np.all(err <= 0.5 * s[:, None] * (1 + 1e-5) + 1e-30)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("path", INT8_PATHS)
@settings(deadline=None, max_examples=max(10, kernel_settings.max_examples // 2))  # x paths x bits
@given(data=st.data())
def test_topk_int8_and_int4_rerank_match_the_reference(path, bits, data):
    Q, scales, M, q, k, cand, mask, values, min_value, ranges, rows, layout, strided = data.draw(rerank_case(bits))
    Qin = np.repeat(Q, 2, axis=1)[:, ::2] if strided else Q
    vin = values.astype(F32) if values is not None and layout == "float64" else values  # halves: exact in f32
    rin = ranges.tolist() if ranges is not None and layout == "list" else ranges
    fn = f"topk_int{bits}_rerank"
    with int8_path(path):
        idx, sc = getattr(nk, fn)(Qin, relayout(scales, layout), relayout(M, layout), relayout(q, layout), k, cand,
                                  mask=mask, values=vin, min_value=min_value, ranges=rin, rows=rows)
    widx, wsc = getattr(ref, fn)(Q, scales, M, q, k, cand, mask=mask, values=values, min_value=min_value,
                                 ranges=ranges, rows=rows)
    assert idx.dtype == np.int64 and sc.dtype == F32
    np.testing.assert_array_equal(idx, widx)
    np.testing.assert_array_equal(sc, wsc)
    if rows is not None:  # the order of a row list does not change the answer (ties go to the lower row)
        with int8_path(path):
            ridx, rsc = getattr(nk, fn)(Q, scales, M, q, k, cand, mask=mask, values=values, min_value=min_value,
                                        rows=rows[::-1].copy())
        np.testing.assert_array_equal(ridx, widx)
        np.testing.assert_array_equal(rsc, wsc)


@pytest.mark.parametrize("path", INT8_PATHS)
def test_rerank_handles_the_extremes_of_the_code_ranges(path):
    """Rows of -128 (int8) and 255 / 0 bytes (int4), tails after the SIMD blocks, ranges."""
    M, q = np.zeros((5, 65), F32), np.ones(65, F32)
    for bits, codes in ((8, np.full((5, 65), -128, np.int8)), (4, np.full((5, 33), 255, np.uint8)),
                        (4, np.zeros((5, 33), np.uint8))):
        fn = f"topk_int{bits}_rerank"
        with int8_path(path):
            got = getattr(nk, fn)(codes, np.ones(5, F32), M, q, 2, 3, ranges=[[0, 1], [3, 5]])
        want = getattr(ref, fn)(codes, np.ones(5, F32), M, q, 2, 3, ranges=np.array([[0, 1], [3, 5]]))
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("path", INT8_PATHS)
def test_topk_int8_rerank_finds_the_exact_neighbours_of_unit_vectors(path):
    """Quantised unit vectors, 64 (int8) or 256 (int4) candidates: the exact float32 filtered top-k."""
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((40, 256)).astype(F32)
    M = centres[rng.integers(40, size=3000)] + 0.6 * rng.standard_normal((3000, 256)).astype(F32)
    M /= np.linalg.norm(M, axis=1, keepdims=True)
    q8, s = nk.quantize_int8(M)
    q4, s4 = nk.quantize_int4(M)
    reward = rng.random(3000)
    for i in range(20):
        query = M[i * 7] + 0.03 * rng.standard_normal(256).astype(F32)
        query /= np.linalg.norm(query)
        want = ref.topk(M, query, 5, mask=reward >= 0.5)
        with int8_path(path):
            got = nk.topk_int8_rerank(q8, s, M, query, 5, 64, values=reward, min_value=0.5)
            got4 = nk.topk_int4_rerank(q4, s4, M, query, 5, 256, values=reward, min_value=0.5)
        for g in (got, got4):
            np.testing.assert_array_equal(g[0], want[0])
            np.testing.assert_allclose(g[1], want[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_topk_int8_rerank_refuses_bad_input(backend):
    q8, s = np.zeros((3, 4), np.int8), np.ones(3, F32)
    M, query = np.zeros((3, 4), F32), np.ones(4, F32)
    with pytest.raises(KernelInputError, match="topk_int8_rerank: argument 'q' must be an int8 array"):
        backend.topk_int8_rerank(M, s, M, query, 1, 2)
    with pytest.raises(KernelInputError, match="argument 'query' contains NaN or inf"):
        backend.topk_int8_rerank(q8, s, M, np.array([0, np.nan, 0, 0], F32), 1, 2)
    with pytest.raises(KernelInputError, match="argument 'q' must have shape \\(2, 4\\) for a matrix of shape"):
        backend.topk_int8_rerank(q8, s, M[:2], query, 1, 2)
    with pytest.raises(KernelInputError, match="argument 'q' must have shape \\(3, 2\\) for a matrix"):
        backend.topk_int4_rerank(np.zeros((3, 4), np.uint8), s, M, query, 1, 2)
    with pytest.raises(KernelInputError, match="topk_int4_rerank: argument 'q' must be a uint8 array"):
        backend.topk_int4_rerank(q8, s, M, query, 1, 2)
    with pytest.raises(KernelInputError, match="quantize_int4: argument 'matrix' contains NaN or inf"):
        backend.quantize_int4(np.array([[1.0, np.inf]]))
    with pytest.raises(KernelInputError, match="argument 'values' must have shape \\(3,\\)"):
        backend.topk_int8_rerank(q8, s, M, query, 1, 2, values=np.ones(2), min_value=0.5)
    with pytest.raises(KernelInputError, match="argument 'candidates' must be an integer"):
        backend.topk_int8_rerank(q8, s, M, query, 1, 2.5)
    with pytest.raises(KernelInputError, match="argument 'rows' must not repeat a row"):
        backend.topk_int8_rerank(q8, s, M, query, 1, 2, rows=[2, 0, 2])
    for bad_rows in ([3], [-1]):
        with pytest.raises(KernelInputError, match="argument 'rows' must hold row numbers within \\[0, 3\\)"):
            backend.topk_int4_rerank(np.zeros((3, 2), np.uint8), s, M, query, 1, 2, rows=bad_rows)
    with pytest.raises(KernelInputError, match="'rows' and 'ranges' exclude each other"):
        backend.topk_int8_rerank(q8, s, M, query, 1, 2, rows=[0], ranges=[[0, 1]])
    with pytest.raises(KernelInputError, match="argument 'rows' must hold integers"):
        backend.topk_int8_rerank(q8, s, M, query, 1, 2, rows=[0.5])
    assert backend.topk_int8_rerank(q8, s, M, query, 3, 3, rows=[2, 0])[0].tolist() == [0, 2]  # ties: lower row
    assert backend.topk_int8_rerank(q8, s, M, query, 3, 3, rows=np.array([1], np.int32))[0].tolist() == [1]
    assert backend.topk_int8_rerank(q8, s, M, query, 3, 3, rows=[])[0].tolist() == []
    for bad in ([[1, 0]], [[0, 2], [1, 3]], [[0, 4]], [[-1, 1]]):
        with pytest.raises(KernelInputError, match="'ranges' must be increasing, disjoint"):
            backend.topk_int8_rerank(q8, s, M, query, 1, 2, ranges=bad)
    with pytest.raises(KernelInputError, match="argument 'ranges' must have shape"):
        backend.topk_int8_rerank(q8, s, M, query, 1, 2, ranges=[0, 1, 2])
    assert backend.topk_int8_rerank(q8, s, M, query, 3, 3, ranges=[[0, 1], [2, 3]])[0].tolist() == [0, 2]
    assert backend.topk_int8_rerank(q8, s, M, query, 3, 3, ranges=np.zeros((0, 2), np.int64))[0].tolist() == []
    with pytest.raises(KernelInputError, match="at most 65536 are supported"):
        backend.topk_int8_rerank(np.zeros((0, 65537), np.int8), np.ones(0, F32), np.zeros((0, 65537), F32),
                                 np.ones(65537, F32), 1, 2)
    # values compare in float64: 0.1 as float32 is 0.10000000149..., which passes min_value=0.1
    idx, _ = backend.topk_int8_rerank(q8, s, M, query, 5, 5, values=np.array([0.1, 0.0999, 0.2], F32), min_value=0.1)
    assert idx.tolist() == [0, 2]
    assert backend.topk_int8_rerank(q8, s, M, query, 10**30, 10**40)[0].tolist() == [0, 1, 2]


@st.composite
def kmeans_case(draw):
    n, d, k = draw(dims), draw(dims), draw(st.integers(1, 6))
    return draw(exact_arrays((n, d))), draw(exact_arrays((k, d))), draw(st.sampled_from(LAYOUTS))


@kernel_settings
@given(kmeans_case())
def test_kmeans_assign_exact_with_ties(case):
    X, C, layout = case
    labels, d2 = nk.kmeans_assign(relayout(X, layout), relayout(C, layout))
    wl, wd = ref.kmeans_assign(X, C)
    assert labels.dtype == np.int64 and d2.dtype == F32
    np.testing.assert_array_equal(labels, wl)
    np.testing.assert_array_equal(d2, wd)


@kernel_settings
@given(hnp.arrays(F32, st.tuples(dims, st.just(5)), elements=reals),
       hnp.arrays(F32, st.tuples(st.integers(1, 4), st.just(5)), elements=reals))
def test_kmeans_assign_float_distances(X, C):
    labels, d2 = nk.kmeans_assign(X, C)
    exact = ((X[:, None, :].astype(np.float64) - C[None, :, :]) ** 2).sum(-1)
    if X.shape[0]:
        np.testing.assert_allclose(d2, exact[np.arange(len(X)), labels], rtol=1e-4, atol=1e-4)
        assert np.all(exact[np.arange(len(X)), labels] <= exact.min(1) + 1e-4)


def test_kmeans_assign_refuses_no_centroids():
    with pytest.raises(KernelInputError, match="'C' has no centroid"):
        nk.kmeans_assign(np.ones((2, 3), F32), np.ones((0, 3), F32))


@st.composite
def probe_case(draw):
    L, d = draw(st.integers(0, 12) | st.integers(250, 300)), draw(dims)
    C = draw(exact_arrays((L, d)))
    norms = np.einsum("ij,ij->i", C, C).astype(F32)
    if L and draw(st.booleans()):  # NaN distances go last
        norms[draw(st.integers(0, L - 1))] = np.nan
    sizes = draw(hnp.arrays(np.int64, (L,), elements=st.integers(0, 9)))
    need = draw(st.integers(-1, 10 * L + 2).map(float) | st.floats(-1.0, 100.0))
    return C, norms, sizes, draw(exact_arrays((d,))), need, draw(st.sampled_from(LAYOUTS))


@kernel_settings
@given(probe_case())
def test_ivf_probe_matches_the_reference_with_ties(case):
    C, norms, sizes, q, need, layout = case
    got = nk.ivf_probe(relayout(C, layout), relayout(norms, layout), sizes, relayout(q, layout), need)
    want = ref.ivf_probe(C, norms, sizes, q, need)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    L = len(C)
    assert L == 0 or (1 <= len(got) <= L and np.all(np.diff(got) > 0))
    if 0 < len(got) < L:  # it stops at the first list that makes the rows reach `need`
        assert sizes[got].sum() >= need


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_ivf_probe_takes_the_nearest_lists_and_refuses_bad_input(backend):
    C = np.array([[1, 0], [0, 1], [-1, 0]], F32)
    norms, sizes = np.ones(3, F32), np.array([5, 5, 5])
    q = np.array([0.9, 0.3], F32)
    assert backend.ivf_probe(C, norms, sizes, q, 1).tolist() == [0]
    assert backend.ivf_probe(C, norms, sizes, q, 6).tolist() == [0, 1]
    assert backend.ivf_probe(C, norms, sizes, q, 100).tolist() == [0, 1, 2]  # never enough: every list
    assert backend.ivf_probe(C, norms, np.array([0, 0, 5], np.int32), q, 1).tolist() == [0, 1, 2]
    with pytest.raises(KernelInputError, match="ivf_probe: argument 'query' holds NaN or infinity"):
        backend.ivf_probe(C, norms, sizes, np.array([np.nan, 0], F32), 1)
    with pytest.raises(KernelInputError, match="argument 'norms' must have shape \\(3,\\)"):
        backend.ivf_probe(C, norms[:2], sizes, q, 1)
    with pytest.raises(KernelInputError, match="argument 'sizes' holds -1, outside"):
        backend.ivf_probe(C, norms, np.array([1, -1, 1]), q, 1)
    with pytest.raises(KernelInputError, match="argument 'sizes' must hold integers"):
        backend.ivf_probe(C, norms, np.array([1.5, 1, 1]), q, 1)
    with pytest.raises(KernelInputError, match="argument 'query' must have shape \\(2,\\)"):
        backend.ivf_probe(C, norms, sizes, np.ones(3, F32), 1)
    with pytest.raises(KernelInputError, match="argument 'need' must be finite"):
        backend.ivf_probe(C, norms, sizes, q, float("nan"))


@pytest.mark.parametrize("path", INT8_PATHS)
@settings(deadline=None, max_examples=max(10, kernel_settings.max_examples // 2))
@given(data=st.data())
def test_ivf_topk_is_the_probe_then_the_rerank_over_the_lists_runs(path, data):
    Q, scales, M, q, k, cand, mask, values, min_value, _, _, layout, _ = data.draw(rerank_case(8))
    n, d = M.shape
    L = data.draw(st.integers(1, 8))
    C = data.draw(exact_arrays((L, d)))
    norms = np.einsum("ij,ij->i", C, C).astype(F32)
    sizes = data.draw(hnp.arrays(np.int64, (L,), elements=st.integers(0, 40)))
    offsets = np.sort(data.draw(hnp.arrays(np.int64, (L + 1,), elements=st.integers(0, n + 3))))
    ordered = data.draw(st.integers(0, n))
    exact_rows = data.draw(st.integers(0, 2 * n + 2))
    need = float(data.draw(st.integers(0, 60)))
    args = (k, cand, exact_rows, C, norms, sizes, offsets, ordered, need)
    with int8_path(path):
        idx, sc, read = nk.ivf_topk(Q, relayout(scales, layout), relayout(M, layout), relayout(q, layout), *args,
                                    mask=mask, values=values, min_value=min_value)
    widx, wsc, wread = ref.ivf_topk(Q, scales, M, q, *args, mask=mask, values=values, min_value=min_value)
    np.testing.assert_array_equal(idx, widx)
    np.testing.assert_array_equal(sc, wsc)
    assert read == wread
    # the same as probing, then searching the runs (the two steps the cache takes on other paths)
    runs = ref.ivf_runs(ref.ivf_probe(C, norms, sizes, q, need), offsets, ordered, n)
    assert read == int((runs[:, 1] - runs[:, 0]).sum())
    if read > exact_rows:
        sidx, _ = nk.topk_int8_rerank(Q, scales, M, q, k, cand, mask=mask, values=values, min_value=min_value,
                                      ranges=runs)
        np.testing.assert_array_equal(idx, sidx)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_ivf_topk_refuses_bad_input(backend):
    M = np.eye(4, dtype=F32)
    q8, s = nk.quantize_int8(M)
    C, norms, sizes = M[:2].copy(), np.ones(2, F32), np.array([2, 2])
    q = np.array([1, 0, 0, 0], F32)
    ok = (q8, s, M, q, 2, 4, 0, C, norms, sizes, np.array([0, 2, 4]), 4, 1.0)
    idx, _, read = backend.ivf_topk(*ok)
    assert idx.tolist() == [0, 1] and read == 2  # list 0 (rows 0-1) is the nearest and covers `need`
    assert backend.ivf_topk(*ok[:11], 3, 1.0)[2] == 3  # rows 2.. were appended after the ordering: scanned too
    with pytest.raises(KernelInputError, match="ivf_topk: argument 'offsets' must be non-decreasing"):
        backend.ivf_topk(*ok[:10], np.array([0, 3, 2]), *ok[11:])
    with pytest.raises(KernelInputError, match="argument 'offsets' must have shape \\(3,\\)"):
        backend.ivf_topk(*ok[:10], np.array([0, 2]), *ok[11:])
    with pytest.raises(KernelInputError, match="argument 'ordered' must be within \\[0, 4\\], got 5"):
        backend.ivf_topk(*ok[:11], 5, 1.0)
    with pytest.raises(KernelInputError, match="argument 'exact_rows' must be >= 0"):
        backend.ivf_topk(*ok[:6], -1, *ok[7:])
    with pytest.raises(KernelInputError, match="ivf_topk: argument 'centroids' must have shape \\(L, 4\\)"):
        backend.ivf_topk(*ok[:7], np.ones((2, 3), F32), *ok[8:])
    with pytest.raises(KernelInputError, match="ivf_topk: argument 'query' contains NaN or inf"):
        backend.ivf_topk(q8, s, M, np.array([np.nan, 0, 0, 0], F32), *ok[4:])
    with pytest.raises(KernelInputError, match="ivf_topk: argument 'sizes' holds -1"):
        backend.ivf_topk(*ok[:9], np.array([-1, 2]), *ok[10:])


# ---- hashing embedder ---------------------------------------------------------------------

TRICKY = ["", " ", "...", "a", "A1 b2", "Straße İstanbul K ǅ", "naïve café, NAÏVE CAFÉ", "日本語 テキスト",
          "emoji 🙂🙂 ok", "x" * 300, "don't stop-me now", "tab\tnew\nline"]


@kernel_settings
@given(st.lists(st.text(max_size=40) | st.sampled_from(TRICKY), max_size=5),
       st.integers(1, 70) | st.sampled_from([64, 256, 1024]))
@example(TRICKY, 256)
def test_hash_embed_matches_python_reference(texts, dim):
    got = nk.hash_embed(texts, dim, 1.0, 0.5, 0.25)
    want = ref.hash_embed(texts, dim, 1.0, 0.5, 0.25)
    assert got.shape == (len(texts), dim) and got.dtype == F32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_hash_embed_errors_and_weights():
    got = nk.hash_embed(("one two", "two one"), 32, 2.0, 0.0, 1.0)
    np.testing.assert_allclose(got, ref.hash_embed(["one two", "two one"], 32, 2.0, 0.0, 1.0), rtol=1e-6, atol=1e-7)
    with pytest.raises(KernelInputError, match="item 1 is int"):
        nk.hash_embed(["a", 3], 8)
    with pytest.raises(KernelInputError, match="not a single str"):
        nk.hash_embed("abc", 8)
    with pytest.raises(KernelInputError, match="'dim' must be >= 1"):
        nk.hash_embed(["a"], 0)
    with pytest.raises(UnicodeEncodeError):
        nk.hash_embed(["ok \ud800 bad"], 8)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_finite_norm_is_false_for_nan_inf_and_overflowing_norms(backend):
    g = np.random.default_rng(3)
    for n in (0, 1, 7, 256, 1000):
        x = g.standard_normal(n).astype(F32)
        assert backend.finite_norm(x) is True
        for bad in (np.nan, np.inf, -np.inf):
            if n:
                y = x.copy()
                y[g.integers(n)] = bad
                assert backend.finite_norm(y) is False
    assert backend.finite_norm(np.array([[1.0, np.inf]])) is False   # float64, 2-D: converted, same answer
    assert backend.finite_norm(np.ones((4, 3), F32)[:, 0]) is True   # strided
    assert backend.finite_norm(np.array([1.0, 1e30, 1.0], F32)) is False   # finite, but its square overflows
    assert backend.finite_norm(np.full(8, 1e18, F32)) is True
    with pytest.raises(KernelInputError, match="finite_norm: argument 'x' must hold real numbers"):
        backend.finite_norm(["a"])


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("rows", [None, 3, 40], ids=["vector", "rows", "many-rows"])
@pytest.mark.parametrize("rank", [1, 2, 4])
def test_micro_apply_finite_flags_nan_and_inf_in_its_own_pass(backend, rows, rank):
    g = np.random.default_rng(rank)
    shape = (24,) if rows is None else (rows, 24)
    h = g.standard_normal(shape).astype(F32)
    A, B = g.standard_normal((rank, 24)).astype(F32), g.standard_normal((24, rank)).astype(F32)
    np.testing.assert_allclose(backend.micro_apply(h, A, B, 0.5, True), ref.micro_apply(h, A, B, 0.5),
                               rtol=1e-5, atol=1e-5)
    for bad in (np.nan, np.inf, -np.inf):
        hb = h.copy()
        hb.flat[7] = bad
        assert backend.micro_apply(hb, A, B, 0.5, True) is None, bad
        assert backend.micro_apply(hb, A, B, 0.5) is not None   # unchecked: the plain product
    huge = np.full(shape, 3e38, F32)   # finite input, the product overflows to inf
    assert backend.micro_apply(huge, A, B, 0.5, True) is None


# ---- argument rules shared by both backends -----------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_clear_errors_name_the_argument(backend):
    A, B = np.ones((1, 4), F32), np.ones((4, 1), F32)
    with pytest.raises(KernelInputError, match="micro_apply: argument 'A' must have shape \\(r, 3\\)"):
        backend.micro_apply(np.ones(3, F32), A, B, 1.0)
    with pytest.raises(KernelInputError, match="argument 'h' must hold real numbers"):
        backend.micro_apply(["a", "b", "c", "d"], A, B, 1.0)
    with pytest.raises(KernelInputError, match="argument 'h' must hold real numbers"):
        backend.micro_apply(np.ones(4, complex), A, B, 1.0)
    with pytest.raises(KernelInputError, match="argument 'h' must be 1-D or 2-D"):
        backend.micro_apply(np.ones((1, 1, 4), F32), A, B, 1.0)
    with pytest.raises(KernelInputError, match="argument 'scale' must be a real number"):
        backend.micro_apply(np.ones(4, F32), A, B, "1")
    with pytest.raises(KernelInputError, match="lora_grad: argument 'g'"):
        backend.lora_grad(np.ones((2, 4), F32), np.ones((3, 4), F32), A, B, 1.0)
    with pytest.raises(KernelInputError, match="topk: argument 'query'"):
        backend.topk(np.ones((5, 4), F32), np.ones(3, F32), 2)
    with pytest.raises(KernelInputError, match="topk: argument 'mask' must have shape \\(5,\\)"):
        backend.topk(np.ones((5, 4), F32), np.ones(4, F32), 2, mask=np.ones(4, bool))
    with pytest.raises(KernelInputError, match="topk: argument 'k' must be an integer"):
        backend.topk(np.ones((5, 4), F32), np.ones(4, F32), 2.5)
    with pytest.raises(KernelInputError, match="ewc_penalty_grad: theta, anchor and F have incompatible shapes"):
        backend.ewc_penalty_grad(np.ones(3), np.ones(4), np.ones(3), 1.0)
    # it is both a ValueError and a TypeError
    with pytest.raises(ValueError):
        backend.kmeans_assign(np.ones((2, 3), F32), np.ones((2, 4), F32))
    with pytest.raises(TypeError):
        backend.kmeans_assign(np.ones((2, 3), F32), np.ones((2, 4), F32))


def test_backends_agree_on_one_realistic_step():
    h, p = _instant_params(d=256, r=2, M=4)
    outs = []
    for b in BACKENDS:
        q = {k: v.copy() for k, v in p.items()}
        vu = b.instant_step(h, q["A"], q["B"], 0.5, q["wv"], q["bv"], q["Wr"], q["br"], 2, 0.3, 1.0, 0.01, True, 1.0)
        outs.append((vu, q, b.micro_apply(h, q["A"], q["B"], 0.5)))
    for vu, q, y in outs[1:]:
        np.testing.assert_allclose(vu, outs[0][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(y, outs[0][2], rtol=1e-4, atol=1e-4)
        for k in q:
            np.testing.assert_allclose(q[k], outs[0][1][k], rtol=1e-4, atol=1e-5)


def test_threads_get_correct_results_concurrently():
    """Batch kernels release the GIL; concurrent calls must not interfere."""
    rng = np.random.default_rng(5)
    M = rng.integers(-4, 4, (2000, 32)).astype(F32)
    queries = rng.integers(-4, 4, (8, 32)).astype(F32)
    want = [ref.topk(M, q, 7) for q in queries]
    got: dict[int, tuple] = {}

    def work(i: int) -> None:
        for _ in range(5):
            got[i] = nk.topk(M, queries[i], 7)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (widx, wsc) in enumerate(want):
        np.testing.assert_array_equal(got[i][0], widx)
        np.testing.assert_array_equal(got[i][1], wsc)


@pytest.mark.skipif(nk.info()["active"] != "native", reason="the compiled extension is not active")
def test_c_layer_rechecks_every_size_it_relies_on():
    """The batch entry points re-check what the wrappers validated: a wrong call is an error, never a bad read."""
    from swarm_sona.kernels import _native

    M, q = np.ones((5, 4), F32), np.ones(4, F32)
    idx, sc = np.empty(5, np.int64), np.empty(5, F32)
    assert _native.topk(M, q, 3, None, None, None, idx, sc) == 3
    with pytest.raises(ValueError, match="shorter than min"):
        _native.topk(M, q, 5, None, None, None, idx[:2], sc)
    with pytest.raises(ValueError, match="mask must have one entry per row"):
        _native.topk(M, q, 2, np.ones(4, bool), None, None, idx, sc)
    with pytest.raises(ValueError, match="query do not match"):
        _native.topk(M, np.ones(3, F32), 2, None, None, None, idx, sc)
    with pytest.raises(TypeError, match="argument 'matrix'"):
        _native.topk(M.astype(np.float64), q, 2, None, None, None, idx, sc)
    with pytest.raises(TypeError, match="argument 'out_idx'"):
        _native.topk(M, q, 2, None, None, None, idx.astype(np.int32), sc)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _native.kmeans_assign(M, np.ones((2, 3), F32), idx, sc)
    with pytest.raises(ValueError, match="differ in size"):
        _native.fisher_update(np.ones(3, F32), np.ones(4, F32), 0.5)
    with pytest.raises(TypeError, match="argument 'F'"):
        _native.fisher_update(np.ones(3, F32)[::-1], np.ones(3, F32), 0.5)
    with pytest.raises(ValueError, match="len\\(texts\\) \\* dim"):
        _native.hash_embed(["a", "b"], 4, 1.0, 0.5, 0.25, np.empty((1, 4), F32))
    assert _native.lora_apply(np.ones(3, F32), np.ones((1, 4), F32), np.ones((4, 1), F32), 1.0, True) is NotImplemented
    q8, s8 = np.zeros((5, 4), np.int8), np.ones(5, F32)
    assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, None, None, None, None, None)[0].tolist() == [0, 1]
    for bad in [(q8, s8, M.astype(np.float64), q), (q8, s8[:4], M, q), (q8, s8, M, np.full(4, np.inf, F32)),
                (q8.astype(np.uint8), s8, M, q), (q8[:, :3], s8, M, q)]:
        assert _native.topk_int8_rerank(*bad, 2, 3, None, None, None, None, None) is NotImplemented
    assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, None, np.ones(5, F32), 0.5, None, None) is NotImplemented  # f64
    assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, np.ones(4, bool), None, None, None, None) is NotImplemented
    for bad_ranges in ([[2, 1]], [[0, 3], [2, 4]], [[0, 6]], [[0, 1, 2]], np.array([[0, 1]], np.int32)):
        rr = np.asarray(bad_ranges) if not isinstance(bad_ranges, np.ndarray) else bad_ranges
        assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, None, None, None, rr, None) is NotImplemented
    assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, None, None, None, np.array([[1, 2], [4, 5]]),
                                    None)[0].tolist() \
        == [1, 4]
    rows = np.array([4, 1], np.int64)
    assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, None, None, None, None, rows)[0].tolist() == [1, 4]
    for bad_rows in (np.array([1, 1]), np.array([5]), np.array([-1]), np.array([[1]]), np.array([1], np.int32)):
        assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, None, None, None, None, bad_rows) is NotImplemented
    assert _native.topk_int8_rerank(q8, s8, M, q, 2, 3, None, None, None, np.array([[0, 5]]), rows) \
        is NotImplemented  # rows and ranges exclude each other
    p4 = np.full((5, 2), 0x88, np.uint8)  # every code 8: all approximate scores 0
    assert _native.topk_int4_rerank(p4, s8, M, q, 2, 3, None, None, None, None, None)[0].tolist() == [0, 1]
    assert _native.topk_int4_rerank(q8, s8, M, q, 2, 3, None, None, None, None,
                                    None) is NotImplemented  # int8, not uint8
    assert _native.topk_int4_rerank(np.zeros((5, 4), np.uint8), s8, M, q, 2, 3, None, None, None, None, None) \
        is NotImplemented  # (n, d) instead of (n, ceil(d / 2))
    with pytest.raises(ValueError, match="not compiled in or not supported"):
        _native.set_int8_isa("no-such-path")
    assert _native.set_int8_isa(None) == _native.int8_isa() == _native.int8_paths()[0][0] or \
        not _native.int8_paths()[0][1]


# ---- dispatch -----------------------------------------------------------------------------

def test_info_shape():
    info = nk.info()
    assert set(info) == {"active", "reason", "isa"}
    assert info["active"] in ("native", "numpy") and info["reason"]
    if info["active"] == "native":
        assert isinstance(info["isa"], str) and info["isa"]
        assert nk.micro_apply.__module__.endswith("native_backend")


def test_env_var_forces_numpy():
    code = "from swarm_sona import kernels as nk; import json; print(json.dumps(nk.info()))"
    env = dict(os.environ, SWARM_SONA_NATIVE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert '"active": "numpy"' in out.stdout and "SWARM_SONA_NATIVE=0" in out.stdout


def test_many_rows_at_higher_rank_match_the_reference():
    """Shapes that the native backend hands to BLAS (>= 16 rows, rank > 2) give the same results."""
    rng = np.random.default_rng(7)
    X, G = rng.standard_normal((20, 9)).astype(F32), rng.standard_normal((20, 9)).astype(F32)
    A, B = rng.standard_normal((4, 9)).astype(F32), rng.standard_normal((9, 4)).astype(F32)
    close(nk.lora_delta(X, A, B, 0.5), ref.lora_delta(X, A, B, 0.5), 100.0)
    close(nk.micro_apply(X.T.copy().T, A, B, 0.5), ref.micro_apply(X, A, B, 0.5), 100.0)
    for got, want in zip(nk.lora_grad(X, G, A, B, 0.5), ref.lora_grad(X, G, A, B, 0.5), strict=True):
        close(got, want, 1000.0)


def test_bench_kernels_cli_json(capsys):
    """``swarm-sona bench kernels --json`` prints one object whose rows carry both timings."""
    import json

    from swarm_sona.app.cli import main

    assert main(["bench", "kernels", "--json", "--quick", "--kernel", "micro_apply", "--kernel", "hash_embed"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["benchmark"] == "kernels" and res["native"] == nk.info()
    assert [r["kernel"] for r in res["rows"]] == ["micro_apply", "micro_apply", "hash_embed"]
    for r in res["rows"]:
        assert {"kernel", "size", "native_us", "numpy_us", "speedup"} <= set(r) and r["numpy_us"] > 0
        if nk.info()["active"] == "native":
            assert r["native_us"] > 0 and r["speedup"] == pytest.approx(r["numpy_us"] / r["native_us"])
        else:
            assert r["native_us"] is None and r["speedup"] is None
    assert main(["bench", "kernels", "--kernel", "nope"]) == 2
