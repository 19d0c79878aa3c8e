"""SONA engine: instant/background loops, finetune, routing seam, bad input, checkpoints, export/import."""

import dataclasses

import numpy as np
import pytest

from swarm_sona.core.codec import CheckpointError
from swarm_sona.core.config import ConfigError
from swarm_sona.core.trajectory import Step, Trajectory
from swarm_sona.engine.sona import SONA, EngineError

MODELS = [{"name": "small", "cost": 0.001, "cost_unit": "call", "quality": 0.6},
          {"name": "big", "cost": 0.03, "cost_unit": "call", "quality": 0.9}]


def _sona(router=None, **over):
    cfg = {"dim": 32, "mlp_hidden": 32, "background_every": 0, "batch_size": 16, "llm_router": {"models": MODELS}}
    cfg.update(over)
    return SONA(cfg, router=router)


def _traj(sona, text, reward=1.0, success=True, model="big", steps=()):
    return Trajectory(task=text, embedding=sona.embed(text), model=model, reward=reward, success=success,
                      steps=[Step(action=s, embedding=sona.embed(s)) for s in steps])


def _snapshot(sona):
    d = sona.export_delta()
    flat = {f"a/{k}/{p}": v.copy() for k, ad in d["adapters"].items() for p, v in ad.items()}
    flat["value.w"] = sona.model.value_w.copy()
    flat["router.W"] = sona.model.router_W.copy()
    return flat, sona.n_learned, len(sona.replay), sona.version, sorted(sona.model.task_heads)


def _same(a, b):
    fa, *ra = a
    fb, *rb = b
    return ra == rb and fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)


@pytest.mark.parametrize("reward", [1.0, 0.0])
def test_learn_one_step_trajectory_changes_adapter_and_moves_value_toward_reward(reward):
    sona = _sona()
    t = _traj(sona, "refactor the parser", reward=reward, success=reward > 0.5, steps=["read the code"])
    before = sona.forward(t.embedding, t.steps)["value"]
    B0 = sona.model.micro.B.copy()
    res = sona.learn(t)
    assert res["learned"] == 1 and res["background"] is False
    assert res["value"] == pytest.approx(before, rel=1e-5)
    assert not np.array_equal(sona.model.micro.B, B0)  # the MicroLoRA adapter learned
    after = sona.forward(t.embedding, t.steps)["value"]
    assert abs(after - reward) < abs(before - reward)
    assert sona.stats()["n_learned"] == 1 and sona.stats()["micro_norm"] > 0


def test_router_head_learns_from_bandit_feedback_and_unknown_model_only_value():
    sona = _sona()
    t = _traj(sona, "summarise the report", reward=0.0, success=False, model="small")
    p0 = sona.forward(t.embedding)["router_probs"].copy()
    for _ in range(20):
        sona.learn(t)
    p1 = sona.forward(t.embedding)["router_probs"]
    assert p1[0] < p0[0] - 0.05  # the chosen arm moved toward its failure
    W_big = sona.model.router_W[1].copy()
    sona.learn(_traj(sona, "other task", model="not-configured"))
    assert np.array_equal(sona.model.router_W[1], W_big)


def test_background_every_n_trains_base_lora_and_distils_into_bank():
    class Bank:
        def __init__(self):
            self.calls = []

        def distill(self, trajs):
            self.calls.append(list(trajs))
            return {"trajectories": len(trajs)}

    sona = _sona(background_every=8, background_steps=3)
    sona.bank = Bank()
    base_B = {k: ad.B.copy() for k, ad in sona.model.base_adapters().items()}
    results = [sona.learn(_traj(sona, f"task {i}", reward=float(i % 2), success=bool(i % 2),
                                steps=["step"] if i % 3 == 0 else ())) for i in range(8)]
    assert [r["background"] for r in results] == [False] * 7 + [True]
    bg = results[-1]["background_result"]
    assert bg["steps"] == 3 and bg["distilled"] == {"trajectories": 8} and np.isfinite(bg["loss"])
    assert len(sona.bank.calls) == 1 and len(sona.bank.calls[0]) == 8
    assert any(not np.array_equal(ad.B, base_B[k]) for k, ad in sona.model.base_adapters().items())
    assert sona.version == 1 and sona.stats()["n_background"] == 1
    assert sona.background(force=False)["ran"] is False  # nothing new since the last cycle
    assert sona.background()["distilled"] is None  # nothing buffered for the bank


