"""Topologies: schedules, edges and convergence within a stated tolerance (pure numpy)."""

import numpy as np
import pytest

from swarm_sona.consensus.topologies import (
    TOPOLOGIES,
    Hierarchical,
    Mesh,
    Ring,
    Star,
    TopologyError,
    disagreement,
    get_topology,
    metropolis_weights,
)

TOL = 1e-3  # stated tolerance: every agent within 0.1% (relative L2) of the merged state


def _states(ids, seed=0):
    rng = np.random.default_rng(seed)
    return {i: {"B": rng.normal(size=(8, 2)), "w": rng.normal(size=8)} for i in ids}


@pytest.mark.parametrize("name,kw,coords,max_syncs", [
    ("star", {}, (), 1),
    ("hierarchical", {}, ("q1", "q2"), 1),
    ("ring", {"rounds": 1}, (), 60),
    ("mesh", {"rounds": 1, "fanout": 1, "seed": 3}, (), 60),
    ("mesh", {"rounds": 1, "fanout": 10}, (), 1),
])
def test_every_topology_converges(name, kw, coords, max_syncs):
    workers = [f"w{i}" for i in range(6)]
    topo = get_topology(name, workers, coords, **kw)
    states = _states(workers)
    mean = {k: np.mean([states[w][k] for w in workers], axis=0) for k in ("B", "w")}
    n = topo.rounds_to_converge(states, TOL, max_syncs=max_syncs)
    assert 1 <= n <= max_syncs, (name, n)
    out = topo.simulate(states, syncs=n)
    assert disagreement({w: out[w] for w in workers}, mean) <= TOL
    if topo.root is not None:
        np.testing.assert_allclose(out[topo.root]["B"], out[workers[0]]["B"])


def test_ring_contraction_matches_theory():
    ids = [f"a{i}" for i in range(8)]
    ring = Ring(ids)
    rho = ring.expected_contraction(ring.mixing_matrix())
    assert rho == pytest.approx(1 / 3 + 2 / 3 * np.cos(2 * np.pi / 8))
    states = _states(ids, 1)
    d0 = disagreement(states)
    ring1 = Ring(ids, rounds=20)
    d20 = disagreement(ring1.simulate(states))
    assert d20 <= d0 * rho ** 20 * 1.5


def test_gossip_preserves_mean_and_mesh_is_seeded():
    ids = [f"a{i}" for i in range(7)]
    states = _states(ids, 2)
    mesh = Mesh(ids, fanout=2, rounds=3, seed=5)
    out = mesh.simulate(states)
    for k in ("B", "w"):
        np.testing.assert_allclose(np.mean([out[i][k] for i in ids], axis=0),
                                   np.mean([states[i][k] for i in ids], axis=0), atol=1e-12)
    assert mesh.neighbours(1) == Mesh(ids, fanout=2, seed=5).neighbours(1)
    w = metropolis_weights(mesh.neighbours(0))
    assert all(abs(sum(r.values()) - 1) < 1e-12 for r in w.values())


def test_edges_and_groups():
    s = Star(["a", "b"])
    assert s.edges() == {"coordinator": ["a", "b"], "a": ["coordinator"], "b": ["coordinator"]}
    h = Hierarchical(["w1", "w2", "w3"], ["q1", "q2"], groups={"q1": ["w1"], "q2": ["w2", "w3"]})
    assert h.groups == {"q1": ("w1",), "q2": ("w2", "w3")}
    assert "q1" in h.edges()["q2"]
    assert set(TOPOLOGIES) == {"star", "hierarchical", "ring", "mesh"}
    d = Ring(["a", "b", "c"], rule="median").describe()
    assert d["rule"] == {"name": "median"} and d["edges"]["a"] == ["b", "c"]


def test_robust_rule_inside_hierarchical_group():
    workers = [f"w{i}" for i in range(5)]
    states = {w: {"x": np.array([1.0 + 0.01 * i])} for i, w in enumerate(workers)}
    states["w4"] = {"x": np.array([1e6])}
    h = Hierarchical(workers, ["q"], rule="median")
    out = h.simulate(states)
    assert abs(out["q"]["x"][0] - 1.02) < 1e-9


def test_topology_errors():
    with pytest.raises(TopologyError, match="did you mean 'ring'"):
        get_topology("rnig", ["a"])
    with pytest.raises(TopologyError, match="duplicate"):
        Star(["a", "a"])
    with pytest.raises(TopologyError, match="both worker and coordinator"):
        Star(["a"], ["a"])
    with pytest.raises(TopologyError, match="every worker"):
        Hierarchical(["a", "b"], ["q"], groups={"q": ["a"]})
    with pytest.raises(TopologyError, match="no coordinator"):
        Ring(["a", "b"], ["c"])
    with pytest.raises(TopologyError, match="fanout"):
        Mesh(["a", "b"], fanout=0)
