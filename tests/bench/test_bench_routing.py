"""bench routing: exact RouteLLM metrics, the prequential stream, the CLI, and (when the
RouteLLM MMLU data is present) the acceptance check: bandit feedback, mean of 3 seeds,
APGR >= 0.62."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from swarm_sona.app.cli import main
from swarm_sona.bench.routing import (
    decision_metrics,
    embed_table,
    make_embedder,
    routing_curve,
    routing_metrics,
    run_holdout,
    run_routing_bench,
)
from swarm_sona.embedding.embedders import HashingEmbedder
from swarm_sona.executors.table import load_routing_table

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routellm_mmlu"

# subject -> (weak success rate, strong success rate)
SUBJECTS = {"algebra": (0.25, 0.9), "chemistry": (0.45, 0.85), "history": (0.8, 0.8), "literature": (0.85, 0.85)}


def build_table(folder: Path, n_per_subject: int = 250, seed: int = 0) -> Path:
    """A small table of the RouteLLM shape: one CSV per subject, prompt + weak + strong columns."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for subject, (pw, ps) in SUBJECTS.items():
        vocab = [f"{subject[:4]}{k}" for k in range(25)]
        lines = ["prompt,weak-model,strong-model"]
        for i in range(n_per_subject):
            words = " ".join(rng.choice(vocab, size=6))
            prompt = f"Question {i} about {words}?\nA. yes\nB. no\nAnswer:"
            lines.append(f'"{prompt}",{rng.random() < pw},{rng.random() < ps}')
        (folder / f"mmlu_{subject}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return build_table(tmp_path_factory.mktemp("routing") / "table")


# ---------------------------------------------------------------------------------------
# metrics, by hand
# ---------------------------------------------------------------------------------------
def test_curve_and_metrics_by_hand() -> None:
    weak = np.array([1, 0, 0, 1], bool)
    strong = np.array([1, 1, 1, 0], bool)
    # acc_weak 0.5, acc_strong 0.75; scores rank rows 1, 2, 0, 3
    scores = np.array([0.5, 3.0, 2.0, 0.1])
    share, acc = routing_curve(scores, weak, strong)
    assert share.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert acc.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]
    m = routing_metrics(scores, weak, strong)
    # PGR: 0, 1, 2, 2, 1 -> trapezoids 0.125 + 0.375 + 0.5 + 0.375
    assert m["apgr"] == pytest.approx(1.375)
    assert m["cpt50"] == pytest.approx(0.125) and m["cpt80"] == pytest.approx(0.2)


def test_ties_are_one_linear_segment() -> None:
    weak = np.array([0, 0, 1, 1], bool)
    strong = np.array([1, 1, 1, 0], bool)
    share, acc = routing_curve(np.array([1.0, 1.0, 0.0, 0.0]), weak, strong)
    assert share.tolist() == [0, 0.5, 1.0] and acc.tolist() == [0.5, 1.0, 0.75]
    assert routing_metrics(np.zeros(4), weak, strong)["apgr"] == pytest.approx(0.5)  # constant = random


def test_metric_errors() -> None:
    with pytest.raises(ValueError, match="equally accurate"):
        routing_metrics(np.arange(3.0), np.array([1, 0, 1], bool), np.array([0, 1, 1], bool))
    with pytest.raises(ValueError, match="equal length"):
        routing_curve(np.arange(3.0), np.ones(2, bool), np.ones(3, bool))
    with pytest.raises(ValueError, match="NaN"):
        routing_curve(np.array([np.nan, 1.0]), np.ones(2, bool), np.ones(2, bool))


def test_decision_metrics() -> None:
    m = decision_metrics(np.array([1, 0, 0], bool), np.array([0, 1, 0], bool), np.array([1, 1, 1], bool),
                         np.full(3, 1.0), np.full(3, 10.0))
    assert m == {"accuracy": pytest.approx(2 / 3), "strong_share": pytest.approx(1 / 3),
                 "cost_per_correct": pytest.approx(6.0), "cost": 12.0}
    none = decision_metrics(np.zeros(2, bool), np.zeros(2, bool), np.ones(2, bool), np.ones(2), np.ones(2))
    assert none["cost_per_correct"] is None


labels = st.integers(6, 40).flatmap(lambda n: st.tuples(
    arrays(np.float64, n, elements=st.floats(-5, 5, allow_subnormal=False)), arrays(bool, n), arrays(bool, n)))


@settings(max_examples=60, deadline=None)
@given(labels)
def test_metric_properties(data) -> None:
    scores, weak, strong = data
    if strong.mean() <= weak.mean():  # the routing setting: the strong model is the better one
        return
    a = routing_metrics(scores, weak, strong)["apgr"]
    # reversing the ranking mirrors the curve; a monotone transform changes nothing
    assert a + routing_metrics(-scores, weak, strong)["apgr"] == pytest.approx(1.0)
    assert routing_metrics(scores * 4.0, weak, strong)["apgr"] == pytest.approx(a)
    # the oracle's ranking is the best there is
    oracle = routing_metrics(strong.astype(float) - weak, weak, strong)["apgr"]
    assert oracle >= a - 1e-12


