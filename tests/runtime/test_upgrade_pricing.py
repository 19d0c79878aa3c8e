"""Retry with upgrade in the swarm path prices every attempt as the engine's cascade does: an
executor that reports only token ``usage`` (cost_usd 0, e.g. a user's own executor against a
self-hosted endpoint) pays its tokens at the model's per-1M-token price, that sum is the task's
``cost_usd``, the router's spend and what ``max_cost_per_task`` is checked against
(in-process: an AgentActor without Ray)."""

import math

import pytest

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.executors.upgrade import run_with_upgrade
from swarm_sona.routing.pricing import Pricing
from swarm_sona.runtime.actors.agent import AgentActor

PRICE = {"small": 0.5, "big": 30.0}          # USD per 1M tokens
MODELS = [{"name": "small", "cost": PRICE["small"], "quality": 0.9},
          {"name": "big", "cost": PRICE["big"], "quality": 0.95}]
USAGE = {"small": {"prompt_tokens": 12_000, "completion_tokens": 8_000},   # 20k tokens: $0.01
         "big": {"prompt_tokens": 1_500, "completion_tokens": 500}}        # 2k tokens: $0.06
REPORTED = {"small": 0.002, "big": 0.05}     # what the flip executor says it paid
OUTPUT_TOKENS = 256                          # the router's default expected output tokens


def paid(model):
    """The price of one attempt, from the token counts and the model's price (independent of
    the code under test)."""
    u = USAGE[model]
    return (u["prompt_tokens"] + u["completion_tokens"]) * PRICE[model] / 1e6


def big_estimate(text):
    """The router's estimate of an attempt on big: ceil(chars / 4) input + 256 output tokens."""
    return (math.ceil(len(text) / 4) + OUTPUT_TOKENS) * PRICE["big"] / 1e6


class UsageOnly:
    """Fails on the cheap model; reports only the response's token usage, no cost."""

    def __init__(self):
        self.calls = []

    def __call__(self, task, model, patterns):
        self.calls.append(model)
        ok = model == "big"
        return Outcome("answer" if ok else "wrong", float(ok), ok, latency_s=0.01,
                       metadata={"usage": dict(USAGE[model])})


class ReportsCost(UsageOnly):
    """The same, with the executor's own cost_usd (which wins over the usage)."""

    def __call__(self, task, model, patterns):
        out = super().__call__(task, model, patterns)
        return Outcome(out.output, out.reward, out.success, cost_usd=REPORTED[model], latency_s=0.01,
                       metadata=out.metadata)


TASKS = [Task(f"task {i:02d}") for i in range(12)]


def run(executor, max_cost=None):
    router = {"models": MODELS, "strategy": "cost-optimized", "retryWithUpgrade": True, "maxCostPerTask": max_cost}
    agent = AgentActor("a", {"dim": 32, "mlp_hidden": 16, "llm_router": router}, executor)
    return agent, agent.run_batch(TASKS, batch_id=0)["results"]


def test_usage_only_attempts_are_priced_and_summed():
    agent, res = run(UsageOnly())
    assert all(r["success"] and r["model"] == "big" for r in res)
    upgraded = [r for r in res if r["attempts"] == ["small", "big"]]
    assert len(upgraded) >= 3 and all(r["attempts"] == ["big"] for r in res if r not in upgraded)
    for r in res:
        assert r["cost_usd"] == pytest.approx(sum(paid(m) for m in r["attempts"]), rel=1e-12)
    assert paid("small") + paid("big") == pytest.approx(0.07)          # not 0: both attempts paid
    # the router's spend: the failed attempts' feedback and the last attempts' trajectories, priced
    assert agent.sona.router.spent == pytest.approx(sum(r["cost_usd"] for r in res), rel=1e-9)


def test_max_cost_per_task_counts_the_priced_cheap_attempt():
    text = TASKS[0].text
    assert all(len(t.text) == len(text) for t in TASKS)
    # big's estimate fits the budget, but not what the priced cheap attempt leaves of it
    budget = big_estimate(text) + paid("small") / 2
    assert big_estimate(text) < budget < big_estimate(text) + paid("small")
    _, res = run(UsageOnly(), max_cost=budget)
    small = [r for r in res if r["attempts"][0] == "small"]
    assert len(small) >= 3
    for r in small:
        assert r["attempts"] == ["small"] and not r["success"]
        assert r["cost_usd"] == pytest.approx(paid("small"), rel=1e-12)
    # an unpriced attempt ($0) would leave the whole budget, and the upgrade would run
    _, res = run(ReportsCost(), max_cost=budget)
    assert any(r["attempts"] == ["small", "big"] for r in res)      # $0.002 leaves room for big


def test_a_reported_cost_is_the_figure_used():
    agent, res = run(ReportsCost())
    upgraded = [r for r in res if r["attempts"] == ["small", "big"]]
    assert len(upgraded) >= 3
    for r in res:
        assert r["cost_usd"] == pytest.approx(sum(REPORTED[m] for m in r["attempts"]), rel=1e-12)
    assert agent.sona.router.spent == pytest.approx(sum(r["cost_usd"] for r in res), rel=1e-9)


def test_run_with_upgrade_price_hook():
    from swarm_sona.routing.config import LLMRouterConfig

    pricing = Pricing(LLMRouterConfig.from_dict({"models": MODELS}))
    index = {"small": 0, "big": 1}
    [r] = run_with_upgrade(UsageOnly(), [Task("t")], "small", ["small", "big"],
                           price=lambda m, o: pricing.price(index[m], o))
    assert [a.outcome.cost_usd for a in r.attempts] == pytest.approx([paid("small"), paid("big")], rel=1e-12)
    assert r.total_cost == pytest.approx(paid("small") + paid("big"), rel=1e-12)
    [r0] = run_with_upgrade(UsageOnly(), [Task("t")], "small", ["small", "big"])
    assert r0.total_cost == 0.0                                     # without a price: as reported
    with pytest.raises(TypeError, match="price returned"):
        run_with_upgrade(UsageOnly(), [Task("t")], "small", ["small", "big"], price=lambda m, o: 1.0)


@pytest.mark.parametrize("executor,expected", [(UsageOnly, paid), (ReportsCost, REPORTED.__getitem__)])
def test_without_upgrades_each_outcome_is_priced_the_same_way(executor, expected):
    """retryWithUpgrade off: a usage-only outcome costs its tokens at the model's price (was $0),
    an executor's own cost_usd stands; the router's spend is the results' sum."""
    router = {"models": MODELS, "strategy": "cost-optimized"}
    agent = AgentActor("a", {"dim": 32, "mlp_hidden": 16, "llm_router": router}, executor())
    res = agent.run_batch(TASKS, batch_id=0)["results"]
    assert {r["model"] for r in res} <= {"small", "big"}
    for r in res:
        assert r["cost_usd"] == pytest.approx(expected(r["model"]), rel=1e-12) and r["cost_usd"] > 0
    assert agent.sona.router.spent == pytest.approx(sum(r["cost_usd"] for r in res), rel=1e-9)
