"""The driver's side of one run's task stream: results into the :class:`RunLog`, budgets, hook
failures reported once, adapter-drift snapshots in flight, and Ctrl-C.

:class:`RunStream` is what ``swarm-sona run`` hands the swarm (``on_batch``, ``should_stop``)
and feeds each result (:meth:`RunStream.add`). A budget, an infrastructure stop or a first
Ctrl-C (:meth:`RunStream.interrupts`) stops dispatch; the batches already running finish and
are counted. A second Ctrl-C raises :class:`KeyboardInterrupt` at once.

Example:
    >>> import io
    >>> from swarm_sona.app.report import RunLog
    >>> from swarm_sona.app.run_spec import BudgetsConfig
    >>> s = RunStream(RunLog(window=1), n_tasks=4, budget=BudgetsConfig(run_usd=0.5), err=io.StringIO())
    >>> s.add({"task_id": "0", "agent_id": "a", "success": True, "cost_usd": 0.6})
    >>> s.should_stop(), s.stopped
    (True, 'run budget of $0.5 reached')
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import numpy as np

from swarm_sona.app.report import RunLog
from swarm_sona.app.run_spec import BudgetsConfig

__all__ = ["RunStream", "params_drift", "INTERRUPTED"]

INTERRUPTED = "interrupted (Ctrl-C)"


def params_drift(current: Mapping[str, Any], start: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Per-agent adapter drift: the norm of (current shareable adapter state - state at the start).

    ``current``: agent id -> flat adapter state (``SwarmSONA.agent_params()``); an agent whose
    state could not be read (``{"error": ...}``) is left out.

    Example:
        >>> params_drift({"a": {"w": [3.0, 4.0]}, "b": {"error": "gone"}}, {"a": {"w": [0.0, 0.0]}})
        {'a': 5.0}
    """
    drift: dict[str, float] = {}
    for aid, params in current.items():
        if not isinstance(params, dict) or isinstance(params.get("error"), str):
            continue
        base = start.get(aid, {})
        sq = 0.0
        for name, arr in params.items():
            a = np.asarray(arr, dtype=np.float64)
            b = np.asarray(base[name], dtype=np.float64) if name in base else np.zeros_like(a)
            if a.shape == b.shape:
                sq += float(np.sum((a - b) ** 2))
        drift[aid] = math.sqrt(sq)
    return drift


class _Snapshot:
    """A progress snapshot in flight: telemetry gauges and adapter drift, recorded once the
    actors have answered (the driver does not wait for them)."""

    def __init__(self, request: Any, requested_at: int) -> None:
        self.request = request
        self.requested_at = requested_at

    def record(self, runlog: RunLog, start_params: Mapping[str, Mapping[str, Any]]) -> None:
        st = self.request.result()   # the swarm's meter records the gauges of the snapshot
        # the agents answered after their queued batches: place the point at the tasks they had done
        agent_tasks = [a["tasks"] for a in st["agents"].values() if isinstance(a, dict) and "tasks" in a]
        at = self.requested_at
        if len(agent_tasks) == len(st["agents"]):
            at = min(runlog.done, max(at, sum(agent_tasks)))
        runlog.add_drift(at, params_drift(st["params"], start_params))


