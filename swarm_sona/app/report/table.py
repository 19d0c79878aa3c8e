"""The run summary as text: human-readable numbers and the two-column summary table.

Example:
    >>> human(1548.7), format_bytes(2048)
    ('1,549', '2.00 KiB')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["human", "format_bytes", "summary_rows", "format_summary"]


def human(v: Any, digits: int = 3) -> str:
    """A number as a person reads it: ``digits`` significant digits in fixed point, thousands
    separated, whole numbers from 1,000 up; ``n/a`` for None or NaN.

    Example:
        >>> human(1548.7), human(15.48), human(0.001234), human(2000), human(5.02e-9), human(None)
        ('1,549', '15.5', '0.00123', '2,000', '5.02e-09', 'n/a')
    """
    if v is None or isinstance(v, bool):
        return "n/a" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not isinstance(v, float):
        return str(v)
    if math.isnan(v) or math.isinf(v):
        return "n/a" if math.isnan(v) else str(v)
    a = abs(v)
    if a >= 10 ** (digits - 1) or a >= 1000:
        return f"{v:,.0f}"
    if a == 0:
        return "0"
    if a < 1e-6:
        return f"{v:.{max(0, digits - 1)}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(a)))
    return f"{v:,.{decimals}f}"


_fmt = human   # the short name the rows below use


def summary_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the summary table.

    Example:
        >>> summary_rows({"tasks": 3, "window": 3, "spend_usd": 0.5})[3]
        ('spend', '$0.5000')
    """
    share = ", ".join(f"{m} {p:.0%}" for m, p in (s.get("routing_share") or {}).items()) or "n/a"
    rows = [
        ("tasks", f"{s['tasks']:,}" + (f" in {s['elapsed_s']:.1f} s ({_fmt(s.get('tasks_per_s'))} tasks/s)"
                                       if s.get("elapsed_s") else "")
         + (f", after {s['startup_s']:.1f} s start-up" if s.get("startup_s") is not None else "")),
        ("success rate", _pct(s.get("success_rate"))),
        (f"success first {s['window']} / last {s['window']}",
         f"{_pct(s.get('success_first_window'))} -> {_pct(s.get('success_last_window'))}"),
        ("spend", f"${_fmt(s.get('spend_usd'), 4)}"),
        (f"always-strongest ({s.get('strongest_model') or 'n/a'})",
         f"${_fmt(s.get('spend_always_strongest_usd'), 4)}"
         + (f" (this run spent {s['spend_ratio']:.0%} of it)" if s.get("spend_ratio") is not None else "")),
        ("routing share", share),
        ("patterns stored", _fmt(int(s.get("patterns_stored") or 0))),
        ("patterns reused", f"by {_fmt(int(s.get('patterns_reused') or 0))} of {s['tasks']:,} tasks"
         + (f" ({_pct(s.get('reuse_rate'))})" if s.get("reuse_rate") is not None else "")),
        ("learning overhead per task (median)", _unit(s.get("learning_overhead_us_median"), "us")
         + (" instant-loop step" if s.get("learning_overhead_us_median") is not None else "")
         + (f"; background loop {_fmt(s['background_ms_median'])} ms per cycle x {s['background_cycles']},"
            f" {_fmt(s.get('learning_us_per_task'))} us per task in all"
            if s.get("background_cycles") and s.get("background_ms_median") is not None else "")),
        ("retrieval latency (median)", _unit(s.get("retrieval_ms_median"), "ms")
         + (f" per batched call, {_fmt(s['retrieval_us_per_task_median'])} us per task"
            if s.get("retrieval_us_per_task_median") is not None else "")),
    ]
    return rows + _where_rows(s) + _outcome_rows(s)


def _where_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Where the run's state is: the bank (and its size), the syncs, each agent's share."""
    rows = []
    if s.get("bank"):
        size = [f"{_fmt(int(s['bank_patterns']))} patterns"] if s.get("bank_patterns") is not None else []
        if s.get("bank_loaded"):
            size.append(f"loaded {_fmt(int(s['bank_loaded']))} at start")
        if s.get("bank_bytes") is not None:
            size.append(format_bytes(int(s["bank_bytes"])) + " on disk")
        rows.append(("ReasoningBank", str(s["bank"]) + (f" ({', '.join(size)})" if size else "")))
    if "syncs" in s:
        rows.append(("consensus syncs", _fmt(int(s.get("syncs") or 0))
                     + (f", {_fmt(float(s['merge_ms']))} ms per merge (mean)" if s.get("merge_ms") is not None
                        else "")))
    for aid, a in (s.get("agents") or {}).items():
        rows.append((f"agent {aid}", f"{_fmt(int(a['tasks']))} tasks, {_pct(a.get('success_rate'))} success"))
    return rows


def _outcome_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What went wrong or cut the run short."""
    rows = []
    if s.get("failed_tasks"):
        rows.append(("failed tasks", _fmt(int(s["failed_tasks"]))))
    if s.get("errors_by_kind"):
        kinds = sorted(s["errors_by_kind"].items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        rows.append(("errors by kind", ", ".join(f"{k} {_fmt(int(v))}" for k, v in kinds)))
    if s.get("hook_failures"):
        rows.append(("hook failures", _fmt(int(s["hook_failures"]))))
    if s.get("stopped"):
        rows.append(("stopped early", str(s["stopped"])))
    if s.get("interrupted"):
        submitted = s.get("tasks_submitted")
        rows.append(("interrupted", f"partial summary: {s['tasks']:,}"
                     + (f" of {int(submitted):,}" if submitted is not None else "") + " tasks completed"))
    if "checkpoint_dir" in s:
        rows.append(("checkpoints", str(s["checkpoint_dir"]) if s["checkpoint_dir"]
                     else "none kept (a temporary directory; set swarm.checkpointDir to keep them)"))
    return rows


def format_bytes(n: int) -> str:
    """A byte count in binary units.

    Example:
        >>> format_bytes(512), format_bytes(12_900_000)
        ('512 B', '12.3 MiB')
    """
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{human(size)} {unit}"
        size /= 1024
    return f"{n:,} B"


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


def _unit(v: Any, unit: str) -> str:
    return "n/a" if v is None else f"{_fmt(float(v))} {unit}"


def format_summary(s: Mapping[str, Any]) -> str:
    """The summary as an aligned two-column text table.

    Example:
        >>> from swarm_sona.app.report.run_log import RunLog
        >>> print(format_summary(RunLog().summary()).splitlines()[1])
        success rate                         n/a
    """
    rows = summary_rows(s)
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k:<{width}}{v}" for k, v in rows)
