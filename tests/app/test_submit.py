"""`swarm-sona submit / status / stop` against a real local `ray start --head` on 127.0.0.1.

The head runs in its own process session with token authentication on (its token in a temp
file) and a temp dir, and is torn down by killing that session's processes by pid (never
`ray stop`, which would stop every Ray on the machine). The job's default bank goes to a temp
dir through SWARM_SONA_BANK_PATH in the head's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("ray.job_submission")

from swarm_sona.app.cli import main  # noqa: E402
from swarm_sona.app.commands.job_client import find_token, resolve_address  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")]

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[3]) == sid and fields[0] != "Z":
                    pids.append(int(d))
            except (OSError, ValueError):
                pass
    return pids


@pytest.fixture(scope="module")
def head():
    tmp = Path(tempfile.mkdtemp(prefix="ssj-", dir="/tmp"))   # short: Ray's socket paths have a length limit
    token = tmp / "token"
    token.write_text(secrets.token_hex(16))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RAY_USAGE_STATS_ENABLED="0", SWARM_SONA_BANK_PATH=str(tmp / "bank"),
               # a head started from a venv without activating it: its PATH has no swarm-sona
               PATH=os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                                    if d and Path(d).resolve() != BIN.resolve()))
    dport = _free_port()
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           f"--port={_free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dport}", "--num-cpus=2",
           f"--temp-dir={tmp / 'r'}", "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, env=env, stdout=(tmp / "head.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dport}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(address + "/api/version", timeout=2)
                break
            except urllib.error.HTTPError:      # 401: up, and asking for the token
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ray head did not start:\n" + (tmp / "head.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        listening = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
        mine = [line for line in listening.splitlines() if f"pid={proc.pid}," in line]
        assert all("127.0.0.1" in line for line in mine), mine
        yield {"address": address, "token": str(token), "tmp": tmp}
    finally:
        _stop_session(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM every process of the head's session, then SIGKILL what is left (Ray workers run
    in process groups of their own, but stay in the session)."""
    for pid in _session_pids(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _session_pids(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _session_pids(proc.pid)


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture()
def spec(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("topology: star\nagents:\n  - {id: hub, type: coordinator}\n  - {id: coder-1, type: coder}\n"
                 "  - {id: tester-1, type: tester}\nswarm: {batchSize: 50}\n")
    return p


def test_submit_runs_the_job_follows_its_logs_and_status_reports_success(head, spec, capsys):
    auth = ["--address", head["address"], "--token-file", head["token"]]
    rc, out, err = _cli(["submit", str(spec), *auth, "--tasks", "200", "--seed", "3"], capsys)
    assert rc == 0, (out, err)
    job = re.search(r"submitted job (\S+)", err).group(1)
    assert f"job {job} SUCCEEDED" in err
    assert "Running entrypoint for job" in out and "swarm-sona run spec.yaml --no-progress --tasks 200 --seed 3" in out
    assert re.search(r"^tasks\s+200 in ", out, re.M)              # the summary table, from the job's logs
    for label in ("success first", "routing share", "always-strongest", "learning overhead per task (median)"):
        assert label in out
    rc, out, _ = _cli(["status", job, *auth, "--json"], capsys)
    rec = json.loads(out)
    assert rc == 0 and rec["status"] == "SUCCEEDED" and rec["metadata"]["swarm_sona_spec"] == "spec.yaml"
    rc, out, _ = _cli(["status", job, *auth, "--logs"], capsys)
    assert rc == 0 and "routing share" in out


def test_submit_json_then_stop_a_running_job(head, spec, capsys):
    auth = ["--address", head["address"], "--token-file", head["token"]]
    rc, out, _ = _cli(["submit", str(spec), *auth, "--tasks", "500000", "--no-wait"], capsys)
    assert rc == 0
    job = out.strip()
    rc, out, _ = _cli(["stop", job, *auth, "--wait", "--timeout", "60"], capsys)
    assert rc == 0 and out.strip().endswith("STOPPED"), out
    rc, out, _ = _cli(["status", job, *auth, "--json"], capsys)
    assert json.loads(out)["status"] == "STOPPED"
    rc, _, err = _cli(["status", "raysubmit_nonexistent", *auth], capsys)
    assert rc == 1 and "swarm-sona: error:" in err


def test_without_the_token_the_cluster_refuses_with_a_remedy(head, spec, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)        # no ~/.ray/auth_token
    r = subprocess.run([str(BIN / "swarm-sona"), "submit", str(spec), "--address", head["address"]],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert "requires its auth token" in r.stderr and "RAY_AUTH_TOKEN" in r.stderr
    bad = tmp_path / "wrong"
    bad.write_text("not-the-token")
    r = subprocess.run([str(BIN / "swarm-sona"), "status", "x", "--address", head["address"], "--token-file", str(bad)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "rejected the auth token" in r.stderr


def test_a_bad_spec_never_reaches_the_cluster(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("budgets: {runUsd: -1}\n")
    rc, _, err = _cli(["submit", str(p), "--address", "http://127.0.0.1:9"], capsys)
    assert rc == 2 and f"{p}: budgets.run_usd: must be >= 0" in err


def test_token_and_address_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_token(None, {}) == (None, None)
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert find_token(None, {}) == ("home-token", "~/.ray/auth_token")
    f = tmp_path / "t"
    f.write_text("path-token")
    assert find_token(None, {"RAY_AUTH_TOKEN_PATH": str(f)}) == ("path-token", "RAY_AUTH_TOKEN_PATH")
    assert find_token(None, {"RAY_AUTH_TOKEN": "env", "RAY_AUTH_TOKEN_PATH": str(f)}) == ("env", "RAY_AUTH_TOKEN")
    assert find_token(str(f), {"RAY_AUTH_TOKEN": "env"}) == ("path-token", "--token-file")
    with pytest.raises(ValueError, match="--token-file: .* does not exist"):
        find_token(str(tmp_path / "missing"), {})
    assert resolve_address(None, {"RAY_API_SERVER_ADDRESS": "http://h:8265/"}) == "http://h:8265"
    assert resolve_address(None, {"RAY_ADDRESS": "https://h:443"}) == "https://h:443"
    with pytest.raises(ValueError, match="http"):
        resolve_address("ray://h:10001", {})


def test_submit_retries_while_the_job_agent_is_not_ready_and_only_then():
    from swarm_sona.app.commands.submit import submit_when_ready

    class Client:
        def __init__(self, errors):
            self.errors = list(errors)
            self.calls = 0

        def submit_job(self, **kwargs):
            self.calls += 1
            if self.errors:
                raise RuntimeError(self.errors.pop(0))
            return "raysubmit_ok"

    c = Client(["Request failed with status code 500: No available agent to submit job"] * 2)
    assert submit_when_ready(c, wait_s=10, entrypoint="x") == "raysubmit_ok" and c.calls == 3
    c = Client(["401 unauthorized"])
    with pytest.raises(RuntimeError, match="401"):
        submit_when_ready(c, wait_s=10, entrypoint="x")
    assert c.calls == 1
    c = Client(["No available agent"] * 100)
    with pytest.raises(RuntimeError, match="No available agent"):
        submit_when_ready(c, wait_s=0.1, entrypoint="x")