# ---------------------------------------------------------------------------------------
# the stream on a synthetic table
# ---------------------------------------------------------------------------------------
def test_stream_learns_on_synthetic_table(synthetic: Path) -> None:
    table = load_routing_table(synthetic)
    feats = embed_table(table, HashingEmbedder(256), progress=False)
    assert embed_table(table, HashingEmbedder(256), progress=False) is feats  # cached per run
    prices = {"weak-model": 1.0, "strong-model": 30.0}
    res = run_routing_bench(table, feats, seed=0, prices=prices)
    assert res["n"] == 1000 and res["weak"] == "weak-model" and res["strong"] == "strong-model"
    r, o = res["router"], res["oracle"]
    # the gain lives in two subjects the hashed words identify: the router must find them
    # (ranking by the true per-subject gain scores 0.77 on this table; random 0.5)
    assert r["apgr"] > 0.7 and res["random"]["apgr"] < 0.6
    assert o["apgr"] > r["apgr"]
    assert r["cpt50"] < 0.45 and r["cpt80"] < res["random"]["cpt80"]
    assert res["always_weak"]["strong_share"] == 0 and res["always_strong"]["strong_share"] == 1
    assert res["always_weak"]["apgr"] is None
    assert res["always_weak"]["accuracy"] < r["accuracy"] <= o["accuracy"]
    assert r["cost_per_correct"] < res["always_strong"]["cost_per_correct"]
    full = run_routing_bench(table, feats, seed=0, prices=prices, feedback="full")
    assert full["router"]["apgr"] > 0.7
    again = run_routing_bench(table, feats, seed=0, prices=prices)
    assert again["router"] == res["router"]  # seeded: reproducible


def test_holdout_folds_cover_every_subject(synthetic: Path) -> None:
    table = load_routing_table(synthetic)
    feats = embed_table(table, HashingEmbedder(256), progress=False)
    h = run_holdout(table, feats, subjects_per_fold=2, seed=0, prices={"weak-model": 1.0, "strong-model": 30.0})
    assert sorted(s for f in h["folds"] for s in f) == sorted(SUBJECTS)
    assert h["n"] == len(table) and len(h["fold_apgr"]) == 2
    assert {"router", "random", "oracle", "always_weak", "always_strong"} <= set(h)
    with pytest.raises(ValueError, match="holdout-subjects"):
        run_holdout(table, feats, subjects_per_fold=4, seed=0)


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def test_cli_json_and_plot(synthetic: Path, tmp_path: Path, capsys) -> None:
    # the synthetic model names have no public price: a table of the RouteLLM names does
    folder = tmp_path / "named"
    folder.mkdir()
    for f in synthetic.glob("*.csv"):
        text = f.read_text().replace("weak-model,strong-model",
                                     "mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview", 1)
        (folder / f.name).write_text(text)
    png = tmp_path / "curves.png"
    rc = main(["bench", "routing", "--data", str(folder), "--json", "--seed", "2", "--dim", "256",
               "--plot", str(png), "--holdout-subjects", "2"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for method in ("router", "random", "oracle", "always_weak", "always_strong"):
        assert {"apgr", "cpt50", "cpt80", "accuracy", "strong_share", "cost_per_correct"} <= set(out[method])
    assert out["n"] == 1000 and out["seed"] == 2 and out["feedback"] == "bandit"
    assert out["router"]["apgr"] > 0.7
    assert out["holdout"]["subjects_per_fold"] == 2
    assert out["route_latency_us"]["dim"] == 256 and out["route_latency_us"]["p50"] > 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    rc = main(["bench", "routing", "--data", str(folder), "--seeds", "2", "--dim", "256", "--feedback", "full"])
    text = capsys.readouterr().out
    assert rc == 0 and "router APGR per seed: 0:" in text and "oracle" in text


def test_cli_missing_data(tmp_path: Path, capsys) -> None:
    rc = main(["bench", "routing", "--data", str(tmp_path / "missing"), "--json"])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# acceptance on the real data
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_dir(), reason="RouteLLM MMLU data not present (../shared/data/routellm_mmlu)")
def test_acceptance_real_mmlu_bandit_apgr() -> None:
    table = load_routing_table(REAL)
    feats = embed_table(table, make_embedder("hashing-words", 4096), progress=False)
    runs = [run_routing_bench(table, feats, seed=s, feedback="bandit") for s in (0, 1, 2)]
    apgr = [r["router"]["apgr"] for r in runs]
    assert np.mean(apgr) >= 0.62, apgr
    for r in runs:
        assert r["n"] == 11892
        assert r["oracle"]["apgr"] == pytest.approx(1.285, abs=1e-3)
        assert r["router"]["accuracy"] > r["always_weak"]["accuracy"]
