"""Retry with upgrade over a batch (executors.upgrade), against the replay server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.replay import ReplayServer, replay_tasks
from swarm_sona.executors.table import ROUTELLM_PRICES, ROUTELLM_STRONG, ROUTELLM_WEAK, load_routing_table
from swarm_sona.executors.upgrade import router_cascade, run_with_upgrade
from swarm_sona.executors.verifiers import ChoiceVerifier, VerifierRegistry
from swarm_sona.routing.router import LLMRouter

DATA = Path(__file__).parents[1] / "data" / "routellm_slice"
TABLE = load_routing_table(DATA)
TASKS = replay_tasks(TABLE)[:30]
PRICES = {m: (p, p) for m, p in ROUTELLM_PRICES.items()}
CASCADE = [ROUTELLM_WEAK, ROUTELLM_STRONG]
WEAK, STRONG = TABLE.models.index(ROUTELLM_WEAK), TABLE.models.index(ROUTELLM_STRONG)


def executor(srv: ReplayServer) -> OpenAIChatExecutor:
    return OpenAIChatExecutor(srv.base_url, api_key_env=None, prices=PRICES, max_concurrency=16,
                              reward_fn=VerifierRegistry(default=ChoiceVerifier()).reward_fn())


def test_failures_upgrade_to_the_next_model_and_every_attempt_is_paid(replay) -> None:
    with replay() as srv:
        ex = executor(srv)
        res = run_with_upgrade(ex, TASKS, ROUTELLM_WEAK, CASCADE, max_cost_per_task=1.0)
        ex.close()
        led = srv.ledger()
    weak_right = [bool(TABLE.correct[i, WEAK]) for i in range(len(TASKS))]
    strong_right = [bool(TABLE.correct[i, STRONG]) for i in range(len(TASKS))]
    assert 0 < sum(weak_right) < len(TASKS)                        # the slice has tasks of both kinds
    for r, w, s in zip(res, weak_right, strong_right, strict=True):
        assert [a.model for a in r.attempts] == ([ROUTELLM_WEAK] if w else CASCADE)
        assert r.success == (w or s)
        assert r.stop_reason == ("success" if w or s else "no_better_model")
    assert [r.task.id for r in res] == [t.id for t in TASKS]       # input order
    assert led["requests"] == sum(len(r.attempts) for r in res)
    assert sum(r.total_cost for r in res) == pytest.approx(led["cost_usd"])   # every attempt counted
    two = [r for r in res if len(r.attempts) == 2]
    assert all(r.total_cost == pytest.approx(sum(a.outcome.cost_usd for a in r.attempts)) for r in two)
    assert all(a.outcome.cost_usd > 0 for r in two for a in r.attempts)


def test_max_cost_per_task_is_enforced_across_attempts(replay) -> None:
    def estimate(task: Task, model: str) -> float:
        return 0.05 if model == ROUTELLM_STRONG else 0.0001

    with replay() as srv:
        ex = executor(srv)
        capped = run_with_upgrade(ex, TASKS, ROUTELLM_WEAK, CASCADE, 0.01, estimate_cost=estimate)
        free = run_with_upgrade(ex, TASKS, ROUTELLM_WEAK, CASCADE, 1.0, estimate_cost=estimate)
        ex.close()
    failed_weak = [i for i in range(len(TASKS)) if not TABLE.correct[i, WEAK]]
    assert all(len(capped[i].attempts) == 1 and capped[i].stop_reason == "budget" for i in failed_weak)
    assert all(len(free[i].attempts) == 2 for i in failed_weak)   # the same tasks within a larger budget
    assert all(r.total_cost <= 0.01 for r in capped)
    # without estimates the spend so far decides: a budget already spent starts no upgrade
    with replay() as srv:
        ex = executor(srv)
        spent = run_with_upgrade(ex, TASKS, ROUTELLM_WEAK, CASCADE, 0.0)
        ex.close()
    assert all(len(r.attempts) == 1 for r in spent)


def test_an_infrastructure_failure_is_not_upgraded(replay) -> None:
    with replay(api_key="sk-replay-required") as srv:   # the executor sends no key: 401 for every call
        ex = executor(srv)
        res = run_with_upgrade(ex, TASKS[:5], ROUTELLM_WEAK, CASCADE, 1.0)
        ex.close()
        led = srv.ledger()
    assert all(r.stop_reason == "error" and len(r.attempts) == 1 and r.outcome.error_kind == "auth" for r in res)
    assert led["models"].get(ROUTELLM_STRONG) is None


def test_router_cascade_orders_models_by_expected_success_and_plain_executors_work() -> None:
    router = LLMRouter({"models": [{"name": "big", "quality": 0.9, "cost": 5}, {"name": "mid", "quality": 0.7},
                                   {"name": "small", "quality": 0.5, "cost": 0.1}]}, dim=8)
    assert router_cascade(router)(Task("anything")) == ["small", "mid", "big"]
    calls: list[str] = []

    def plain(task: Task, model: str, patterns: list[dict[str, object]]) -> Outcome:   # no run_many
        calls.append(model)
        return Outcome("", float(model == "big"), model == "big", cost_usd=1.0)

    [r] = run_with_upgrade(plain, [Task("t")], "small", router_cascade(router))
    assert calls == ["small", "mid", "big"] and r.success and r.total_cost == 3.0
    e, f = np.eye(8)[0], np.eye(8)[1]
    for _ in range(30):   # evidence: at e "big" fails and "mid" succeeds, at f the other way round
        router.feedback("x", "big", False, 0.0, embedding=e)
        router.feedback("x", "mid", True, 1.0, embedding=e)
        router.feedback("x", "big", True, 1.0, embedding=f)
        router.feedback("x", "mid", False, 0.0, embedding=f)
    t = Task("anything")
    assert router_cascade(router, {t.id: e})(t)[-1] == "mid" and router_cascade(router, {t.id: f})(t)[-1] == "big"


def test_run_batch_replaces_the_batch_call_and_an_exception_ends_only_its_task() -> None:
    rounds: list[list[str]] = []

    def batch(tasks: list[Task], models: list[str], patterns: list[list[dict[str, object]]]
              ) -> list[Outcome | BaseException]:
        rounds.append(list(models))
        return [RuntimeError("hook refused") if t.text == "boom" else
                Outcome("", float(m == ROUTELLM_STRONG), m == ROUTELLM_STRONG, cost_usd=0.5)
                for t, m in zip(tasks, models, strict=True)]

    def never(task: Task, model: str, patterns: list[dict[str, object]]) -> Outcome:
        raise AssertionError("run_batch is used instead")

    res = run_with_upgrade(never, [Task("ok"), Task("boom")], ROUTELLM_WEAK, CASCADE, run_batch=batch)
    assert rounds == [[ROUTELLM_WEAK, ROUTELLM_WEAK], [ROUTELLM_STRONG]]
    assert res[0].success and res[0].total_cost == 1.0
    assert res[1].stop_reason == "exception" and res[1].attempts == () and isinstance(res[1].error, RuntimeError)
    with pytest.raises(RuntimeError, match="hook refused"):
        _ = res[1].outcome


def test_bad_arguments_are_refused_with_what_was_wrong() -> None:
    def ok(task: Task, model: str, patterns: list[dict[str, object]]) -> Outcome:
        return Outcome("", 1.0, True)

    with pytest.raises(ValueError, match="not in its cascade"):
        run_with_upgrade(ok, [Task("t")], "gpt-x", CASCADE)
    with pytest.raises(ValueError, match="2 model names"):
        run_with_upgrade(ok, [Task("t")], ["a", "b"], CASCADE)
    with pytest.raises(ValueError, match="max_cost_per_task"):
        run_with_upgrade(ok, [Task("t")], ROUTELLM_WEAK, CASCADE, -1.0)
