"""EWC++: Fisher EMA, min-max normalisation, exact penalty gradient, modes, boundaries."""

import numpy as np
import pytest

from swarm_sona.learning.config import EWCConfig
from swarm_sona.learning.ewc import EWC, BoundaryDetector, EWCError, minmax_normalize


def _params(rng, shapes=(("a", (3, 4)), ("b", (5,)))):
    return {k: rng.normal(size=s).astype(np.float32) for k, s in shapes}


def test_fisher_is_ema_of_mean_squared_gradients_every_n_steps():
    ewc = EWC(EWCConfig(fisher_samples=3, fisher_decay=0.9, detect_boundaries=False))
    rng = np.random.default_rng(0)
    g1 = [rng.normal(size=4).astype(np.float32) for _ in range(3)]
    g2 = [rng.normal(size=4).astype(np.float32) for _ in range(3)]
    for g in g1[:2]:
        ewc.observe({"w": g})
    assert ewc.fisher == {} and ewc.n_fisher_updates == 0  # not yet n steps
    ewc.observe({"w": g1[2]})
    F1 = 0.9 * np.mean(np.square(g1), axis=0)
    np.testing.assert_allclose(ewc.fisher["w"], F1, rtol=1e-5)
    for g in g2:
        ewc.observe({"w": g})
    F2 = 0.1 * F1 + 0.9 * np.mean(np.square(g2), axis=0)
    np.testing.assert_allclose(ewc.fisher["w"], F2, rtol=1e-5)
    np.testing.assert_allclose(ewc.importance()["w"], F2, rtol=1e-5)
    with pytest.raises(EWCError, match="gradient of 'w' contains NaN"):
        ewc.observe({"w": np.array([np.nan, 0, 0, 0])})


def test_minmax_normalisation_at_consolidation():
    ewc = EWC(EWCConfig(fisher_samples=1, fisher_decay=1.0, detect_boundaries=False))
    ewc.observe({"a": np.array([1.0, 2.0], np.float32), "b": np.array([3.0], np.float32)})
    params = {"a": np.zeros(2, np.float32), "b": np.zeros(1, np.float32), "c": np.zeros(2, np.float32)}
    ewc.consolidate(params, task="t")
    c = ewc.consolidations[0]
    assert set(c.fisher) == {"a", "b"}  # no Fisher for c: not anchored
    np.testing.assert_allclose(c.fisher["a"], [0.0, 3 / 8])
    np.testing.assert_allclose(c.fisher["b"], [1.0])
    assert minmax_normalize({"x": np.full(3, 2.0)})["x"].tolist() == [1.0, 1.0, 1.0]
    assert minmax_normalize({"x": np.zeros(3)})["x"].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("mode", ["online", "separate"])
