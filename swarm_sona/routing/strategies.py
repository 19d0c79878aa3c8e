"""Routing strategies: how the feasible models are ranked, as a registry a user can add to.

A strategy is a function ``fn(model, quality, cost, speed, ctx) -> score`` called once per
feasible model; the highest score wins (a tuple compares element by element, so later
elements break ties; the first element is reported as the decision's ``score``). ``quality``
is the decision estimate (with exploration), ``cost`` the estimated USD for this task,
``speed`` in (0, 1], ``ctx`` a :class:`StrategyContext` (the config and the dearest model's
estimate for the same task). Built in:

- ``quality``: highest expected quality (ties: cheaper).
- ``speed``: fastest (ties: higher quality, then cheaper).
- ``cost-optimized``: cheapest (ties: higher quality). Combine with ``min_quality`` to get
  "the cheapest model good enough for this task".
- ``balanced``: highest ``quality_weight * q - cost_weight * cost / max_cost + speed_weight * speed``
  (costs normalised by the dearest model's estimate for the same task).

:func:`register_strategy` adds one: its name is then valid as ``LLMRouterConfig.strategy`` and
as a per-call ``priority``. A registration lives in one process; a swarm's agents run in Ray
workers, so a config may instead name the function as ``"package.module:function"``: the
router imports it where it is built (the module must be importable there) and registers it
under that name.

Example:
    >>> from swarm_sona.routing.strategies import register_strategy, get_strategy, StrategyContext
    >>> register_strategy("doc-longest-name", lambda model, q, cost, speed, ctx: (len(model), q))
    >>> get_strategy("doc-longest-name")("gpt-4", 0.9, 1.0, 0.5, StrategyContext(None, 1.0))
    (5, 0.9)
    >>> unregister_strategy("doc-longest-name")
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from swarm_sona.core.references import import_reference, is_reference
from swarm_sona.routing.config import ROUTER_STRATEGY_NAMES, LLMRouterConfig
from swarm_sona.routing.errors import RouterError

__all__ = ["STRATEGIES", "PRIORITY_ALIASES", "StrategyContext", "StrategyFn", "register_strategy",
           "unregister_strategy", "get_strategy", "resolve_priority"]


@dataclass(slots=True)
class StrategyContext:
    """What a strategy may need beyond one model's figures.

    ``config``: the router's config (weights for ``balanced``); ``top_cost``: the dearest
    model's estimated cost for this task (to normalise costs).

    Example:
        >>> StrategyContext(None, 2.0).top_cost
        2.0
    """

    config: LLMRouterConfig | None
    top_cost: float


#: ``fn(model, quality, cost, speed, ctx) -> float | tuple[float, ...]``; higher is better
StrategyFn = Callable[[str, float, float, float, StrategyContext], "float | tuple[float, ...]"]


def _quality(model: str, q: float, cost: float, speed: float, ctx: StrategyContext) -> tuple[float, ...]:
    return (q, -cost)


def _speed(model: str, q: float, cost: float, speed: float, ctx: StrategyContext) -> tuple[float, ...]:
    return (speed, q, -cost)


def _cost_optimized(model: str, q: float, cost: float, speed: float, ctx: StrategyContext) -> tuple[float, ...]:
    return (-cost, q)


def _balanced(model: str, q: float, cost: float, speed: float, ctx: StrategyContext) -> tuple[float, ...]:
    cfg = ctx.config
    if cfg is None:
        raise RouterError("the balanced strategy needs the router config (its weights)")
    c = cost / ctx.top_cost if ctx.top_cost > 0 else 0.0
    return (cfg.quality_weight * q - cfg.cost_weight * c + cfg.speed_weight * speed, -cost)


#: name -> strategy function (use :func:`register_strategy` to add, so configs accept the name)
STRATEGIES: dict[str, StrategyFn] = {
    "quality": _quality, "speed": _speed, "cost-optimized": _cost_optimized, "balanced": _balanced}
#: per-call ``priority`` spellings that mean a built-in strategy
PRIORITY_ALIASES = {"cost": "cost-optimized", "cost_optimized": "cost-optimized", "costOptimized": "cost-optimized",
                    "cheap": "cost-optimized", "fast": "speed", "latency": "speed"}
_BUILTIN = frozenset(STRATEGIES)


def register_strategy(name: str, fn: StrategyFn, *, replace: bool = False) -> None:
    """Add strategy ``name`` (see the module docs for ``fn``); ``replace`` allows redefining a
    user strategy (the built-in four cannot be replaced). Raises :class:`RouterError` for a
    bad name, a non-callable or a name already taken.

    Example:
        >>> register_strategy("doc-cheap-then-fast", lambda m, q, c, s, ctx: (-c, s))
        >>> "doc-cheap-then-fast" in STRATEGIES
        True
        >>> unregister_strategy("doc-cheap-then-fast")
    """
    if not isinstance(name, str) or not name.strip():
        raise RouterError(f"strategy name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise RouterError(f"strategy {name!r}: fn must be callable, got {type(fn).__name__}")
    if name in _BUILTIN or name in PRIORITY_ALIASES:
        raise RouterError(f"strategy {name!r} is built in and cannot be replaced")
    if name in STRATEGIES and not replace:
        raise RouterError(f"strategy {name!r} is already registered (pass replace=True to redefine it)")
    STRATEGIES[name] = fn
    if name not in ROUTER_STRATEGY_NAMES:
        ROUTER_STRATEGY_NAMES.append(name)


def unregister_strategy(name: str) -> None:
    """Remove a user strategy (routers already built with it keep their function).

    Example:
        >>> unregister_strategy("quality")
        Traceback (most recent call last):
        ...
        swarm_sona.routing.errors.RouterError: strategy 'quality' is built in and cannot be removed
    """
    if name in _BUILTIN:
        raise RouterError(f"strategy {name!r} is built in and cannot be removed")
    if name not in STRATEGIES:
        raise RouterError(f"no strategy {name!r} is registered")
    del STRATEGIES[name]
    if name in ROUTER_STRATEGY_NAMES:
        ROUTER_STRATEGY_NAMES.remove(name)


def resolve_priority(priority: str) -> str:
    """The strategy name a per-call ``priority`` means (aliases resolved); raises
    :class:`RouterError` naming the valid ones and the closest.

    Example:
        >>> resolve_priority("cost"), resolve_priority("quality")
        ('cost-optimized', 'quality')
    """
    if not isinstance(priority, str):
        raise RouterError(f"priority must be a strategy name, got {priority!r}")
    s = PRIORITY_ALIASES.get(priority, priority)
    if s not in STRATEGIES and is_reference(s):
        _import_strategy(s)
    if s not in STRATEGIES:
        valid = [*STRATEGIES, *PRIORITY_ALIASES]
        close = difflib.get_close_matches(priority, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RouterError(f"priority must be one of {list(STRATEGIES)} (or 'cost', 'fast'), got {priority!r}{hint}")
    return s


def _import_strategy(ref: str) -> None:
    """Import ``"package.module:function"`` and register it under ``ref``."""
    fn = import_reference(ref, "strategy", RouterError)
    if not callable(fn):
        raise RouterError(f"strategy {ref!r}: {ref.partition(':')[2]!r} is not a function")
    STRATEGIES[ref] = fn


def get_strategy(name: str) -> StrategyFn:
    """The function of strategy ``name`` (or of a priority alias).

    Example:
        >>> get_strategy("speed")("m", 0.5, 1.0, 0.7, StrategyContext(None, 1.0))
        (0.7, 0.5, -1.0)
    """
    return STRATEGIES[resolve_priority(name)]
