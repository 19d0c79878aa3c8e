"""Retry with upgrade over a batch (the guide's ``retryWithUpgrade`` in the swarm path).

:func:`run_with_upgrade` runs a batch of tasks, each on its first model (the router's choice),
through the executor's ``run_many`` when it has one (concurrent calls) or one call at a time;
then every task that failed its verification is run again on the next better model of its
cascade, round after round, until it succeeds or the cascade or its budget runs out. Every
attempt's cost counts toward ``max_cost_per_task``: what ``price(model, outcome)`` makes of the
outcome when given (an outcome that reports only token ``usage`` priced at the model's price,
e.g. ``lambda m, o: router.pricing.price(router.index[m], o)``,
:meth:`~swarm_sona.routing.pricing.Pricing.price`), else the outcome's ``cost_usd``; the
attempts hold the priced outcomes, so :attr:`UpgradeResult.total_cost` is their sum. An upgrade
goes only to a model whose estimated cost (``estimate_cost(task, model)``, e.g. :meth:`LLMRouter.estimate_cost
<swarm_sona.routing.router.LLMRouter.estimate_cost>`) fits what the task's budget has left after
its earlier attempts; without estimates, no upgrade starts once the spend has reached the budget.
The first attempt is not checked (the router chose it under its own constraints), so no task is
dropped.

An infrastructure failure (``Outcome.error_kind`` set: auth, 5xx after retries, timeout...) is
not the model failing the task: the cascade stops there (``stop_reason == "error"``), and the
executor's own retries and rate-limit fallbacks (:mod:`~swarm_sona.executors.limits`) are where
such a call is retried.

``run_batch(tasks, models, patterns)`` replaces the executor's own batch call where the caller
splits it differently (an agent's executor copies): a result that is an exception instead of an
Outcome ends that task's cascade (``stop_reason == "exception"``, the exception in ``error``).

The cascade: a sequence of model names from worse to better (the same for every task), or a
function ``task -> sequence`` (per task; :func:`router_cascade` orders a router's models by its
expected success on the task, as :func:`swarm_sona.routing.cascade.run_cascade` does).

Example:
    >>> from swarm_sona.core.executor import Outcome, Task
    >>> from swarm_sona.executors.upgrade import run_with_upgrade
    >>> def ex(task, model, patterns):   # the small model fails, the big one succeeds
    ...     return Outcome("", float(model == "big"), model == "big", cost_usd=1.0 if model == "small" else 5.0)
    >>> [r] = run_with_upgrade(ex, [Task("hard")], "small", ["small", "big"], max_cost_per_task=10.0)
    >>> [a.model for a in r.attempts], r.total_cost, r.success, r.stop_reason
    (['small', 'big'], 6.0, True, 'success')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swarm_sona.core.executor import Executor, Outcome, Task

if TYPE_CHECKING:   # the type only: a router is passed in by the caller
    from swarm_sona.routing.router import LLMRouter

__all__ = ["UpgradeAttempt", "UpgradeResult", "run_with_upgrade", "router_cascade", "STOP_REASONS"]

#: why a task's cascade stopped
STOP_REASONS = ("success", "no_better_model", "budget", "error", "exception")
Cascade = Sequence[str] | Callable[[Task], Sequence[str]]
Price = Callable[[str, Outcome], Outcome]
RunBatch = Callable[[list[Task], list[str], list[list[dict[str, Any]]]], Sequence["Outcome | BaseException"]]


@dataclass(frozen=True)
class UpgradeAttempt:
    """One attempt: the model asked for and the executor's outcome (its cost counted).

    Example:
        >>> UpgradeAttempt("m", Outcome("", 0.0, False, cost_usd=0.5)).outcome.cost_usd
        0.5
    """

    model: str
    outcome: Outcome


@dataclass(frozen=True)
class UpgradeResult:
    """A task's attempts in order and why its cascade stopped (one of :data:`STOP_REASONS`).

    Example:
        >>> r = UpgradeResult(Task("t"), (UpgradeAttempt("m", Outcome("ok", 1.0, True, cost_usd=0.25)),), "success")
        >>> r.model, r.success, r.total_cost
        ('m', True, 0.25)
    """

    task: Task
    attempts: tuple[UpgradeAttempt, ...]
    stop_reason: str
    error: BaseException | None = None   # with stop_reason "exception": what the last call raised

    @property
    def outcome(self) -> Outcome:
        """The last attempt's outcome (what the task's result is); raises :attr:`error` when the
        task's first call raised."""
        if not self.attempts:
            assert self.error is not None
            raise self.error
        return self.attempts[-1].outcome

    @property
    def model(self) -> str:
        """The last model asked for."""
        return self.attempts[-1].model

    @property
    def success(self) -> bool:
        """Whether the last attempt succeeded."""
        return self.outcome.success

    @property
    def total_cost(self) -> float:
        """USD of every attempt."""
        return float(sum(a.outcome.cost_usd for a in self.attempts))

    @property
    def total_latency(self) -> float:
        """Seconds of every attempt."""
        return float(sum(a.outcome.latency_s for a in self.attempts))