def test_background_detects_a_task_shift_and_consolidates():
    # instant_lr 0: only the background loop learns, so the shift reaches its gradients
    sona = _sona(background_steps=1, batch_size=8, instant_lr=0.0,
                 ewc={"boundary_min_samples": 20, "fisher_samples": 5})
    easy = [_traj(sona, f"alpha {i}", reward=1.0) for i in range(8)]
    sona.learn(easy)
    for _ in range(150):
        sona.background()
    assert sona.stats()["ewc"]["boundaries_detected"] == 0
    sona.learn([_traj(sona, f"zeta {i} omega", reward=0.0, success=False) for i in range(4000)])
    detected = 0
    for _ in range(60):
        detected += sona.background()["boundaries"]
    assert detected >= 1 and sona.stats()["ewc"]["consolidations"] >= 1


def test_finetune_predict_and_replay():
    sona = _sona()
    pos = ["great product works well", "excellent fast and reliable", "love it works great", "very good value"]
    neg = ["terrible broke at once", "awful slow and buggy", "hate it does not work", "very bad value"]
    res = sona.finetune("sentiment", [(t, "pos") for t in pos] + [(t, "neg") for t in neg], epochs=30, lr=0.02)
    assert res["classes"] == ["neg", "pos"] and res["train_acc"] == 1.0
    assert sona.predict("sentiment", "excellent works great") == "pos"
    assert sona.predict("sentiment", ["awful and buggy", "love it"]) == ["neg", "pos"]
    p = sona.predict_proba("sentiment", np.stack([sona.embed(pos[0]), sona.embed(neg[0])]))
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 32)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    res2 = sona.finetune("sign", (X, y), epochs=20, lr=0.02, replay={"sentiment": [(t, "pos") for t in pos]})
    assert res2["n"] == 44 and res2["train_acc"] >= 0.75
    assert sona.predict("sentiment", pos) == ["pos"] * 4  # rehearsed while training "sign"
    assert sona.stats()["ewc"]["consolidations"] == 1 and sona.stats()["tasks"] == ["sentiment", "sign"]


@pytest.mark.parametrize("case", ["dim", "nan_reward", "inf_vector", "inf_single", "huge_single", "apply_rows_nan",
                                  "steps_dim", "empty_list", "not_traj",
                                  "empty_examples", "bad_label", "nan_example", "example_dim", "epochs",
                                  "apply_inf", "apply_dim", "forward_nan", "import_shape", "import_key",
                                  "predict_task", "route_constraint"])
def test_bad_input_raises_value_error_and_leaves_state_unchanged(case):
    sona = _sona()
    sona.learn(_traj(sona, "warm up"))
    sona.finetune("t", [(sona.embed("a"), 0), (sona.embed("b"), 1)], epochs=1)
    before = _snapshot(sona)
    good = _traj(sona, "fine")
    calls = {
        "dim": (lambda: sona.learn(Trajectory(task="x", embedding=np.ones(8, np.float32))), "dimension"),
        "nan_reward": (lambda: sona.learn([good, _set(_traj(sona, "x"), reward=float("nan"))]), "reward"),
        "inf_vector": (lambda: sona.learn([good, _inf(_traj(sona, "x"))]), "NaN or inf"),
        "inf_single": (lambda: sona.learn(_inf(_traj(sona, "x"))), "NaN or inf"),
        "huge_single": (lambda: sona.learn(_set(_traj(sona, "x"), embedding=np.full(32, 3e38, np.float32))),
                        "NaN or inf"),
        "apply_rows_nan": (lambda: sona.apply(np.where(np.eye(3, 32) > 0, np.nan, 1.0).astype(np.float32)),
                           "NaN or inf"),
        "steps_dim": (lambda: sona.learn(_set(_traj(sona, "x"), steps=[Step(embedding=np.ones(5))])), "step 0"),
        "empty_list": (lambda: sona.learn([]), "no trajectories"),
        "not_traj": (lambda: sona.learn([good, 42]), "item 1 is int"),
        "empty_examples": (lambda: sona.finetune("t", []), "no examples"),
        "bad_label": (lambda: sona.finetune("t", [(sona.embed("a"), 1.5)]), "labels must be"),
        "nan_example": (lambda: sona.finetune("t", [(np.full(32, np.nan), 0)]), "NaN or inf"),
        "example_dim": (lambda: sona.finetune("t", (np.ones((3, 7), np.float32), [0, 1, 0])), "dimension 7"),
        "epochs": (lambda: sona.finetune("t", [("a", 0)], epochs=0), "epochs"),
        "apply_inf": (lambda: sona.apply(np.full(32, np.inf, np.float32)), "NaN or inf"),
        "apply_dim": (lambda: sona.apply(np.ones(31)), "shape"),
        "forward_nan": (lambda: sona.forward(np.full(32, np.nan)), "NaN or inf"),
        "import_shape": (lambda: sona.import_state({"adapters": {"micro": {"B": np.ones((32, 1))},
                                                                 "q": {"B": np.ones((3, 3))}}}), "shape"),
        "import_key": (lambda: sona.import_state({"adapters": {"nope": {}}}), "unknown adapter 'nope'"),
        "predict_task": (lambda: sona.predict("missing", "x"), "no task head 'missing'"),
        "route_constraint": (lambda: sona.route("x", color="red"), "unknown option .color."),
    }
    fn, msg = calls[case]
    with pytest.raises(ValueError, match=msg):
        fn()
    assert _same(_snapshot(sona), before)


