"""The guide's options in the swarm path (issue 16), on Ray (one session for the module): the
bank's ``similarityThreshold`` (an agent's retrieval drops patterns below it), the configured
``embedder`` (the agents and the bank embed with it, not always the hashing embedder) and every
agent's ``loraRank`` (ranks may differ: equal ranks merge their adapters together, the router
and heads pool across all, a warning names the agents merged apart). Each test flips the option
and observes a different outcome."""

from __future__ import annotations

from typing import Any

import pytest

ray = pytest.importorskip("ray")

from swarm_sona.core.executor import Outcome, Task  # noqa: E402
from swarm_sona.runtime.swarm import SwarmSONA  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

STORED = "fix a failing test"
# cosine to STORED: hashing-v1-384 0.880 / 0.363; minilm 0.945 / 0.726
NEAR, PARAPHRASE = "fix a failing test now", "repair a broken unit test"
MODELS = [{"name": "m", "cost": 0.001, "costUnit": "call", "quality": 0.9}]


def always_ok(task: Task, model: str, patterns: list) -> Outcome:
    return Outcome("done", 1.0, True)


def retrieved(threshold: float, embedder: str = "hashing") -> dict[str, int]:
    """Patterns retrieved for NEAR and PARAPHRASE by an agent after STORED was stored."""
    sona = {"dim": 384, "mlp_hidden": 32, "reasoningBank": {"similarityThreshold": threshold, "embedder": embedder}}
    with SwarmSONA(agents=[{"id": "w1"}], executor=lambda t, m, p: always_ok(t, m, p), router=MODELS, sona=sona,
                   consensusLearning=False, retrieve_k=1, sync_every=10**6) as sw:
        list(sw.run([Task(STORED)]))
        out = list(sw.run([Task(NEAR, id="near"), Task(PARAPHRASE, id="para")], batch_size=2))
    return {r["task_id"]: r["patterns"] for r in out}


@pytest.fixture(scope="module")
def hashing_half() -> dict[str, int]:
    return retrieved(0.5)


def test_similarity_threshold_drops_patterns_below_it(hashing_half: dict[str, Any]) -> None:
    assert hashing_half == {"near": 1, "para": 0}          # 0.880 >= 0.5 > 0.363
    assert retrieved(0.95) == {"near": 0, "para": 0}       # 0.880 < 0.95


def test_the_configured_embedder_is_the_swarms(hashing_half: dict[str, Any]) -> None:
    pytest.importorskip("all_minilm_l6_v2")
    # the paraphrase is semantically close (minilm 0.726) but lexically far (hashing 0.363)
    assert retrieved(0.5, "minilm") == {"near": 1, "para": 1} != hashing_half


# ---- loraRank: ranks may differ; equal ranks merge their adapters, the heads and router pool ----
def _ranked_round(ranks: dict[str, int]) -> tuple[dict[str, dict], dict[str, dict], list[str]]:
    """Agents of ``ranks`` (Ray actors) run a batch and push; the coordinator merges; they install.
    Returns each agent's state before and after the install, and the coordinator's warnings."""
    from swarm_sona.engine.config import SONAConfig
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.actors.agent import AgentActor
    from swarm_sona.runtime.actors.coordinator import CoordinatorActor

    ex = SimulatedExecutor(seed=0)
    coord = ray.remote(CoordinatorActor).remote("c")
    agents = {a: ray.remote(AgentActor).remote(
        a, SONAConfig.from_dict({"dim": 32, "mlp_hidden": 16, "background_every": 20, "llm_router": {
            "models": ex.model_specs()}, "lora": {"rank": r, "shared_a_seed": 0}}), ex, parent=coord, seed=i)
        for i, (a, r) in enumerate(ranks.items())}
    tasks = ex.tasks(40 * len(agents), seed=1)
    outs = ray.get([h.run_batch.remote(tasks[i * 40:(i + 1) * 40], push=True) for i, h in enumerate(agents.values())])
    assert all(o["pushed"]["accepted"] for o in outs)
    before = dict(zip(agents, ray.get([h.params.remote() for h in agents.values()]), strict=True))
    frame = ray.get(coord.merge.remote())
    assert ray.get([h.install.remote(frame) for h in agents.values()]) == [1] * len(agents)
    after = dict(zip(agents, ray.get([h.params.remote() for h in agents.values()]), strict=True))
    warnings = ray.get(coord.drain_warnings.remote())
    for h in [*agents.values(), coord]:
        ray.kill(h)
    return before, after, warnings


def _part(state: dict, ranked: bool) -> dict:
    """The rank-dependent adapter factors (ranked) or everything else (heads, MicroLoRA, router)."""
    return {k: v for k, v in state.items()
            if (k.startswith("adapters/") and not k.startswith("adapters/micro/")) == ranked}