def router_cascade(router: LLMRouter, embeddings: Mapping[str, Any] | None = None) -> Callable[[Task], list[str]]:
    """A per-task cascade: ``router``'s models from the least to the most likely to succeed on the
    task (its posterior means; the configured prior quality breaks ties). ``embeddings``: task id
    -> the embedding the router was given for it (as an agent routes with its engine's
    embeddings); a task without one is embedded by the router.

    Example:
        >>> from swarm_sona.routing import LLMRouter
        >>> r = LLMRouter({"models": [{"name": "b", "quality": 0.9}, {"name": "s", "quality": 0.6}]}, dim=4)
        >>> router_cascade(r)(Task("x"))
        ['s', 'b']
    """
    prior = [float(m.quality) for m in router.config.models]
    names = list(router.names)
    known = dict(embeddings or {})

    def order(task: Task) -> list[str]:
        mean = router.success_probabilities(task, embedding=known.get(task.id))
        return [names[i] for i in sorted(range(len(names)), key=lambda i: (float(mean[i]), prior[i]))]
    return order


def _check_args(tasks: Sequence[Task], models: str | Sequence[str], max_cost_per_task: float | None) -> list[str]:
    names = [models] * len(tasks) if isinstance(models, str) else list(models)
    if len(names) != len(tasks):
        raise ValueError(f"run_with_upgrade: {len(tasks)} tasks but {len(names)} model names "
                         "(give one name or one per task)")
    if max_cost_per_task is not None and (isinstance(max_cost_per_task, bool)
                                          or not isinstance(max_cost_per_task, (int, float))
                                          or not math.isfinite(max_cost_per_task) or max_cost_per_task < 0):
        raise ValueError(f"run_with_upgrade: max_cost_per_task must be a finite number >= 0 or None, "
                         f"got {max_cost_per_task!r}")
    return names


def _run_round(executor: Executor, run_batch: RunBatch | None, tasks: list[Task], models: list[str],
               patterns: list[list[dict[str, Any]]]) -> list[Outcome | BaseException]:
    if run_batch is not None:
        outs = list(run_batch(tasks, models, patterns))
    elif callable(getattr(type(executor), "run_many", None)):
        outs = list(executor.run_many(tasks, models, patterns))  # type: ignore[attr-defined]
    else:
        outs = [executor(t, m, p) for t, m, p in zip(tasks, models, patterns, strict=True)]
    if len(outs) != len(tasks) or not all(isinstance(o, (Outcome, BaseException)) for o in outs):
        raise TypeError(f"run_with_upgrade: the executor returned {len(outs)} results for {len(tasks)} tasks "
                        "(expected one Outcome each)")
    return outs


