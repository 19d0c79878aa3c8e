"""LLMRouter: strategies, constraints, budgets, fallback, cascade, learning, state.

The hand-made model table (exploration off, zero embeddings, so every estimate equals the
prior quality and every answer below is computed by hand):

    model   cost/call  quality  latency  speed (fastest latency / latency)
    small   0.001      0.60     0.5 s    1.0
    medium  0.010      0.75     1.0 s    0.5
    large   0.050      0.90     3.0 s    1/6
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_sona.core import codec
from swarm_sona.core.config import ConfigError
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.embedding.embedders import HashingEmbedder
from swarm_sona.routing import (
    BudgetExhaustedError,
    LLMRouter,
    NoModelError,
    RouteDecision,
    RouterError,
    estimate_tokens,
)
from swarm_sona.routing.config import LLMRouterConfig

DIM = 8
ZERO = np.zeros(DIM)
MODELS = [
    {"name": "small", "cost": 0.001, "cost_unit": "call", "quality": 0.60, "latency_s": 0.5},
    {"name": "medium", "cost": 0.010, "cost_unit": "call", "quality": 0.75, "latency_s": 1.0},
    {"name": "large", "cost": 0.050, "cost_unit": "call", "quality": 0.90, "latency_s": 3.0},
]


def make(**kw) -> LLMRouter:
    cfg = {"models": MODELS, "exploration": "none", **kw}
    return LLMRouter(cfg, dim=DIM)


# ---------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------
def test_fresh_router_estimates_are_the_priors() -> None:
    r = make()
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = r.success_probabilities(embedding=rng.standard_normal(DIM))
        np.testing.assert_allclose(p, [0.60, 0.75, 0.90], atol=1e-9)


@pytest.mark.parametrize(("strategy", "expected"), [
    ("quality", "large"),
    ("speed", "small"),
    ("cost-optimized", "small"),
    ("balanced", "medium"),  # utilities 0.69 / 0.70 / 0.4167 (see below)
])
def test_each_strategy(strategy: str, expected: str) -> None:
    d = make(strategy=strategy).route(embedding=ZERO)
    assert d.model == expected
    assert d.strategy == strategy
    assert d.reason.startswith(strategy)


def test_balanced_utility_by_hand() -> None:
    # u = 1*q - 0.5*cost/0.05 + 0.1*speed
    d = make(strategy="balanced").route(embedding=ZERO)
    assert d.score == pytest.approx(0.75 - 0.5 * 0.2 + 0.1 * 0.5)
    alts = {a["model"]: a["score"] for a in d.alternatives}
    assert alts["small"] == pytest.approx(0.60 - 0.5 * 0.02 + 0.1 * 1.0)
    assert alts["large"] == pytest.approx(0.90 - 0.5 * 1.0 + 0.1 / 6)
    # a small cost weight makes quality win
    assert make(strategy="balanced", cost_weight=0.1).route(embedding=ZERO).model == "large"


def test_priority_override_and_aliases() -> None:
    r = make(strategy="quality")
    assert r.route(embedding=ZERO).model == "large"
    assert r.route(embedding=ZERO, priority="speed").model == "small"
    assert r.route(embedding=ZERO, priority="cost").model == "small"
    assert r.route(embedding=ZERO, priority="balanced").model == "medium"
    with pytest.raises(RouterError, match="priority"):
        r.route(embedding=ZERO, priority="fastest-please")


def test_decision_fields_and_mapping_access() -> None:
    d = make(strategy="quality").route(embedding=ZERO)
    assert isinstance(d, RouteDecision)
    assert d["model"] == "large" and d["estimated_cost"] == 0.05
    assert d["expected_quality"] == pytest.approx(0.9) and d["expected_latency"] == 3.0
    assert {"model", "estimated_cost", "expected_quality", "expected_latency", "reason",
            "alternatives"} <= set(dict(d))
    assert [a["model"] for a in d.alternatives] == ["medium", "small"]  # best first
    assert not d.fallback


# ---------------------------------------------------------------------------------------
# constraints
# ---------------------------------------------------------------------------------------
def test_max_cost_excludes_and_says_why() -> None:
    d = make(strategy="quality").route(embedding=ZERO, max_cost=0.02)
    assert d.model == "medium"
    assert "large" in d.excluded and d.excluded["large"][0].startswith("max_cost")
    assert "max_cost" in d.reason


def test_min_quality_with_cost_optimized_is_cheapest_good_enough() -> None:
    r = make(strategy="cost-optimized")
    assert r.route(embedding=ZERO, min_quality=0.7).model == "medium"
    assert r.route(embedding=ZERO, min_quality=0.8).model == "large"
    assert r.route(embedding=ZERO, min_quality=0.5).model == "small"


def test_timeout_excludes_slow_models() -> None:
    r = make(strategy="quality")
    d = r.route(embedding=ZERO, timeout_s=2.0)
    assert d.model == "medium"
    assert d.excluded["large"] == ["timeout: expected latency 3s > 2s"]
    assert r.route(embedding=ZERO, timeout=600).model == "small"


def test_fallback_when_nothing_satisfies() -> None:
    r = make(strategy="quality", fallback="medium")
    d = r.route(embedding=ZERO, min_quality=0.95)
    assert d.model == "medium" and d.fallback
    assert set(d.excluded) == {"small", "medium", "large"}
    for name in ("small", "medium", "large"):
        assert any(w.startswith("min_quality") for w in d.excluded[name])
    assert "fallback 'medium'" in d.reason and "large excluded by min_quality" in d.reason


def test_raise_when_configured_or_no_fallback() -> None:
    with pytest.raises(NoModelError) as ei:
        make(on_no_model="raise", fallback="small").route(embedding=ZERO, max_cost=0.0001, timeout_s=2.0)
    exc = ei.value
    assert set(exc.exclusions) == {"small", "medium", "large"}
    assert any(w.startswith("timeout") for w in exc.exclusions["large"])
    assert "small excluded by max_cost" in str(exc)
    with pytest.raises(NoModelError, match="no fallback model is configured"):
        make().route(embedding=ZERO, min_quality=0.99)


@pytest.mark.parametrize(("kw", "match"), [
    ({"max_cost": -1.0}, "max_cost"), ({"min_quality": 1.5}, "min_quality"), ({"timeout": float("nan")}, "timeout"),
])
def test_bad_constraint_values(kw: dict, match: str) -> None:
    with pytest.raises(RouterError, match=match):
        make().route(embedding=ZERO, **kw)


def test_per_token_cost_estimate() -> None:
    r = LLMRouter({"models": [{"name": "tok", "cost": 2.0, "cost_unit": "1m_tokens", "quality": 0.5},
                              {"name": "flat", "cost": 0.001, "cost_unit": "call", "quality": 0.5}],
                   "chars_per_token": 4.0, "output_tokens": 10, "exploration": "none"}, dim=DIM)
    text = "x" * 401  # ceil(401 / 4) + 10 = 111 tokens
    assert estimate_tokens(text, chars_per_token=4.0, output_tokens=10) == 111
    assert r.estimate_cost(text, "tok") == pytest.approx(2.0 * 111 / 1e6)
    d = r.route(text, embedding=ZERO, priority="cost")
    assert d.model == "tok" and d.estimated_cost == pytest.approx(2.22e-4)
    # a task given by its embedding alone: the expected output tokens only (input unknown)
    assert r.route(embedding=ZERO, priority="cost").estimated_cost == pytest.approx(2.0 * 10 / 1e6)


# ---------------------------------------------------------------------------------------
# budgets
# ---------------------------------------------------------------------------------------
def test_max_cost_per_task() -> None:
    d = make(strategy="quality", max_cost_per_task=0.02).route(embedding=ZERO)
    assert d.model == "medium" and d.excluded["large"][0].startswith("max_cost_per_task")


def test_run_budget_exhaustion() -> None:
    r = make(strategy="quality", run_budget=0.061, fallback="small")
    assert r.route(embedding=ZERO).model == "large"
    r.feedback(None, "large", True, cost=0.05, embedding=ZERO)
    assert r.spent == pytest.approx(0.05) and r.remaining_budget == pytest.approx(0.011)
    assert r.route(embedding=ZERO).model == "medium"
    r.feedback(None, "medium", True, cost=0.01, embedding=ZERO)
    assert r.route(embedding=ZERO).model == "small"
    r.feedback(None, "small", True, cost=0.001, embedding=ZERO)
    # nothing fits, not even the fallback: a hard stop, whatever on_no_model says
    with pytest.raises(BudgetExhaustedError, match="run_budget") as ei:
        r.route(embedding=ZERO)
    assert all(w[0].startswith("run_budget") for w in ei.value.exclusions.values())
    r.reset_run()
    assert r.route(embedding=ZERO).model == "large"


def test_budget_excluding_everything_but_fallback_fits() -> None:
    # the per-call max_cost is not a budget: the fallback may exceed it
    r = make(strategy="quality", fallback="small")
    d = r.route(embedding=ZERO, max_cost=0.0)
    assert d.model == "small" and d.fallback


# ---------------------------------------------------------------------------------------
# cascade
# ---------------------------------------------------------------------------------------
class TableOfAnswers:
    """Executor with known answers: which model solves which task; cost = the model's price."""

    price = {"small": 0.001, "medium": 0.010, "large": 0.050}
    solves = {"easy": {"small", "medium", "large"}, "mid": {"medium", "large"}, "hard": {"large"},
              "impossible": set()}

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, task: Task, model: str, patterns: list) -> Outcome:
        self.calls.append((task.text, model))
        ok = model in self.solves[task.text]
        return Outcome("ok" if ok else "wrong", float(ok), ok, cost_usd=self.price[model], latency_s=0.1)


