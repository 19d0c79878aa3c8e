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

Ctrl-C during the task stream stops dispatch (a second one stops at once): the summary of
what completed is printed, with where the bank and the checkpoints are, and the command
exits 130. ``run --check`` lives in :mod:`swarm_sona.app.commands.run_plan`, the driver's
bookkeeping of the stream in :mod:`swarm_sona.app.commands.run_stream`.

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["run", "--tasks", "500", "--json"])   # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from swarm_sona.app.agent_defs import HookedExecutor
from swarm_sona.app.commands.run_plan import plan
from swarm_sona.app.commands.run_stream import RunStream
from swarm_sona.app.report import SUMMARY_SCHEMA_VERSION, RunLog, bank_count, dir_bytes, format_summary, write_report
from swarm_sona.app.run_spec import RunSpec
from swarm_sona.core.config import ConfigError
from swarm_sona.core.progress import Progress

__all__ = ["add_arguments", "run", "execute", "prepare"]

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
        out.write(json.dumps({"schema_version": SUMMARY_SCHEMA_VERSION, **summary}, sort_keys=True, default=str) + "\n")
    else:
        out.write(format_summary(summary) + "\n")   # errors by kind are a row of the table
        if report_dir is not None:
            out.write(f"report: {report_dir / 'index.html'}\n")
    out.flush()
    if summary.get("interrupted"):   # Ctrl-C: the summary of what completed, then the usual code
        return 130
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


def execute(spec: RunSpec, *, report_dir: Path | None = None, progress: bool | None = None,
            stream: TextIO | None = None, tel: Any = None) -> dict[str, Any]:
    """Run ``spec`` to the end and return its summary (see :mod:`swarm_sona.app.report`).

    Starts telemetry from ``spec.telemetry``, the swarm (joining ``RAY_ADDRESS`` / the spec's
    address if any, else a local Ray it stops again), streams the tasks through it, and
    writes the report when ``report_dir`` is given. ``tel``: an existing
    :class:`~swarm_sona.core.telemetry.Telemetry` to report into (then it is neither configured
    from the spec nor shut down here). A Ctrl-C during the stream ends it early (see
    :class:`~swarm_sona.app.commands.run_stream.RunStream`): the summary of what completed
    then has ``interrupted`` true.
    """
    from swarm_sona.core import telemetry

    spec = _bank_location(spec)
    loaded = bank_count(spec.bank.path) if spec.bank.backend == "edge" else None   # before the swarm adds any
    cfg = spec.swarm_config()
    executor = spec.make_executor()
    tasks = spec.make_tasks(executor)
    err = stream or sys.stderr
    own_tel = tel is None
    if own_tel:
        tel = telemetry.configure(spec.telemetry, attributes={"swarm_sona.role": "driver"})
    scope = contextlib.nullcontext() if own_tel else telemetry.using(tel)
    _announce_metrics(tel, err)
    t_start = time.monotonic()
    rs = RunStream(_run_log(spec, cfg), n_tasks=len(tasks), budget=spec.budgets, err=err, started_at=t_start)
    swarm = None
    try:
        with scope, tel.span("run", attributes={"topology": spec.topology, "tasks": len(tasks), "seed": spec.seed}):
            swarm = _start_swarm(spec, cfg, executor, tel)
            rs.attach(swarm)
            startup_s = time.monotonic() - t_start
            stats = _stream(swarm, tasks, rs, progress=progress, err=err)
        summary = _summary(spec, cfg, rs, stats, loaded=loaded, startup_s=startup_s, submitted=len(tasks))
        if rs.stopped:
            err.write(f"swarm-sona: stopped early: {rs.stopped}\n")
        if report_dir is not None:
            write_report(report_dir, rs.runlog, summary)
        return summary
    finally:
        if swarm is not None:
            swarm.shutdown()
        tel.flush()
        if own_tel and telemetry.current() is tel:
            telemetry.shutdown()


