"""The guide's routing calls, translated literally (sona-integration-guide.md, "LLM Router"):
``route({task, priority, maxCost, minQuality, timeout: 30000})`` as a mapping or as keyword
arguments in snake or camel case; every option flips a decision; ``minQuality`` is a hard
constraint under Thompson sampling; ``timeout`` in milliseconds (``timeout_s`` in seconds);
``retryWithUpgrade`` and ``maxCostPerTask`` through the facade's cascade, every attempt counted.
The guide's ``cost`` is USD per 1M tokens (the default): estimates come from the task's tokens;
the tests whose numbers are per call say ``costUnit: 'call'``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.routing import LLMRouter, NoModelError, RouteDecision, RouterError

GUIDE_MODELS: list[dict[str, Any]] = [
    {"name": "claude-sonnet-4-5", "cost": 3.00, "quality": 0.95, "speed": 0.7},
    {"name": "claude-haiku-3-5", "cost": 0.25, "quality": 0.80, "speed": 0.95},
    {"name": "gpt-4-turbo", "cost": 10.00, "quality": 0.97, "speed": 0.6},
]
#: the same prices read as USD per call (what the tests of per-call budgets use)
PER_CALL_MODELS: list[dict[str, Any]] = [{**m, "costUnit": "call"} for m in GUIDE_MODELS]
GUIDE = {"models": GUIDE_MODELS, "strategy": "cost-optimized", "fallback": "claude-haiku-3-5"}
PER_CALL = {**GUIDE, "models": PER_CALL_MODELS}
SONNET, HAIKU, GPT4 = (m["name"] for m in GUIDE_MODELS)
DIM = 16


def router(**kw: Any) -> LLMRouter:
    return LLMRouter({**PER_CALL, "exploration": "none", **kw}, dim=DIM)


def guide_router(**kw: Any) -> LLMRouter:
    return LLMRouter({**GUIDE, "exploration": "none", **kw}, dim=DIM)


# ---------------------------------------------------------------------------------------
# the call shapes
# ---------------------------------------------------------------------------------------
def test_the_guide_sample_as_a_camel_case_mapping() -> None:
    result = router().route({"task": "code-review", "priority": "quality", "maxCost": 5.00,
                             "minQuality": 0.90, "timeout": 30000})
    assert isinstance(result, RouteDecision)
    assert result.model == SONNET                       # gpt-4-turbo costs 10 > maxCost 5
    assert result["estimatedCost"] == result["estimated_cost"] == result.estimated_cost == 3.0
    assert result["expectedQuality"] == pytest.approx(0.95) and result.strategy == "quality"
    assert result.to_dict(camel=True)["estimatedCost"] == 3.0
    assert result.estimatedCost == 3.0 and result.expectedQuality == pytest.approx(0.95)  # the guide's attributes
    with pytest.raises(AttributeError, match="estimatedCosts"):
        _ = result.estimatedCosts


@pytest.mark.parametrize("call", [
    lambda r: r.route({"task": "code-review", "priority": "quality", "maxCost": 5.0, "minQuality": 0.9,
                       "timeout": 30000}),
    lambda r: r.route({"task": "code-review", "priority": "quality", "max_cost": 5.0, "min_quality": 0.9,
                       "timeout_s": 30}),
    lambda r: r.route("code-review", priority="quality", max_cost=5.0, min_quality=0.9, timeout=30000),
    lambda r: r.route("code-review", priority="quality", maxCost=5.0, minQuality=0.9, timeoutS=30),
    lambda r: r.route({"task": "code-review", "priority": "quality"}, maxCost=5.0, min_quality=0.9),
    lambda r: r.route(task="code-review", priority="quality", maxCost=5.0, minQuality=0.9),
])
def test_every_call_form_gives_the_same_decision(call: Any) -> None:
    ref = router().route("code-review", priority="quality", max_cost=5.0, min_quality=0.9, timeout_s=30.0)
    d = call(router())
    assert (d.model, d.estimated_cost, d.expected_quality, d.reason) == (ref.model, ref.estimated_cost,
                                                                         ref.expected_quality, ref.reason)


@pytest.mark.parametrize(("call", "match"), [
    (lambda r: r.route({"task": "t", "minQualty": 0.9}), r"'minQualty' \(did you mean 'minQuality'\?\)"),
    (lambda r: r.route("t", max_cots=1.0), r"'max_cots' \(did you mean 'max_cost'\?\)"),
    (lambda r: r.route({"task": "t", "maxCost": 1.0}, max_cost=2.0), "'max_cost' given twice"),
    (lambda r: r.route({"task": "t", "maxCost": 1.0, "max_cost": 2.0}), "'max_cost' given twice"),
    (lambda r: r.route("t", timeout=30000, timeout_s=30), "not both"),
    (lambda r: r.route({"task": "t", "timeout": -1}), r"timeout \(milliseconds\) must be >= 0"),
    (lambda r: r.route({"task": "t", "priority": "qualty"}), "did you mean 'quality'"),
    (lambda r: r.route({"task": 3}), "task must be a str"),
])
def test_bad_requests_name_what_was_wrong(call: Any, match: str) -> None:
    with pytest.raises(RouterError, match=match):
        call(router())


# ---------------------------------------------------------------------------------------
# each option flips a decision
# ---------------------------------------------------------------------------------------
def test_priority_overrides_the_strategy_for_the_call() -> None:
    r = router()
    assert r.route({"task": "code-review"}).model == HAIKU               # cost-optimized
    assert r.route({"task": "code-review", "priority": "quality"}).model == GPT4
    assert r.route({"task": "code-review", "priority": "speed"}).model == HAIKU
    assert r.route({"task": "code-review", "priority": "cost"}).model == HAIKU


def test_max_cost_flips_the_decision() -> None:
    r = router(strategy="quality")
    assert r.route({"task": "code-review"}).model == GPT4
    d = r.route({"task": "code-review", "maxCost": 5.0})
    assert d.model == SONNET and d.excluded[GPT4] == ["max_cost: estimated $10 > $5"]


def test_min_quality_flips_the_decision() -> None:
    r = router()
    assert r.route({"task": "code-review"}).model == HAIKU
    d = r.route({"task": "code-review", "minQuality": 0.9})
    assert d.model == SONNET and d.excluded[HAIKU] == ["min_quality: expected 0.800 < 0.900"]


def test_timeout_is_in_milliseconds_and_timeout_s_in_seconds() -> None:
    models = [{**PER_CALL_MODELS[0], "latency_s": 40.0}, {**PER_CALL_MODELS[1], "latency_s": 2.0},
              {**PER_CALL_MODELS[2], "latency_s": 20.0}]
    r = LLMRouter({"models": models, "strategy": "quality", "exploration": "none"}, dim=DIM)
    assert r.route({"task": "t", "maxCost": 5.0}).model == SONNET
    d = r.route({"task": "t", "maxCost": 5.0, "timeout": 30000})        # 30 s: sonnet's 40 s is too slow
    assert d.model == HAIKU and d.excluded[SONNET] == ["timeout: expected latency 40s > 30s"]
    assert r.route({"task": "t", "maxCost": 5.0, "timeout": 50000}).model == SONNET
    assert r.route({"task": "t", "maxCost": 5.0, "timeout_s": 30}).model == HAIKU
    assert r.route({"task": "t", "maxCost": 5.0, "timeout_s": 50}).model == SONNET
    # read as seconds, 30 would keep haiku (2 s); as milliseconds it excludes every model, and
    # without a fallback the router says so
    with pytest.raises(NoModelError, match="timeout: expected latency 2s > 0.03s"):
        r.route("t", max_cost=5.0, timeout=30)


def test_route_batch_takes_the_same_options() -> None:
    r = router(strategy="quality")
    ds = r.route_batch(["a", "b"], maxCost=5.0, minQuality=0.9, timeout=30000)
    assert [d.model for d in ds] == [SONNET, SONNET]
    assert [d.model for d in r.route_batch(["a", "b"])] == [GPT4, GPT4]


# ---------------------------------------------------------------------------------------
# cost is USD per 1M tokens (the guide's prices): the token maths decides maxCost
# ---------------------------------------------------------------------------------------
def test_guide_prices_are_per_million_tokens_by_default() -> None:
    r = guide_router(strategy="quality")
    d = r.route({"task": "code-review", "maxCost": 5.0})
    # 11 characters -> 3 input tokens + 256 expected output tokens, at $10 per 1M
    assert d.model == GPT4 and d.estimated_cost == pytest.approx(10.0 * 259 / 1e6)
    assert r.estimate_cost("code-review", SONNET) == pytest.approx(3.0 * 259 / 1e6)


def test_max_cost_excludes_and_includes_as_the_token_maths_says() -> None:
    r = guide_router(strategy="quality")
    big = "x" * 2_000_000           # 500,000 input tokens + 256 output
    assert r.estimate_cost(big, GPT4) == pytest.approx(10.0 * 500_256 / 1e6)   # $5.003 > $5
    d = r.route({"task": big, "maxCost": 5.0})
    assert d.model == SONNET and d.excluded[GPT4] == ["max_cost: estimated $5.003 > $5"]
    fits = "x" * 1_998_000          # 499,500 + 256 tokens: $4.998 <= $5
    assert r.route({"task": fits, "maxCost": 5.0}).model == GPT4


def test_expected_output_tokens_per_model_moves_the_estimate() -> None:
    models = [{**GUIDE_MODELS[0]}, {**GUIDE_MODELS[1]}, {**GUIDE_MODELS[2], "expectedOutputTokens": 600_000}]
    r = LLMRouter({**GUIDE, "models": models, "strategy": "quality", "exploration": "none"}, dim=DIM)
    assert r.estimate_cost("code-review", GPT4) == pytest.approx(10.0 * 600_003 / 1e6)
    assert r.route({"task": "code-review", "maxCost": 5.0}).model == SONNET     # gpt-4 now over $5
    assert guide_router(strategy="quality").route({"task": "code-review", "maxCost": 5.0}).model == GPT4


def test_flipping_cost_unit_changes_the_decision() -> None:
    per_mtok = guide_router(strategy="quality").route({"task": "code-review", "maxCost": 5.0})
    per_call = router(strategy="quality").route({"task": "code-review", "maxCost": 5.0})
    assert (per_mtok.model, per_call.model) == (GPT4, SONNET)       # $10 per call is over maxCost
    assert per_call.estimated_cost == 3.0


def test_spend_comes_from_the_response_usage() -> None:
    r = guide_router(retryWithUpgrade=True)

    def usage_only(task: Task, model: str, patterns: list) -> Outcome:   # reports tokens, no USD
        ok = model == SONNET
        return Outcome("ok", float(ok), ok, metadata={"usage": {"prompt_tokens": 1200, "completion_tokens": 800}})
    res = r.execute({"task": "code-review"}, usage_only)
    assert [a.model for a in res.attempts] == [HAIKU, SONNET]
    assert [a.outcome.cost_usd for a in res.attempts] == pytest.approx([0.25 * 2000 / 1e6, 3.0 * 2000 / 1e6])
    assert r.spent == pytest.approx(res.total_cost) == pytest.approx(3.25 * 2000 / 1e6)


# ---------------------------------------------------------------------------------------
# minQuality is hard under Thompson sampling
# ---------------------------------------------------------------------------------------
def test_min_quality_is_a_hard_constraint_under_thompson_sampling() -> None:
    for strategy in ("cost-optimized", "quality", "balanced", "speed"):
        r = LLMRouter({**GUIDE, "strategy": strategy, "exploration": "thompson", "seed": 1}, dim=DIM)
        ds = [r.route({"task": f"code-review {i}", "minQuality": 0.9}) for i in range(1000)]
        assert sum(d.expected_quality < 0.9 for d in ds) == 0, strategy
        assert not any(d.fallback for d in ds)
        if strategy == "quality":   # exploration still ranks the feasible models
            assert {d.model for d in ds} == {SONNET, GPT4}


def test_min_quality_that_no_model_meets_uses_the_fallback_or_raises() -> None:
    r = LLMRouter({**GUIDE, "exploration": "thompson"}, dim=DIM)
    ds = [r.route({"task": f"t {i}", "minQuality": 0.99}) for i in range(200)]
    assert all(d.model == HAIKU and d.fallback for d in ds)
    assert ds[0].reason.startswith("fallback 'claude-haiku-3-5': no model satisfies the constraints")
    assert set(ds[0].excluded) == {SONNET, HAIKU, GPT4}
    strict = LLMRouter({**GUIDE, "exploration": "thompson", "on_no_model": "raise"}, dim=DIM)
    with pytest.raises(NoModelError, match="min_quality") as exc:
        strict.route({"task": "t", "minQuality": 0.99})
    assert set(exc.value.exclusions) == {SONNET, HAIKU, GPT4}


# ---------------------------------------------------------------------------------------
# retryWithUpgrade / maxCostPerTask through the facade
# ---------------------------------------------------------------------------------------
class OnlyGpt4Solves:
    """The executor of a user: only gpt-4-turbo solves; cost = the model's price per call."""

    price: dict[str, float] = {m["name"]: m["cost"] for m in PER_CALL_MODELS}

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, task: Task, model: str, patterns: list) -> Outcome:
        self.calls.append(model)
        ok = model == GPT4
        return Outcome("ok" if ok else "wrong", float(ok), ok, cost_usd=self.price[model], latency_s=1.0)


