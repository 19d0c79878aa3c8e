"""The agent actor's parts in-process, without Ray: the consensus ledger (acks, the bound on
unconfirmed pushes, epochs, the install rule), the executor shards (copies, slices, failures),
the checkpoint files, and SwarmConfig.from_spec (SwarmSONA's keywords)."""

import numpy as np
import pytest

from swarm_sona.consensus.messages import encode_delta
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core.config import ConfigError
from swarm_sona.runtime.actors.agent_consensus import MAX_UNCONFIRMED, ConsensusLedger, gossip_mix
from swarm_sona.runtime.actors.agent_state import AgentFiles
from swarm_sona.runtime.actors.executor_shards import ExecutorShards
from swarm_sona.runtime.config import SwarmConfig


def state(x):
    return {"w": np.full(3, float(x))}


def test_acks_keep_pushes_until_merged_and_ignored_pushes_do_not_count():
    led = ConsensusLedger("a")
    for s in range(1, MAX_UNCONFIRMED + 5):
        led.seq = s
        assert led.record_ack({"accepted": True, "seq": s, "epoch": "e1"}, state(s))
    assert len(led.unconfirmed) == MAX_UNCONFIRMED and min(led.unconfirmed) == 5   # the oldest dropped
    assert led.coord_epoch == "e1"
    assert not led.record_ack({"accepted": False, "reason": "duplicate"}, state(0))  # not counted


def test_install_shifts_by_the_agents_own_push_and_moves_later_pushes():
    led = ConsensusLedger("a")
    for s, x in ((1, 1.0), (2, 2.0)):
        led.seq = s
        led.record_ack({"accepted": True, "seq": s}, state(x))
    msg = {"version": 1, "params": state(10.0), "extra": {"seqs": {"a": 1}}}
    plan = led.plan_install(msg, state(2.5), prior=lambda: state(0))
    np.testing.assert_allclose(plan.state["w"], 11.5)             # merged 10 + (2.5 - pushed 1)
    led.commit(plan)
    assert sorted(led.unconfirmed) == [2] and led.included_seq == 1
    np.testing.assert_allclose(led.unconfirmed[2]["w"], 11.0)     # push 2 moved by the same shift (+9)
    assert led.plan_install(msg, state(2.5), prior=lambda: state(0)) is None   # not newer: nothing to do


def test_an_epoch_change_is_warned_and_restarts_the_versions():
    led = ConsensusLedger("a")
    led.merged_epoch, led.installed_version = "old", 5
    plan = led.plan_install({"version": 1, "params": state(1), "extra": {"epoch": "new", "seqs": {}}},
                            state(0), prior=lambda: state(0))
    assert plan is not None and led.merged_epoch == "new"          # version 1 < 5 accepted: a new epoch
    assert any("epoch changed old -> new" in w for w in led.warnings.recent())
    led.unconfirmed = {3: state(1)}
    led.new_epoch("e2")
    assert led.unconfirmed == {} and led.installed_version == 0 and led.coord_epoch == "e2"
    with pytest.raises(ValueError, match="names differ"):
        led.plan_install({"version": 9, "params": {"v": np.ones(1)}, "extra": {}}, state(0), prior=dict)


def test_gossip_mix_averages_by_weight_or_merges_by_rule():
    frames = [encode_delta(AgentUpdate(f"a{i}", 1, state(x), weight=1.0)) for i, x in enumerate((1.0, 3.0, 8.0))]
    np.testing.assert_allclose(gossip_mix(None, frames)["w"], 4.0)
    np.testing.assert_allclose(gossip_mix([0.5, 0.5, 0.0], frames)["w"], 2.0)
    np.testing.assert_allclose(gossip_mix(None, frames, "median")["w"], 3.0)


class Many:
    def __init__(self, cap=None, fail_on=None):
        if cap is not None:
            self.max_concurrency = cap
        self.fail_on, self.calls = fail_on, []

    def __call__(self, task, model, patterns):
        return model

    def run_many(self, tasks, models, patterns):
        self.calls.append(len(tasks))
        if self.fail_on in tasks:
            raise RuntimeError("endpoint down")
        return list(models)


