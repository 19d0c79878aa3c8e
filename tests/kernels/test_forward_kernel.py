"""The one-token inference forward kernel ``forward_one``: the fused block, MicroLoRA and the
value/router heads in one call.

The C kernel must match the numpy reference (``kernels.reference.forward_one``) within 1e-5
relative / 1e-6 absolute (float32 sums of up to ``max(d, H)`` terms; layer-norm statistics in
double on both sides), and ``SONAModel.forward`` through it must equal the plain numpy path
(``encode_one`` + ``apply_heads_one``) it replaced. Bad input at the public entry point raises
:class:`KernelInputError` naming the argument. A cache built before an edit is never used after
it (the edit epoch, :mod:`swarm_sona.learning.edits`).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_sona import kernels as nk
from swarm_sona.kernels import KernelInputError, numpy_backend
from swarm_sona.kernels import reference as ref
from swarm_sona.learning.heads import apply_heads_one
from swarm_sona.learning.model import SONAModel
from swarm_sona.learning.norm import LN_EPS

ACTIVE = nk.backend()
BACKENDS = [ACTIVE] if ACTIVE is numpy_backend else [ACTIVE, numpy_backend]
BACKEND_IDS = [b.__name__.rsplit(".", 1)[-1] for b in BACKENDS]
F32 = np.float32


def _args(rng, d, H, r, M, scale=1.0):
    f = lambda *shape: (rng.standard_normal(shape) * 0.3).astype(F32)  # noqa: E731
    return (f(d), f(d, d), f(d), f(d, H), f(H), f(H, d), f(d), f(r, d), f(d, r), scale, f(d), f(1), f(M, d), f(M),
            LN_EPS)


def _close(got, want):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@settings(deadline=None, max_examples=60)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 40), H=st.integers(1, 40), r=st.integers(1, 5),
       M=st.integers(0, 5), scale=st.sampled_from([0.0, 0.5, 2.0]))
def test_forward_one_matches_the_numpy_reference(backend, seed, d, H, r, M, scale):
    args = _args(np.random.default_rng(seed), d, H, r, M, scale)
    got = backend.forward_one(*args)
    want = ref.forward_one(*args)
    assert [np.asarray(x).dtype for x in got[:2]] == [F32, F32] and isinstance(got[2], float)
    assert got[0].shape == (d,) and got[1].shape == (d,) and got[3].shape == (M,) and got[4].shape == (M,)
    _close(got, want)


@pytest.mark.parametrize("d", [256, 1536])
def test_the_model_forward_through_the_kernel_equals_the_numpy_path(d):
    rng = np.random.default_rng(d)
    m = SONAModel(dim=d, mlp_hidden=d, n_router=3, seed=1)
    m.ensure_task_head("t", ["a", "b", "c"])
    m.micro.B[...] = rng.standard_normal(m.micro.B.shape).astype(F32) * 0.1
    m.micro.touch()
    e = rng.standard_normal(d).astype(F32)
    fast = m.forward(e, task="t")
    slow = apply_heads_one(m, m.encode_one(e), "t")
    assert set(fast) == set(slow)
    for k in ("h", "hidden", "router_logits", "router_probs", "task_logits"):
        np.testing.assert_allclose(fast[k], slow[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert fast["value_logit"] == pytest.approx(slow["value_logit"], abs=1e-6)
    assert fast["value"] == pytest.approx(slow["value"], abs=1e-6)


def test_an_edit_after_a_forward_is_seen_by_the_next_forward():
    """The fused weights are rebuilt after any adapter edit: the edit epoch moved."""
    m = SONAModel(dim=16, mlp_hidden=16, n_router=2, seed=3)
    e = np.linspace(-1, 1, 16).astype(F32)
    before = m.forward(e)["h"]
    ad = m.layers["v"].adapters["default"]
    ad.B[...] = 0.5
    ad.touch()
    after = m.forward(e)["h"]
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, m.encode(e[None, None, :])[0], rtol=1e-5, atol=1e-6)
    # without the touch the edit is a hand edit the docs require to be touched: the cache stands
    ad.B[...] = 0.0
    np.testing.assert_array_equal(m.forward(e)["h"], after)
    ad.touch()
    np.testing.assert_allclose(m.forward(e)["h"], before, rtol=1e-6, atol=1e-7)


def test_another_models_edit_only_rebuilds_the_cache_conservatively():
    a, b = SONAModel(dim=8, mlp_hidden=8, n_router=1, seed=0), SONAModel(dim=8, mlp_hidden=8, n_router=1, seed=0)
    e = np.linspace(-1, 1, 8).astype(F32)   # not constant: its layer norm is not 0
    ha = a.forward(e)["h"]
    b.layers["v"].adapters["default"].B[...] = 1.0
    b.layers["v"].adapters["default"].touch()
    np.testing.assert_array_equal(a.forward(e)["h"], ha)      # rebuilt from a's own (unchanged) weights
    assert not np.allclose(b.forward(e)["h"], ha)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize(("index", "bad", "words"), [
    (0, np.ones((2, 4), F32), "'e' must be 1-D"),
    (0, np.ones(0, F32), "'e' must have shape"),
    (1, np.ones((4, 3), F32), "'WovT' must have shape (4, 4)"),
    (4, np.ones(5, F32), "'bin' must have shape (3,)"),
    (5, np.ones((3, 5), F32), "'WoutT' must have shape (3, 4)"),
    (8, np.ones((4, 2), F32), "'B' must have shape (4, 1)"),
    (11, np.ones(2, F32), "'bv' must have shape (1,)"),
    (13, np.ones(3, F32), "'br' must have shape (2,)"),
    (9, "big", "'scale' must be a real number"),
    (14, -1.0, "'eps' must be >= 0"),
    (3, np.array([["a"] * 3] * 4), "'WinT' must hold real numbers"),
])
def test_forward_one_refuses_bad_input_naming_the_argument(backend, index, bad, words):
    args = list(_args(np.random.default_rng(0), 4, 3, 1, 2))
    args[index] = bad
    with pytest.raises(KernelInputError) as err:
        backend.forward_one(*args)
    assert words in str(err.value)


def test_forward_one_converts_float64_and_strided_inputs():
    args = list(_args(np.random.default_rng(5), 6, 5, 2, 3))
    want = ref.forward_one(*args)
    args[1] = np.asfortranarray(args[1])
    args[3] = args[3].astype(np.float64)
    _close(ACTIVE.forward_one(*args), want)


def test_an_older_extension_without_forward_one_gives_the_same_results(monkeypatch):
    if ACTIVE is numpy_backend:
        pytest.skip("the native extension is not active: its fallback is the only path")
    args = _args(np.random.default_rng(9), 12, 7, 1, 2)
    new = ACTIVE.forward_one(*args)
    monkeypatch.setattr(ACTIVE, "_FORWARD", None)
    _close(ACTIVE.forward_one(*args), new)