class RunStream:
    """One run's stream as the driver sees it (see the module docs).

    ``n_tasks``: the tasks submitted (snapshots every tenth of them); ``budget``: the spec's
    spend and wall-clock limits, checked after every result; ``err``: where hook failures and
    the Ctrl-C notice go. :meth:`attach` gives it the started swarm.
    """

    def __init__(self, runlog: RunLog, *, n_tasks: int, budget: BudgetsConfig, err: TextIO,
                 started_at: float | None = None) -> None:
        self.runlog = runlog
        self.budget = budget
        self.err = err
        self.started_at = time.monotonic() if started_at is None else started_at
        self.snapshot_every = max(1, n_tasks // 10)
        self.sync_snapshot_gap = max(1, n_tasks // 100)   # at most ~100 drift points after syncs
        self._last_snapshot_at = 0
        self.stopped: str | None = None
        self.interrupted = False
        self.hook_errors: dict[str, int] = {}
        self.start_params: dict[str, dict[str, Any]] = {}
        self._swarm: Any = None
        self._snap: _Snapshot | None = None
        self._syncs_seen = 0

    def attach(self, swarm: Any) -> None:
        """The started swarm: its adapter state now is the drift baseline."""
        self._swarm = swarm
        self.start_params = swarm.agent_params()

    def should_stop(self) -> bool:
        """Read by the swarm before each dispatch."""
        return self.stopped is not None

    def on_batch(self, b: Mapping[str, Any]) -> None:
        """Once per finished batch, before its results."""
        self.runlog.add_batch(n_tasks=b["tasks"], retrieve_s=b["retrieve_s"], acked=b["acked"],
                              background_s=b["background_s"])
        if self._snap is not None and self._snap.request.ready():
            self._snap.record(self.runlog, self.start_params)
            self._snap = None

    def add(self, r: Mapping[str, Any], *, index: int | None = None) -> None:
        """One task's result: logged, its hook failures reported (each distinct one once), a
        snapshot asked for every tenth of the run, the budgets checked."""
        runlog = self.runlog
        runlog.add(r, index=index)
        for msg in r.get("hook_errors") or ():
            self.hook_errors[msg] = self.hook_errors.get(msg, 0) + 1
            if self.hook_errors[msg] == 1:
                self.err.write(f"swarm-sona: agent {r.get('agent_id')}: {msg}\n")
        after_sync = self._new_sync() and runlog.done - self._last_snapshot_at >= self.sync_snapshot_gap
        if (after_sync or runlog.done % self.snapshot_every == 0) and self._snap is None and self._swarm is not None:
            # every tenth of the run and after each sync; the agents answer between batches and
            # the driver keeps dispatching (one snapshot in flight at a time)
            self._snap = _Snapshot(self._swarm.request_stats(params=True), runlog.done)
            self._last_snapshot_at = runlog.done
        if self.stopped is None:
            self.stopped = self._budget_reached(runlog.live()["spend_usd"])

    def _new_sync(self) -> bool:
        """Whether the swarm started a consensus sync since the last result (marked in the log)."""
        counters = getattr(self._swarm, "counters", None)
        n = int(counters.get("syncs", 0)) if isinstance(counters, dict) else 0
        if n <= self._syncs_seen:
            return False
        for _ in range(n - self._syncs_seen):
            self.runlog.add_sync(self.runlog.done)
        self._syncs_seen = n
        return True

    def _budget_reached(self, spend: float) -> str | None:
        b = self.budget
        if b.run_usd is not None and spend >= b.run_usd:
            return f"run budget of ${b.run_usd:g} reached"
        if b.wall_clock_s is not None and time.monotonic() - self.started_at >= b.wall_clock_s:
            return f"wall-clock budget of {b.wall_clock_s:g} s reached"
        return None

    @contextlib.contextmanager
    def interrupts(self) -> Iterator[None]:
        """While inside: a first Ctrl-C (SIGINT) stops dispatch like a budget does (the batches in
        flight finish and are counted); a second one raises KeyboardInterrupt. Only the main
        thread can take signals; elsewhere this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def first(signum: int, frame: Any) -> None:
            self.interrupted = True
            self.stopped = INTERRUPTED
            self.err.write("\nswarm-sona: interrupted: finishing the batches in flight "
                           "(Ctrl-C again to stop at once)\n")
            self.err.flush()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = signal.signal(signal.SIGINT, first)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def finish(self, *, timeout: float = 60.0) -> dict[str, Any]:
        """Stop the clock, record the last snapshot and return the swarm's final stats (without
        ``params``); after a Ctrl-C the actors get ``timeout`` seconds to answer."""
        runlog = self.runlog
        runlog.finish()
        swarm = self._swarm
        infra = swarm.infra_stop.message if swarm.infra_stop is not None else None
        if infra is not None and self.stopped is None:
            self.stopped = infra
        if self._snap is not None:
            self._snap.record(runlog, self.start_params)
            self._snap = None
        final = swarm.request_stats(params=True).result(timeout=timeout)
        runlog.add_drift(runlog.done, params_drift(final["params"], self.start_params))
        stats = {k: v for k, v in final.items() if k != "params"}
        runlog.patterns_stored = int(stats.get("acked_patterns", 0))
        stats["infra_stop"] = infra
        return stats

    def abandon(self) -> dict[str, Any]:
        """The stream was cut short (a second Ctrl-C): stop the clock and return the stats the
        driver holds itself (counters, acknowledged patterns, errors), asking no actor."""
        self.interrupted = True
        self.stopped = INTERRUPTED
        self.runlog.finish()
        swarm = self._swarm
        self.runlog.patterns_stored = int(swarm.acked_patterns.count)
        return {**swarm.counters, "acked_patterns": swarm.acked_patterns.count,
                "errors_by_kind": dict(swarm.meter.errors), "infra_stop": None}
