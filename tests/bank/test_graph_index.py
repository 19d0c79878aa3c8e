"""GraphIndex's allowed-id bitmap (the slice while no row has moved, the gather through the map
after) against the definition, over random sequences of the writes the cache passes on."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("faiss")

from swarm_sona.bank.graph import GraphIndex  # noqa: E402

_OPS = st.lists(st.tuples(st.sampled_from(["forget", "delete", "append", "permute", "none"]),
                          st.integers(0, 10_000)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 2**16))
def test_allowed_ids_match_the_map_after_any_writes(ops, seed):
    rng = np.random.default_rng(seed)
    n = 40
    g = GraphIndex(rng.standard_normal((n, 8)).astype(np.float32))
    for op, r in ops:
        if op == "forget" and n:
            g.forget(np.array([r % n]), n)
        elif op == "delete" and n:
            g.delete(r % n, n - 1)
            n -= 1
        elif op == "append":
            g.forget(np.array([n]), n + 1)
            n += 1
        elif op == "permute" and n > 1:
            start = r % n
            g.permute(start, rng.permutation(n - start), n)
        allowed = rng.random(n) < 0.5
        want = (g.row_of >= 0) & allowed[np.clip(g.row_of, 0, max(n - 1, 0))] if n else np.zeros(len(g.row_of), bool)
        assert g.allowed_ids(allowed).tolist() == want.tolist()
        assert g.allowed_ids(None).tolist() == (g.row_of >= 0).tolist()
        if not g.moved:   # the fast path's premise: graph id i is row i or gone
            assert all(r in (i, -1) for i, r in enumerate(g.row_of.tolist()))


def test_a_moved_row_switches_to_the_map():
    g = GraphIndex(np.eye(4, dtype=np.float32))
    g.delete(0, 3)   # row 3 (graph id 3) moves into row 0
    assert g.moved and g.row_of.tolist() == [-1, 1, 2, 0]
    assert g.allowed_ids(np.array([True, False, False])).tolist() == [False, False, False, True]