def _set(t, **kw):
    for k, v in kw.items():
        object.__setattr__(t, k, v)
    return t


def _inf(t):
    t.embedding[3] = np.inf
    return t


def test_unknown_config_key_and_bad_embedder():
    with pytest.raises(ConfigError, match="unknown key 'rnak'.*did you mean 'rank'"):
        SONA({"lora": {"rnak": 4}})
    with pytest.raises(ConfigError, match="lora.rank"):
        SONA({"lora": {"rank": 0}})

    class Emb:
        dim = 8
        name = "e"

    with pytest.raises(EngineError, match="embedder dimension 8"):
        SONA({"dim": 32}, embedder=Emb())


def test_save_load_round_trip_gives_identical_outputs_and_continuation(tmp_path):
    sona = _sona(background_every=5)
    sona.finetune("kind", [(f"bug in module {i}", "bug") for i in range(4)] + [(f"new feature {i}", "feat")
                                                                               for i in range(4)], epochs=3)
    for i in range(7):
        sona.learn(_traj(sona, f"task number {i}", reward=i / 7, success=i % 2 == 0, steps=["s"] if i % 2 else ()))
    path = tmp_path / "engine.ckpt"
    sona.save(path)
    back = SONA.load(path)
    e = sona.embed("task number 3")
    a, b = sona.forward(e, [sona.embed("s")]), back.forward(e, [back.embed("s")])
    for k in ("hidden", "router_probs"):
        assert np.array_equal(a[k], b[k])
    assert a["value"] == b["value"]
    assert sona.predict("kind", ["a bug", "feature"]) == back.predict("kind", ["a bug", "feature"])
    assert np.array_equal(sona.apply(e), back.apply(e))
    assert back.stats()["n_learned"] == 7 and back.version == sona.version and len(back.replay) == 7
    # continuing gives the same result on both (optimizer, replay, rng restored)
    more = [_traj(sona, f"later {i}") for i in range(3)]
    ra, rb = sona.learn(more), back.learn(more)
    assert ra["background"] and rb["background"]
    assert ra["background_result"]["loss"] == rb["background_result"]["loss"]
    assert np.array_equal(sona.forward(e)["hidden"], back.forward(e)["hidden"])


