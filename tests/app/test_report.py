"""Run summary and report: summary values, table, HTML, PNG plots that decode as images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from swarm_sona.app.report import (
    PLOTS,
    SUMMARY_FIELDS,
    SUMMARY_SCHEMA_VERSION,
    RunLog,
    dir_bytes,
    format_summary,
    summary_rows,
    write_report,
)


def _log(n=400, seed=0) -> RunLog:
    rng = np.random.default_rng(seed)
    log = RunLog(window=50, model_costs={"small": 0.001, "large": 0.02}, strongest_model="large")
    order = rng.permutation(n)                  # results arrive out of order
    for i in order:
        model = "large" if i < n // 4 else "small"
        ok = bool(rng.random() < (0.4 if i < 50 else 0.9))
        log.add({"task_id": f"t{i}", "agent_id": f"a{i % 3}", "model": model, "success": ok,
                 "reward": 0.8 if ok else 0.1, "cost_usd": log.model_costs[model], "patterns": int(i >= 100),
                 "learn_s": 1e-5 * (1 + (i % 5)), "hook_errors": ["post hook failed: exit 1"] if i == 7 else []},
                index=int(i))
    for k in range(8):
        log.add_batch(n_tasks=50, retrieve_s=0.001 * (k + 1), acked=5)
        log.add_drift(50 * (k + 1), {"a0": 0.1 * k, "a1": 0.2 * k})
    log.finish()
    return log


def test_summary_values():
    log = _log()
    s = log.summary(topology="star")
    assert set(SUMMARY_FIELDS) <= set(s) and s["topology"] == "star"
    rows = log.ordered()
    assert s["tasks"] == 400 and s["window"] == 50
    assert s["success_first_window"] == pytest.approx(np.mean([r["success"] for r in rows[:50]]))
    assert s["success_last_window"] == pytest.approx(np.mean([r["success"] for r in rows[-50:]]))
    assert s["spend_usd"] == pytest.approx(100 * 0.02 + 300 * 0.001)
    assert s["spend_always_strongest_usd"] == pytest.approx(400 * 0.02)
    assert s["spend_ratio"] == pytest.approx(2.3 / 8.0)
    assert s["routing_share"] == {"large": 0.25, "small": 0.75}
    assert (s["patterns_stored"], s["patterns_reused"]) == (40, 300)
    assert s["learning_overhead_us_median"] == pytest.approx(30.0)
    assert s["retrieval_ms_median"] == pytest.approx(4.5)
    assert s["retrieval_us_per_task_median"] == pytest.approx(90.0)
    assert s["hook_failures"] == 1
    assert sum(a["tasks"] for a in s["agents"].values()) == 400
    json.dumps(s)   # plain data


def test_background_cycles_are_reported_apart_from_the_instant_step():
    log = RunLog(window=2)
    for i in range(4):
        log.add({"model": "m", "success": True, "learn_s": 1e-5 * (i + 1)}, index=i)
    log.add_batch(n_tasks=2, retrieve_s=0.002, background_s=[0.004])
    log.add_batch(n_tasks=2, retrieve_s=0.001, background_s=[0.006, 0.010])
    s = log.summary()
    assert s["learning_overhead_us_median"] == pytest.approx(25.0)   # instant steps only
    assert (s["background_cycles"], s["background_ms_median"]) == (3, pytest.approx(6.0))
    assert s["learning_us_per_task"] == pytest.approx((1e-4 + 0.02) / 4 * 1e6)
    assert "25.0 us instant-loop step; background loop 6.00 ms per cycle x 3, 5,025 us per task in all" \
        in format_summary(s)


def test_the_clock_covers_the_task_stream_from_start():
    import time

    log = RunLog(window=1)
    time.sleep(0.05)                                 # set-up before the stream is not counted
    t_start = time.perf_counter()
    log.start()
    log.add({"model": "m", "success": True})
    log.finish()
    s = log.summary(startup_s=1.5)
    assert 0 < s["elapsed_s"] <= time.perf_counter() - t_start
    assert "after 1.5 s start-up" in format_summary(s)


def test_duplicate_index_is_rejected():
    log = RunLog()
    log.add({"model": "m", "success": True}, index=0)
    with pytest.raises(ValueError, match="task index 0 reported twice"):
        log.add({"model": "m", "success": True}, index=0)


def test_missing_measurements_show_as_na():
    log = RunLog(window=5)
    log.add({"model": "m", "success": True, "cost_usd": 0.0})
    s = log.summary()
    assert s["learning_overhead_us_median"] is None and s["spend_ratio"] is None
    table = format_summary(s)
    assert "learning overhead per task (median)  n/a" in table


def test_table_lists_every_headline():
    table = format_summary(_log().summary())
    for label in ("tasks", "success first 50 / last 50", "spend", "always-strongest (large)", "routing share",
                  "patterns stored", "patterns reused", "learning overhead per task (median)", "retrieval latency (median)"):
        assert label in table, label


def test_report_files_exist_and_are_valid_pngs(tmp_path):
    import matplotlib.image as mpimg

    log = _log()
    s = log.summary()
    paths = write_report(tmp_path / "rep", log, s)
    assert set(paths) == {"summary.json", "index.html", *PLOTS}
    for name in PLOTS:
        img = mpimg.imread(paths[name])            # decodes the whole PNG
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.01          # not a blank canvas
    assert json.loads(paths["summary.json"].read_text())["tasks"] == 400
    assert json.loads(paths["summary.json"].read_text())["schema_version"] == SUMMARY_SCHEMA_VERSION
    page = paths["index.html"].read_text()
    for name in PLOTS:
        assert f'src="{name}"' in page
    assert "routing share" in page and "summary.json" in page
    assert not list((tmp_path / "rep").glob("*.tmp"))


def test_report_of_an_empty_run_still_renders(tmp_path):
    log = RunLog(window=10)
    log.finish()
    paths = write_report(tmp_path, log, log.summary())
    assert all(p.stat().st_size > 0 for p in paths.values())


def test_numbers_read_as_a_person_writes_them():
    s = _log().summary()
    s.update(tasks_per_s=1548.7, elapsed_s=1.29)
    table = format_summary(s)
    assert "400 in 1.3 s (1,549 tasks/s)" in table and "e+0" not in table
    assert "patterns reused                      by 300 of 400 tasks (75.0%)" in table
    assert " / " not in table.split("patterns stored")[1].splitlines()[0]
    big = {**s, "tasks": 20000}
    assert format_summary(big).splitlines()[0].split()[1] == "20,000"


def test_bank_syncs_agents_and_errors_are_in_the_table_when_the_run_reports_them():
    s = _log().summary()
    plain = format_summary(s)
    assert "ReasoningBank" not in plain and "consensus syncs" not in plain and "errors by kind" not in plain
    s.update(bank="/home/u/.local/share/swarm-sona/bank", bank_patterns=12345, bank_bytes=3 * 1024 * 1024,
             syncs=7, merge_ms=1.234, failed_tasks=3, errors_by_kind={"execute": 2, "embed": 1},
             stopped="run budget of $1 reached")
    rows = dict(summary_rows(s))
    assert rows["ReasoningBank"] == "/home/u/.local/share/swarm-sona/bank (12,345 patterns, 3.00 MiB on disk)"
    s["bank_loaded"] = 12000
    assert dict(summary_rows(s))["ReasoningBank"].endswith("(12,345 patterns, loaded 12,000 at start, 3.00 MiB on disk)")
    assert rows["consensus syncs"] == "7, 1.23 ms per merge (mean)"
    assert rows["errors by kind"] == "execute 2, embed 1" and rows["failed tasks"] == "3"
    assert rows["stopped early"] == "run budget of $1 reached"
    agents = {k: v for k, v in rows.items() if k.startswith("agent ")}
    assert set(agents) == {"agent a0", "agent a1", "agent a2"}
    a0 = s["agents"]["a0"]
    assert agents["agent a0"] == f"{a0['tasks']} tasks, {100 * a0['success_rate']:.1f}% success"


def test_dir_bytes_counts_the_files_of_a_bank_directory(tmp_path):
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "a").write_bytes(b"x" * 1000)
    (tmp_path / "bank.json").write_bytes(b"{}")
    assert dir_bytes(tmp_path) == 1002 and dir_bytes(tmp_path / "nope") is None and dir_bytes(None) is None
