"""bench ablation and bench shift on the vendored RouteLLM slice (seconds, no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from swarm_sona.bench.ablation import (
    ENCODER_VARIANTS,
    VARIANTS,
    AblationConfig,
    EngineRouter,
    engine_config,
    run_ablation,
    summarize,
    variant_factory,
)
from swarm_sona.bench.routing import (
    embed_table,
    make_embedder,
    pick_models,
    router_config,
    run_routing_bench,
    subject_subset,
)
from swarm_sona.core.config import ConfigError
from swarm_sona.core.executor import Task
from swarm_sona.executors.table import TableExecutor, load_routing_table

SLICE = Path(__file__).parents[1] / "data" / "routellm_slice"
DIM = 32


@pytest.fixture(scope="module")
def table():
    return load_routing_table(SLICE)


@pytest.fixture(scope="module")
def features(table):
    return embed_table(table, make_embedder("hashing-words", DIM), progress=False)


def _router_cfg(table, seed=0):
    ex = TableExecutor(table)
    w, s = pick_models(table, None, None)
    return router_config(table, ex, w, s, seed=seed, cost_weight=0.1, exploration="thompson", options=None)


def _learn_some(router, table, features, n=150):
    ex = TableExecutor(table)
    for i in range(n):
        task = Task(table.prompts[i])
        d = router.route(task, embedding=features[i])
        out = ex(task, d.model, [])
        router.feedback(task, d.model, out.success, out.reward, out.cost_usd, None, embedding=features[i])


def test_each_variant_switches_its_component_off(table, features):
    rc = _router_cfg(table)
    built = {v: variant_factory(v, mlp_hidden=16)(rc, DIM) for v in VARIANTS if v not in ENCODER_VARIANTS}
    for r in built.values():
        _learn_some(r, table, features)
    full = built["full"].sona
    assert full.model.micro.norm() > 0 and full.n_background > 0
    # no MicroLoRA: the adapter adds nothing and never moves, the heads still learn
    nm = built["no_micro"].sona
    assert nm.model.micro.scale == 0.0 and nm.model.micro.norm() == 0.0
    assert not np.allclose(nm.model.router_W, variant_factory("no_micro", mlp_hidden=16)(rc, DIM).sona.model.router_W)
    # no BaseLoRA: no background cycle, the BaseLoRA B matrices stay zero
    nb = built["no_base"].sona
    assert nb.n_background == 0 and all(float(np.abs(a.B).sum()) == 0.0 for a in nb.model.base_adapters().values())
    assert any(float(np.abs(a.B).sum()) > 0 for a in full.model.base_adapters().values())
    # no EWC++: lambda 0 (the full engine's default is strength 1000 = the guide's lambda 0.5)
    assert built["no_ewc"].sona.config.ewc.strength == 0.0 and full.config.ewc.strength == 1000.0
    assert full.config.ewc.guide_lambda == 0.5
    # gated: the head gate is on; online_ewc: consolidation every 500 trajectories
    assert built["gated"].sona.head_gate is not None and full.head_gate is None
    assert built["online_ewc"].sona.config.ewc.consolidate_every == 500 and full.config.ewc.consolidate_every == 0
    # frozen: heads and adapters as initialised, but the bandit learned
    fr = built["frozen"].sona
    fresh = variant_factory("frozen", mlp_hidden=16)(rc, DIM).sona
    assert np.array_equal(fr.model.router_W, fresh.model.router_W) and fr.model.micro.norm() == 0.0
    assert float(fr.router.posterior.calls.sum()) == 150
    # bandit: the router alone
    assert not isinstance(built["bandit"], EngineRouter)
    assert engine_config("bandit", rc, DIM) is None


def test_engine_config_rejects_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        engine_config("nope", {}, 8)
    with pytest.raises(ValueError, match="unknown variant"):
        variant_factory("nope")


@pytest.mark.parametrize("kw, msg", [({"seeds": 0}, "seeds"), ({"holdout_folds": 1}, "holdout_folds"),
                                     ({"variants": ()}, "variants"), ({"feedback": "some"}, "feedback"),
                                     ({"dim": 1}, "dim")])
def test_ablation_config_validates(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        AblationConfig(**kw)


def test_run_ablation_paired_deterministic_and_variants_differ(table, features):
    cfg = AblationConfig(seeds=2, dim=DIM, mlp_hidden=16, holdout_folds=2, variants=("bandit", "full", "frozen"))
    a = run_ablation(table, features, cfg)
    b = run_ablation(table, features, cfg)
    strip = lambda r: {v: s["seeds"] for v, s in r["variants"].items()}  # noqa: E731
    assert strip(a) == strip(b)   # learning is deterministic for a seed
    assert a["n"] == 300 and a["subjects"] == 4 and a["seeds"] == [0, 1]
    for v, sm in a["variants"].items():
        assert [r["seed"] for r in sm["seeds"]] == [0, 1]
        for k in ("apgr", "holdout_apgr"):
            assert sm["min"][k] <= sm["median"][k] <= sm["max"][k]
        if v != "bandit":
            d = [r["apgr"] - q["apgr"] for r, q in zip(sm["seeds"], a["variants"]["bandit"]["seeds"], strict=True)]
            assert sm["delta_vs_bandit"]["apgr"] == pytest.approx(float(np.median(d)))
    # the engine changes the router's scores: its rows are not the bandit's
    assert a["variants"]["full"]["seeds"] != a["variants"]["bandit"]["seeds"]
    assert a["variants"]["full"]["seeds"] != a["variants"]["frozen"]["seeds"]
    for sm in a["variants"].values():   # the second half of the stream is scored on its own
        assert all(0.0 < r["apgr_late"] < 2.0 and r["apgr_late"] != r["apgr"] for r in sm["seeds"])
    # the bandit row is exactly today's bench routing router
    plain = run_routing_bench(table, features, seed=1)["router"]["apgr"]
    assert a["variants"]["bandit"]["seeds"][1]["apgr"] == pytest.approx(plain)
    # holdout off: no holdout metrics
    c = run_ablation(table, features, AblationConfig(seeds=1, dim=DIM, mlp_hidden=16, holdout_folds=0,
                                                     variants=("bandit",)))
    assert "holdout_apgr" not in c["variants"]["bandit"]["seeds"][0]


def test_engine_reaches_routing_only_through_the_head_blend(table, features):
    # with head_weight 0 the full engine's scores and decisions are exactly the bandit's: whatever
    # the adapters learn changes routing only through the router-head blend (issue 14's finding)
    cfg = AblationConfig(seeds=1, dim=DIM, mlp_hidden=16, holdout_folds=0, variants=("bandit", "full"),
                         engine_options={"llm_router": {"head_weight": 0.0}})
    r = run_ablation(table, features, cfg)
    strip = [{k: v for k, v in s.items()} for s in r["variants"]["full"]["seeds"]]
    assert strip == r["variants"]["bandit"]["seeds"]
    on = run_ablation(table, features, AblationConfig(seeds=1, dim=DIM, mlp_hidden=16, holdout_folds=0,
                                                      variants=("full",)))
    assert on["variants"]["full"]["seeds"] != r["variants"]["bandit"]["seeds"]
    assert engine_config("full", {"models": [{"name": "m"}]}, 8,
                         options={"llm_router": {"head_weight": 0.0}})["llm_router"] == \
        {"models": [{"name": "m"}], "head_weight": 0.0}


def test_run_ablation_checks_features(table, features):
    with pytest.raises(ValueError, match="features have shape"):
        run_ablation(table, features[:, :8], AblationConfig(seeds=1, dim=DIM))


def test_summarize_median_and_paired_delta():
    s = summarize([{"apgr": 0.5}, {"apgr": 0.9}, {"apgr": 0.6}], [{"apgr": 0.5}, {"apgr": 0.5}, {"apgr": 0.7}])
    assert s["median"]["apgr"] == 0.6 and s["min"]["apgr"] == 0.5 and s["max"]["apgr"] == 0.9
    assert s["delta_vs_bandit"]["apgr"] == pytest.approx(0.0)   # median of 0, 0.4, -0.1


def test_subject_subset(table):
    sub = subject_subset(table, ["anatomy", "global_facts"])
    assert len(sub) == 150 and set(sub.subjects) == {"anatomy", "global_facts"}
    with pytest.raises(ValueError, match="unknown subject"):
        subject_subset(table, ["astrology"])


def test_cli_ablation_json(capsys):
    from swarm_sona.app.cli import main

    rc = main(["bench", "ablation", "--data", str(SLICE), "--seeds", "1", "--dim", "16", "--mlp-hidden", "8",
               "--holdout-folds", "0", "--variants", "bandit,no_base", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["variants"]) == {"bandit", "no_base"} and out["n"] == 300 and out["dim"] == 16


# ---- bench shift ------------------------------------------------------------------------------
from swarm_sona.bench.shift import ShiftConfig, run_shift, split_groups  # noqa: E402


def test_split_groups_disjoint_and_deterministic(table):
    a, b = split_groups(table, 3), split_groups(table, 3)
    assert a.a_subjects == b.a_subjects and np.array_equal(a.a_test, b.a_test)
    assert not set(a.a_subjects) & set(a.b_subjects)
    rows = np.concatenate([a.a_train, a.a_test, a.b_train, a.b_test])
    assert sorted(rows.tolist()) == list(range(len(table)))
    subj = np.array(table.subjects)
    assert set(subj[a.a_test]) <= set(a.a_subjects) and set(subj[a.b_train]) <= set(a.b_subjects)
    assert len(a.a_test) == round(0.3 * (len(a.a_train) + len(a.a_test)))


def test_shift_ewc_lambda_changes_what_is_remembered(features, table):
    f = embed_table(table, make_embedder("hashing-words", 64), progress=False)
    cfg = ShiftConfig(seeds=2, dim=64, mlp_hidden=32, lambdas=(0.0, 0.5), bandit=True)
    r = run_shift(table, f, cfg)
    by = {s["setting"]: s for s in r["settings"]}
    assert list(by) == ["lambda=0", "lambda=0.5", "bandit"]
    off, on = by["lambda=0"]["seeds"], by["lambda=0.5"]["seeds"]
    # before the boundary the penalty has no anchor: both runs are the same
    assert [x["a_after_a"] for x in off] == [x["a_after_a"] for x in on]
    # after B the EWC++ run differs (measured on this slice: less forgetting in both seeds)
    assert [x["a_after_b"] for x in off] != [x["a_after_b"] for x in on]
    for x in (*off, *on):
        assert x["forgetting"] == pytest.approx(x["a_after_a"] - x["a_after_b"])
    again = run_shift(table, f, cfg)   # deterministic for a seed
    assert [s["seeds"] for s in r["settings"]] == [s["seeds"] for s in again["settings"]]
    # boundary 'detected': no explicit consolidation, so lambda has less (here: no) anchor to pull to
    det = run_shift(table, f, ShiftConfig(seeds=2, dim=64, mlp_hidden=32, lambdas=(1000.0,), bandit=False,
                                          boundary="detected"))
    assert det["settings"][0]["setting"] == "strength=1000"   # above 1: the internal scale, as it is
    assert [x["a_after_b"] for x in det["settings"][0]["seeds"]] != [x["a_after_b"] for x in on]


def test_shift_with_a_decaying_router_consolidates_the_bandit_at_each_lambda(table):
    f = embed_table(table, make_embedder("hashing-words", 32), progress=False)
    r = run_shift(table, f, ShiftConfig(seeds=1, dim=32, mlp_hidden=8, lambdas=(0.0, 0.5), evidence_decay=0.95))
    by = {s["setting"]: s["seeds"][0] for s in r["settings"]}
    assert list(by) == ["lambda=0", "lambda=0.5", "bandit lambda=0", "bandit lambda=0.5"]
    off, on = by["bandit lambda=0"], by["bandit lambda=0.5"]
    assert off["a_after_a"] == on["a_after_a"]          # the same run up to the boundary
    assert off["a_after_b"] != on["a_after_b"]          # the anchor keeps A's evidence from decaying
    # the engine's boundary reaches its router too: lambda 0.5 differs from 0 after B
    assert by["lambda=0"]["a_after_b"] != by["lambda=0.5"]["a_after_b"]
    # no decay: the anchor is never read, one bandit row
    plain = run_shift(table, f, ShiftConfig(seeds=1, dim=32, lambdas=(0.5,), evidence_decay=1.0))
    assert [s["setting"] for s in plain["settings"]] == ["lambda=0.5", "bandit"]
    with pytest.raises(ConfigError, match="evidence_decay"):
        ShiftConfig(evidence_decay=0.0)


@pytest.mark.parametrize("kw, msg", [({"lambdas": (-1.0,)}, "lambdas"), ({"holdout": 0.01}, "holdout"),
                                     ({"boundary": "soon"}, "boundary"), ({"lambdas": (), "bandit": False}, "nothing"),
                                     ({"group_a": 1.0}, "group_a")])
def test_shift_config_validates(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        ShiftConfig(**kw)


def test_cli_shift_json(capsys):
    from swarm_sona.app.cli import main

    rc = main(["bench", "shift", "--data", str(SLICE), "--seeds", "1", "--dim", "16", "--mlp-hidden", "8",
               "--lambdas", "0.4", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["setting"] for s in out["settings"]] == ["lambda=0.4", "bandit"] and out["n"] == 300
    assert main(["bench", "shift", "--data", str(SLICE), "--lambdas", "a,b"]) != 0
    assert "--lambdas" in capsys.readouterr().err
