"""bench bank-faiss: recall against exact filtered search, tuning, winners, the text workload, the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from swarm_sona.bench import bank_faiss as bf
from swarm_sona.bench.bank import make_workload

faiss = pytest.importorskip("faiss", reason="faiss-cpu is not installed (the 'faiss' extra)")

SLICE = Path(__file__).resolve().parents[1] / "data" / "routellm_slice"


def _cell(W: dict[str, np.ndarray], min_reward: float | None) -> tuple[bf.FaissIndexes, list[np.ndarray]]:
    fx = bf.FaissIndexes(faiss, W["V"], W["reward"], hnsw=True)
    keep = None if min_reward is None else W["reward"] >= min_reward
    return fx, bf.exact_filtered_topk(W["V"], keep, W["Q"], 5)


def test_recall_exact_index_is_one_and_crippled_is_less() -> None:
    W = make_workload(2000, 32, 40, seed=1)
    fx, exact = _cell(W, 0.9)
    assert bf.recall_at_k(fx.search("flat", W["Q"], 5, 0.9, None), exact, 5) == 1.0
    # IVF probing one list of ~45 misses most filtered neighbours; the unfiltered flat search
    # returns rows the filter drops: both must score below 1
    crippled = bf.recall_at_k(fx.search("ivf", W["Q"], 5, 0.9, 1), exact, 5)
    unfiltered = bf.recall_at_k(fx.search("flat", W["Q"], 5, None, None), exact, 5)
    assert crippled < 0.9 and unfiltered < 0.5
    # every returned row passes the filter (the bitmap selector is honoured)
    got = fx.search("hnsw", W["Q"], 5, 0.9, 256)
    assert all(W["reward"][i] >= 0.9 for i in got.ravel() if i >= 0)


def test_recall_at_k_counts_and_validates() -> None:
    assert bf.recall_at_k([[3, 2, 1]], [[1, 2, 3]], 3) == 1.0
    assert bf.recall_at_k([[1, -1, -1]], [[1, 2, 3]], 3) == pytest.approx(1 / 3)
    assert bf.recall_at_k([[1]], [[1]], 5) == 1.0  # fewer than k pass the filter: out of what exists
    with pytest.raises(ValueError, match="2 results for 1 queries"):
        bf.recall_at_k([[1], [2]], [[1]], 1)


def test_tune_stops_at_target_else_best() -> None:
    assert bf.tune(lambda p: p / 10, [2, 4, 8, 16], 0.75) == (8, 0.8)
    assert bf.tune(lambda p: 0.5 if p == 4 else 0.1, [2, 4, 8], 0.95) == (4, 0.5)


def test_run_faiss_rows_tuned_and_winners() -> None:
    rows = bf.run_faiss(sizes=[1500], dims=[16], datasets=["random"], selectivities=[0.1, 1.0], queries=30,
                        bank_max=0)
    by = {(r.backend, r.selectivity): r for r in rows}
    assert {b for b, _ in by} == {"cache-int8", "cache-f32", "cache-ivf", "cache-hnsw", "faiss-flat", "faiss-ivf",
                                  "faiss-hnsw"}
    hn = by[("cache-hnsw", 1.0)]
    assert hn.param is not None and "HNSW32 graph" in hn.note and (hn.recall_at_k >= 0.95 or "not reached" in hn.note)
    ivf = by[("cache-ivf", 1.0)]
    assert ivf.param is not None and "lists, probe" in ivf.note and (ivf.recall_at_k >= 0.95 or "not reached" in ivf.note)
    assert by[("faiss-flat", 0.1)].recall_at_k == 1.0 and by[("cache-f32", 1.0)].recall_at_k == 1.0
    for kind in ("faiss-ivf", "faiss-hnsw"):
        r = by[(kind, 0.1)]
        assert r.param is not None and (r.recall_at_k >= 0.95 or "not reached" in r.note)
    # a higher target needs at least as large a parameter
    hi = bf.run_faiss(sizes=[1500], dims=[16], datasets=["random"], selectivities=[0.1], queries=30,
                      bank_max=0, target=1.0)
    lo = bf.run_faiss(sizes=[1500], dims=[16], datasets=["random"], selectivities=[0.1], queries=30,
                      bank_max=0, target=0.5)
    p_hi = next(r.param for r in hi if r.backend == "faiss-hnsw")
    p_lo = next(r.param for r in lo if r.backend == "faiss-hnsw")
    assert p_hi is not None and p_lo is not None and p_hi > p_lo
    win = bf.winners(rows)
    assert set(win) == {("random", 16, 1500, 0.1), ("random", 16, 1500, 1.0)}


def test_int4_rows_scan_the_int4_copy() -> None:
    from swarm_sona import kernels as nk

    rows = bf.run_faiss(sizes=[1500], dims=[32], datasets=["random"], selectivities=[1.0], queries=20,
                        bank_max=0, int4=True)
    by = {r.backend: r for r in rows}
    assert {"cache-int4", "cache-ivf-int4"} <= set(by) and by["cache-int4"].recall_at_k >= 0.95
    plain = bf.run_faiss(sizes=[1500], dims=[32], datasets=["random"], selectivities=[1.0], queries=20, bank_max=0)
    assert not {"cache-int4", "cache-ivf-int4"} & {r.backend for r in plain}
    if nk.info()["active"] == "native":   # the copy exists (and is scanned) only with the native kernels
        c = bf._Ours(bf.make_workload(100, 8, 2), bank=False, int4=True)
        try:
            assert c.caches["cache-int4"].stats()["int4"] and not c.caches["cache-int8"].stats()["int4"]
        finally:
            c.close()


def test_text_workload_and_bank_row() -> None:
    W = bf.text_workload(300, 32, 10, data=SLICE)
    assert W["V"].shape == (300, 32) and W["Q"].shape == (10, 32)
    assert np.allclose(np.linalg.norm(W["V"], axis=1), 1.0, atol=1e-4)
    rows = bf.run_faiss(sizes=[300], dims=[32], datasets=["text"], selectivities=[0.5], queries=10, data=SLICE,
                        bank_max=300, hnsw_max=0)
    bank = next(r for r in rows if r.backend == "bank-int8")
    assert bank.recall_at_k >= 0.95 and "faiss-hnsw" not in {r.backend for r in rows}
    with pytest.raises(FileNotFoundError, match="mmlu"):
        bf.text_workload(10, 8, 2, data=SLICE / "nowhere")
    with pytest.raises(ValueError, match="asked for"):
        bf.text_workload(10**7, 8, 2, data=SLICE)


def test_bad_input_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="selectivities"):
        bf.run_faiss(sizes=[100], selectivities=[0.0])
    with pytest.raises(ValueError, match="unknown dataset"):
        bf.run_faiss(sizes=[100], datasets=["images"])
    p = argparse.ArgumentParser()
    bf.add_arguments(p)
    assert bf.run(p.parse_args(["--sizes", "600", "--dims", "8", "--datasets", "random", "--selectivities", "0.5",
                                "--queries", "10", "--json"])) == 0
    assert '"faiss-hnsw"' in capsys.readouterr().out
    with pytest.raises(ValueError, match="--sizes"):
        bf.run(p.parse_args(["--sizes", "x"]))
