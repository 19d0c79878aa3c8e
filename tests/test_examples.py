"""Every example spec under examples/ is valid and its plan syncs (the real run of
examples/quickstart.yaml is in tests/test_run_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_sona.app.commands.run_plan import plan
from swarm_sona.app.run_spec import RunSpec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPECS = sorted(EXAMPLES.glob("*.yaml"))


def test_there_are_example_specs():
    assert {p.name for p in SPECS} >= {"spec.yaml", "quickstart.yaml"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_each_example_plans_consensus_syncs_without_warnings(path, tmp_path):
    p = plan(RunSpec.load(path).with_overrides(bank=str(tmp_path / "bank")))
    assert p.consensus and p.expected_syncs > 0, p.warnings
    assert p.warnings == ()
