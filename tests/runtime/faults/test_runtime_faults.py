"""Crashes of the swarm runtime's actors, in-process (deterministic timing): a coordinator killed
between acknowledging pushes and merging them, an agent killed mid-push, torn push logs, a
coordinator that lost all its state. Each asserts that no acknowledged push is lost and that the
agents keep their own learning, against the same run without the crash.

"kill -9" in-process: the actor object is dropped without any shutdown (no flush, no checkpoint)
and a new one is built on the same checkpoint directory, which is what a Ray restart does. Seeds
are printed; ``SWARM_FAULT_REPS`` sets the repetitions (default 20, the issue's count: the
in-process crashes take about 0.3 s each).
"""

import os
import random

import numpy as np
import pytest

from swarm_sona.consensus.messages import decode_merged
from swarm_sona.consensus.state import state_distance
from swarm_sona.engine.config import SONAConfig
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.coordinator import CoordinatorActor

REPS = int(os.environ.get("SWARM_FAULT_REPS", "20"))
EX = SimulatedExecutor(seed=0)
CFG = SONAConfig.from_dict({"dim": 32, "mlp_hidden": 16, "llm_router": {"models": EX.model_specs()},
                            "lora": {"shared_a_seed": 0}, "background_every": 10**6})
TASKS = EX.tasks(600, seed=1)


def _crash(c):
    """kill -9 of an in-process actor: nothing more runs in it (the log fd is all we release)."""
    if getattr(c, "_wal_fd", None) is not None:
        os.close(c._wal_fd)
        c._wal_fd = None


def _agents(d, n, coord):
    return [AgentActor(f"a{i}", CFG, EX, parent=coord, checkpoint_dir=str(d), checkpoint_every=10**6, seed=i)
            for i in range(n)]


def _scenario(d, seed, crash):
    """3 agents, 3 rounds of (batch, push, merge, install); with ``crash`` the coordinator is
    killed in a random round after a random number of acknowledged pushes and restarted."""
    rng = random.Random(seed)
    n, rounds = 3, 3
    crash_round, crash_after = rng.randrange(rounds), rng.randrange(1, n + 1)
    coord = CoordinatorActor("c", rule="fedavg", checkpoint_dir=str(d))
    agents = _agents(d, n, coord)
    acked = []
    k = 0
    for r in range(rounds):
        for i, a in enumerate(agents):
            a.run_batch(TASKS[k:k + 40])
            k += 40
            ack = a.push()
            assert ack["accepted"] and ack["durable"]
            acked.append((a.id, ack["seq"]))
            if crash and r == crash_round and i + 1 == crash_after:
                _crash(coord)
                coord = CoordinatorActor("c", rule="fedavg", checkpoint_dir=str(d))   # the restart
                assert coord.replayed == crash_after and coord.restored_from
                for b in agents:
                    b.parent = coord
        frame = coord.merge()
        for a in agents:
            a.install(frame)
    seqs = decode_merged(coord.latest())["extra"]["seqs"]
    return {a.id: a.params() for a in agents}, decode_merged(coord.latest())["params"], seqs, acked


@pytest.mark.parametrize("rep", range(REPS))
def test_coordinator_killed_between_ack_and_merge_loses_no_acknowledged_push(tmp_path, rep, fault_case):
    fault_case.fault = "kill -9 coordinator between ack and merge (in-process)"
    seed = 1000 + rep
    print(f"seed={seed}")
    ref_agents, ref_merged, _, _ = _scenario(tmp_path / "ref", seed, crash=False)
    agents, merged, seqs, acked = _scenario(tmp_path / "crash", seed, crash=True)
    lost = [(a, s) for a, s in acked if seqs.get(a, -1) < s]
    fault_case.acknowledged, fault_case.lost = len(acked), len(lost)
    fault_case.found = len(acked) - len(lost)
    assert lost == []                                          # every acknowledged push is merged
    assert state_distance(merged, ref_merged) < 1e-6
    for a in agents:                                          # each agent's own learning kept
        assert state_distance(agents[a], ref_agents[a]) < 1e-6, a


def test_without_the_push_log_the_crash_loses_acknowledged_pushes(tmp_path, monkeypatch, fault_case):
    """Control: the same crash with the log switched off loses what was acknowledged."""
    fault_case.fault = "coordinator kill -9 without the push log"
    fault_case.control = True
    monkeypatch.setattr(CoordinatorActor, "_append_wal", lambda self, frame: None)
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    agents = _agents(tmp_path, 2, coord)
    for a in agents:
        a.run_batch(TASKS[:40])
        assert a.push()["accepted"]
    _crash(coord)
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    assert coord.replayed == 0 and coord.merge() is None      # nothing left to merge: both pushes lost
    fault_case.acknowledged, fault_case.found = 2, 0


