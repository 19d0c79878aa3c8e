"""``swarm-sona run [SPEC]``: run a swarm job and print its summary.

Without SPEC: the default swarm (hierarchical: queen + coder, reviewer, tester, researcher)
over the simulated workload, on a local Ray started and stopped by the command, with the
embedded ReasoningBank in the user's data directory (so a second run reuses what the first
one stored). With SPEC (YAML/TOML/JSON, see :mod:`swarm_sona.app.run_spec`): exactly that. The
spec is validated completely before Ray starts; a bad one exits with code 2 and a message
naming the file, the field and the reason.

Inside a Ray job (``swarm-sona submit``) ``RAY_ADDRESS`` is set and the swarm joins that
cluster instead of starting one.

Output: a progress bar with the live success rate and spend on a terminal (stderr), then the
summary table on stdout, or with ``--json`` one JSON object with the summary's fields.
``--report DIR`` also writes ``DIR/index.html``, PNG plots and ``DIR/summary.json``.
``tasks_per_s`` covers the task stream (first dispatch to last result); the swarm's start-up
(Ray, actors) is ``startup_s``. Progress snapshots (telemetry gauges, adapter drift, every
tenth of the run) are asked of the actors without waiting, so the dispatch never drains.

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["run", "--tasks", "500", "--json"])   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from swarm_sona.app.agent_defs import HookedExecutor
from swarm_sona.app.report import RunLog, bank_count, dir_bytes, format_summary, write_report
from swarm_sona.app.run_spec import RunSpec
from swarm_sona.core.config import ConfigError
from swarm_sona.core.progress import Progress

__all__ = ["add_arguments", "run", "execute", "prepare", "plan", "RunPlan"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona run``."""
    parser.add_argument("spec", nargs="?", help="run spec (YAML, TOML or JSON); default: the built-in demo swarm")
    parser.add_argument("--tasks", type=int, metavar="N", help="number of tasks (overrides the spec)")
    parser.add_argument("--seed", type=int, metavar="S", help="seed (overrides the spec)")
    parser.add_argument("--report", metavar="DIR", help="write an HTML report with plots and summary.json here")
    parser.add_argument("--address", metavar="RAY_ADDRESS",
                        help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray on 127.0.0.1)")
    parser.add_argument("--bank", metavar="URL|PATH",
                        help="ReasoningBank: a Qdrant server URL (http[s]://...) or a directory for the embedded bank")
    parser.add_argument("--batch-size", type=int, metavar="N", help="tasks per Ray call (overrides the spec)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    parser.add_argument("--metrics-push", metavar="URL",
                        help="push metrics to this Prometheus Pushgateway during the run and at its end "
                             "(telemetry.pushUrl in the spec)")
    parser.add_argument("--check", action="store_true",
                        help="validate the spec and print the plan (agents, topology, syncs, bank, telemetry); "
                             "start nothing")


def prepare(args: argparse.Namespace) -> RunSpec:
    """The validated spec with the command-line overrides applied (no Ray involved)."""
    if args.tasks is not None and args.tasks < 1:
        raise ConfigError(f"--tasks: must be >= 1, got {args.tasks}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {args.batch_size}")
    spec = RunSpec.load(args.spec) if args.spec else RunSpec.default()
    spec = spec.with_overrides(tasks=args.tasks, seed=args.seed, bank=args.bank, address=args.address,
                               metrics_push=getattr(args, "metrics_push", None))
    if args.batch_size is not None:
        spec = spec.with_swarm(batch_size=args.batch_size)
    spec.swarm_config()   # everything validated before Ray starts
    return spec


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona run``."""
    spec = prepare(args)
    if getattr(args, "check", False):
        p = plan(spec)
        sys.stdout.write((json.dumps(p.to_dict(), sort_keys=True) if args.json else p.format()) + "\n")
        return 0
    report_dir = Path(args.report) if args.report else None
    if report_dir is not None:
        _check_report_dir(report_dir)
    summary = execute(spec, report_dir=report_dir, progress=False if args.no_progress else None)
    out = sys.stdout
    if args.json:
        out.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
    else:
        out.write(format_summary(summary) + "\n")   # errors by kind are a row of the table
        if report_dir is not None:
            out.write(f"report: {report_dir / 'index.html'}\n")
    out.flush()
    if summary.get("infra_stop"):   # calls kept failing for an infrastructure reason: not a success
        return 1
    return 0 if summary["tasks"] > 0 and not summary.get("failed_tasks") else 1


def _check_report_dir(d: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--report: the report's plots need matplotlib: pip install 'swarm-sona[report]'") from exc
    if d.exists() and not d.is_dir():
        raise ConfigError(f"--report: {d} exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--report: cannot create {d}: {exc.strerror or exc}") from exc


def _bank_location(spec: RunSpec) -> RunSpec:
    """An embedded bank without a path lives in the user's data dir (so later runs reuse it)."""
    if spec.bank.enabled and spec.bank.backend == "edge" and spec.bank.path is None and spec.bank.persist_to_disk:
        from swarm_sona.bank import default_bank_path

        path = default_bank_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        spec = spec.with_overrides(bank=str(path))
    return spec


