"""The run summary and report: what a swarm run did, as a table, a JSON object and an HTML page.

:class:`RunLog` collects per-task results as they stream back (in any order), per-batch
retrieval and background-loop timings and per-agent adapter-drift snapshots; :meth:`RunLog.summary` condenses
them into the summary (one flat JSON-able dict); :func:`format_summary` prints it as a table;
:func:`write_report` writes ``summary.json``, PNG plots (matplotlib, the ``report`` extra) and
``index.html`` into a directory.

Summary fields: ``tasks``, ``success_rate``, ``window``, ``success_first_window``,
``success_last_window``, ``spend_usd``, ``strongest_model``, ``spend_always_strongest_usd``,
``spend_ratio``, ``routing_share`` (model -> share), ``patterns_stored``, ``patterns_reused``
(tasks that ran with at least one retrieved pattern), ``reuse_rate``,
``learning_overhead_us_median``, ``retrieval_ms_median`` (one batched retrieval call),
``retrieval_us_per_task_median``, ``elapsed_s``, ``tasks_per_s``, ``hook_failures``,
``agents`` (id -> tasks, success_rate), ``background_cycles``, ``background_ms_median``,
``learning_us_per_task`` and whatever the caller adds (topology, seed, bank...).

Learning cost: ``learning_overhead_us_median`` is the median over tasks of the instant-loop
step (each task's share of its chunk's ``learn`` call, background cycles excluded);
the background loop runs every N trajectories and is reported per cycle
(``background_ms_median``); ``learning_us_per_task`` is all learning time (instant steps
plus background cycles) divided by the tasks. ``elapsed_s`` / ``tasks_per_s`` cover the
task stream, from :meth:`RunLog.start` (the first dispatch) to :meth:`RunLog.finish`.

Example:
    >>> log = RunLog(window=2, model_costs={"small": 0.001, "large": 0.02}, strongest_model="large")
    >>> for i, ok in enumerate([False, True, True, True]):
    ...     log.add({"task_id": str(i), "agent_id": "a", "model": "small", "success": ok,
    ...              "reward": float(ok), "cost_usd": 0.001, "patterns": i % 2, "learn_s": 1e-5}, index=i)
    >>> s = log.summary()
    >>> s["success_first_window"], s["success_last_window"], s["routing_share"]
    (0.5, 1.0, {'small': 1.0})
    >>> round(s["spend_ratio"], 3)
    0.05
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunLog", "format_summary", "write_report", "SUMMARY_FIELDS", "PLOTS", "human", "dir_bytes",
           "bank_count"]

SUMMARY_FIELDS: tuple[str, ...] = (
    "tasks", "success_rate", "window", "success_first_window", "success_last_window", "spend_usd",
    "strongest_model", "spend_always_strongest_usd", "spend_ratio", "routing_share", "patterns_stored",
    "patterns_reused", "reuse_rate", "learning_overhead_us_median", "retrieval_ms_median",
    "retrieval_us_per_task_median", "elapsed_s", "tasks_per_s", "hook_failures", "agents",
    "background_cycles", "background_ms_median", "learning_us_per_task",
)

PLOTS: dict[str, str] = {
    "success_spend.png": "Success rate (rolling) and cumulative spend over tasks",
    "routing_share.png": "Routing share per model over tasks (rolling)",
    "latency.png": "Learning step and retrieval latency histograms",
    "adapter_drift.png": "Per-agent adapter drift over the run",
}


def _median(xs: Sequence[float]) -> float | None:
    return float(np.median(xs)) if len(xs) else None


class RunLog:
    """Collects a run's results; see the module docstring.

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
        self.background_s: list[float] = []          # per background-loop cycle
        self.patterns_stored = 0
        self.hook_failures = 0
        self.drift: list[tuple[int, dict[str, float]]] = []
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
        self.patterns_stored += int(acked)
        self.background_s.extend(float(b) for b in background_s)

    def add_drift(self, tasks_done: int, norms: Mapping[str, float]) -> None:
        """A snapshot of each agent's adapter drift (norm of its adapter delta) after ``tasks_done`` tasks."""
        self.drift.append((int(tasks_done), {k: float(v) for k, v in norms.items()}))

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


