"""A routing decision: the request in the guide's shape, the constraints, and the choice.

Request. :func:`parse_route_request` reads the integration guide's ``route({task, priority,
maxCost, minQuality, timeout})`` from one mapping (camelCase or snake_case keys) and/or keyword
arguments; ``timeout`` is in milliseconds as in the guide, ``timeout_s`` the same limit in
seconds (give one). An unknown key is an error naming it and the closest valid one.

Constraints (per call, plus the budgets of the config) are hard limits on the *expected*
values, whatever the exploration: ``max_cost`` (USD, estimated), ``min_quality`` (the mean
success estimate, not the exploration draw), the timeout (expected latency; a model whose
latency is unknown is not excluded), ``max_cost_per_task`` (over all attempts of a cascade)
and ``run_budget`` (cost reported so far). Exploration only ranks the feasible models. When
every model is excluded the decision names which constraint excluded which model, then uses
the ``fallback`` model (``fallback=True`` on the decision, even if the fallback misses
``min_quality``/``max_cost``/timeout), or raises :class:`NoModelError` (``on_no_model='raise'``
or no fallback). Budgets stay hard: if they exclude the fallback too, it raises
:class:`BudgetExhaustedError`.

Example:
    >>> req = parse_route_request({"task": "code-review", "priority": "quality", "maxCost": 5.0,
    ...                            "minQuality": 0.9, "timeout": 30000})
    >>> req.priority, req.max_cost, req.min_quality, req.timeout_s
    ('quality', 5.0, 0.9, 30.0)
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarm_sona.core.config import camel_to_snake, snake_to_camel
from swarm_sona.core.executor import Task
from swarm_sona.routing.config import LLMRouterConfig
from swarm_sona.routing.errors import BudgetExhaustedError, NoModelError, RouterError
from swarm_sona.routing.pricing import format_usd
from swarm_sona.routing.strategies import STRATEGIES, StrategyContext, StrategyFn, resolve_priority

__all__ = ["RouteDecision", "RouteRequest", "Constraints", "Decider", "parse_route_request", "check_number", "check_numbers",
           "REQUEST_KEYS", "BUDGET_CONSTRAINTS"]

BUDGET_CONSTRAINTS = ("max_cost_per_task", "run_budget")
_EPS = 1e-12
#: the keys of a route request (snake_case; camelCase spellings are accepted too)
REQUEST_KEYS = ("task", "embedding", "head_probs", "priority", "max_cost", "min_quality", "timeout", "timeout_s")


def check_number(v: Any, what: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """``v`` as a finite float within ``[lo, hi]``, else :class:`RouterError` naming ``what``.

    Example:
        >>> check_number(2, "max_cost", lo=0.0)
        2.0
    """
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise RouterError(f"{what} must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise RouterError(f"{what} must be finite, got {v!r}")
    if lo is not None and f < lo:
        raise RouterError(f"{what} must be >= {lo}, got {v!r}")
    if hi is not None and f > hi:
        raise RouterError(f"{what} must be <= {hi}, got {v!r}")
    return f


def check_numbers(vs: Sequence[Any], what: str, *, lo: float | None = None, hi: float | None = None) -> list[float]:
    """:func:`check_number` of every value (a chunk's costs, rewards...): one plain loop when
    they are all finite floats in range, the per-value check (and its error) otherwise.

    Example:
        >>> check_numbers([0.5, 1.0], "reward", lo=0.0, hi=1.0)
        [0.5, 1.0]
    """
    low = -math.inf if lo is None else lo
    high = math.inf if hi is None else hi
    if all(type(v) is float and low <= v <= high and -math.inf < v < math.inf for v in vs):
        return list(vs)
    return [check_number(v, what, lo=lo, hi=hi) for v in vs]


@dataclass(frozen=True)
class RouteRequest:
    """One route call's input (see :func:`parse_route_request`); ``timeout_s`` in seconds.

    Example:
        >>> RouteRequest(task="t", timeout_s=2.0).timeout_s
        2.0
    """

    task: Task | str | None = None
    embedding: Any = None
    head_probs: Any = None
    priority: str | None = None
    max_cost: float | None = None
    min_quality: float | None = None
    timeout_s: float | None = None


def _key(raw: Any) -> str:
    if not isinstance(raw, str):
        raise RouterError(f"route request keys must be strings, got {raw!r}")
    k = camel_to_snake(raw)
    if k not in REQUEST_KEYS:
        valid = [*REQUEST_KEYS, *(snake_to_camel(x) for x in REQUEST_KEYS)]
        close = difflib.get_close_matches(raw, valid, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RouterError(f"route: unknown option {raw!r}{hint}; options are {list(REQUEST_KEYS)} "
                          "(or their camelCase spellings)")
    return k


def parse_route_request(request: Mapping[str, Any] | None = None, /, **options: Any) -> RouteRequest:
    """A :class:`RouteRequest` from the guide's mapping and/or keyword options (snake or camel
    case); a key given twice (in both, or in two spellings) is an error, as is giving both
    ``timeout`` (ms) and ``timeout_s``.

    Example:
        >>> parse_route_request(task="t", maxCost=1, timeout_s=3).timeout_s
        3.0
        >>> parse_route_request({"task": "t", "minQualty": 0.9})
        Traceback (most recent call last):
        ...
        swarm_sona.routing.errors.RouterError: route: unknown option 'minQualty' (did you mean 'minQuality'?); \
