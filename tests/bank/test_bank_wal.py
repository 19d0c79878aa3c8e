"""The bank's write-ahead log (durability 'wal'): acknowledged after one fsync of the log, group
commit across threads, replay after a crash (kill -9 of a writing process), idempotent replay,
torn tails dropped and counted, deletes in the same order as the writes, the option flipped."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from swarm_sona.bank import ReasoningBank
from swarm_sona.bank.health import check_bank
from swarm_sona.bank.wal import scan_segments, segment_files
from swarm_sona.core import codec

DIM = 32
EMB = f"hashing-v1-{DIM}"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _items(n, tag="t"):
    return [{"task": f"{tag} task {i} about topic {i % 7}", "output": f"out {i}", "reward": 0.9, "success": True}
            for i in range(n)]


def _child(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code).format(**kw)], env=ENV, check=True,
                          timeout=120, capture_output=True, text=True)


# ---- acknowledgement and group commit ---------------------------------------------------------
class _FsyncCounter:
    """os.fsync wrapped: counts calls and makes each one take ``delay`` seconds (a slow disk)."""

    def __init__(self, monkeypatch, delay=0.005):
        self.calls = 0
        real = os.fsync

        def fsync(fd):
            self.calls += 1
            time.sleep(delay)
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def _concurrent_durable_stores(bank, writers=4, calls=16, batch=8):
    errors = []

    def run(k):
        try:
            for c in range(calls):
                bank.store_many(_items(batch, f"w{k} c{c}"), durable=True)
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(writers)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors, errors
    return writers * calls


@pytest.mark.parametrize("group_commit", [True, False])
def test_concurrent_writers_share_fsyncs_and_the_option_turns_it_off(tmp_path, monkeypatch, group_commit):
    bank = ReasoningBank({"group_commit": group_commit, "wal_idle_ms": 60_000}, path=tmp_path / "b", embedder=EMB)
    fsyncs = _FsyncCounter(monkeypatch)
    calls = _concurrent_durable_stores(bank)
    n_sync = fsyncs.calls
    st = bank.stats()
    assert st["durability"]["mode"] == "wal" and st["durability"]["group_commit"] is group_commit
    assert st["commits"]["waits"] == calls and st["durability"]["wal"]["written_lsn"] == calls
    if group_commit:   # writers that arrive during an fsync share the next one
        assert 1 <= n_sync <= calls // 2 and st["commits"]["max_group"] > 1
    else:              # every acknowledgement paid its own fsync
        assert n_sync == calls and st["commits"]["flushes"] == calls
    assert bank.count() == calls * 8
    bank.close()


def test_durable_store_is_acknowledged_after_the_log_fsync_not_the_engine_flush(tmp_path, monkeypatch):
    bank = ReasoningBank({"wal_idle_ms": 60_000}, path=tmp_path / "b", embedder=EMB)
    engine_flushes = []
    real = bank.backend.engine.flush
    monkeypatch.setattr(bank.backend.engine, "flush", lambda: (engine_flushes.append(1), real())[1])
    fsyncs = _FsyncCounter(monkeypatch, delay=0.0)
    ids = bank.store_many(_items(10), durable=True)
    assert fsyncs.calls == 1 and engine_flushes == []          # one log fsync, no engine flush
    assert bank.backend.pending == 1                             # the engine has not applied it yet...
    assert [p.id for p in bank.retrieve_patterns("t task 3 about topic 3", k=1)] == [ids[3]]   # ...the cache has
    assert bank.get(ids[0]) is not None and bank.backend.pending == 0   # a store read applies the queue first
    bank.flush()                                                 # a checkpoint: engine flushed, log dropped
    assert engine_flushes == [1]
    assert scan_segments(tmp_path / "b" / "wal").records == []
    bank.close()


@pytest.mark.parametrize("mode", ["wal", "engine", "none"])
def test_durability_option_decides_what_a_durable_store_waits_for(tmp_path, monkeypatch, mode):
    bank = ReasoningBank({"durability": mode, "wal_idle_ms": 60_000}, path=tmp_path / "b", embedder=EMB)
    engine = getattr(bank.backend, "engine", bank.backend)
    engine_flushes = []
    real = engine.flush
    monkeypatch.setattr(engine, "flush", lambda: (engine_flushes.append(1), real())[1])
    fsyncs = _FsyncCounter(monkeypatch, delay=0.0)
    bank.store_many(_items(5), durable=True)
    got = (fsyncs.calls, len(engine_flushes), len(scan_segments(tmp_path / "b" / "wal").records))
    # wal: one log fsync; engine: its flush, then the manifest (file and directory fsynced); none: nothing
    assert got == {"wal": (1, 0, 1), "engine": (2, 1, 0), "none": (0, 0, 0)}[mode]
    assert bank.stats()["durability"]["mode"] == mode
    bank.close()


def test_server_backend_falls_back_to_engine_durability():
    with ReasoningBank({"backend": "qdrant", "url": ":memory:"}, embedder=EMB) as bank:
        assert bank.durability.mode == "engine" and "wal" not in bank.stats()["durability"]


def test_bad_durability_option_is_refused():
    from swarm_sona.core.config import ConfigError

    with pytest.raises(ConfigError, match="durability"):
        ReasoningBank({"durability": "fsync"}, embedder=EMB)


# ---- crashes and replay -----------------------------------------------------------------------
_LOOP = """
import sys, numpy as np
from swarm_sona.bank import ReasoningBank
bank = ReasoningBank({{"wal_idle_ms": {idle}}}, path={path!r}, embedder={emb!r})
for r in range(10 ** 6):
    ids = bank.store_many([{{"task": f"round {{r}} task {{i}}", "reward": 0.9, "success": True}} for i in range(64)],
                          durable=True)
    sys.stdout.write(" ".join(ids) + "\\n"); sys.stdout.flush()   # only after the acknowledgement