class _TaskCascade:
    """One task's progress: its cascade, attempts and the next model (or why there is none)."""

    def __init__(self, task: Task, first: str, order: Sequence[str]) -> None:
        self.task, self.order = task, list(order)
        if first not in self.order:
            raise ValueError(f"run_with_upgrade: model {first!r} of task {task.id!r} is not in its cascade "
                             f"{self.order}")
        self.next_model: str | None = first
        self.attempts: list[UpgradeAttempt] = []
        self.stop = ""
        self.error: BaseException | None = None

    def record(self, outcome: Outcome | BaseException, max_cost: float | None,
               estimate: Callable[[Task, str], float] | None, price: Price | None = None) -> None:
        assert self.next_model is not None
        if isinstance(outcome, BaseException):
            self.next_model, self.stop, self.error = None, "exception", outcome
            return
        if price is not None:
            priced = price(self.next_model, outcome)
            if not isinstance(priced, Outcome):
                raise TypeError(f"run_with_upgrade: price returned {type(priced).__name__}, expected Outcome")
            outcome = priced
        self.attempts.append(UpgradeAttempt(self.next_model, outcome))
        self.next_model = None
        if outcome.success:
            self.stop = "success"
        elif outcome.error_kind is not None:
            self.stop = "error"
        else:
            self.next_model, self.stop = self._upgrade(max_cost, estimate)

    def _upgrade(self, max_cost: float | None, estimate: Callable[[Task, str], float] | None
                 ) -> tuple[str | None, str]:
        tried = {a.model for a in self.attempts}
        higher = [m for m in self.order[self.order.index(self.attempts[-1].model) + 1:] if m not in tried]
        if not higher:
            return None, "no_better_model"
        if max_cost is None:
            return higher[0], ""
        left = max_cost - sum(a.outcome.cost_usd for a in self.attempts)
        for m in higher:
            if (estimate is None and left > 0) or (estimate is not None and float(estimate(self.task, m)) <= left):
                return m, ""
        return None, "budget"


def run_with_upgrade(executor: Executor, tasks: Sequence[Task], models: str | Sequence[str], cascade: Cascade,
                     max_cost_per_task: float | None = None, *,
                     patterns: Sequence[list[dict[str, Any]]] | None = None,
                     estimate_cost: Callable[[Task, str], float] | None = None,
                     run_batch: RunBatch | None = None, price: Price | None = None) -> list[UpgradeResult]:
    """Run ``tasks`` on ``models`` (one name or one per task), retrying each failure on the next
    better model of ``cascade`` within ``max_cost_per_task`` (module docs); results in input order.
    ``price(model, outcome)``: each attempt's outcome as paid (module docs).

    Example:
        >>> from swarm_sona.core.executor import Outcome, Task
        >>> ex = lambda t, m, p: Outcome("", 0.0, False, cost_usd=3.0)
        >>> [r] = run_with_upgrade(ex, [Task("t")], "a", ["a", "b", "c"], 5.0, estimate_cost=lambda t, m: 3.0)
        >>> [a.model for a in r.attempts], r.stop_reason, r.total_cost
        (['a'], 'budget', 3.0)
    """
    names = _check_args(tasks, models, max_cost_per_task)
    pats = [[] for _ in tasks] if patterns is None else [list(p or []) for p in patterns]
    if len(pats) != len(tasks):
        raise ValueError(f"run_with_upgrade: {len(tasks)} tasks but {len(pats)} pattern lists")
    state = [_TaskCascade(t, m, cascade(t) if callable(cascade) else cascade) for t, m in zip(tasks, names, strict=True)]
    while True:
        todo = [i for i, s in enumerate(state) if s.next_model is not None]
        if not todo:
            break
        outs = _run_round(executor, run_batch, [state[i].task for i in todo], [str(state[i].next_model) for i in todo],
                          [pats[i] for i in todo])
        for i, out in zip(todo, outs, strict=True):
            state[i].record(out, max_cost_per_task, estimate_cost, price)
    return [UpgradeResult(s.task, tuple(s.attempts), s.stop, s.error) for s in state]
