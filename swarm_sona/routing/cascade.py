"""The cascade (the guide's ``retryWithUpgrade``): route, run, and on failure retry upward.

:func:`run_cascade` routes a task, runs it with the user's executor and, with
``retry_with_upgrade``, retries a failure on the next model up the quality order (this task's
expected qualities at the start) until success, the models or the budgets run out. Every
attempt's actual cost (the executor's ``cost_usd``, else the response usage priced by
:meth:`~swarm_sona.routing.pricing.Pricing.price`) counts toward ``max_cost_per_task`` and the run budget: before each
attempt the model's estimated cost must fit what the per-task budget has left after the
earlier attempts (so the sum stays within it whenever the estimates are right).

Example:
    >>> from swarm_sona.core.executor import Outcome
    >>> from swarm_sona.routing import LLMRouter
    >>> r = LLMRouter({"models": [{"name": "s", "cost": 1, "quality": 0.6, "costUnit": "call"},
    ...     {"name": "b", "cost": 5, "quality": 0.9, "costUnit": "call"}], "strategy": "cost-optimized",
    ...     "retry_with_upgrade": True, "exploration": "none"}, dim=4)
    >>> ex = lambda t, m, p: Outcome("", float(m == "b"), m == "b", cost_usd=float(1 if m == "s" else 5))
    >>> res = run_cascade(r, "hard task", ex)
    >>> [a.model for a in res.attempts], res.total_cost, res.success
    (['s', 'b'], 6.0, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm_sona.core.executor import Executor, Outcome, Task
from swarm_sona.routing.decision import BUDGET_CONSTRAINTS, RouteDecision, RouteRequest
from swarm_sona.routing.errors import RouterError

if TYPE_CHECKING:  # the facade imports this module; the type only
    from swarm_sona.routing.router import LLMRouter

__all__ = ["Attempt", "CascadeResult", "run_cascade"]


@dataclass
class Attempt:
    """One attempt of a cascade: the decision and what the executor returned."""

    model: str
    decision: RouteDecision
    outcome: Outcome


@dataclass
class CascadeResult:
    """The result of :func:`run_cascade`.

    ``stop_reason``: ``success``, ``no_retry`` (retry_with_upgrade is off), ``no_better_model``,
    ``budget`` (better models exist but the budgets exclude them), ``constraints`` (they are
    excluded by max_cost / timeout) or ``error`` (an infrastructure failure, ``Outcome.error_kind``:
    not the model failing the task, so no upgrade and no feedback; its cost counts).
    """

    attempts: list[Attempt]
    stop_reason: str

    @property
    def outcome(self) -> Outcome:
        """The last attempt's outcome."""
        return self.attempts[-1].outcome

    @property
    def model(self) -> str:
        """The last model tried."""
        return self.attempts[-1].model

    @property
    def success(self) -> bool:
        """Whether the last attempt succeeded."""
        return self.attempts[-1].outcome.success

    @property
    def total_cost(self) -> float:
        """Cost of every attempt."""
        return float(sum(a.outcome.cost_usd for a in self.attempts))

    @property
    def total_latency(self) -> float:
        """Latency of every attempt."""
        return float(sum(a.outcome.latency_s for a in self.attempts))


def run_cascade(router: LLMRouter, task: Task | str, executor: Executor, request: RouteRequest | None = None,
                *, patterns: list[dict[str, Any]] | None = None, learn: bool = True,
                on_attempt: Callable[[Task, str, Outcome], None] | None = None) -> CascadeResult:
    """Run ``task`` through ``router``'s cascade (module docs); ``request`` carries the
    per-call options; with ``learn`` each attempt is fed to ``router.feedback`` (else only
    its cost is added to the run's spend). ``on_attempt(task, model, outcome)``: called with
    each attempt (its spend priced) *instead*, before the next model is chosen: it gives the
    router its feedback itself (an engine's instant loop feeds its router)."""
    req = request or RouteRequest()
    task_obj = task if isinstance(task, Task) else Task(text=router.task_text(task) or "")
    pats = list(patterns or [])
    # fix the task's features once: feedback and upgrades reuse them
    x = router.features.load(task_obj.text, req.embedding).copy()
    head = router.features.head(req.head_probs)
    mean0, _ = router.posterior.estimates(x, head, explore=False)
    prior_q = [float(m.quality) for m in router.config.models]
    order = sorted(range(len(router.names)), key=lambda i: (mean0[i], -prior_q[i]))
    decision = router.route(task_obj, embedding=x[:-1], head_probs=req.head_probs, priority=req.priority,
                            max_cost=req.max_cost, min_quality=req.min_quality, timeout_s=req.timeout_s)
    attempts: list[Attempt] = []
    task_spent = 0.0
    while True:
        outcome = executor(task_obj, decision.model, pats)
        if not isinstance(outcome, Outcome):
            raise RouterError(f"executor returned {type(outcome).__name__}, expected Outcome")
        outcome = router.pricing.price(router.index[decision.model], outcome)   # its spend
        attempts.append(Attempt(decision.model, decision, outcome))
        task_spent += outcome.cost_usd
        if on_attempt is not None:
            on_attempt(task_obj, decision.model, outcome)
        elif learn and outcome.error_kind is None:
            router.feedback(task_obj, decision.model, outcome.success, outcome.reward, outcome.cost_usd,
                            outcome.latency_s, embedding=x[:-1])
        else:
            router.spent += outcome.cost_usd
        if outcome.success:
            return CascadeResult(attempts, "success")
        if outcome.error_kind is not None:    # infrastructure, not the model: no upgrade
            return CascadeResult(attempts, "error")
        if not router.config.retry_with_upgrade:
            return CascadeResult(attempts, "no_retry")
        nxt, stop = _upgrade(router, task_obj, x, head, order, [a.model for a in attempts], req, task_spent)
        if nxt is None:
            return CascadeResult(attempts, stop)
        decision = nxt


def _upgrade(router: LLMRouter, task: Task, x: np.ndarray, head: list[float | None] | None, order: list[int],
             tried: list[str], req: RouteRequest, task_spent: float) -> tuple[RouteDecision | None, str]:
    """The next model up that the constraints and what the budgets have left allow."""
    names, decider = router.names, router.decider
    pos = order.index(router.index[tried[-1]])
    higher = [i for i in order[pos + 1:] if names[i] not in tried]
    if not higher:
        return None, "no_better_model"
    costs = router.pricing.costs(task.text)
    mean, _ = router.posterior.estimates(x, head, explore=False)
    max_cost = None if req.max_cost is None else float(req.max_cost)
    caps = decider.caps(max_cost, task_spent, router.spent)
    lats = router.posterior.exp_lat
    budget_only = True
    for i in higher:
        why = decider.exclusions(costs[i], mean[i], lats[i], caps, None, req.timeout_s)
        if not why:
            others = [decider.alternative(j, costs, mean, None, ["not the next model up"]) for j in higher if j != i]
            return RouteDecision(
                model=names[i], estimated_cost=costs[i], expected_quality=mean[i], expected_latency=lats[i],
                reason=f"retry_with_upgrade: {tried[-1]!r} failed; {names[i]!r} is the next model up",
                alternatives=others, strategy="upgrade", score=mean[i]), ""
        budget_only = budget_only and all(r.startswith(BUDGET_CONSTRAINTS) for r in why)
    return None, "budget" if budget_only else "constraints"
