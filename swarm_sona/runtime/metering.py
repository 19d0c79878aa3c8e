"""The swarm's domain metrics, recorded from what a run yields: one home, used by every ``SwarmSONA`` run.

:class:`RunMeter` turns a run's batches, results and stats snapshots into the telemetry
instruments (:mod:`swarm_sona.core.telemetry`): tasks, success, reward, cost and routing decisions
per result; learning-step latency per result and retrieval latency per batch; the success
rate and routing share gauges (updated once per batch); the seconds the swarm has streamed tasks
(``swarm_sona_run_duration_seconds``, once per batch: ``tasks_total / run_duration`` is the
throughput of a batch job whose whole stream fits between two scrapes, where ``rate()`` has
one sample); failed results by ``error_kind``
(:attr:`RunMeter.errors`, counted with metrics on or off: the run summary's errors by kind,
infrastructure failures such as ``auth`` or ``rate_limit`` apart from task failures); adapter norm, EWC penalty, merge lag
and bank size from each stats snapshot (agents past the label cap summarised under ``other``: mean norm and
penalty, largest lag). ``SwarmSONA.run`` and ``SwarmSONA.stats`` feed it, so a
driver script gets the same metrics as ``swarm-sona run``. With metrics off every call
returns at once.

Example:
    >>> from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
    >>> tel = Telemetry(TelemetryConfig(metrics_exporter="memory"))
    >>> m = RunMeter(tel)
    >>> m.result({"agent_id": "a", "model": "small", "success": True, "reward": 1.0, "cost_usd": 0.01,
    ...           "learn_s": 8e-6})
    >>> m.batch_done(agent="a", retrieve_s=3e-4)
    >>> sum(p["value"] for p in tel.memory_metrics()["swarm_sona.tasks"]), m.success_rate
    (1, 1.0)
    >>> tel.memory_metrics()["swarm_sona.run.duration"][0]["value"] > 0
    True
    >>> m.result({"agent_id": "a", "model": "small", "success": False, "error_kind": "auth"})
    >>> m.errors
    {'auth': 1}
    >>> tel.shutdown()
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RunMeter"]


class RunMeter:
    """Records a swarm run's domain metrics into a :class:`~swarm_sona.core.telemetry.Telemetry`.

    ``clock``: seconds (monotonic) for the run duration. :meth:`run_started` marks the start of
    each run's task stream; the duration is the sum over runs of their start to their last
    finished batch (without the call: from the meter's first call to its last finished batch).
    """

    def __init__(self, tel: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.tel = tel
        self.clock = clock
        self._streamed_s = 0.0              # earlier runs' streams
        self._t_start: float | None = None  # the current run's stream began
        self._t_last: float | None = None   # its last finished batch
        self.tasks = 0
        self.successes = 0
        self.models: dict[str, int] = {}
        self.errors: dict[str, int] = {}   # failed results by error_kind (with metrics off too)

    @property
    def enabled(self) -> bool:
        return bool(self.tel.metering)

    @property
    def success_rate(self) -> float:
        return self.successes / self.tasks if self.tasks else 0.0

    @property
    def run_duration_s(self) -> float:
        """Seconds of task streaming so far (see the class docs)."""
        if self._t_start is None or self._t_last is None:
            return self._streamed_s
        return self._streamed_s + max(0.0, self._t_last - self._t_start)

    def run_started(self) -> None:
        """A run's task stream starts now (``SwarmSONA.run``); the time since the last run's last
        batch does not count."""
        self._streamed_s = self.run_duration_s
        self._t_start, self._t_last = self.clock(), None

    def result(self, r: Mapping[str, Any]) -> None:
        """One task's result (as ``SwarmSONA.run`` yields it)."""
        if self._t_start is None:   # no run_started(): the stream is timed from here
            self._t_start = self.clock()
        kind = r.get("error_kind")
        if kind is not None:
            self.errors[str(kind)] = self.errors.get(str(kind), 0) + 1
        if not self.enabled:
            return
        agent, model = str(r.get("agent_id")), str(r.get("model"))
        ok = bool(r.get("success"))
        self.tasks += 1
        self.successes += ok
        self.models[model] = self.models.get(model, 0) + 1
        self.tel.record_task(agent=agent, model=model, success=ok, reward=float(r.get("reward", 0.0)),
                             cost_usd=float(r.get("cost_usd", 0.0)))
        if r.get("learn_s") is not None:
            self.tel.record_learning(float(r["learn_s"]), agent=agent)

    def batch_done(self, *, agent: str, retrieve_s: float | None) -> None:
        """A finished batch: its retrieval latency, the running success-rate / routing-share gauges
        and the run duration."""
        self._t_last = self.clock()
        if self._t_start is None:
            self._t_start = self._t_last
        if not self.enabled:
            return
        if self.run_duration_s > 0:   # tasks / 0 s would be +Inf
            self.tel.set_run_duration(self.run_duration_s)
        if retrieve_s is not None:
            self.tel.record_retrieval(float(retrieve_s), agent=agent)
        if self.tasks:
            self.tel.set_success_rate(self.success_rate)
            self.tel.set_routing_share({m: c / self.tasks for m, c in self.models.items()})

    def snapshot(self, stats: Mapping[str, Any]) -> None:
        """Gauges out of ``SwarmSONA.stats()``: adapter norm, EWC penalty, merge lag, bank size.

        Agents past the telemetry's label cap (``max_label_values``) are summarised in the one
        ``other`` series: the mean adapter norm and EWC penalty, and the largest merge lag.
        """
        if not self.enabled:
            return
        tel = self.tel
        coords = stats.get("coordinators") or {}
        versions = [int(c["version"]) for c in coords.values() if isinstance(c, dict) and c.get("version") is not None]
        newest = max(versions) if versions else None
        norms: dict[str, list[float]] = {}
        penalties: dict[str, list[float]] = {}
        lags: dict[str, int] = {}
        for aid, st in (stats.get("agents") or {}).items():
            if not isinstance(st, dict):
                continue
            key = tel.labels("agent", str(aid))   # agents past the label cap share one series
            eng: dict[str, Any] = st["engine"] if isinstance(st.get("engine"), dict) else {}
            parts = [float(v) for v in (eng.get("adapter_norms") or {}).values()]
            if eng.get("micro_norm") is not None:
                parts.append(float(eng["micro_norm"]))
            if parts:
                norms.setdefault(key, []).append(math.sqrt(sum(p * p for p in parts)))
            pen = (eng.get("ewc") or {}).get("last_penalty")
            if pen is not None:
                penalties.setdefault(key, []).append(float(pen))
            if newest is not None and st.get("version") is not None:
                lags[key] = max(lags.get(key, 0), max(0, newest - int(st["version"])))
        for key, vals in norms.items():
            tel.set_adapter_norm(sum(vals) / len(vals), agent=key)
        for key, vals in penalties.items():
            tel.set_ewc_penalty(sum(vals) / len(vals), agent=key)
        for key, lag in lags.items():
            tel.set_merge_lag(lag, agent=key)
        bank = stats.get("bank")
        if isinstance(bank, dict) and bank.get("count") is not None:
            tel.set_bank_size(int(bank["count"]))
