"""The report's PNG plots (matplotlib, the ``report`` extra): one function per plot of :data:`PLOTS`.

Example:
    >>> import tempfile
    >>> from swarm_sona.app.report.run_log import RunLog
    >>> log = RunLog(window=2)
    >>> log.add({"task_id": "0", "agent_id": "a", "model": "m", "success": True, "learn_s": 1e-5})
    >>> sorted(p.name for p in render_plots(tempfile.mkdtemp(), log, window=2).values()) == sorted(PLOTS)
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.app.report.run_log import RunLog

__all__ = ["PLOTS", "FIGSIZE", "DPI", "render_plots", "load_pyplot"]

PLOTS: dict[str, str] = {
    "success_spend.png": "Success rate (rolling) and cumulative spend over the task stream",
    "routing_share.png": "Routing share per model over the task stream (rolling)",
    "latency.png": "Per-task learning step and retrieval time (cumulative distributions, p50 and p99 marked)",
    "adapter_drift.png": "Adapter drift per agent: how far each agent's adapters moved from where they started",
}

FIGSIZE = (12.0, 4.8)   # inches; at DPI 110: 1,320 x 528 px, shown full width in the report
DPI = 110


def load_pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend; an ImportError names the extra."""
    try:
        import matplotlib  # optional dependency: the ``report`` extra

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the run report's plots need matplotlib: pip install 'swarm-sona[report]'") from exc
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "legend.fontsize": 10,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def render_plots(directory: str | os.PathLike[str], log: RunLog, *, window: int) -> dict[str, Path]:
    """Write every plot of :data:`PLOTS` into ``directory`` (rolling windows of ``window`` tasks);
    returns file name -> path."""
    plt = load_pyplot()
    d = Path(directory)
    rows = log.ordered()
    w = int(window)
    return {
        "success_spend.png": _success_spend(plt, d / "success_spend.png", log, rows, w),
        "routing_share.png": _routing_share(plt, d / "routing_share.png", rows, w),
        "latency.png": _latency(plt, d / "latency.png", log, rows),
        "adapter_drift.png": _adapter_drift(plt, d / "adapter_drift.png", log),
    }


def _success_spend(plt: Any, path: Path, log: RunLog, rows: list[dict[str, Any]], w: int) -> Path:
    x = np.arange(1, len(rows) + 1)
    ok = np.array([r["success"] for r in rows], dtype=float)
    cost = np.cumsum([r["cost"] for r in rows]) if rows else np.array([])
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(x, _rolling(ok, w), color="tab:green", linewidth=2, label=f"success rate (rolling {w} tasks)")
    ax.set_xlabel("task (in submission order)")
    ax.set_ylabel(f"success rate (share of the last {w} tasks)")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.grid(False)
    ax2.plot(x, cost, color="tab:blue", linewidth=2, label="this run's spend (USD)")
    base = log.model_costs.get(log.strongest_model or "")
    if base is not None:
        ax2.plot(x, base * x, color="tab:red", linestyle="--", label=f"always {log.strongest_model} (USD)")
    ax2.set_ylabel("cumulative spend (USD)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [str(h.get_label()) for h in handles], loc="lower right")
    ax.set_title(PLOTS["success_spend.png"])
    return _savefig(fig, path, plt)


def _routing_share(plt: Any, path: Path, rows: list[dict[str, Any]], w: int) -> Path:
    x = np.arange(1, len(rows) + 1)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    models = sorted({r["model"] for r in rows})
    if rows:
        shares = [_rolling(np.array([r["model"] == m for r in rows], dtype=float), w) for m in models]
        ax.stackplot(x, *shares, labels=models)
        ax.legend(loc="upper right", title="model")
    ax.set_ylim(0, 1)
    ax.set_xlabel("task (in submission order)")
    ax.set_ylabel(f"share of the last {w} tasks")
    ax.set_title(PLOTS["routing_share.png"])
    return _savefig(fig, path, plt)


def _latency(plt: Any, path: Path, log: RunLog, rows: list[dict[str, Any]]) -> Path:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=FIGSIZE)
    learn = np.array([float(r["learn_s"]) * 1e6 for r in rows if r["learn_s"] is not None])
    _ecdf(a1, learn, None, "instant-loop learning step per task (µs)")
    per_task = np.array(log.retrieval_per_task_s) * 1e6
    served = np.array(log.retrieval_tasks[-len(per_task):] if per_task.size else [], dtype=float)
    _ecdf(a2, per_task, served if served.size == per_task.size else None,
          "retrieval per task (µs; one batched call shared by its tasks)")
    fig.suptitle(PLOTS["latency.png"])
    return _savefig(fig, path, plt)


def _adapter_drift(plt: Any, path: Path, log: RunLog) -> Path:
    fig, ax = plt.subplots(figsize=FIGSIZE)
    agents = sorted({a for _, norms in log.drift for a in norms})
    for i, t in enumerate(sorted(set(log.syncs))):
        ax.axvline(t, color="grey", linestyle=":", linewidth=1, label="consensus sync" if i == 0 else None)
    for a in agents:
        pts = sorted((t, norms[a]) for t, norms in log.drift if a in norms)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4, linewidth=1.5, label=a)
    if agents or log.syncs:
        ax.legend(loc="upper left")
    if not agents:
        ax.text(0.5, 0.5, "no adapter snapshots in this run", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("tasks done")
    ax.set_ylabel("drift: L2 norm of (adapters now - at start)")
    ax.set_title(PLOTS["adapter_drift.png"])
    return _savefig(fig, path, plt)


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


def _ecdf(ax: Any, values: np.ndarray, weights: np.ndarray | None, label: str) -> None:
    """The cumulative distribution of ``values`` (``weights``: how many tasks each stands for),
    with p50 and p99 marked; a log x axis when the values span more than 20x."""
    if len(values):
        order = np.argsort(values)
        v = values[order]
        w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)[order]
        cum = np.cumsum(w) / np.sum(w)
        ax.step(v, cum, where="post", color="tab:purple", linewidth=2)
        for q, style in ((0.5, "--"), (0.99, ":")):
            at = float(v[min(len(v) - 1, int(np.searchsorted(cum, q)))])
            ax.axvline(at, color="black", linestyle=style, label=f"p{round(q * 100)} {at:.3g} µs")
        if v[0] > 0 and v[-1] / v[0] > 20:
            ax.set_xscale("log")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(label)
    ax.set_ylabel("share of tasks at or below")


def _savefig(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    os.replace(tmp, path)
    return path
