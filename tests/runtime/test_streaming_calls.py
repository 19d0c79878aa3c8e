"""Streaming executors (``submit``): calls started one at a time from one queue shared by an
agent's copies, each result learned as its chunk is in, in input order (in process, no Ray).

The executor here answers from the RouteLLM slice (:class:`TableExecutor`) after a random delay
on a timer thread, so calls complete out of order.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.executors.replay import replay_tasks
from swarm_sona.executors.table import TableExecutor, load_routing_table
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.executor_shards import ExecutorShards, is_streaming

DATA = Path(__file__).parents[1] / "data" / "routellm_slice"
TABLE = load_routing_table(DATA)
TASKS = replay_tasks(TABLE)
SPECS = TableExecutor(TABLE).model_specs()


class Streamed:
    """A streaming executor over the table: each submitted call completes after ``delay(task)``
    seconds on a timer thread; counts what is outstanding."""

    def __init__(self, cap: int = 8, seed: int = 0, max_delay_s: float = 0.004, fail_id: str | None = None,
                 gate: Any = None) -> None:
        self.max_concurrency = cap
        self.table = TableExecutor(TABLE)
        self.seed, self.max_delay_s, self.fail_id, self.gate = seed, max_delay_s, fail_id, gate
        self.lock = threading.Lock()
        self.outstanding = self.peak = self.calls = 0
        self.started: list[str] = []

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        return self.table(task, model, patterns)

    def run_many(self, tasks: list[Task], models: list[str], patterns: list[Any]) -> list[Outcome]:
        return [self(t, m, p) for t, m, p in zip(tasks, models, patterns, strict=True)]

    def submit(self, task: Task, model: str, patterns: list[dict[str, Any]] | None = None) -> Future[Outcome]:
        if task.id == self.fail_id:
            raise ConnectionError("refused at once")
        f: Future[Outcome] = Future()
        with self.lock:
            self.outstanding += 1
            self.calls += 1
            self.peak = max(self.peak, self.outstanding)
            self.started.append(task.id)
        delay = random.Random(f"{self.seed}:{task.id}").uniform(0.0, self.max_delay_s)

        def finish() -> None:
            if self.gate is not None:
                self.gate(task)
            with self.lock:
                self.outstanding -= 1
            f.set_result(self(task, model, patterns or []))
        threading.Timer(delay, finish).start()
        return f


def sona_config() -> dict[str, Any]:
    return {"dim": 64, "mlp_hidden": 32, "llm_router": {"models": SPECS}}


def router_state(agent: AgentActor) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in agent.sona.router.state_dict().items()
            if isinstance(v, np.ndarray)}


def test_only_an_executor_with_submit_and_a_cap_streams() -> None:
    assert is_streaming(Streamed())
    no_cap = Streamed()
    no_cap.max_concurrency = None   # type: ignore[assignment]
    assert not is_streaming(no_cap)
    assert not is_streaming(TableExecutor(TABLE))   # no run_many, no submit


def test_one_queue_feeds_every_copy_and_no_copy_exceeds_its_slots() -> None:
    ex = Streamed(cap=12, max_delay_s=0.01)
    shards = ExecutorShards(ex, max_concurrency=12, pool_size=4, name="a")
    assert [c.max_concurrency for c in shards.copies] == [4, 4, 4] and shards.streaming
    tasks = TASKS[:120]
    futs = shards.submit(tasks, ["gpt-4-1106-preview"] * 120, [[]] * 120)
    outs = [f.result(timeout=30) for f in futs]
    assert [o.output for o in outs] == [TableExecutor(TABLE)(t, "gpt-4-1106-preview", []).output for t in tasks]
    assert all(c.peak <= 4 for c in shards.copies)           # each copy within its slots
    assert sum(c.calls for c in shards.copies) == 120
    assert all(c.calls > 0 for c in shards.copies)
    assert shards.run(tasks[:5], ["gpt-4-1106-preview"] * 5, [[]] * 5)[0].output == outs[0].output


def test_a_slow_call_does_not_hold_back_the_calls_behind_it() -> None:
    # one copy of 2 slots: task 0 takes 0.5 s; the other 20 (a few ms each) finish through the
    # second slot meanwhile, instead of waiting for a barrier at the batch's slowest call
    release = threading.Event()

    def gate(task: Task) -> None:
        if task.id == TASKS[0].id:
            release.wait(5)
    ex = Streamed(cap=2, gate=gate)
    shards = ExecutorShards(ex, name="a")
    futs = shards.submit(TASKS[:21], ["mistralai/Mixtral-8x7B-Instruct-v0.1"] * 21, [[]] * 21)
    for f in futs[1:]:
        f.result(timeout=10)
    assert not futs[0].done()
    release.set()
    assert futs[0].result(timeout=10).output


def test_a_call_that_fails_to_start_is_that_tasks_exception_alone() -> None:
    shards = ExecutorShards(Streamed(cap=3, fail_id=TASKS[2].id), name="a")
    outs = [f.result(timeout=10) for f in shards.submit(TASKS[:6], ["gpt-4-1106-preview"] * 6, [[]] * 6)]
    assert isinstance(outs[2], ConnectionError)
    assert all(isinstance(o, Outcome) for i, o in enumerate(outs) if i != 2)


def test_agent_learns_the_first_chunk_while_later_calls_are_outstanding() -> None:
    seen: dict[str, int] = {}
    agent: AgentActor | None = None

    def gate(task: Task) -> None:
        # the calls of the batch's last chunk finish only once the first chunk has been learned
        # (or after 5 s: a barrier at the batch's end would let nothing be learned before then)
        if int(task.metadata.get("row", 0)) >= 64 and "first" not in seen:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (agent is None or agent.sona.n_learned < 32):
                time.sleep(0.005)
            seen.setdefault("first", agent.sona.n_learned if agent is not None else -1)
    tasks = [Task(t.text, t.task_type, t.id, {**t.metadata, "row": i}) for i, t in enumerate(TASKS[:96])]
    agent = AgentActor("a", sona_config(), Streamed(cap=16, gate=gate), engine_batch=32)
    out = agent.run_batch(tasks)
    assert len(out["results"]) == 96 and agent.sona.n_learned == 96
    assert seen["first"] >= 32       # the first chunk was learned while the last one was still running
    assert [r["task_id"] for r in out["results"]] == [t.id for t in tasks]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_order_calls_complete_in_changes_nothing_learned(seed: int) -> None:
    tasks = TASKS[:150]
    states, results = [], []
    for s in (0, seed):   # the same batch; calls completing in two different orders
        agent = AgentActor("a", sona_config(), Streamed(cap=16, seed=s, max_delay_s=0.01), engine_batch=32)
        out = agent.run_batch(tasks)
        states.append(router_state(agent))
        results.append([(r["task_id"], r["model"], r["success"]) for r in out["results"]])
    assert results[0] == results[1]
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k], err_msg=k)


def test_close_gives_the_calls_not_yet_started_an_error() -> None:
    release = threading.Event()
    shards = ExecutorShards(Streamed(cap=1, gate=lambda t: release.wait(5)), name="a")
    futs = shards.submit(TASKS[:4], ["gpt-4-1106-preview"] * 4, [[]] * 4)
    shards.close()
    release.set()
    outs = [f.result(timeout=10) for f in futs]
    assert isinstance(outs[0], Outcome)
    assert all(isinstance(o, RuntimeError) and "closed before this call started" in str(o) for o in outs[1:])


def test_submit_on_an_executor_that_does_not_stream_says_to_use_run() -> None:
    shards = ExecutorShards(TableExecutor(TABLE))
    with pytest.raises(TypeError, match="does not stream"):
        shards.submit(TASKS[:1], ["gpt-4-1106-preview"], [[]])
