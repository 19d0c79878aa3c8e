"""core/bounded_process: the output-capped, time-bounded, process-group-killing runner and its environment."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from swarm_sona.core.bounded_process import (
    DEFAULT_OUTPUT_CAP,
    ENV_VALUE_MAX,
    BoundedProcessError,
    ProcessEnv,
    ProcessResult,
    clean_env_value,
    clip_utf8,
    run_bounded,
)

PATH = {"PATH": "/usr/bin:/bin"}


def sh(cmd: str, **kw: object) -> ProcessResult:
    return run_bounded(["/bin/sh", "-c", cmd], env=kw.pop("env", PATH), **kw)  # type: ignore[arg-type]


def test_exit_status_and_both_streams() -> None:
    r = sh("echo out; echo err >&2; exit 7", timeout_s=5)
    assert (r.returncode, r.stdout, r.stderr, r.timed_out, r.notes) == (7, "out\n", "err\n", False, [])
    assert (r.stdout_total, r.stderr_total) == (4, 4)


def test_merge_stderr_option_puts_both_in_stdout() -> None:
    apart = sh("echo a; echo b >&2", timeout_s=5)
    merged = sh("echo a; echo b >&2", timeout_s=5, merge_stderr=True)
    assert (apart.stdout, apart.stderr) == ("a\n", "b\n")
    assert (merged.stdout, merged.stderr) == ("a\nb\n", "")


def test_output_is_streamed_and_capped_without_stopping_the_child() -> None:
    r = sh("yes | head -c 3000000; echo done >&2", timeout_s=10, output_cap=100)
    assert r.returncode == 0 and not r.timed_out
    assert (len(r.stdout), r.stdout_total, r.stdout_truncated) == (100, 3_000_000, True)
    assert r.stderr == "done\n" and not r.stderr_truncated
    assert r.notes == ["stdout: kept the first 100 of 3000000 bytes"]
    assert sh("true", timeout_s=5).stdout_truncated is False and DEFAULT_OUTPUT_CAP == 4096


def test_a_character_cut_by_the_cap_is_dropped() -> None:
    r = sh("printf 'a\\342\\202\\254b'", timeout_s=5, output_cap=2)       # "a€b": the cap cuts the euro sign
    assert r.stdout == "a" and r.stdout_truncated


def test_timeout_kills_the_process_group() -> None:
    t0 = time.perf_counter()
    r = sh("sleep 30 & sleep 30; echo never", timeout_s=0.3)
    took = time.perf_counter() - t0
    assert r.timed_out and r.returncode == -9 and r.exited_before_kill is None and r.stdout == ""
    assert took < 1.5, took


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid")
def test_setsid_grandchild_holding_the_pipes_costs_at_most_the_grace() -> None:
    t0 = time.perf_counter()
    r = sh("setsid sleep 5; exit 0", timeout_s=0.3, grace_s=0.3, label="hook")
    took = time.perf_counter() - t0
    assert r.timed_out and took < 0.3 + 0.3 + 0.5, took
    assert any("outside the hook's process group" in n for n in r.notes), r.notes


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_after_exit_s_option_judges_the_exit_not_the_background(pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not pidfd:                                              # platforms without pidfd_open poll for the exit
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    # default: reading goes on while a background process holds the output, until the timeout
    t0 = time.perf_counter()
    waited = sh("sleep 5 & echo hi; exit 0", timeout_s=0.5)
    assert waited.timed_out and waited.exited_before_kill == 0 and time.perf_counter() - t0 >= 0.5
    # after_exit_s: the exit status stands, soon after the exit; the leftover group is killed
    t0 = time.perf_counter()
    quick = sh("sleep 5 & echo $!; exit 0", timeout_s=5, after_exit_s=0.1)
    assert (quick.returncode, quick.timed_out) == (0, False) and time.perf_counter() - t0 < 1.0
    assert any("killed what was left" in n for n in quick.notes)
    pid = int(quick.stdout)
    time.sleep(0.1)
    try:
        state = open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("Z", "gone"), state


def test_cannot_start_raises_the_os_error_and_bad_arguments_are_named() -> None:
    with pytest.raises(FileNotFoundError):
        run_bounded(["/nonexistent/program"], env=PATH, timeout_s=1)
    with pytest.raises(OSError):
        run_bounded(["/bin/true"], env=PATH, timeout_s=1, cwd="/nonexistent/dir")
    for kwargs, name in (({"timeout_s": 0}, "timeout_s"), ({"timeout_s": float("inf")}, "timeout_s"),
                         ({"timeout_s": 1, "output_cap": -1}, "output_cap"),
                         ({"timeout_s": 1, "grace_s": -1}, "grace_s"),
                         ({"timeout_s": 1, "after_exit_s": "soon"}, "after_exit_s")):
        with pytest.raises(BoundedProcessError, match=name):
            run_bounded(["/bin/true"], env=PATH, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(BoundedProcessError, match="argv"):
        run_bounded("/bin/true", env=PATH, timeout_s=1)


def test_env_values_are_cleaned_and_clipped_by_bytes() -> None:
    notes: list[str] = []
    assert clean_env_value("A", b"x\0y", notes) == b"xy" and notes == ["A: removed 1 NUL byte(s)"]
    notes.clear()
    big = "€" * (ENV_VALUE_MAX // 3 + 10)                     # 3 bytes a character: over the limit
    b = clean_env_value("BIG", big, notes)
    assert len(b) <= ENV_VALUE_MAX and len(b) % 3 == 0 and b.decode() == big[: len(b) // 3]
    assert notes == [f"BIG: cut from {len(big.encode())} to {len(b)} bytes"]
    assert clip_utf8("é".encode(), 1) == b""


def test_process_env_allow_list_prefixes_and_path() -> None:
    src = {b"PATH": b"/usr/bin", b"HOME": b"/home/u", b"OPENAI_API_KEY": b"sk-secret", b"APP_X": b"1",
           b"NOT_APP": b"2"}
    e = ProcessEnv()
    e.inherit(["PATH", "HOME", "UNSET_ONE"], prefixes=("APP_",), source=src)
    assert e.env == {b"PATH": b"/usr/bin", b"HOME": b"/home/u", b"APP_X": b"1"}
    e.prepend_path("/opt/tools/bin")
    e.prepend_path("/opt/tools/bin")                            # already first: unchanged
    assert e.env[b"PATH"] == b"/opt/tools/bin" + os.pathsep.encode() + b"/usr/bin"
    e.put("BAD=NAME", "v")
    e.put("TASK", "a\0b")
    assert b"BAD=NAME" not in e.env and e.env[b"TASK"] == b"ab"
    assert e.notes == ["skipped environment variable with an invalid name 'BAD=NAME'", "TASK: removed 1 NUL byte(s)"]
    # the child sees exactly this environment, nothing of the caller's
    os.environ["FAKE_SECRET_FOR_TEST"] = "sk-live-1"
    try:
        r = run_bounded(["/usr/bin/env"], env=e.env, timeout_s=5)
    finally:
        del os.environ["FAKE_SECRET_FOR_TEST"]
    assert "FAKE_SECRET" not in r.stdout and "OPENAI" not in r.stdout and "TASK=ab" in r.stdout
    small = ProcessEnv(value_max=4)
    small.put("V", "abcdef")
    assert small.env[b"V"] == b"abcd"
    with pytest.raises(BoundedProcessError, match="value_max"):
        ProcessEnv(value_max=0)
