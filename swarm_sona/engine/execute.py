"""``SONA.execute(task, executor)``: the guide's ``retryWithUpgrade`` / ``maxCostPerTask`` for a
user's own executor, run by the engine.

The engine embeds the task and blends its router head into the attached router's estimates (as
:meth:`SONA.route <swarm_sona.engine.sona.SONA.route>` does), then runs the router's cascade
(:func:`swarm_sona.routing.cascade.run_cascade`, the one cascade of a single task): the first
model is the router's choice under the call's constraints; with ``llmRouter.retryWithUpgrade``
a failure is retried on the next better model by the router's posterior, as long as its
estimated cost fits what ``maxCostPerTask`` has left after the earlier attempts (every attempt's
actual cost is summed: the executor's ``cost_usd``, else its response ``usage`` at the model's
price). Every attempt is learned before the next model is chosen: with ``learn`` (default) by
the engine's instant loop (its router head and value head), which feeds the router, once per
attempt; ``learn=False``: by the router alone. An attempt that failed for infrastructure
reasons (``Outcome.error_kind`` set) is not the model failing: only its cost counts.

The call takes the guide's shapes: ``execute("task text", executor, maxCost=...)``,
``execute({"task": ..., "maxCost": ..., "minQuality": ..., "timeout": 30000}, executor)``;
``executor`` is ``(task, model, patterns) -> Outcome``.

Example:
    >>> from swarm_sona.core.executor import Outcome
    >>> from swarm_sona.engine.sona import SONA
    >>> sona = SONA({"dim": 16, "mlp_hidden": 16, "llmRouter": {"models": [
    ...     {"name": "small", "cost": 1.0, "quality": 0.6, "costUnit": "call"},
    ...     {"name": "big", "cost": 4.0, "quality": 0.9, "costUnit": "call"}],
    ...     "strategy": "cost-optimized", "exploration": "none", "retryWithUpgrade": True, "maxCostPerTask": 6}})
    >>> solve = lambda task, model, patterns: Outcome(model, float(model == "big"), model == "big",
    ...                                               cost_usd=1.0 if model == "small" else 4.0)
    >>> run = sona.execute({"task": "prove the lemma"}, solve)
    >>> run.models, run.totalCost, run["success"], run.output, run.stop_reason
    (['small', 'big'], 5.0, True, 'big', 'success')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swarm_sona.core.config import camel_to_snake
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine import inputs
from swarm_sona.engine.errors import EngineError

if TYPE_CHECKING:   # the facade imports this module; the type only
    from swarm_sona.engine.sona import SONA

__all__ = ["ExecuteAttempt", "ExecuteResult", "execute", "head_probs", "EXECUTE_KEYS"]

#: the keys of an ``execute`` call (snake_case; the guide's camelCase spellings are accepted)
EXECUTE_KEYS = ("task", "priority", "max_cost", "min_quality", "timeout", "timeout_s", "embedding", "patterns",
                "learn")


class _GuideKeys:
    """Reads a dataclass's fields under the guide's camelCase names too (attribute and item)."""

    def __getattr__(self, name: str) -> Any:
        snake = camel_to_snake(name)
        if snake != name and not name.startswith("_"):
            return getattr(self, snake)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, camel_to_snake(key))
        except AttributeError:
            raise KeyError(key) from None


@dataclass(frozen=True)
class ExecuteAttempt(_GuideKeys):
    """One attempt of :meth:`SONA.execute`: the model asked for and what the executor returned
    (``cost_usd``: what the attempt spent, priced from usage when the executor gave no cost).

    Example:
        >>> a = ExecuteAttempt("m", False, 0.0, 0.25, 1.0, "wrong", None)
        >>> a.model, a["costUsd"], a.latencyS
        ('m', 0.25, 1.0)
    """

    model: str
    success: bool
    reward: float
    cost_usd: float
    latency_s: float
    output: str
    error_kind: str | None


@dataclass(frozen=True)
class ExecuteResult(_GuideKeys):
    """What :meth:`SONA.execute` did: every attempt in order, why the cascade stopped
    (``success``, ``no_retry``, ``no_better_model``, ``budget``, ``constraints``), the total
    cost over the attempts and the last attempt's success and output; ``learned``: trajectories
    the engine's instant loop learned. Reads as attributes and as the guide's keys
    (``result.totalCost``, ``result["total_cost"]``).

    Example:
        >>> r = ExecuteResult("t", (ExecuteAttempt("m", True, 1.0, 0.5, 0.1, "ok", None),), "success", 1)
        >>> r.models, r.total_cost, r["success"], r.output
        (['m'], 0.5, True, 'ok')
    """

    task: str
    attempts: tuple[ExecuteAttempt, ...]
    stop_reason: str
    learned: int

    @property
    def models(self) -> list[str]:
        """The model of every attempt, in order."""
        return [a.model for a in self.attempts]

    @property
    def model(self) -> str:
        """The last attempt's model."""
        return self.attempts[-1].model

    @property
    def total_cost(self) -> float:
        """USD of every attempt."""
        return float(sum(a.cost_usd for a in self.attempts))

    @property
    def success(self) -> bool:
        """Whether the last attempt succeeded."""
        return self.attempts[-1].success

    @property
    def output(self) -> str:
        """The last attempt's output."""
        return self.attempts[-1].output


