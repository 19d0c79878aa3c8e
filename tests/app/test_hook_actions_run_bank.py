"""Built-in hook actions against the run's own bank, on Ray: what one agent's ``store`` action
writes, another agent's ``retrieve`` action finds in the same run (through the swarm's bank
actor), and it is in the run's bank afterwards; with ``bank: PATH`` it is not."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import pytest
from ray import cloudpickle

from swarm_sona.app.agent_defs import AgentDef, HookedExecutor
from swarm_sona.app.report import bank_count
from swarm_sona.bank import ReasoningBank
from swarm_sona.bank.errors import BankLockedError
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.swarm import SwarmSONA

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the executors below go to the agent actors

MARK = "zebra-lattice-7f3c"   # only the writer's outputs carry it
TEXT = "summarise the quarterly zebra report"


class Writer:
    """The writer agent's work: an output carrying MARK, reward 0.6 (below the swarm's storeMinReward,
    so the pipeline stores nothing: what the bank holds came from the store action)."""

    def __call__(self, task: Task, model: str, patterns: Sequence[dict[str, Any]]) -> Outcome:
        return Outcome(f"{MARK}: {task.text}", 0.6, True)


class Reader:
    """The reader agent's work: success when its retrieve action brought a pattern carrying MARK."""

    def __call__(self, task: Task, model: str, patterns: Sequence[dict[str, Any]]) -> Outcome:
        found = [p for p in task.metadata.get("hook_patterns", []) if MARK in str(p.get("output"))]
        return Outcome(f"saw {len(found)} pattern(s)", 0.3, bool(found))


def _swarm(store_hook: dict[str, Any], tmp_path) -> SwarmSONA:
    writer = AgentDef.from_dict({"id": "writer-1", "type": "coder", "hooks": {"store": store_hook}})
    reader = AgentDef.from_dict({"id": "reader-1", "type": "reviewer", "hooks": {"retrieve": {"k": 3}}})
    return SwarmSONA({"topology": "star", "agents": [writer.to_swarm_agent(), reader.to_swarm_agent()],
                      "consensusLearning": False, "storeMinReward": 0.99, "batchSize": 8,
                      "checkpointDir": str(tmp_path / "ckpt")},
                     executor=SimulatedExecutor(seed=0), bank=str(tmp_path / "run-bank"),
                     agent_executors={"writer-1": HookedExecutor(Writer(), writer),
                                      "reader-1": HookedExecutor(Reader(), reader)})


def _run(swarm: SwarmSONA, n: int) -> list[dict[str, Any]]:
    return list(swarm.run([Task(TEXT, task_type="report") for _ in range(n)], progress=False))


def test_a_store_action_writes_the_runs_bank_and_another_agents_retrieve_action_finds_it(tmp_path):
    with _swarm({}, tmp_path) as swarm:                  # store: {} = bank: run
        first = _run(swarm, 48)
        assert {r["agent_id"] for r in first} == {"writer-1", "reader-1"}
        assert not [r for r in first if r.get("hook_errors")], first
        second = _run(swarm, 48)                        # the writer's patterns are in the bank by now
        reads = [r for r in second if r["agent_id"] == "reader-1"]
        assert reads and all(r["success"] for r in reads), reads
        after = swarm.retrieve_patterns(TEXT, k=5)      # the run's bank, read by the driver
    assert [p["agent_id"] for p in after if MARK in p["output"]] == ["writer-1"]   # one pattern (same content)


def test_with_a_bank_directory_the_store_action_does_not_write_the_runs_bank(tmp_path):
    own = tmp_path / "writer-notes"
    with _swarm({"bank": str(own)}, tmp_path) as swarm:
        _run(swarm, 48)
        second = _run(swarm, 48)
        reads = [r for r in second if r["agent_id"] == "reader-1"]
        assert reads and not any(r["success"] for r in reads)
        assert not [r for r in second if r.get("hook_errors")]
        assert not [p for p in swarm.retrieve_patterns(TEXT, k=5) if MARK in p["output"]]
    # the swarm's shutdown closed the writer's executor: its bank recorded what it holds (without the
    # close, the manifest waits for the log's idle checkpoint, which a stopped actor may never reach)
    assert bank_count(own) == 1
    deadline = time.monotonic() + 20
    while True:   # the writer's actor holds the directory until its process has exited
        try:
            notes = ReasoningBank({"backend": "edge", "path": str(own)})
            break
        except BankLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with notes:   # the directory has them
        assert [p.output for p in notes.retrieve_patterns(TEXT, 1)] == [f"{MARK}: {TEXT}"]