def test_corrupted_checkpoint_is_refused_or_previous_used(tmp_path):
    sona = _sona()
    path = tmp_path / "c.ckpt"
    sona.save(path)
    first = sona.forward(sona.embed("x"))["value"]
    sona.learn([_traj(sona, "x", reward=1.0)] * 5)
    sona.save(path)  # the first checkpoint becomes c.ckpt.prev
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    restored = SONA.load(path)  # falls back to .prev
    assert restored.forward(restored.embed("x"))["value"] == first
    (tmp_path / "c.ckpt.prev").unlink()
    secret = SONA({"dim": 16, "mlp_hidden": 8, "reasoning_bank": {"backend": "qdrant", "url": "https://q:6333",
                                                                  "api_key": "s3cret"}})
    secret.save(tmp_path / "s.ckpt")
    assert b"s3cret" not in (tmp_path / "s.ckpt").read_bytes()
    assert SONA.load(tmp_path / "s.ckpt").config.reasoning_bank.api_key is None
    with pytest.raises(CheckpointError, match="checksum|corrupt"):
        SONA.load(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        SONA.load(path)


def test_export_import_round_trip_and_shared_a():
    a, b = _sona(), _sona(model_seed=0)
    a.finetune("t", [("x one", 0), ("y two", 1)], epochs=2)
    a.learn([_traj(a, f"q {i}") for i in range(5)])
    a.background()
    d = a.export_delta()
    assert set(d["adapters"]) == {"q", "v", "micro"} and d["n_trajectories"] == 5
    assert {"v.A", "v.B", "value.w", "task.t.W"} <= set(d["fisher"])
    assert "q.A" not in d["fisher"]  # one token (no steps): q gets no gradient, so no Fisher
    assert set(d["heads"]) == {"value", "router", "tasks"}
    b.import_state({k: d[k] for k in ("adapters", "heads", "version")})
    e = a.embed("q 1")
    assert np.array_equal(a.forward(e)["hidden"], b.forward(e)["hidden"])
    assert b.version == a.version and b.predict("t", "x one") == a.predict("t", "x one")
    b.import_state({"heads": {"tasks": {"t": {"W": d["heads"]["tasks"]["t"]["W"] * 2,
                                              "b": d["heads"]["tasks"]["t"]["b"]}}}})  # classes kept
    assert b.classes("t") == [0, 1]
    b.import_state({"fisher": {"q.B": np.ones((32, 8), np.float32)}})
    assert b.ewc.consolidations[-1].task == "imported"
    s1 = _sona(lora={"shared_a_seed": 7, "seed": 1})
    s2 = _sona(lora={"shared_a_seed": 7, "seed": 2})
    assert np.array_equal(s1.model.adapter("q").A, s2.model.adapter("q").A)
    s1.import_state(s2.export_delta())  # same A: accepted
    other = _sona(lora={"shared_a_seed": 8})
    with pytest.raises(EngineError, match="shared A"):
        s1.import_state({"adapters": {"q": other.export_delta()["adapters"]["q"]}})


def test_a_configured_model_table_gets_a_learned_router_by_default():
    from swarm_sona.routing.router import LLMRouter

    sona = SONA({"dim": 32, "mlp_hidden": 32, "llm_router": {"models": MODELS}})
    assert isinstance(sona.router, LLMRouter)
    d = sona.route("write a unit test")
    assert d["model"] in ("small", "big") and d["reason"]
    e = sona.embed("write a unit test")
    before = sona.router.state_dict()
    sona.learn(Trajectory(task="write a unit test", embedding=e, model=d["model"], reward=1.0, success=True))
    after = sona.router.state_dict()
    assert any(not np.array_equal(np.asarray(before[k]), np.asarray(after[k]))
               for k in before if isinstance(before[k], np.ndarray))       # the router learned
    assert SONA({"dim": 32, "mlp_hidden": 32}).router is None              # no models: no router
    assert SONA({"dim": 32, "mlp_hidden": 32, "llm_router": {"models": MODELS}}, router=None).router is None
    with pytest.raises(ValueError, match="unknown option .colour."):
        sona.route("x", colour="red")


def test_route_without_and_with_router_and_hooks():
    sona = _sona()
    r = sona.route("write a unit test")
    assert r["model"] in ("small", "big") and set(r["head_probs"]) == {"small", "big"}
    assert r["model"] == "big"  # prior quality 0.9 > 0.6 warm-starts the head
    assert sona.route("write a unit test", max_cost=0.01)["model"] == "small"
    assert "fallback" in sona.route("x", min_quality=0.999)["reason"]
    with pytest.raises(EngineError, match="no models configured"):
        SONA({"dim": 16, "mlp_hidden": 8}).route("x")

    class Router:
        def __init__(self):
            self.routes, self.feedbacks = [], []

        def route(self, text, **kw):
            self.routes.append((text, kw))
            return {"model": "small"}

        def feedback(self, text, **kw):
            self.feedbacks.append((text, kw))

    class Hook:
        def __init__(self):
            self.events = []

        def before_learn(self, s, trajs):
            self.events.append(("before", len(trajs)))

        def after_learn(self, s, res):
            self.events.append(("after", res["learned"]))

        def after_background(self, s, res):
            self.events.append(("bg", res["steps"]))

    sona.router = Router()
    hook = Hook()
    sona.add_hook(hook)
    assert sona.route("fix bug", max_cost=1.0) == {"model": "small"}
    text, kw = sona.router.routes[0]
    assert text == "fix bug" and kw["max_cost"] == 1.0 and set(kw["head_probs"]) == {"small", "big"}
    assert kw["embedding"].shape == (32,)
    sona.learn(_traj(sona, "fix bug", model="small", reward=0.4, success=False))
    assert sona.router.feedbacks[0][1]["model"] == "small" and sona.router.feedbacks[0][1]["success"] is False
    sona.background()
    assert hook.events == [("before", 1), ("after", 1), ("bg", 4)]
    sona.remove_hook(hook)
    with pytest.raises(EngineError, match="hook"):
        sona.add_hook(object())


def test_apply_matches_micro_lora_and_batches():
    sona = _sona()
    sona.learn([_traj(sona, f"t{i}", reward=1.0) for i in range(10)])
    V = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    m = sona.model.micro
    np.testing.assert_allclose(sona.apply(V), V + m.scale * (V @ m.A.T) @ m.B.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sona.apply(V[0]), sona.apply(V)[0], rtol=1e-6)


# ---- batched API: the same as one task at a time -------------------------------------------------------------
def _routed(**over):
    from swarm_sona.routing.router import LLMRouter

    sona = _sona(**over)
    sona.router = LLMRouter(sona.config.llm_router.replace(exploration="thompson", seed=4), dim=sona.dim)
    return sona


def test_forward_batch_rows_equal_forward_and_route_batch_equals_route():
    a, b = _routed(), _routed()   # identical engines (seeded)
    texts = ["parse the log", "sort numbers", "write a haiku", "parse the log"]
    E = a.embedder.embed(texts)
    steps = [[], [a.embed("read")], [a.embed("read"), a.embed("think")], None]
    out = a.forward_batch(E, steps)
    for i in range(len(texts)):
        one = b.forward(E[i], steps[i])
        np.testing.assert_allclose(out["hidden"][i], one["hidden"], atol=1e-6)
        np.testing.assert_allclose(out["router_probs"][i], one["router_probs"], atol=1e-6)
        assert out["value"][i] == pytest.approx(one["value"], abs=1e-6)
    assert out["h"].shape == (4, 32) and a.forward_batch(np.zeros((0, 32)))["value"].shape == (0,)
    many = a.route_batch(texts, max_cost=0.02)
    one = [b.route(t, max_cost=0.02) for t in texts]
    assert [d["model"] for d in many] == [d["model"] for d in one] == ["small"] * 4   # big is over max_cost
    many, one = a.route_batch(texts, embeddings=E), [b.route(t, embedding=e) for t, e in zip(texts, E, strict=True)]
    assert [d["model"] for d in many] == [d["model"] for d in one]
    np.testing.assert_allclose([d["expected_quality"] for d in many], [d["expected_quality"] for d in one], atol=1e-6)
    plain_a, plain_b = _sona(), _sona()   # no router: the head's greedy choice
    assert [d["model"] for d in plain_a.route_batch(texts)] == [plain_b.route(t)["model"] for t in texts]
    bad = E.copy()
    bad[2, 0] = np.inf
    for call, match in [(lambda: a.forward_batch(bad), "row 2 contains NaN or inf"),
                        (lambda: a.forward_batch(E[:, :5]), r"expected \(n, 32\)"),
                        (lambda: a.forward_batch(E, [[]]), "1 step lists for 4"),
                        (lambda: a.route_batch(texts[:2], embeddings=E), "4 embeddings for 2 tasks"),
                        (lambda: a.route_batch("one text"), "list of strings")]:
        with pytest.raises(EngineError, match=match):
            call()


def test_learn_list_equals_learning_one_at_a_time_background_included():
    a, b = _routed(background_every=5, background_steps=2), _routed(background_every=5, background_steps=2)
    models = ["small", "big", "not-configured", None]
    trajs = [_traj(a, f"task {i}", reward=(i % 3) / 2, success=i % 2 == 0, model=models[i % 4],
                   steps=["step"] if i % 4 == 1 else ()) for i in range(12)]
    for t in trajs[:6]:
        t.metadata = {"i": 1} if t.steps else {}
    a.forward_batch(np.stack([t.embedding for t in trajs]))   # as routing would: activations cached
    ra = a.learn(trajs)
    rb = [b.learn(t) for t in trajs]
    assert ra["background_at"] == [4, 9] and [r["background"] for r in rb] == [i in (4, 9) for i in range(12)]
    np.testing.assert_allclose(ra["value"], [r["value"] for r in rb], atol=1e-6)
    fa, *ca = _snapshot(a)
    fb, *cb = _snapshot(b)
    assert ca == cb and all(np.allclose(fa[k], fb[k], atol=1e-5) for k in fa)
    np.testing.assert_allclose(a.router._W, b.router._W, atol=1e-9)
    assert a.router.stats() == b.router.stats() and a.stats()["n_background"] == 2


def test_checkpoint_replay_columns_round_trip_and_older_layout(tmp_path):
    from swarm_sona.core import codec
    from swarm_sona.engine.sona import CHECKPOINT_KIND

    sona = _sona()
    trajs = [_traj(sona, f"job {i}", reward=i / 4, success=i % 2 == 0, steps=["look"] if i == 2 else ())
             for i in range(4)]
    trajs[1].metadata = {"source": "test", "n": 3}
    sona.learn(trajs)
    sona.save(tmp_path / "new.ckpt")
    st = sona.state_dict()
    st["replay"] = [t.to_dict() for t in sona.replay.ordered()]   # the layout of older checkpoints
    codec.write_checkpoint(tmp_path / "old.ckpt", st, kind=CHECKPOINT_KIND)
    for name in ("new.ckpt", "old.ckpt"):
        back = SONA.load(tmp_path / name).replay.ordered()
        assert [t.to_dict().keys() for t in back] == [t.to_dict().keys() for t in trajs]
        for x, y in zip(back, trajs, strict=True):
            assert (x.task, x.id, x.model, x.reward, x.success, x.metadata, x.created_at) == \
                   (y.task, y.id, y.model, y.reward, y.success, y.metadata, y.created_at)
            assert np.array_equal(x.embedding, y.embedding) and len(x.steps) == len(y.steps)
            assert all(np.array_equal(s.embedding, z.embedding) for s, z in zip(x.steps, y.steps, strict=True))
    st = sona.state_dict()
    st["replay"]["steps"] = [[9, []]]   # a row index out of range
    codec.write_checkpoint(tmp_path / "bad.ckpt", st, kind=CHECKPOINT_KIND)
    with pytest.raises(CheckpointError, match="malformed entry"):
        SONA.load(tmp_path / "bad.ckpt")


def test_schema1_engine_checkpoint_loads_routes_and_learns(tmp_path):
    """A copy of the 0.1.0 engine checkpoint (kind "sona-engine") loads into the carved engine,
    routes, learns (instant + background) and round-trips through state_dict / load_state_dict."""
    import shutil
    from pathlib import Path

    src = Path(__file__).parents[1] / "data" / "schema1" / "engine.ckpt"
    shutil.copy(src, tmp_path / "engine.ckpt")
    s = SONA.load(tmp_path / "engine.ckpt")
    n0, v0 = s.n_learned, s.version
    assert n0 > 0 and len(s.replay) > 0                       # the stored replay and counters came back
    d = s.route("implement a parser")
    assert d["model"] in s.model_names
    e = s.embed("implement a parser")
    before = s.forward(e)["value"]
    r = s.learn(Trajectory(task="implement a parser", embedding=e, model=d["model"], reward=1.0, success=True))
    assert r["learned"] == 1 and s.n_learned == n0 + 1 and s.forward(e)["value"] > before
    assert s.background()["steps"] == s.config.background_steps and s.version == v0 + 1
    from swarm_sona.engine.config import SONAConfig

    back = SONA(SONAConfig.from_dict(s.state_dict()["config"]))
    back.load_state_dict(s.state_dict())
    assert back.forward(e)["value"] == pytest.approx(s.forward(e)["value"], abs=1e-6)
    assert back.stats()["n_learned"] == s.n_learned and len(back.replay) == len(s.replay)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e30])
def test_learn_list_names_the_trajectory_whose_embedding_is_not_finite_and_learns_nothing(bad):
    """A list is checked in one pass (not one product per row): the error still names the row."""
    sona = SONA({"dim": 16, "mlp_hidden": 16, "background_every": 0})
    good = [Trajectory(task=f"t{i}", embedding=sona.embed(f"t{i}"), reward=0.5, success=True) for i in range(4)]
    # the Trajectory checks its embedding when made; an array edited in place afterwards (or a
    # sum of squares that overflows) reaches learn
    spoiled = dataclasses.replace(good[2], embedding=good[2].embedding.copy())
    spoiled.embedding[3] = bad
    trajs = [*good[:2], spoiled, good[3]]
    before = sona.model.micro.B.copy()
    with pytest.raises(EngineError, match="trajectory 2 embedding contains NaN or inf"):
        sona.learn(trajs)
    np.testing.assert_array_equal(sona.model.micro.B, before)
    assert sona.n_learned == 0 and len(sona.replay) == 0
    assert sona.learn(good)["learned"] == 4                       # the same list without the bad row learns
