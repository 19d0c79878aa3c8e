"""Embedded (Qdrant Edge) bank: durability across processes, one handle per path, default paths."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from swarm_sona.bank import BankLockedError, ReasoningBank, default_bank_path
from swarm_sona.bank.edge_backend import EdgeBackend
from swarm_sona.embedding.embedders import HashingEmbedder

QUERIES = ["fix the failing unit test", "deploy to kubernetes", "parse csv data", "write docs"]


def _run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout)


def _results(bank: ReasoningBank) -> list:
    return [[(p.id, round(p.similarity, 5), p.reward, p.use_count) for p in
             bank.retrieve_patterns(q, k=3, min_reward=0.3, similarity_threshold=-1)] for q in QUERIES]


def test_writes_survive_close_and_reopen_in_a_new_process(tmp_path):
    path = tmp_path / "bank"
    with ReasoningBank(path=path, embedder=HashingEmbedder(64)) as bank:
        rng = np.random.default_rng(0)
        words = ["fix", "test", "unit", "deploy", "kubernetes", "csv", "parse", "docs", "write", "data", "api"]
        items = [{"task": " ".join(rng.choice(words, 4)) + f" #{i}", "input": "", "output": f"o{i}",
                  "reward": float(rng.random()), "success": bool(i % 2), "agent_id": f"agent-{i % 3}"}
                 for i in range(200)]
        ids = bank.store_many(items)
        bank.delete(ids[:10])
        bank.mark_used(ids[20:30], success=True)
        expected = _results(bank)
    code = """
        import json, sys
        from swarm_sona.bank import ReasoningBank
        bank = ReasoningBank(path=sys.argv[1])  # no embedder given: the recorded one
        queries = json.loads(sys.argv[2])
        out = [[(p.id, round(p.similarity, 5), p.reward, p.use_count) for p in
                bank.retrieve_patterns(q, k=3, min_reward=0.3, similarity_threshold=-1)] for q in queries]
        print(json.dumps({"count": bank.count(), "embedder": bank.embedder_name, "results": out}))
        bank.close()
    """
    proc = _run(code, str(path), json.dumps(QUERIES))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["count"] == 190 and got["embedder"] == "hashing-v1-64"
    assert got["results"] == json.loads(json.dumps(expected))


def test_second_process_gets_a_clear_error_and_the_store_stays_intact(tmp_path):
    path = tmp_path / "bank"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from swarm_sona.embedding.embedders import HashingEmbedder
            from swarm_sona.bank import ReasoningBank
            bank = ReasoningBank(path=sys.argv[1], embedder=HashingEmbedder(32))
            bank.store_pattern("held task", "", "kept", 0.9, True)
            bank.flush()
            print("ready", flush=True)
            sys.stdin.readline()
            bank.store_pattern("second task", "", "kept too", 0.8, True)
            bank.close()
            print("closed", flush=True)
        """), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready", holder.stderr.read()
        with pytest.raises(BankLockedError) as info:
            ReasoningBank(path=path, embedder=HashingEmbedder(32))
        msg = str(info.value)
        assert str(path) in msg and "bank-owner actor" in msg and "backend 'qdrant'" in msg
        # the same from yet another process, through the CLI: one line, exit code 1
        proc = subprocess.run([sys.executable, "-m", "swarm_sona", "retrieve", "held", "--bank", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "already open" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed", holder.stderr.read()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0, holder.stderr.read()
    with ReasoningBank(path=path) as bank:  # intact: both writes of the holder are there
        assert bank.count() == 2
        assert [p.output for p in bank.retrieve_patterns("held task", k=1)] == ["kept"]


def test_second_handle_in_the_same_process_is_refused_too(tmp_path):
    with ReasoningBank(path=tmp_path / "b", embedder=HashingEmbedder(16)) as bank:
        bank.store_pattern("x", "", "", 1.0, True)
        with pytest.raises(BankLockedError, match="already open"):
            ReasoningBank(path=tmp_path / "b", embedder=HashingEmbedder(16))
        assert bank.count() == 1  # the first handle still works
    with ReasoningBank(path=tmp_path / "b") as again:
        assert again.count() == 1


def test_temporary_bank_is_removed_on_close():
    bank = ReasoningBank({"persist_to_disk": False}, embedder=HashingEmbedder(16))
    where = Path(bank.backend.location)
    assert where.exists() and (where / "bank.json").exists()
    bank.close()
    assert not where.exists()
    bank.close()  # idempotent


def test_default_path_follows_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("SWARM_SONA_BANK_PATH", str(tmp_path / "explicit"))
    assert default_bank_path() == tmp_path / "explicit"
    monkeypatch.delenv("SWARM_SONA_BANK_PATH")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
        assert default_bank_path() == tmp_path / "xdg" / "swarm_sona" / "bank"
        monkeypatch.delenv("XDG_DATA_HOME")
        assert default_bank_path() == Path.home() / ".local" / "share" / "swarm_sona" / "bank"


def test_bank_on_a_file_path_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(Exception, match="not a directory"):
        EdgeBackend(f)


def test_retrieval_after_optimize_matches_exact_search():
    rng = np.random.default_rng(1)
    V = rng.standard_normal((3000, 32)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    with ReasoningBank({"persist_to_disk": False, "cache_size": 0}, embedder=HashingEmbedder(32)) as bank:
        bank.store_many([{"task": f"t{i}", "reward": float(i % 10) / 10, "success": True, "vector": V[i]}
                         for i in range(len(V))])
        assert isinstance(bank.optimize(), bool)  # HNSW only past the engine's indexing threshold
        hits = 0
        for q in V[:50]:
            exact = np.argsort(-(V @ q))[:5]
            got = bank.retrieve_patterns(vector=q, k=5, similarity_threshold=-1)
            hits += len({p.task for p in got} & {f"t{i}" for i in exact})
        assert hits / 250 >= 0.95


def test_bank_json_records_embedder_and_dimension(tmp_path):
    with ReasoningBank(path=tmp_path / "b", embedder=HashingEmbedder(48)):
        pass
    meta = json.loads((tmp_path / "b" / "bank.json").read_text())
    assert meta["embedder"] == "hashing-v1-48" and meta["dim"] == 48 and meta["format"] == "swarm_sona.bank"