def _request(task: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(task, Mapping):
        kw = inputs.guide_args("execute", (task,), options, EXECUTE_KEYS)
    else:
        kw = inputs.guide_args("execute", (), {"task": task, **options}, EXECUTE_KEYS)
    text = kw.get("task")
    if isinstance(text, Task):
        kw["task"] = text
    elif isinstance(text, str):
        kw["task"] = Task(text=text)
    else:
        raise EngineError(f"execute: the task must be a text or a Task, got {type(text).__name__}")
    learn = kw.get("learn", True)
    if not isinstance(learn, bool):
        raise EngineError(f"execute: learn must be True or False, got {learn!r}")
    patterns = kw.get("patterns")
    if patterns is not None and (isinstance(patterns, (str, Mapping))
                                 or not all(isinstance(p, Mapping) for p in patterns)):
        raise EngineError("execute: patterns must be a list of mappings (what the executor receives)")
    return kw


def head_probs(sona: SONA, e: Any) -> tuple[dict[str, float], Any]:
    """The router head's probability of every model for embedding ``e``, and what goes to the
    attached router: the same, or gated on the head's measured accuracy (``head_gate``: an array
    or None)."""
    probs = sona.forward(e)["router_probs"]
    head = {n: float(p) for n, p in zip(sona.model_names, probs, strict=True)}
    if sona.router is None or sona.head_gate is None:
        return head, head
    return head, sona.head_gate.head_probs(sona.router, e, probs)


def execute(sona: SONA, task: Any, executor: Any, options: Mapping[str, Any]) -> ExecuteResult:
    """Run ``task`` with ``executor`` through the router's cascade (module docs)."""
    router = sona.router
    if router is None:
        raise EngineError("execute: needs an LLM router (llmRouter.models) to choose and upgrade models")
    if not callable(executor):
        raise EngineError(f"execute: executor must be callable (task, model, patterns) -> Outcome, "
                          f"got {type(executor).__name__}")
    kw = _request(task, options)
    t: Task = kw.pop("task")
    emb = kw.pop("embedding", None)
    e = sona.embed(t.text) if emb is None else inputs.vector(emb, sona.dim, "execute: embedding")
    _, gated = head_probs(sona, e)
    learn = kw.pop("learn", True)
    patterns = [dict(p) for p in kw.pop("patterns", None) or []]
    learned = [0]

    def learn_attempt(task: Task, model: str, out: Outcome) -> None:
        # the instant loop learns the attempt and feeds the router (its posterior, stats, spend)
        if out.error_kind is not None or model not in sona.model_names:   # not the model failing
            router.spent += out.cost_usd
            return
        traj = Trajectory(task=task.text, embedding=e, model=model, reward=out.reward, success=out.success,
                          cost_usd=out.cost_usd, latency_s=out.latency_s, agent_id=sona.agent_id,
                          task_type=task.task_type)
        learned[0] += sona.learn_trajectories([traj])["learned"]

    res = router.run_cascade(t, executor, patterns=patterns, embedding=e, head_probs=gated,
                             on_attempt=learn_attempt if learn else None, **kw)
    attempts = tuple(ExecuteAttempt(a.model, a.outcome.success, a.outcome.reward, a.outcome.cost_usd,
                                    a.outcome.latency_s, a.outcome.output, a.outcome.error_kind)
                     for a in res.attempts)
    return ExecuteResult(t.text, attempts, res.stop_reason, learned[0])
