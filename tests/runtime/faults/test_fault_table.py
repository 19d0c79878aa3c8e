"""The fault table: a fault test's line appended through ``SWARM_FAULT_TABLE`` (and nothing
without it), rendered by ``render_table.py`` run as a script; JUnit rows for fault tests
outside this folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
CASE = "tests/runtime/faults/test_runtime_faults.py::test_torn_push_log_tail_is_cut_with_a_warning"
CASE2 = "tests/runtime/faults/test_runtime_faults.py::test_newer_schema_checkpoint_is_refused_not_started_fresh"


def _pytest(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", CASE, CASE2,
                           f"--junitxml={tmp_path / 'junit.xml'}"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_a_fault_case_is_recorded_only_when_asked_and_rendered_as_a_table(tmp_path):
    table = tmp_path / "faults.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "SWARM_FAULT_TABLE"}
    off = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", CASE], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=300)
    assert off.returncode == 0, off.stdout[-2000:]
    assert not table.exists()                                  # no SWARM_FAULT_TABLE: nothing written
    run = _pytest(tmp_path, {"SWARM_FAULT_TABLE": str(table)})
    assert run.returncode == 0, run.stdout[-2000:]
    lines = [json.loads(ln) for ln in table.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["test"] == CASE and lines[0]["outcome"] == "passed"
    assert (lines[0]["fault"], lines[0]["acknowledged"], lines[0]["found"], lines[0]["lost"]) == \
        ("torn push log tail", 1, 1, 0)
    assert lines[0]["bad_inputs"] == lines[0]["refused"] == 1 and lines[0]["load1"] >= 0
    out = subprocess.run([sys.executable, str(HERE / "render_table.py"), str(table), "--title", "unloaded"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines()[0] == "**unloaded**"
    assert "| torn push log tail | 1 | 1 | 0 | 1 | 1 | 1 | 1 | 0 |" in out
    assert "| checkpoint of a newer schema | 1 | 1 | 0 | 2 | 2 | 0 | 0 | 0 |" in out
    assert "| total | 2 | 2 | 0 | 3 | 3 | 1 | 1 | 0 |" in out


def test_junit_rows_name_the_fault_tests_outside_this_folder(tmp_path):
    junit = tmp_path / "j.xml"
    junit.write_text('<testsuites><testsuite name="pytest">'
                     '<testcase classname="tests.runtime.test_swarm_ray" name="test_killing_an_agent" time="9.5"/>'
                     '<testcase classname="tests.runtime.test_bank_actor_kill" name="test_bank_kill[0]" time="3">'
                     '<failure message="lost"/></testcase>'
                     '<testcase classname="tests.runtime.faults.test_runtime_faults" name="test_torn" time="1"/>'
                     '</testsuite></testsuites>')
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"fault": "torn", "outcome": "passed", "acknowledged": 1, "found": 1, "lost": 0,
                                 "bad_inputs": 0, "refused": 0, "load1": 0.2, "seconds": 1}) + "\n" +
                     json.dumps({"fault": "no log", "outcome": "passed", "acknowledged": 2, "found": 0, "lost": 2, "bad_inputs": 0, "refused": 0,
                                 "control": True, "load1": 0.3, "seconds": 1}) + "\n")
    out = subprocess.run([sys.executable, str(HERE / "render_table.py"), str(table), "--junit", str(junit)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "| test_killing_an_agent (outside faults/) | 1 | 1 | 0 |  |  |  |  |  |" in out
    assert "| test_bank_kill (outside faults/) | 1 | 0 | 0 |" in out
    assert "test_torn (outside" not in out                       # the folder's own cases come from the lines
    assert "| no log (control: losses expected) | 1 | 1 | 0 | 0 | 0 | 2 | 0 | 2 | 0.3 | 1.0 |" in out
    assert "| total (controls left out) | 3 | 2 | 0 | 0 | 0 | 1 | 1 | 0 | 0.2 | 13.5 |" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    err = subprocess.run([sys.executable, str(HERE / "render_table.py"), str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert err.returncode != 0 and "bad.jsonl:1: not a JSON line" in err.stderr
