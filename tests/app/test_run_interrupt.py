"""Ctrl-C during ``swarm-sona run``: a partial summary of what completed, exit 130, no traceback.

The unit tests drive :class:`RunStream` with real SIGINTs in this process; the end-to-end test
runs the real command in its own session (its own local Ray) and sends SIGINT to the whole
process group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm_sona.app.commands.run_stream import INTERRUPTED, RunStream
from swarm_sona.app.report import RunLog, format_summary
from swarm_sona.app.run_spec import BudgetsConfig


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """Python's own Ctrl-C handler for each test, whatever this process inherited: a job started in the
    background of a shell without job control inherits SIGINT ignored, and Python then keeps it so."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _stream() -> tuple[RunStream, io.StringIO]:
    err = io.StringIO()
    return RunStream(RunLog(window=1), n_tasks=10, budget=BudgetsConfig(), err=err), err


def test_first_ctrl_c_stops_dispatch_and_the_second_raises():
    rs, err = _stream()
    with rs.interrupts():
        assert not rs.should_stop()
        signal.raise_signal(signal.SIGINT)      # the first: no exception, dispatch stops
        assert rs.should_stop() and rs.interrupted and rs.stopped == INTERRUPTED
        assert "finishing the batches in flight" in err.getvalue()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second: at once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored after


def test_without_the_context_ctrl_c_is_a_keyboard_interrupt():
    rs, _ = _stream()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert not rs.interrupted


def test_partial_summary_says_what_completed_and_where_the_checkpoints_are():
    log = RunLog(window=1)
    log.add({"task_id": "0", "agent_id": "a", "model": "m", "success": True})
    s = log.summary(bank="/data/bank", bank_patterns=3, interrupted=True, tasks_submitted=500, checkpoint_dir=None)
    text = format_summary(s)
    assert "partial summary: 1 of 500 tasks completed" in text
    assert "ReasoningBank" in text and "/data/bank (3 patterns)" in text
    assert "none kept (a temporary directory; set swarm.checkpointDir to keep them)" in text
    s["checkpoint_dir"] = "/data/ckpt"
    assert "/data/ckpt" in format_summary(s)
    assert "interrupted" not in format_summary(log.summary())   # a run that was not interrupted says nothing


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_during_a_real_run_prints_the_partial_summary_and_exits_130(tmp_path):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "XDG_DATA_HOME": str(tmp_path / "data"),
           "SWARM_SONA_LOG_LEVEL": "INFO"}
    env.pop("RAY_ADDRESS", None)
    bank = tmp_path / "bank"
    p = subprocess.Popen([sys.executable, "-m", "swarm_sona", "run", "--tasks", "1000000", "--no-progress",
                          "--bank", str(bank)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, start_new_session=True)
    try:
        assert p.stderr is not None
        seen = []
        deadline = time.monotonic() + 120
        for line in p.stderr:   # wait until the task stream has started
            seen.append(line)
            if "streaming 1000000 tasks" in line or time.monotonic() > deadline:
                break
        assert any("streaming" in line for line in seen), "".join(seen)
        time.sleep(2.0)
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGINT)   # what a terminal's Ctrl-C does: the whole foreground group
        out, rest = p.communicate(timeout=90)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    err = "".join(seen) + rest
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert "interrupted: finishing the batches in flight" in err
    line = next(ln for ln in out.splitlines() if ln.startswith("interrupted"))
    done = int(line.split("partial summary: ")[1].split(" of ")[0].replace(",", ""))
    assert 0 < done < 1_000_000, line
    assert f"{bank} (" in out and "patterns" in out            # where the bank is, and what it holds
    assert "checkpoints" in out and "none kept" in out
    assert (Path(bank) / "bank.json").exists()
    assert took < 60, took
