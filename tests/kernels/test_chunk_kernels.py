"""The chunk kernels (``instant_steps``, ``bandit_update``): one call for a whole chunk, checked
once at that boundary, equal to the per-row path.

``instant_steps`` must give exactly the state of ``instant_step`` called row by row on the same
backend (the C loop runs the same C step) and match the numpy reference within the tolerance of
``test_native_kernels``; ``bandit_update`` (float64) must match its numpy reference to 1e-12
relative. Bad input at the public entry points raises :class:`KernelInputError` naming the
argument, with nothing changed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_sona import kernels as nk
from swarm_sona.engine.replay import Replay
from swarm_sona.kernels import KernelInputError, numpy_backend
from swarm_sona.kernels import reference as ref

ACTIVE = nk.backend()
BACKENDS = [ACTIVE] if ACTIVE is numpy_backend else [ACTIVE, numpy_backend]
BACKEND_IDS = [b.__name__.rsplit(".", 1)[-1] for b in BACKENDS]
F32 = np.float32
chunk_settings = settings(deadline=None, max_examples=40)


def _params(rng, d, r, M):
    f = lambda *shape: (rng.standard_normal(shape) * 0.5).astype(F32)  # noqa: E731
    return dict(A=f(r, d), B=f(d, r), wv=f(d), bv=f(1), Wr=f(M, d), br=f(M))


def _copy(p):
    return {k: v.copy() for k, v in p.items()}


@st.composite
def chunk_case(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n, d, r, M = draw(st.integers(0, 9)), draw(st.integers(0, 11)), draw(st.integers(1, 3)), draw(st.integers(0, 4))
    H = (rng.standard_normal((n, d)) * 0.5).astype(F32)
    arms = rng.integers(-1, M, size=n) if M > 0 else np.full(n, -1)
    rewards = rng.uniform(size=n)
    successes = (rng.uniform(size=n) < 0.5).astype(np.float64)
    opts = dict(scale=draw(st.sampled_from([0.5, 1.0, 2.0])), lr=draw(st.sampled_from([0.01, 0.1, 0.5])),
                train_a=draw(st.booleans()), clip=draw(st.sampled_from([0.0, 0.3, 5.0])))
    return H, _params(rng, d, r, M), arms, rewards, successes, opts


def _steps(fn, H, p, arms, rewards, successes, o):
    return fn(H, p["A"], p["B"], o["scale"], p["wv"], p["bv"], p["Wr"], p["br"], arms, rewards, successes,
              o["lr"], o["train_a"], o["clip"])


def _rows(step, H, p, arms, rewards, successes, o):
    out = [step(H[k], p["A"], p["B"], o["scale"], p["wv"], p["bv"], p["Wr"], p["br"], int(arms[k]),
                float(rewards[k]), float(successes[k]), o["lr"], o["train_a"], o["clip"]) for k in range(len(H))]
    return np.array([v for v, _ in out], np.float64), np.array([u for _, u in out], np.float64)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@chunk_settings
@given(case=chunk_case())
def test_instant_steps_equal_instant_step_row_by_row(backend, case):
    H, p, arms, rewards, successes, o = case
    chunk, rows = _copy(p), _copy(p)
    v1, u1 = _steps(backend.instant_steps, H, chunk, arms, rewards, successes, o)
    v2, u2 = _rows(backend.instant_step, H, rows, arms, rewards, successes, o)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(u1, u2)    # NaN where the arm is -1, in both
    for k in p:
        np.testing.assert_array_equal(chunk[k], rows[k])
        assert chunk[k].dtype == F32


@chunk_settings
@given(case=chunk_case())
def test_instant_steps_match_the_numpy_reference(case):
    H, p, arms, rewards, successes, o = case
    mine, theirs = _copy(p), _copy(p)
    v1, u1 = _steps(nk.instant_steps, H, mine, arms, rewards, successes, o)
    v2, u2 = _steps(ref.instant_steps, H, theirs, arms, rewards, successes, o)
    np.testing.assert_allclose(v1, v2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(u1, u2, rtol=1e-4, atol=1e-5)
    for k in p:
        np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-4, atol=1e-4)


_BAD_STEPS = [
    ("A", lambda a: a.astype(np.float64), "float32"),
    ("Wr", lambda a: a.tolist(), "numpy float32 array"),
    ("arms", lambda a: np.array([0, 3, 1]), "'arms' holds 3, outside [-1, 3)"),
    ("arms", lambda a: np.array([0.5, 1.0, 0.0]), "must hold integers"),
    ("arms", lambda a: a[:2], "shape (3,)"),
    ("rewards", lambda a: a[:1], "shape (3,)"),
    ("H", lambda a: a[:, :5], "'A'"),
]


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("name,bad,words", _BAD_STEPS, ids=[f"{b[0]}-{i}" for i, b in enumerate(_BAD_STEPS)])
def test_instant_steps_refuse_bad_input_at_the_boundary_and_change_nothing(backend, name, bad, words):
    rng = np.random.default_rng(0)
    p = _params(rng, 6, 2, 3)
    before = _copy(p)
    args = dict(H=rng.standard_normal((3, 6)).astype(F32), arms=np.array([0, 2, -1]), rewards=np.ones(3),
                successes=np.ones(3))
    if name in p:
        p[name] = bad(p[name])
    else:
        args[name] = bad(args[name])
    with pytest.raises(KernelInputError, match="instant_steps") as err:
        _steps(backend.instant_steps, args["H"], p, args["arms"], args["rewards"], args["successes"],
               dict(scale=1.0, lr=0.1, train_a=True, clip=0.0))
    assert words in str(err.value)
    for k, v in before.items():
        if k != name:
            np.testing.assert_array_equal(p[k], v)


# ---- bandit_update ------------------------------------------------------------------------

def _posterior(rng, M, D):
    W = rng.standard_normal((M, D)) * 0.1
    P = rng.uniform(0.5, 2.0, (M, D))
    return W, P, 1.0 / P


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("n,M,D", [(0, 2, 3), (1, 1, 1), (40, 3, 17), (64, 4, 257)])
def test_bandit_update_matches_the_reference_and_one_row_at_a_time(backend, n, M, D):
    rng = np.random.default_rng(n + M + D)
    W, P, V = _posterior(rng, M, D)
    idx, X, y = rng.integers(0, M, n), rng.standard_normal((n, D)), (rng.uniform(size=n) < 0.5) * 1.0
    got = [a.copy() for a in (W, P, V)]
    assert backend.bandit_update(*got, idx, X, y, 0.7) == -1
    want = [a.copy() for a in (W, P, V)]
    assert ref.bandit_update(*want, idx, X, y, 0.7) == -1
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    rows = [a.copy() for a in (W, P, V)]
    for k in range(n):   # the same kernel one row per call: exactly the chunk's state
        backend.bandit_update(*rows, idx[k:k + 1], X[k:k + 1], y[k:k + 1], 0.7)
    for g, w in zip(got, rows, strict=True):
        np.testing.assert_array_equal(g, w)
    if n:
        assert not np.array_equal(got[0], W)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_bandit_update_stops_at_a_non_finite_score(backend):
    rng = np.random.default_rng(4)
    W, P, V = _posterior(rng, 2, 3)
    X = rng.standard_normal((3, 3))
    X[1, 0] = np.inf
    got = [a.copy() for a in (W, P, V)]
    assert backend.bandit_update(*got, np.array([0, 1, 1]), X, np.ones(3), 0.5) == 1
    np.testing.assert_array_equal(got[0][1], W[1])      # rows 1 and 2 (model 1) not applied
    assert not np.array_equal(got[0][0], W[0])           # row 0 was


def _anchor(rng, M, D):
    AP = rng.uniform(0.5, 2.0, (M, D))
    return AP, AP * rng.standard_normal((M, D)) * 0.1


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("n,M,D", [(1, 1, 1), (40, 3, 17), (64, 4, 257)])
def test_bandit_update_with_decay_matches_the_reference_and_one_row_at_a_time(backend, n, M, D):
    rng = np.random.default_rng(10 + n + M + D)
    W, P, V = _posterior(rng, M, D)
    AP, AE = _anchor(rng, M, D)
    idx, X, y = rng.integers(0, M, n), rng.standard_normal((n, D)), (rng.uniform(size=n) < 0.5) * 1.0
    got = [a.copy() for a in (W, P, V)]
    assert backend.bandit_update(*got, idx, X, y, 0.7, 0.9, AP, AE) == -1
    want = [a.copy() for a in (W, P, V)]
    assert ref.bandit_update(*want, idx, X, y, 0.7, 0.9, AP, AE) == -1
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    rows = [a.copy() for a in (W, P, V)]
    for k in range(n):
        backend.bandit_update(*rows, idx[k:k + 1], X[k:k + 1], y[k:k + 1], 0.7, 0.9, AP, AE)
    for g, w in zip(got, rows, strict=True):
        np.testing.assert_array_equal(g, w)
    plain = [a.copy() for a in (W, P, V)]   # the decay changes the outcome
    backend.bandit_update(*plain, idx, X, y, 0.7)
    assert not np.allclose(plain[1], got[1])


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_bandit_update_decay_is_the_natural_parameter_step_towards_the_anchor(backend):
    # a zero feature row: the update adds nothing to the weights it multiplies, so what changes
    # there is the decay alone: P <- AP + g (P - AP), P w <- AE + g (P w - AE)
    rng = np.random.default_rng(11)
    W, P, V = _posterior(rng, 1, 3)
    AP, AE = _anchor(rng, 1, 3)
    X = np.array([[0.0, 0.0, 1.0]])
    got = [a.copy() for a in (W, P, V)]
    backend.bandit_update(*got, np.array([0]), X, np.ones(1), 1.0, 0.5, AP, AE)
    pd = AP[0, :2] + 0.5 * (P[0, :2] - AP[0, :2])
    np.testing.assert_allclose(got[1][0, :2], pd, rtol=1e-12)
    np.testing.assert_allclose(got[0][0, :2], (AE[0, :2] + 0.5 * (P[0, :2] * W[0, :2] - AE[0, :2])) / pd, rtol=1e-12)
    np.testing.assert_allclose(got[2][0], 1.0 / got[1][0], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
def test_bandit_update_with_decay_stops_at_a_non_finite_score_before_decaying_it(backend):
    rng = np.random.default_rng(12)
    W, P, V = _posterior(rng, 2, 3)
    AP, AE = _anchor(rng, 2, 3)
    X = rng.standard_normal((3, 3))
    X[1, 0] = np.inf
    got = [a.copy() for a in (W, P, V)]
    assert backend.bandit_update(*got, np.array([0, 1, 1]), X, np.ones(3), 0.5, 0.8, AP, AE) == 1
    for g, w in zip(got, (W, P, V), strict=True):
        np.testing.assert_array_equal(g[1], w[1])          # model 1 neither decayed nor updated


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("decay,anchors,words", [(0.9, False, "needs the anchor arrays"),
                                                 (0.0, True, "decay must be in (0, 1]"),
                                                 (1.5, True, "decay must be in (0, 1]"),
                                                 (0.9, "short", "'AP' must have shape (2, 3)")])
def test_bandit_update_refuses_a_bad_decay_or_anchor_and_changes_nothing(backend, decay, anchors, words):
    rng = np.random.default_rng(13)
    W, P, V = _posterior(rng, 2, 3)
    AP, AE = _anchor(rng, 2, 3)
    if anchors == "short":
        AP = AP[:1]
    got = [a.copy() for a in (W, P, V)]
    with pytest.raises(KernelInputError, match="bandit_update") as err:
        backend.bandit_update(*got, np.array([0, 1]), rng.standard_normal((2, 3)), np.ones(2), 0.5, decay,
                              *((AP, AE) if anchors else ()))
    assert words in str(err.value)
    for g, w in zip(got, (W, P, V), strict=True):
        np.testing.assert_array_equal(g, w)


_BAD_BANDIT = [
    ("W", lambda a: a.astype(np.float32), "'W' is updated in place and must be a float64"),
    ("P", lambda a: np.asfortranarray(a), "'P' is updated in place and must be writable and C-contiguous"),
    ("V", lambda a: a[:1].copy(), "'V' must have shape (2, 3)"),
    ("idx", lambda a: np.array([0, 2, 1]), "'idx' holds 2, outside [0, 2)"),
    ("idx", lambda a: np.array([0, -1, 1]), "'idx' holds -1"),
    ("idx", lambda a: np.array([0.0, 1.0, 1.0]), "'idx' must hold integers"),
    ("X", lambda a: a[:, :2], "'X' must have shape (n, 3)"),
    ("y", lambda a: ["a", "b", "c"], "'y' must hold real numbers"),
]


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize("name,bad,words", _BAD_BANDIT, ids=[f"{b[0]}-{i}" for i, b in enumerate(_BAD_BANDIT)])
def test_bandit_update_refuses_bad_input_and_changes_nothing(backend, name, bad, words):
    rng = np.random.default_rng(5)
    W, P, V = _posterior(rng, 2, 3)
    args = dict(W=W.copy(), P=P.copy(), V=V.copy(), idx=np.array([0, 1, 1]), X=rng.standard_normal((3, 3)),
                y=np.ones(3))
    args[name] = bad(args[name])
    with pytest.raises(KernelInputError, match="bandit_update") as err:
        backend.bandit_update(args["W"], args["P"], args["V"], args["idx"], args["X"], args["y"], 0.5)
    assert words in str(err.value)
    for k, ref_v in (("W", W), ("P", P), ("V", V)):
        if k != name:
            np.testing.assert_array_equal(args[k], ref_v)


def test_bandit_update_converts_read_only_inputs():
    rng = np.random.default_rng(6)
    W, P, V = _posterior(rng, 2, 3)
    X = rng.standard_normal((2, 3))
    a = [W.copy(), P.copy(), V.copy()]
    b = [W.copy(), P.copy(), V.copy()]
    nk.bandit_update(*a, [0, 1], X.tolist(), [True, False], 0.5)        # lists, bools
    nk.bandit_update(*b, np.array([0, 1], np.int32), X, np.array([1.0, 0.0]), 0.5)
    for x, z in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, z)


def test_replay_extend_equals_appends_across_the_wrap():
    from swarm_sona.core.trajectory import Trajectory
    ts = [Trajectory(task=str(i), embedding=np.zeros(2, F32)) for i in range(11)]
    a, b = Replay(4), Replay(4)
    a.extend(ts[:3])
    a.extend(ts[3:])
    for t in ts:
        b.append(t)
    assert [t.task for t in a.ordered()] == [t.task for t in b.ordered()] == ["7", "8", "9", "10"]
    assert a.pos == b.pos


@pytest.mark.skipif(ACTIVE is numpy_backend, reason="native extension not built")
def test_an_older_extension_without_the_chunk_kernels_gives_the_same_results(monkeypatch):
    rng = np.random.default_rng(7)
    p = _params(rng, 6, 2, 3)
    H, arms = rng.standard_normal((5, 6)).astype(F32), np.array([0, 2, -1, 1, 0])
    o = dict(scale=1.0, lr=0.1, train_a=True, clip=0.0)
    new, old = _copy(p), _copy(p)
    v1, u1 = _steps(ACTIVE.instant_steps, H, new, arms, np.full(5, 0.5), np.ones(5), o)
    W, P, V = _posterior(rng, 2, 3)
    X, idx = rng.standard_normal((4, 3)), np.array([0, 1, 1, 0])
    a, b = [W.copy(), P.copy(), V.copy()], [W.copy(), P.copy(), V.copy()]
    ACTIVE.bandit_update(*a, idx, X, np.ones(4), 0.5)
    monkeypatch.setattr(ACTIVE, "_STEPS", None)
    monkeypatch.setattr(ACTIVE, "_BANDIT", None)
    v2, u2 = _steps(ACTIVE.instant_steps, H, old, arms, np.full(5, 0.5), np.ones(5), o)
    ACTIVE.bandit_update(*b, idx, X, np.ones(4), 0.5)
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(u1, u2)
    for k in p:
        np.testing.assert_array_equal(new[k], old[k])
    for x, z in zip(a, b, strict=True):
        np.testing.assert_allclose(x, z, rtol=1e-12)
