"""``bench learning`` / ``bench continual`` CLI output, and the continual-learning acceptance test."""

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from swarm_sona.app.cli import main
from swarm_sona.bench.continual import continual_metrics, make_tasks, run_continual


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_learning_json_keys(capsys):
    res = _json(capsys, ["bench", "learning", "--json", "--dim", "32", "--repeat", "30"])
    for key in ("instant_step_us", "forward_us", "apply_us", "apply_batch1024_us", "instant_kernel_us", "route_us",
                "router_decision_us", "learn_with_router_us", "route_batch64_us", "learn_batch64_us",
                "background_1k_us"):
        row = res[key]
        assert row["p50"] > 0 and row["p99"] >= row["p50"] and row["numpy"]["p50"] > 0
        assert row["speedup"] == pytest.approx(row["numpy"]["p50"] / row["p50"])
    assert res["dim"] == 32 and res["kernels"]["active"] in ("native", "numpy")


def test_bench_background_cycle_times_the_stated_work():
    """The background row's cycles run the configured mini-batches and distil into the bank."""
    from swarm_sona import kernels
    from swarm_sona.bench.learning import background_cycle

    stats = background_cycle(16, 2, kernels, trajectories=200, repeat=2)
    assert stats["steps"] == 4 and stats["clusters"] >= 2 and stats["p50"] > 0
    assert background_cycle(16, 0, kernels, trajectories=70, repeat=1)["clusters"] >= 1  # no router models


def test_bench_learning_table_and_no_route_row(capsys):
    assert main(["bench", "learning", "--dim", "16", "--repeat", "10", "--models", "0"]) == 0
    out = capsys.readouterr().out
    assert "instant_step" in out and "numpy p50" in out and "route" not in out.split("times in us")[1]


def test_bench_continual_json_and_errors(capsys):
    res = _json(capsys, ["bench", "continual", "--json", "--tasks", "2", "--epochs", "1", "--seed", "3",
                         "--scenario", "split", "--mlp-hidden", "32"])
    assert res["scenario"] == "split" and res["seed"] == 3
    for m in ("naive", "ewc", "replay", "joint"):
        r = res[m]
        assert 0 <= r["avg_acc"] <= 1 and -1 <= r["forgetting"] <= 1 and r["intransigence"] is not None
    assert res["joint"]["intransigence"] == 0
    assert main(["bench", "continual", "--methods", "naive,magic", "--tasks", "2"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_tasks_and_metrics():
    perm = make_tasks("permuted", 3, seed=1)
    assert [t["name"] for t in perm] == ["perm0", "perm1", "perm2"]
    assert perm[0]["Xtr"].shape[1] == 64 and len(perm[0]["Xte"]) + len(perm[0]["Xtr"]) == 1797
    # task 1 is a pixel permutation of task 0: same multiset of values per row
    np.testing.assert_array_equal(np.sort(perm[0]["Xtr"], axis=1), np.sort(perm[1]["Xtr"], axis=1))
    assert not np.array_equal(perm[0]["Xtr"], perm[1]["Xtr"])
    split = make_tasks("split", 5, seed=0, dim=128)
    assert split[4]["classes"] == [8, 9] and set(split[4]["ytr"]) == {8, 9} and split[0]["Xtr"].shape[1] == 128
    with pytest.raises(ValueError, match="at most 5"):
        make_tasks("split", 6, 0)
    m = continual_metrics(np.array([[1.0, 0, 0], [0.5, 1.0, 0], [0.25, 0.5, 1.0]]))
    assert m["avg_acc"] == pytest.approx(1.75 / 3) and m["forgetting"] == pytest.approx(0.625)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_ewc_beats_naive_on_permuted_digits(seed):
    """Acceptance: 5 permuted-digit tasks through SONA.finetune; EWC++ avg accuracy >= naive + 0.10
    and EWC++ forgetting <= half of naive's; joint training is the upper reference."""
    methods = ("naive", "ewc", "joint") if seed == 0 else ("naive", "ewc")
    with threadpool_limits(1):
        res = run_continual("permuted", seed=seed, tasks=5, methods=methods)
    naive, ewc = res["naive"], res["ewc"]
    assert ewc["avg_acc"] >= naive["avg_acc"] + 0.10, res
    assert ewc["forgetting"] <= naive["forgetting"] / 2, res
    assert naive["forgetting"] > 0.3  # the set-up really forgets without protection
    if "joint" in res:
        assert res["joint"]["avg_acc"] >= ewc["avg_acc"] and res["joint"]["avg_acc"] >= naive["avg_acc"]