def _params_drift(current: dict[str, Any], start: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per-agent adapter drift: the norm of (current shareable adapter state - state at the start).

    ``current``: agent id -> flat adapter state (``SwarmSONA.agent_params()``); an agent whose
    state could not be read (``{"error": ...}``) is left out.
    """
    import numpy as np

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

    def record(self, runlog: RunLog, start_params: dict[str, dict[str, Any]]) -> None:
        st = self.request.result()   # the swarm's meter records the gauges of the snapshot
        # the agents answered after their queued batches: place the point at the tasks they had done
        agent_tasks = [a["tasks"] for a in st["agents"].values() if isinstance(a, dict) and "tasks" in a]
        at = self.requested_at
        if len(agent_tasks) == len(st["agents"]):
            at = min(runlog.done, max(at, sum(agent_tasks)))
        runlog.add_drift(at, _params_drift(st["params"], start_params))


def execute(spec: RunSpec, *, report_dir: Path | None = None, progress: bool | None = None,
            stream: TextIO | None = None, tel: Any = None) -> dict[str, Any]:
    """Run ``spec`` to the end and return its summary (see :mod:`swarm_sona.app.report`).

    Starts telemetry from ``spec.telemetry``, the swarm (joining ``RAY_ADDRESS`` / the spec's
    address if any, else a local Ray it stops again), streams the tasks through it, and
    writes the report when ``report_dir`` is given. ``tel``: an existing
    :class:`~swarm_sona.core.telemetry.Telemetry` to report into (then it is neither configured
    from the spec nor shut down here).
    """
    from swarm_sona.core import telemetry
    from swarm_sona.runtime.swarm import SwarmSONA

    spec = _bank_location(spec)
    loaded = bank_count(spec.bank.path) if spec.bank.backend == "edge" else None   # before the swarm adds any
    cfg = spec.swarm_config()
    executor = spec.make_executor()
    tasks = spec.make_tasks(executor)
    router = cfg.sona.llm_router
    costs = {m.name: m.cost for m in router.models if m.cost_unit == "call"}
    strongest = max(router.models, key=lambda m: (m.quality, m.cost)).name if router.models else None
    runlog = RunLog(window=spec.summary_window, model_costs=costs, strongest_model=strongest)
    index = {t.id: i for i, t in enumerate(tasks)}
    err = stream or sys.stderr
    own_tel = tel is None
    if own_tel:
        tel = telemetry.configure(spec.telemetry, attributes={"swarm_sona.role": "driver"})
    scope = contextlib.nullcontext() if own_tel else telemetry.using(tel)
    if tel.prometheus_url:
        err.write(f"swarm-sona: metrics at {tel.prometheus_url}\n")
    if tel.push_url:
        err.write(f"swarm-sona: pushing metrics to {tel.push_url} every {tel.config.push_interval_s:g} s\n")
    budget = spec.budgets
    stopped: str | None = None
    snapshot_every = max(1, len(tasks) // 10)
    t_start = time.monotonic()
    swarm = None
    hook_errors: dict[str, int] = {}
    snap: _Snapshot | None = None

    def on_batch(b: dict[str, Any]) -> None:   # once per finished batch, before its results
        nonlocal snap
        runlog.add_batch(n_tasks=b["tasks"], retrieve_s=b["retrieve_s"], acked=b["acked"], background_s=b["background_s"])
        if snap is not None and snap.request.ready():
            snap.record(runlog, start_params)
            snap = None

    try:
        with scope, tel.span("run", attributes={"topology": spec.topology, "tasks": len(tasks), "seed": spec.seed}):
            hooked = {a.id: HookedExecutor(executor, a) for a in spec.agents
                      if not a.is_coordinator and (a.hooks.pre or a.hooks.post)}
            swarm = SwarmSONA(cfg, executor=executor, agent_executors=hooked, telemetry=tel)
            start_params = swarm.agent_params()
            startup_s = time.monotonic() - t_start
            runlog.start()   # tasks/s measures the task stream (the swarm's start-up is startup_s)
            with Progress(total=len(tasks), description="swarm-sona run", enabled=progress, stream=err) as bar:
                def budget_reached() -> bool:   # read by the swarm before each dispatch
                    return stopped is not None

                for r in swarm.run(tasks, progress=False, on_batch=on_batch, should_stop=budget_reached):
                    runlog.add(r, index=index.get(str(r.get("task_id"))))
                    if r.get("hook_errors"):
                        for msg in r["hook_errors"]:
                            hook_errors[msg] = hook_errors.get(msg, 0) + 1
                            if hook_errors[msg] == 1:   # report each distinct failure once, count the rest
                                err.write(f"swarm-sona: agent {r.get('agent_id')}: {msg}\n")
                    live = runlog.live()
                    if bar.enabled:
                        bar.advance(1, success=round(live["success"], 3), spend=f"${live['spend_usd']:.4f}")
                    done = runlog.done
                    if done % snapshot_every == 0:
                        if snap is None:   # the agents answer between batches; the driver keeps dispatching
                            snap = _Snapshot(swarm.request_stats(params=True), done)
                    # a budget stops dispatch; batches already running finish and are counted
                    if stopped is None and budget.run_usd is not None and live["spend_usd"] >= budget.run_usd:
                        stopped = f"run budget of ${budget.run_usd:g} reached"
                    if (stopped is None and budget.wall_clock_s is not None
                            and time.monotonic() - t_start >= budget.wall_clock_s):
                        stopped = f"wall-clock budget of {budget.wall_clock_s:g} s reached"
            runlog.finish()
            infra_stop = swarm.infra_stop.message if swarm.infra_stop is not None else None
            if infra_stop is not None and stopped is None:
                stopped = infra_stop
            if snap is not None:
                snap.record(runlog, start_params)
            final = swarm.request_stats(params=True).result()
            stats = {k: v for k, v in final.items() if k != "params"}
            runlog.add_drift(runlog.done, _params_drift(final["params"], start_params))
            runlog.patterns_stored = int(stats.get("acked_patterns", 0))
        bank = spec.bank.url if spec.bank.backend == "qdrant" else spec.bank.path
        summary = runlog.summary(topology=spec.topology, seed=spec.seed, bank=bank, stopped=stopped,
                                 bank_bytes=dir_bytes(bank) if spec.bank.backend == "edge" else None,
                                 bank_loaded=loaded,
                                 startup_s=startup_s,
                                 failed_tasks=int(stats.get("failed_tasks", 0)),
                                 retried_batches=int(stats.get("retried_batches", 0)),
                                 syncs=int(stats.get("syncs", 0)), merge_ms=stats.get("merge_ms"),
                                 bank_patterns=(stats.get("bank") or {}).get("count")
                                 if isinstance(stats.get("bank"), dict) else None)
        summary["infra_stop"] = infra_stop
        summary["errors_by_kind"] = dict(stats.get("errors_by_kind") or {})
        if stopped:
            err.write(f"swarm-sona: stopped early: {stopped}\n")
        if report_dir is not None:
            write_report(report_dir, runlog, summary)
        return summary
    finally:
        if swarm is not None:
            swarm.shutdown()
        tel.flush()
        if own_tel and telemetry.current() is tel:
            telemetry.shutdown()


# =====================================================================================
# run --check: the plan of a run, nothing started
# =====================================================================================
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
    import types

    from swarm_sona.runtime.swarm import SwarmSONA  # imports Ray's client library; starts nothing

    cfg = spec.swarm_config()
    topo = SwarmSONA._topology(types.SimpleNamespace(config=cfg))   # type: ignore[arg-type]
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