@pytest.mark.parametrize(("task", "models", "stop", "cost"), [
    ("easy", ["small"], "success", 0.001),
    ("mid", ["small", "medium"], "success", 0.011),
    ("hard", ["small", "medium", "large"], "success", 0.061),
    ("impossible", ["small", "medium", "large"], "no_better_model", 0.061),
])
def test_cascade_cost_accounting(task: str, models: list[str], stop: str, cost: float) -> None:
    r = make(strategy="cost-optimized", retry_with_upgrade=True)
    ex = TableOfAnswers()
    res = r.run_cascade(task, ex, embedding=ZERO)
    assert [a.model for a in res.attempts] == models
    assert [m for _, m in ex.calls] == models
    assert res.stop_reason == stop
    assert res.total_cost == pytest.approx(cost)
    assert r.spent == pytest.approx(cost)  # every attempt counts toward the run
    assert res.success == (stop == "success")
    calls = {m: s["calls"] for m, s in r.stats()["models"].items()}
    assert calls == {m: int(m in models) for m in ("small", "medium", "large")}
    assert res.attempts[-1].decision.reason.startswith("retry_with_upgrade") or len(models) == 1


def test_cascade_stops_at_the_per_task_budget() -> None:
    r = make(strategy="cost-optimized", retry_with_upgrade=True, max_cost_per_task=0.02)
    res = r.run_cascade("hard", TableOfAnswers(), embedding=ZERO)
    assert [a.model for a in res.attempts] == ["small", "medium"]
    assert res.stop_reason == "budget" and not res.success
    assert res.total_cost == pytest.approx(0.011)


