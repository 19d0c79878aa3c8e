"""The ``swarm-sona`` command's own behaviour: exit codes, logging options, closed pipes."""

from __future__ import annotations

import io
import logging

import pytest

from swarm_sona.app import cli
from swarm_sona.app.commands.job_status import exit_code


class _ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no fileno")


def test_a_closed_pipe_ends_quietly_with_141(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SWARM_SONA_BANK_PATH", str(tmp_path / "no-bank-yet"))
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert cli.main(["retrieve", "x", "--json"]) == 141   # prints "[]" into the closed pipe: no traceback
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("status,wait,code", [("SUCCEEDED", False, 0), ("RUNNING", False, 0), ("PENDING", False, 0),
                                               ("FAILED", False, 1), ("STOPPED", False, 1), ("RUNNING", True, 1)])
def test_status_exit_code_follows_the_job_state(status, wait, code):
    assert exit_code(status, wait=wait) == code


def test_log_level_from_options_and_environment():
    assert cli.log_level() == logging.WARNING
    assert cli.log_level(1) == logging.INFO and cli.log_level(2) == logging.DEBUG and cli.log_level(5) == logging.DEBUG
    assert cli.log_level(quiet=True) == logging.ERROR
    assert cli.log_level(environ={"SWARM_SONA_LOG_LEVEL": "debug"}) == logging.DEBUG
    assert cli.log_level(1, environ={"SWARM_SONA_LOG_LEVEL": "ERROR"}) == logging.WARNING
    assert cli.log_level(environ={"SWARM_SONA_LOG_LEVEL": "15"}) == 15
    with pytest.raises(ValueError, match="SWARM_SONA_LOG_LEVEL='loud'"):
        cli.log_level(environ={"SWARM_SONA_LOG_LEVEL": "loud"})


def test_a_bad_log_level_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("SWARM_SONA_LOG_LEVEL", "loud")
    assert cli.main(["retrieve", "x", "--bank", "/nonexistent-bank-dir"]) == 2
    assert "SWARM_SONA_LOG_LEVEL" in capsys.readouterr().err


def test_verbose_and_quiet_set_the_root_level(monkeypatch):
    monkeypatch.delenv("SWARM_SONA_LOG_LEVEL", raising=False)
    root = logging.getLogger()
    old = root.level
    try:
        cli.main(["-vv", "retrieve", "x", "--bank", "/nonexistent-bank-dir"])
        assert root.level == logging.DEBUG
        cli.main(["-q", "retrieve", "x", "--bank", "/nonexistent-bank-dir"])
        assert root.level == logging.ERROR
    finally:
        root.setLevel(old)


def test_run_against_a_dead_address_fails_in_seconds_naming_it(capsys):
    import time

    t0 = time.monotonic()
    assert cli.main(["run", "--address", "127.0.0.1:1", "--tasks", "10"]) == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert time.monotonic() - t0 < 30


def test_store_json_carries_a_schema_version(tmp_path, capsys):
    import json

    argv = ["store", "--task", "t", "--output", "o", "--reward", "0.9", "--success", "true",
            "--bank", str(tmp_path / "b"), "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema_version"] == 1 and out["count"] == 1 and out["id"]


@pytest.mark.parametrize("as_json", [True, False])
def test_a_json_benchmark_keeps_stdout_for_its_one_json_object(as_json, monkeypatch, capsys):
    """``bench ... --json``: what else reaches stdout while it runs (Ray prints its raylet
    warnings there) goes to stderr, so stdout parses; without --json nothing moves."""
    import json

    import swarm_sona.bench.scale as scale
    from swarm_sona.bench.timing import emit

    def noisy(args):
        print("(raylet) WARNING: 8 PYTHON worker processes have been started")
        emit({"ok": 1}, as_json=args.json, title="t", header=["ok"], rows=[[1]])
        return 0

    monkeypatch.setattr(scale, "run", noisy)
    assert cli.main(["bench", "scale", "--no-actors", *(["--json"] if as_json else [])]) == 0
    out, err = capsys.readouterr()
    if as_json:
        assert json.loads(out) == {"ok": 1} and "raylet" in err
    else:
        assert "raylet" in out and "raylet" not in err
