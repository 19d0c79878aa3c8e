"""Routing through the engine: the router head's probabilities, handed to an LLMRouter or,
without one, a greedy choice by the head within ``max_cost`` / ``min_quality``.

Costs are the router config's estimates (:class:`~swarm_sona.routing.pricing.Pricing`): per
1M tokens priced by the task text's tokens, or per call.

Example:
    >>> from swarm_sona.engine.routing import HeadRouting
    >>> from swarm_sona.routing.config import LLMRouterConfig
    >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "small", "cost": 0.001, "costUnit": "call"},
    ...                                             {"name": "big", "cost": 0.03, "costUnit": "call"}]})
    >>> r = HeadRouting(cfg)
    >>> r.decide({"small": 0.6, "big": 0.9}, {"max_cost": 0.01})["model"]
    'small'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from swarm_sona.engine.errors import EngineError
from swarm_sona.routing.config import LLMRouterConfig
from swarm_sona.routing.pricing import Pricing

__all__ = ["HeadRouting", "HeadDecision", "ROUTE_CONSTRAINTS", "route_with_router"]

ROUTE_CONSTRAINTS = frozenset({"priority", "max_cost", "min_quality", "timeout"})


class HeadDecision(TypedDict):
    """A routing decision made by the router head alone."""

    model: str
    expected_quality: float
    estimated_cost: float
    head_probs: dict[str, float]
    reason: str


def route_with_router(router: Any, names: list[str], texts: list[str], E: Any, G: Any,
                      constraints: Mapping[str, Any]) -> list[Any]:
    """A batch through an attached router: its ``route_batch`` when it routes over the engine's
    models in order, else one ``route`` per task; ``G`` is the (gated) head probabilities or None."""
    if hasattr(router, "route_batch") and tuple(getattr(router, "names", ())) == tuple(names):
        return list(router.route_batch(texts, embeddings=E, head_probs=G, **constraints))
    return [router.route(t, embedding=e, head_probs=None if g is None else dict(zip(names, g.tolist(), strict=True)),
                         **constraints) for t, e, g in zip(texts, E, [None] * len(texts) if G is None else G,
                                                         strict=True)]


def check_constraints(constraints: Mapping[str, Any]) -> None:
    """EngineError naming any constraint that is not one of :data:`ROUTE_CONSTRAINTS`."""
    unknown = set(constraints) - ROUTE_CONSTRAINTS
    if unknown:
        raise EngineError(f"route: unknown constraint(s) {sorted(unknown)}; known: {sorted(ROUTE_CONSTRAINTS)}")


class HeadRouting:
    """Routing without an LLMRouter over a router config's model table (names, prices, fallback)."""

    def __init__(self, config: LLMRouterConfig) -> None:
        self.names = [m.name for m in config.models]
        self.pricing = Pricing(config)
        self.fallback = config.fallback

    def decide_request(self, head_probs: dict[str, float], req: Any) -> HeadDecision:
        """:meth:`decide` for a parsed route request (``priority`` and ``timeout`` need a router)."""
        given = {"priority": req.priority, "timeout_s": req.timeout_s}
        if any(v is not None for v in given.values()):
            raise EngineError(f"route: {sorted(k for k, v in given.items() if v is not None)} need an LLM router "
                              "(config.llm_router.models); without one only max_cost and min_quality apply")
        return self.decide(head_probs, {k: v for k, v in (("max_cost", req.max_cost), ("min_quality", req.min_quality))
                                        if v is not None}, req.task)

    def decide(self, head_probs: dict[str, float], constraints: Mapping[str, Any],
               text: str | None = None) -> HeadDecision:
        """The router head's most confident model within the constraints (ties: cheaper first);
        ``text``: the task, for per-1M-token prices."""
        unknown = set(constraints) - {"max_cost", "min_quality"}
        if unknown:
            raise EngineError(f"route: unknown constraint(s) {sorted(unknown)} without a router "
                              "(supported: max_cost, min_quality)")
        if not self.names:
            raise EngineError("route: no models configured (config.llm_router.models) and no router attached")
        max_cost = constraints.get("max_cost")
        min_q = constraints.get("min_quality")
        costs = dict(zip(self.names, self.pricing.costs(text), strict=True))
        cands = [n for n in self.names
                 if (max_cost is None or costs[n] <= max_cost) and (min_q is None or head_probs[n] >= min_q)]
        reason = "router head (no LLMRouter attached): highest predicted success"
        if not cands:
            cands = [self.fallback] if self.fallback else [min(self.names, key=lambda n: costs[n])]
            reason = "no model satisfies the constraints: fallback"
        best = max(cands, key=lambda n: (head_probs[n], -costs[n]))
        return {"model": best, "expected_quality": head_probs[best], "estimated_cost": costs[best],
                "head_probs": head_probs, "reason": reason}