def test_cascade_skips_a_model_excluded_by_timeout() -> None:
    r = make(strategy="cost-optimized", retry_with_upgrade=True)
    res = r.run_cascade("hard", TableOfAnswers(), embedding=ZERO, timeout_s=2.0)
    assert [a.model for a in res.attempts] == ["small", "medium"]
    assert res.stop_reason == "constraints"


def test_cascade_without_retry_and_with_run_budget() -> None:
    r = make(strategy="cost-optimized")
    res = r.run_cascade("hard", TableOfAnswers(), embedding=ZERO)
    assert [a.model for a in res.attempts] == ["small"] and res.stop_reason == "no_retry"
    r2 = make(strategy="cost-optimized", retry_with_upgrade=True, run_budget=0.015)
    res2 = r2.run_cascade(Task("hard"), TableOfAnswers(), embedding=ZERO)
    assert [a.model for a in res2.attempts] == ["small", "medium"] and res2.stop_reason == "budget"
    assert r2.spent == pytest.approx(0.011)


def test_cascade_learn_false_counts_cost_but_does_not_learn() -> None:
    r = make(strategy="cost-optimized", retry_with_upgrade=True)
    before = r.state_dict()
    res = r.run_cascade("mid", TableOfAnswers(), embedding=np.ones(DIM) / math.sqrt(DIM), learn=False)
    assert res.total_cost == pytest.approx(0.011) and r.spent == pytest.approx(0.011)
    np.testing.assert_array_equal(r.state_dict()["weights"], before["weights"])


