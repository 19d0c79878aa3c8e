"""Router strategies as a registry: a strategy defined here, outside the package, registered
with ``register_strategy``, changes the decisions (as the config's strategy and as a per-call
priority); the built-in four cannot be replaced; unknown names are refused with the closest."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

import swarm_sona
from swarm_sona.core.config import ConfigError
from swarm_sona.routing import (
    STRATEGIES,
    LLMRouter,
    RouterError,
    StrategyContext,
    register_strategy,
    unregister_strategy,
)
from swarm_sona.routing.config import LLMRouterConfig

DIM = 4
ZERO = np.zeros(DIM)
MODELS = [{"name": "small", "cost": 0.001, "cost_unit": "call", "quality": 0.60, "latency_s": 0.5},
          {"name": "medium", "cost": 0.010, "cost_unit": "call", "quality": 0.75, "latency_s": 1.0},
          {"name": "large", "cost": 0.050, "cost_unit": "call", "quality": 0.90, "latency_s": 3.0}]


def middle_of_the_road(model: str, quality: float, cost: float, speed: float, ctx: StrategyContext) -> float:
    """A user strategy: prefer the model whose cost is closest to half the dearest one's."""
    return -abs(cost - ctx.top_cost / 2)


@pytest.fixture
def registered() -> Iterator[str]:
    register_strategy("middle", middle_of_the_road)
    yield "middle"
    unregister_strategy("middle")


def make(**kw: object) -> LLMRouter:
    return LLMRouter({"models": MODELS, "exploration": "none", **kw}, dim=DIM)


def test_a_registered_strategy_changes_the_decisions(registered: str) -> None:
    builtin = {s: make(strategy=s).route(embedding=ZERO).model for s in ("quality", "speed", "cost-optimized")}
    assert builtin == {"quality": "large", "speed": "small", "cost-optimized": "small"}
    d = make(strategy=registered).route(embedding=ZERO)
    assert d.model == "medium" and d.strategy == "middle"           # cost 0.01 is closest to 0.025
    assert d.score == pytest.approx(-abs(0.010 - 0.025))
    # as a per-call priority over a built-in config strategy, and in the guide's request shape
    assert make(strategy="quality").route(embedding=ZERO, priority=registered).model == "medium"
    assert make(strategy="quality").route({"task": "t", "priority": registered}).model == "medium"
    # constraints still apply: without medium (max cost) the user strategy picks among the rest
    assert make(strategy=registered).route(embedding=ZERO, max_cost=0.005).model == "small"


def test_the_config_accepts_a_registered_name_only_while_registered(registered: str) -> None:
    assert LLMRouterConfig.from_dict({"models": MODELS, "strategy": registered}).strategy == registered
    unregister_strategy(registered)
    try:
        with pytest.raises(ConfigError, match="strategy: must be one of"):
            LLMRouterConfig.from_dict({"models": MODELS, "strategy": registered})
        with pytest.raises(RouterError, match="priority must be one of"):
            make().route(embedding=ZERO, priority=registered)
    finally:
        register_strategy(registered, middle_of_the_road)


def test_a_strategy_may_return_a_tuple_to_break_ties() -> None:
    register_strategy("cheap-then-slow", lambda m, q, c, s, ctx: (-round(c, 1), -s))
    try:
        # small and medium both round to cost 0.0 (large to 0.1); of the tie the slower wins
        assert make(strategy="cheap-then-slow").route(embedding=ZERO).model == "medium"
    finally:
        unregister_strategy("cheap-then-slow")


@pytest.mark.parametrize(("name", "fn", "match"), [
    ("quality", middle_of_the_road, "built in"),
    ("cost", middle_of_the_road, "built in"),
    ("", middle_of_the_road, "non-empty"),
    ("x", 3, "callable"),
])
def test_bad_registrations(name: str, fn: object, match: str) -> None:
    with pytest.raises(RouterError, match=match):
        register_strategy(name, fn)  # type: ignore[arg-type]
    assert set(STRATEGIES) >= {"quality", "speed", "cost-optimized", "balanced"}


def test_registering_twice_needs_replace(registered: str) -> None:
    with pytest.raises(RouterError, match="already registered"):
        register_strategy(registered, middle_of_the_road)
    register_strategy(registered, lambda m, q, c, s, ctx: q, replace=True)
    assert make(strategy=registered).route(embedding=ZERO).model == "large"


def test_unknown_strategy_and_priority_name_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'balanced'"):
        LLMRouterConfig.from_dict({"models": MODELS, "strategy": "balance"})
    with pytest.raises(RouterError, match="did you mean 'quality'"):
        make().route(embedding=ZERO, priority="qualty")


def test_the_top_level_package_exports_the_registry() -> None:
    assert swarm_sona.register_strategy is register_strategy


STRATEGY_MODULE = '''
def dearest_first(model, quality, cost, speed, ctx):
    """Pick the most expensive model (a user's strategy in their own package)."""
    return cost
'''


def test_a_config_can_name_a_strategy_by_import_path(tmp_path, monkeypatch) -> None:
    (tmp_path / "user_strategies.py").write_text(STRATEGY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = "user_strategies:dearest_first"
    try:
        assert make(strategy="speed").route(embedding=ZERO).model == "small"
        d = make(strategy=ref).route(embedding=ZERO)
        assert d.model == "large" and d.strategy == ref
        assert make(strategy="speed").route(embedding=ZERO, priority=ref).model == "large"
    finally:
        STRATEGIES.pop(ref, None)
    for bad, match in [("user_strategies:nope", "has no attribute 'nope'"), ("no_such_mod_xyz:f", "cannot import"),
                       (":f", "package.module:attribute")]:
        with pytest.raises(RouterError, match=match):
            make(strategy=bad)


def test_an_imported_strategy_resolves_in_a_fresh_process(tmp_path) -> None:
    """As in a Ray worker: nothing registered there, the config's import path is enough."""
    (tmp_path / "user_strategies.py").write_text(STRATEGY_MODULE)
    code = ("import numpy as np; from swarm_sona.routing import LLMRouter; "
            f"r = LLMRouter({{'models': {MODELS!r}, 'strategy': 'user_strategies:dearest_first', "
            "'exploration': 'none'}, dim=4); print(r.route(embedding=np.zeros(4)).model)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "large"
