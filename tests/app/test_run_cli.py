"""`swarm-sona run` on a real local Ray (one session for the module, 127.0.0.1, no dashboard).

Shows: the default run finishes with exit code 0 and the summary (--json: one object with
the summary's fields) and writes the report; a second run on the same bank starts better
than the first; a run's telemetry (in-memory exporters) has the span tree driver -> agent ->
learn and metric values equal to the run's summary; a Prometheus scrape during a run has
every metric a Grafana panel queries.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from swarm_sona.app.cli import main  # noqa: E402
from swarm_sona.app.commands.run import execute  # noqa: E402
from swarm_sona.app.report import PLOTS, SUMMARY_FIELDS  # noqa: E402
from swarm_sona.app.run_spec import RunSpec  # noqa: E402
from swarm_sona.core.telemetry import Telemetry, TelemetryConfig  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

WINDOW = 500   # success-rate windows of 500 tasks: binomial sd ~0.02, well below the effects tested
DASHBOARD = Path(__file__).resolve().parents[2] / "cluster" / "grafana-dashboard.json"



def _run_cli(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    """A fresh 'user data directory': the default bank lands in it."""
    home = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(home))
        mp.delenv("SWARM_SONA_BANK_PATH", raising=False)
        yield home


@pytest.fixture(scope="module")
def first_run(data_home, tmp_path_factory):
    report = tmp_path_factory.mktemp("report")
    spec = tmp_path_factory.mktemp("spec") / "default-wide-window.yaml"
    spec.write_text(f"window: {WINDOW}\n")     # the default swarm; wide windows keep the comparisons stable
    rc, out = _run_cli(["run", str(spec), "--tasks", "2000", "--json", "--report", str(report), "--no-progress"])
    return rc, out, report


def test_default_run_finishes_with_the_summary_as_one_json_object(first_run, data_home):
    rc, out, _ = first_run
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    s = json.loads(lines[0])
    assert set(SUMMARY_FIELDS) <= set(s) and s["schema_version"] == 1
    assert s["tasks"] == 2000 and s["topology"] == "hierarchical"
    assert set(s["agents"]) == {"coder-1", "reviewer-1", "tester-1", "researcher-1"}
    assert s["bank"] == str(data_home / "swarm_sona" / "bank") and Path(s["bank"]).is_dir()
    assert sum(s["routing_share"].values()) == pytest.approx(1.0)
    assert 0 < s["spend_usd"] < s["spend_always_strongest_usd"]
    assert s["patterns_stored"] > 0 and s["bank_patterns"] > 0
    assert s["learning_overhead_us_median"] > 0 and s["retrieval_ms_median"] > 0
    # learning overhead = the instant-loop step; every background cycle is counted apart
    every = RunSpec.default().swarm_config().sona.background_every
    assert s["background_cycles"] == sum(a["tasks"] // every for a in s["agents"].values()) > 0
    assert s["background_ms_median"] > 0 and s["learning_us_per_task"] > 0
    assert s["startup_s"] > 0 and s["tasks_per_s"] == pytest.approx(s["tasks"] / s["elapsed_s"])
    assert s["success_last_window"] > s["success_first_window"]      # the swarm learns over the stream
    assert s["syncs"] >= 2                                            # consensus learning ran in the default job


def test_report_has_the_page_the_plots_and_the_summary(first_run):
    import matplotlib.image as mpimg

    _, out, report = first_run
    for name in PLOTS:
        assert mpimg.imread(report / name).ndim == 3
    assert json.loads((report / "summary.json").read_text()) == json.loads(out)
    assert "swarm-sona run report" in (report / "index.html").read_text()


def test_second_run_on_the_same_bank_starts_better(first_run, tmp_path):
    first = json.loads(first_run[1])
    spec = tmp_path / "same-window.yaml"        # the default swarm, compared over the same first 200 tasks
    spec.write_text(f"window: {first['window']}\n")
    rc, out = _run_cli(["run", str(spec), "--tasks", "600", "--no-progress"])     # same default bank
    assert rc == 0
    m = re.search(r"success first (\d+) / last \d+\s+([\d.]+)% ->", out)
    assert m and int(m.group(1)) == first["window"] == WINDOW, out
    second_first_window = float(m.group(2)) / 100
    assert second_first_window > first["success_first_window"], (second_first_window, first)
    assert "routing share" in out and "retrieval latency (median)" in out


def _tree(spans):
    by_id = {s.context.span_id: s for s in spans}
    return {(by_id[s.parent.span_id].name, s.name) for s in spans if s.parent and s.parent.span_id in by_id}


def test_telemetry_of_a_small_run_matches_its_summary(tmp_path):
    tel = Telemetry(TelemetryConfig(exporters="memory"), attributes={"swarm_sona.role": "driver"})
    spec = RunSpec.default(sona={"background_every": 20}).with_overrides(tasks=300, bank=str(tmp_path / "bank"))
    spec = spec.with_swarm(batch_size=50, sync_every=25)     # a synchronisation every 100 tasks
    try:
        s = execute(spec, progress=False, tel=tel)
        spans = tel.memory_spans()
        m = tel.memory_metrics()
    finally:
        tel.shutdown()
    # span tree: driver (run -> batch) -> agent (task -> learn); each task roots its own trace,
    # linked to its batch (telemetry.taskTraces)
    names = [x.name for x in spans]
    assert names.count("run") == 1 and names.count("task") == 300 and names.count("learn") == 300
    assert {("run", "batch"), ("task", "learn"), ("task", "route"), ("task", "execute"),
            ("batch", "retrieve")} <= _tree(spans)
    by_id = {x.context.span_id: x for x in spans}
    assert all(t.links and by_id[t.links[0].context.span_id].name == "batch" for t in spans if t.name == "task")
    # consensus: driver (sync) -> agent (push) -> coordinator (merge -> consolidate, checkpoint)
    assert {("run", "sync"), ("sync", "push"), ("push", "merge"), ("merge", "consolidate"),
            ("merge", "checkpoint")} <= _tree(spans)
    assert s["syncs"] >= 2
    assert {x.resource.attributes.get("swarm_sona.role") for x in spans if x.name == "merge"} == {"coordinator"}
    traces = {}
    for x in spans:
        traces.setdefault(x.context.trace_id, []).append(x.name)
    assert len(traces) == 301, len(traces)   # the run's trace and one per task
    roles = {x.name: x.resource.attributes.get("swarm_sona.role") for x in spans}
    assert roles["run"] == "driver" and roles["batch"] == "driver" and roles["learn"] == "agent"
    agents_of_tasks = {x.resource.attributes["swarm_sona.agent"] for x in spans if x.name == "task"}
    assert agents_of_tasks <= set(s["agents"])
    # metrics == summary
    tasks = m["swarm_sona.tasks"]
    assert sum(p["value"] for p in tasks) == s["tasks"] == 300
    ok = sum(p["value"] for p in tasks if p["attributes"]["success"])
    assert ok == round(s["success_rate"] * s["tasks"])
    assert sum(p["value"] for p in m["swarm_sona.cost"]) == pytest.approx(s["spend_usd"])
    per_model: dict[str, float] = {}
    for p in m["swarm_sona.router.decisions"]:
        per_model[p["attributes"]["model"]] = per_model.get(p["attributes"]["model"], 0) + p["value"]
    assert {k: v / 300 for k, v in per_model.items()} == pytest.approx(s["routing_share"])
    assert {p["attributes"]["model"]: p["value"] for p in m["swarm_sona.router.share"]} == pytest.approx(
        s["routing_share"])
    assert m["swarm_sona.success_rate"][0]["value"] == pytest.approx(s["success_rate"])
    assert sum(p["count"] for p in m["swarm_sona.learn.duration"]) == 300
    assert sum(p["count"] for p in m["swarm_sona.retrieve.duration"]) >= 300 // 50
    assert sum(p["sum"] for p in m["swarm_sona.reward"]) > 0
    assert m["swarm_sona.bank.size"][0]["value"] == s["bank_patterns"]
    assert {p["attributes"]["agent"] for p in m["swarm_sona.adapter.norm"]} == set(s["agents"])
    assert {p["attributes"]["agent"] for p in m["swarm_sona.merge.lag"]} == set(s["agents"])


def test_a_driver_script_records_the_same_metrics_as_swarm_sona_run(tmp_path):
    # the domain metrics live in the swarm (runtime.metering), not in the CLI: a SwarmSONA run
    # from a script, with no `swarm-sona run` around it, records every one of them
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmSONA

    runs = {}
    for how in ("driver", "cli"):
        tel = Telemetry(TelemetryConfig(metrics_exporter="memory"))
        try:
            if how == "driver":
                ex = SimulatedExecutor(seed=0)
                with SwarmSONA(RunSpec.default(sona={"background_every": 20}).with_swarm(
                        batch_size=50, sync_every=25).swarm_config(), executor=ex, telemetry=tel,
                        bank={"path": str(tmp_path / "bank-driver")}) as sw:
                    res = list(sw.run(ex.tasks(300, seed=1), progress=False))
                    sw.stats()
                assert len(res) == 300
            else:
                spec = RunSpec.default(sona={"background_every": 20}).with_overrides(
                    tasks=300, bank=str(tmp_path / "bank-cli")).with_swarm(batch_size=50, sync_every=25)
                execute(spec, progress=False, tel=tel)
            runs[how] = tel.memory_metrics()
        finally:
            tel.shutdown()
    assert set(runs["driver"]) == set(runs["cli"])
    for m in runs.values():
        assert sum(p["value"] for p in m["swarm_sona.tasks"]) == 300
        assert sum(p["count"] for p in m["swarm_sona.learn.duration"]) == 300
        assert sum(p["count"] for p in m["swarm_sona.retrieve.duration"]) >= 300 // 50
        ok = sum(p["value"] for p in m["swarm_sona.tasks"] if p["attributes"]["success"])
        assert m["swarm_sona.success_rate"][0]["value"] == pytest.approx(ok / 300)
        assert {"swarm_sona.adapter.norm", "swarm_sona.merge.lag", "swarm_sona.bank.size"} <= set(m)


def test_a_run_leaves_no_secret_in_any_artifact(tmp_path, monkeypatch, caplog, capfd):
    # one fake key planted everywhere a key can enter: the spec (bank.apiKey), the environment
    # variables the configs name, the executor options; then every artifact the run leaves is
    # searched for it: checkpoints, bank, report, logs, spans, metrics, the spec submit uploads
    from swarm_sona.app.commands.submit import package_spec

    fake = "sk-FAKE-E2E-7731c"
    needle = fake[3:].encode()
    for var in ("QDRANT_API_KEY", "OPENAI_API_KEY", "MY_BANK_KEY"):
        monkeypatch.setenv(var, fake)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"""