# =====================================================================================
# Table
# =====================================================================================
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


_fmt = human


def summary_rows(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of the summary table."""
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
    if s.get("bank"):
        size = [f"{_fmt(int(s['bank_patterns']))} patterns"] if s.get("bank_patterns") is not None else []
        if s.get("bank_loaded"):
            size.append(f"loaded {_fmt(int(s['bank_loaded']))} at start")
        if s.get("bank_bytes") is not None:
            size.append(_bytes(int(s["bank_bytes"])) + " on disk")
        rows.append(("ReasoningBank", str(s["bank"]) + (f" ({', '.join(size)})" if size else "")))
    if "syncs" in s:
        rows.append(("consensus syncs", _fmt(int(s.get("syncs") or 0))
                     + (f", {_fmt(float(s['merge_ms']))} ms per merge (mean)" if s.get("merge_ms") is not None
                        else "")))
    for aid, a in (s.get("agents") or {}).items():
        rows.append((f"agent {aid}", f"{_fmt(int(a['tasks']))} tasks, {_pct(a.get('success_rate'))} success"))
    if s.get("failed_tasks"):
        rows.append(("failed tasks", _fmt(int(s["failed_tasks"]))))
    if s.get("errors_by_kind"):
        kinds = sorted(s["errors_by_kind"].items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
        rows.append(("errors by kind", ", ".join(f"{k} {_fmt(int(v))}" for k, v in kinds)))
    if s.get("hook_failures"):
        rows.append(("hook failures", _fmt(int(s["hook_failures"]))))
    if s.get("stopped"):
        rows.append(("stopped early", str(s["stopped"])))
    return rows


def _bytes(n: int) -> str:
    """A byte count in binary units (``12.3 MiB``)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} B" if unit == "B" else f"{human(size)} {unit}"
        size /= 1024
    return f"{n:,} B"


def bank_count(path: str | os.PathLike[str] | None) -> int | None:
    """Patterns an embedded bank held at its last flush (its ``manifest.json``), without opening it;
    None when there is no such bank or manifest.

    Example:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "manifest.json").write_text(json.dumps({"format": "swarm_sona.bank.manifest", "count": 7}))
        >>> bank_count(d), bank_count(d / "missing")
        (7, None)
    """
    if path is None:
        return None
    try:
        man = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    count = man.get("count") if isinstance(man, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def dir_bytes(path: str | os.PathLike[str] | None) -> int | None:
    """Bytes of the files under ``path`` (a bank directory); None when it is not a directory.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "x").write_bytes(b"12345")
        >>> dir_bytes(d), dir_bytes(d / "missing")
        (5, None)
    """
    if path is None:
        return None
    p = Path(path)
    if not p.is_dir():
        return None
    total = 0
    for f in p.rglob("*"):
        try:
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
        except OSError:
            continue
    return total


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


def _unit(v: Any, unit: str) -> str:
    return "n/a" if v is None else f"{_fmt(float(v))} {unit}"


def format_summary(s: Mapping[str, Any]) -> str:
    """The summary as an aligned two-column text table.

    Example:
        >>> print(format_summary(RunLog().summary()).splitlines()[1])
        success rate                         n/a
    """
    rows = summary_rows(s)
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k:<{width}}{v}" for k, v in rows)


# =====================================================================================
# Report
# =====================================================================================
def _rolling(x: np.ndarray, w: int) -> np.ndarray:
    if len(x) == 0:
        return x
    w = max(1, min(w, len(x)))
    c = np.cumsum(np.insert(x.astype(float), 0, 0.0))
    out = np.empty(len(x))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(0, idx - w)
    out[:] = (c[idx] - c[lo]) / (idx - lo)
    return out