def _same(a: dict, b: dict) -> bool:
    import numpy as np

    return set(a) == set(b) and all(np.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_agents_of_different_lora_rank_merge_what_can_be_merged() -> None:
    before, after, warnings = _ranked_round({"w1": 4, "w2": 4, "w3": 8})
    assert {k: v.shape for k, v in _part(after["w3"], True).items() if k.endswith("/B")} != \
        {k: v.shape for k, v in _part(after["w1"], True).items() if k.endswith("/B")}     # ranks kept
    # rank 4 agents share their merged adapters; the rank-8 agent keeps its own (nothing to merge with)
    assert _same(_part(after["w1"], True), _part(after["w2"], True))
    assert not _same(_part(before["w1"], True), _part(after["w1"], True))
    assert _same(_part(after["w3"], True), _part(before["w3"], True))
    # heads, MicroLoRA and the router's evidence pool across all three
    assert _same(_part(after["w1"], False), _part(after["w3"], False))
    assert not _same(_part(before["w3"], False), _part(after["w3"], False))
    [w] = warnings
    assert "['w1', 'w2'] (adapters/q/A@4x32) apart from ['w3'] (adapters/q/A@8x32)" in w


def test_equal_ranks_merge_everything_and_warn_nothing() -> None:
    before, after, warnings = _ranked_round({"w1": 4, "w2": 4, "w3": 4})
    assert warnings == []
    assert _same(_part(after["w1"], True), _part(after["w3"], True))
    assert not _same(_part(before["w3"], True), _part(after["w3"], True))


def test_a_swarm_of_workers_of_different_rank_launches_syncs_and_says_so(caplog) -> None:
    """End to end: workers of rank 4 and 8 under consensus learning start (the spec no longer asks
    for one rank), sync, and the coordinator's warning naming who was merged apart reaches the
    driver's log."""
    import logging

    caplog.set_level(logging.WARNING)
    with SwarmSONA(agents=[{"id": "w1", "loraRank": 4}, {"id": "w2", "loraRank": 4}, {"id": "w3", "loraRank": 8}],
                   executor=lambda t, m, p: always_ok(t, m, p), router=MODELS,
                   sona={"dim": 64, "mlp_hidden": 16}, sync_every=8, batch_size=8) as sw:
        out = list(sw.run([Task(f"task {i}") for i in range(96)], progress=False))
        st = sw.stats()
    assert len(out) == 96 and all(r["success"] for r in out)
    assert st["coordinators"]["coordinator"]["merges"] >= 1
    said = [r.getMessage() for r in caplog.records if "not merged together" in r.getMessage()]
    assert said and "['w1', 'w2']" in said[0] and "['w3']" in said[0], said


def test_a_storage_uri_checkpoint_dir_is_where_restarted_actors_find_their_state(tmp_path, monkeypatch):
    """``checkpointDir`` as a URI (``file://`` here: what every process of this machine shares, as
    an ``s3://`` bucket is for a cluster): the agents and the coordinator write their checkpoints
    there as objects + pointers, a killed agent and a killed coordinator come back from them, no
    local directory named after the URI appears, and a whole-swarm ``checkpoint()`` says it
    needs a local directory."""
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmError

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "bucket"
    uri = f"file://{root}"
    ex = SimulatedExecutor(seed=8)
    with SwarmSONA(agents=[{"id": f"agent-{i}", "type": "worker"} for i in range(2)], executor=ex, sync_every=50,
                   batch_size=50, checkpoint_every=100, max_restarts=1, checkpointDir=uri) as sw:
        assert len(list(sw.run(ex.tasks(300, seed=9), progress=False))) == 300
        assert sw.sync(wait=True)["version"] >= 1
        sw.kill_agent("agent-0")
        sw.kill_coordinator()
        res = list(sw.run(ex.tasks(200, seed=10), progress=False))
        assert len(res) == 200 and not any("error" in r for r in res)
        st = sw.stats()
        assert st["agents"]["agent-0"]["restored_from"], st["agents"]["agent-0"]
        assert st["coordinators"]["coordinator"]["restored_from"]
        assert str(st["agents"]["agent-0"]["restored_from"]).startswith("file://")
        with pytest.raises(SwarmError, match="local checkpoint_dir"):
            sw.checkpoint(tmp_path / "copy")
    written = {p.relative_to(root).parts[0] for p in root.rglob("*") if p.is_file()}
    assert {"agent-0", "agent-1"} <= written and any("coord" in w for w in written), written
    assert not (tmp_path / "file:").exists()
