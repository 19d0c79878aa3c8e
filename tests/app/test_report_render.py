"""The run report as a person sees it: full-width plots with labelled axes, per-task latency
distributions, drift with the consensus syncs marked, rendered by a real headless browser.

The browser test needs Debian's ``chromium`` (``apt-get install chromium``); without it, it is
skipped with that reason.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402  (a matplotlib dependency)

from swarm_sona.app.commands.run_stream import RunStream  # noqa: E402
from swarm_sona.app.report import PLOTS, RunLog, write_report  # noqa: E402
from swarm_sona.app.run_spec import BudgetsConfig  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
GREEN = (44, 160, 44)     # tab:green, the success-rate line
PURPLE = (148, 103, 189)  # tab:purple, the latency distributions


def _log() -> RunLog:
    rng = np.random.default_rng(0)
    log = RunLog(window=100, model_costs={"small": 0.0005, "large": 0.02}, strongest_model="large")
    for i in range(2000):
        log.add({"task_id": str(i), "agent_id": f"a{i % 4}", "model": "small" if rng.random() < 0.7 else "large",
                 "success": bool(rng.random() < 0.5 + i / 5000), "cost_usd": 0.001,
                 "learn_s": float(rng.lognormal(np.log(40e-6), 0.4))}, index=i)
    for _ in range(125):
        log.add_batch(n_tasks=16, retrieve_s=float(rng.lognormal(np.log(2e-3), 0.3)))
    for k in range(1, 11):
        log.add_drift(200 * k, {f"a{j}": 0.1 * k + 0.01 * j for j in range(4)})
    for t in (512, 1024, 1536):
        log.add_sync(t)
    return log


def _count(img: Image.Image, rgb: tuple[int, int, int], tol: int = 12) -> int:
    a = np.asarray(img.convert("RGB")).astype(int)
    return int((np.abs(a - np.array(rgb)).max(axis=2) <= tol).sum())


def test_every_plot_is_wide_and_drawn(tmp_path):
    paths = write_report(tmp_path, _log(), _log().summary())
    for name in PLOTS:
        with Image.open(paths[name]) as im:
            assert im.width >= 1200 and im.height >= 450, (name, im.size)   # readable at full width
    with Image.open(paths["latency.png"]) as im:
        assert _count(im, PURPLE) > 500          # both distributions drawn
    html = paths["index.html"].read_text()
    assert "img{width:100%" in html and "max-width:500px" not in html


def test_the_stream_marks_each_consensus_sync_and_snapshots_after_it():
    class Request:
        def __init__(self, done: int) -> None:
            self.done = done

        def ready(self) -> bool:
            return True

        def result(self, timeout: float = 60.0) -> dict:
            return {"agents": {"a": {"tasks": self.done}}, "params": {"a": {"w": [float(self.done)]}}}

    class Swarm:
        counters = {"syncs": 0}
        infra_stop = None

        def agent_params(self) -> dict:
            return {"a": {"w": [0.0]}}

        def request_stats(self, *, params: bool = False) -> Request:
            return Request(rs.runlog.done)

    import io

    rs = RunStream(RunLog(window=10), n_tasks=10_000, budget=BudgetsConfig(), err=io.StringIO())
    swarm = Swarm()
    rs.attach(swarm)
    for i in range(300):
        if i in (100, 200):
            swarm.counters["syncs"] += 1
        rs.add({"task_id": str(i), "agent_id": "a", "success": True})
        rs.on_batch({"tasks": 1, "retrieve_s": None, "acked": 0, "background_s": []})
    assert rs.runlog.syncs == [101, 201]
    assert [t for t, _ in rs.runlog.drift] == [101, 201]   # a drift point right after each sync

    # a sync after every task: drift points stay ~a hundredth of the run apart (bounded work)
    rs = RunStream(RunLog(window=10), n_tasks=1000, budget=BudgetsConfig(), err=io.StringIO())
    swarm = Swarm()
    swarm.counters = {"syncs": 0}
    rs.attach(swarm)
    for i in range(50):
        swarm.counters["syncs"] += 1
        rs.add({"task_id": str(i), "agent_id": "a", "success": True})
        rs.on_batch({"tasks": 1, "retrieve_s": None, "acked": 0, "background_s": []})
    points = [t for t, _ in rs.runlog.drift]
    assert len(rs.runlog.syncs) == 50 and points == [10, 20, 30, 40, 50]


@pytest.mark.skipif(CHROMIUM is None, reason="no headless browser: apt-get install chromium")
def test_the_page_renders_in_a_headless_browser_with_the_plots_full_width(tmp_path):
    paths = write_report(tmp_path / "report", _log(), _log().summary())
    shot = tmp_path / "page.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files",
           f"--screenshot={shot}", "--window-size=1440,3200", paths["index.html"].as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert shot.exists(), r.stderr[-2000:]
    with Image.open(shot) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
        green = (np.abs(a - np.array(GREEN)).max(axis=2) <= 12)
        assert green.sum() > 500, "the success plot did not render"
        cols = np.flatnonzero(green.any(axis=0))
        assert cols.max() - cols.min() > 1000, (cols.min(), cols.max())   # the line spans the page's width
        assert _count(im, PURPLE) > 500                                    # the latency plot rendered too
