"""The run log: per-task results as they stream back, condensed into the run summary.

:class:`RunLog` collects results in any order, per-batch retrieval and background-loop
timings and per-agent adapter-drift snapshots; :meth:`RunLog.summary` condenses them into one
flat JSON-able dict whose fields are :data:`SUMMARY_FIELDS` (see :mod:`swarm_sona.app.report`).

Example:
    >>> log = RunLog(window=1)
    >>> log.add({"task_id": "0", "agent_id": "a", "model": "m", "success": True, "cost_usd": 0.5})
    >>> s = log.summary(); s["tasks"], s["success_rate"], s["spend_usd"], s["agents"]
    (1, 1.0, 0.5, {'a': {'tasks': 1, 'success_rate': 1.0}})
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["RunLog", "SUMMARY_FIELDS"]

SUMMARY_FIELDS: tuple[str, ...] = (
    "tasks", "success_rate", "window", "success_first_window", "success_last_window", "spend_usd",
    "strongest_model", "spend_always_strongest_usd", "spend_ratio", "routing_share", "patterns_stored",
    "patterns_reused", "reuse_rate", "learning_overhead_us_median", "retrieval_ms_median",
    "retrieval_us_per_task_median", "elapsed_s", "tasks_per_s", "hook_failures", "agents",
    "background_cycles", "background_ms_median", "learning_us_per_task",
)


def _median(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if len(xs) else None


class RunLog:
    """Collects a run's results; see the module docstring and :mod:`swarm_sona.app.report`.

    ``model_costs`` (model -> USD per call) and ``strongest_model`` give the always-strongest
    baseline; ``window`` is the size of the first and last windows compared in the summary.
    """

    def __init__(self, *, window: int = 200, model_costs: Mapping[str, float] | None = None,
                 strongest_model: str | None = None) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self.model_costs = dict(model_costs or {})
        self.strongest_model = strongest_model
        self._rows: dict[int, dict[str, Any]] = {}
        self._next = 0
        self.retrieval_s: list[float] = []          # per batched retrieval call
        self.retrieval_per_task_s: list[float] = []
        self.retrieval_tasks: list[int] = []        # tasks served by each batched retrieval call
        self.background_s: list[float] = []          # per background-loop cycle
        self.patterns_stored = 0
        self.hook_failures = 0
        self.drift: list[tuple[int, dict[str, float]]] = []
        self.syncs: list[int] = []                   # tasks done when each consensus sync started
        self._t0 = time.perf_counter()
        self._t_end: float | None = None
        self._ok = 0
        self._spend = 0.0

    # ---- collecting ---------------------------------------------------------------------
    def add(self, result: Mapping[str, Any], *, index: int | None = None) -> None:
        """One task's result (agent_id, model, success, reward, cost_usd, patterns, learn_s...).

        ``index`` is the task's position in the submitted stream (default: arrival order).
        """
        i = self._next if index is None else int(index)
        self._next = max(self._next, i + 1)
        row: dict[str, Any] = {"agent": str(result.get("agent_id", "")), "model": str(result.get("model", "")),
               "success": bool(result.get("success")), "reward": float(result.get("reward", 0.0)),
               "cost": float(result.get("cost_usd", 0.0)), "patterns": int(result.get("patterns", 0) or 0),
               "learn_s": result.get("learn_s"), "t": time.perf_counter() - self._t0}
        if i in self._rows:
            raise ValueError(f"task index {i} reported twice")
        self._rows[i] = row
        self._ok += row["success"]
        self._spend += row["cost"]
        self.hook_failures += len(result.get("hook_errors") or ())

    def add_batch(self, *, n_tasks: int, retrieve_s: float | None = None, acked: int = 0,
                  background_s: Sequence[float] = ()) -> None:
        """A batch's retrieval time (one call for ``n_tasks`` tasks), its acknowledged stored
        patterns and the wall time of each background-loop cycle it triggered."""
        if retrieve_s is not None and n_tasks > 0:
            self.retrieval_s.append(float(retrieve_s))
            self.retrieval_per_task_s.append(float(retrieve_s) / n_tasks)
            self.retrieval_tasks.append(int(n_tasks))
        self.patterns_stored += int(acked)
        self.background_s.extend(float(b) for b in background_s)

    def add_drift(self, tasks_done: int, norms: Mapping[str, float]) -> None:
        """A snapshot of each agent's adapter drift (norm of its adapter delta) after ``tasks_done`` tasks."""
        self.drift.append((int(tasks_done), {k: float(v) for k, v in norms.items()}))

    def add_sync(self, tasks_done: int) -> None:
        """A consensus sync started after ``tasks_done`` tasks (marked on the drift plot)."""
        self.syncs.append(int(tasks_done))

    def start(self) -> None:
        """Start the clock now (default: at construction); call it when the first task is dispatched
        so that ``elapsed_s`` and ``tasks_per_s`` measure the task stream, not the set-up."""
        self._t0 = time.perf_counter()
        self._t_end = None

    def finish(self) -> None:
        """Stop the clock (elapsed_s and tasks_per_s are measured up to here)."""
        self._t_end = time.perf_counter()

    # ---- views --------------------------------------------------------------------------
    @property
    def done(self) -> int:
        """Tasks reported so far."""
        return len(self._rows)

    def live(self) -> dict[str, float]:
        """Running success rate and spend, for a progress bar."""
        n = len(self._rows)
        return {"success": self._ok / n if n else 0.0, "spend_usd": self._spend}

    def ordered(self) -> list[dict[str, Any]]:
        """Rows in stream order."""
        return [self._rows[i] for i in sorted(self._rows)]

    def summary(self, **extra: Any) -> dict[str, Any]:
        """The run summary (see the module docstring); ``extra`` fields are added as given."""
        rows = self.ordered()
        n = len(rows)
        elapsed = (self._t_end or time.perf_counter()) - self._t0
        w = max(1, min(self.window, n)) if n else self.window
        ok = np.array([r["success"] for r in rows], dtype=float)
        spend = float(sum(r["cost"] for r in rows))
        share: dict[str, float] = {}
        for r in rows:
            share[r["model"]] = share.get(r["model"], 0) + 1
        share = {m: c / n for m, c in sorted(share.items())} if n else {}
        strong_cost = self.model_costs.get(self.strongest_model or "") if self.strongest_model else None
        baseline = strong_cost * n if strong_cost is not None else None
        reused = sum(1 for r in rows if r["patterns"] > 0)
        learn = [float(r["learn_s"]) for r in rows if r["learn_s"] is not None]
        learn_total = sum(learn) + sum(self.background_s)
        agents: dict[str, dict[str, float]] = {}
        for r in rows:
            a = agents.setdefault(r["agent"], {"tasks": 0, "successes": 0})
            a["tasks"] += 1
            a["successes"] += r["success"]
        out: dict[str, Any] = {
            "tasks": n,
            "success_rate": float(ok.mean()) if n else None,
            "window": w,
            "success_first_window": float(ok[:w].mean()) if n else None,
            "success_last_window": float(ok[-w:].mean()) if n else None,
            "spend_usd": spend,
            "strongest_model": self.strongest_model,
            "spend_always_strongest_usd": baseline,
            "spend_ratio": (spend / baseline) if baseline else None,
            "routing_share": share,
            "patterns_stored": self.patterns_stored,
            "patterns_reused": reused,
            "reuse_rate": reused / n if n else None,
            "learning_overhead_us_median": _scaled(_median(learn), 1e6),
            "retrieval_ms_median": _scaled(_median(self.retrieval_s), 1e3),
            "retrieval_us_per_task_median": _scaled(_median(self.retrieval_per_task_s), 1e6),
            "elapsed_s": elapsed,
            "tasks_per_s": n / elapsed if elapsed > 0 else None,
            "hook_failures": self.hook_failures,
            "agents": {k: {"tasks": int(v["tasks"]), "success_rate": v["successes"] / v["tasks"]}
                       for k, v in sorted(agents.items())},
            "background_cycles": len(self.background_s),
            "background_ms_median": _scaled(_median(self.background_s), 1e3),
            "learning_us_per_task": learn_total / len(learn) * 1e6 if learn else None,
        }
        out.update(extra)
        return out


def _scaled(v: float | None, k: float) -> float | None:
    return None if v is None else v * k
