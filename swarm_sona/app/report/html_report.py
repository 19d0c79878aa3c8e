"""The run report on disk: ``summary.json``, the PNG plots of :data:`PLOTS` and ``index.html``.

Example:
    >>> import tempfile
    >>> from swarm_sona.app.report.run_log import RunLog
    >>> log = RunLog(window=1)
    >>> log.add({"task_id": "0", "agent_id": "a", "model": "m", "success": True})
    >>> sorted(write_report(tempfile.mkdtemp(), log, log.summary()))[:2]
    ['adapter_drift.png', 'index.html']
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.app.report.plots import PLOTS, render_plots
from swarm_sona.app.report.run_log import RunLog
from swarm_sona.app.report.table import summary_rows

__all__ = ["write_report", "SUMMARY_SCHEMA_VERSION"]


#: version of a run summary's layout (``summary.json`` and ``swarm-sona run --json``)
SUMMARY_SCHEMA_VERSION = 1


def write_report(directory: str | os.PathLike[str], log: RunLog, summary: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``summary.json``, the PNG plots of :data:`PLOTS` and ``index.html``; returns their paths.

    Needs matplotlib (``pip install 'swarm-sona[report]'``); without it only summary.json is
    written and an ImportError names the extra.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"summary.json": d / "summary.json"}
    _write_atomic(paths["summary.json"], json.dumps({"schema_version": SUMMARY_SCHEMA_VERSION, **summary}, indent=2,
                                                    sort_keys=True, default=_json_default))
    paths.update(render_plots(d, log, window=int(summary.get("window") or log.window)))
    paths["index.html"] = d / "index.html"
    _write_atomic(paths["index.html"], _html(summary))
    return paths


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
<style>body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em}}
table{{border-collapse:collapse}}th,td{{text-align:left;padding:4px 12px;border-bottom:1px solid #ddd}}
figure{{display:block;margin:1.5em 0}}img{{width:100%;height:auto}}figcaption{{font-weight:600}}</style></head>
<body><h1>{title}</h1>
<table>{rows}</table>
<h2>Agents</h2><table><tr><th>agent</th><th>tasks</th><th>success</th></tr>{agents}</table>
<h2>Plots</h2>{figs}
<p><a href="summary.json">summary.json</a></p>
</body></html>
"""
