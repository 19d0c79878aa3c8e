"""``swarm-sona bench bank`` on tiny sizes: row shape, every backend present, exact rows exact."""

from __future__ import annotations

import json

import numpy as np

from swarm_sona.app.cli import main
from swarm_sona.bench.bank import make_workload, run_bank, run_inserts

KEYS = {"backend", "size", "p50_ms", "p99_ms", "insert_per_s", "recall_at_k"}


def test_run_bank_rows_cover_every_backend_and_exact_ones_have_full_recall():
    rows = run_bank(sizes=[400], dim=32, k=5, queries=20, hnsw_max=400, local_max=400, ram=True)
    by = {r["backend"]: r for r in rows}
    assert set(by) == {"numpy-bruteforce", "bank-cache-f32", "cache-f32-kernel", "edge-exact", "edge-hnsw",
                       "bank-cache-int8", "cache-int8-kernel", "qdrant-client-local"}
    for r in rows:
        assert KEYS <= set(r) and r["size"] == 400 and r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
    for name in ("numpy-bruteforce", "bank-cache-f32", "cache-f32-kernel", "edge-exact", "qdrant-client-local"):
        assert by[name]["recall_at_k"] == 1.0, name
    assert by["bank-cache-int8"]["recall_at_k"] >= 0.95
    assert by["bank-cache-f32"]["insert_per_s"] > 0 and by["numpy-bruteforce"]["insert_per_s"] is None
    assert by["numpy-bruteforce"]["speedup_vs_numpy"] == 1.0


def test_workload_is_seeded_and_unit_norm():
    a, b = make_workload(100, 16, 5, seed=3), make_workload(100, 16, 5, seed=3)
    np.testing.assert_array_equal(a["V"], b["V"])
    np.testing.assert_allclose(np.linalg.norm(a["Q"], axis=1), 1.0, atol=1e-5)


def test_cli_json_is_a_list_of_rows(capsys):
    code = main(["bench", "bank", "--json", "--sizes", "200", "--dim", "16", "--queries", "10", "--local-max", "0",
                 "--hnsw-max", "0", "--ram", "--insert-batches", ""])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and all(KEYS <= set(r) for r in rows)
    assert "qdrant-client-local" not in {r["backend"] for r in rows} and "edge-hnsw" not in {r["backend"] for r in rows}


def test_cli_rejects_bad_sizes(capsys):
    assert main(["bench", "bank", "--sizes", "10,abc"]) == 2
    assert "--sizes" in capsys.readouterr().err


def test_insert_rows_durable_flushes_grouped_buffered_none():
    rows = run_inserts(total=256, batches=[16], writers=[1, 4], dim=16)
    by = {(r["backend"], r["writers"]): r for r in rows}
    assert set(by) == {(f"insert-{m}", w) for m in ("durable", "buffered", "memory") for w in (1, 4)}
    for r in rows:
        assert r["size"] == 256 and r["calls"] == 16 and r["insert_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0
    assert by[("insert-durable", 1)]["flushes"] == 16      # one writer: a flush per call
    assert by[("insert-durable", 4)]["flushes"] < 16       # four writers share flushes
    assert by[("insert-buffered", 4)]["flushes"] == 0 and by[("insert-memory", 4)]["flushes"] == 0


def test_cli_prints_the_insert_table_and_refuses_bad_insert_options(capsys):
    assert main(["bench", "bank", "--sizes", "100", "--dim", "16", "--queries", "5", "--local-max", "0",
                 "--hnsw-max", "0", "--ram", "--insert-batches", "8", "--insert-writers", "2",
                 "--insert-total", "32"]) == 0
    out = capsys.readouterr().out
    assert "bench bank inserts" in out and "insert-durable" in out
    assert main(["bench", "bank", "--sizes", "100", "--insert-writers", "0"]) == 2
    assert "--insert-writers" in capsys.readouterr().err
