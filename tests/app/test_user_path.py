"""The user's path with the real tools: Debian's ``prometheus`` and ``prometheus-pushgateway``
processes on 127.0.0.1 (started on free ports by the tests, stopped by PID), fed by a default
``swarm-sona run`` that pushes its metrics; every query of the Grafana dashboard returns data
(the ``Live:`` panels, rates for long-running jobs, from a job Prometheus scrapes on its pull endpoint).

The servers come from Debian's packages (``.ci/run`` installs them); without them these tests
are skipped with the reason printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
DASHBOARD = CLUSTER / "grafana-dashboard.json"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install -y prometheus prometheus-pushgateway)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()   # by PID: only the process this test started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def local_config(pushgateway: str, pull: str) -> dict:
    """cluster/prometheus-local.yml with its two targets pointed at the test's ports (nothing else changed)."""
    cfg = yaml.safe_load((CLUSTER / "prometheus-local.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    jobs["swarm-sona-pushgateway"]["static_configs"] = [{"targets": [pushgateway]}]
    jobs["swarm-sona-local"]["static_configs"] = [{"targets": [pull]}]
    return cfg


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A Pushgateway and a Prometheus scraping it (cluster/prometheus-local.yml), on free loopback ports."""
    pg_bin, prom_bin = _binary("prometheus-pushgateway"), _binary("prometheus")
    d = tmp_path_factory.mktemp("prom")
    pg_port, prom_port = _free_port(), _free_port()
    cfg_path = d / "prometheus.yml"
    pull_port = _free_port()
    cfg_path.write_text(yaml.safe_dump(local_config(f"127.0.0.1:{pg_port}", f"127.0.0.1:{pull_port}")))
    procs: list[subprocess.Popen] = []
    try:
        pg = subprocess.Popen([pg_bin, f"--web.listen-address=127.0.0.1:{pg_port}"],
                              stdout=subprocess.DEVNULL, stderr=open(d / "pushgateway.log", "wb"))
        procs.append(pg)
        prom = subprocess.Popen([prom_bin, f"--config.file={cfg_path}", f"--storage.tsdb.path={d / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                stdout=subprocess.DEVNULL, stderr=open(d / "prometheus.log", "wb"))
        procs.append(prom)
        _wait_http(f"http://127.0.0.1:{pg_port}/-/ready", pg)
        _wait_http(f"http://127.0.0.1:{prom_port}/-/ready", prom)
        yield {"pushgateway": f"http://127.0.0.1:{pg_port}", "prometheus": f"http://127.0.0.1:{prom_port}",
               "pull_port": pull_port, "dir": d}
    finally:
        for p in reversed(procs):
            _stop(p)


def query(prometheus: str, expr: str) -> list[dict]:
    """An instant PromQL query; the result vector."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Grafana panel target and template variable, with Grafana's
    variables substituted as Grafana would for "all agents" on a 1 s scrape interval."""
    dash = json.loads(DASHBOARD.read_text())
    out = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", ())]
    for v in dash["templating"]["list"]:
        m = re.match(r"label_values\((\w+),\s*(\w+)\)", v["definition"])
        if m:
            out.append((f"variable {v['name']}", f"count by ({m.group(2)}) ({m.group(1)})"))
    return [(t, e.replace("$agent", ".*").replace("$__rate_interval", "1m")) for t, e in out]


def test_promtool_accepts_the_local_config():
    promtool = _binary("promtool")
    r = subprocess.run([promtool, "check", "config", str(CLUSTER / "prometheus-local.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr



def _without_data(prom: str, queries: list[tuple[str, str]], *, within_s: float) -> list[tuple[str, str, list]]:
    """The queries that still return no value or a non-finite one after looking again for ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        empty = []
        for title, expr in queries:
            values = [float(r["value"][1]) for r in query(prom, expr)]
            if not values or not all(math.isfinite(v) for v in values):
                empty.append((title, expr, values))
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(0.5)


# a long-running job Prometheus scrapes on its pull endpoint: the real exporter and RunMeter, a task every 50 ms
_LIVE_JOB = """
import sys, time
from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
from swarm_sona.runtime.metering import RunMeter
tel = Telemetry(TelemetryConfig(metrics_exporter="prometheus", prometheus_port=int(sys.argv[1])))
meter = RunMeter(tel)
meter.run_started()
for i in range(100000):
    meter.result({"agent_id": "live-1", "model": "small", "success": i % 3 > 0, "reward": 0.7, "cost_usd": 1e-3,
                  "learn_s": 1e-5})
    meter.batch_done(agent="live-1", retrieve_s=2e-4)
    time.sleep(0.05)
"""


@pytest.mark.ray
@pytest.mark.slow
def test_every_dashboard_query_has_data_after_a_default_run(servers, ray_session, tmp_path):
    """The default swarm (2,000 tasks, a stream of about a second) with --metrics-push: Prometheus,
    scraping the Pushgateway, answers every dashboard query with finite values as soon as it has
    scraped the run's last push (throughput is tasks / swarm_sona_run_duration_seconds, success
    and routing share are ratios of counters, quantiles come from the whole run's buckets: none
    needs two samples). The ``Live:`` panels (rates over a window, for long-running jobs) answer
    once a job on the pull endpoint has been scraped for a few seconds."""
    import sys

    from swarm_sona.app.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("telemetry: {pushIntervalS: 0.5}\n")   # the default swarm, pushed twice a second
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["run", str(spec), "--json", "--no-progress", "--bank", str(tmp_path / "bank"),
                   "--metrics-push", servers["pushgateway"]])
    assert rc == 0, out.getvalue()
    summary = json.loads(out.getvalue())
    assert summary["tasks"] == 2000
    assert summary["bank_bytes"] > 0 and summary["syncs"] > 0   # what the summary table now shows
    prom = servers["prometheus"]
    deadline = time.monotonic() + 30   # the last push reaches Prometheus at its next scrape (1 s)
    total = 0.0
    while time.monotonic() < deadline:
        res = query(prom, "sum(swarm_sona_tasks_total)")
        total = float(res[0]["value"][1]) if res else 0.0
        if total == 2000:
            break
        time.sleep(0.5)
    assert total == 2000
    queries = dashboard_queries()
    live = [(t, e) for t, e in queries if t.startswith("Live:")]
    batch = [(t, e) for t, e in queries if not t.startswith("Live:")]
    assert live and all("rate(" in e for _, e in live) and not any("rate(" in e for _, e in batch)
    assert not _without_data(prom, batch, within_s=5), _without_data(prom, batch, within_s=0)
    [throughput] = [float(r["value"][1]) for r in query(prom, dict(batch)["Throughput (tasks/s over the run)"])]
    print(f"default run: {summary['tasks']} tasks streamed in {summary['elapsed_s']:.2f} s; dashboard throughput "
          f"{throughput:.0f} tasks/s, summary {summary['tasks_per_s']:.0f} tasks/s")
    assert throughput == pytest.approx(summary["tasks_per_s"], rel=0.15), (throughput, summary["tasks_per_s"])
    job = subprocess.Popen([sys.executable, "-c", _LIVE_JOB, str(servers["pull_port"])],
                           stdout=subprocess.DEVNULL, stderr=open(servers["dir"] / "live-job.log", "wb"))
    try:
        assert not _without_data(prom, live, within_s=30), _without_data(prom, live, within_s=0)
    finally:
        _stop(job)


def test_metrics_push_option_sets_the_specs_push_url_and_a_bad_one_names_the_option(tmp_path):
    from swarm_sona.app.cli import build_parser
    from swarm_sona.app.commands.run import prepare
    from swarm_sona.core.config import ConfigError

    argv = ["run", "--metrics-push", "127.0.0.1:9091", "--bank", str(tmp_path / "b")]
    spec = prepare(build_parser(argv).parse_args(argv))
    assert spec.telemetry.push_url == "http://127.0.0.1:9091"
    argv = ["run", "--bank", str(tmp_path / "b")]
    assert prepare(build_parser(argv).parse_args(argv)).telemetry.push_url is None
    argv = ["run", "--metrics-push", "ftp://x"]
    with pytest.raises(ConfigError, match="--metrics-push"):
        prepare(build_parser(argv).parse_args(argv))


# ---- swarm-sona info -----------------------------------------------------------------------
def _cli(argv: list[str]) -> tuple[int, str]:
    from swarm_sona.app.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


def test_info_shows_version_kernels_ray_bank_and_extras(tmp_path):
    from swarm_sona import kernels

    bank = tmp_path / "bank"
    rc, text = _cli(["info", "--bank", str(bank)])
    assert rc == 0
    assert f"{bank} (none yet" in text and kernels.info()["active"] in text and "ray" in text
    bank.mkdir()
    (bank / "bank.json").write_text(json.dumps({"format": "swarm_sona.bank", "embedder": "hashing-v1-16", "dim": 16}))
    (bank / "manifest.json").write_text(json.dumps({"format": "swarm_sona.bank.manifest", "count": 12345}))
    (bank / "shard").mkdir()
    (bank / "shard" / "seg").write_bytes(b"x" * 4096)
    rc, text = _cli(["info", "--bank", str(bank)])
    assert "12,345 patterns" in text and "KiB on disk" in text and "embedder hashing-v1-16" in text
    rc, out = _cli(["info", "--bank", str(bank), "--json"])
    d = json.loads(out)
    assert d["schema_version"] == 1 and d["bank_patterns"] == 12345 and d["bank_exists"] is True
    assert d["bank_bytes"] >= 4096 and d["kernels"]["active"] == kernels.info()["active"]
    assert set(d["extras"]) >= {"otlp", "prometheus", "report"}


def test_info_names_what_an_extra_misses(monkeypatch, tmp_path):
    from swarm_sona.app.commands import info

    real = info._dist_version
    assert info.collect(bank=str(tmp_path)).extras["report"] is True
    monkeypatch.setattr(info, "_dist_version", lambda n: None if n == "matplotlib" else real(n))
    i = info.collect(bank=str(tmp_path))
    assert i.extras["report"] is False and i.missing["report"] == ["matplotlib"]
    assert "report no (matplotlib)" in i.format()


def test_info_imports_no_ray_and_starts_nothing():
    import sys

    code = ("import sys, io, contextlib; from swarm_sona.app.cli import main; "
            "contextlib.redirect_stdout(io.StringIO()).__enter__(); rc = main(['info']); "
            "sys.stderr.write(repr((rc, 'ray' in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().endswith("(0, False)"), r.stderr


# ---- swarm-sona run --check ----------------------------------------------------------------
def test_run_check_validates_and_plans_without_starting_ray(tmp_path):
    import sys

    spec = tmp_path / "spec.yaml"
    spec.write_text("workload: {tasks: 200}\nswarm: {syncEvery: 64, batchSize: 16}\n")
    bank = tmp_path / "bank"
    code = ("import sys, io, contextlib; from swarm_sona.app.cli import main; out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): rc = main(sys.argv[1:])\n"
            "import ray; sys.stderr.write(repr((rc, ray.is_initialized()))); sys.stdout.write(out.getvalue())")
    r = subprocess.run([sys.executable, "-c", code, "run", str(spec), "--check", "--bank", str(bank)],
                       capture_output=True, text=True, timeout=120)
    assert r.stderr.strip().endswith("(0, False)"), r.stderr       # no Ray started in the process
    text = r.stdout
    assert not bank.exists()
    assert "nothing was started" in text and "queen-1" in text and "coder-1 (coder)" in text
    assert "no consensus sync will run: 200 tasks < sync_every 64 x 4 workers" in text
    assert f"{bank} (new)" in text
    # the option flipped: syncs every 16 tasks per worker -> 3 syncs, no warning
    spec.write_text("workload: {tasks: 200}\nswarm: {syncEvery: 16, batchSize: 16}\n")
    rc, out = _cli(["run", str(spec), "--check", "--json", "--bank", str(bank), "--metrics-push", "127.0.0.1:9091"])
    p = json.loads(out)
    assert rc == 0 and p["schema_version"] == 1 and p["expected_syncs"] == 3 and p["warnings"] == []
    assert p["sync_plan"]["root"] == "queen-1" and p["push_url"] == "http://127.0.0.1:9091"
    assert "pushgateway" in p["metrics"]


def test_run_check_of_a_bad_spec_exits_2_naming_the_field(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("topology: tree\n")
    rc, _ = _cli(["run", str(spec), "--check"])
    assert rc == 2 and "topology" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_with_no_otlp_collector_warns_once_and_exits_without_delay(ray_session, tmp_path, caplog):
    """OTLP traces and metrics to a closed 127.0.0.1 port: one warning line, and the command
    returns within a couple of seconds of the run's end (the SDK alone retried for ~40 s)."""
    from swarm_sona.app.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"telemetry: {{exporters: [otlp], otlpEndpoint: 'http://127.0.0.1:{port}'}}\n")
    out = io.StringIO()
    t0 = time.monotonic()
    with caplog.at_level("WARNING"), contextlib.redirect_stdout(out):
        rc = main(["run", str(spec), "--tasks", "400", "--json", "--no-progress", "--bank", str(tmp_path / "bank")])
    wall = time.monotonic() - t0
    assert rc == 0, out.getvalue()
    s = json.loads(out.getvalue())
    tail = wall - s["startup_s"] - s["elapsed_s"]     # final stats, shutdown, telemetry flush and exit
    print(f"run with no collector: {wall:.1f} s wall, {tail:.1f} s after the task stream")
    assert tail < 6.0, tail
    otlp = [r.getMessage() for r in caplog.records if "OTLP" in r.getMessage() or "otlp" in r.name]
    assert len(otlp) == 1 and f"127.0.0.1:{port} unreachable" in otlp[0], otlp