@pytest.mark.parametrize("rep", range(REPS))
def test_agent_killed_mid_push_loses_no_acknowledged_push_and_reuses_no_seq(tmp_path, rep, fault_case):
    fault_case.fault = "kill -9 agent mid-push (in-process)"
    seed = 2000 + rep
    print(f"seed={seed}")
    rng = random.Random(seed)
    after_submit = rng.random() < 0.5   # killed before the push left, or after it was logged, before the ack
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    a0, a1 = _agents(tmp_path, 2, coord)
    for a in (a0, a1):
        a.run_batch(TASKS[:40])
        a.push()
    coord.merge()
    a0.checkpoint()                     # the checkpoint a restart will find (older than the next push)
    a0.run_batch(TASKS[40:40 + rng.randrange(10, 60)])

    class Dies:
        def submit(self, frame):
            if after_submit:
                coord.submit(frame)
            raise SystemExit("kill -9")

    a0.parent = Dies()
    with pytest.raises(SystemExit):
        a0.push()
    a0 = AgentActor("a0", CFG, EX, parent=coord, checkpoint_dir=str(tmp_path), seed=0)   # the restart
    assert a0.restored_from and a0.seq == 2       # seq 2 was persisted before it left: never reused
    a0.run_batch(TASKS[100:140])
    ack = a0.push()
    assert ack["accepted"] and ack["seq"] == 3
    a1.run_batch(TASKS[140:180])
    assert a1.push()["accepted"]
    frame = coord.merge()
    assert decode_merged(frame)["extra"]["seqs"] == {"a0": 3, "a1": 2}
    for a in (a0, a1):
        a.install(frame)
        assert a.ledger.unconfirmed == {}
    fault_case.acknowledged = fault_case.found = 5   # a0: 1, 3; a1: 1, 2 and the killed push's seq never reused


def test_an_ack_never_discards_the_agents_learning(tmp_path):
    """A merged version that does not hold the agent's latest (acknowledged) push leaves that
    push's learning on the agent: one agent, fedavg, so merge(S1) == S1."""
    coord = CoordinatorActor("c", consolidate_ewc=False, checkpoint_dir=str(tmp_path))
    (a,) = _agents(tmp_path, 1, coord)
    a.run_batch(TASKS[:40])
    a.push()
    m1 = coord.merge()                  # holds push 1
    a.run_batch(TASKS[40:80])
    assert a.push()["accepted"]         # push 2 acknowledged, not merged yet
    before = a.params()
    a.install(m1)                       # the older merge arrives after the ack
    assert state_distance(a.params(), before) < 1e-6     # (the old rule reset it to the pushed state)
    assert sorted(a.ledger.unconfirmed) == [2]
    a.install(coord.merge())            # the merge of push 2
    assert state_distance(a.params(), before) < 1e-6 and a.ledger.unconfirmed == {}


def test_torn_push_log_tail_is_cut_with_a_warning(tmp_path, fault_case):
    fault_case.fault = "torn push log tail"
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    (a,) = _agents(tmp_path, 1, coord)
    a.run_batch(TASKS[:40])
    assert a.push()["accepted"]
    _crash(coord)
    with open(coord.wal, "ab") as f:    # a second push torn mid-append by the crash (never acknowledged)
        f.write(coord.wal.read_bytes()[:50])
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    assert coord.replayed == 1 and any("torn" in w for w in coord.drain_warnings())
    assert decode_merged(coord.merge())["extra"]["seqs"] == {"a0": 1}
    assert coord.wal.stat().st_size == 0            # emptied once the merge's checkpoint is on disk
    fault_case.bad_inputs = fault_case.refused = 1
    fault_case.acknowledged = fault_case.found = 1


def test_push_log_cost_is_measured(tmp_path):
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    agents = _agents(tmp_path, 3, coord)
    for _ in range(4):
        for a in agents:
            a.run_batch(TASKS[:20])
            a.push()
        coord.merge()
    st = coord.stats()
    size = len(agents[0].export_frame())
    print(f"push frame {size} B; wal append+fsync p50 {st['wal_ms_p50']:.3f} ms p99 {st['wal_ms_p99']:.3f} ms; "
          f"agent seq persist p50 {agents[0].stats()['push_persist_ms_p50']:.3f} ms")
    assert st["wal_appends"] == 12 and np.isfinite(st["wal_ms_p50"])


