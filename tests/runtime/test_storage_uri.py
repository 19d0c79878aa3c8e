"""Actors checkpointing to a storage URI (``memory://``, in-process, no Ray): a coordinator and an
agent write their state to the URI, are killed (dropped: no flush, no shutdown) and rebuilt from
the same URI on "another node" (new objects, nothing carried over but the URI), with their state
intact and no acknowledged push lost. The push log at a URI is one object per acknowledged push,
deleted once a merge's checkpoint covers it."""


import numpy as np
import pytest

from swarm_sona.consensus.messages import decode_merged, encode_delta
from swarm_sona.consensus.state import state_distance
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core import storage
from swarm_sona.engine.config import SONAConfig
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.agent_consensus import ConsensusLedger
from swarm_sona.runtime.actors.agent_state import AgentFiles
from swarm_sona.runtime.actors.coordinator import CoordinatorActor

EX = SimulatedExecutor(seed=0)
CFG = SONAConfig.from_dict({"dim": 32, "mlp_hidden": 16, "llm_router": {"models": EX.model_specs()},
                            "lora": {"shared_a_seed": 0}, "background_every": 10**6})
TASKS = EX.tasks(400, seed=1)

def _params_equal(a, b):
    return state_distance(a, b) < 1e-9


def _acked_run(coord_dir, crash_after):
    """3 agents (no checkpoints of their own) push to a coordinator at ``coord_dir``; with
    ``crash_after`` the coordinator is killed after that many acknowledged pushes and rebuilt
    from ``coord_dir``, then merges."""
    coord = CoordinatorActor("c", rule="fedavg", checkpoint_dir=coord_dir)
    agents = [AgentActor(f"a{i}", CFG, EX, parent=coord, seed=i) for i in range(3)]
    acked = []
    for i, a in enumerate(agents):
        a.run_batch(TASKS[40 * i:40 * i + 40])
        ack = a.push()
        assert ack["accepted"] and ack["durable"]
        acked.append((a.id, ack["seq"]))
        if crash_after is not None and i + 1 == crash_after:
            del coord                                          # kill -9: nothing more runs in it
            coord = CoordinatorActor("c", rule="fedavg", checkpoint_dir=coord_dir)   # another node
            assert coord.replayed == crash_after and coord.restored_from
            for b in agents:
                b.parent = coord
    frame = coord.merge()
    return coord, decode_merged(frame), acked


@pytest.mark.parametrize("crash_after", [1, 2, 3])
def test_coordinator_at_a_uri_killed_between_ack_and_merge_loses_no_acknowledged_push(tmp_path, memory_uri, crash_after):
    _, ref, _ = _acked_run(str(tmp_path), None)                # the same pushes, local, no crash
    coord, merged, acked = _acked_run(memory_uri, crash_after)
    seqs = merged["extra"]["seqs"]
    assert [(a, s) for a, s in acked if seqs.get(a, -1) < s] == []      # every acknowledged push merged
    assert _params_equal(merged["params"], ref["params"]) and merged["version"] == ref["version"] == 1
    assert coord.wal_objects is not None and coord.wal_objects.names() == []   # covered: deleted
    loc = storage.ObjectCheckpoint(coord.ckpt)
    assert len(loc.objects()) == 2                             # garbage collection keeps two


def test_push_objects_are_one_per_acknowledged_push_and_deleted_after_the_merge(memory_uri):
    coord = CoordinatorActor("c", checkpoint_dir=memory_uri)
    agents = [AgentActor(f"a{i}", CFG, EX, parent=coord, seed=i) for i in range(2)]
    for a in agents:
        a.run_batch(TASKS[:40])
        assert a.push()["accepted"]
    assert len(coord.wal_objects.names()) == 2 and len(coord.wal_ms) == 2
    solo = CoordinatorActor("solo", checkpoint_dir=memory_uri)     # its own log beside c's
    frame = encode_delta(AgentUpdate("x", 1, {"B": np.ones(2, np.float32)}, metadata={"epoch": solo.epoch}))
    assert solo.submit(frame)["accepted"] and not solo.submit(frame)["accepted"]   # a retry: no new object
    assert len(solo.wal_objects.names()) == 1 and len(coord.wal_objects.names()) == 2
    coord.merge()
    assert coord.wal_objects.names() == []
    c2 = CoordinatorActor("c", checkpoint_dir=memory_uri)            # nothing to replay, state kept
    assert c2.replayed == 0 and c2.version == 1 and c2.epoch == coord.epoch


def test_unreadable_push_object_is_dropped_with_a_warning(memory_uri):
    coord = CoordinatorActor("c", checkpoint_dir=memory_uri)
    a = AgentActor("a0", CFG, EX, parent=coord, seed=0)
    a.run_batch(TASKS[:40])
    assert a.push()["accepted"]
    coord.wal_objects.put("999999999999-torn", b"SSNA\x00\x01")   # garbage: no acked push looks so
    c2 = CoordinatorActor("c", checkpoint_dir=memory_uri)
    assert c2.replayed == 1 and any("unreadable push object" in w for w in c2.drain_warnings())
    assert len(c2.wal_objects.names()) == 1