def test_retry_with_upgrade_flips_the_attempts_and_counts_every_cost() -> None:
    off = LLMRouter({**PER_CALL, "exploration": "none"}, dim=DIM)
    res = off.execute({"task": "code-review"}, OnlyGpt4Solves())
    assert [a.model for a in res.attempts] == [HAIKU] and res.stop_reason == "no_retry"
    on = LLMRouter({**PER_CALL, "exploration": "none", "retryWithUpgrade": True}, dim=DIM)
    ex = OnlyGpt4Solves()
    res = on.execute({"task": "code-review"}, ex)
    assert ex.calls == [HAIKU, SONNET, GPT4] and res.success and res.stop_reason == "success"
    assert res.total_cost == pytest.approx(0.25 + 3.0 + 10.0) == on.spent
    assert {m: s["calls"] for m, s in on.stats()["models"].items()} == {SONNET: 1, HAIKU: 1, GPT4: 1}


def test_max_cost_per_task_is_enforced_across_attempts() -> None:
    r = LLMRouter({**PER_CALL, "exploration": "none", "retryWithUpgrade": True, "maxCostPerTask": 5.00}, dim=DIM)
    ex = OnlyGpt4Solves()
    res = r.execute({"task": "code-review"}, ex)
    # haiku (0.25) + sonnet (3.00) = 3.25 spent; gpt-4-turbo's 10 > the 1.75 left of the task's 5
    assert ex.calls == [HAIKU, SONNET] and not res.success and res.stop_reason == "budget"
    assert res.total_cost == pytest.approx(3.25) and r.spent == pytest.approx(3.25)
    # a cap that fits one attempt but not two: sonnet alone would fit, after haiku it does not
    r2 = LLMRouter({**PER_CALL, "exploration": "none", "retryWithUpgrade": True, "maxCostPerTask": 3.1}, dim=DIM)
    ex2 = OnlyGpt4Solves()
    assert r2.route({"task": "code-review", "priority": "quality"}).model == SONNET
    res2 = r2.execute({"task": "code-review"}, ex2)
    assert ex2.calls == [HAIKU] and res2.stop_reason == "budget"


