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


def _actor_row(n, driver_us, hier_wall, hier_cpu, uss=60.0):
    sync = {"star": {"wall_s_median": 1.0, "cpu_s_total": 1.0},
            "hierarchical": {"wall_s_median": hier_wall, "cpu_s_total": hier_cpu}}
    return scale.ActorScale(agents=n, nodes=1, nodes_used=1, startup_s=1.0, tasks_per_s=100.0, driver_cpu_us_per_task=driver_us,
                            uss_mb_median=uss, uss_mb_max=uss, pss_mb_median=uss, sync=sync)


def _job(n, driver_us, uss=70.0):
    return scale.JobRun(agents=n, topology="hierarchical", tasks=1000, startup_s=1.0, wall_s=1.0,
                        tasks_per_s=1000.0, driver_cpu_us_per_task=driver_us, syncs=2, sync_errors=0,
                        failed_tasks=0, success_first_tenth=0.5, success_last_tenth=0.7, uss_mb_median=uss,
                        uss_mb_max=uss)


def test_checks_read_the_issue_targets_off_the_rows():
    rows = [_actor_row(64, 130.0, 0.5, 2.0), _actor_row(4, 100.0, 3.0, 3.0)]   # any order
    c = scale.checks(rows)
    assert c["driver_ratio"] == 1.3 and not c["driver_ok"] and c["driver_ratio_sizes"] == [4, 64]
    assert c["sync_agents"] == 64 and c["hierarchical_wall_over_star"] == 0.5
    assert not c["hierarchical_below_star"]          # wall below, CPU above: both are needed
    # with jobs at two sizes the driver ratio comes from the jobs, and their USS counts too
    c = scale.checks(rows, [_job(4, 100.0), _job(64, 110.0, uss=151.0)])
    assert c["driver_ratio_from"] == "jobs" and c["driver_ok"] and c["uss_mb_max"] == 151.0 and not c["uss_ok"]
    assert scale.checks([_actor_row(4, 1.0, 0.5, 0.5)]) == {
        "uss_mb_max": 60.0, "uss_ok": True, "sync_agents": 4, "hierarchical_wall_over_star": 0.5,
        "hierarchical_cpu_over_star": 0.5, "hierarchical_below_star": True}   # one size: no ratio
    assert scale.checks([]) == {}


def test_job_and_bench_reject_bad_input_before_starting_anything():
    with pytest.raises(ValueError, match="unknown topology"):
        scale.job_run(4, 100, topology="ring")
    with pytest.raises(ValueError, match="integers >= 1"):
        scale.job_run(0, 100)
    with pytest.raises(ValueError, match="job topology"):
        scale.bench_scale(merge_sizes=[4], job_tasks=10, job_topology="ring")
    with pytest.raises(ValueError, match="nodes must be an integer >= 1"):
        scale.actor_scale([4], nodes=0)
    from swarm_sona.runtime.startup import LocalCluster
    with pytest.raises(ValueError, match="LocalCluster: nodes must be an integer >= 1"):
        LocalCluster(0)


def test_checks_read_the_fewest_nodes_and_the_cli_takes_nodes():
    one, three = _actor_row(64, 1.0, 2.0, 2.0), {**_actor_row(64, 1.0, 0.5, 0.5), "nodes": 3}
    small = _actor_row(4, 1.0, 2.0, 2.0)
    assert scale.checks([small, one, three])["hierarchical_below_star"] is False   # the 1-node rows
    assert scale.checks([{**small, "nodes": 3}, three])["hierarchical_below_star"] is True
    p = argparse.ArgumentParser()
    scale.add_arguments(p)
    assert p.parse_args(["--nodes", "1,3"]).nodes == [1, 3] and p.parse_args([]).nodes == [1]
