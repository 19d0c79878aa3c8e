"""``bench scale``, in-process part on tiny sizes: the accounting of one synchronisation per
topology, the distance from the flat merge, the growth fit, and the CLI wiring."""

import argparse
import json

import numpy as np
import pytest

from swarm_sona.bench import scale
from swarm_sona.consensus.rules import get_rule
from swarm_sona.consensus.updates import AgentUpdate


def test_star_moves_every_state_in_and_out_and_equals_the_flat_merge():
    states = scale.agent_states(5, width=100)   # 400 bytes per state
    topo = scale.scale_topology("star", list(states), "fedavg")
    out, led = scale.run_sync(topo, states)
    assert led.moved == 2 * 5 * 400            # 5 pushes in, 5 broadcasts out
    assert led.bytes["coordinator"] == 2 * 5 * 400 and led.bytes["agent-0"] == 2 * 400
    flat = np.mean([s["w"] for s in states.values()], axis=0)
    assert np.allclose(out["coordinator"]["w"], flat, atol=1e-6)
    assert all(np.array_equal(out[a]["w"], out["coordinator"]["w"]) for a in states)


def test_hierarchical_spreads_the_work_over_sqrt_n_queens():
    rows = scale.merge_curve([16], rules=["fedavg"], topologies=["star", "hierarchical"], width=20000, repeat=1)
    star, hier = rows
    assert hier["coordinators"] == 4 and star["coordinators"] == 1
    assert hier["busiest_bytes"] < star["busiest_bytes"] / 2   # the root sees 4 workers + 3 queens, not 16
    assert star["distance"] == 0.0 and hier["distance"] < 1e-6   # fedavg: counts carried up, exact


def test_robust_rules_under_hierarchy_are_not_the_flat_median():
    states = scale.agent_states(9, width=50, seed=3)
    flat = get_rule("median")([AgentUpdate(a, 0, s) for a, s in sorted(states.items())])["w"]
    topo = scale.scale_topology("hierarchical", list(states), "median")
    out, _ = scale.run_sync(topo, states)
    assert not np.allclose(out[topo.root]["w"], flat)   # a median of medians
    (row,) = scale.merge_curve([9], rules=["median"], topologies=["hierarchical"], width=50, repeat=1)
    assert row["distance"] > 1e-3


def test_gossip_rounds_bring_agents_closer_to_the_average():
    far, near = (scale.merge_curve([16], rules=["fedavg"], topologies=["gossip"], rounds=r, width=64, repeat=1)[0]
                 for r in (1, 12))
    assert near["distance"] < far["distance"] / 4 and near["bytes"] > 6 * far["bytes"]   # 12 rounds vs 1


def test_growth_exponents_and_bad_input():
    rows = scale.merge_curve([4, 16, 64], rules=["fedavg"], topologies=["star"], width=2000, repeat=1)
    g = scale.growth(rows)["star"]["fedavg"]
    assert g["bytes"] == pytest.approx(1.0, abs=0.01)   # a star moves 2 N states
    with pytest.raises(ValueError, match="sizes"):
        scale.merge_curve([1])
    with pytest.raises(ValueError, match="unknown"):
        scale.merge_curve([4], topologies=["ring"])
    with pytest.raises(ValueError, match="unknown topology"):
        scale.scale_topology("tree", ["a"], "fedavg")
    with pytest.raises(ValueError, match="n must be"):
        scale.queens_for(0)


def test_cli_runs_the_in_process_part_as_json(capsys):
    p = argparse.ArgumentParser()
    scale.add_arguments(p)
    args = p.parse_args(["--json", "--no-actors", "--merge-sizes", "4,8", "--rules", "fedavg,median"])
    assert scale.run(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["merge"]) == 2 * 2 * 3 and res["actors"] == []
    assert set(res["growth"]) == {"star", "hierarchical", "gossip"} and res["sizes"]["state_bytes"] > 10_000
    with pytest.raises(SystemExit):
        p.parse_args(["--agents", "4,x"])


def test_bench_scale_is_registered_in_the_cli():
    from swarm_sona.app.cli import BENCHMARKS

    assert BENCHMARKS["scale"][0] == "swarm_sona.bench.scale"
