"""Actors in-process (no Ray): coordinator consensus, rejection of bad deltas, Byzantine
pushes, restarts from checkpoints; an agent's batch, push and install."""

import numpy as np
import pytest

from swarm_sona.consensus.messages import MessageError, decode_merged, encode_delta
from swarm_sona.consensus.state import state_distance
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core import codec
from swarm_sona.engine.config import SONAConfig
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.bank import BankActor
from swarm_sona.runtime.actors.coordinator import CoordinatorActor


def _push(c, agent, seq, params, weight=10):
    return c.submit(encode_delta(AgentUpdate(agent, seq, params, weight=weight)))


@pytest.mark.parametrize("attack", ["huge", "sign_flip"])
def test_coordinator_byzantine_one_of_five(tmp_path, attack):
    rng = np.random.default_rng(1)
    base = {"adapters/q/B": rng.normal(size=(32, 4)).astype(np.float32)}
    honest = [{k: (v + 0.05 * rng.normal(size=v.shape)).astype(np.float32) for k, v in base.items()} for _ in range(4)]
    mean = {k: np.mean([h[k] for h in honest], axis=0) for k in base}
    bad = {k: v * (1e4 if attack == "huge" else -10.0) for k, v in mean.items()}
    scale = np.linalg.norm(mean["adapters/q/B"])
    err = {}
    for rule in ("fedavg", "median", "trimmed_mean", "krum"):
        c = CoordinatorActor("c", rule=rule, consolidate_ewc=False, checkpoint_dir=str(tmp_path / rule))
        for i, h in enumerate(honest):
            _push(c, f"w{i}", 1, h)
        _push(c, "w9", 1, bad)
        err[rule] = state_distance(decode_merged(c.merge())["params"], mean) / scale
    assert max(err["median"], err["trimmed_mean"], err["krum"]) < 0.1, err
    assert err["fedavg"] > 1.0, err


def test_coordinator_rejects_bad_messages_and_dedupes(tmp_path):
    c = CoordinatorActor("c", rule="median", checkpoint_dir=str(tmp_path))
    _push(c, "w1", 1, {"B": np.ones(3, np.float32)})
    first = decode_merged(c.merge())
    good = encode_delta(AgentUpdate("w2", 1, {"B": np.zeros(3, np.float32)}))
    for bad in (good[:-2], codec.pack_frame("delta", {"agent_id": "w2"}, version=7), b"\x00" * 40,
                encode_delta(AgentUpdate("w2", 1, {"B": np.zeros(5, np.float32)}))):
        with pytest.raises(ValueError):
            c.submit(bad)
    assert c.stats()["rejected"] == 4 and c.stats()["pending"] == []
    assert c.merge() is None and c.version == first["version"]
    np.testing.assert_array_equal(decode_merged(c.latest())["params"]["B"], first["params"]["B"])
    assert c.submit(good)["accepted"] and not c.submit(good)["accepted"]  # a retried push counts once
    with pytest.raises(MessageError, match="schema version"):
        c.submit(codec.pack_frame("delta", {}, version=99))


def test_coordinator_restart_restores_version_and_dedup(tmp_path):
    c = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    _push(c, "w1", 3, {"B": np.full(2, 2.0, np.float32)})
    c.merge()
    c2 = CoordinatorActor("c", checkpoint_dir=str(tmp_path))  # what a Ray restart does
    assert c2.version == 1 and c2.restored_from
    assert not c2.submit(encode_delta(AgentUpdate("w1", 3, {"B": np.zeros(2, np.float32)})))["accepted"]
    np.testing.assert_array_equal(decode_merged(c2.latest())["params"]["B"], [2.0, 2.0])


def test_ewc_consolidation_holds_important_coordinates(tmp_path):
    c = CoordinatorActor("c", ewc={"lambda": 1000.0}, eta=0.01, checkpoint_dir=str(tmp_path))
    f = {"B": np.array([1.0, 0.0], np.float32)}
    c.submit(encode_delta(AgentUpdate("w", 1, {"B": np.zeros(2, np.float32)}, fisher=f)))
    c.merge()
    c.submit(encode_delta(AgentUpdate("w", 2, {"B": np.ones(2, np.float32)}, fisher=f)))
    out = decode_merged(c.merge())["params"]["B"]
    assert out[0] < 0.2 and out[1] == pytest.approx(1.0)  # high-Fisher coordinate stays near its anchor