def test_penalty_gradient_matches_finite_differences(mode):
    rng = np.random.default_rng(1)
    ewc = EWC(EWCConfig(strength=7.0, mode=mode, fisher_samples=2, detect_boundaries=False))
    params = _params(rng)
    for _task in range(2):
        for _ in range(4):
            ewc.observe({k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()})
        ewc.consolidate(params)
        for v in params.values():
            v += rng.normal(size=v.shape).astype(np.float32)
    assert len(ewc.consolidations) == (1 if mode == "online" else 2)
    loss, grads = ewc.penalty(params)
    assert loss > 0
    eps = 1e-2  # the penalty is quadratic: central differences are exact up to rounding
    for name, p in params.items():
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp = ewc.penalty(params)[0]
            p[idx] = old - eps
            lm = ewc.penalty(params)[0]
            p[idx] = old
            num[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(grads[name], num, rtol=2e-3, atol=1e-4)
    # explicit formula
    expect = sum(0.5 * 7.0 * float(np.sum(c.fisher[k] * (params[k] - c.anchor[k]) ** 2))
                 for c in ewc.consolidations for k in c.fisher)
    assert loss == pytest.approx(expect, rel=1e-5)


def test_online_keeps_one_running_fisher_separate_restarts_it():
    rng = np.random.default_rng(2)
    g = {"w": rng.normal(size=3).astype(np.float32)}
    online = EWC(EWCConfig(mode="online", fisher_samples=1, detect_boundaries=False))
    separate = EWC(EWCConfig(mode="offline", fisher_samples=1, detect_boundaries=False))
    assert separate.config.mode == "separate"
    for e in (online, separate):
        e.observe(g)
        e.consolidate({"w": np.zeros(3, np.float32)}, task="t1")
        e.observe(g)
        e.consolidate({"w": np.ones(3, np.float32)}, task="t2")
    assert [c.task for c in online.consolidations] == ["t2"]
    assert [c.task for c in separate.consolidations] == ["t1", "t2"]
    np.testing.assert_allclose(online.fisher["w"], 0.1 * 0.9 * g["w"] ** 2 + 0.9 * g["w"] ** 2, rtol=1e-5)
    assert separate.fisher == {}


def test_penalty_on_grown_parameter_uses_anchored_rows():
    ewc = EWC(EWCConfig(strength=2.0, fisher_samples=1, detect_boundaries=False))
    ewc.observe({"head": np.ones((2, 3), np.float32)})
    ewc.consolidate({"head": np.zeros((2, 3), np.float32)})
    grown = np.ones((4, 3), np.float32)
    loss, grads = ewc.penalty({"head": grown})
    assert loss == pytest.approx(0.5 * 2.0 * 6)
    assert grads["head"].shape == (4, 3) and np.all(grads["head"][2:] == 0) and np.all(grads["head"][:2] == 2.0)
    with pytest.raises(EWCError, match="anchored with"):
        ewc.penalty({"head": np.ones((2, 5), np.float32)})


def test_ewc_keeps_a_quadratic_toy_near_the_first_optimum():
    """Two tasks with different optima: the penalty keeps the important coordinate."""
    rng = np.random.default_rng(3)
    a_opt, b_opt = np.array([1.0, -1.0], np.float32), np.array([-1.0, 2.0], np.float32)
    curv_a = np.array([10.0, 0.1], np.float32)  # task A cares about coordinate 0 only

    def train(theta, opt, curv, ewc, steps=300, lr=0.02):
        for _ in range(steps):  # gradient noise grows with curvature, as per-sample gradients do
            g = curv * (theta - opt) + 0.1 * curv * rng.normal(size=2).astype(np.float32)
            ewc.observe({"t": g})
            _, pg = ewc.penalty({"t": theta})
            theta -= lr * (g + pg.get("t", 0))
        return theta

    results = {}
    for lam in (0.0, 50.0):
        ewc = EWC(EWCConfig(strength=lam, detect_boundaries=False))
        theta = np.zeros(2, np.float32)
        train(theta, a_opt, curv_a, ewc)
        ewc.consolidate({"t": theta})
        train(theta, b_opt, np.array([1.0, 1.0], np.float32), ewc)
        results[lam] = theta.copy()
    assert abs(results[50.0][0] - a_opt[0]) < 0.2 < abs(results[0.0][0] - a_opt[0])  # protected
    assert abs(results[50.0][1] - b_opt[1]) < 0.2  # the unimportant coordinate still learns task B


def test_boundary_detection():
    rng = np.random.default_rng(4)
    ewc = EWC(EWCConfig(fisher_samples=10, boundary_z=3.0, boundary_min_samples=50))
    hits = [ewc.observe({"w": rng.normal(scale=0.1, size=8).astype(np.float32)}) for _ in range(1000)]
    assert not any(hits)  # stationary gradients: no false boundary
    hits = [ewc.observe({"w": rng.normal(scale=1.0, size=8).astype(np.float32)}) for _ in range(40)]
    assert any(hits) and ewc.n_boundaries_detected == 1
    off = EWC(EWCConfig(detect_boundaries=False, boundary_min_samples=5))
    for s in (0.1,) * 100 + (1.0,) * 50:
        assert not off.observe({"w": rng.normal(scale=s, size=8).astype(np.float32)})
    det = BoundaryDetector(window=4, z=3.0, min_samples=8)
    assert not any(det.update(x) for x in [0.0, 1.0] * 20)
    st = det.state_dict()
    det2 = BoundaryDetector(window=4, z=3.0, min_samples=8)
    det2.load_state_dict(st)
    assert [det2.update(10.0) for _ in range(8)] == [det.update(10.0) for _ in range(8)]


def test_state_round_trip_and_set_anchor_validation():
    rng = np.random.default_rng(5)
    ewc = EWC(EWCConfig(mode="separate", fisher_samples=3, detect_boundaries=False))
    params = _params(rng)
    for _ in range(4):
        ewc.observe({k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()})
    ewc.consolidate(params, task="x")
    ewc.observe({"a": np.ones((3, 4), np.float32)})
    back = EWC(ewc.config)
    back.load_state_dict(ewc.state_dict())
    moved = {k: v + 1 for k, v in params.items()}
    assert back.penalty(moved)[0] == ewc.penalty(moved)[0]
    np.testing.assert_array_equal(back.importance()["a"], ewc.importance()["a"])
    with pytest.raises(EWCError, match="unknown parameter 'z'"):
        ewc.set_anchor(params, {"z": np.ones(2)})
    with pytest.raises(EWCError, match="finite and >= 0"):
        ewc.set_anchor(params, {"b": -np.ones(5)})
    with pytest.raises(EWCError, match="malformed"):
        back.load_state_dict({"consolidations": [{"fisher": {}}]})
    ewc.set_anchor(params, {"b": np.arange(5.0)}, task="merged")
    assert ewc.consolidations[-1].task == "merged"
    np.testing.assert_allclose(ewc.consolidations[-1].fisher["b"], np.arange(5.0) / 4)
