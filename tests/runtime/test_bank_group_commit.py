"""Durable acknowledgements with group commit: a store is acknowledged only once an engine flush
covers it; concurrent durable stores share flushes; acknowledged ids survive a SIGKILL of the
process that acknowledged them (a plain subprocess and the threaded Ray bank actor); a swarm's
checkpoint carries a bank snapshot that restore gives back exactly."""

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
from swarm_sona.bank.commit import CommitError, GroupCommit
from swarm_sona.runtime.actors.bank import BankActor, PatternStore

DIM = 32


def _records(n, tag, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, dim)).astype(np.float32)
    return [{"task": f"{tag} task {i}", "embedding": V[i], "reward": 0.8, "success": True, "agent_id": tag}
            for i in range(n)]


# ---- GroupCommit alone ------------------------------------------------------------------------
def test_group_commit_acks_only_after_a_flush_that_started_after_the_write():
    log = []   # (written when the flush started, finished) per flush
    gc = None

    def flush():
        start = gc.written
        time.sleep(0.01)
        log.append(start)

    gc = GroupCommit(flush)
    acks = []
    lock = threading.Lock()

    def writer(k):
        for _ in range(10):
            with lock:
                seq = gc.note_write()
            gc.wait_durable(seq)
            covered = [s for s in log if s >= seq]   # a finished flush that started after the write
            acks.append(bool(covered))

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    st = gc.stats()
    assert len(acks) == 80 and all(acks)
    assert st.writes == 80 and st.durable == 80 and st.waits == 80
    assert st.flushes < 40 and st.max_group >= 2   # grouped: far fewer flushes than acknowledgements


def test_group_commit_failed_flush_acknowledges_nothing_and_the_next_call_retries():
    calls = []

    def flush():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")

    gc = GroupCommit(flush)
    seq = gc.note_write()
    with pytest.raises(CommitError, match="disk full"):
        gc.wait_durable(seq)
    assert gc.stats().durable == 0 and gc.stats().failed == 1
    gc.wait_durable(seq)   # a new flush covers it
    assert gc.stats().durable == 1 and len(calls) == 2
    with pytest.raises(ValueError, match="never issued"):
        gc.wait_durable(5)
    with pytest.raises(TypeError, match="callable"):
        GroupCommit(None)


# ---- ReasoningBank / PatternStore ------------------------------------------------------------
def _concurrent_stores(store_fn, threads=8, rounds=4, n=16):
    acked, errors = [], []

    def run(k):
        try:
            for r in range(rounds):
                acked.extend(store_fn(_records(n, f"w{k}-r{r}", seed=k * 100 + r)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors
    return acked


def _gate_first_flush(bank, method, writers, timeout=30.0):
    """Hold the first call of ``bank.backend.<method>`` (the group commit's flush) until
    ``writers`` writes are numbered, so that concurrent writers provably overlap a flush whatever
    the machine's load (without the gate, a fast flush on a busy machine can finish before the
    next writer arrives and nothing is shared)."""
    real = getattr(bank.backend, method)
    commits = bank.durability.commits
    first = threading.Event()

    def gated():
        if not first.is_set():
            first.set()
            deadline = time.monotonic() + timeout
            while commits.written < writers and time.monotonic() < deadline:
                time.sleep(0.001)
        return real()

    setattr(bank.backend, method, gated)


@pytest.mark.parametrize("durable", [True, False])
def test_pattern_store_durable_option_groups_flushes_across_threads(tmp_path, durable):
    bank = ReasoningBank(path=tmp_path / "b", embedder=f"hashing-v1-{DIM}")
    _gate_first_flush(bank, "sync", 8)   # the log's fsync (durability "wal", the default)
    store = PatternStore(bank, durable=durable)
    acked = _concurrent_stores(store.store_batch)
    st = bank.stats()["commits"]
    assert len(acked) == 8 * 4 * 16 and bank.count() == len(acked)
    if durable:   # every call waited for a flush; the 8 first-round writes shared at most 2
        assert st["waits"] == 32 and 1 <= st["flushes"] <= 32 - 6 and st["durable"] == st["writes"] == 32
        assert st["max_group"] >= 4
    else:         # nothing flushed on the way: acknowledged before durable
        assert st["waits"] == 0 and st["flushes"] == 0 and st["durable"] == 0
    bank.close()


def test_engine_durability_groups_concurrent_stores_into_shared_flushes(tmp_path):
    # durability "engine" (what a server backend does): 8 concurrent writers, the first engine
    # flush held until all 8 wrote: the leader's flush covers what was written when it started,
    # the next one everything written during it: 8 acknowledgements, at most 2 flushes
    bank = ReasoningBank({"durability": "engine"}, path=tmp_path / "b", embedder=f"hashing-v1-{DIM}")
    _gate_first_flush(bank, "flush", 8)
    store = PatternStore(bank, durable=True)
    acked = _concurrent_stores(store.store_batch, threads=8, rounds=1, n=32)
    st = bank.stats()["commits"]
    assert len(acked) == 8 * 32 and bank.count() == len(acked)
    assert st["waits"] == 8 and st["durable"] == st["writes"] == 8
    assert 1 <= st["flushes"] <= 2 and st["max_group"] >= 4
    bank.close()
    with ReasoningBank(path=tmp_path / "b") as again:
        assert all(again.get(i) is not None for i in acked)


def test_store_many_durable_waits_for_the_flush_and_flush_always_flushes(tmp_path):
    bank = ReasoningBank({"durability": "engine"}, path=tmp_path / "b", embedder=f"hashing-v1-{DIM}")
    flushed_at = []
    real = bank.backend.flush
    bank.backend.flush = lambda: (flushed_at.append(bank.backend.count()), real())[1]
    bank.store_many([{"task": "a", "reward": 1.0, "success": True}])
    assert flushed_at == []
    bank.store_many([{"task": "b", "reward": 1.0, "success": True}], durable=True)
    assert flushed_at == [2]   # the flush covered both writes before the call returned
    bank.flush()
    bank.flush()               # a flush request always flushes (deletes are writes too)
    assert len(flushed_at) == 3
    bank.close()


# ---- SIGKILL right after the acknowledgement --------------------------------------------------
_CHILD = """
import sys, threading, numpy as np
from swarm_sona.runtime.actors.bank import BankActor
actor = BankActor({{"path": {path!r}}}, dim={dim})
out = threading.Lock()
def run(k):
    rng = np.random.default_rng(k)
    for r in range(10 ** 6):
        V = rng.standard_normal((64, {dim})).astype(np.float32)
        ids = actor.store_batch([{{"task": f"w{{k}} r{{r}} task {{i}}", "embedding": V[i], "reward": 0.9,
                                   "success": True}} for i in range(64)])
        with out:
            sys.stdout.write(" ".join(ids) + "\\n"); sys.stdout.flush()
for k in range(4):
    threading.Thread(target=run, args=(k,), daemon=True).start()
threading.Event().wait()
"""


def test_acked_ids_survive_sigkill_of_the_acknowledging_process(tmp_path):
    path = str(tmp_path / "bank")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD.format(path=path, dim=DIM))],
                            stdout=subprocess.PIPE, text=True, env=env)
    acked = []
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 1500 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked += line.split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)   # right after the last acknowledgement read
        proc.wait(timeout=30)
        proc.stdout.close()
    assert len(acked) >= 1500, "the child acknowledged too little before the deadline"
    with ReasoningBank(path=path) as bank:
        missing = [i for i in acked if bank.get(i) is None]
        assert missing == [] and bank.count() >= len(set(acked))
        assert bank.recovery["problems"] == []   # the manifest never claims a write the flush missed


