"""The shared ReasoningBank suite, run against every backend and with the hot-path cache on and off.

Backends: ``edge`` (embedded Qdrant Edge in a temporary directory) and
``qdrant_via_local_mode`` (the qdrant-client backend against qdrant-client's in-process local
mode: no Qdrant server can be installed on the development machines). ``nocache`` variants set
``cache_size=0`` so that every query goes to the store's own filtered search.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm_sona.bank import (
    BankDimensionError,
    BankInputError,
    Pattern,
    PatternFilter,
    ReasoningBank,
    ScoreWeights,
)
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.embedding.embedders import HashingEmbedder

DIM = 16
BACKENDS = ["edge", "edge_nocache", "edge_int8", "qdrant_via_local_mode", "qdrant_via_local_mode_nocache"]


def open_bank(kind: str, tmp_path=None, **cfg) -> ReasoningBank:
    base = {"cache_size": 0 if kind.endswith("nocache") else 100_000, "cache_int8": kind.endswith("int8"),
            "similarity_threshold": -1.0}
    base.update(cfg)
    if kind.startswith("edge"):
        base.update(backend="edge", persist_to_disk=False)
    else:
        base.update(backend="qdrant", url=":memory:")
    return ReasoningBank(base, embedder=HashingEmbedder(DIM))


@pytest.fixture(params=BACKENDS)
def bank(request):
    b = open_bank(request.param)
    yield b
    b.close()


def unit(v) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def e(i: int, scale: float = 1.0) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i] = scale
    return v


# Known-answer data: query e0. Similarities to e0 in the comment.
KNOWN = {
    "A": dict(vector=e(0), reward=0.9, success=True, agent_id="coder", task_type="code",
              metadata={"lang": "py", "tier": 1}),                                     # 1.000
    "B": dict(vector=e(0) + e(1, 0.1), reward=0.5, success=False, agent_id="reviewer", task_type="review",
              metadata={"lang": "rs", "tier": 2}),                                     # 0.995
    "C": dict(vector=e(0) + e(1, 0.5), reward=0.95, success=True, agent_id="tester", task_type="test",
              metadata={"lang": "py", "tier": 3, "repo": {"owner": "acme"}}),          # 0.894
    "D": dict(vector=e(0) + e(2, 1.0), reward=1.0, success=True, agent_id="coder", task_type="code",
              metadata={"lang": "go", "tier": 2}),                                     # 0.707
    "E": dict(vector=e(3), reward=0.99, success=True, agent_id=None, task_type=None, metadata={}),  # 0.0
    "F": dict(vector=-e(0) + e(3, 0.2), reward=0.2, success=False, agent_id="coder", task_type="code",
              metadata={"lang": "py", "tier": 9}),                                     # -0.98
}


def fill_known(bank: ReasoningBank) -> dict[str, str]:
    ids = {}
    for name, d in KNOWN.items():
        ids[name] = bank.store_pattern(f"task {name}", f"in {name}", f"out {name}", d["reward"], d["success"],
                                       d["metadata"], d["agent_id"], task_type=d["task_type"], vector=d["vector"])
    return {v: k for k, v in ids.items()}


def names(bank, by_id, **kw) -> list[str]:
    kw.setdefault("k", 10)
    return [by_id[p.id] for p in bank.retrieve_patterns(vector=e(0), **kw)]


def test_unfiltered_order_and_k(bank):
    by_id = fill_known(bank)
    assert names(bank, by_id) == ["A", "B", "C", "D", "E", "F"]
    assert names(bank, by_id, k=1) == ["A"]
    assert names(bank, by_id, k=3) == ["A", "B", "C"]
    assert len(bank.retrieve_patterns(vector=e(0))) == 1  # k defaults to config.default_k = 1


@pytest.mark.parametrize("kw, expected", [
    ({"min_reward": 0.9}, ["A", "C", "D", "E"]),
    ({"min_reward": 0.95}, ["C", "D", "E"]),
    ({"min_reward": 1.0}, ["D"]),
    ({"success": False}, ["B", "F"]),
    ({"success": True, "min_reward": 0.92}, ["C", "D", "E"]),
    ({"source_agents": ["tester", "reviewer"]}, ["B", "C"]),
    ({"source_agents": "coder"}, ["A", "D", "F"]),
    ({"source_agents": ["nobody"]}, []),
    ({"task_type": "code"}, ["A", "D", "F"]),
    ({"task_type": ["review", "test"]}, ["B", "C"]),
    ({"source": "distilled"}, []),
    ({"source": "stored", "k": 2}, ["A", "B"]),
    ({"metadata": {"lang": "py"}}, ["A", "C", "F"]),
    ({"metadata": {"lang": ["go", "rs"]}}, ["B", "D"]),
    ({"metadata": {"tier": 2}}, ["B", "D"]),
    ({"metadata": {"tier": [1, 3]}}, ["A", "C"]),
    ({"metadata": {"tier": {"gte": 2, "lt": 9}}}, ["B", "C", "D"]),
    ({"metadata": {"repo.owner": "acme"}}, ["C"]),
    ({"metadata": {"lang": "py"}, "min_reward": 0.5, "source_agents": "coder"}, ["A"]),
    ({"similarity_threshold": 0.9}, ["A", "B"]),
    ({"similarity_threshold": 0.7}, ["A", "B", "C", "D"]),
    ({"similarity_threshold": 0.0, "success": True}, ["A", "C", "D", "E"]),
    ({"similarity_threshold": 0.99, "min_reward": 0.9}, ["A"]),
])
def test_filters_with_known_answers(bank, kw, expected):
    by_id = fill_known(bank)
    assert names(bank, by_id, **kw) == expected


def test_count_with_filters(bank):
    fill_known(bank)
    assert bank.count() == 6
    assert bank.count(min_reward=0.9) == 4
    assert bank.count(success=False) == 2
    assert bank.count(source_agents="coder", metadata={"lang": "py"}) == 2


def test_retrieval_by_text_uses_the_embedder(bank):
    bank.store_pattern("parse a csv file with python", "", "csv.DictReader", 0.9, True)
    bank.store_pattern("deploy the web service to kubernetes", "", "helm upgrade", 0.8, True)
    bank.store_pattern("bake sourdough bread", "", "long proof", 0.7, True)
    top = bank.retrieve_patterns("parse the csv file", k=1)
    assert top[0].task == "parse a csv file with python"
    assert top[0].similarity == pytest.approx(top[0].score)
    assert 0 < top[0].similarity <= 1.0 + 1e-6


def test_same_content_twice_leaves_one_and_keeps_bookkeeping(bank):
    a = bank.store_pattern("t", "i", "o", 0.5, False, {"v": 1}, "x", vector=e(0))
    bank.mark_used(a, success=True)
    b = bank.store_pattern("t", "i", "o", 0.7, True, {"v": 2}, "x", vector=e(0))
    assert a == b and bank.count() == 1
    p = bank.get(a)
    assert (p.reward, p.success, p.metadata, p.use_count, p.success_count) == (0.7, True, {"v": 2}, 1, 1)
    assert bank.store_many([{"task": "t", "input": "i", "output": "o", "reward": 0.1, "success": False}]) == [a]
    assert bank.count() == 1


def test_store_many_and_get_delete(bank):
    items = [{"task": f"task {i}", "input": "", "output": f"o{i}", "reward": i / 10, "success": i % 2 == 0,
              "vector": unit(np.arange(DIM) + i)} for i in range(10)]
    ids = bank.store_many(items)
    assert len(set(ids)) == 10 and bank.count() == 10
    p = bank.get(ids[3])
    assert isinstance(p, Pattern) and p.output == "o3" and p.reward == pytest.approx(0.3)
    np.testing.assert_allclose(p.vector, unit(np.arange(DIM) + 3), atol=1e-5)
    assert bank.delete([ids[3], ids[4]]) == 2
    assert bank.delete(ids[3]) == 0
    assert bank.get(ids[3]) is None and bank.count() == 8
    assert ids[3] not in {p.id for p in bank.retrieve_patterns(vector=unit(np.arange(DIM) + 3), k=10)}


def test_mmr_reorders_crowded_duplicates(bank):
    q = e(0)
    dups = [unit(e(0) + e(1, 0.1) + e(2, 0.01 * i)) for i in range(3)]  # three near-copies, sim ~0.995
    other = unit(e(0) + e(3, 0.45))                                     # sim ~0.91, far from the copies
    ids = [bank.store_pattern(f"dup {i}", "", "", 0.9, True, vector=v) for i, v in enumerate(dups)]
    oid = bank.store_pattern("other", "", "", 0.9, True, vector=other)
    plain = [p.id for p in bank.retrieve_patterns(vector=q, k=2)]
    diverse = [p.id for p in bank.retrieve_patterns(vector=q, k=2, mmr=0.5)]
    assert plain[0] in ids and plain[1] in ids
    assert diverse[0] == plain[0] and diverse[1] == oid
    assert [p.id for p in bank.retrieve_patterns(vector=q, k=2, mmr=1.0)] == plain


def test_reliability_and_recency_scores(bank):
    a = bank.store_pattern("a", "", "", 0.9, True, vector=e(0))
    b = bank.store_pattern("b", "", "", 0.9, True, vector=unit(e(0) + e(1, 0.05)))  # slightly less similar
    assert [p.id for p in bank.retrieve_patterns(vector=e(0), k=2)] == [a, b]
    for _ in range(4):
        bank.mark_used(a, success=False)
        bank.mark_used(b, success=True)
    got = bank.retrieve_patterns(vector=e(0), k=2, score_weights=ScoreWeights(reliability=0.5))
    assert [p.id for p in got] == [b, a]
    assert got[0].reliability == pytest.approx(5 / 6) and got[1].reliability == pytest.approx(1 / 6)
    now = time.time()
    bank.mark_used(a, now=now)
    bank.mark_used(b, now=now - 60 * 86400)
    got = bank.retrieve_patterns(vector=e(0), k=2, score_weights=ScoreWeights(recency=0.5, half_life_s=86400))
    assert [p.id for p in got] == [a, b]
    assert got[0].score > got[0].similarity


def test_mark_used_counts(bank):
    a = bank.store_pattern("a", "", "", 0.9, True, vector=e(0))
    assert bank.mark_used([a], success=True, now=123.0) == 1
    bank.mark_used(a)
    p = bank.get(a)
    assert (p.use_count, p.outcome_count, p.success_count) == (2, 1, 1)
    assert p.last_used_at is not None and p.last_used_at > 123.0
    assert bank.mark_used("00000000-0000-0000-0000-000000000000") == 0


# ---- bad input: clear error, nothing written ------------------------------------------
@pytest.mark.parametrize("kw, match", [
    ({"vector": np.ones(DIM + 1)}, "dimension 17.*16-d vectors made by embedder 'hashing-v1-16'"),
    ({"vector": np.full(DIM, np.nan)}, "NaN"),
    ({"vector": np.zeros(DIM)}, "all zeros"),
    ({"reward": 1.5}, r"reward must be a finite number in \[0, 1\]"),
    ({"reward": -0.1}, r"reward must be a finite number in \[0, 1\]"),
    ({"reward": float("nan")}, "reward"),
    ({"reward": True}, "reward"),
    ({"success": "yes"}, "success must be true or false"),
    ({"metadata": {"when": {1, 2}}}, r"metadata\['when'\] is a set"),
    ({"metadata": {"obj": object()}}, r"metadata\['obj'\] is a object"),
    ({"metadata": {"x": [1, float("inf")]}}, "not a finite number"),
    ({"metadata": {1: "int key"}}, "not a string"),
    ({"metadata": {"b": b"bytes"}}, "bytes"),
    ({"task": ""}, "task must be a non-empty string"),
    ({"task": 5}, "task must be a string"),
    ({"agent_id": 3}, "agent_id must be a string"),
])
def test_bad_input_is_refused_and_nothing_written(bank, kw, match):
    fill_known(bank)
    args = {"task": "t", "input": "", "output": "", "reward": 0.5, "success": True, "vector": e(5)}
    args.update(kw)
    with pytest.raises(BankInputError, match=match):
        bank.store_pattern(**args)
    good = [{"task": "ok", "reward": 0.5, "success": True, "vector": e(6)}]
    with pytest.raises(BankInputError, match="item 1: "):
        bank.store_many(good + [args])
    assert bank.count() == len(KNOWN)
    assert bank.retrieve_patterns(vector=e(6), k=1, similarity_threshold=0.5) == []


def test_bad_queries_are_refused(bank):
    fill_known(bank)
    with pytest.raises(BankDimensionError, match="dimension 3"):
        bank.retrieve_patterns(vector=[1.0, 0.0, 0.0])
    with pytest.raises(BankInputError, match="NaN"):
        bank.retrieve_patterns(vector=np.full(DIM, np.nan))
    with pytest.raises(BankInputError, match="k must be a positive integer"):
        bank.retrieve_patterns(vector=e(0), k=0)
    with pytest.raises(BankInputError, match="min_reward"):
        bank.retrieve_patterns(vector=e(0), min_reward=2)
    with pytest.raises(BankInputError, match="mmr"):
        bank.retrieve_patterns(vector=e(0), mmr=1.5)
    with pytest.raises(BankInputError, match="similarity_threshold"):
        bank.retrieve_patterns(vector=e(0), similarity_threshold=3)
    with pytest.raises(BankInputError, match="unknown range key"):
        bank.retrieve_patterns(vector=e(0), metadata={"tier": {"above": 1}})
    with pytest.raises(BankInputError, match="not a pattern id"):
        bank.get("not-a-uuid")


# ---- oracle: the bank agrees with brute-force numpy under random filters ---------------
def test_random_filters_match_numpy_oracle(bank):
    rng = np.random.default_rng(7)
    n = 300
    V = rng.standard_normal((n, DIM)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    reward = np.round(rng.random(n), 3)
    success = rng.random(n) < 0.6
    agents = rng.choice(["a", "b", "c", "d"], n)
    lang = rng.choice(["py", "rs", "go"], n)
    items = [{"task": f"t{i}", "reward": float(reward[i]), "success": bool(success[i]), "agent_id": str(agents[i]),
              "metadata": {"lang": str(lang[i])}, "vector": V[i]} for i in range(n)]
    ids = np.array(bank.store_many(items))
    for _ in range(25):
        q = rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        kw: dict = {}
        keep = np.ones(n, bool)
        if rng.random() < 0.6:
            kw["min_reward"] = float(np.round(rng.random(), 2))
            keep &= reward >= kw["min_reward"]
        if rng.random() < 0.4:
            kw["success"] = bool(rng.random() < 0.5)
            keep &= success == kw["success"]
        if rng.random() < 0.4:
            kw["source_agents"] = [str(a) for a in rng.choice(["a", "b", "c", "d"], 2, replace=False)]
            keep &= np.isin(agents, kw["source_agents"])
        if rng.random() < 0.3:
            kw["metadata"] = {"lang": str(rng.choice(["py", "rs", "go"]))}
            keep &= lang == kw["metadata"]["lang"]
        k = int(rng.integers(1, 8))
        s = V @ q
        cand = np.flatnonzero(keep)
        expect = list(ids[cand[np.argsort(-s[cand], kind="stable")][:k]])
        got = bank.retrieve_patterns(vector=q, k=k, **kw)
        assert [p.id for p in got] == expect, kw
        np.testing.assert_allclose([p.similarity for p in got], np.sort(s[cand])[::-1][:k], atol=1e-4)


# ---- distillation -----------------------------------------------------------------------
def _clustered_trajectories(rng, centres, per, success=True, noise=0.05, agent="coder"):
    out = []
    for c, centre in enumerate(centres):
        for j in range(per):
            v = centre + noise * rng.standard_normal(DIM)
            out.append(Trajectory(task=f"cluster {c} task {j}", embedding=v.astype(np.float32),
                                  reward=0.6 + 0.1 * (j % 4), success=success, model="small",
                                  agent_id=agent, task_type=f"type{c}", output=f"approach {c}.{j}"))
    return out


def test_distill_creates_then_merges(bank):
    rng = np.random.default_rng(3)
    centres = [unit(e(0) + e(1)), unit(e(2) + e(3)), unit(e(4) - e(5))]
    trajs = _clustered_trajectories(rng, centres, 12)
    fails = _clustered_trajectories(rng, [unit(e(6))], 6, success=False)
    res = bank.distill(trajs + fails, k=4)
    assert res["trajectories"] == 42 and res["clusters"] == 4
    assert len(res["created"]) == 4 and res["merged"] == []
    assert bank.count(source="distilled") == 4 and bank.count(source="distilled", success=False) == 1
    for c, centre in enumerate(centres):
        (p,) = bank.retrieve_patterns(vector=centre, k=1, success=True)
        assert p.source == "distilled" and p.support == 12 and p.task_type == f"type{c}"
        assert p.similarity > 0.99 and p.reward == pytest.approx(np.mean([0.6 + 0.1 * (j % 4) for j in range(12)]))
        assert p.output.startswith(f"approach {c}.") and "12 trajectories" in p.description
    # same clusters again: merged into the existing patterns, no duplicates
    res2 = bank.distill(_clustered_trajectories(rng, centres, 6), k=3)
    assert res2["created"] == [] and sorted(res2["merged"]) == sorted(
        p.id for c in centres for p in bank.retrieve_patterns(vector=c, k=1, success=True))
    assert bank.count() == 4
    (p,) = bank.retrieve_patterns(vector=centres[0], k=1, success=True)
    assert p.support == 18 and p.metadata["distilled_merges"] == 1
    with pytest.raises(BankDimensionError, match="trajectory 0 embedding has dimension 3"):
        bank.distill([Trajectory(task="x", embedding=np.ones(3, np.float32), reward=1.0, success=True)])


def test_distill_is_deterministic(bank):
    rng = np.random.default_rng(5)
    trajs = _clustered_trajectories(rng, [unit(e(0)), unit(e(1)), unit(e(2))], 5, noise=0.3)
    first = bank.distill(trajs, k=3)
    other = open_bank("edge")
    try:
        second = other.distill(trajs, k=3)
    finally:
        other.close()
    assert first["created"] == second["created"]


# ---- snapshots ----------------------------------------------------------------------------
def test_snapshot_restore_and_migrate(bank, tmp_path):
    by_id = fill_known(bank)
    snap = tmp_path / "bank.snap"
    assert bank.snapshot(snap) == 6
    before = names(bank, by_id, min_reward=0.5)
    bank.delete(list(by_id)[:3])
    bank.store_pattern("extra", "", "", 0.5, True, vector=e(7))
    assert bank.restore(snap) == 6
    assert bank.count() == 6 and names(bank, by_id, min_reward=0.5) == before
    for kind in ("edge", "qdrant_via_local_mode"):  # a snapshot moves a bank between backends
        other = open_bank(kind)
        try:
            assert other.restore(snap) == 6
            assert names(other, by_id, min_reward=0.5) == before
        finally:
            other.close()
    wrong = ReasoningBank({"persist_to_disk": False}, embedder=HashingEmbedder(DIM * 2))
    try:
        with pytest.raises(BankDimensionError, match="hashing-v1-16"):
            wrong.restore(snap)
    finally:
        wrong.close()
    (tmp_path / "junk.snap").write_bytes(b"not a snapshot")
    with pytest.raises(BankInputError, match="not a usable ReasoningBank snapshot"):
        bank.restore(tmp_path / "junk.snap")
    assert bank.count() == 6


# ---- cache consistency: any sequence of writes and deletes -------------------------------
_ops = st.lists(st.tuples(st.sampled_from(["store", "delete", "mark"]), st.integers(0, 14),
                          st.floats(0, 1), st.booleans()), min_size=1, max_size=30)


@pytest.mark.parametrize("kind", ["edge", "edge_int8", "qdrant_via_local_mode"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops, min_reward=st.one_of(st.none(), st.floats(0, 1)), success=st.one_of(st.none(), st.booleans()))
def test_cache_agrees_with_store_after_any_writes(kind, ops, min_reward, success):
    rng = np.random.default_rng(len(ops))
    vecs = rng.standard_normal((15, DIM)).astype(np.float32)
    b = open_bank(kind)
    try:
        ids: dict[int, str] = {}
        for op, i, r, s in ops:
            if op == "store":
                ids[i] = b.store_pattern(f"t{i}", "", "", r, s, vector=vecs[i])
            elif op == "delete" and i in ids:
                b.delete(ids[i])
            elif op == "mark" and i in ids:
                b.mark_used(ids[i], success=s)
        assert len(b.cache) == b.backend.count()
        filt = PatternFilter.build(min_reward=min_reward, success=success)
        q = unit(rng.standard_normal(DIM))
        cache_ids, cache_s = b.cache.search(q, 5, filt)
        store = b.backend.search(q, 5, filt.conditions(), exact=True)
        assert cache_ids == [p.id for p in store]
        np.testing.assert_allclose(cache_s, [p.score for p in store], atol=1e-4)
    finally:
        b.close()


def test_embedder_mismatch_on_reopen_names_the_embedder(tmp_path):
    b = ReasoningBank(path=tmp_path / "bank", embedder=HashingEmbedder(DIM))
    b.store_pattern("x", "", "", 1.0, True)
    b.close()
    with pytest.raises(BankDimensionError, match=r"16-d vectors made by embedder 'hashing-v1-16'.*32-d"):
        ReasoningBank(path=tmp_path / "bank", embedder=HashingEmbedder(32))
    with pytest.raises(BankDimensionError, match="made by embedder 'hashing-v1-16', not 'fake-16'"):
        class Fake:
            name, dim = "fake-16", 16

            def embed(self, texts):
                return np.ones((len(texts), 16), np.float32) / 4

        ReasoningBank(path=tmp_path / "bank", embedder=Fake())
    # no embedder given: the recorded one is used
    with ReasoningBank(path=tmp_path / "bank") as again:
        assert again.embedder_name == "hashing-v1-16" and again.count() == 1


# ---- optional ivf cache index ---------------------------------------------------------------
def _clustered(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 50, dim)).astype(np.float32)
    V = centres[rng.integers(len(centres), size=n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    Q = V[rng.integers(n, size=40)] + (0.5 / np.sqrt(dim)) * rng.standard_normal((40, dim)).astype(np.float32)
    return V, Q / np.linalg.norm(Q, axis=1, keepdims=True)


@pytest.mark.parametrize("int8", [False, True], ids=["f32", "int8"])
def test_ivf_cache_index_is_exact_at_full_probe_and_close_at_default(int8):
    from swarm_sona.bank.cache import IVF_MIN_ROWS, HotCache

    n, dim = IVF_MIN_ROWS + 1000, 32
    V, Q = _clustered(n, dim)
    reward = np.random.default_rng(1).random(n)
    flat = HotCache(dim, n, int8=int8)
    ivf = HotCache(dim, n, index="ivf", probe=1.0, int8=int8)
    ids = [f"p{i}" for i in range(n)]
    for c in (flat, ivf):
        for lo in range(0, n, 1000):  # trained automatically once it holds IVF_MIN_ROWS rows
            c.upsert(ids[lo:lo + 1000], V[lo:lo + 1000], [{"reward": float(r)} for r in reward[lo:lo + 1000]])
    assert ivf.centroids is not None and flat.centroids is None and ivf.stats()["lists"] >= 16
    filt = PatternFilter.build(min_reward=0.5)
    for q in Q:
        assert ivf.search(q, 5, filt)[0] == flat.search(q, 5, filt)[0]
    ivf.probe = 0.1
    hits = sum(len(set(ivf.search(q, 5, filt)[0]) & set(flat.search(q, 5, filt)[0])) for q in Q)
    assert hits / (5 * len(Q)) >= 0.95
    # deletes and re-stores keep it consistent: deleted ids never come back, moved rows stay findable
    gone = ids[:2000:2]
    for c in (flat, ivf):
        c.delete(gone)
        c.upsert(ids[1:200:2], -V[1:200:2], [{"reward": 0.9}] * 100)  # new vectors for existing ids
    assert len(ivf) == len(flat) == n - 1000
    for q in list(Q) + list(-V[1:200:20]):
        got = ivf.search(q, 5, filt)[0]
        assert not set(got) & set(gone)
    ivf.probe = 1.0
    for q in list(Q[:10]) + list(-V[1:200:20]):
        assert ivf.search(q, 5, filt)[0] == flat.search(q, 5, filt)[0]


@pytest.mark.parametrize("int8", [False, True], ids=["f32", "int8"])
def test_ivf_rows_stored_after_the_lists_index_are_found_by_the_next_query(int8):
    """The probe reads the lists' row index plus every row appended since (scanned exactly), so an
    acknowledged write is visible at once; past IVF_TAIL_ROWS appended rows the index is rebuilt."""
    from swarm_sona.bank.cache import IVF_MIN_ROWS, IVF_TAIL_ROWS, HotCache

    n, dim = IVF_MIN_ROWS, 16
    V, Q = _clustered(n + IVF_TAIL_ROWS + 600, dim, seed=4)
    c = HotCache(dim, len(V), index="ivf", probe=0.02, int8=int8)
    c.upsert([str(i) for i in range(n)], V[:n], [{"reward": 0.5}] * n)
    filt = PatternFilter.build()
    probed = c.search(Q[0], 5, filt)[0]
    assert len(probed) == 5 and c.centroids is not None
    for i in range(n, len(V), 200):  # one batch at a time, each queried for at once
        batch = list(range(i, min(i + 200, len(V))))
        c.upsert([str(j) for j in batch], V[batch], [{"reward": 0.5}] * len(batch))
        for j in batch[::37]:
            assert c.search(V[j], 1, filt)[0] == [str(j)]
    # a replaced vector is found under its new direction, the old one no longer answers for it
    c.upsert(["0"], -V[:1], [{"reward": 0.5}])
    assert c.search(-V[0], 1, filt)[0] == ["0"] and "0" not in c.search(V[0], 5, filt)[0]


@pytest.mark.parametrize("int8", [False, True], ids=["f32", "int8"])
def test_ivf_rows_are_stored_in_list_order_until_a_write_breaks_it(int8):
    """Training stores the rows in list order (a probed list is one run of rows). A replaced row
    that changes list, or a delete that fills a hole with another list's row, drops the order and
    the row index answers the same; a retrain, or a tail past max(IVF_TAIL_ROWS, n / 8), restores it."""
    from swarm_sona.bank.cache import IVF_MIN_ROWS, IVF_TAIL_ROWS, HotCache

    n, dim = IVF_MIN_ROWS, 16
    V, Q = _clustered(n + IVF_TAIL_ROWS + 200, dim, seed=6)
    ids = [str(i) for i in range(len(V))]
    filt = PatternFilter.build()

    def fresh() -> HotCache:
        c = HotCache(dim, len(V), index="ivf", probe=0.05, int8=int8)
        c.upsert(ids[:n], V[:n], [{"reward": 0.5}] * n)
        return c

    c = fresh()
    assert c.stats()["ordered_rows"] == n and np.all(np.diff(c.part[:n]) >= 0)
    ordered = [c.search(q, 5, filt)[0] for q in Q]
    c.upsert(["7"], V[7:8], [{"reward": 0.5}])  # the same vector: the same list, the order stays
    assert c.stats()["ordered_rows"] == n
    far = -V[7:8]
    c.upsert(["7"], far, [{"reward": 0.5}])  # another list: the row index takes over, answers unchanged
    assert c.stats()["ordered_rows"] == 0
    assert [[i for i in c.search(q, 5, filt)[0] if i != "7"] for q in Q] == \
        [[i for i in got if i != "7"] for got in ordered] and c.search(far[0], 1, filt)[0] == ["7"]
    c.build_index()
    assert c.stats()["ordered_rows"] == n and np.all(np.diff(c.part[:n]) >= 0)
    last = c.part[n - 1]
    same = next(c.ids[r] for r in range(n - 2, -1, -1) if c.part[r] == last)
    c.delete([same])  # the last row fills a hole of its own list: still in order
    assert c.stats()["ordered_rows"] == n - 1
    other = next(c.ids[r] for r in range(n - 1) if c.part[r] != c.part[n - 2])
    c.delete([other])
    assert c.stats()["ordered_rows"] == 0 and other not in c.search(V[int(other)], 5, filt)[0]

    c = fresh()
    c.upsert(ids[n:n + IVF_TAIL_ROWS], V[n:n + IVF_TAIL_ROWS], [{"reward": 0.5}] * IVF_TAIL_ROWS)
    assert c.stats()["ordered_rows"] == n  # a tail of IVF_TAIL_ROWS rows is scanned exactly
    assert c.search(V[n + 5], 1, filt)[0] == [str(n + 5)]
    c.upsert(ids[n + IVF_TAIL_ROWS:], V[n + IVF_TAIL_ROWS:], [{"reward": 0.5}] * 200)
    assert c.stats()["ordered_rows"] == len(V) and np.all(np.diff(c.part[:len(V)]) >= 0)
    assert all(c.search(V[j], 1, filt)[0] == [str(j)] for j in range(0, len(V), 997))


def test_hnsw_cache_index_answers_as_flat_keeps_filters_exact_and_sees_every_write(tmp_path):
    """cache_index 'hnsw' (FAISS's HNSW behind the cache): the graph's answers at a high ef are the
    flat scan's; filters stay exact; rows written after the build (new, replaced) are scanned
    exactly, deleted ones never come back, a clustering moves rows without changing answers; a
    filter that few rows pass is answered by the flat scan."""
    pytest.importorskip("faiss")
    from swarm_sona.bank.cache import IVF_MIN_ROWS, HotCache

    n, dim = 3000, 16
    V, Q = _clustered(n, dim, seed=8)
    reward = np.random.default_rng(9).random(n)
    ids = [f"p{i}" for i in range(n)]
    flat, g = HotCache(dim, 2 * n), HotCache(dim, 2 * n, index="hnsw", ef=256)
    for c in (flat, g):
        c.upsert(ids, V, [{"reward": float(r)} for r in reward])
    assert g.graph is None and g.search(Q[0], 5, PatternFilter.build())[0] == flat.search(Q[0], 5, PatternFilter.build())[0]
    g.build_graph()
    assert g.stats()["graph_rows"] == n and g.stats()["index"] == "hnsw"
    half, rare, every = (PatternFilter.build(min_reward=0.5), PatternFilter.build(min_reward=0.9),
                         PatternFilter.build())

    def agree(filt, queries):
        return [g.search(q, 5, filt)[0] for q in queries] == [flat.search(q, 5, filt)[0] for q in queries]

    assert agree(every, Q) and agree(half, Q) and agree(rare, Q)
    passing = {ids[i] for i in range(n) if reward[i] >= 0.5}
    assert all(set(g.search(q, 5, half)[0]) <= passing for q in Q)
    W, _ = _clustered(200, dim, seed=10)
    new = [f"n{i}" for i in range(200)]
    for c in (flat, g):
        c.upsert(new, W, [{"reward": 0.7}] * 200)
        c.upsert(ids[:20], -V[:20], [{"reward": 0.7}] * 20)   # replaced: found under the new vector only
        c.delete(ids[100:150] + new[:10])
    assert g.stats()["graph_rows"] == n - 70 and all(g.search(W[i], 1, every)[0] == [new[i]] for i in range(10, 200, 9))
    assert all(g.search(-V[i], 1, every)[0] == [ids[i]] for i in range(20))
    gone = set(ids[100:150] + new[:10])
    assert not any(set(g.search(q, 5, every)[0]) & gone for q in [*Q, *V[100:150], *W[:10]])
    assert agree(half, Q) and agree(every, list(W[::17]))
    g.cluster()
    assert agree(half, Q) and agree(every, list(W[::17]))
    with pytest.raises(ValueError, match="cache ef must be a positive integer"):
        HotCache(dim, 10, index="hnsw", ef=0)
    cfg = {"cache_index": "hnsw", "cache_ef": 128, "similarity_threshold": -1.0, "persist_to_disk": False}
    with ReasoningBank(cfg, embedder=HashingEmbedder(dim)) as bank:
        bank.store_many([{"task": f"t{i}", "reward": 0.5, "success": True, "vector": v}
                         for i, v in enumerate(_clustered(IVF_MIN_ROWS + 10, dim, seed=11)[0])])
        assert bank.cache.graph is None and bank.cache.ef == 128
        bank.optimize()
        assert bank.stats()["cache"]["graph_rows"] == IVF_MIN_ROWS + 10
    cfg = {"cache_index": "hnsw", "similarity_threshold": -1.0}
    with ReasoningBank(cfg, path=tmp_path / "b", embedder=HashingEmbedder(dim)) as bank:
        bank.store_many([{"task": f"t{i}", "reward": 0.5, "success": True, "vector": v}
                         for i, v in enumerate(_clustered(IVF_MIN_ROWS + 10, dim, seed=12)[0])])
    with ReasoningBank(cfg, path=tmp_path / "b") as bank:   # reopened: the graph is built after the load
        assert bank.wait_loaded(60) and bank.stats()["cache"]["graph_rows"] == IVF_MIN_ROWS + 10


def test_thorough_ivf_training_finds_more_neighbours_in_the_nearest_lists(tmp_path):
    """The open / optimize() training (more Lloyd iterations on a larger sample) gives tighter lists
    than the quick one a write triggers: at the smallest probe it finds more of the exact top 5."""
    from swarm_sona.bank.cache import IVF_MIN_ROWS, HotCache

    n, dim = 4 * IVF_MIN_ROWS, 64
    filt = PatternFilter.build()
    found = {False: 0, True: 0}
    for data_seed in (5, 7):
        V, Q = _clustered(n, dim, seed=data_seed)
        flat = HotCache(dim, n)
        flat.upsert([str(i) for i in range(n)], V, [{"reward": 0.5}] * n)
        exact = [set(flat.search(q, 5, filt)[0]) for q in Q]
        for thorough in (False, True):
            c = HotCache(dim, n, index="ivf", probe=0.001)
            c.upsert([str(i) for i in range(n)], V, [{"reward": 0.5}] * n)
            c.build_index(seed=1, thorough=thorough)
            found[thorough] += sum(len(set(c.search(q, 5, filt)[0]) & e) for q, e in zip(Q, exact, strict=True))
    # measured: 355 (quick) against 396 (thorough) of 400
    assert found[True] >= found[False] + 20 and found[True] >= 0.95 * 400
    # a bank with cache_index ivf retrains its lists thoroughly in optimize()
    cfg = {"cache_index": "ivf", "similarity_threshold": -1.0, "persist_to_disk": False}
    with ReasoningBank(cfg, embedder=HashingEmbedder(dim)) as bank:
        bank.store_many([{"task": f"t{i}", "reward": 0.5, "success": True, "vector": v}
                         for i, v in enumerate(V[:IVF_MIN_ROWS + 10])])
        before = bank.cache.centroids.copy()
        bank.optimize()
        assert bank.cache.centroids is not None and not np.array_equal(before, bank.cache.centroids)


def test_ivf_falls_back_to_a_full_scan_when_probed_lists_miss_the_filter():
    from swarm_sona.bank.cache import IVF_MIN_ROWS, HotCache

    n, dim = IVF_MIN_ROWS, 16
    V, Q = _clustered(n, dim, seed=2)
    c = HotCache(dim, n, index="ivf", probe=0.05)
    rare = {n - 1, n - 2}  # the only rows of agent "rare"
    c.upsert([str(i) for i in range(n)], V,
             [{"reward": 0.5, "agent_id": "rare" if i in rare else "common"} for i in range(n)])
    q = -V[n - 1]  # far from the rare rows' lists
    got, _ = c.search(q, 5, PatternFilter.build(agents="rare"))
    assert sorted(got) == sorted(str(i) for i in rare)


def test_bank_with_ivf_cache_builds_the_index_when_reopened(tmp_path):
    from swarm_sona.bank.cache import IVF_MIN_ROWS

    V, Q = _clustered(IVF_MIN_ROWS + 50, DIM, seed=3)
    cfg = {"cache_index": "ivf", "similarity_threshold": -1.0}
    with ReasoningBank(cfg, path=tmp_path / "b", embedder=HashingEmbedder(DIM)) as bank:
        bank.store_many([{"task": f"t{i}", "reward": 0.5, "success": True, "vector": v} for i, v in enumerate(V)])
        before = [[p.id for p in bank.retrieve_patterns(vector=q, k=3)] for q in Q[:10]]
    with ReasoningBank(cfg, path=tmp_path / "b") as bank:
        assert bank.wait_loaded(60)   # 8,242 points: more than cache_load 'auto' loads at open
        assert bank.cache.centroids is not None and bank.stats()["cache"]["index"] == "ivf"
        after = [[p.id for p in bank.retrieve_patterns(vector=q, k=3)] for q in Q[:10]]
    assert sum(len(set(a) & set(b)) for a, b in zip(after, before, strict=True)) >= 0.9 * 30


def test_retrieval_never_serves_a_stale_payload(bank):
    a = bank.store_pattern("t", "i", "first", 0.5, True, {"v": 1}, vector=e(0))
    assert bank.retrieve_patterns(vector=e(0))[0].metadata == {"v": 1}  # now in the payload LRU
    bank.store_pattern("t", "i", "first", 0.9, False, {"v": 2}, vector=e(0))
    p = bank.retrieve_patterns(vector=e(0))[0]
    assert (p.reward, p.success, p.metadata) == (0.9, False, {"v": 2})
    bank.mark_used(a, success=True)
    p = bank.retrieve_patterns(vector=e(0))[0]
    assert (p.use_count, p.success_count) == (1, 1)
    p.metadata["v"] = 99  # mutating a result does not touch what the bank serves next
    assert bank.retrieve_patterns(vector=e(0))[0].metadata == {"v": 2}
    bank.delete(a)
    assert bank.retrieve_patterns(vector=e(0)) == []
