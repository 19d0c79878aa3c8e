"""Actors restore from the schema-1 swarm checkpoint in tests/data/schema1 and go on merging.

That checkpoint was written before the router-evidence change (its router state is
``router/weights``); the coordinator and agent-meta migrations (runtime.actors.schema) upgrade
it on read, so a swarm checkpointed by 0.1.0 restarts, learns and merges (in-process, no Ray).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from swarm_sona.consensus.messages import decode_merged
from swarm_sona.core import codec
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.coordinator import CoordinatorActor
from swarm_sona.runtime.config import SwarmConfig

SCHEMA1 = Path(__file__).parents[1] / "data" / "schema1" / "swarm"


def test_a_schema1_swarm_checkpoint_restores_and_merges_new_pushes(tmp_path):
    ckpt = tmp_path / "swarm"
    shutil.copytree(SCHEMA1, ckpt)
    man = codec.read_checkpoint(ckpt / "swarm.msgpack", kind="swarm")
    cfg = SwarmConfig.from_dict(man["config"])
    ex = SimulatedExecutor(seed=0)
    sona = cfg.sona.replace(llm_router=cfg.sona.llm_router.from_dict(
        {**cfg.sona.llm_router.to_dict(), "models": ex.model_specs()}))
    coord = CoordinatorActor("coordinator", rule=cfg.merge_rule, checkpoint_dir=str(ckpt),
                             ewc=sona.ewc.to_dict(), consolidate_ewc=cfg.ewc_consolidate)
    assert coord.restored_from and coord.version == 4
    agents = [AgentActor(a, sona.to_dict(), ex, parent=coord, checkpoint_dir=str(ckpt), seed=cfg.seed)
              for a in ("agent-0", "agent-1")]
    assert all(a.restored_from and a.tasks_done == 150 for a in agents)
    calls_before = decode_merged(coord.latest())["params"]["router/calls"].sum()
    tasks = ex.tasks(100, seed=7)
    for i, a in enumerate(agents):
        a.run_batch(tasks[i * 50:(i + 1) * 50])
        a.push()
    merged = decode_merged(coord.merge())
    assert merged["version"] == 5
    p = merged["params"]
    assert "router/weights" not in p and np.isfinite(p["router/eta"]).all()
    # schema 1 never pooled the counters (they migrate as zeros), so the first merge after the
    # upgrade pools every decision the two agents ever made: 2 x 150 before the checkpoint + 100 now
    assert calls_before == 0 and p["router/calls"].sum() == 300 + 100
