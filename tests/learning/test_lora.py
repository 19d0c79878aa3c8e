"""LoRA adapters: init, scaling, exact gradients, merge/unmerge, named adapters, export/import."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_sona.learning.config import LoRAConfig
from swarm_sona.learning.lora import BaseLoRA, LoRAAdapter, LoRAError, MicroLoRA, draw_a, lora_scaling
from swarm_sona.learning.lora_linear import LoRALinear


def _layer(d_in=6, d_out=5, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return LoRALinear(rng.normal(size=(d_out, d_in)), rng.normal(size=d_out), name="q", dtype=dtype)


def test_fresh_adapter_is_bit_identical():
    lin = _layer()
    x = np.random.default_rng(1).normal(size=(7, 6)).astype(np.float32)
    base = lin(x)
    lin.add_adapter("default", BaseLoRA(6, 5, rank=4, alpha=8, name="q"))
    assert np.array_equal(lin(x), base)
    y, _ = lin.forward(x, training=True)
    assert np.array_equal(y, base)
    assert lin.adapters["default"].norm() == 0.0


def test_scaling_and_seeded_a():
    assert lora_scaling(8, 16) == 2.0
    assert lora_scaling(16, 8, use_rslora=True) == 2.0
    cfg = LoRAConfig(rank=4, alpha=8, use_rslora=True)
    ad = BaseLoRA.from_config(cfg, 10, 3, name="v")
    assert ad.scale == pytest.approx(cfg.scaling) == 4.0
    assert np.all(ad.B == 0)
    assert np.all(np.abs(ad.A) <= 1 / np.sqrt(10))
    # the same (seed, name, shape) gives the same A; another seed a different one
    assert np.array_equal(ad.A, BaseLoRA.from_config(cfg, 10, 3, name="v").A)
    assert not np.array_equal(ad.A, BaseLoRA.from_config(cfg.replace(seed=1), 10, 3, name="v").A)


def test_shared_a_seed_trains_b_only_and_averaging_b_averages_deltas():
    cfg_a = LoRAConfig(rank=2, alpha=2, shared_a_seed=42, seed=1)
    cfg_b = LoRAConfig(rank=2, alpha=2, shared_a_seed=42, seed=2)
    a1 = BaseLoRA.from_config(cfg_a, 8, 4, name="q")
    a2 = BaseLoRA.from_config(cfg_b, 8, 4, name="q")
    assert np.array_equal(a1.A, a2.A) and np.array_equal(a1.A, draw_a(42, "q", 2, 8))
    assert a1.trainable == ("B",) and not a1.train_a
    assert list(a1.parameters()) == ["B"]
    rng = np.random.default_rng(0)
    a1.B[:] = rng.normal(size=a1.B.shape)
    a2.B[:] = rng.normal(size=a2.B.shape)
    avg = BaseLoRA.from_config(cfg_a, 8, 4, name="q")
    avg.B[:] = (a1.B + a2.B) / 2
    np.testing.assert_allclose(avg.weight_delta(), (a1.weight_delta() + a2.weight_delta()) / 2, atol=1e-6)
    gA, gB, _ = a1.backward(a1.forward(np.ones(8, np.float32))[1], np.ones(4, np.float32))
    assert gA is None and gB.shape == (4, 2)


def _loss_and_grads(ad, x, g, seed=None):
    rng = np.random.default_rng(seed) if seed is not None else None
    d, ctx = ad.forward(x, training=seed is not None, rng=rng)
    gA, gB, gx = ad.backward(ctx, g)
    return float(np.sum(g * d)), gA, gB, gx


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradients_match_finite_differences(dropout):
    rng = np.random.default_rng(3)
    ad = LoRAAdapter(7, 5, rank=3, alpha=6, dropout=dropout, dtype=np.float64, name="k")
    ad.B[:] = rng.normal(size=ad.B.shape)
    x = rng.normal(size=(4, 7))
    g = rng.normal(size=(4, 5))
    seed = 11 if dropout else None  # same seed -> same dropout mask in every evaluation
    _, gA, gB, gx = _loss_and_grads(ad, x, g, seed)
    eps = 1e-6
    for name, analytic in (("A", gA), ("B", gB)):
        p = getattr(ad, name)
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp = _loss_and_grads(ad, x, g, seed)[0]
            p[idx] = old - eps
            lm = _loss_and_grads(ad, x, g, seed)[0]
            p[idx] = old
            num[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(analytic, num, rtol=1e-6, atol=1e-8)
    num_x = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num_x[idx] = (_loss_and_grads(ad, xp, g, seed)[0] - _loss_and_grads(ad, xm, g, seed)[0]) / (2 * eps)
    np.testing.assert_allclose(gx, num_x, rtol=1e-6, atol=1e-8)


def test_layer_backward_matches_finite_differences_with_two_adapters():
    rng = np.random.default_rng(5)
    lin = _layer(dtype=np.float64)
    for i, n in enumerate(("a", "b")):
        ad = BaseLoRA(6, 5, rank=2, alpha=2, name="q", seed=i, dtype=np.float64)
        ad.B[:] = rng.normal(size=ad.B.shape)
        lin.add_adapter(n, ad)
    x = rng.normal(size=(3, 6))
    gy = rng.normal(size=(3, 5))
    _, ctx = lin.forward(x)
    gx, grads = lin.backward(ctx, gy)
    assert set(grads) == {"a", "b"}
    eps = 1e-6

    def f(xx):
        return float(np.sum(gy * lin(xx)))

    num = np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps)
                    for e in np.eye(x.size).reshape(x.size, *x.shape)]).reshape(x.shape)
    np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)
    B = lin.adapters["b"].B
    num_b = np.zeros_like(B)
    for idx in np.ndindex(B.shape):
        old = B[idx]
        B[idx] = old + eps
        lp = f(x)
        B[idx] = old - eps
        lm = f(x)
        B[idx] = old
        num_b[idx] = (lp - lm) / (2 * eps)
    np.testing.assert_allclose(grads["b"]["B"], num_b, rtol=1e-6, atol=1e-8)


def test_float32_kernel_path_matches_float64():
    rng = np.random.default_rng(2)
    a64 = LoRAAdapter(9, 4, rank=2, alpha=3, dtype=np.float64, name="o")
    a32 = LoRAAdapter(9, 4, rank=2, alpha=3, dtype=np.float32, name="o")
    B = rng.normal(size=(4, 2))
    a64.B[:] = B
    a32.B[:] = B
    x = rng.normal(size=(5, 9))
    g = rng.normal(size=(5, 4))
    np.testing.assert_allclose(a32.delta(x.astype(np.float32)), a64.delta(x), rtol=1e-4, atol=1e-5)
    r32 = a32.backward(a32.forward(x.astype(np.float32))[1], g.astype(np.float32))
    r64 = a64.backward(a64.forward(x)[1], g)
    for u, v in zip(r32, r64, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 4), st.integers(0, 10_000))
def test_merge_unmerge_restores_base(d_in, d_out, rank, seed):
    rng = np.random.default_rng(seed)
    lin = LoRALinear(rng.normal(size=(d_out, d_in)).astype(np.float32), name="v")
    ad = BaseLoRA(d_in, d_out, rank=rank, alpha=2 * rank, name="v", seed=seed)
    ad.B[:] = rng.normal(size=ad.B.shape)
    lin.add_adapter("default", ad)
    W0 = lin.W.copy()
    x = rng.normal(size=(3, d_in)).astype(np.float32)
    y = lin(x)
    lin.merge("default")
    np.testing.assert_allclose(lin(x), y, rtol=1e-5, atol=1e-5)
    lin.unmerge("default")
    assert np.max(np.abs(lin.W - W0)) <= 1e-6


def test_merge_rules():
    lin = _layer()
    W0 = lin.W.copy()
    a = BaseLoRA(6, 5, rank=2, alpha=2, name="q")
    a.B[:] = 0.5
    lin.add_adapter("a", a)
    lin.add_adapter("b", BaseLoRA(6, 5, rank=2, alpha=2, name="q"), activate=False)
    with pytest.raises(LoRAError, match="not active"):
        lin.merge("b")
    lin.merge("a")
    with pytest.raises(LoRAError, match="already merged"):
        lin.merge("a")
    with pytest.raises(LoRAError, match="must be unmerged"):
        lin.set_active(["b"])
    with pytest.raises(LoRAError, match="no adapter named 'c'"):
        lin.unmerge("c")
    with pytest.raises(LoRAError, match="already exists"):
        lin.add_adapter("a", BaseLoRA(6, 5, rank=2, alpha=2))
    with pytest.raises(LoRAError, match=r"is \(5, 7\)"):
        lin.add_adapter("c", BaseLoRA(7, 5, rank=2, alpha=2))
    assert np.max(np.abs(lin.W - W0)) > 0.01
    assert lin.remove_adapter("a") is a  # unmerges first
    assert not lin.merged and "a" not in lin.adapters and "a" not in lin.active
    assert np.max(np.abs(lin.W - W0)) <= 1e-6


def test_named_adapters_sum_when_active():
    rng = np.random.default_rng(0)
    lin = _layer()
    for i, n in enumerate(("a", "b")):
        ad = BaseLoRA(6, 5, rank=2, alpha=2, name="q", seed=i)
        ad.B[:] = rng.normal(size=ad.B.shape)
        lin.add_adapter(n, ad)
    x = rng.normal(size=(2, 6)).astype(np.float32)
    base = x @ lin.W.T + lin.b
    da, db = lin.adapters["a"].delta(x), lin.adapters["b"].delta(x)
    np.testing.assert_allclose(lin(x), base + da + db, rtol=1e-5, atol=1e-5)
    lin.set_active(["b"])
    np.testing.assert_allclose(lin(x), base + db, rtol=1e-5, atol=1e-5)
    lin.set_active([])
    np.testing.assert_allclose(lin(x), base, rtol=1e-6, atol=1e-6)
    merged = lin.merged_copy()
    np.testing.assert_array_equal(merged["W"], lin.W)
    lin.set_active(["a", "b"])
    q = lin.merged_copy("int8")
    assert q["q"].dtype == np.int8
    deq = q["q"].astype(np.float32) * q["scales"][:, None]
    np.testing.assert_allclose(deq, lin.merged_copy()["W"], atol=np.abs(lin.merged_copy()["W"]).max() / 100)


def test_dropout_training_only():
    rng = np.random.default_rng(0)
    ad = BaseLoRA(50, 4, rank=2, alpha=2, dropout=0.5, name="v")
    ad.B[:] = rng.normal(size=ad.B.shape)
    x = rng.normal(size=(1, 50)).astype(np.float32)
    eval1, _ = ad.forward(x)
    np.testing.assert_array_equal(eval1, ad.delta(x))
    t1, _ = ad.forward(x, training=True, rng=np.random.default_rng(1))
    t2, _ = ad.forward(x, training=True, rng=np.random.default_rng(2))
    assert not np.allclose(t1, t2)
    # inverted dropout keeps the expectation
    samples = np.stack([ad.forward(x, training=True, rng=np.random.default_rng(s))[0] for s in range(2000)])
    np.testing.assert_allclose(samples.mean(0), eval1, atol=0.1 * np.abs(eval1).max() + 1e-3)
    with pytest.raises(LoRAError, match="needs an rng"):
        ad.forward(x, training=True)


def test_export_import_round_trip_and_validation():
    rng = np.random.default_rng(0)
    ad = BaseLoRA(6, 5, rank=3, alpha=6, use_rslora=True, name="mlp_in", seed=4)
    ad.B[:] = rng.normal(size=ad.B.shape)
    ad.A += 0.1
    d = ad.to_dict()
    back = LoRAAdapter.from_dict(d)
    assert isinstance(back, BaseLoRA) and back.scale == ad.scale
    x = rng.normal(size=6).astype(np.float32)
    np.testing.assert_array_equal(back.delta(x), ad.delta(x))
    other = BaseLoRA(6, 5, rank=3, alpha=6, use_rslora=True, name="mlp_in")
    before = other.state_dict()
    with pytest.raises(LoRAError, match=r"B: shape \(5, 2\), expected \(5, 3\)"):
        other.load_state_dict({"A": ad.A, "B": np.zeros((5, 2))})
    with pytest.raises(LoRAError, match="finite"):
        other.load_state_dict({"A": ad.A, "B": np.full((5, 3), np.nan)})
    with pytest.raises(LoRAError, match="unknown key"):
        other.load_state_dict({"C": 1})
    for k in before:  # nothing changed by the refused imports
        np.testing.assert_array_equal(getattr(other, k), before[k])
    other.load_state_dict(ad.state_dict())
    np.testing.assert_array_equal(other.delta(x), ad.delta(x))
    shared = BaseLoRA(6, 5, rank=3, alpha=6, name="mlp_in", shared_a_seed=9)
    with pytest.raises(LoRAError, match="shared A"):
        shared.load_state_dict({"A": ad.A})
    with pytest.raises(LoRAError, match="lacks key"):
        LoRAAdapter.from_dict({"kind": "BaseLoRA", "A": ad.A})


def test_micro_lora():
    cfg = LoRAConfig(micro_rank=2, micro_alpha=2.0)
    m = MicroLoRA.from_config(cfg, 16)
    assert m.A.shape == (2, 16) and m.B.shape == (16, 2) and m.scale == 1.0
    h = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    np.testing.assert_array_equal(m.apply(h), h)
    m.B[:] = 1.0
    np.testing.assert_allclose(m.apply(h), h + m.delta(h), rtol=1e-6)
    back = LoRAAdapter.from_dict(m.to_dict())
    assert isinstance(back, MicroLoRA)
    np.testing.assert_array_equal(back.apply(h), m.apply(h))
    with pytest.raises(LoRAError, match="MicroLoRA rank must be in"):
        MicroLoRA(16, rank=3)
    with pytest.raises(LoRAError, match="alpha"):
        BaseLoRA(4, 4, rank=2, alpha=0)
    with pytest.raises(LoRAError, match="dropout"):
        BaseLoRA(4, 4, rank=2, alpha=1, dropout=1.5)


# ---- lora.quantization: the frozen base stored group-wise (nf4 / int8), dequantised on apply -----
@pytest.mark.parametrize("scheme,ratio,frac", [("nf4", 0.1407, 0.152), ("int8", 0.2657, 0.004)])
def test_quantized_weight_within_stated_bound_and_size(scheme, ratio, frac):
    from swarm_sona.learning.quantization import ERROR_FRACTION, quantize_weight

    rng = np.random.default_rng(0)
    W = (rng.normal(size=(96, 160)) / np.sqrt(160)).astype(np.float32)
    W[3, :64] = 0.0                                  # a whole group of zeros
    q = quantize_weight(W, scheme)
    D = q.dequantize()
    assert q.nbytes <= ratio * W.nbytes and ERROR_FRACTION[q.scheme] <= frac
    assert np.all(np.abs(D - W) <= q.error_bound())  # the stated per-entry bound holds
    assert np.all(D[3, :64] == 0.0)                  # zeros stay exact
    i = int(np.argmax(np.abs(W[0, :64])))            # a group's absmax entry is reproduced
    assert D[0, i] == pytest.approx(W[0, i], rel=1e-6)
    rel = np.linalg.norm(D - W) / np.linalg.norm(W)
    assert (0.05 < rel < 0.12) if scheme == "nf4" else (0.002 < rel < 0.01)
    np.testing.assert_array_equal(quantize_weight(D, scheme).dequantize(), D)  # idempotent


def test_quantized_weight_refuses_bad_input():
    from swarm_sona.learning.quantization import QuantizationError, quantize_weight

    with pytest.raises(QuantizationError, match="unknown quantization '3bit'"):
        quantize_weight(np.ones((2, 2)), "3bit")
    with pytest.raises(QuantizationError, match="group_size must be even"):
        quantize_weight(np.ones((2, 2)), "nf4", group_size=3)
    with pytest.raises(QuantizationError, match="NaN or inf"):
        quantize_weight(np.full((2, 2), np.nan), "int8")


@pytest.mark.parametrize("scheme", ["4bit", "8bit"])
def test_quantized_layer_outputs_within_tolerance_and_smaller(scheme):
    from swarm_sona.learning.quantization import quantize_weight

    rng = np.random.default_rng(1)
    W = (rng.normal(size=(48, 64)) / 8).astype(np.float32)
    lin = LoRALinear(W, rng.normal(size=48).astype(np.float32), name="v")
    qlin = LoRALinear(W, lin.b, name="v", quantization=scheme)
    for layer in (lin, qlin):
        layer.add_adapter("default", BaseLoRA(64, 48, rank=4, alpha=8, name="v"))
        layer.adapters["default"].B[:] = 0.3
    x = rng.normal(size=(5, 64)).astype(np.float32)
    y, yq = lin(x), qlin(x)
    E = quantize_weight(W, scheme).error_bound()     # what the layer stores: the same codes
    bound = np.abs(x) @ E.T + 1e-5
    assert not np.array_equal(y, yq) and np.all(np.abs(yq - y) <= bound)  # changed, within the bound
    assert qlin.base.nbytes < 0.27 * lin.base.nbytes and qlin.base.scheme in ("nf4", "int8")
    assert not qlin.W.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        qlin.W[0, 0] = 1.0                           # no silent write into a dequantised copy
    (yt, ctx), (yqt, qctx) = lin.forward(x), qlin.forward(x)
    gy = np.ones_like(yt)
    np.testing.assert_allclose(yqt, yq, rtol=1e-6, atol=1e-6)
    gx, g = lin.backward(ctx, gy)
    gxq, gq = qlin.backward(qctx, gy)
    np.testing.assert_allclose(gq["default"]["B"], g["default"]["B"], rtol=1e-5)  # adapters stay float
    assert np.all(np.abs(gxq - gx) <= np.abs(gy) @ E + 1e-4)
    qlin.merge("default")
    assert np.all(np.abs(qlin(x) - y) <= 2 * bound + 1e-4)  # merge re-quantises (one more rounding)
    qlin.unmerge("default")
    key = qlin.state_key()
    qlin.base.requantize(None)
    assert qlin.state_key() != key               # caches of the effective weight see the switch
    assert qlin.base.scheme is None and qlin.base.nbytes == lin.base.nbytes and qlin.W.flags.writeable


def test_lora_config_quantization_names_and_errors():
    from swarm_sona.core.config import ConfigError

    assert LoRAConfig.from_dict({"quantization": "4bit"}).quantization == "nf4"
    assert LoRAConfig.from_dict({"quantization": "8bit"}).quantization == "int8"
    assert LoRAConfig.from_dict({"quantizationGroupSize": 128}).quantization_group_size == 128
    with pytest.raises(ConfigError, match="lora.quantization: must be one of"):
        LoRAConfig.from_dict({"quantization": "2bit"})
    with pytest.raises(ConfigError, match="quantization_group_size: expected an even integer"):
        LoRAConfig(quantization_group_size=63)


def test_merged_copy_nf4_is_the_merged_weight_within_the_bound():
    from swarm_sona.learning.quantization import QuantizedWeight

    rng = np.random.default_rng(2)
    lin = LoRALinear(rng.normal(size=(8, 64)).astype(np.float32), name="o", quantization="nf4", group_size=32)
    lin.add_adapter("default", BaseLoRA(64, 8, rank=2, alpha=2, name="o"))
    lin.adapters["default"].B[:] = 1.0
    dense = lin.merged_copy()["W"]
    packed = lin.merged_copy("4bit")
    qw = QuantizedWeight("nf4", dense.shape, 32, packed["q"], packed["scales"])
    assert packed["q"].nbytes == dense.size // 2 and packed["scales"].size == dense.size // 32
    assert np.all(np.abs(qw.dequantize() - dense) <= qw.error_bound())


@pytest.mark.parametrize("scheme", ["nf4", "int8"])
@pytest.mark.parametrize("n", [1, 3, 20])   # the C matvec, the C row stream, the tiled BLAS path
def test_a_quantised_base_runs_on_its_codes_and_matches_the_dequantised_float_layer(monkeypatch, scheme, n):
    rng = np.random.default_rng(3)
    W = rng.normal(size=(40, 64)).astype(np.float32)
    lin = LoRALinear(W, rng.normal(size=40), name="v", quantization=scheme)
    ref = LoRALinear(lin.W, lin.b, name="v")             # float layer on the dequantised base
    for layer in (lin, ref):
        layer.add_adapter("default", BaseLoRA(64, 40, rank=2, alpha=2, name="v", seed=5))
        layer.adapters["default"].B[:] = 0.25
    monkeypatch.setattr(lin.base, "array", lambda: pytest.fail("a float copy of the quantised base was made"))
    x = rng.normal(size=(n, 64)).astype(np.float32)
    g = rng.normal(size=(n, 40)).astype(np.float32)
    y, ctx = lin.forward(x)
    gx, grads = lin.backward(ctx, g)
    y_ref, ctx_ref = ref.forward(x)
    gx_ref, grads_ref = ref.backward(ctx_ref, g)
    assert all(not (isinstance(v, np.ndarray) and v.size >= W.size) for v in ctx.values())
    tol = 1e-5 * (np.abs(x) @ np.abs(ref.W).T).max() + 1e-6
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(lin(x), y_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(gx, gx_ref, rtol=0, atol=1e-5 * (np.abs(g) @ np.abs(ref.W)).max() + 1e-6)
    np.testing.assert_allclose(grads["default"]["B"], grads_ref["default"]["B"], rtol=1e-5, atol=1e-6)
