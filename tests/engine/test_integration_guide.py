"""The integration guide's SONA samples (../shared/seed/sona-integration-guide.md), translated
literally to Python (dicts with the guide's camelCase keys); each option is flipped and a
different outcome observed."""

import numpy as np
import pytest

from swarm_sona.bank import ReasoningBank
from swarm_sona.core.config import camel_to_snake
from swarm_sona.embedding.embedders import HashingEmbedder
from swarm_sona.engine.sona import SONA, EngineError

auth_code = "def login(user, pw): return check(hash(pw), user.pw_hash)"
small = {"dim": 32, "mlp_hidden": 32, "backgroundEvery": 0}


@pytest.fixture(autouse=True)
def _data_home(tmp_path, monkeypatch):
    """A bank the guide leaves at its default path goes under tmp, not the user's data dir."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


# ---- 2.1 learn({task, output, reward}) embeds the task itself ------------------------------------
@pytest.mark.parametrize("reward", [0.95, 0.0])
def test_learn_task_output_reward_without_embedding(reward):
    sona = SONA(small)
    e = sona.embed("implement-auth")
    before = sona.forward(e)["value"]
    res = sona.learn({"task": "implement-auth", "output": auth_code, "reward": reward})
    after = sona.forward(e)["value"]
    assert res["learned"] == 1 and sona.replay.items[0].output == auth_code
    assert (after > before) if reward > 0.5 else (after < before)   # the reward is what was learned
    assert sona.replay.items[0].success is (reward >= 0.5)
    with pytest.raises(EngineError, match="unknown key 'rewrd'.*did you mean 'reward'"):
        sona.learn({"task": "x", "rewrd": 1.0})


# ---- EWC++: learn({task, patterns}) then preserveTaskMemory --------------------------------------
auth_patterns = [{"input": f"hash the password with salt {i}", "output": "bcrypt", "reward": 1.0} for i in range(8)]
db_patterns = [{"input": f"add an index on column {i}", "output": "CREATE INDEX", "reward": 0.0} for i in range(8)]


def test_guide_ewc_sample_runs_and_marks_the_task_switch():
    sona = SONA({**small, "ewc": {"lambda": 0.4, "fisherSamples": 200, "mode": "online"}})
    a = sona.learn({"task": "implement-auth", "patterns": auth_patterns})
    b = sona.learn({"task": "implement-database", "patterns": db_patterns, "preserveTaskMemory": True})
    assert a["boundary"] is False and b["boundary"] is True and b["previous_task"] == "implement-auth"
    assert a["learned"] == 8 and b["steps"] == sona.config.background_steps


def _task_switch(preserve):
    sona = SONA({**small, "backgroundSteps": 40, "batchSize": 8, "ewc": {"lambda": 5000.0, "mode": "online",
                                                                         "detectBoundaries": False}})
    sona.learn({"task": "implement-auth", "patterns": auth_patterns})
    base = {k: ad.B.copy() for k, ad in sona.model.base_adapters().items()}
    sona.learn({"task": "implement-database", "patterns": db_patterns, "preserveTaskMemory": preserve})
    drift = sum(float(np.sum((ad.B - base[k]) ** 2)) for k, ad in sona.model.base_adapters().items())
    return drift, sona.stats()["ewc"]["consolidations"]


def test_preserve_task_memory_keeps_the_previous_task():
    kept, n_kept = _task_switch(True)
    free, n_free = _task_switch(False)
    assert n_kept == 1 and n_free == 0
    assert kept < 0.5 * free       # the EWC++ anchor at the switch holds BaseLoRA near task A's


# ---- LoRA: finetune({task, examples, epochs}) with {input, output} examples ------------------------
training_examples = [{"input": t, "output": "approve"} for t in ("clean diff", "tests added", "small change")] + \
                    [{"input": t, "output": "reject"} for t in ("no tests", "breaks build", "huge refactor")]


def test_finetune_dict_form_with_input_output_examples():
    sona = SONA({**small, "lora": {"rank": 8, "alpha": 16, "dropout": 0.1, "targetModules": ["q", "v"]}})
    res = sona.finetune({"task": "code-review", "examples": training_examples, "epochs": 3, "seed": 1})
    assert res["epochs"] == 3 and res["classes"] == ["approve", "reject"] and res["n"] == 6
    pairs = SONA({**small, "lora": {"rank": 8, "alpha": 16, "dropout": 0.1, "targetModules": ["q", "v"]}})
    same = pairs.finetune("code-review", [(d["input"], d["output"]) for d in training_examples], epochs=3, seed=1)
    assert same["loss"] == pytest.approx(res["loss"])        # {input, output} means (input, label)
    one = SONA(small).finetune({"task": "code-review", "examples": training_examples, "epochs": 1, "seed": 1})
    many = SONA(small).finetune({"task": "code-review", "examples": training_examples, "epochs": 30, "seed": 1})
    assert many["steps"] == 30 * one["steps"] and many["loss"] < one["loss"]
    with pytest.raises(EngineError, match="keys 'input' and 'output'"):
        SONA(small).finetune({"task": "t", "examples": [{"input": "x", "label": 1}]})


# ---- ReasoningBank: storePattern / retrievePatterns / apply ---------------------------------------
def _store(sona, task="implement-api", reward=0.95, **kw):
    return sona.storePattern({"task": task, "input": "a REST API for users", "output": "app.get('/users')",
                              "reward": reward, "success": True,
                              "metadata": {"language": "typescript", "complexity": "medium"}, **kw})


def test_guide_reasoning_bank_sample(tmp_path):
    with pytest.warns(UserWarning, match="ruvector.*edge"):
        sona = SONA({"reasoningBank": {"enabled": True, "backend": "ruvector", "dimensions": 1536,
                                       "similarityThreshold": 0.8}})
    assert sona.dim == 1536 and sona.bank.dim == 1536 and sona.embed("x").shape == (1536,)
    pid = _store(sona)
    strict = sona.retrievePatterns({"task": "implement-rest-endpoint", "k": 5, "minReward": 0.85})
    loose = sona.retrievePatterns({"task": "implement-rest-endpoint", "k": 5, "minReward": 0.85,
                                   "similarityThreshold": 0.0})
    assert strict == [] and [p.id for p in loose] == [pid]   # similarityThreshold 0.8 filters the far match
    result = sona.apply(loose[0], "implement a REST endpoint for orders")
    assert result["pattern_id"] == pid and "New task" in result["prompt"]
    sona.bank.close()


def test_retrieve_options_k_min_reward_in_dict_camel_and_snake_forms():
    sona = SONA({**small, "reasoningBank": {"enabled": True, "persistToDisk": False}})
    for i, r in enumerate((0.9, 0.95, 0.5)):
        _store(sona, task=f"implement-api v{i}", reward=r)
    assert len(sona.retrievePatterns({"task": "implement-api", "k": 5})) == 3
    assert len(sona.retrievePatterns({"task": "implement-api", "k": 1})) == 1
    assert len(sona.retrievePatterns({"task": "implement-api", "k": 5, "minReward": 0.85})) == 2
    assert len(sona.retrieve_patterns(task="implement-api", k=5, min_reward=0.92)) == 1
    assert len(sona.retrieve_patterns("implement-api", 5, minReward=0.85)) == 2
    sona.store_pattern("t", "i", "o", 0.7, True)
    sona.store_pattern(task="t2", input="i", output="o", reward=0.7, success=False)
    assert sona.bank.count() == 5
    with pytest.raises(EngineError, match="unknown key 'minRewrd'.*did you mean 'min_reward'"):
        sona.retrievePatterns({"task": "x", "minRewrd": 0.5})
    sona.bank.close()


def test_agent_id_and_source_agents_across_engines_sharing_a_bank(tmp_path):
    shared = ReasoningBank(path=tmp_path / "bank", embedder=HashingEmbedder(256))
    coder_sona = SONA({"agentId": "coder-1"}, bank=shared)
    other_sona = SONA({"agentId": "coder-2"}, bank=shared)
    reviewer_sona = SONA({"agentId": "reviewer-1"}, bank=shared)
    coder_sona.learn({"task": "implement-auth", "output": auth_code, "reward": 0.95})
    other_sona.learn({"task": "implement-auth", "output": "pass", "reward": 0.95})
    patterns = reviewer_sona.retrievePatterns({"task": "review-auth", "sourceAgents": ["coder-1"], "k": 3,
                                               "similarityThreshold": -1.0})
    assert [(p.agent_id, p.output) for p in patterns] == [("coder-1", auth_code)]
    assert reviewer_sona.retrievePatterns({"task": "review-auth", "sourceAgents": ["reviewer-1"], "k": 3,
                                           "similarityThreshold": -1.0}) == []
    assert coder_sona.replay.items[0].agent_id == "coder-1"   # stamped on what it learns too
    shared.close()


# ---- reasoningBank options: SONA builds its bank from the config -----------------------------------
def test_reasoning_bank_enabled_dimensions_cache_size_and_persist_to_disk(tmp_path):
    off = SONA({"dim": 64, "reasoningBank": {"enabled": False, "dimensions": 64}})
    assert off.bank is None and off.dim == 64
    with pytest.raises(EngineError, match="needs a ReasoningBank"):
        _store(off)
    for size, cached in ((10000, 1), (0, 0)):
        s = SONA({"reasoningBank": {"enabled": True, "dimensions": 64, "cacheSize": size, "persistToDisk": False}})
        _store(s)
        assert len(s.bank.cache) == cached and s.bank.dim == 64
        s.bank.close()
    for persist, kept in ((True, 1), (False, 0)):
        path = tmp_path / f"bank-{persist}"
        s = SONA({"reasoningBank": {"enabled": True, "dimensions": 64, "persistToDisk": persist, "path": str(path)}})
        _store(s)
        s.bank.close()
        again = ReasoningBank(path=path, embedder=HashingEmbedder(64))
        assert again.count() == kept
        again.close()


# ---- ewc.checkpointing: checkpoints every N steps, atomic, restorable ----------------------------
@pytest.mark.parametrize("checkpointing", [True, False])
def test_ewc_checkpointing_writes_restorable_checkpoints_every_n_steps(tmp_path, checkpointing):
    path = tmp_path / "sona.ckpt"
    sona = SONA({**small, "ewc": {"lambda": 0.5, "fisherSamples": 500, "checkpointing": checkpointing},
                 "checkpointEvery": 5, "checkpointPath": str(path)})
    for i in range(12):
        sona.learn({"task": f"task {i}", "output": "ok", "reward": 1.0})
    if not checkpointing:
        assert not path.exists() and sona.stats()["checkpoints_written"] == 0
        return
    assert sona.stats()["checkpoints_written"] == 2 and path.with_name("sona.ckpt.prev").exists()
    back = SONA.load(path)
    assert back.n_learned == 10 and "ewc" in back.state_dict()
    e = sona.embed("task 3")
    assert back.forward(e)["value"] != sona.forward(e)["value"]     # the state at step 10, not 12
    back.learn({"task": "task 10", "output": "ok", "reward": 1.0})
    assert back.n_learned == 11


@pytest.mark.parametrize("checkpointing", [True, False])
def test_ewc_checkpointing_without_a_path_writes_to_the_default_place(tmp_path, monkeypatch, checkpointing):
    monkeypatch.chdir(tmp_path)
    sona = SONA({**small, "agentId": "coder-1", "checkpointEvery": 4,
                 "ewc": {"lambda": 0.5, "checkpointing": checkpointing}})
    for i in range(9):
        sona.learn({"task": f"task {i}", "output": "ok", "reward": 1.0})
    home = tmp_path / "sona-checkpoints"
    if not checkpointing:
        assert not home.exists() and sona.stats()["checkpoints_written"] == 0
        return
    path = home / "coder-1" / "sona.ckpt"
    assert sona.config.checkpoint_path == "auto" and sona.stats()["checkpoints_written"] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["sona.ckpt", "sona.ckpt.prev"]
    back = SONA.load(path)
    assert back.n_learned == 8 and back.agent_id == "coder-1" and "ewc" in back.state_dict()


def test_an_explicit_checkpoint_path_wins_over_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sona = SONA({**small, "checkpointEvery": 1, "checkpointPath": str(tmp_path / "mine.ckpt"),
                 "ewc": {"checkpointing": True}})
    sona.learn({"task": "t", "output": "ok", "reward": 1.0})
    assert (tmp_path / "mine.ckpt").exists() and not (tmp_path / "sona-checkpoints").exists()


# ---- 3.2 production config: lora.quantization '4bit' (and '8bit') -------------------------------
def _quantized(quantization):
    return SONA({**small, "lora": {"rank": 16, "alpha": 32, "dropout": 0.05, "quantization": quantization}})


def test_lora_quantization_4bit_and_8bit_store_the_base_smaller_within_tolerance(tmp_path):
    engines = {q: _quantized(q) for q in (None, "4bit", "8bit")}
    size = {q: sum(layer.base.nbytes for layer in s.model.layers.values()) for q, s in engines.items()}
    assert size["4bit"] <= 0.15 * size[None] and size["8bit"] <= 0.27 * size[None]   # 14.1 % / 26.6 %
    e = engines[None].embed("implement-api")
    out = {q: s.forward(e) for q, s in engines.items()}
    rel = {q: np.linalg.norm(out[q]["hidden"] - out[None]["hidden"]) for q in ("4bit", "8bit")}
    assert 0 < rel["8bit"] < 0.03 and 0 < rel["4bit"] < 0.3        # the hidden state has unit norm
    assert abs(out["4bit"]["value"] - out[None]["value"]) < 0.05
    q4 = engines["4bit"]                                           # it still learns, saves and loads
    before = q4.forward(e)["value"]
    q4.learn({"task": "implement-api", "output": "app.get('/users')", "reward": 1.0})
    assert q4.forward(e)["value"] > before
    q4.save(tmp_path / "q4.ckpt")
    back = SONA.load(tmp_path / "q4.ckpt")
    assert back.model.layers["q"].base.scheme == "nf4"
    assert sum(layer.base.nbytes for layer in back.model.layers.values()) == size["4bit"]
    np.testing.assert_allclose(back.forward(e)["hidden"], q4.forward(e)["hidden"], atol=1e-6)


# ---- 3.1 sona.benchmark({learningIterations, retrievalQueries, routingDecisions}) -----------------
router_models = {"models": [{"name": "claude-sonnet-4-5", "cost": 3.00, "quality": 0.95, "speed": 0.7},
                            {"name": "claude-haiku-3-5", "cost": 0.25, "quality": 0.80, "speed": 0.95}]}


def _bench_engine(**extra):
    sona = SONA({**small, "backgroundEvery": 5, "llmRouter": router_models,
                 "reasoningBank": {"enabled": True, "persistToDisk": False}, **extra})
    for i in range(4):
        _store(sona, task=f"implement-api v{i}")
    return sona


def test_guide_benchmark_sample_returns_the_guide_figures():
    sona = _bench_engine()
    benchmark = sona.benchmark({"learningIterations": 20, "retrievalQueries": 30, "routingDecisions": 25})
    for key in ("avgLearningMs", "avgRetrievalMs", "avgRoutingMs", "p99LearningMs", "p99RetrievalMs", "p99RoutingMs"):
        assert benchmark[key] > 0 and benchmark[key] == benchmark[camel_to_snake(key)]
    assert benchmark.avg_learning_ms == benchmark["avgLearningMs"] == benchmark.avgLearningMs   # as the guide reads it
    assert benchmark.as_guide()["avgRoutingMs"] == benchmark.avgRoutingMs > 0
    with pytest.raises(AttributeError, match="avgLearnMs"):
        getattr(benchmark, "avgLearnMs")  # noqa: B009
    assert (benchmark.learning_iterations, benchmark.retrieval_queries, benchmark.routing_decisions) == (20, 30, 25)
    assert benchmark.bank_patterns == 4 and benchmark.router == "LLMRouter"
    # background cycles are in the learning figure and also reported apart
    assert benchmark.background_cycles == 4 and benchmark.avg_background_ms > benchmark.avg_instant_ms
    mean = (16 * benchmark.avg_instant_ms + 4 * benchmark.avg_background_ms) / 20
    assert benchmark.avg_learning_ms == pytest.approx(mean)
    snake = sona.benchmark(learning_iterations=3, retrieval_queries=0, routing_decisions=2)
    assert (snake.learning_iterations, snake.avg_retrieval_ms, snake.routing_decisions) == (3, None, 2)
    assert sona.benchmark(learningIterations=0, retrievalQueries=1, routingDecisions=0)["avgLearningMs"] is None
    with pytest.raises(EngineError, match="unknown key 'learningIteratons'.*did you mean 'learning_iterations'"):
        sona.benchmark({"learningIteratons": 5})
    with pytest.raises(EngineError, match="routingDecisions must be an integer"):
        sona.benchmark({"routingDecisions": -1})
    sona.bank.close()


@pytest.mark.parametrize("isolated", [True, False])
def test_benchmark_isolated_leaves_the_engine_and_its_bank_as_they_were(isolated):
    sona = _bench_engine()
    e = sona.embed("implement-api")
    before = (sona.n_learned, sona.bank.count(), sona.forward(e)["value"])
    r = sona.benchmark({"learningIterations": 10, "retrievalQueries": 5, "routingDecisions": 5, "isolated": isolated})
    after = (sona.n_learned, sona.bank.count(), sona.forward(e)["value"])
    assert r.isolated is isolated and r.background_cycles == 2
    if isolated:
        assert after == before
    else:   # the live engine learned the 10 trajectories and distilled them into its bank
        assert after[0] == before[0] + 10 and after[1] > before[1] and after[2] != before[2]
    sona.bank.close()


def test_benchmark_without_bank_or_models_reports_none():
    r = SONA(small).benchmark({"learningIterations": 2, "retrievalQueries": 5, "routingDecisions": 5})
    assert r["avgRetrievalMs"] is None and r["avgRoutingMs"] is None and r.bank_patterns is None
    assert r.router == "none" and r.avg_learning_ms > 0


# ---- model cost: USD per 1M tokens in the guide's shape, also for the router head alone ----------
@pytest.mark.parametrize("unit", ["1m_tokens", "call"])
def test_head_routing_prices_by_tokens_unless_cost_unit_is_call(unit):
    models = [{"name": "claude-sonnet-4-5", "cost": 3.00, "quality": 0.95, "costUnit": unit},
              {"name": "claude-haiku-3-5", "cost": 0.25, "quality": 0.80, "costUnit": unit}]
    sona = SONA({**small, "llmRouter": {"models": models}}, router=None)
    d = sona.route({"task": "code-review", "maxCost": 0.1})
    if unit == "call":      # $3 and $0.25 per call: neither fits $0.10
        assert d["reason"].startswith("no model satisfies") and d["estimated_cost"] == 0.25
        return
    # 3 input + 256 output tokens: fractions of a cent, both fit
    assert d["reason"].startswith("router head")
    assert d["estimated_cost"] == pytest.approx({"claude-sonnet-4-5": 3.0, "claude-haiku-3-5": 0.25}[d["model"]]
                                                * 259 / 1e6)
    big = sona.route({"task": "x" * 2_000_000, "maxCost": 1.0})     # 500,256 tokens: sonnet's $1.50 > $1
    assert big["model"] == "claude-haiku-3-5" and big["estimated_cost"] == pytest.approx(0.25 * 500_256 / 1e6)


# ---- reasoningBank.embedder: the engine's default embedder (and its bank's) --------------------
@pytest.mark.parametrize(("embedder", "found"), [("hashing", []), ("minilm", ["fix a failing test"])])
def test_the_configured_embedder_is_the_engines(embedder, found):
    if embedder == "minilm":
        pytest.importorskip("all_minilm_l6_v2")
    sona = SONA({**small, "dim": 384, "reasoningBank": {"enabled": True, "embedder": embedder,
                                                         "similarityThreshold": 0.5, "persistToDisk": False}})
    sona.storePattern({"task": "fix a failing test", "input": "", "output": "run it alone first", "reward": 0.9,
                       "success": True})
    # semantically close (minilm 0.726), lexically far (hashing 0.363)
    assert [p.task for p in sona.retrievePatterns({"task": "repair a broken unit test", "k": 1})] == found
    assert sona.embedder.name == ("hashing-v1-384" if embedder == "hashing" else "minilm-l6-v2")
    sona.bank.close()