# ---------------------------------------------------------------------------------------
# learning and exploration
# ---------------------------------------------------------------------------------------
def _clusters(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    c = rng.integers(0, 2, n)
    centers = np.eye(DIM)[:2] * 1.0
    x = centers[c] + 0.05 * rng.standard_normal((n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True), c


@pytest.mark.parametrize("exploration", ["thompson", "linucb"])
def test_bandit_learns_which_model_solves_which_cluster(exploration: str) -> None:
    # A solves cluster 0 only, B cluster 1 only; same price and prior: only context can tell
    r = LLMRouter({"models": [{"name": "A", "cost": 1.0, "cost_unit": "call", "quality": 0.5}, {"name": "B", "cost": 1.0, "cost_unit": "call", "quality": 0.5}],
                   "strategy": "quality", "exploration": exploration, "seed": 3}, dim=DIM)
    rng = np.random.default_rng(0)
    xs, cs = _clusters(rng, 400)
    correct = 0
    for x, c in zip(xs, cs, strict=True):
        d = r.route(embedding=x)
        ok = (d.model == "A") == (c == 0)
        correct += ok
        r.feedback(None, d.model, ok, embedding=x)
    assert correct / len(xs) > 0.8
    xt, ct = _clusters(rng, 100)
    p = np.array([r.success_probabilities(embedding=x) for x in xt])
    assert np.mean((p[:, 0] > p[:, 1]) == (ct == 0)) > 0.95


def test_feedback_updates_only_the_chosen_model() -> None:
    r = make()
    before = r.state_dict()
    r.feedback(None, "medium", False, reward=0.0, cost=0.01, latency=2.0, embedding=np.ones(DIM) / 3)
    after = r.state_dict()
    changed = np.any(after["weights"] != before["weights"], axis=1)
    assert changed.tolist() == [False, True, False]
    assert np.any(after["precision"][1] > before["precision"][1])
    p = r.success_probabilities(embedding=np.ones(DIM) / 3)
    assert p[1] < 0.75 and p[0] == pytest.approx(0.6) and p[2] == pytest.approx(0.9)
    # expected latency: spec (worth one observation) and the observed 2.0
    assert r.stats()["models"]["medium"]["expected_latency"] == pytest.approx(1.5)


def test_deterministic_mode() -> None:
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((50, DIM))
    ys = rng.random((50, 3)) < [0.3, 0.6, 0.9]

    def trace(exploration: str, seed: int) -> list[str]:
        r = LLMRouter({"models": MODELS, "strategy": "balanced", "exploration": exploration, "seed": seed}, dim=DIM)
        out = []
        for x, y in zip(xs, ys, strict=True):
            d = r.route(embedding=x)
            assert r.route(embedding=x).model == d.model or exploration != "none"
            out.append(d.model)
            r.feedback(None, d.model, bool(y[r.index[d.model]]), embedding=x)
        return out

    assert trace("none", 0) == trace("none", 99)  # no randomness at all
    assert trace("thompson", 5) == trace("thompson", 5)  # seeded exploration is reproducible
    assert trace("thompson", 5) != trace("none", 0)  # and it does explore


def test_head_probs_blend_grows_with_experience() -> None:
    r = make(prior_strength=10.0, head_weight=0.5)
    x = np.ones(DIM) / math.sqrt(DIM)
    # a fresh router ignores the (untrained) head
    np.testing.assert_allclose(r.success_probabilities(embedding=x, head_probs=[1.0, 1.0, 1.0]), [0.6, 0.75, 0.9])
    for _ in range(10):
        r.feedback(None, "small", True, embedding=x)
    base = r.success_probabilities(embedding=x)
    blended = r.success_probabilities(embedding=x, head_probs={"small": 0.0})
    b = 0.5 * 10 / (10 + 10)
    assert blended[0] == pytest.approx((1 - b) * base[0])
    assert blended[1:] == pytest.approx(base[1:])
    d = r.route(embedding=x, head_probs=np.array([0.0, 0.5, 0.5]), priority="quality")
    assert d.expected_quality == pytest.approx(0.9)


@pytest.mark.parametrize(("head", "match"), [
    ([0.5, 0.5], "expected 3"), ({"nope": 0.5}, "unknown model"), ([0.5, 1.5, 0.5], r"\[0, 1\]"),
    ({"small": float("nan")}, "finite"),
])
def test_bad_head_probs(head, match: str) -> None:
    with pytest.raises(RouterError, match=match):
        make().route(embedding=ZERO, head_probs=head)


# ---------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------
def test_text_tasks_use_the_embedder_and_feedback_reuses_it() -> None:
    emb = HashingEmbedder(DIM)
    r = make(strategy="quality")
    assert r.route("write a parser").model == "large"
    assert r.route(Task("write a parser")).model == "large"
    r.feedback("write a parser", "large", False)
    r2 = make(strategy="quality")
    r2.feedback(None, "large", False, embedding=emb.embed_one("write a parser"))
    np.testing.assert_allclose(r.state_dict()["weights"], r2.state_dict()["weights"], atol=1e-6)
    with pytest.raises(RouterError, match="embedder .* has dimension 16"):
        LLMRouter({"models": MODELS}, dim=DIM, embedder=HashingEmbedder(16))


@pytest.mark.parametrize(("emb", "match"), [
    (np.zeros(DIM + 1), "shape"), ([float("nan")] * DIM, "NaN"), ("abc", "not numeric|shape"),
])
def test_bad_embedding_leaves_state_unchanged(emb, match: str) -> None:
    r = make()
    before = r.state_dict()
    with pytest.raises(RouterError, match=match):
        r.route(embedding=emb)
    with pytest.raises(RouterError, match=match):
        r.feedback(None, "small", True, embedding=emb)
    after = r.state_dict()
    for k in ("weights", "precision", "calls"):
        np.testing.assert_array_equal(after[k], before[k])


@pytest.mark.parametrize(("kw", "match"), [
    ({"model": "huge"}, "unknown model 'huge'"),
    ({"success": 1}, "success must be a bool"),
    ({"reward": 2.0}, "reward"),
    ({"cost": -0.1}, "cost"),
    ({"latency": float("inf")}, "latency"),
])
def test_bad_feedback(kw: dict, match: str) -> None:
    r = make()
    args = {"model": "small", "success": True, "reward": 1.0, "cost": 0.0, "latency": 0.1, **kw}
    with pytest.raises(RouterError, match=match):
        r.feedback(None, args.pop("model"), args.pop("success"), embedding=ZERO, **args)
    assert r.spent == 0.0 and r.stats()["models"]["small"]["calls"] == 0


# ---------------------------------------------------------------------------------------
# construction errors
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cfg", "exc", "match"), [
    ({"models": []}, RouterError, "at least one model"),
    ({"models": MODELS, "fallback": "gpt-9"}, ConfigError, "fallback: unknown model 'gpt-9'"),
    ({"models": [{"name": "a", "cost": -1.0}]}, ConfigError, "cost: must be >= 0"),
    ({"models": [{"name": "a", "quality": 1.5}]}, ConfigError, "quality: must be <= 1"),
    ({"models": [{"name": "a", "quality": -0.1}]}, ConfigError, "quality: must be >= 0"),
    ({"models": [{"name": "a"}, {"name": "a"}]}, ConfigError, "duplicate"),
    ({"models": [{"name": "a"}], "head_weight": 2.0}, ConfigError, "head_weight"),
    ({"models": [{"name": "a"}], "strategy": "qualty"}, ConfigError, "did you mean 'quality'"),
])
def test_bad_config_at_construction(cfg: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        LLMRouter(cfg, dim=DIM)


def test_bad_dim() -> None:
    with pytest.raises(RouterError, match="dim"):
        LLMRouter({"models": MODELS}, dim=0)


def test_config_object_accepted() -> None:
    cfg = LLMRouterConfig.from_dict({"models": MODELS, "strategy": "speed"})
    assert LLMRouter(cfg, dim=DIM).route(embedding=ZERO).model == "small"


# ---------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------
def _trained(seed: int, n: int = 30) -> LLMRouter:
    r = make(strategy="quality", exploration="thompson", seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.standard_normal(DIM)
        d = r.route(embedding=x)
        r.feedback(None, d.model, bool(rng.random() < 0.5), cost=0.001, latency=0.2, embedding=x)
    return r


def test_state_round_trip_through_a_checkpoint(tmp_path) -> None:
    r = _trained(0)
    path = tmp_path / "router.ckpt"
    codec.write_checkpoint(path, r.state_dict())
    r2 = make(strategy="quality")
    r2.load_state_dict(codec.read_checkpoint(path))
    x = np.linspace(-1, 1, DIM)
    np.testing.assert_allclose(r2.success_probabilities(embedding=x), r.success_probabilities(embedding=x))
    assert r2.spent == pytest.approx(r.spent) and r2.stats()["models"] == r.stats()["models"]


def test_load_state_refuses_foreign_state_and_keeps_its_own() -> None:
    r = _trained(1)
    other = LLMRouter({"models": [{"name": "x"}]}, dim=DIM)
    before = r.state_dict()
    with pytest.raises(RouterError, match="models"):
        r.load_state_dict(other.state_dict())
    bad = r.state_dict()
    bad["weights"] = bad["weights"][:, :3]
    with pytest.raises(RouterError, match="weights"):
        r.load_state_dict(bad)
    with pytest.raises(RouterError, match="dim"):
        r.load_state_dict({**before, "dim": 99})
    np.testing.assert_array_equal(r.state_dict()["weights"], before["weights"])


def test_merge_states_adds_information_without_double_counting() -> None:
    a, b = _trained(2), _trained(3)
    merged = a.merge_states([a.state_dict(), b.state_dict()])
    sa, sb = a.state_dict(), b.state_dict()
    np.testing.assert_allclose(merged["precision"], sa["precision"] + sb["precision"] - sa["prior_precision"])
    assert merged["calls"].sum() == 60 and merged["spent"] == pytest.approx(0.06)
    # agents that continue from the merged state: merging with it as base counts only new data
    c = make(strategy="quality")
    c.load_state_dict(merged)
    again = c.merge_states([merged, merged], base=merged)
    np.testing.assert_allclose(again["weights"], merged["weights"])
    np.testing.assert_allclose(again["precision"], merged["precision"])
    with pytest.raises(RouterError, match="at least one"):
        a.merge_states([])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=DIM, max_size=DIM), st.booleans())
