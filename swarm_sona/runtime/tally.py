"""Accounting of what a swarm run yields: each finished batch's results into the swarm's
counters, the domain metrics (:class:`~swarm_sona.runtime.metering.RunMeter`), the failed tasks
by ``error_kind``, the acknowledged patterns and the infrastructure-failure streak
(:class:`~swarm_sona.runtime.infra.InfraGuard`); a batch lost twice becomes one error result per
task.

Example:
    >>> from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
    >>> from swarm_sona.runtime.dispatch import Batch, Finished
    >>> from swarm_sona.runtime.infra import InfraGuard
    >>> from swarm_sona.runtime.metering import RunMeter
    >>> tel = Telemetry(TelemetryConfig())
    >>> counters = {"tasks": 0, "successes": 0, "batches": 0, "retried_batches": 0, "failed_tasks": 0,
    ...             "cost_usd": 0.0}
    >>> acked = []
    >>> tally = RunTally(counters, RunMeter(tel), tel, relay=list, acked=acked.extend, error_kinds={},
    ...                  guard=InfraGuard(3))
    >>> out = {"results": [{"task_id": "t", "agent_id": "a", "success": True, "cost_usd": 0.5}], "acked": ["p"]}
    >>> span = tel.begin("batch")
    >>> [r["task_id"] for r in tally.results(Finished("done", "a", Batch(0, ["t"]), output=out, note=span))]
    ['t']
    >>> counters["tasks"], counters["batches"], acked
    (1, 1, ['p'])
    >>> tel.shutdown()
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from swarm_sona.runtime.dispatch import Finished
from swarm_sona.runtime.infra import InfraGuard
from swarm_sona.runtime.metering import RunMeter

__all__ = ["RunTally", "AckedPatterns"]

log = logging.getLogger(__name__)


class AckedPatterns:
    """The ids of the patterns the bank acknowledged over a run, in bounded memory: the count of
    all of them, and a uniform sample (reservoir, seeded) of at most ``keep`` ids to check
    against the bank (``SwarmSONA.bank_has``). Iterating yields the sample.

    Example:
        >>> acked = AckedPatterns(keep=3, seed=0)
        >>> acked.extend([f"p{i}" for i in range(10)])
        >>> acked.count, len(acked.sample), all(i.startswith("p") for i in acked)
        (10, 3, True)
    """

    def __init__(self, keep: int = 1000, *, seed: int = 0) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"AckedPatterns: keep must be an integer >= 1, got {keep!r}")
        self.keep = keep
        self.count = 0
        self.sample: list[str] = []
        self._rng = random.Random(seed)

    def extend(self, ids: Iterable[str]) -> None:
        """Record acknowledged ids (Algorithm R: each id seen so far is kept with equal chance)."""
        for i in ids:
            self.count += 1
            if len(self.sample) < self.keep:
                self.sample.append(i)
            else:
                j = self._rng.randrange(self.count)
                if j < self.keep:
                    self.sample[j] = i

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.sample))

    def __len__(self) -> int:
        return len(self.sample)

    def __bool__(self) -> bool:
        return self.count > 0


class RunTally:
    """One run's accounting (module docs). ``counters``: the swarm's counters (``tasks,
    successes, cost_usd, batches, retried_batches, failed_tasks``); ``relay``: logs the agents'
    warnings at the driver; ``acked``: records acknowledged pattern ids; ``error_kinds``: failed
    tasks by kind (updated in place); ``guard``: the run's infrastructure-failure streak."""

    def __init__(self, counters: dict[str, Any], meter: RunMeter, telemetry: Any, *,
                 relay: Callable[[Iterable[str]], None], acked: Callable[[Iterable[str]], None],
                 error_kinds: dict[str, int], guard: InfraGuard) -> None:
        self.counters = counters
        self.meter = meter
        self.tel = telemetry
        self.relay = relay
        self.acked = acked
        self.error_kinds = error_kinds
        self.guard = guard

    def results(self, fin: Finished, on_batch: Callable[[dict[str, Any]], None] | None = None
                ) -> Iterator[dict[str, Any]]:
        """A finished call's results, accounted as they are yielded; a retried batch yields
        nothing (it comes back from another agent), a lost one an error result per task.
        ``fin.note`` is the batch's span (ended here). ``on_batch`` is called once per finished
        batch, before its results (``agent_id, batch_id, tasks, retrieve_s, background_s, acked``)."""
        if fin.kind != "done":
            yield from self._failed(fin)
            return
        agent, bid, out = fin.agent_id, fin.batch.batch_id, fin.output
        self.tel.relay_ingest(out.get("spans") or ())
        self.relay(out.get("warnings") or ())
        fin.note.end()
        self.counters["batches"] += 1
        self.acked(out["acked"])
        if on_batch is not None:
            on_batch({"agent_id": agent, "batch_id": bid, "tasks": len(out["results"]),
                      "retrieve_s": out.get("retrieve_s"), "background_s": out.get("background_s") or [],
                      "acked": len(out["acked"])})
        for r in out["results"]:
            self.meter.result(r)
        self.meter.batch_done(agent=agent, retrieve_s=out.get("retrieve_s"))
        for r in out["results"]:
            kind = r.get("error_kind")
            if kind is not None:
                self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            self.guard.see(r)
            self.counters["tasks"] += 1
            self.counters["cost_usd"] += r["cost_usd"]
            if r["success"]:
                self.counters["successes"] += 1
            yield r

    def _failed(self, fin: Finished) -> Iterator[dict[str, Any]]:
        fin.note.end()
        if fin.kind == "retry":
            self.counters["retried_batches"] += 1
            log.warning("batch %s lost with agent %s (%s); retrying on another agent",
                        fin.batch.batch_id, fin.agent_id, type(fin.error).__name__)
            return
        self.counters["failed_tasks"] += len(fin.batch.tasks)
        for t in fin.batch.tasks:
            lost = {"task_id": t.id, "agent_id": fin.agent_id, "model": None, "success": False, "reward": 0.0,
                    "cost_usd": 0.0, "patterns": 0, "task_type": t.task_type,
                    "error": f"lost twice: {type(fin.error).__name__}"}
            self.meter.result(lost)
            yield lost
