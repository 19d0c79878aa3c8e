"""The learned LLM router: pricing, strategies (a registry), the bandit posterior, decisions
under constraints, the cascade, and the :class:`LLMRouter` facade composing them.

Example:
    >>> from swarm_sona.routing import LLMRouter, register_strategy
    >>> LLMRouter({"models": [{"name": "m"}], "exploration": "none"}, dim=4).route("t").model
    'm'
"""

from swarm_sona.routing.cascade import Attempt, CascadeResult, run_cascade
from swarm_sona.routing.decision import RouteDecision, RouteRequest, parse_route_request
from swarm_sona.routing.errors import BudgetExhaustedError, NoModelError, RouterError
from swarm_sona.routing.posterior import EVIDENCE_KEYS, BanditPosterior
from swarm_sona.routing.pricing import Pricing, estimate_tokens
from swarm_sona.routing.router import LLMRouter
from swarm_sona.routing.strategies import (
    STRATEGIES,
    StrategyContext,
    get_strategy,
    register_strategy,
    unregister_strategy,
)

__all__ = [
    "Attempt", "BanditPosterior", "BudgetExhaustedError", "CascadeResult", "EVIDENCE_KEYS", "LLMRouter",
    "NoModelError", "Pricing", "RouteDecision", "RouteRequest", "RouterError", "STRATEGIES", "StrategyContext",
    "estimate_tokens", "get_strategy", "parse_route_request", "register_strategy", "run_cascade",
    "unregister_strategy",
]
