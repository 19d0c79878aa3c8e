"""``swarm-sona retrieve`` and ``swarm-sona store``: the agent hook commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from swarm_sona.app.cli import main
from swarm_sona.bank import ReasoningBank
from swarm_sona.bank.edge_backend import ram_tmpdir


@pytest.fixture
def bank_dir(tmp_path):
    """A bank directory on a RAM disk when there is one (the engine fsyncs a lot), else tmp_path."""
    base = ram_tmpdir() or str(tmp_path)
    d = tempfile.mkdtemp(prefix="bank_cli_", dir=base)
    yield os.path.join(d, "bank")
    shutil.rmtree(d, ignore_errors=True)


def cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def store(capsys, bank, task, reward, success, *extra):
    return cli(capsys, "store", "--task", task, "--input", f"in: {task}", "--output", f"out: {task}",
               "--reward", str(reward), "--success", success, "--bank", bank, *extra)


def test_store_then_retrieve_json(capsys, bank_dir):
    code, out, err = store(capsys, bank_dir, "fix the failing unit test in the parser", 0.9, "true",
                           "--metadata", '{"lang": "py"}', "--agent-id", "coder", "--task-type", "bugfix")
    assert code == 0, err
    pid = out.strip()
    assert store(capsys, bank_dir, "fix the failing unit test in the lexer", 0.5, "false")[0] == 0
    assert store(capsys, bank_dir, "write the release notes", 0.95, "yes")[0] == 0
    code, out, err = cli(capsys, "retrieve", "fix a failing unit test", "--k", "5", "--min-reward", "0.85",
                         "--threshold", "-1", "--bank", bank_dir, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert [p["task"] for p in got][0] == "fix the failing unit test in the parser"
    assert all(p["reward"] >= 0.85 for p in got) and len(got) == 2
    assert got[0]["id"] == pid and got[0]["metadata"] == {"lang": "py"} and got[0]["agent_id"] == "coder"
    code, out, _ = cli(capsys, "retrieve", "fix a failing unit test", "--k", "5", "--success", "false",
                       "--bank", bank_dir, "--json")
    assert [p["task"] for p in json.loads(out)] == ["fix the failing unit test in the lexer"]
    code, out, _ = cli(capsys, "retrieve", "fix a failing unit test", "--k", "5", "--metadata", '{"lang": "py"}',
                       "--agent", "coder", "--task-type", "bugfix", "--bank", bank_dir, "--json")
    assert [p["id"] for p in json.loads(out)] == [pid]


def test_store_same_pattern_twice_keeps_one_and_json_output(capsys, bank_dir):
    for _ in range(2):
        code, out, _ = store(capsys, bank_dir, "deploy service", 0.8, "true", "--json")
        assert code == 0
    assert json.loads(out)["count"] == 1


def test_retrieve_text_output_and_mark_used(capsys, bank_dir):
    store(capsys, bank_dir, "parse csv files with pandas", 0.9, "true")
    code, out, _ = cli(capsys, "retrieve", "parse a csv file", "--bank", bank_dir, "--mark-used")
    assert code == 0
    assert out.startswith("1. [similarity ") and "parse csv files with pandas" in out
    assert "Approach: out: parse csv files with pandas" in out
    with ReasoningBank(path=bank_dir) as bank:
        assert bank.retrieve_patterns("parse a csv file")[0].use_count == 1


def test_retrieve_on_a_missing_bank_path_is_an_error_and_creates_nothing(capsys, bank_dir):
    # an explicit --bank that is not a bank is a typo, not an empty bank
    code, out, err = cli(capsys, "retrieve", "anything", "--bank", bank_dir, "--json")
    assert code == 2 and out == "" and f"--bank {bank_dir}: not a ReasoningBank (no such directory)" in err
    assert not os.path.exists(bank_dir)
    os.makedirs(bank_dir)
    code, _, err = cli(capsys, "retrieve", "anything", "--bank", bank_dir)
    assert code == 2 and "no bank.json in it" in err


def test_retrieve_before_the_default_bank_exists_returns_nothing(capsys, bank_dir, monkeypatch):
    monkeypatch.setenv("SWARM_SONA_BANK_PATH", bank_dir)
    code, out, err = cli(capsys, "retrieve", "anything", "--json")
    assert code == 0 and json.loads(out) == [] and "no ReasoningBank" in err
    assert not os.path.exists(bank_dir)


@pytest.mark.parametrize("argv, reason", [
    (["store", "--task", "t", "--reward", "1.5", "--success", "true"], "reward must be a finite number in [0, 1]"),
    (["store", "--task", "t", "--reward", "-0.2", "--success", "true"], "reward"),
    (["store", "--task", "t", "--reward", "nan", "--success", "true"], "reward"),
    (["store", "--task", "t", "--reward", "abc", "--success", "true"], "invalid float value"),
    (["store", "--task", "t", "--reward", "0.5", "--success", "maybe"], "expected true or false"),
    (["store", "--task", "t", "--reward", "0.5", "--success", "true", "--metadata", "{bad"], "not valid JSON"),
    (["store", "--task", "t", "--reward", "0.5", "--success", "true", "--metadata", "[1, 2]"],
     "expected a JSON object"),
    (["store", "--task", "", "--reward", "0.5", "--success", "true"], "task must be a non-empty string"),
    (["store", "--reward", "0.5", "--success", "true"], "required: --task"),
    (["retrieve", "x", "--k", "0"], "--k must be >= 1"),
    (["retrieve", "x", "--min-reward", "3"], "min_reward"),
    (["retrieve", "x", "--mmr", "2"], "mmr"),
    (["retrieve", "x", "--metadata", '{"flag": true}'], "booleans cannot be filtered on"),
    (["retrieve", "--k", "3"], "required: task"),
])
def test_bad_arguments_exit_2_with_one_line_reason(capsys, bank_dir, argv, reason):
    if argv[0] == "retrieve":  # a bank must exist for value checks to happen
        store(capsys, bank_dir, "seed", 0.5, "true")
    code, out, err = cli(capsys, *argv, "--bank", bank_dir)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], err
    if argv[0] == "store":
        with ReasoningBank(path=bank_dir) if os.path.exists(bank_dir) else _nothing() as bank:
            assert bank is None or bank.count() == 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_console_script_end_to_end(bank_dir):
    exe = shutil.which("swarm-sona") or None
    cmd = [exe] if exe else [sys.executable, "-m", "swarm_sona"]
    p = subprocess.run(cmd + ["store", "--task", "t1", "--input", "i", "--output", "o", "--reward", "0.9",
                              "--success", "true", "--bank", bank_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(cmd + ["retrieve", "t1", "--k", "5", "--min-reward", "0.85", "--bank", bank_dir, "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)[0]["task"] == "t1"