def test_shards_copy_a_capped_executor_and_slice_an_uncapped_one():
    capped = ExecutorShards(Many(cap=40), max_concurrency=20, pool_size=8)
    assert [ex.max_concurrency for ex in capped.copies] == [7, 7, 6]
    assert capped.run(list("abcdefg"), list("ABCDEFG"), [[]] * 7) == list("ABCDEFG")   # input order kept
    ex = Many()
    sliced = ExecutorShards(ex, max_concurrency=3)
    assert sliced.copies == [ex] and sliced.run(list("abcdefg"), list("ABCDEFG"), [[]] * 7) == list("ABCDEFG")
    assert ex.calls == [3, 3, 1]
    whole = ExecutorShards(Many())
    whole.run(list("abcdefg"), list("ABCDEFG"), [[]] * 7)
    assert whole.executor.calls == [7]                               # no share: one call


class Closing(Many):
    def __init__(self, fail=False, **kw):
        super().__init__(**kw)
        self.fail, self.closed = fail, 0

    def close(self):
        self.closed += 1
        if self.fail:
            raise OSError("pool already gone")


def test_close_closes_every_copy_and_reports_each_failure():
    sh = ExecutorShards(Closing(cap=40), max_concurrency=20, pool_size=8)
    sh.run(list("abcdefg"), list("ABCDEFG"), [[]] * 7)        # starts the I/O threads
    assert sh.close() == [] and [c.closed for c in sh.copies] == [1, 1, 1] and sh._threads is None
    bad = ExecutorShards(Closing(fail=True))
    assert bad.close() == ["OSError: pool already gone"] and bad.executor.closed == 1
    assert ExecutorShards(Many()).close() == []                  # no close(): nothing to do


def test_a_failing_slice_gives_its_exception_to_each_of_its_tasks():
    sh = ExecutorShards(Many(fail_on="e"), max_concurrency=3)
    out = sh.run(list("abcdefg"), list("ABCDEFG"), [[]] * 7)
    assert out[:3] == ["A", "B", "C"] and all(isinstance(o, RuntimeError) for o in out[3:6]) and out[6] == "G"
    assert not ExecutorShards(lambda t, m, p: None).concurrent
    with pytest.raises(ValueError, match="pool_size"):
        ExecutorShards(Many(), pool_size=0)


def test_push_record_survives_and_a_corrupt_one_is_warned(tmp_path):
    files = AgentFiles(tmp_path)
    led = ConsensusLedger("a")
    led.seq, led.coord_epoch = 12, "e1"
    files.persist_seq(led)
    again = ConsensusLedger("a")
    files.restore_push_record(again)
    assert (again.seq, again.coord_epoch) == (12, "e1") and len(led.push_persist_ms) == 1
    for p in tmp_path.iterdir():
        p.write_bytes(b"garbage")
    third = ConsensusLedger("a")
    files.restore_push_record(third)
    assert third.seq == 0 and any("push record unusable" in w for w in third.warnings.recent())


def test_from_spec_layers_keywords_over_the_config():
    base = SwarmConfig.from_dict({"topology": "ring", "agents": [{"id": "x"}, {"id": "y"}]})
    cfg = SwarmConfig.from_spec(base, topology="mesh", seed=None)
    assert cfg.topology == "mesh" and [a.id for a in cfg.agents] == ["x", "y"]
    assert [a.id for a in SwarmConfig.from_spec(None).agents] == [f"agent-{i}" for i in range(4)]
    assert len(SwarmConfig.from_spec({"agents": 3}).workers) == 3
    with pytest.raises(ConfigError, match="at least 1 agent"):
        SwarmConfig.from_spec(None, agents=0)


def test_the_guides_swarm_execution_mapping_is_read_and_checked() -> None:
    from swarm_sona.runtime.feedback import parse_swarm_execution

    res = [{"agent_id": "a", "output": "x"}]
    assert parse_swarm_execution({"task": "t", "results": res, "consensus": "x"}, None) == ("t", res, "x")
    assert parse_swarm_execution({"task": "t", "results": res}, "y") == ("t", res, "y")
    for bad, match in [("t", "results are missing"), ({"task": "t"}, "results are missing"),
                       ({"task": "t", "results": res, "consensu": 1}, r"unknown key\(s\) \['consensu'\]"),
                       ({"results": res}, "needs a 'task'"), ({"task": "t", "results": "x"}, "list of mappings")]:
        with pytest.raises(ValueError, match=match):
            parse_swarm_execution(bad, None)
