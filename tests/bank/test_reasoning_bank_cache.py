"""The hot-path cache's fast search: int8 scan + exact re-rank, reward zone map, clustering, threads.

The cache is compared with a plain model of its content (id -> vector, reward) after random
writes, re-writes and deletes. The size thresholds of the zone map, the clustering and the
thread split are shrunk for the test (the real ones start at 65,536 rows), so that every
branch runs on small data.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_sona import kernels as nk
from swarm_sona.bank import Pattern, PatternFilter, ReasoningBank
from swarm_sona.bank import cache as cache_mod
from swarm_sona.bank import zones as zones_mod
from swarm_sona.bank.cache import HotCache
from swarm_sona.embedding.embedders import HashingEmbedder

DIM = 24


@contextlib.contextmanager
def small_thresholds():
    with mock.patch.multiple(cache_mod, ZONE_ROWS=8, CLUSTER_MIN_ROWS=40, CLUSTER_MIN_TAIL=12, CLUSTER_SEGMENTS=8,
                             PARALLEL_MIN_ROWS=16), mock.patch.multiple(zones_mod, ZONE_ROWS=8, MAX_RUNS=6):
        yield


def _ranges(c, min_reward):
    return zones_mod.zone_ranges(c.zone_max, c.n, min_reward)


def exact_top(model: dict[str, tuple[np.ndarray, float]], q: np.ndarray, k: int,
              min_reward: float | None) -> list[str]:
    rows = [(pid, float(v @ q)) for pid, (v, r) in model.items() if min_reward is None or r >= min_reward]
    rows.sort(key=lambda t: -t[1])
    return [pid for pid, _ in rows[:k]]


_ops = st.lists(st.tuples(st.sampled_from(["add", "add", "add", "rewrite", "delete"]), st.integers(1, 30),
                          st.integers(0, 2**31 - 1)), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(ops=_ops, threads=st.sampled_from([1, 2, 3]), int8=st.booleans(), int4_from=st.sampled_from([0, 1, 50]),
       min_rewards=st.lists(st.none() | st.floats(0, 1), min_size=1, max_size=3))
def test_cache_search_matches_a_brute_force_model(ops, threads, int8, int4_from, min_rewards):
    with small_thresholds():
        # rerank >= n: every candidate is re-scored, so the result must be the exact top k
        c = HotCache(DIM, 10_000, int8=int8, threads=threads, rerank=10_000, int4_from=int4_from)
        model: dict[str, tuple[np.ndarray, float]] = {}
        next_id = 0
        try:
            for step, (op, count, seed) in enumerate(ops):
                rng = np.random.default_rng([seed, step])  # distinct vectors: no exact ties
                if op == "add":
                    ids = [f"p{next_id + i}" for i in range(count)]
                    next_id += count
                elif op == "rewrite" and model:
                    ids = list(rng.choice(sorted(model), size=min(count, len(model)), replace=False))
                elif op == "delete" and model:
                    gone = list(rng.choice(sorted(model), size=min(count, len(model)), replace=False))
                    c.delete(gone)
                    for pid in gone:
                        del model[pid]
                    continue
                else:
                    continue
                V = rng.standard_normal((len(ids), DIM)).astype(np.float32)
                V /= np.linalg.norm(V, axis=1, keepdims=True)
                R = np.round(rng.random(len(ids)), 2)
                c.upsert(ids, V, [{"reward": float(r)} for r in R])
                for pid, v, r in zip(ids, V, R, strict=True):
                    model[pid] = (v, float(r))
            n = len(c)
            assert n == len(model) and sorted(c.ids) == sorted(model)
            for pid, r in c.row_of.items():
                assert c.ids[r] == pid and c.reward[r] == model[pid][1]
                np.testing.assert_array_equal(c.vectors[r], model[pid][0])
                if c.int4:  # the quantised copies move with their rows
                    q4, s4 = nk.quantize_int4(model[pid][0][None])
                    np.testing.assert_array_equal(c.q4[r], q4[0])
                    assert c.scales4[r] == s4[0]
            zones = -(-n // cache_mod.ZONE_ROWS)
            for z in range(zones):  # the zone map bounds every reward from above
                assert c.zone_max[z] >= c.reward[z * cache_mod.ZONE_ROWS:min(n, (z + 1) * cache_mod.ZONE_ROWS)].max()
            rng = np.random.default_rng(len(ops))
            for mr in min_rewards:
                for _ in range(3):
                    q = rng.standard_normal(DIM).astype(np.float32)
                    q /= np.linalg.norm(q)
                    got, scores = c.search(q, 4, PatternFilter.build(min_reward=mr))
                    assert got == exact_top(model, q, 4, mr)
                    np.testing.assert_allclose(scores, [model[p][0] @ q for p in got], rtol=1e-5, atol=1e-6)
        finally:
            c.close()


def test_clustering_makes_a_reward_filter_read_about_the_rows_that_pass():
    with small_thresholds(), mock.patch.object(zones_mod, "MAX_RUNS", 64):
        rng = np.random.default_rng(0)
        n = 400
        c = HotCache(DIM, n, int8=True)
        V = rng.standard_normal((n, DIM)).astype(np.float32)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        reward = rng.random(n)
        for lo in range(0, n, 10):  # appended tails get sorted as they grow
            c.upsert([f"p{i}" for i in range(lo, lo + 10)], V[lo:lo + 10], [{"reward": r} for r in reward[lo:lo + 10]])
        runs = _ranges(c, 0.8)
        scanned = sum(hi - lo for lo, hi in runs)
        assert 1 < len(runs) <= zones_mod.MAX_RUNS  # one per sorted segment
        assert scanned < 0.5 * n  # ~20% pass; whole zones and the unsorted tail on top
        with mock.patch.object(zones_mod, "MAX_RUNS", 2):  # too many runs: one pass over their hull
            assert _ranges(c, 0.8) == [(runs[0][0], runs[-1][1])]
        c.cluster()  # one sorted run: the passing rows plus at most one partial zone
        (lo, hi), = _ranges(c, 0.8)
        assert hi == n and hi - lo <= (reward >= 0.8).sum() + cache_mod.ZONE_ROWS
        assert _ranges(c, 1.0) == []  # every reward is < 1
        ids, _ = c.search(V[7], 3, PatternFilter.build(min_reward=1.0))
        assert ids == []


def test_threads_split_the_scan_on_zone_edges():
    with small_thresholds():
        c = HotCache(DIM, 10, threads=2)
        assert zones_mod.split_ranges([(0, 100)], 100, c.threads) == [[(0, 56)], [(56, 100)]]
        c.threads = 3
        parts = zones_mod.split_ranges([(0, 10), (40, 100), (200, 205)], 75, c.threads)
        assert len(parts) == 3 and sum(hi - lo for p in parts for lo, hi in p) == 75
        assert all(hi % 8 == 0 for p in parts[:-1] for _, hi in p[-1:])


def test_pattern_from_fields_equals_from_payload():
    payload = {"task": "t" * 200, "reward": 0.25, "success": True, "outcome": "success", "source": "distilled",
               "created_at": 5.0, "metadata": {"a": [1, {"b": 2}]}, "use_count": 3, "support": 4}
    fields = Pattern.payload_fields("id-1", payload)
    a = Pattern.from_fields(fields, similarity=0.5, score=0.7)
    b = Pattern.from_payload("id-1", payload, similarity=0.5, score=0.7)
    assert a == b and a.title == "t" * 120
    a.metadata["a"][1]["b"] = 99  # results never share mutable state with the cache or each other
    assert fields["metadata"] == {"a": [1, {"b": 2}]}
    assert Pattern.from_fields(fields).metadata == {"a": [1, {"b": 2}]}


def test_default_bank_serves_fresh_writes_from_memory_and_finds_the_exact_neighbours():
    """Default config: int8 scan + exact re-rank, write-through pattern LRU (no store read)."""
    rng = np.random.default_rng(4)
    n, dim = 3000, 64
    centres = rng.standard_normal((60, dim)).astype(np.float32)
    V = centres[rng.integers(60, size=n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    reward = np.round(rng.random(n), 3)
    with ReasoningBank({"persist_to_disk": False, "similarity_threshold": -1.0}, embedder=HashingEmbedder(dim)) as bank:
        assert bank.cache.int8 == (nk.info()["active"] == "native") and bank.stats()["cache"]["rerank"] == 64
        ids = bank.store_many([{"task": f"t{i}", "reward": float(reward[i]), "success": True, "vector": V[i]}
                               for i in range(n)])
        misses = bank.payloads.misses
        for i in range(0, n, 150):
            q = V[i] + 0.05 * rng.standard_normal(dim).astype(np.float32)
            q /= np.linalg.norm(q)
            got = bank.retrieve_patterns(vector=q, k=5, min_reward=0.5)
            s = np.where(reward >= 0.5, V @ q, -np.inf)
            want = [ids[j] for j in np.argsort(-s, kind="stable")[:5]]
            assert [p.id for p in got] == want
            assert [p.score for p in got] == pytest.approx([float(s[ids.index(p.id)]) for p in got], abs=1e-5)
        assert bank.payloads.misses == misses  # every payload came from memory


_payload_keys = st.fixed_dictionaries({}, optional={
    "reward": st.sampled_from([0.0, 0.25, 0.5, 1.0]), "success": st.booleans(),
    "created_at": st.sampled_from([10.0, 20.0, 30.0]), "agent_id": st.sampled_from(["a", "b", None]),
    "task_type": st.sampled_from(["code", None]), "source": st.sampled_from(["stored", "distilled"])})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 7), _payload_keys), min_size=1, max_size=6), min_size=1,
                max_size=5), st.booleans())
def test_upserts_write_the_columns_a_plain_model_says(batches, one_by_one):
    """Whole batches (distinct ids, one step per column) or one id per call, repeats included: the
    columns of each id are what a dict model says (a missing key keeps the last value, a new row,
    also one that reuses a deleted row's slot, starts empty); the zone map and the creation-time
    bound stay bounds."""
    dim = 4
    c = HotCache(dim, 64)
    model: dict[str, dict] = {}
    for batch in batches:
        ids = [f"p{i}" for i, _ in batch]
        V = np.eye(dim, dtype=np.float32)[[i % dim for i, _ in batch]]
        pls = [pl for _, pl in batch]
        if one_by_one:
            for pid, v, pl in zip(ids, V, pls, strict=True):
                c.upsert([pid], v[None, :], [pl])
        else:
            c.upsert(ids, V, pls)
        for pid, pl in zip(ids, pls, strict=True):
            model.setdefault(pid, {}).update(pl)
        gone = ids[0]   # a delete leaves a stale slot that the next new row reuses
        c.delete([gone])
        model.pop(gone)
    assert sorted(c.ids) == sorted(model)
    defaults = {"reward": 0.0, "success": False, "created_at": 0.0}
    for pid, want in model.items():
        r = c.row_of[pid]
        for key, col in (("reward", c.reward), ("success", c.success), ("created_at", c.created)):
            assert col[r] == want.get(key, defaults[key]) or (key != "created_at" and key not in want), (pid, key)
        for key in ("agent_id", "task_type", "source"):
            names = {code: name for name, code in c.codes(key).items()}
            got = names.get(int(c.cols[key][r]))
            assert got == want.get(key), (pid, key, got, want)
    n = c.n
    for z in range(-(-n // 1024)):
        assert c.zone_max[z] >= c.reward[z * 1024:min(n, (z + 1) * 1024)].max()
    # the bound covers the creation times payloads gave (the bank's always carry one)
    assert all(c.oldest <= c.created[c.row_of[p]] for p, want in model.items() if "created_at" in want)