def _run_log(spec: RunSpec, cfg: Any) -> RunLog:
    """The run's log, with the always-strongest baseline of the router's models."""
    router = cfg.sona.llm_router
    costs = {m.name: m.cost for m in router.models if m.cost_unit == "call"}
    strongest = max(router.models, key=lambda m: (m.quality, m.cost)).name if router.models else None
    return RunLog(window=spec.summary_window, model_costs=costs, strongest_model=strongest)


def _announce_metrics(tel: Any, err: TextIO) -> None:
    if tel.prometheus_url:
        err.write(f"swarm-sona: metrics at {tel.prometheus_url}\n")
    if tel.push_url:
        err.write(f"swarm-sona: pushing metrics to {tel.push_url} every {tel.config.push_interval_s:g} s\n")


def _start_swarm(spec: RunSpec, cfg: Any, executor: Any, tel: Any) -> Any:
    """The swarm of ``spec`` (agents with shell hooks run through a HookedExecutor)."""
    from swarm_sona.runtime.swarm import SwarmSONA

    hooked = {a.id: HookedExecutor(executor, a) for a in spec.agents
              if not a.is_coordinator and a.hooks.active}
    return SwarmSONA(cfg, executor=executor, agent_executors=hooked, telemetry=tel)


def _stream(swarm: Any, tasks: list[Any], rs: RunStream, *, progress: bool | None, err: TextIO) -> dict[str, Any]:
    """Stream ``tasks`` through ``swarm`` into ``rs``; the swarm's final stats. A second Ctrl-C
    ends the stream at once: the stats are then the driver's own counters."""
    index = {t.id: i for i, t in enumerate(tasks)}
    rs.runlog.start()   # tasks/s measures the task stream (the swarm's start-up is startup_s)
    log.info("streaming %d tasks", len(tasks))
    try:
        with rs.interrupts(), Progress(total=len(tasks), description="swarm-sona run", enabled=progress,
                                       stream=err) as bar:
            for r in swarm.run(tasks, progress=False, on_batch=rs.on_batch, should_stop=rs.should_stop):
                rs.add(r, index=index.get(str(r.get("task_id"))))
                if bar.enabled:
                    live = rs.runlog.live()
                    bar.advance(1, success=round(live["success"], 3), spend=f"${live['spend_usd']:.4f}")
        return rs.finish(timeout=_INTERRUPTED_STATS_S if rs.interrupted else 60.0)
    except KeyboardInterrupt:
        return rs.abandon()


_INTERRUPTED_STATS_S = 10.0   # after a Ctrl-C the actors' final stats get this long


def _summary(spec: RunSpec, cfg: Any, rs: RunStream, stats: dict[str, Any], *, loaded: int | None,
             startup_s: float, submitted: int) -> dict[str, Any]:
    """The run's summary: the log's fields plus where the bank is, syncs and errors."""
    edge = spec.bank.backend == "edge"
    bank = spec.bank.url if spec.bank.backend == "qdrant" else spec.bank.path
    bank_stats = stats.get("bank")
    summary = rs.runlog.summary(topology=spec.topology, seed=spec.seed, bank=bank, stopped=rs.stopped,
                                bank_bytes=dir_bytes(bank) if edge else None, bank_loaded=loaded,
                                startup_s=startup_s,
                                failed_tasks=int(stats.get("failed_tasks", 0)),
                                retried_batches=int(stats.get("retried_batches", 0)),
                                syncs=int(stats.get("syncs", 0)), merge_ms=stats.get("merge_ms"),
                                bank_patterns=bank_stats.get("count") if isinstance(bank_stats, dict) else None)
    summary["infra_stop"] = stats.get("infra_stop")
    summary["errors_by_kind"] = dict(stats.get("errors_by_kind") or {})
    if rs.interrupted:
        summary.update(interrupted=True, tasks_submitted=submitted, checkpoint_dir=cfg.checkpoint_dir)
    return summary
