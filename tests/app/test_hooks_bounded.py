"""Agent hooks are bounded in time and bytes and get an allow-listed environment.

Memory is measured with ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak RSS) in a fresh
Python subprocess, before and after the hook run, so the test process's own history does not
blur the figure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from swarm_sona.app.agent_defs import (
    AgentDef,
    HookedExecutor,
    HookRunner,
    HooksConfig,
    parse_agent_markdown,
)
from swarm_sona.core.bounded_process import DEFAULT_OUTPUT_CAP as _OUT_MAX
from swarm_sona.core.config import ConfigError
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.runtime.config import AgentSpec

ROOT = Path(__file__).resolve().parents[2]
EMOJI = "\U0001f600"   # 4 bytes in UTF-8


def _runner(extra_env=None, **hooks) -> HookRunner:
    return HookRunner(AgentDef(AgentSpec(id="w"), HooksConfig(**hooks)), dict(extra_env or {}))


# ---- (1) output is streamed with a byte cap ---------------------------------------------------------------
def test_50_mb_of_output_keeps_the_cap_and_memory_stays_small():
    script = textwrap.dedent("""
        import json, resource
        from swarm_sona.app.agent_defs import AgentDef, HookRunner, HooksConfig
        from swarm_sona.core.executor import Task
        from swarm_sona.runtime.config import AgentSpec
        runner = HookRunner(AgentDef(AgentSpec(id="w"), HooksConfig(
            pre="head -c 50000000 /dev/zero | tr '\\\\0' x; echo done >&2")))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res = runner.pre(Task("t"))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"growth_kib": after - before, "ok": res.ok, "n": len(res.stdout.encode()),
                          "x": set(res.stdout) == {"x"}, "truncated": res.stdout_truncated,
                          "stderr": res.stderr, "stderr_truncated": res.stderr_truncated, "notes": res.notes}))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["ok"] and r["x"] and r["n"] == _OUT_MAX and r["truncated"]
    assert r["stderr"] == "done\n" and not r["stderr_truncated"]
    assert r["notes"] == [f"stdout: kept the first {_OUT_MAX} of 50000000 bytes"]
    assert r["growth_kib"] < 16 * 1024, r      # peak RSS growth; reading everything first cost > 100 MB


def test_a_hook_flooding_its_output_is_stopped_by_the_timeout():
    t0 = time.monotonic()
    res = _runner(pre="yes", timeout_s=0.3).pre(Task("t"))
    assert time.monotonic() - t0 < 1.8
    assert res.timed_out and not res.ok and res.stdout_truncated
    assert len(res.stdout) == _OUT_MAX and res.stdout.startswith("y\ny\n")


# ---- (2) every wait is bounded ------------------------------------------------------------------------------
def _pids_with(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def marker():
    """A unique word for a test's leftover processes; kills them (by PID, with their group) afterwards."""
    m = f"swarm-sona-hook-test-{uuid.uuid4().hex[:12]}"
    yield m
    for pid in _pids_with(m):
        try:
            if os.getpgid(pid) == pid:          # the setsid shell leads its own group (with its sleep)
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 2
    while _pids_with(m) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pids_with(m)


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1)")
def test_a_setsid_grandchild_holding_the_pipes_cannot_extend_the_timeout(marker):
    # `sleep 30; :` (not a lone `sleep 30`) so the shell does not exec away its $0 marker
    runner = _runner(pre=f"setsid sh -c 'sleep 30; :' {marker} & sleep 30", timeout_s=1)
    t0 = time.monotonic()
    res = runner.pre(Task("t"))
    elapsed = time.monotonic() - t0
    assert elapsed < 2.5, elapsed
    assert res.timed_out and not res.ok and res.error.startswith("timed out after 1 s")
    assert any("held open" in n for n in res.notes)
    assert _pids_with(marker)                  # the escaped grandchild really was there (the fixture kills it)
    assert runner.failures == 1


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1)")
def test_a_hook_that_exits_but_leaves_its_output_open_is_bounded_too(marker):
    t0 = time.monotonic()
    res = _runner(pre=f"echo hi; setsid sh -c 'sleep 30; :' {marker} & exit 0", timeout_s=0.5).pre(Task("t"))
    assert time.monotonic() - t0 < 2.0
    assert res.timed_out and res.returncode == 0 and "kept its output open" in res.error
    assert res.stdout == "hi\n"


