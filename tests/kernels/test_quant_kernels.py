"""The quantised linear kernels (``dequantize_rows``, ``qlinear``, ``qlinear_t``) against the numpy reference.

Runs against the active backend and the numpy backend (under ``SWARM_SONA_NATIVE=0`` only the
latter). Dequantisation is exact: the C kernels do the reference's float32 operations, so the
dense rows agree bit for bit. The products differ only by summation order (and by the group
scale applied to a partial sum in the fused matvec): the stated tolerance is
``|y - y_ref| <= 1e-5 * (|x| @ |W|^T) + 1e-6`` per output, i.e. 1e-5 of the sum of the
magnitudes of the terms (float32 eps is 1.2e-7; a pairwise sum of 1536 terms stays ~20x
inside it). Shapes cover every path: one row of x (fused matvec when rows are whole groups:
AVX-512 for groups of 16k, AVX2 for groups of 8k, else the row stream), 2-7 rows (row stream),
8 and more (W in tiles for BLAS).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_sona import kernels as nk
from swarm_sona.kernels import KernelInputError, numpy_backend
from swarm_sona.kernels import reference as ref

ACTIVE = nk.backend()
BACKENDS = [ACTIVE] if ACTIVE is numpy_backend else [ACTIVE, numpy_backend]
IDS = [b.__name__.rsplit(".", 1)[-1] for b in BACKENDS]
qsettings = settings(deadline=None, max_examples=60)


def random_qweight(rng: np.random.Generator, shape: tuple[int, int], group: int, scheme: str):
    """Arbitrary codes and positive scales (every byte is a valid code), padded like quantize_weight."""
    size = shape[0] * shape[1]
    n_groups = -(-size // group)
    if scheme == "nf4":
        codes = rng.integers(0, 256, n_groups * group // 2, dtype=np.uint8)
    else:
        codes = rng.integers(-127, 128, n_groups * group, dtype=np.int8)
    absmax = rng.uniform(0.01, 2.0, n_groups).astype(np.float32)
    return codes, absmax


def tolerance(x: np.ndarray, W: np.ndarray, transpose: bool) -> np.ndarray:
    mag = np.abs(x) @ (np.abs(W) if transpose else np.abs(W).T)
    return 1e-5 * mag + 1e-6


shapes = st.tuples(st.integers(0, 12), st.integers(0, 40))
groups = st.sampled_from([2, 4, 6, 8, 16, 64])
schemes = st.sampled_from(["nf4", "int8"])


@pytest.mark.parametrize("be", BACKENDS, ids=IDS)
@qsettings
@given(shape=shapes, group=groups, scheme=schemes, seed=st.integers(0, 2**31), rows=st.data())
def test_dequantize_rows_is_the_reference_bit_for_bit(be, shape, group, scheme, seed, rows):
    rng = np.random.default_rng(seed)
    codes, absmax = random_qweight(rng, shape, group, scheme)
    lo = rows.draw(st.integers(0, shape[0]))
    hi = rows.draw(st.integers(lo, shape[0]))
    got = be.dequantize_rows(codes, absmax, shape, group, scheme, lo, hi)
    want = ref.dequantize_rows(codes, absmax, shape, group, scheme, lo, hi)
    assert got.shape == (hi - lo, shape[1]) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("be", BACKENDS, ids=IDS)
@qsettings
@given(shape=shapes, group=groups, scheme=schemes, n=st.integers(0, 20), seed=st.integers(0, 2**31),
       vector=st.booleans())
def test_qlinear_and_its_transpose_match_the_dense_reference(be, shape, group, scheme, n, seed, vector):
    rng = np.random.default_rng(seed)
    codes, absmax = random_qweight(rng, shape, group, scheme)
    W = ref.dequantize_rows(codes, absmax, shape, group, scheme)
    x = rng.standard_normal((n, shape[1])).astype(np.float32)
    g = rng.standard_normal((n, shape[0])).astype(np.float32)
    if vector:
        x, g = x[:1].reshape(-1) if n else np.zeros(shape[1], np.float32), g[:1].reshape(-1) if n else \
            np.zeros(shape[0], np.float32)
    y = be.qlinear(x, codes, absmax, shape, group, scheme)
    gx = be.qlinear_t(g, codes, absmax, shape, group, scheme)
    assert y.shape == x.shape[:-1] + (shape[0],) and gx.shape == g.shape[:-1] + (shape[1],)
    assert np.all(np.abs(y - x @ W.T) <= tolerance(x, W, False))
    assert np.all(np.abs(gx - g @ W) <= tolerance(g, W, True))


@pytest.mark.parametrize("be", BACKENDS, ids=IDS)
@pytest.mark.parametrize("scheme", ["nf4", "int8"])
@pytest.mark.parametrize("shape,group", [((1536, 1536), 64), ((96, 256), 32), ((48, 64), 8), ((70, 130), 10),
                                         ((33, 17), 6)])
@pytest.mark.parametrize("n", [1, 3, 8, 33])
def test_qlinear_at_layer_sizes(be, scheme, shape, group, n):
    rng = np.random.default_rng(n)
    codes, absmax = random_qweight(rng, shape, group, scheme)
    W = ref.dequantize_rows(codes, absmax, shape, group, scheme)
    x = rng.standard_normal((n, shape[1])).astype(np.float32)
    g = rng.standard_normal((n, shape[0])).astype(np.float32)
    assert np.all(np.abs(be.qlinear(x, codes, absmax, shape, group, scheme) - x @ W.T) <= tolerance(x, W, False))
    assert np.all(np.abs(be.qlinear_t(g, codes, absmax, shape, group, scheme) - g @ W) <= tolerance(g, W, True))
    one = be.qlinear(x[0], codes, absmax, shape, group, scheme)   # the vector (routing) path
    assert np.all(np.abs(one - W @ x[0]) <= tolerance(x[:1], W, False)[0])


def test_tiles_cover_the_matrix_whatever_their_size():
    rng = np.random.default_rng(0)
    shape, group = (13, 11), 4
    codes, absmax = random_qweight(rng, shape, group, "nf4")
    W = ref.dequantize_rows(codes, absmax, shape, group, "nf4")
    x = rng.standard_normal((5, 11)).astype(np.float32)
    g = rng.standard_normal((5, 13)).astype(np.float32)
    seen: list[tuple[int, int]] = []

    def rows(lo: int, hi: int) -> np.ndarray:
        seen.append((lo, hi))
        return W[lo:hi]

    for tile in (1, 11, 23, 10_000):
        seen.clear()
        np.testing.assert_allclose(ref.tiled_qlinear(x, shape, rows, transpose=False, tile_entries=tile), x @ W.T,
                                   rtol=1e-5, atol=1e-5)
        assert max(hi - lo for lo, hi in seen) * 11 <= max(tile, 11)   # never more than a tile at once
        np.testing.assert_allclose(ref.tiled_qlinear(g, shape, rows, transpose=True, tile_entries=tile), g @ W,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("be", BACKENDS, ids=IDS)
def test_bad_quantised_arguments_are_refused_naming_them(be):
    codes, absmax = random_qweight(np.random.default_rng(0), (4, 8), 8, "nf4")
    x = np.ones(8, np.float32)
    with pytest.raises(KernelInputError, match="'scheme' must be one of"):
        be.qlinear(x, codes, absmax, (4, 8), 8, "nf3")
    with pytest.raises(KernelInputError, match="'codes' must be a int8 array for scheme 'int8'"):
        be.qlinear(x, codes, absmax, (4, 8), 8, "int8")
    with pytest.raises(KernelInputError, match="'codes' has 8 entries; a nf4 matrix of shape \\(5, 8\\) needs 20"):
        be.qlinear(np.ones(8, np.float32), codes[:8], absmax, (5, 8), 8, "nf4")
    with pytest.raises(KernelInputError, match="'absmax' has 2 scales"):
        be.qlinear(x, codes, absmax[:2], (4, 8), 8, "nf4")
    with pytest.raises(KernelInputError, match="'group_size' must be even"):
        be.qlinear(x, codes, absmax, (4, 8), 7, "nf4")
    with pytest.raises(KernelInputError, match="'x' must have shape \\(..., 8\\)"):
        be.qlinear(np.ones(9, np.float32), codes, absmax, (4, 8), 8, "nf4")
    with pytest.raises(KernelInputError, match="'g' must have shape \\(..., 4\\)"):
        be.qlinear_t(x, codes, absmax, (4, 8), 8, "nf4")
    with pytest.raises(KernelInputError, match="rows \\[3, 5\\) are not within \\[0, 4\\]"):
        be.dequantize_rows(codes, absmax, (4, 8), 8, "nf4", 3, 5)


@pytest.mark.skipif(ACTIVE is numpy_backend, reason="the compiled extension is not active")
def test_the_native_bindings_recheck_sizes():
    from swarm_sona.kernels import _native

    codes, absmax = random_qweight(np.random.default_rng(0), (4, 8), 8, "nf4")
    with pytest.raises(ValueError, match="shorter than the matrix needs"):
        _native.qdequant(codes, absmax, 8, 4, 0, np.empty(40, np.float32))
    with pytest.raises(ValueError, match="x and out must be 2-D"):
        _native.qlinear(np.ones((2, 8), np.float32), codes, absmax, 4, 8, 8, 4, False, np.empty((2, 5), np.float32))
    with pytest.raises(TypeError, match="'codes' must be a C-contiguous buffer of type code 'b'"):
        _native.qlinear(np.ones((2, 8), np.float32), codes, absmax, 4, 8, 8, 8, False, np.empty((2, 4), np.float32))
