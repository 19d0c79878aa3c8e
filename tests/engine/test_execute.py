"""SONA.execute(task, executor): the guide's retryWithUpgrade / maxCostPerTask for a user's own
executor: the next better model on failure, cost summed over attempts against maxCostPerTask,
the router and the engine learn each attempt, a typed result; the guide's call shapes."""

from __future__ import annotations

from typing import Any

import pytest

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.engine.errors import EngineError
from swarm_sona.engine.execute import ExecuteAttempt, ExecuteResult
from swarm_sona.engine.sona import SONA

PER_CALL = [{"name": "claude-sonnet-4-5", "cost": 3.00, "quality": 0.95, "speed": 0.7, "costUnit": "call"},
            {"name": "claude-haiku-3-5", "cost": 0.25, "quality": 0.80, "speed": 0.95, "costUnit": "call"},
            {"name": "gpt-4-turbo", "cost": 10.00, "quality": 0.97, "speed": 0.6, "costUnit": "call"}]
SONNET, HAIKU, GPT4 = (m["name"] for m in PER_CALL)
PRICE = {m["name"]: m["cost"] for m in PER_CALL}


def engine(**router: Any) -> SONA:
    return SONA({"dim": 32, "mlp_hidden": 32, "background_every": 0,
                 "llmRouter": {"models": PER_CALL, "strategy": "cost-optimized", "fallback": HAIKU,
                               "exploration": "none", **router}})


class OnlyGpt4Solves:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, task: Task, model: str, patterns: list) -> Outcome:
        self.calls.append(model)
        ok = model == GPT4
        return Outcome(f"{model} says {'ok' if ok else 'no'}", float(ok), ok, cost_usd=PRICE[model], latency_s=0.5)


def test_retry_with_upgrade_flips_the_attempts() -> None:
    off = engine().execute("code-review", OnlyGpt4Solves())
    assert off.models == [HAIKU] and off.stop_reason == "no_retry" and not off.success
    ex = OnlyGpt4Solves()
    on = engine(retryWithUpgrade=True).execute("code-review", ex)
    assert isinstance(on, ExecuteResult) and all(isinstance(a, ExecuteAttempt) for a in on.attempts)
    assert ex.calls == on.models == [HAIKU, SONNET, GPT4]
    assert on.success and on.output == "gpt-4-turbo says ok" and on.stop_reason == "success"
    assert on.total_cost == pytest.approx(13.25) and [a.cost_usd for a in on.attempts] == [0.25, 3.0, 10.0]


def test_max_cost_per_task_is_enforced_across_attempts() -> None:
    sona = engine(retryWithUpgrade=True, maxCostPerTask=5.0)
    ex = OnlyGpt4Solves()
    run = sona.execute({"task": "code-review"}, ex)
    # 0.25 + 3.00 spent: gpt-4-turbo's 10.00 does not fit the 1.75 left of the task's 5
    assert ex.calls == [HAIKU, SONNET] and run.stop_reason == "budget" and run.total_cost == pytest.approx(3.25)
    roomy = engine(retryWithUpgrade=True, maxCostPerTask=20.0).execute({"task": "code-review"}, OnlyGpt4Solves())
    assert roomy.models == [HAIKU, SONNET, GPT4] and roomy.success


def test_the_router_and_the_engine_learn_each_attempt() -> None:
    sona = engine(retryWithUpgrade=True)
    run = sona.execute("code-review", OnlyGpt4Solves())
    calls = {m: s["calls"] for m, s in sona.router.stats()["models"].items()}
    assert calls == {SONNET: 1, HAIKU: 1, GPT4: 1} and sona.router.spent == pytest.approx(13.25)
    assert run.learned == 3 and sona.n_learned == 3
    quiet = engine(retryWithUpgrade=True)
    assert quiet.execute("code-review", OnlyGpt4Solves(), learn=False).learned == 0 and quiet.n_learned == 0
    assert quiet.router.stats()["models"][GPT4]["calls"] == 1      # the router still learns
    assert quiet.router.spent == pytest.approx(13.25)


def test_an_infrastructure_failure_counts_its_cost_and_is_not_learned() -> None:
    sona = engine(retryWithUpgrade=True)
    down = lambda t, m, p: Outcome("", 0.0, False, cost_usd=0.1, error_kind="server")   # noqa: E731
    run = sona.execute("code-review", down)
    assert run.models == [HAIKU] and run.attempts[0].error_kind == "server" and run.learned == 0
    assert sona.n_learned == 0 and sona.router.spent == pytest.approx(0.1)


def test_the_guides_call_shapes_and_result_keys() -> None:
    sona = engine(retryWithUpgrade=True)
    a = sona.execute({"task": "code-review", "minQuality": 0.9, "maxCost": 5.0}, OnlyGpt4Solves())
    # sonnet first (haiku below minQuality), gpt-4-turbo over maxCost: the cascade stops there
    assert a.models == [SONNET] and a.stop_reason == "constraints"
    b = engine(retryWithUpgrade=True).execute("code-review", OnlyGpt4Solves(), min_quality=0.9, max_cost=5.0)
    assert b.models == a.models and b.stop_reason == a.stop_reason
    assert a["totalCost"] == a["total_cost"] == a.totalCost == 3.0 and a["stopReason"] == "constraints"
    assert a.attempts[0]["costUsd"] == 3.0
    with pytest.raises(KeyError):
        _ = a["totalCosts"]
    seen: list[list] = []
    engine().execute(Task("code-review"), lambda t, m, p: seen.append(p) or Outcome("", 1.0, True),
                     patterns=[{"output": "look at the tests first"}])
    assert seen == [[{"output": "look at the tests first"}]]


def test_the_timeout_is_in_milliseconds() -> None:
    models = [{**PER_CALL[0], "latency_s": 40.0}, {**PER_CALL[1], "latency_s": 2.0}]
    def sona() -> SONA:   # a fresh engine each time: an attempt's latency moves the expected one
        return SONA({"dim": 32, "mlp_hidden": 32, "llmRouter": {"models": models, "strategy": "quality",
                                                                "exploration": "none"}})
    ok = lambda t, m, p: Outcome("", 1.0, True, latency_s=1.0)   # noqa: E731
    assert sona().execute("t", ok).models == [SONNET]
    assert sona().execute({"task": "t", "timeout": 30000}, ok).models == [HAIKU]
    assert sona().execute({"task": "t", "timeout": 50000}, ok).models == [SONNET]


@pytest.mark.parametrize(("call", "match"), [
    (lambda s: s.execute({"task": "t", "maxCots": 1}, OnlyGpt4Solves()), "did you mean 'max_cost'"),
    (lambda s: s.execute({"task": 3}, OnlyGpt4Solves()), "task must be a text or a Task"),
    (lambda s: s.execute("t", "not callable"), "executor must be callable"),
    (lambda s: s.execute("t", OnlyGpt4Solves(), learn="yes"), "learn must be True or False"),
    (lambda s: s.execute("t", OnlyGpt4Solves(), patterns="x"), "patterns must be a list of mappings"),
])
def test_bad_calls_name_what_was_wrong(call: Any, match: str) -> None:
    with pytest.raises(EngineError, match=match):
        call(engine())


def test_execute_needs_a_router() -> None:
    with pytest.raises(EngineError, match="needs an LLM router"):
        SONA({"dim": 16, "mlp_hidden": 16}).execute("t", OnlyGpt4Solves())