"""


@pytest.mark.parametrize("idle_ms", [60_000, 5])   # the engine applies nothing / applies and checkpoints meanwhile
def test_kill9_of_a_writing_process_loses_no_acknowledged_pattern(tmp_path, idle_ms):
    path = str(tmp_path / "bank")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_LOOP.format(path=path, emb=EMB, idle=idle_ms))],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    acked = []
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 3000 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked += line.split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)   # mid-write: the next batch is being stored
        proc.wait(timeout=30)
        proc.stdout.close()
    assert len(acked) >= 3000
    with ReasoningBank(path=path) as bank:
        missing = [i for i in acked if bank.get(i) is None]
        rec = bank.stats()["recovery"]
        assert missing == [] and bank.count() >= len(acked)
        assert rec["problems"] == [] and rec["wal"]["records"] >= 1   # the log held what the engine had not flushed
    assert check_bank(path).healthy


def test_torn_tail_is_dropped_and_counted(tmp_path):
    path = tmp_path / "b"
    out = _child("""
        import os
        from swarm_sona.bank import ReasoningBank
        b = ReasoningBank({{"wal_idle_ms": 60000}}, path={path!r}, embedder={emb!r})
        for k in range(3):
            ids = b.store_many([{{"task": f"k{{k}} task {{i}}", "reward": 0.5, "success": True}} for i in range(20)],
                               durable=True)
            print(" ".join(ids), flush=True)
        os._exit(0)   # a crash: nothing applied to the engine, the log holds three records
        """, path=str(path), emb=EMB)
    acked = out.stdout.split()
    seg = segment_files(path / "wal")[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as f:                    # a fourth record whose write was cut short
        f.write(seg.read_bytes()[: size // 3 // 2])
    assert [r.action for r in codec.migrate_path(path) if r.path.suffix == ".wal"] == []   # migrate leaves logs alone
    with ReasoningBank(path=path) as bank:
        wal = bank.stats()["recovery"]["wal"]
        assert wal["records"] == 3 and wal["patterns"] == 60 and wal["torn_bytes"] == size // 3 // 2
        assert bank.recovery["problems"] == []    # a torn tail was never acknowledged: nothing lost
        assert all(bank.get(i) is not None for i in acked) and bank.count() == 60
    health = check_bank(path)                      # replayed and checkpointed by that open: clean now
    assert health.healthy and health.wal_torn_bytes == 0


def test_damaged_segment_is_reported_as_a_problem(tmp_path):
    path = tmp_path / "b"
    _child("""
        import os
        from swarm_sona.bank import ReasoningBank
        b = ReasoningBank({{"wal_idle_ms": 60000}}, path={path!r}, embedder={emb!r})
        for k in range(3):
            b.store_many([{{"task": f"k{{k}} task {{i}}", "reward": 0.5, "success": True}} for i in range(20)], durable=True)
        b.backend.rotate()   # a second segment follows
        b.store_many([{{"task": "after", "reward": 0.5, "success": True}}], durable=True)
        os._exit(0)
        """, path=str(path), emb=EMB)
    first = segment_files(path / "wal")[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF                   # a flipped byte in the second of three records
    first.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="is damaged"):
        bank = ReasoningBank(path=path)
    assert bank.stats()["recovery"]["wal"]["records"] == 2 and bank.count() == 21
    bank.close()


def test_replay_is_idempotent_and_keeps_the_order_of_writes_and_deletes(tmp_path):
    path = tmp_path / "b"
    out = _child("""
        import os
        from swarm_sona.bank import ReasoningBank
        b = ReasoningBank({{"wal_idle_ms": 60000}}, path={path!r}, embedder={emb!r})
        a, c = b.store_many([{{"task": "alpha", "reward": 0.5, "success": True}},
                             {{"task": "gamma", "reward": 0.5, "success": True}}], durable=True)
        b.delete(a)                                                # logged after the store
        b.mark_used(c, success=True)                               # an absolute payload update
        b.mark_used(c, success=True)
        b.store_many([{{"task": "beta", "reward": 0.7, "success": True}}], durable=True)
        if {applied}:
            b.backend.catch_up(); b.backend.engine.flush()         # the engine holds all of it too
        print(a, c, flush=True)
        os._exit(0)
        """, path=str(path), emb=EMB, applied=True)
    a, c = out.stdout.split()
    assert len(scan_segments(path / "wal").records) == 5           # the log still holds every record
    with ReasoningBank(path=path) as bank:                         # replayed onto an engine that has them
        assert bank.stats()["recovery"]["wal"]["records"] == 5
        assert bank.get(a) is None and bank.count() == 2
        assert bank.get(c).use_count == 2 and bank.get(c).success_count == 2   # not counted twice
        assert [p.task for p in bank.retrieve_patterns("beta", k=1)] == ["beta"]


def test_checkpoint_bounds_the_log(tmp_path):
    bank = ReasoningBank({"wal_idle_ms": 60_000, "wal_checkpoint_mb": 0.05, "wal_apply_points": 64},
                         path=tmp_path / "b", embedder=EMB)
    for k in range(20):
        bank.store_many(_items(32, f"k{k}"), durable=True)
    deadline = time.monotonic() + 10
    while bank.stats()["durability"]["wal"]["applied_points"] < 640 - 32 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    wal = bank.stats()["durability"]["wal"]
    total = sum(f.stat().st_size for f in segment_files(tmp_path / "b" / "wal"))
    # the applier applied the queue whenever it held 64 points (at most the last 32 wait for the idle
    # time or a read) and checkpointed at 0.05 MB: the segments it covered are gone (~0.3 MB written)
    assert wal["applied_points"] >= 640 - 32 and wal["pending"] <= 1
    assert wal["written_lsn"] == 20 and total < 0.05 * (1 << 20) + 60_000, total
    assert bank.manifest.flushes >= 1 and bank.count() == 640
    bank.close()


def test_vectors_survive_replay_exactly(tmp_path):
    path = tmp_path / "b"
    V = np.random.default_rng(0).standard_normal((4, DIM)).astype(np.float32)
    np.save(tmp_path / "v.npy", V)
    out = _child("""
        import os, numpy as np
        from swarm_sona.bank import ReasoningBank
        V = np.load({v!r})
        b = ReasoningBank({{"wal_idle_ms": 60000}}, path={path!r}, embedder={emb!r})
        ids = b.store_many([{{"task": f"v{{i}}", "reward": 0.5, "success": True, "vector": V[i]}} for i in range(4)],
                           durable=True)
        print(" ".join(ids), flush=True)
        os._exit(0)
        """, path=str(path), emb=EMB, v=str(tmp_path / "v.npy"))
    ids = out.stdout.split()
    with ReasoningBank(path=path) as bank:
        got = np.stack([bank.get(i).vector for i in ids])
    np.testing.assert_allclose(got, V / np.linalg.norm(V, axis=1, keepdims=True), rtol=1e-6, atol=1e-6)