options are ['task', 'embedding', 'head_probs', 'priority', 'max_cost', 'min_quality', 'timeout', 'timeout_s'] \
(or their camelCase spellings)
    """
    if request is not None and not isinstance(request, Mapping):
        raise RouterError(f"route request must be a mapping, got {type(request).__name__}")
    got: dict[str, Any] = {}
    for source in (request or {}, options):
        for raw, v in source.items():
            k = _key(raw)
            if k in got:
                raise RouterError(f"route: option {k!r} given twice")
            got[k] = v
    timeout_s = got.get("timeout_s")
    if got.get("timeout") is not None:
        if timeout_s is not None:
            raise RouterError("route: give timeout (milliseconds) or timeout_s (seconds), not both")
        timeout_s = check_number(got["timeout"], "timeout (milliseconds)", lo=0.0) / 1000.0
    elif timeout_s is not None:
        timeout_s = check_number(timeout_s, "timeout_s", lo=0.0)
    return RouteRequest(task=got.get("task"), embedding=got.get("embedding"), head_probs=got.get("head_probs"),
                        priority=got.get("priority"), max_cost=got.get("max_cost"),
                        min_quality=got.get("min_quality"), timeout_s=timeout_s)


@dataclass(slots=True)
class Constraints:
    """Checked per-call constraints and the strategy that ranks (from :meth:`Decider.constraints`)."""

    strategy: str
    rank: StrategyFn
    max_cost: float | None
    min_quality: float | None
    timeout_s: float | None


_CAMEL = {"estimatedCost": "estimated_cost", "expectedQuality": "expected_quality",
          "expectedLatency": "expected_latency"}


@dataclass
class RouteDecision(Mapping[str, Any]):
    """The router's answer; also readable like a dict, with the guide's keys too
    (``d["model"]``, ``d["estimated_cost"]``, ``d["estimatedCost"]``), and as the guide's
    attributes (``d.estimatedCost``, ``d.expectedQuality``).

    ``alternatives``: the other models, each ``{model, estimated_cost, expected_quality,
    expected_latency, score, excluded}`` (``excluded``: the constraints that ruled it out,
    empty when it was feasible but scored lower), best first.
    """

    model: str
    estimated_cost: float
    expected_quality: float
    expected_latency: float | None
    reason: str
    alternatives: list[dict[str, Any]]
    strategy: str
    score: float
    fallback: bool = False
    excluded: dict[str, list[str]] = field(default_factory=dict)

    _KEYS = ("model", "estimated_cost", "expected_quality", "expected_latency", "reason", "alternatives",
             "strategy", "score", "fallback", "excluded")

    def __getitem__(self, key: str) -> Any:
        k = _CAMEL.get(key, key)
        if k not in self._KEYS:
            raise KeyError(key)
        return getattr(self, k)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: the guide's camelCase attribute names
        k = _CAMEL.get(name)
        if k is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self, k)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def to_dict(self, *, camel: bool = False) -> dict[str, Any]:
        """Plain dict of every field (``camel``: the guide's key spellings)."""
        return {(snake_to_camel(k) if camel else k): getattr(self, k) for k in self._KEYS}


def _first(row: tuple[tuple[float, ...], int]) -> tuple[float, ...]:
    return row[0]


class Decider:
    """Turns one task's estimates into a :class:`RouteDecision` under the constraints.

    ``latencies`` is the posterior's live list of expected latencies (read at each decision).
    """

    def __init__(self, config: LLMRouterConfig, names: Sequence[str], speeds: Sequence[float],
                 latencies: list[float | None]) -> None:
        self.config = config
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.speeds = list(speeds)
        self.latencies = latencies

    def constraints(self, priority: str | None, max_cost: Any, min_quality: Any, timeout_s: Any) -> Constraints:
        """The strategy for ``priority`` (None: the config's) and the checked constraints."""
        strategy = self.config.strategy if priority is None else resolve_priority(priority)
        rank = STRATEGIES.get(strategy)
        if rank is None:
            raise RouterError(f"strategy {strategy!r} is not registered (was it unregistered?)")
        return Constraints(
            strategy, rank,
            None if max_cost is None else check_number(max_cost, "max_cost", lo=0.0),
            None if min_quality is None else check_number(min_quality, "min_quality", lo=0.0, hi=1.0),
            None if timeout_s is None else check_number(timeout_s, "timeout_s", lo=0.0))

    def caps(self, max_cost: float | None, task_spent: float, run_spent: float) -> list[tuple[str, float]]:
        """Cost caps: the per-call ``max_cost`` and what the budgets leave."""
        caps: list[tuple[str, float]] = []
        if max_cost is not None:
            caps.append(("max_cost", max_cost))
        cfg = self.config
        if cfg.max_cost_per_task is not None:
            caps.append(("max_cost_per_task", cfg.max_cost_per_task - task_spent))
        if cfg.run_budget is not None:
            caps.append(("run_budget", cfg.run_budget - run_spent))
        return caps

    @staticmethod
    def exclusions(cost: float, q: float, lat: float | None, caps: list[tuple[str, float]],
                   min_quality: float | None, timeout_s: float | None) -> list[str]:
        """Why a model with these figures is excluded (empty: feasible)."""
        why: list[str] = []
        for label, cap in caps:
            if cost > cap + _EPS:
                left = "remaining " if label in BUDGET_CONSTRAINTS else ""
                why.append(f"{label}: estimated {format_usd(cost)} > {left}{format_usd(max(cap, 0.0))}")
        if min_quality is not None and q < min_quality:
            why.append(f"min_quality: expected {q:.3f} < {min_quality:.3f}")
        if timeout_s is not None and lat is not None and lat > timeout_s:
            why.append(f"timeout: expected latency {lat:.3g}s > {timeout_s:.3g}s")
        return why

    def decide(self, c: Constraints, costs: list[float], mean: list[float], dec: list[float],
               caps: list[tuple[str, float]]) -> RouteDecision:
        """The decision for one task: feasibility on the expected values (``mean``, ``costs``),
        ranking of the feasible models by the strategy on the decision estimates ``dec``."""
        return self.decide_batch(c, costs, [mean], [dec], caps)[0]

    def decide_batch(self, c: Constraints, costs: list[float], mean_rows: list[list[float]],
                     dec_rows: list[list[float]], caps: list[tuple[str, float]]) -> list[RouteDecision]:
        """The decisions of many tasks with the same ``costs`` (:meth:`decide` is one row of it):
        what does not depend on the task is done once for the batch (the cost caps and timeout,
        the strategy context, the cost texts).

        Example:
            >>> from swarm_sona.routing.config import LLMRouterConfig
            >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "a"}, {"name": "b"}], "strategy": "quality",
            ...                                  "exploration": "none"})
            >>> d = Decider(cfg, ["a", "b"], [0.5, 0.5], [None, None])
            >>> c = d.constraints(None, None, 0.5, None)
            >>> [x.model for x in d.decide_batch(c, [0.0, 0.0], [[0.4, 0.6], [0.9, 0.7]], [[0.4, 0.6], [0.9, 0.7]], [])]
            ['b', 'a']
        """
        lats, speeds, names = self.latencies, self.speeds, self.names
        rank, min_q, tmo = c.rank, c.min_quality, c.timeout_s
        ctx = StrategyContext(self.config, max(costs))
        fixed = [not any(cost > cap + _EPS for _, cap in caps) and not (tmo is not None and lat is not None and lat > tmo)
                 for cost, lat in zip(costs, lats, strict=True)]
        usd = [format_usd(x) for x in costs] if len(mean_rows) > 1 else None   # one decision: only the best's
        out: list[RouteDecision] = []
        for mean, dec in zip(mean_rows, dec_rows, strict=True):
            rows: list[tuple[tuple[float, ...], int]] = []
            excluded: dict[str, list[str]] = {}
            for i in range(len(names)):
                if not fixed[i] or (min_q is not None and mean[i] < min_q):
                    excluded[names[i]] = self.exclusions(costs[i], mean[i], lats[i], caps, min_q, tmo)
                    continue
                u = rank(names[i], dec[i], costs[i], speeds[i], ctx)
                rows.append((u if type(u) is tuple else (float(u),), i))  # type: ignore[arg-type]
            out.append(self._decision(c, list(costs), mean, caps, rows, excluded, usd))
        return out

    def _decision(self, c: Constraints, costs: list[float], mean: list[float], caps: list[tuple[str, float]],
                  rows: list[tuple[tuple[float, ...], int]], excluded: dict[str, list[str]],
                  usd: list[str] | None) -> RouteDecision:
        """The decision from the ranked feasible ``rows`` and the ``excluded`` models."""
        lats, names = self.latencies, self.names
        if rows:
            rows.sort(key=_first, reverse=True)
            best, fallback = rows[0][1], False
            mode = self.config.exploration
            why = (f"{c.strategy}: best of {len(rows)} feasible model(s) "
                   f"(expected quality {mean[best]:.3f}, estimated cost "
                   f"{format_usd(costs[best]) if usd is None else usd[best]}"
                   f"{'' if mode == 'none' else f', {mode} exploration'})")
            if excluded:
                why += "; excluded: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in excluded.items())
        else:
            best, why = self._no_model(excluded, costs, mean, caps)
            fallback = True
        alternatives = [self.alternative(i, costs, mean, u[0], None) for u, i in rows[1:]]
        alternatives.extend(self.alternative(self.index[k], costs, mean, None, v)
                            for k, v in excluded.items() if self.index[k] != best)
        return RouteDecision(model=names[best], estimated_cost=costs[best], expected_quality=mean[best],
                             expected_latency=lats[best], reason=why, alternatives=alternatives,
                             strategy=c.strategy, score=rows[0][0][0] if rows else float("nan"),
                             fallback=fallback, excluded=excluded)

    def alternative(self, i: int, costs: list[float], mean: list[float], score: float | None,
                    why: list[str] | None) -> dict[str, Any]:
        """One entry of :attr:`RouteDecision.alternatives`."""
        return {"model": self.names[i], "estimated_cost": costs[i], "expected_quality": mean[i],
                "expected_latency": self.latencies[i], "score": score, "excluded": list(why or ())}

    def _no_model(self, excluded: dict[str, list[str]], costs: list[float], mean: list[float],
                  caps: list[tuple[str, float]]) -> tuple[int, str]:
        detail = "; ".join(f"{k} excluded by {', '.join(v)}" for k, v in excluded.items())
        msg = f"no model satisfies the constraints: {detail}"
        only_budget = all(any(r.startswith(BUDGET_CONSTRAINTS) for r in v) for v in excluded.values())
        err = BudgetExhaustedError if only_budget else NoModelError
        if self.config.on_no_model == "raise":
            raise err(msg, excluded)
        fb = self.config.fallback
        if fb is None:
            raise err(msg + " (and no fallback model is configured)", excluded)
        i = self.index[fb]
        budget_caps = [c for c in caps if c[0] in BUDGET_CONSTRAINTS]
        over = self.exclusions(costs[i], mean[i], self.latencies[i], budget_caps, None, None)
        if over:
            raise BudgetExhaustedError(msg + f"; the fallback {fb!r} is over budget too ({', '.join(over)})",
                                       excluded)
        return i, f"fallback {fb!r}: {msg}"