def test_feedback_moves_the_estimate_toward_the_label(xs: list[float], success: bool) -> None:
    x = np.array(xs)
    r = make()
    p0 = r.success_probabilities(embedding=x)[1]
    r.feedback(None, "medium", success, embedding=x)
    p1 = r.success_probabilities(embedding=x)[1]
    assert (p1 >= p0) if success else (p1 <= p0)


# ---------------------------------------------------------------------------------------
# engine wiring: SONA.route asks the router with the head's probabilities; learn feeds it
# ---------------------------------------------------------------------------------------
def test_engine_routes_through_the_router_and_learn_feeds_it(tmp_path) -> None:
    from swarm_sona.core.trajectory import Trajectory
    from swarm_sona.engine.sona import SONA

    cfg = {"dim": 16, "mlp_hidden": 16, "background_every": 0,
           "llm_router": {"models": MODELS, "strategy": "quality", "exploration": "none"}}
    probe = SONA(cfg)
    router = LLMRouter(probe.config.llm_router, dim=16)
    sona = SONA(cfg, router=router)
    d = sona.route("refactor the parser", max_cost=0.02)
    assert isinstance(d, RouteDecision) and d["model"] == "medium"
    assert "large" in d.excluded
    e = sona.embed("refactor the parser")
    before = router.success_probabilities(embedding=e)[1]
    sona.learn(Trajectory(task="refactor the parser", embedding=e, model="medium", reward=0.0, success=False,
                          cost_usd=0.01, latency_s=1.0))
    assert router.stats()["models"]["medium"]["calls"] == 1 and router.spent == pytest.approx(0.01)
    assert router.success_probabilities(embedding=e)[1] < before
    # the head's probabilities reach the router once the model has experience
    for _ in range(5):
        sona.learn(Trajectory(task="refactor the parser", embedding=e, model="medium", reward=0.0, success=False))
    head = sona.forward(e)["router_probs"]
    mean = router.success_probabilities(embedding=e)
    blended = router.success_probabilities(embedding=e, head_probs=head)
    assert blended[1] != pytest.approx(mean[1]) and blended[0] == pytest.approx(mean[0])
    # checkpoints carry the router's state
    path = tmp_path / "sona.ckpt"
    sona.save(path)
    fresh = LLMRouter(probe.config.llm_router, dim=16)
    SONA.load(path, router=fresh)
    np.testing.assert_allclose(fresh.success_probabilities(embedding=e), mean)


