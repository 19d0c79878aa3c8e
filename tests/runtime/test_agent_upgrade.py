"""The guide's ``retryWithUpgrade`` in the swarm path: an agent's pipeline retries a failed task
on the router's next better model within ``max_cost_per_task``, every attempt paid, the router
taught by each failure (in-process: the pipeline an agent actor runs, no Ray)."""

import pytest

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.sona import SONA
from swarm_sona.runtime.actors.agent_pipeline import PipelineSettings, TaskPipeline
from swarm_sona.runtime.actors.executor_shards import ExecutorShards

MODELS = [{"name": "small", "cost": 0.001, "cost_unit": "call", "quality": 0.9},
          {"name": "big", "cost": 0.03, "cost_unit": "call", "quality": 0.95}]


def only_big_succeeds(task, model, patterns):
    ok = model == "big"
    return Outcome("answer" if ok else "wrong", float(ok), ok, cost_usd=0.03 if ok else 0.001, latency_s=0.01)


class ConcurrentOnlyBig:
    """The same, with ``run_many`` (the agent's concurrent path)."""

    def __init__(self):
        self.batches = []

    def __call__(self, task, model, patterns):
        return only_big_succeeds(task, model, patterns)

    def run_many(self, tasks, models, patterns):
        self.batches.append(list(models))
        return [only_big_succeeds(t, m, p) for t, m, p in zip(tasks, models, patterns, strict=True)]


def engine(upgrade, max_cost=None):
    router = {"models": MODELS, "strategy": "cost-optimized", "retryWithUpgrade": upgrade, "maxCostPerTask": max_cost}
    return SONA(SONAConfig.from_dict({"dim": 32, "mlp_hidden": 16, "llm_router": router}))


def run(sona, executor, n=8):
    pipe = TaskPipeline(PipelineSettings("a"), ExecutorShards(executor), store=None)
    return pipe.run(sona, [Task(f"task {i}") for i in range(n)]).results


@pytest.mark.parametrize("make_executor", [lambda: only_big_succeeds, ConcurrentOnlyBig])
def test_a_failed_task_is_retried_on_the_next_better_model_and_every_attempt_is_paid(make_executor):
    off = run(engine(False), make_executor())
    assert all(r["success"] == (r["model"] == "big") and "attempts" not in r for r in off)
    assert sum(not r["success"] for r in off) >= 4          # the cheap model is the router's usual pick
    ex = make_executor()
    on = run(engine(True), ex)
    assert all(r["success"] and r["model"] == "big" for r in on)
    upgraded = [r for r in on if r["attempts"] == ["small", "big"]]
    assert len(upgraded) >= 4 and all(r["attempts"] == ["big"] for r in on if r not in upgraded)
    assert all(r["cost_usd"] == pytest.approx(0.031) for r in upgraded)   # both attempts counted
    if isinstance(ex, ConcurrentOnlyBig):                                # round by round through run_many
        assert len(ex.batches) == 2 and ex.batches[1] == ["big"] * len(upgraded)


def test_max_cost_per_task_stops_the_upgrade():
    res = run(engine(True, max_cost=0.01), only_big_succeeds)   # big's estimate does not fit what is left
    small = [r for r in res if r["attempts"][0] == "small"]
    assert len(small) >= 4 and all(not r["success"] and r["attempts"] == ["small"]
                                   and r["cost_usd"] == pytest.approx(0.001) for r in small)


def test_the_router_learns_the_failed_attempts():
    sona = engine(True)
    before = sona.router.success_probabilities(Task("task 0"))
    run(sona, only_big_succeeds, n=40)
    after = sona.router.success_probabilities(Task("task 0"))
    small = sona.router.names.index("small")
    assert after[small] < before[small] - 0.05   # 40 paid failures of small were learned, not only big's successes