# ---- (3) environment values are clipped by bytes ------------------------------------------------------------
@pytest.mark.parametrize("prefix, expected", [("", 64 * 1024), ("a", 1 + 4 * (64 * 1024 // 4 - 1))])
def test_64ki_emoji_task_runs_and_is_cut_on_a_character_boundary(tmp_path, prefix, expected):
    out = tmp_path / "task.bin"
    task = prefix + EMOJI * (64 * 1024)
    res = _runner({"OUT_FILE": str(out)}, pre='printf %s "$TASK" > "$OUT_FILE"').pre(Task(task))
    assert res.ok, res.summary()
    seen = out.read_bytes()
    assert len(seen) == expected <= 64 * 1024
    assert task.startswith(seen.decode("utf-8"))     # strict decode: no half character at the end
    assert res.notes == [f"TASK: cut from {len(task.encode())} to {expected} bytes"]


def test_a_long_post_output_is_clipped_by_bytes_too(tmp_path):
    out = tmp_path / "output.bin"
    res = _runner({"OUT_FILE": str(out)}, post='printf %s "$OUTPUT" > "$OUT_FILE"').post(
        Task("t"), Outcome("é" * 100_000, 1.0, True))
    assert res.ok and len(out.read_bytes()) == 64 * 1024 and set(out.read_text("utf-8")) == {"é"}


# ---- (4) characters no environment can hold -------------------------------------------------------------------
@pytest.mark.parametrize("text, seen, note", [
    ("a\0b\0", "ab", "TASK: removed 2 NUL byte(s)"),
    ("x\ud800y", "x\ufffdy", "TASK: replaced 1 lone surrogate(s) (not encodable as UTF-8) with U+FFFD"),
    ("x\udcffy", "x\ufffdy", "TASK: replaced 1 lone surrogate(s) (not encodable as UTF-8) with U+FFFD"),
])
def test_nul_and_lone_surrogates_in_the_task_are_cleaned_and_noted(text, seen, note):
    runner = _runner(pre='printf %s "$TASK"')
    res = runner.pre(Task(text))
    assert res.ok, res.summary()
    assert res.stdout == seen and res.notes == [note]
    assert (runner.runs, runner.failures) == (1, 0)


def test_bad_characters_in_the_outcome_never_stop_the_agent():
    inner = lambda task, model, patterns: Outcome("out\0put \udc80", 1.0, True)   # noqa: E731
    ex = HookedExecutor(inner, AgentDef(AgentSpec(id="w"), HooksConfig(pre='printf %s "$TASK"',
                                                                        post='test "$OUTPUT" = "output �"')))
    out = ex(Task("t\0ask\ud83d"), "m\0odel", [])
    assert out.metadata.get("hook_errors") is None, out.metadata
    assert out.metadata == {} and ex.runner.failures == 0
    assert ex.runner.runs == 2


def test_bad_names_and_commands_are_reported_not_raised():
    res = _runner({"BAD=NAME": "x", "GOOD_ONE": "y"}, pre='printf %s "$GOOD_ONE"').pre(Task("t"))
    assert res.ok and res.stdout == "y"
    assert res.notes == ["skipped environment variable with an invalid name 'BAD=NAME'"]
    with pytest.raises(ConfigError, match=r"hooks\.pre: a hook command cannot contain a NUL byte"):
        HooksConfig.from_dict({"pre": "echo a\0b"})


# ---- (5) the environment is allow-listed ----------------------------------------------------------------------
def test_secrets_in_the_process_environment_do_not_reach_hooks(monkeypatch):
    monkeypatch.setenv("FAKE_SECRET_ABC", "sk-live-123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-456")
    monkeypatch.setenv("MY_BANK_XYZ", "/banks/one")
    monkeypatch.setenv("SWARM_SONA_TEST_SETTING", "on")
    agent = parse_agent_markdown("---\nname: w\nhooks:\n  pre: env\n  env: [MY_BANK_XYZ, NOT_SET_ANYWHERE_XYZ]\n---\n")
    assert agent.hooks.env == ("MY_BANK_XYZ", "NOT_SET_ANYWHERE_XYZ")
    res = HookRunner(agent, {"FROM_CODE": "1"}).pre(Task("t", task_type="code"))
    assert res.ok and not res.stdout_truncated
    env = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    assert "sk-live-123" not in res.stdout and "sk-openai" not in res.stdout
    assert "FAKE_SECRET_ABC" not in env and "OPENAI_API_KEY" not in env
    assert env["MY_BANK_XYZ"] == "/banks/one" and "NOT_SET_ANYWHERE_XYZ" not in env
    assert env["SWARM_SONA_TEST_SETTING"] == "on" and env["FROM_CODE"] == "1"
    assert env["TASK"] == "t" and env["TASK_TYPE"] == "code" and env["AGENT_ID"] == "w"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    allowed = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
               "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MY_BANK_XYZ", "FROM_CODE",
               "TASK", "TASK_ID", "TASK_TYPE", "AGENT_ID", "AGENT_TYPE", "PWD", "OLDPWD", "SHLVL", "_"}
    assert {k for k in env if not k.startswith("SWARM_SONA_")} <= allowed


@pytest.mark.parametrize("env, match", [
    (["1BANK"], r"hooks\.env\[0\]: invalid environment variable name '1BANK'"),
    (["OK", "MY-TOKEN"], r"hooks\.env\[1\]: invalid environment variable name 'MY-TOKEN'"),
    (["A=B"], r"invalid environment variable name 'A=B'"),
    ("BANK", r"hooks\.env: expected a list"),
])
def test_hooks_env_names_are_validated(env, match):
    with pytest.raises(ConfigError, match=match):
        HooksConfig.from_dict({"post": "true", "env": env})


def test_hooks_env_round_trips_through_to_dict():
    h = HooksConfig.from_dict({"post": "true", "env": ["BANK", "MY_TOKEN"]})
    assert h.to_dict()["env"] == ["BANK", "MY_TOKEN"] and HooksConfig.from_dict(h.to_dict()) == h
