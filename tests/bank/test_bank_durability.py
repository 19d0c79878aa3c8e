"""Durable ReasoningBank: the manifest of each flush, partial recovery detected on open (torn
WAL, truncated id tracker, deleted bank.json, foreign payloads) and reported by stats() and
``swarm-sona doctor``; group commit in the bank actor; point-in-time snapshots."""

import glob
import json
import os
import subprocess
import sys

import pytest

from swarm_sona.bank import BankDimensionError, ReasoningBank
from swarm_sona.bank.bank import BankRecoveryWarning
from swarm_sona.bank.health import BankPathError, check_bank

N = 500


def _items(n, prefix="task number"):
    return [{"task": f"{prefix} {i} about topic {i % 17}", "output": f"out {i}", "reward": 0.9, "success": True}
            for i in range(n)]


def _crashed_bank(path, *, flush_shard):
    """A bank written by a process that died (os._exit) right after recording N patterns in its
    manifest: with ``flush_shard`` after a real flush, without it as if the disk had dropped the
    flushed shard data (the data only in the WAL)."""
    code = f"""
import os
from swarm_sona.bank import ReasoningBank
b = ReasoningBank(path={str(path)!r}, embedder="hashing-v1-32")
b.store_many({_items(N)!r})
if {flush_shard}:
    b.flush()
else:
    b.manifest.write()
os._exit(0)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def _doctor(path, *extra):
    from swarm_sona.app.cli import main
    return main(["doctor", str(path), *extra])


def test_flush_writes_a_validated_manifest_and_a_clean_bank_is_healthy(tmp_path, capsys):
    with ReasoningBank(path=tmp_path / "b", embedder="hashing-v1-32") as b:
        ids = b.store_many(_items(20))
        b.flush()
        man = json.loads((tmp_path / "b" / "manifest.json").read_text())
        assert man["count"] == 20 and man["last_write"]["id"] == ids[-1] and man["dim"] == 32
        assert b.stats()["recovery"]["problems"] == []
    assert not list((tmp_path / "b").glob(".*.tmp"))
    with ReasoningBank(path=tmp_path / "b") as b:
        rec = b.stats()["recovery"]
        assert (rec["expected"], rec["found"], rec["missing"], rec["last_write_present"]) == (20, 20, 0, True)
    assert _doctor(tmp_path / "b") == 0
    assert "healthy" in capsys.readouterr().out


def test_torn_wal_opens_and_says_what_it_lost(tmp_path, capsys):
    path = tmp_path / "b"
    _crashed_bank(path, flush_shard=False)
    os.truncate(path / "shard" / "wal" / "open-1", 60_000)    # torn in the middle of the records
    with pytest.warns(BankRecoveryWarning, match=f"of {N} patterns recorded at the last flush are missing"):
        b = ReasoningBank(path=path)
    rec = b.stats()["recovery"]
    assert rec["expected"] == N and rec["found"] == b.count() < N and rec["missing"] == N - rec["found"]
    assert rec["last_write_present"] is False
    b.close()
    capsys.readouterr()
    assert _doctor(path, "--json") == 1
    out = json.loads(capsys.readouterr().out)
    # the open above recorded what it lost in the manifest: doctor still reports it afterwards
    assert not out["healthy"] and out["past_losses"]
    assert any(f"of {N} patterns recorded at the last flush are missing" in p for p in out["problems"])


def test_truncated_id_tracker_is_reported(tmp_path, capsys):
    path = tmp_path / "b"
    _crashed_bank(path, flush_shard=True)
    for f in glob.glob(str(path / "shard" / "segments" / "*" / "mutable_id_tracker.mappings")):
        os.truncate(f, os.path.getsize(f) // 2)
    os.truncate(path / "shard" / "wal" / "open-1", 60_000)    # and the WAL cannot replay every id
    with pytest.warns(BankRecoveryWarning, match="missing"):
        b = ReasoningBank(path=path)
    found = b.count()
    assert found < N and b.stats()["recovery"]["missing"] == N - found
    b.close()
    capsys.readouterr()
    assert _doctor(path) == 1
    assert f"{N - found} of {N} patterns" in capsys.readouterr().out


def test_deleted_bank_json_and_reopen_with_another_dimension(tmp_path, capsys):
    path = tmp_path / "b"
    with ReasoningBank(path=path, embedder="hashing-v1-64") as b:
        b.store_many(_items(30))
    (path / "bank.json").unlink()
    with pytest.raises(BankDimensionError, match="64-d"):
        ReasoningBank(path=path, embedder="hashing-v1-32")       # refused, nothing written
    assert not (path / "bank.json").exists()
    with pytest.warns(BankRecoveryWarning, match="bank.json was missing; rebuilt from manifest.json"):
        b = ReasoningBank(path=path)                             # the recorded embedder comes back
    assert b.dim == 64 and b.embedder_name == "hashing-v1-64" and b.count() == 30
    assert b.stats()["recovery"]["metadata_rebuilt_from"] == "manifest.json"
    assert b.retrieve_patterns("task number 3 about topic 3", k=1)[0].output == "out 3"
    b.close()
    assert json.loads((path / "bank.json").read_text())["dim"] == 64
    # without a manifest either: the shard's vector size decides; a wrong dimension is refused
    (path / "bank.json").unlink()
    (path / "manifest.json").unlink()
    with pytest.raises(BankDimensionError, match="64-d"):
        ReasoningBank(path=path, embedder="hashing-v1-32")
    with pytest.warns(BankRecoveryWarning, match="rebuilt from shard"):
        with ReasoningBank(path=path, embedder="hashing-v1-64") as b:
            assert b.count() == 30
    capsys.readouterr()
    assert _doctor(path) == 1                                   # repaired by that open, and still reported
    assert "bank.json was missing" in capsys.readouterr().out


def test_foreign_payload_is_skipped_and_counted(tmp_path, capsys):
    path = tmp_path / "b"
    with ReasoningBank(path=path, embedder="hashing-v1-32") as b:
        ids = b.store_many(_items(20))
        b.backend.set_payload([ids[4]], {"reward": "abc"})      # written by another program
    with pytest.warns(BankRecoveryWarning, match="skipped 1 stored points"):
        b = ReasoningBank(path=path)
    rec = b.stats()["recovery"]
    assert rec["foreign_skipped"] == 1 and rec["foreign_examples"][0]["id"] == ids[4]
    assert "reward is 'abc'" in rec["foreign_examples"][0]["problem"]
    assert b.count() == 19
    assert all(p.id != ids[4] for p in b.retrieve_patterns("task number 4 about topic 4", k=5))
    b.close()
    with ReasoningBank({"cache_size": 0}, path=path) as nocache:     # the store path leaves it out too
        got = nocache.retrieve_patterns("task number 4 about topic 4", k=5)
        assert got and all(p.id != ids[4] for p in got)
    capsys.readouterr()
    assert _doctor(path, "--json") == 1
    assert json.loads(capsys.readouterr().out)["foreign_skipped"] == 1


def test_doctor_bad_path_exit_2(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert _doctor(tmp_path / "nope") == 2
    assert _doctor(f) == 2
    assert _doctor(tmp_path) == 2                               # a directory without a bank
    assert "swarm-sona doctor: error" in capsys.readouterr().err
    with pytest.raises(BankPathError):
        check_bank(tmp_path / "nope")