# ---- the threaded Ray bank actor --------------------------------------------------------------
ray = pytest.importorskip("ray")



@pytest.mark.ray
def test_threaded_bank_actor_waits_for_a_flush_per_store_and_acks_survive_sigkill(ray_session, tmp_path):
    # the engine-flush path (durability "engine") behind a threaded Ray actor: whether two
    # actor calls overlap a flush is up to the machine's load (24 of 24 ungrouped in one loaded
    # CI run), so grouping is shown deterministically in-process above
    # (test_engine_durability_groups_concurrent_stores_into_shared_flushes); here: every call
    # waited for a flush, and the acknowledged ids survive the SIGKILL
    path = str(tmp_path / "bank")
    actor = ray.remote(BankActor).options(max_concurrency=8, max_restarts=0).remote(
        {"path": path, "durability": "engine"}, dim=DIM)
    pid = ray.get(actor.ping.remote())
    acked = []
    for r in range(3):   # 8 concurrent writers per round, like 8 agents storing their batches
        refs = [actor.store_batch.remote(_records(128, f"a{k}-r{r}", seed=10 * r + k)) for k in range(8)]
        for ids in ray.get(refs):
            acked += ids
    st = ray.get(actor.stats.remote())
    assert st["durable"] and st["commits"]["waits"] == 24
    assert 1 <= st["commits"]["flushes"] <= 24 and st["commits"]["durable"] == st["commits"]["writes"]
    os.kill(pid, signal.SIGKILL)            # right after the acknowledgements
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            break
    with ReasoningBank(path=path) as bank:
        assert len(acked) == 24 * 128 and all(bank.get(i) is not None for i in acked)
        assert bank.recovery["problems"] == []


@pytest.mark.ray
def test_swarm_checkpoint_snapshots_the_bank_and_restore_gives_it_back(ray_session, tmp_path):
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmSONA

    ex = SimulatedExecutor(seed=3)
    with SwarmSONA(agents=[{"id": "agent-0", "type": "worker"}], executor=ex, sync_every=10**6, batch_size=50,
                   checkpoint_dir=str(tmp_path / "live")) as sw:
        d = ray.get(sw.bank.stats.remote())["dim"]
        first = ray.get(sw.bank.store_batch.remote(_records(40, "before", dim=d, seed=1)))
        n_saved = ray.get(sw.bank.count.remote())
        sw.checkpoint(tmp_path / "ckpt")
        assert (tmp_path / "ckpt" / "bank.snapshot").exists()
        later = ray.get(sw.bank.store_batch.remote(_records(30, "after", dim=d, seed=2)))
        assert ray.get(sw.bank.count.remote()) == n_saved + 30
        sw.restore(tmp_path / "ckpt")
        assert ray.get(sw.bank.count.remote()) == n_saved
        assert all(sw.bank_has(first)) and not any(sw.bank_has(later))