def test_agent_files_at_a_uri_round_trip_the_agents_state(memory_uri):
    coord = CoordinatorActor("c", checkpoint_dir=memory_uri)
    a = AgentActor("a0", CFG, EX, parent=coord, seed=0)
    a.run_batch(TASKS[:60])
    assert a.push()["accepted"]
    files = AgentFiles.for_agent(memory_uri, "a0")
    assert files.engine_path == f"{memory_uri}/a0/engine.ckpt"
    files.persist_seq(a.ledger)
    files.save(a.id, a.sona, a.counters, a.ledger)
    params, counters, seq = a.params(), a.counters, a.seq
    del a, files                                              # kill -9
    again = AgentFiles.for_agent(memory_uri, "a0")
    ledger = ConsensusLedger("a0")
    got = again.restore("a0", ledger, lambda: None)
    assert got is not None and got.warning is None and got.path.startswith(f"{memory_uri}/a0/meta.msgpack.objects/")
    assert got.counters == counters and ledger.seq == seq == 1 and ledger.coord_epoch == coord.epoch
    b = AgentActor("a0", CFG, EX, seed=0)
    b.sona = got.sona
    assert _params_equal(b.params(), params)


def test_agent_files_at_a_uri_fall_back_to_the_previous_checkpoint(memory_uri):
    a = AgentActor("a0", CFG, EX, seed=0)
    files = AgentFiles.for_agent(memory_uri, "a0")
    a.run_batch(TASKS[:40])
    files.save(a.id, a.sona, a.counters, a.ledger)
    first = a.counters.tasks_done
    a.run_batch(TASKS[40:80])
    files.save(a.id, a.sona, a.counters, a.ledger)
    meta = storage.ObjectCheckpoint(files.meta_path)
    ptr = meta._pointer()
    meta.fs.pipe_file(meta._obj_path(ptr.current), b"torn")   # the newest meta object is garbage
    got = AgentFiles.for_agent(memory_uri, "a0").restore("a0", ConsensusLedger("a0"), lambda: None)
    assert got is not None and got.counters.tasks_done == first and "unusable" in got.warning


def test_agent_meta_write_failure_rolls_the_engine_back_at_a_uri(memory_uri, monkeypatch):
    a = AgentActor("a0", CFG, EX, seed=0)
    files = AgentFiles.for_agent(memory_uri, "a0")
    a.run_batch(TASKS[:40])
    files.save(a.id, a.sona, a.counters, a.ledger)
    before = storage.ObjectCheckpoint(files.engine_path).versions()[0].read()
    a.run_batch(TASKS[40:80])

    def full(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AgentFiles, "_write_meta", full)
    with pytest.raises(OSError):
        files.save(a.id, a.sona, a.counters, a.ledger)
    assert storage.ObjectCheckpoint(files.engine_path).versions()[0].read() == before


def test_agent_and_coordinator_killed_and_rebuilt_from_the_same_uri(memory_uri):
    coord = CoordinatorActor("c", checkpoint_dir=memory_uri)
    agents = [AgentActor(f"a{i}", CFG, EX, parent=coord, checkpoint_dir=memory_uri, checkpoint_every=10**6, seed=i)
              for i in range(2)]
    for a in agents:
        a.run_batch(TASKS[:40])
        assert a.push()["accepted"]
    coord.merge()
    for a in agents:
        a.install(coord.latest())
        a.run_batch(TASKS[40:80])
        a.checkpoint()
    acked = [(a.id, a.push()["seq"]) for a in agents]          # acknowledged, not merged yet
    before = {a.id: (a.params(), a.tasks_done, a.seq) for a in agents}
    epoch = coord.epoch
    del coord, agents, a                                      # both killed
    coord = CoordinatorActor("c", checkpoint_dir=memory_uri)         # rebuilt on "another node"
    assert coord.epoch == epoch and coord.version == 1 and coord.replayed == 2
    agents = [AgentActor(f"a{i}", CFG, EX, parent=coord, checkpoint_dir=memory_uri, checkpoint_every=10**6, seed=i)
              for i in range(2)]
    for a in agents:
        params, tasks, seq = before[a.id]
        assert a.restored_from and a.restored_from.startswith(f"{memory_uri}/{a.id}/meta.msgpack")
        assert a.tasks_done == tasks and a.seq == seq
        assert _params_equal(a.params(), params)
    seqs = decode_merged(coord.merge())["extra"]["seqs"]
    assert all(seqs[a] >= s for a, s in acked)                 # no acknowledged push lost
    assert coord.wal_objects.names() == []                    # covered by the merge's checkpoint
