"""GraphIndex: the map from graph ids to cache rows over random sequences of the writes the cache
passes on, the filtered search against the definition, and the cache's graph: built in write
order, filtered from the snapshot of its rows' columns, in agreement with the exact scan."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("faiss")

from swarm_sona.bank.cache import HotCache  # noqa: E402
from swarm_sona.bank.filters import PatternFilter  # noqa: E402
from swarm_sona.bank.graph import GraphIndex  # noqa: E402

_OPS = st.lists(st.tuples(st.sampled_from(["forget", "delete", "append", "permute", "none"]),
                          st.integers(0, 10_000)), max_size=12)


def _unit(rng, n, d=8):
    V = rng.standard_normal((n, d)).astype(np.float32)
    return V / np.linalg.norm(V, axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 2**16))
def test_a_filtered_search_returns_exactly_the_allowed_rows_the_graph_holds(ops, seed):
    rng = np.random.default_rng(seed)
    n = 40
    V = _unit(rng, n)
    g = GraphIndex(V, rng.permutation(n))
    rows = V.copy()   # the vector of each current cache row (as the graph holds it)
    for op, r in ops:
        if op == "forget" and n:
            g.forget(np.array([r % n]), n)
        elif op == "delete" and n:
            g.delete(r % n, n - 1)
            rows[r % n] = rows[n - 1]
            n -= 1
        elif op == "append":
            g.forget(np.array([n]), n + 1)
            rows = np.vstack([rows[:n], _unit(rng, 1), rows[n:]])
            n += 1
        elif op == "permute" and n > 1:
            start = r % n
            order = rng.permutation(n - start)
            g.permute(start, order, n)
            rows[start:n] = rows[start:n][order]
    held = np.zeros(n, bool)
    held[g.row_of[g.row_of >= 0]] = True
    assert (g.gid[:n] >= 0).tolist() == held.tolist()
    assert sorted(g.unindexed(n).tolist()) == np.flatnonzero(~held).tolist()
    live = g.row_of >= 0
    assert (g.gid[g.row_of[live]] == np.flatnonzero(live)).all()
    allowed = rng.random(n) < 0.5
    for a in (allowed, None):
        want = held if a is None else held & a
        ok = g.passing(None if a is None else a[np.maximum(g.row_of, 0)] if n else np.zeros(len(g.row_of), bool))
        got, scores = g.search(rows[0] if n else V[0], 40, ef=64, ok=ok)
        assert sorted(got.tolist()) == np.flatnonzero(want).tolist()   # 40 >= every row: all of them
        if len(got):   # the graph's vector of each row is the row's vector
            np.testing.assert_allclose(scores, rows[got] @ (rows[0] if n else V[0]), atol=1e-5)


def test_a_gone_graph_id_is_never_returned_unfiltered():
    V = np.eye(4, dtype=np.float32)
    g = GraphIndex(V)
    g.delete(0, 3)   # row 3 (graph id 3) moves into row 0; graph id 0 is gone
    assert g.row_of.tolist() == [-1, 1, 2, 0]
    assert g.passing(None).tolist() == [False, True, True, True]
    got, _ = g.search(V[0], 4, ef=16, ok=g.passing(None))
    assert sorted(got.tolist()) == [0, 1, 2] and got[0] == 0   # row 0 now holds e3, not e0
    got, _ = g.search(V[3], 4, ef=16, ok=g.passing(np.array([False, False, False, True])))
    assert got.tolist() == [0]


def test_rows_out_of_range_or_repeated_are_refused():
    with pytest.raises(ValueError, match="distinct row numbers"):
        GraphIndex(np.eye(3, dtype=np.float32), np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="distinct row numbers"):
        GraphIndex(np.eye(3, dtype=np.float32), np.array([0, 3]))


def test_the_cache_builds_its_graph_in_write_order_not_in_reward_order():
    rng = np.random.default_rng(0)
    V = _unit(rng, 50)
    c = HotCache(8, 100, int8=True, index="hnsw")
    reward = rng.random(50)
    c.upsert([str(i) for i in range(30)], V[:30], [{"reward": float(r)} for r in reward[:30]])
    c.upsert([str(i) for i in range(30, 50)], V[30:], [{"reward": float(r)} for r in reward[30:]])
    c.upsert(["3"], V[3:4], [{"reward": float(reward[3])}])   # rewritten: now the last write
    c.cluster()   # rows sorted by reward
    assert [c.ids[r] for r in range(c.n)] != [str(i) for i in range(50)]
    c.build_graph()
    assert c.graph is not None
    assert [c.ids[r] for r in c.graph.row_of.tolist()] == [str(i) for i in (*range(3), *range(4, 50), 3)]
    ids, _ = c.search(V[7], 1, PatternFilter.build(min_reward=float(reward[7])))
    assert ids == ["7"]
    c.delete(["7"])   # the last row moves; the map follows it
    ids, _ = c.search(V[7], 50, PatternFilter.build())
    assert "7" not in ids and sorted(ids, key=int) == [str(i) for i in range(50) if i != 7]


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["store", "rewrite", "delete", "cluster"]), st.integers(0, 10_000)),
                    max_size=10), seed=st.integers(0, 2**16))
def test_the_graph_answers_like_the_exact_scan_after_any_writes(ops, seed):
    """Every row in the graph or its exact tail; filters from the build's snapshot stay right for
    the rows the graph still holds: with ef >= the rows, the graph's filtered top-k is the flat one."""
    rng = np.random.default_rng(seed)
    hn = HotCache(8, 400, index="hnsw", ef=400)
    flat = HotCache(8, 400)
    nxt = 0

    def store(ids):
        V = _unit(rng, len(ids))
        pay = [{"reward": float(rng.random()), "task_type": str(rng.choice(["a", "b", "c"])),
                "success": bool(rng.random() < 0.5)} for _ in ids]
        for c in (hn, flat):
            c.upsert(ids, V, pay)

    store([str(i) for i in range(60)])
    nxt = 60
    hn.cluster()   # rows sorted by reward: the graph's (write) order is not the row order
    hn.build_graph()
    for op, r in ops:
        if op == "store":
            store([str(nxt + i) for i in range(r % 5 + 1)])
            nxt += r % 5 + 1
        elif op == "rewrite" and hn.n:
            store([hn.ids[r % hn.n]])
        elif op == "delete" and hn.n:
            pid = hn.ids[r % hn.n]
            hn.delete([pid])
            flat.delete([pid])
        elif op == "cluster":
            hn.cluster(start=r % max(hn.n, 1))
    q = _unit(rng, 1)[0]
    for filt in (PatternFilter.build(), PatternFilter.build(min_reward=0.3),
                 PatternFilter.build(task_type="b", success=True), PatternFilter.build(task_type="d")):
        want = flat.search(q, 10, filt)
        got = hn.search(q, 10, filt)
        assert got[0] == want[0]
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)


def test_a_bulk_load_builds_the_graph_in_creation_order_whatever_the_scan_order():
    from swarm_sona.bank.cache import IVF_MIN_ROWS
    from swarm_sona.bank.loading import finish_cache

    rng = np.random.default_rng(1)
    n = IVF_MIN_ROWS
    created = rng.permutation(n).astype(np.float64)   # the store scans in an order unrelated to creation
    c = HotCache(8, 2 * n, index="hnsw")
    c.defer_cluster = True
    for lo in range(0, n, 1000):
        hi = min(n, lo + 1000)
        c.upsert([str(i) for i in range(lo, hi)], _unit(rng, hi - lo),
                 [{"reward": 0.5, "created_at": float(t)} for t in created[lo:hi]])
    finish_cache(c, "hnsw")
    assert c.graph is not None
    assert (np.diff(c.created[c.graph.row_of]) > 0).all()   # graph ids in creation order
    c.upsert(["new"], _unit(rng, 1), [{"reward": 0.5, "created_at": 0.0}])
    assert c.seq[c.row_of["new"]] == n   # a later write comes after every loaded row
