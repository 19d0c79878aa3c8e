"""The small network: exact gradients of every module, inference paths, masks, state."""

import numpy as np
import pytest

from swarm_sona.engine.config import SONAConfig
from swarm_sona.learning.config import LoRAConfig
from swarm_sona.learning.errors import ModelError
from swarm_sona.learning.heads import bce_with_logits, softmax_cross_entropy
from swarm_sona.learning.model import SONAModel
from swarm_sona.learning.param_names import MODULES

ALL = LoRAConfig(rank=2, alpha=4.0, target_modules=MODULES, micro_rank=2)


def _model(dtype=np.float64, lora=ALL, d=8, hidden=12, n_router=3, seed=1, randomize=True):
    m = SONAModel(dim=d, mlp_hidden=hidden, n_router=n_router, lora=lora, dtype=dtype, seed=seed)
    if randomize:
        rng = np.random.default_rng(seed + 100)
        for ad in m.base_adapters().values():
            ad.B[:] = rng.normal(size=ad.B.shape) * 0.3
        m.micro.B[:] = rng.normal(size=m.micro.B.shape) * 0.3
        m.touch()
    return m


def _numeric(loss, arr, eps=1e-6):
    num = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        lp = loss()
        arr[idx] = old - eps
        lm = loss()
        arr[idx] = old
        num[idx] = (lp - lm) / (2 * eps)
    return num


@pytest.mark.parametrize("with_steps", [True, False])
def test_every_module_gradient_matches_finite_differences(with_steps):
    m = _model()
    m.ensure_task_head("t", [0, 1, 2])
    rng = np.random.default_rng(0)
    E = rng.normal(size=(4, 8))
    steps = [[rng.normal(size=8), rng.normal(size=8)], None, [rng.normal(size=8)], []] if with_steps else None
    X, mask = m.pack(E, steps)
    gv, gr, gt, gh = rng.normal(size=4), rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 8))

    def loss():
        out, _ = m.forward_batch(X, mask, task="t")
        return (np.sum(gv * out["value_logit"]) + np.sum(gr * out["router_logits"])
                + np.sum(gt * out["task_logits"]) + np.sum(gh * out["hidden"]))

    _, cache = m.forward_batch(X, mask, task="t")
    grads = m.backward(cache, {"value_logit": gv, "router_logits": gr, "task_logits": gt, "hidden": gh},
                       need_input_grad=True)
    params = m.parameters(("base", "micro", "value", "router", "tasks"))
    expected = {f"{mod}.{p}" for mod in MODULES for p in "AB"} | {
        "micro.A", "micro.B", "value.w", "value.b", "router.W", "router.b", "task.t.W", "task.t.b"}
    assert set(params) == expected
    if not with_steps:  # one token: q and k do not influence anything, their gradient is absent
        expected -= {"q.A", "q.B", "k.A", "k.B"}
    assert expected <= set(grads)
    for name in sorted(expected):
        num = _numeric(loss, params[name])
        np.testing.assert_allclose(grads[name], num, rtol=1e-5, atol=1e-8, err_msg=name)
    num_x = _numeric(loss, X)
    if mask is not None:
        num_x *= mask[:, :, None]
    np.testing.assert_allclose(grads["input"] * (1 if mask is None else mask[:, :, None]), num_x,
                               rtol=1e-5, atol=1e-8)


def test_dropout_training_forward_and_gradients():
    m = _model(lora=ALL.replace(dropout=0.4))
    X = np.random.default_rng(0).normal(size=(3, 8))
    g = np.ones(3)

    def loss():
        out, _ = m.forward_batch(X, training=True, rng=np.random.default_rng(7))
        return float(g @ out["value_logit"])

    _, c = m.forward_batch(X, training=True, rng=np.random.default_rng(7))
    grads = m.backward(c, {"value_logit": g})
    np.testing.assert_allclose(grads["v.B"], _numeric(loss, m.adapter("v").B), rtol=1e-5, atol=1e-8)
    eval_out, _ = m.forward_batch(X)
    train_out, _ = m.forward_batch(X, training=True, rng=np.random.default_rng(1))
    assert not np.allclose(eval_out["value_logit"], train_out["value_logit"])
    np.testing.assert_allclose(m.forward_batch(X)[0]["value_logit"], eval_out["value_logit"])