topology: star
agents: [{{id: a0, type: worker}}, {{id: a1, type: worker}}]
bank: {{path: {tmp_path / "run" / "bank"}, apiKey: {fake}, apiKeyEnv: MY_BANK_KEY}}
swarm: {{checkpointDir: {tmp_path / "run" / "ckpt"}, batchSize: 50, syncEvery: 25, checkpointEvery: 50}}
workload: {{executor: simulated, tasks: 200}}
""")
    tel = Telemetry(TelemetryConfig(exporters="memory"))
    out = io.StringIO()
    with caplog.at_level("INFO"):
        try:
            spec = RunSpec.load(spec_file)
            summary = execute(spec, report_dir=tmp_path / "run" / "report", progress=False, tel=tel, stream=out)
            spans, metrics = tel.memory_spans(), tel.memory_metrics()
        finally:
            tel.shutdown()
        (tmp_path / "run" / "upload").mkdir()
        package_spec(spec, tmp_path / "run" / "upload")
    assert summary["tasks"] == 200
    files = [f for f in (tmp_path / "run").rglob("*") if f.is_file()]
    assert any(f.suffix == ".ckpt" for f in files) and any("report" in f.parts for f in files)
    assert any(f.name == "spec.yaml" for f in files)          # the upload was written
    leaks = [str(f) for f in files if needle in f.read_bytes()]
    assert leaks == []
    attrs = [repr(dict(s.attributes or {})) + repr(dict(s.resource.attributes)) for s in spans]
    assert spans and not any(needle.decode() in a for a in attrs)
    assert needle.decode() not in repr(metrics)
    std = capfd.readouterr()
    for text in (caplog.text, out.getvalue(), std.out, std.err, json.dumps(summary, default=str)):
        assert needle.decode() not in text


def test_run_budget_stops_dispatch_and_still_counts_every_batch_in_flight(tmp_path):
    spec = RunSpec.from_dict({"topology": "star", "agents": [{"id": "hub", "type": "coordinator"},
                                                             {"id": "w1", "type": "coder"}, {"id": "w2", "type": "coder"}],
                              "swarm": {"batchSize": 50}, "budgets": {"runUsd": 0.2}})
    spec = spec.with_overrides(tasks=20000, bank=str(tmp_path / "bank"))
    s = execute(spec, progress=False)
    assert s["stopped"] and "run budget" in s["stopped"]
    assert 0 < s["tasks"] < 20000
    assert s["spend_usd"] >= 0.2                           # it stopped because the budget was reached ...
    assert s["tasks"] % 50 == 0                            # ... and whole batches were collected: none dropped


def test_prometheus_scrape_during_a_run_has_every_grafana_metric(tmp_path):
    tel = Telemetry(TelemetryConfig(metrics_exporter="prometheus", prometheus_port=0))
    # long enough to scrape mid-run: the stream runs at several thousand tasks/s
    spec = RunSpec.default().with_overrides(tasks=10000, bank=str(tmp_path / "bank")).with_swarm(batch_size=100)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(execute(spec, progress=False, tel=tel)), daemon=True)
    worker.start()
    wanted = {m for e in re.findall(r'"(?:expr|definition)": "([^"]*(?:\\.[^"]*)*)"', DASHBOARD.read_text())
              for m in re.findall(r"\b(swarm_sona_[a-z0-9_]+)", e)}
    scraped: set[str] = set()
    text = ""
    try:
        deadline = time.monotonic() + 300
        while worker.is_alive() and time.monotonic() < deadline and not wanted <= scraped:
            text = urllib.request.urlopen(tel.prometheus_url, timeout=5).read().decode()
            scraped = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                       if line and not line.startswith("#")}
            time.sleep(0.1)
        was_running = worker.is_alive()
    finally:
        worker.join(timeout=600)
        tel.shutdown()
    assert was_running, "the run ended before every metric showed up"
    assert wanted and wanted <= scraped, sorted(wanted - scraped)
    assert result["tasks"] == 10000


def test_agent_hooks_run_around_each_task_and_failures_are_reported(tmp_path):
    agents = tmp_path / "agents"
    agents.mkdir()
    log = tmp_path / "hook.log"
    (agents / "q.md").write_text("---\nname: queen-1\ntype: queen\n---\n")
    (agents / "c.md").write_text("---\nname: coder-1\ntype: coder\nhooks:\n"
                                 f"  post: echo \"$AGENT_ID $SUCCESS $REWARD\" >> {log}\n---\nCodes.\n")
    (agents / "t.md").write_text("---\nname: tester-1\ntype: tester\nhooks: {pre: 'echo no >&2; exit 3'}\n---\n")
    (tmp_path / "spec.yaml").write_text("agents_dir: agents\nswarm: {batchSize: 20}\nworkload: {tasks: 120}\n")
    spec = RunSpec.load(tmp_path / "spec.yaml").with_overrides(bank=str(tmp_path / "bank"))
    err = io.StringIO()
    s = execute(spec, progress=False, stream=err)
    assert s["tasks"] == 120 and set(s["agents"]) == {"coder-1", "tester-1"}
    lines = log.read_text().splitlines()
    assert len(lines) == s["agents"]["coder-1"]["tasks"]
    ok = sum(1 for line in lines if line.split()[1] == "true")
    assert ok == round(s["agents"]["coder-1"]["success_rate"] * len(lines))
    assert all(line.startswith("coder-1 ") and 0 <= float(line.split()[2]) <= 1 for line in lines)
    assert s["hook_failures"] == s["agents"]["tester-1"]["tasks"] > 0     # every tester task, and it kept going
    assert err.getvalue().count("agent tester-1: pre hook failed: exit 3: no") == 1


def test_text_summary_names_the_bank_its_size_the_syncs_and_each_agent(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("swarm: {syncEvery: 16, batchSize: 16}\n")
    bank = tmp_path / "bank"
    rc, out = _run_cli(["run", str(spec), "--tasks", "320", "--bank", str(bank), "--no-progress"])
    assert rc == 0, out
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in out.splitlines() if "  " in line}
    m = re.fullmatch(rf"{re.escape(str(bank))} \(([\d,]+) patterns, [\d.,]+ (?:B|KiB|MiB) on disk\)",
                     rows["ReasoningBank"])
    assert m and int(m.group(1).replace(",", "")) > 0, rows["ReasoningBank"]
    assert int(rows["consensus syncs"].split(",")[0]) > 0
    agents = [k for k in rows if k.startswith("agent ")]
    assert sorted(agents) == ["agent coder-1", "agent researcher-1", "agent reviewer-1", "agent tester-1"]
    assert sum(int(rows[a].split(" tasks")[0].replace(",", "")) for a in agents) == 320
    assert "e+0" not in out and "e-0" not in out and " / 320" not in out
    assert "loaded" not in rows["ReasoningBank"]                      # a new bank
    rc, out = _run_cli(["run", str(spec), "--tasks", "32", "--bank", str(bank), "--no-progress"])
    second = next(line for line in out.splitlines() if line.startswith("ReasoningBank"))
    assert rc == 0 and f"loaded {m.group(1)} at start" in second, second   # reuse: what the first run left


def test_the_quickstart_example_syncs_and_its_stream_takes_seconds(tmp_path):
    examples = Path(__file__).resolve().parents[2] / "examples"
    spec = RunSpec.load(examples / "quickstart.yaml").with_overrides(bank=str(tmp_path / "bank"))
    s = execute(spec, progress=False)
    assert s["tasks"] == 800 and not s["failed_tasks"]
    assert s["syncs"] > 0                       # consensus learning happened, as the plan says
    assert s["elapsed_s"] < 60, s["elapsed_s"]  # the task stream, after start-up
