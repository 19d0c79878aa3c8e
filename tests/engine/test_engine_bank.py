"""The SONA engine with a ReasoningBank: store/retrieve, apply(pattern, task), background distillation."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_sona.bank import ReasoningBank
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.sona import SONA, EngineError

DIM = 32


@pytest.fixture
def bank():
    b = ReasoningBank({"persist_to_disk": False}, embedder=f"hashing-v1-{DIM}")
    yield b
    b.close()


def engine(bank=None, **cfg):
    return SONA({"dim": DIM, "mlp_hidden": DIM, "background_every": 0, **cfg}, bank=bank)


def test_store_and_retrieve_through_the_engine(bank):
    sona = engine(bank)
    pid = sona.store_pattern("parse a csv file", "data.csv", "csv.DictReader", 0.9, True, {"lang": "py"}, "coder")
    sona.store_pattern("bake bread", "", "oven", 0.4, True)
    got = sona.retrieve_patterns("parse the csv file", k=2, min_reward=0.5)
    assert [p.id for p in got] == [pid] and got[0].metadata == {"lang": "py"}
    assert sona.retrieve_patterns(vector=sona.embed("bake bread"), k=1)[0].task == "bake bread"


def test_apply_merges_pattern_guidance_with_the_new_task(bank):
    sona = engine(bank)
    pid = sona.store_pattern("parse a csv file", "data.csv", "use csv.DictReader", 0.8, True)
    p = sona.retrieve_patterns("parse a csv file")[0]
    out = sona.apply(p, "parse a tsv file")
    assert out["pattern_id"] == pid and out["task"] == "parse a tsv file"
    assert out["prompt"].startswith(out["guidance"]) and out["prompt"].endswith("New task: parse a tsv file")
    assert "use csv.DictReader" in out["guidance"]
    e = sona.embed("parse a tsv file")
    assert out["similarity"] == pytest.approx(float(e @ sona.embed("parse a csv file")), abs=1e-5)
    assert out["expected_reward"] == pytest.approx(0.8 * out["similarity"])
    np.testing.assert_allclose(out["embedding"], sona.apply(e))
    assert bank.get(pid).use_count == 1  # applying a pattern counts as using it
    assert sona.apply(pid, "parse json")["pattern_id"] == pid  # by id
    assert sona.apply(p.to_dict(), "parse json")["pattern_task"] == "parse a csv file"  # by dict
    bad = sona.store_pattern("parse a csv file", "data.csv", "split on commas by hand", 0.1, False)
    out = sona.apply(bad, "parse a tsv file")
    assert "failed (avoid repeating it)" in out["guidance"] and "Failed approach: split on commas" in out["guidance"]
    with pytest.raises(EngineError, match="task must be a non-empty string"):
        sona.apply(p, "")
    with pytest.raises(EngineError, match="no pattern"):
        sona.apply("00000000-0000-0000-0000-000000000000", "x")


def test_apply_vector_still_applies_microlora(bank):
    sona = engine(bank)
    v = np.ones(DIM, np.float32)
    assert sona.apply(v).shape == (DIM,) and sona.apply(np.ones((3, DIM), np.float32)).shape == (3, DIM)
    with pytest.raises(EngineError, match="shape"):
        sona.apply(np.ones(DIM + 1, np.float32))


def test_background_loop_distils_into_the_bank(bank):
    sona = engine(bank, background_every=30, reasoning_bank={"distill_clusters": 3})
    tasks = ["sort a list of numbers", "reverse a string", "sum two integers"]
    results = []
    for i in range(30):
        t = tasks[i % 3]
        results.append(sona.learn(Trajectory(task=t, embedding=sona.embed(t), reward=0.5 + 0.1 * (i % 3),
                                             success=True, output=f"solution {i % 3}", agent_id="w1")))
    assert results[-1]["background"]
    assert bank.count(source="distilled") == 3
    p = bank.retrieve_patterns("reverse a string", k=1, source="distilled")[0]
    assert p.task == "reverse a string" and p.support == 10 and p.reward == pytest.approx(0.6)
    # the next cycle over the same tasks merges instead of adding patterns
    for i in range(30):
        t = tasks[i % 3]
        sona.learn(Trajectory(task=t, embedding=sona.embed(t), reward=0.6, success=True, agent_id="w1"))
    assert bank.count(source="distilled") == 3
    assert bank.retrieve_patterns("reverse a string", k=1, source="distilled")[0].support == 20


def test_engine_without_bank_or_with_a_mismatched_bank_says_so():
    sona = engine()
    with pytest.raises(EngineError, match="needs a ReasoningBank"):
        sona.store_pattern("t", "", "", 1.0, True)
    with pytest.raises(EngineError, match="needs a ReasoningBank"):
        sona.retrieve_patterns("t")
    other = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-16")
    try:
        with pytest.raises(EngineError, match="16-d vectors, the engine is 32-d"):
            engine(other).retrieve_patterns("t")
    finally:
        other.close()
