"""``swarm-sona run --check SPEC``: the plan of a run, worked out without starting anything.

Example:
    >>> from swarm_sona.app.run_spec import RunSpec
    >>> p = plan(RunSpec.default().with_overrides(tasks=5000, bank="/tmp/nonexistent-bank"))
    >>> p.expected_syncs, p.bank_exists
    (9, False)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from swarm_sona.app.run_spec import RunSpec

__all__ = ["RunPlan", "plan"]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What ``swarm-sona run SPEC`` would do, worked out without starting Ray or any actor.

    ``expected_syncs`` counts consensus synchronisations (every ``sync_every`` tasks per
    worker); ``warnings`` names settings that make a run do less than it seems to
    (e.g. no sync at all).
    """

    source: str | None
    topology: str
    merge_rule: str
    workers: tuple[tuple[str, str], ...]
    coordinators: tuple[str, ...]
    sync_plan: dict[str, Any]
    tasks: int
    executor: str
    models: tuple[str, ...]
    batch_size: int
    sync_every: int
    consensus: bool
    expected_syncs: int
    bank: str
    bank_exists: bool | None
    ray: str
    metrics: tuple[str, ...]
    traces: tuple[str, ...]
    push_url: str | None
    budgets: dict[str, Any]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        d: dict[str, Any] = {"schema_version": 1, **dataclasses.asdict(self)}
        d["workers"] = [{"id": i, "type": t} for i, t in self.workers]
        return d

    def format(self) -> str:
        """The plan as an aligned two-column table."""
        rows = [
            ("spec", self.source or "built-in default"),
            ("topology", f"{self.topology}, merge rule {self.merge_rule}"),
            ("coordinators", ", ".join(self.coordinators) or "none"),
            ("workers", ", ".join(f"{i} ({t})" for i, t in self.workers)),
            ("tasks", f"{self.tasks:,} ({self.executor} executor; models {', '.join(self.models) or 'n/a'})"),
            ("dispatch", f"batches of {self.batch_size:,} tasks per Ray call"),
            ("consensus syncs", (f"~{self.expected_syncs:,} (every {self.sync_every:,} tasks per worker)"
                                 if self.consensus else "off")),
            ("ReasoningBank", self.bank + ("" if self.bank_exists is None else
                                           " (exists: its patterns are reused)" if self.bank_exists else " (new)")),
            ("Ray", self.ray),
            ("metrics", ", ".join(self.metrics) or "off"),
            ("traces", ", ".join(self.traces) or "off"),
        ]
        if self.push_url:
            rows.append(("Pushgateway", self.push_url))
        if self.budgets:
            rows.append(("budgets", ", ".join(f"{k} {v:g}" for k, v in self.budgets.items())))
        rows += [("warning", w) for w in self.warnings]
        rows.append(("check", "spec is valid; nothing was started"))
        width = max(len(k) for k, _ in rows) + 2
        return "\n".join(f"{k:<{width}}{v}" for k, v in rows)


def plan(spec: RunSpec) -> RunPlan:
    """The :class:`RunPlan` of ``spec`` (validated; no Ray, no actor, no bank opened).

    Example:
        >>> p = plan(RunSpec.default().with_overrides(tasks=200, bank="/tmp/nonexistent-bank"))
        >>> p.topology, p.coordinators, len(p.workers), p.expected_syncs
        ('hierarchical', ('queen-1',), 4, 0)
        >>> p.warnings[0]
        'no consensus sync will run: 200 tasks < sync_every 128 x 4 workers; lower swarm.syncEvery or add tasks'
    """
    from swarm_sona.runtime.launch import topology_for  # Ray-side laziness: imports Ray, starts nothing

    cfg = spec.swarm_config()
    topo = topology_for(cfg)
    workers = tuple((a.id, a.type) for a in cfg.workers)
    n_workers = max(1, len(workers))
    tasks = spec.workload.tasks
    per_sync = cfg.sync_every * n_workers
    expected = tasks // per_sync if spec.consensus else 0
    warnings = []
    if spec.consensus and expected == 0:
        warnings.append(f"no consensus sync will run: {tasks:,} tasks < sync_every {cfg.sync_every:,} x "
                        f"{n_workers} workers; lower swarm.syncEvery or add tasks")
    if cfg.batch_size * n_workers > tasks:
        warnings.append(f"batch_size {cfg.batch_size:,} x {n_workers} workers > {tasks:,} tasks: "
                        "some workers get no batch")
    if spec.bank.backend == "qdrant":
        bank, exists = f"Qdrant server {spec.bank.url}", None
    elif not spec.bank.enabled:
        bank, exists = "off", None
    elif spec.bank.path is None and not spec.bank.persist_to_disk:
        bank, exists = "in memory (not kept after the run)", None
    else:
        from swarm_sona.bank import default_bank_path

        where = Path(spec.bank.path) if spec.bank.path is not None else default_bank_path()   # no mkdir here
        bank, exists = str(where), (where / "bank.json").exists()
    tel = spec.telemetry.resolve()
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    budgets = {k: v for k, v in (("run_usd", spec.budgets.run_usd), ("task_usd", spec.budgets.task_usd),
                                 ("wall_clock_s", spec.budgets.wall_clock_s)) if v is not None}
    return RunPlan(
        source=spec.source, topology=spec.topology, merge_rule=topo.rule.name, workers=workers,
        coordinators=tuple(a.id for a in cfg.coordinators), sync_plan=topo.plan(0).to_dict(), tasks=tasks,
        executor=spec.workload.executor, models=tuple(m.name for m in cfg.sona.llm_router.models),
        batch_size=cfg.batch_size, sync_every=cfg.sync_every, consensus=spec.consensus, expected_syncs=expected,
        bank=bank, bank_exists=exists,
        ray=f"join {address}" if address else "a local Ray on 127.0.0.1, started and stopped by the run",
        metrics=tuple(tel.metrics_exporter or ()) + (("pushgateway",) if tel.push_url else ()),
        traces=tuple(tel.traces_exporter or ()), push_url=tel.push_url, budgets=budgets,
        warnings=tuple(warnings))