# ---------------------------------------------------------------------------------------
# batched routing and feedback: the same as one call per task, in order
# ---------------------------------------------------------------------------------------
def _pair(exploration: str) -> tuple[LLMRouter, LLMRouter]:
    cfg = {"models": MODELS, "exploration": exploration, "seed": 5, "strategy": "balanced"}
    return LLMRouter(cfg, dim=DIM), LLMRouter(cfg, dim=DIM)


@pytest.mark.parametrize("exploration", ["thompson", "linucb", "none"])
def test_route_batch_and_feedback_batch_equal_one_call_per_task(exploration: str) -> None:
    a, b = _pair(exploration)
    rng = np.random.default_rng(3)
    texts = [f"task {i}" for i in range(40)]
    for _ in range(3):   # decisions and learning stay identical over several rounds
        E = rng.normal(size=(40, DIM))
        H = rng.uniform(size=(40, 3))
        one = [a.route(t, embedding=e, head_probs=h, max_cost=0.02) for t, e, h in zip(texts, E, H, strict=True)]
        many = b.route_batch(texts, embeddings=E, head_probs=H, max_cost=0.02)
        assert [d.model for d in one] == [d.model for d in many]
        assert [d.reason for d in one] == [d.reason for d in many] and [d.excluded for d in one] == [d.excluded for d in many]
        np.testing.assert_allclose([d.expected_quality for d in one], [d.expected_quality for d in many], atol=1e-12)
        ok = rng.uniform(size=40) < 0.6
        lat = [None if i % 5 == 0 else 0.5 + i / 40 for i in range(40)]
        for t, d, e, s, la in zip(texts, one, E, ok, lat, strict=True):
            a.feedback(t, d.model, bool(s), reward=0.8 * s, cost=d.estimated_cost, latency=la, embedding=e)
        b.feedback_batch(texts, [d.model for d in many], [bool(s) for s in ok], [0.8 * s for s in ok],
                         [d.estimated_cost for d in many], lat, embeddings=E)
        for k in ("W", "P", "V", "calls", "lat_sum"):
            np.testing.assert_array_equal(getattr(a.posterior, k), getattr(b.posterior, k))
        assert a.stats() == b.stats()
    # text-only rows: embedded in one call; feedback reuses the last routed features like feedback() does
    assert a.route("prove it", max_cost=0.02).model == b.route_batch(["prove it"], max_cost=0.02)[0].model
    a.feedback("prove it", "small", True)
    b.feedback_batch(["prove it"], ["small"], [True])
    np.testing.assert_array_equal(a._W, b._W)
    assert b.route_batch([], embeddings=np.zeros((0, DIM))) == []