def test_agent_batch_push_install_and_restore(tmp_path):
    ex = SimulatedExecutor(seed=0)
    cfg = SONAConfig.from_dict({"dim": 64, "mlp_hidden": 32, "llm_router": {"models": ex.model_specs()},
                                "lora": {"shared_a_seed": 0}, "background_every": 100})
    bank = BankActor({"persist_to_disk": False}, dim=64)
    coord = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    agents = [AgentActor(f"a{i}", cfg, ex, store=bank, parent=coord, checkpoint_dir=str(tmp_path),
                         checkpoint_every=50, seed=i) for i in range(2)]
    tasks = ex.tasks(200, seed=1)
    for i, a in enumerate(agents):
        out = a.run_batch(tasks[i * 100:(i + 1) * 100], push=True)
        assert len(out["results"]) == 100 and out["pushed"]["accepted"]
        assert out["acked"] and all(bank.has(out["acked"]))
    merged = coord.merge()
    assert [a.install(merged) for a in agents] == [1, 1]
    p0, p1 = agents[0].params(), agents[1].params()
    assert state_distance(p0, p1) < 1e-4 * max(1.0, np.sqrt(sum(np.sum(v.astype(float) ** 2) for v in p0.values())))
    agents[0].checkpoint()
    again = AgentActor("a0", cfg, ex, store=bank, parent=coord, checkpoint_dir=str(tmp_path))
    assert again.restored_from and again.installed_version == 1 and again.tasks_done == 100
    assert state_distance(again.params(), p0) < 1e-5


def test_agent_chunks_equal_per_task_processing_with_learning_applied_after_each_chunk():
    from swarm_sona.core.trajectory import Trajectory

    ex = SimulatedExecutor(seed=0)
    cfg = SONAConfig.from_dict({"dim": 64, "mlp_hidden": 32, "llm_router": {"models": ex.model_specs()},
                                "background_every": 30})   # a background cycle inside the second chunk
    tasks = ex.tasks(40, seed=2)
    agent = AgentActor("a", cfg, ex, engine_batch=16)
    out = agent.run_batch(tasks)
    # reference: the engine API one task at a time; each chunk's learning steps after its routing
    ref = AgentActor("a", cfg, ex, engine_batch=1)
    sona, models = ref.sona, []
    for chunk in (tasks[:16], tasks[16:32], tasks[32:]):
        E = sona.embedder.embed([t.text for t in chunk])
        decisions = [sona.route(t.text, embedding=e)["model"] for t, e in zip(chunk, E, strict=True)]
        outs = [ex(t, m, []) for t, m in zip(chunk, decisions, strict=True)]
        for t, e, m, o in zip(chunk, E, decisions, outs, strict=True):
            sona.learn(Trajectory(task=t.text, embedding=e, model=m, reward=o.reward, success=o.success,
                                  cost_usd=o.cost_usd, latency_s=o.latency_s, agent_id="a", task_type=t.task_type,
                                  output=o.output, id=t.id))
        models += decisions
    assert [r["model"] for r in out["results"]] == models
    assert state_distance(agent.params(), ref.params()) < 1e-4
    assert agent.sona.n_background == sona.n_background == 1 and agent.sona.router.stats() == sona.router.stats()
    st = agent.stats()
    assert st["stage_s"]["route"] > 0 and st["stage_s"]["learn"] > 0 and st["cpu_s"] > 0
    assert all(r["learn_s"] > 0 and r["batch_n"] == 40 for r in out["results"])
    # learn_s is the instant-loop step: the background cycle (timed by the engine) is reported apart
    assert out["background_s"] == [pytest.approx(agent.sona.last_background["duration_ms"] / 1e3)]
    assert st["stage_s"]["background"] == pytest.approx(sum(out["background_s"]))
    assert sum(r["learn_s"] for r in out["results"]) == pytest.approx(st["stage_s"]["learn"])
    assert agent.run_batch(tasks[:8])["background_s"] == []   # per batch: only the cycles it triggered
    with pytest.raises(ValueError, match="engine_batch"):
        AgentActor("b", cfg, ex, engine_batch=0)


def test_peers_by_name_pickle_without_a_handle_and_resolve_lazily():
    import pickle

    from swarm_sona.runtime.actors.calls import NamedActor, as_peer, call

    peer = NamedActor("swarm-sona-x-bank", namespace="ns")
    peer._handle = object()                          # a resolved handle is never pickled
    back = pickle.loads(pickle.dumps(peer))
    assert back == peer and back._handle is None and back.namespace == "ns"
    assert as_peer("swarm-sona-x-bank", "ns") == peer and as_peer(peer) is peer
    with pytest.raises(ValueError, match="non-empty string"):
        NamedActor("")
    bank = BankActor({"persist_to_disk": False}, dim=16)
    assert call(bank, "count") == 0                  # an in-process object is called directly
    ex = SimulatedExecutor(seed=0)
    cfg = SONAConfig.from_dict({"dim": 16, "mlp_hidden": 16, "llm_router": {"models": ex.model_specs()}})
    agent = AgentActor("a", cfg, ex, store="swarm-sona-x-bank", namespace="ns")   # a name: resolved on first use
    assert agent.store == peer and agent.parent is None