def test_the_cascade_takes_the_request_options() -> None:
    r = LLMRouter({**PER_CALL, "exploration": "none", "retryWithUpgrade": True}, dim=DIM)
    ex = OnlyGpt4Solves()
    res = r.run_cascade({"task": "code-review", "minQuality": 0.9, "maxCost": 5.0}, ex)
    assert ex.calls == [SONNET] and res.stop_reason == "constraints"    # gpt-4 over maxCost, haiku below
    fresh = LLMRouter({**PER_CALL, "exploration": "none", "retryWithUpgrade": True}, dim=DIM)
    res2 = fresh.run_cascade("code-review", OnlyGpt4Solves(), embedding=np.zeros(DIM), minQuality=0.9)
    assert [a.model for a in res2.attempts] == [SONNET, GPT4] and res2.success


def test_an_infrastructure_failure_stops_the_cascade_unlearned() -> None:
    r = LLMRouter({**PER_CALL, "exploration": "none", "retryWithUpgrade": True}, dim=DIM)
    down = lambda t, m, p: Outcome("", 0.0, False, cost_usd=0.1, error_kind="server")   # noqa: E731
    res = r.execute({"task": "code-review"}, down)
    assert [a.model for a in res.attempts] == [HAIKU] and res.stop_reason == "error"
    assert r.spent == pytest.approx(0.1) and r.stats()["models"][HAIKU]["calls"] == 0
    # the model failing the task instead: learned and upgraded
    wrong = lambda t, m, p: Outcome("", 0.0, False, cost_usd=0.1)   # noqa: E731
    r2 = LLMRouter({**PER_CALL, "exploration": "none", "retryWithUpgrade": True}, dim=DIM)
    assert len(r2.execute({"task": "code-review"}, wrong).attempts) == 3 and r2.stats()["models"][HAIKU]["calls"] == 1