def _round(agents, coord, k):
    for i, a in enumerate(agents):
        a.run_batch(TASKS[k + 40 * i:k + 40 * (i + 1)])
        a.push()
    frame = coord.merge()
    return [a.install(frame) for a in agents]


def _loss_scenario(d, lose):
    coord = CoordinatorActor("c", consolidate_ewc=False, checkpoint_dir=str(d))
    agents = _agents(d, 2, coord)
    assert _round(agents, coord, 0) == [1, 1] and _round(agents, coord, 80) == [2, 2]
    old_epoch = coord.epoch
    if lose:   # both checkpoints and the log destroyed; Ray restarts the coordinator
        _crash(coord)
        for p in d.glob("c.coord.*"):
            p.unlink()
        coord = CoordinatorActor("c", consolidate_ewc=False, checkpoint_dir=str(d))
        assert coord.epoch != old_epoch and coord.version == 0 and coord.restored_from is None
        for a in agents:
            a.parent = coord
    versions = _round(agents, coord, 160)             # one sync
    return coord, agents, versions


def test_coordinator_that_lost_all_state_gets_consensus_back_within_one_sync(tmp_path, fault_case):
    fault_case.fault = "coordinator checkpoints and push log destroyed"
    ref_coord, ref_agents, ref_versions = _loss_scenario(tmp_path / "ref", lose=False)
    coord, agents, versions = _loss_scenario(tmp_path / "lost", lose=True)
    assert ref_versions == [3, 3] and versions == [1, 1]   # the new coordinator's version 1 is taken, not ignored
    p0, p1 = (a.params() for a in agents)
    assert state_distance(p0, p1) < 1e-5                   # consensus again, within the one sync
    merged = decode_merged(coord.latest())
    assert merged["extra"]["epoch"] == coord.epoch and all(a.coord_epoch == coord.epoch for a in agents)
    warns = [w for a in agents for w in a.warnings.recent()]
    assert len(warns) == 2 and all("epoch changed" in w for w in warns)
    assert [a.seq for a in agents] == [4, 4]              # the push refused for its epoch, then the re-push
    assert [w for a in ref_agents for w in a.warnings.recent()] == []
    # the same merged state as without the loss: adapters re-pushed, router evidence counted once
    ref = decode_merged(ref_coord.latest())["params"]
    assert state_distance(merged["params"], ref) < 1e-5 * max(1.0, sum(float(np.abs(v).sum()) for v in ref.values()))
    for a, b in zip(agents, ref_agents, strict=True):
        assert state_distance(a.params(), b.params()) < 1e-5 * max(1.0, sum(float(np.abs(v).sum()) for v in ref.values()))
    fault_case.acknowledged = fault_case.found = 2   # both agents' learning in the new coordinator's merge


def test_restore_from_prev_is_named_and_warned(tmp_path, fault_case):
    fault_case.fault = "corrupt newest checkpoint (coordinator, agent)"
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    agents = _agents(tmp_path, 1, coord)
    _round(agents, coord, 0)
    _round(agents, coord, 40)
    agents[0].checkpoint()
    agents[0].checkpoint()
    for p in (coord.ckpt, tmp_path / "a0" / "meta.msgpack"):
        data = bytearray(p.read_bytes())
        data[-3] ^= 0xFF
        p.write_bytes(bytes(data))
    c2 = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    assert c2.restored_from == str(coord.ckpt) + ".prev" and c2.version == 1
    assert any(".prev" in w and "checksum" in w for w in c2.drain_warnings())
    a2 = AgentActor("a0", CFG, EX, checkpoint_dir=str(tmp_path))
    assert a2.restored_from.endswith("meta.msgpack.prev") and any(".prev" in w for w in a2.warnings.recent())
    fault_case.bad_inputs = fault_case.refused = 2
    fault_case.acknowledged = fault_case.found = 2   # the .prev checkpoints


def test_newer_schema_checkpoint_is_refused_not_started_fresh(tmp_path, fault_case):
    fault_case.fault = "checkpoint of a newer schema"
    from swarm_sona.core import codec
    from swarm_sona.core.codec import CheckpointSchemaError

    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    (a,) = _agents(tmp_path, 1, coord)
    a.checkpoint()
    for p, kind in ((coord.ckpt, "coordinator"), (tmp_path / "a0" / "meta.msgpack", "agent-meta")):
        p.write_bytes(codec.pack_frame(kind, {"from": "the future"}, version=99))
    with pytest.raises(CheckpointSchemaError, match="coordinator c: refusing to start.*newer"):
        CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    with pytest.raises(CheckpointSchemaError, match="agent a0: refusing to start.*newer"):
        AgentActor("a0", CFG, EX, checkpoint_dir=str(tmp_path))
    fault_case.bad_inputs = fault_case.refused = 2


