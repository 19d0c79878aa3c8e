"""Every example spec under examples/ is valid and its plan syncs (the real run of
examples/quickstart.yaml is in tests/app/test_run_cli.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm_sona.app.commands.run_plan import plan
from swarm_sona.app.run_spec import RunSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = sorted(EXAMPLES.glob("*.yaml"))


def test_there_are_example_specs():
    assert {p.name for p in SPECS} >= {"spec.yaml", "quickstart.yaml"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_each_example_plans_consensus_syncs_without_warnings(path, tmp_path):
    p = plan(RunSpec.load(path).with_overrides(bank=str(tmp_path / "bank")))
    assert p.consensus and p.expected_syncs > 0, p.warnings
    assert p.warnings == ()


@pytest.mark.ray
@pytest.mark.slow
def test_the_example_spec_runs_its_hooks_in_seconds_and_syncs(tmp_path):
    """examples/spec.yaml end to end (its own local Ray): the built-in store action fills the
    researcher's findings bank, the tester's shell hook writes its log, consensus syncs ran."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_SONA_", "RAY_ADDRESS"))}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"),
               SWARM_SONA_FINDINGS=str(tmp_path / "findings"), SWARM_SONA_TEST_LOG=str(tmp_path / "tests.csv"))
    r = subprocess.run([sys.executable, "-m", "swarm_sona", "run", str(EXAMPLES / "spec.yaml"), "--json",
                        "--no-progress", "--bank", str(tmp_path / "bank")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout)
    assert s["tasks"] == 200 and s["syncs"] > 0 and s["hook_failures"] == 0, s
    assert s["elapsed_s"] < 30, s["elapsed_s"]     # was 51 s with a swarm-sona process per hook call
    from swarm_sona.app.report import bank_count

    stored = bank_count(tmp_path / "findings")   # durable stores: the manifest has them
    assert stored is not None and 0 < stored <= s["agents"]["researcher-1"]["tasks"]
    assert len((tmp_path / "tests.csv").read_text().splitlines()) == s["agents"]["tester-1"]["tasks"]
