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

__all__ = ["PLOTS", "render_plots", "load_pyplot"]

PLOTS: dict[str, str] = {
    "success_spend.png": "Success rate (rolling) and cumulative spend over tasks",
    "routing_share.png": "Routing share per model over tasks (rolling)",
    "latency.png": "Learning step and retrieval latency histograms",
    "adapter_drift.png": "Per-agent adapter drift over the run",
}


def load_pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend; an ImportError names the extra."""
    try:
        import matplotlib  # optional dependency: the ``report`` extra

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the run report's plots need matplotlib: pip install 'swarm-sona[report]'") from exc
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
    return _savefig(fig, path, plt)


def _routing_share(plt: Any, path: Path, rows: list[dict[str, Any]], w: int) -> Path:
    x = np.arange(1, len(rows) + 1)
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
    return _savefig(fig, path, plt)


def _latency(plt: Any, path: Path, log: RunLog, rows: list[dict[str, Any]]) -> Path:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    learn = np.array([float(r["learn_s"]) * 1e6 for r in rows if r["learn_s"] is not None])
    _hist(a1, learn, "learning step (us)")
    _hist(a2, np.array(log.retrieval_s) * 1e3, "retrieval call (ms)")
    fig.suptitle(PLOTS["latency.png"])
    return _savefig(fig, path, plt)


def _adapter_drift(plt: Any, path: Path, log: RunLog) -> Path:
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