def test_memory_stays_bounded_over_many_syncs(tmp_path):
    from swarm_sona.runtime.tally import AckedPatterns

    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    a, b = _agents(tmp_path, 2, coord)
    for r in range(60):                             # 60 syncs; every 3rd merge finds nothing pending
        for ag in (a, b):
            ag.run_batch(TASKS[(r % 10) * 20:(r % 10) * 20 + 10], merged=[coord.merge(), None])
            if r % 3:
                ag.push()
        assert len(a.ledger.pending_merged) == 0        # merges that returned None are dropped, not kept
        wal = coord.wal.stat().st_size if coord.wal.exists() else 0
        assert wal < 4 * len(a.export_frame())   # the log is emptied at every merge
    assert len(coord.merge_ms) <= 1000 and len(coord.book.history) <= 100
    for _ in range(40):                             # a coordinator that never merges: the unconfirmed are capped
        a.push()
    assert len(a.ledger.unconfirmed) == 16 and len(a.push_persist_ms) <= 1000 and len(coord.wal_ms) <= 1000
    acked = AckedPatterns(keep=100, seed=1)
    for i in range(1000):
        acked.extend(f"p{i}-{j}" for j in range(100))
    assert acked.count == 100_000 and len(acked) == 100 and len(set(acked)) == 100
    assert sum(int(x.split("-")[0][1:]) >= 500 for x in acked) in range(30, 71)   # a uniform sample
    with pytest.raises(ValueError, match="keep"):
        AckedPatterns(keep=0)


def test_a_bad_task_fails_alone_with_its_reason_and_kind(tmp_path, fault_case):
    fault_case.fault = "bad task in a batch (surrogate text, executor raising)"
    from swarm_sona.core.executor import Task
    from swarm_sona.runtime.actors.bank import BankActor

    class Flaky:
        def __call__(self, task, model, patterns):
            if task.id == "boom":
                raise RuntimeError("executor down for this task")
            return EX(task, model, patterns)

    bank = BankActor({"persist_to_disk": False}, dim=32)
    a = AgentActor("a", CFG, Flaky(), store=bank, engine_batch=8)
    tasks = EX.tasks(30, seed=3)
    tasks[4] = Task(text="a lone surrogate \ud800 here", id="surrogate")
    tasks[17] = Task(text=tasks[17].text, id="boom")
    out = a.run_batch(tasks)
    by_id = {r["task_id"]: r for r in out["results"]}
    assert len(by_id) == 30 and set(by_id) == {t.id for t in tasks}
    assert by_id["surrogate"]["error_kind"] == "embed" and "surrogates not allowed" in by_id["surrogate"]["error"]
    assert by_id["boom"]["error_kind"] == "execute" and "executor down" in by_id["boom"]["error"]
    good = [r for r in out["results"] if "error" not in r]
    assert len(good) == 28 and a.tasks_done == 30 and a.sona.stats() is not None
    assert a.stats()["error_kinds"] == {"embed": 1, "execute": 1}
    assert out["acked"] and all(bank.has(out["acked"]))
    fault_case.bad_inputs = fault_case.refused = 2
    fault_case.acknowledged = fault_case.found = len(out["acked"])


def test_hierarchy_root_merges_list_the_workers_seqs_through_queens(tmp_path):
    root = CoordinatorActor("root", consolidate_ewc=False, checkpoint_dir=str(tmp_path))
    queen = CoordinatorActor("q", consolidate_ewc=False, parent=root, checkpoint_dir=str(tmp_path))
    w0 = AgentActor("w0", CFG, EX, parent=root, checkpoint_dir=str(tmp_path), seed=0)
    w1 = AgentActor("w1", CFG, EX, parent=queen, checkpoint_dir=str(tmp_path), seed=1)
    for r in range(2):
        for i, w in enumerate((w0, w1)):
            w.run_batch(TASKS[80 * r + 40 * i:80 * r + 40 * (i + 1)])
            w.push()
        queen.merge()
        frame = root.merge()
        assert decode_merged(frame)["extra"]["seqs"] == {"w0": r + 1, "w1": r + 1, "q": r + 1}
        w0.install(frame)
        w1.install(frame)   # the root's epoch is not the queen's: no epoch change, no warning
        assert w0.ledger.unconfirmed == {} and w1.ledger.unconfirmed == {} and w1.warnings.recent() == []
        assert state_distance(w0.params(), w1.params()) < 1e-4