def test_losses_gradients():
    rng = np.random.default_rng(0)
    z = rng.normal(size=5)
    t = rng.uniform(size=5)
    w = np.array([1.0, 0, 2, 1, 0])
    _, g = bce_with_logits(z, t, w)
    np.testing.assert_allclose(g, _numeric(lambda: bce_with_logits(z, t, w)[0], z), rtol=1e-6, atol=1e-9)
    Z = rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 2])
    _, G, P = softmax_cross_entropy(Z, y)
    np.testing.assert_allclose(P.sum(1), 1)
    np.testing.assert_allclose(G, _numeric(lambda: softmax_cross_entropy(Z, y)[0], Z), rtol=1e-6, atol=1e-9)
    assert bce_with_logits(z, t, np.zeros(5))[0] == 0.0


def test_single_batch_and_encode_paths_agree():
    m = _model(dtype=np.float32, d=32, hidden=48)
    rng = np.random.default_rng(1)
    e = rng.normal(size=32).astype(np.float32)
    s = [rng.normal(size=32).astype(np.float32) for _ in range(2)]
    for steps in (None, s):
        one = m.forward(e, steps)
        X, mask = m.pack(e[None], None if steps is None else [steps])
        batch, _ = m.forward_batch(X, mask)
        np.testing.assert_allclose(one["hidden"], batch["hidden"][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(one["value"], batch["value"][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(one["router_probs"], batch["router_probs"][0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(m.encode(X, mask)[0], one["h"], rtol=1e-4, atol=1e-5)
        assert one["h"].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(one["h"]), 1.0, rtol=1e-3)
    assert not np.allclose(m.forward(e)["h"], m.forward(e, s)["h"])  # steps are read


def test_padded_batch_matches_individual_forwards():
    m = _model(d=16, hidden=16)
    rng = np.random.default_rng(2)
    E = rng.normal(size=(3, 16))
    steps = [[rng.normal(size=16)], [], [rng.normal(size=16) for _ in range(3)]]
    X, mask = m.pack(E, steps)
    assert X.shape == (3, 4, 16) and mask.sum() == 3 + 4
    out, _ = m.forward_batch(X, mask)
    for i in range(3):
        np.testing.assert_allclose(out["hidden"][i], m.forward(E[i], steps[i])["hidden"], rtol=1e-9, atol=1e-12)
    Xc, _ = m.pack(E, steps, max_steps=1)
    assert Xc.shape == (3, 2, 16)


def test_fresh_adapters_leave_outputs_bit_identical():
    plain = SONAModel(dim=32, mlp_hidden=16, n_router=2, lora=LoRAConfig(target_modules=()), seed=3)
    adapted = SONAModel(dim=32, mlp_hidden=16, n_router=2, lora=ALL, seed=3)
    rng = np.random.default_rng(0)
    e = rng.normal(size=32).astype(np.float32)
    steps = [rng.normal(size=32).astype(np.float32)]
    for st in (None, steps):
        a, b = plain.forward(e, st), adapted.forward(e, st)
        for key in ("h", "hidden", "router_probs"):
            assert np.array_equal(a[key], b[key]), key
        assert a["value"] == b["value"]
    X = rng.normal(size=(5, 2, 32)).astype(np.float32)
    assert np.array_equal(plain.forward_batch(X)[0]["hidden"], adapted.forward_batch(X)[0]["hidden"])


def test_touch_refreshes_cached_weights_and_merge_unmerge_restores():
    m = _model(dtype=np.float32, d=16, hidden=16, randomize=False)
    e = np.random.default_rng(0).normal(size=16).astype(np.float32)
    base = m.forward(e)["h"].copy()
    m.adapter("mlp_in").B[:] = 0.5
    assert np.array_equal(m.forward(e)["h"], base)  # stale until touched
    m.touch()
    adapted = m.forward(e)["h"].copy()
    assert not np.allclose(adapted, base)
    W0 = {k: lin.W.copy() for k, lin in m.layers.items()}
    for mod in MODULES:
        m.layers[mod].merge("default")
    np.testing.assert_allclose(m.forward(e)["h"], adapted, atol=1e-5)  # merge invalidates by itself
    for mod in MODULES:
        m.layers[mod].unmerge("default")
        assert np.max(np.abs(m.layers[mod].W - W0[mod])) <= 1e-6
    np.testing.assert_allclose(m.forward(e)["h"], adapted, atol=1e-6)


def test_state_dict_round_trip_and_refusals():
    m = _model(dtype=np.float32, d=16, hidden=8)
    m.ensure_task_head("colour", ["red", "green"])
    m.task_head("colour").W[:] = 0.3
    e = np.random.default_rng(0).normal(size=16).astype(np.float32)
    st = m.state_dict()
    fresh = SONAModel(dim=16, mlp_hidden=8, n_router=3, lora=ALL, seed=99)  # other base seed
    fresh.load_state_dict(st)
    a, b = m.forward(e, task="colour"), fresh.forward(e, task="colour")
    for key in ("h", "hidden", "router_probs", "task_logits"):
        assert np.array_equal(a[key], b[key]), key
    other = SONAModel(dim=16, mlp_hidden=8, n_router=3, lora=ALL, seed=5)
    before = other.forward(e)["hidden"].copy()
    bad = dict(st, heads={"value": {"w": np.zeros(3), "b": np.zeros(1)}})
    with pytest.raises(ModelError, match=r"value.w: shape \(3,\), expected \(16,\)"):
        other.load_state_dict(bad)
    with pytest.raises(ModelError, match="dim=16"):
        SONAModel(dim=8, mlp_hidden=8).load_state_dict(st)
    assert np.array_equal(other.forward(e)["hidden"], before)


def test_task_heads_and_input_errors():
    m = _model(dtype=np.float32, d=8)
    head = m.ensure_task_head("digits", [3, 1])
    assert head.classes == [3, 1]
    m.ensure_task_head("digits", [1, 7])
    assert head.classes == [3, 1, 7] and head.W.shape == (3, 8)
    assert head.encode([7, 3]).tolist() == [2, 0] and head.decode(np.array([1])) == [1]
    with pytest.raises(ModelError, match="unknown label 9"):
        head.encode([9])
    with pytest.raises(ModelError, match="no task head 'x'"):
        m.forward(np.ones(8), task="x")
    with pytest.raises(ModelError, match=r"embedding has shape \(7,\), expected \(8,\)"):
        m.forward(np.ones(7))
    with pytest.raises(ModelError, match="step embedding 0"):
        m.forward(np.ones(8), [np.ones(3)])
    with pytest.raises(ModelError, match="unknown parameter group"):
        m.parameters(("bass",))
    with pytest.raises(ModelError, match="labels must be integers or strings"):
        m.ensure_task_head("f", [1.5])


def test_instant_step_updates_micro_and_heads_only():
    cfg = SONAConfig.from_dict({"dim": 16, "mlp_hidden": 8,
                                "llm_router": {"models": [{"name": "a", "quality": 0.9}, {"name": "b"}]}})
    m = SONAModel.from_config(cfg)
    assert m.n_router == 2 and m.router_b[0] > m.router_b[1]  # warm start from the prior quality
    e = np.random.default_rng(0).normal(size=16).astype(np.float32)
    out = m.forward(e)
    B0, wv0, W0 = m.micro.B.copy(), m.value_w.copy(), m.router_W.copy()
    base = {k: lin.W.copy() for k, lin in m.layers.items()}
    v, u = m.instant_step(out["h"], 1, 1.0, 1.0, 0.5)
    assert v == pytest.approx(out["value"], rel=1e-5) and u == pytest.approx(out["router_probs"][1], rel=1e-5)
    assert not np.array_equal(m.micro.B, B0) and not np.array_equal(m.value_w, wv0)
    assert np.array_equal(m.router_W[0], W0[0]) and not np.array_equal(m.router_W[1], W0[1])
    assert all(np.array_equal(base[k], lin.W) for k, lin in m.layers.items())
    after = m.forward(e)
    assert after["value"] > out["value"] and after["router_probs"][1] > out["router_probs"][1]