def write_report(directory: str | os.PathLike[str], log: RunLog, summary: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``summary.json``, the PNG plots of :data:`PLOTS` and ``index.html``; returns their paths.

    Needs matplotlib (``pip install 'swarm-sona[report]'``); without it only summary.json is
    written and an ImportError names the extra.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"summary.json": d / "summary.json"}
    _write_atomic(paths["summary.json"], json.dumps(summary, indent=2, sort_keys=True, default=_json_default))
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the run report's plots need matplotlib: pip install 'swarm-sona[report]'") from exc
    rows = log.ordered()
    w = int(summary.get("window") or log.window)
    x = np.arange(1, len(rows) + 1)
    ok = np.array([r["success"] for r in rows], dtype=float)
    cost = np.cumsum([r["cost"] for r in rows]) if rows else np.array([])

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(x, _rolling(ok, w), color="tab:green", label=f"success rate (rolling {w})")
    ax.set_xlabel("task")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(x, cost, color="tab:blue", label="spend (USD)")
    base = log.model_costs.get(log.strongest_model or "")
    if base is not None:
        ax2.plot(x, base * x, color="tab:red", linestyle="--", label=f"always {log.strongest_model} (USD)")
    ax2.set_ylabel("cumulative spend (USD)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [str(h.get_label()) for h in handles], loc="lower right", fontsize=8)
    ax.set_title(PLOTS["success_spend.png"])
    paths["success_spend.png"] = _savefig(fig, d / "success_spend.png", plt)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    models = sorted({r["model"] for r in rows})
    if rows:
        shares = [_rolling(np.array([r["model"] == m for r in rows], dtype=float), w) for m in models]
        ax.stackplot(x, *shares, labels=models)
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("task")
    ax.set_ylabel(f"share of tasks (rolling {w})")
    ax.set_title(PLOTS["routing_share.png"])
    paths["routing_share.png"] = _savefig(fig, d / "routing_share.png", plt)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    learn = np.array([float(r["learn_s"]) * 1e6 for r in rows if r["learn_s"] is not None])
    _hist(a1, learn, "learning step (us)")
    _hist(a2, np.array(log.retrieval_s) * 1e3, "retrieval call (ms)")
    fig.suptitle(PLOTS["latency.png"])
    paths["latency.png"] = _savefig(fig, d / "latency.png", plt)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    agents = sorted({a for _, norms in log.drift for a in norms})
    for a in agents:
        pts = [(t, norms[a]) for t, norms in log.drift if a in norms]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=a)
    if agents:
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no adapter snapshots in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("tasks done")
    ax.set_ylabel("adapter drift (norm)")
    ax.set_title(PLOTS["adapter_drift.png"])
    paths["adapter_drift.png"] = _savefig(fig, d / "adapter_drift.png", plt)

    paths["index.html"] = d / "index.html"
    _write_atomic(paths["index.html"], _html(summary))
    return paths


def _hist(ax: Any, values: np.ndarray, label: str) -> None:
    if len(values):
        lo, hi = float(values.min()), float(values.max())
        if lo > 0 and hi / lo > 20:
            bins: Any = np.geomspace(lo, hi * 1.0001, 40)
            ax.set_xscale("log")
        else:
            bins = 40
        ax.hist(values, bins=bins, color="tab:purple")
        ax.axvline(float(np.median(values)), color="black", linestyle="--", label=f"median {np.median(values):.3g}")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(label)
    ax.set_ylabel("count")


def _savefig(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _html(summary: Mapping[str, Any]) -> str:
    rows = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(summary))
    figs = "\n".join(f'<figure><img src="{name}" alt="{html.escape(title)}"><figcaption>{html.escape(title)}'
                     f"</figcaption></figure>" for name, title in PLOTS.items())
    agents = "\n".join(f"<tr><td>{html.escape(a)}</td><td>{v['tasks']}</td><td>{100 * v['success_rate']:.1f}%</td></tr>"
                       for a, v in (summary.get("agents") or {}).items())
    title = "swarm-sona run report"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:4px 12px;border-bottom:1px solid #ddd}}figure{{display:inline-block;margin:1em}}
img{{max-width:500px}}</style></head>
<body><h1>{title}</h1>
<table>{rows}</table>
<h2>Agents</h2><table><tr><th>agent</th><th>tasks</th><th>success</th></tr>{agents}</table>
<h2>Plots</h2>{figs}
<p><a href="summary.json">summary.json</a></p>
</body></html>
"""

