"""bench ablation's encoder variants (bandit on [hashed ; MiniLM], [hashed ; adapted MiniLM]) on the
vendored slice, with synthetic encoder features so that no model package is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swarm_sona.bench.ablation import AblationConfig, run_ablation
from swarm_sona.bench.encoder_router import AdaptedEncoderRouter
from swarm_sona.bench.routing import embed_table, make_embedder
from swarm_sona.executors.table import load_routing_table

SLICE = Path(__file__).parents[1] / "data" / "routellm_slice"


@pytest.fixture(scope="module")
def data():
    table = load_routing_table(SLICE)
    feats = embed_table(table, make_embedder("hashing-words", 32), progress=False)
    # an encoder that knows which prompts only the strong model solves (column 0), plus noise
    correct = table.correct.astype(np.float32)
    rng = np.random.default_rng(0)
    enc = 0.1 * rng.standard_normal((len(table), 16)).astype(np.float32)
    enc[:, 0] += correct[:, 1] - correct[:, 0]
    return table, feats, enc


def _run(data, **kw):
    table, feats, enc = data
    cfg = AblationConfig(seeds=2, dim=32, holdout_folds=0, feedback="full", **kw)
    return run_ablation(table, feats, cfg, encoder=enc)["variants"]


def test_an_informative_encoder_block_changes_and_helps_routing(data):
    v = _run(data, variants=("bandit", "minilm"), encoder_weight=2.0)
    assert v["minilm"]["median"]["apgr"] > v["bandit"]["median"]["apgr"]
    assert v["minilm"]["delta_vs_bandit"]["apgr"] is not None


def test_adapter_learning_rate_flips_the_outcome(data):
    frozen = _run(data, variants=("minilm", "adapted"), adapter_lr=0.0)
    assert [r["apgr"] for r in frozen["adapted"]["seeds"]] == [r["apgr"] for r in frozen["minilm"]["seeds"]]
    learning = _run(data, variants=("minilm", "adapted"), adapter_lr=1.0, adapter_rank=4)
    assert [r["apgr"] for r in learning["adapted"]["seeds"]] != [r["apgr"] for r in learning["minilm"]["seeds"]]


def test_adapter_starts_at_the_frozen_features_and_learns():
    r = AdaptedEncoderRouter({"models": [{"name": "w", "quality": 0.6}, {"name": "s", "quality": 0.8}]}, 10,
                             raw_dim=2, rank=3, lr=0.5, act="tanh")
    x = np.linspace(0.1, 1.0, 10).astype(np.float32)
    np.testing.assert_array_equal(r.features(x)[0], x)
    for _ in range(5):
        r.feedback("q", "s", True, embedding=x)
    assert not np.array_equal(r.features(x)[0], x)
    with pytest.raises(ValueError, match="raw_dim must be in"):
        AdaptedEncoderRouter({"models": [{"name": "w"}]}, 4, raw_dim=4)


def test_encoder_variants_need_the_encoder_embeddings(data):
    table, feats, _ = data
    with pytest.raises(ValueError, match=r"variants \['minilm'\] need the table's encoder embeddings"):
        run_ablation(table, feats, AblationConfig(seeds=1, dim=32, holdout_folds=0, variants=("minilm",)))
    with pytest.raises(Exception, match="adapter_act"):
        AblationConfig(adapter_act="relu")


def test_full_posterior_variants_use_the_full_posterior_and_its_options(data):
    from swarm_sona.bench.ablation import variant_factory
    from swarm_sona.routing.posterior_full import FullPosterior

    cfg = AblationConfig(variants=("minilm_full",), full_options={"regularization": 5.0})
    r = variant_factory("minilm_full", config=cfg)({"models": [{"name": "w"}, {"name": "s"}]}, 8)
    assert isinstance(r.posterior, FullPosterior) and r.config.regularization == 5.0
    v = _run(data, variants=("bandit", "bandit_full", "minilm", "minilm_full", "encoder_full"), encoder_weight=2.0)
    # the informative encoder column helps the full posterior too, and it is a different router
    assert v["minilm_full"]["median"]["apgr"] > v["bandit_full"]["median"]["apgr"]
    assert v["encoder_full"]["median"]["apgr"] > v["bandit_full"]["median"]["apgr"]
    assert [r["apgr"] for r in v["minilm_full"]["seeds"]] != [r["apgr"] for r in v["minilm"]["seeds"]]
    assert v["minilm_full"]["delta_vs_bandit"]["apgr"] is not None
    tuned = _run(data, variants=("bandit_full",), full_options={"regularization": 50.0})
    assert [r["apgr"] for r in tuned["bandit_full"]["seeds"]] != [r["apgr"] for r in v["bandit_full"]["seeds"]]
    with pytest.raises(Exception, match="full_options: expected a mapping"):
        AblationConfig(full_options=3)  # type: ignore[arg-type]


def test_encoder_projection_keeps_the_top_principal_directions(data):
    table, feats, enc = data
    res = run_ablation(table, feats, AblationConfig(seeds=1, dim=32, holdout_folds=0, feedback="full",
                                                    variants=("encoder_full",), encoder_project=2), encoder=enc)
    full = run_ablation(table, feats, AblationConfig(seeds=1, dim=32, holdout_folds=0, feedback="full",
                                                     variants=("encoder_full",)), encoder=enc)
    # the informative column carries most of the encoder's variance: 2 directions keep its signal
    assert res["variants"]["encoder_full"]["median"]["apgr"] > 0.6
    assert res["variants"]["encoder_full"]["seeds"] != full["variants"]["encoder_full"]["seeds"]
    with pytest.raises(Exception, match="encoder_project"):
        AblationConfig(encoder_project=-1)


def test_a_fold_wise_projection_is_fitted_on_the_training_prompts_only(data):
    """encoder_project_fit 'train' refits the projection per held-out fold on that fold's training
    prompts: the held-out scores change while the stream (always fitted on all) does not."""
    from swarm_sona.bench import ablation as ab

    table, feats, enc = data
    common = {"seeds": 1, "dim": 32, "holdout_folds": 2, "feedback": "full", "variants": ("minilm_full",),
              "encoder_project": 3}
    fits: list[int] = []
    real_svd = np.linalg.svd

    def counting_svd(a, *args, **kw):
        fits.append(len(a))
        return real_svd(a, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ab.np.linalg, "svd", counting_svd)
        every = run_ablation(table, feats, AblationConfig(**common), encoder=enc)
        n_all = list(fits)
        fits.clear()
        train = run_ablation(table, feats, AblationConfig(**common, encoder_project_fit="train"), encoder=enc)
    assert n_all == [len(table)]                      # one fit, on every prompt
    assert fits[0] == len(table) and len(fits) == 3 and all(f < len(table) for f in fits[1:])  # + one per fold
    a, b = every["variants"]["minilm_full"]["seeds"][0], train["variants"]["minilm_full"]["seeds"][0]
    assert a["apgr"] == b["apgr"] and a["holdout_apgr"] != b["holdout_apgr"]
    with pytest.raises(Exception, match="encoder_project_fit"):
        AblationConfig(encoder_project_fit="test")