def test_batched_calls_refuse_bad_rows_and_leave_the_router_unchanged() -> None:
    r, ref = _pair("thompson")
    E = np.zeros((3, DIM))
    W, rng_state = r._W.copy(), r._rng.bit_generator.state
    bad_E = E.copy()
    bad_E[1, 2] = np.nan
    for call, match in [
        (lambda: r.route_batch(["a", "b", "c"], embeddings=bad_E), "NaN or inf"),
        (lambda: r.route_batch(["a", "b"], embeddings=E), r"shape \(3, 8\), expected \(2, 8\)"),
        (lambda: r.route_batch(["a", "b", "c"], embeddings=E, head_probs=np.full((3, 3), 1.5)), "probabilities"),
        (lambda: r.route_batch("abc", embeddings=E), "sequence of tasks"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small", "nope", "large"], [True] * 3, embeddings=E), "nope"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True, 1, True], embeddings=E), "bool"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True] * 3, costs=[0, -1, 0], embeddings=E), "cost"),
        (lambda: r.feedback_batch(["a", "b"], ["small"] * 3, [True] * 3, embeddings=E), "3 models for 2"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True] * 3, embeddings=bad_E), "NaN or inf"),
        # all-float chunks take the one-loop check: a bad float among good ones is still caught
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True] * 3, costs=[0.1, float("nan"), 0.2],
                                  embeddings=E), "cost must be finite"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True] * 3, costs=[0.1, float("inf"), 0.2],
                                  embeddings=E), "cost must be finite"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True] * 3, rewards=[0.5, 1.5, 0.5],
                                  embeddings=E), r"reward must be <= 1.0"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True] * 3, latencies=[0.5, -0.1, 0.5],
                                  embeddings=E), r"latency must be >= 0.0"),
        (lambda: r.feedback_batch(["a", "b", "c"], ["small"] * 3, [True] * 3, rewards=[0.5, None, "x"],
                                  embeddings=E), "reward must be a number"),
    ]:
        with pytest.raises(RouterError, match=match):
            call()
    np.testing.assert_array_equal(r._W, W)
    assert r._rng.bit_generator.state == rng_state and r.stats() == ref.stats()
