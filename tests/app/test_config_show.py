"""``swarm-sona config show [SPEC]``: every effective value with its source and doc, secrets withheld."""

from __future__ import annotations

import json

from swarm_sona.app.cli import main
from swarm_sona.app.commands.config_show import SECRET, effective_config
from swarm_sona.app.run_spec import RunSpec


def _show(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["config", "show", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_values_say_whether_the_spec_set_them_or_a_default_did(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("topology: star\nswarm: {syncEvery: 16}\nworkload: {tasks: 300}\nsharedReasoningBank: false\n")
    rc, out, _ = _show(capsys, str(spec), "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["schema_version"] == 1 and doc["spec"] == str(spec)
    e = {x["key"]: x for x in doc["entries"]}
    assert e["topology"]["value"] == "star" and e["topology"]["source"] == "spec"
    assert e["swarm.sync_every"] == {"key": "swarm.sync_every", "value": 16, "source": "spec",
                                     "doc": "Tasks per agent between consensus synchronisations."}
    assert e["swarm.batch_size"]["value"] == 128 and e["swarm.batch_size"]["source"] == "default"
    assert e["workload.tasks"]["value"] == 300 and e["workload.tasks"]["source"] == "spec"
    assert e["shared_bank"]["value"] is False and e["shared_bank"]["source"] == "spec"   # an alias counts
    assert e["sona.lora.rank"]["source"] == "default" and e["sona.lora.rank"]["doc"]
    assert e["router.models"]["source"] == "derived"   # the simulated executor's models
    assert {k for k in e if k.startswith("agents.")} == {"agents.queen-1", "agents.coder-1", "agents.reviewer-1",
                                                        "agents.tester-1", "agents.researcher-1"}
    # nothing the engine gets through the spec's own sections is listed twice
    assert not any(k.startswith(("sona.reasoning_bank", "sona.llm_router", "swarm.sona", "swarm.topology")) for k in e)


def test_the_text_table_has_every_key_once_with_its_doc(capsys):
    rc, out, _ = _show(capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "# effective config of the built-in default swarm"
    row = next(ln for ln in lines if ln.startswith("swarm.sync_every "))
    assert row.split()[1:3] == ["128", "default"] and "# Tasks per agent between" in row
    keys = [ln.split()[0] for ln in lines[1:]]
    assert len(keys) == len(set(keys)) > 100


def test_secrets_are_withheld_and_credentials_in_values_scrubbed(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("bank: {url: 'https://q.example:6333', apiKey: k-literal-123}\n"
                    "telemetry: {otlpEndpoint: 'https://u:pw-998877@h.example/x'}\n")
    rc, out, _ = _show(capsys, str(spec))
    assert rc == 0
    assert "k-literal-123" not in out and "pw-998877" not in out
    row = next(ln for ln in out.splitlines() if ln.startswith("bank.api_key "))
    assert SECRET in row and row.split()[2] == "spec"
    assert "https://***@h.example/x" in out
    e = {x.key: x for x in effective_config(RunSpec.load(spec), {"bank": {"apiKey": "x"}})}
    assert e["bank.api_key"].value == SECRET and e["bank.backend"].value == "qdrant"


def test_a_bad_spec_exits_2_naming_the_field_and_no_subcommand_exits_2(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text("swarm: {syncEvery: 0}\n")
    rc, _, err = _show(capsys, str(spec))
    assert rc == 2 and "sync_every" in err and str(spec) in err
    assert main(["config"]) == 2
    assert "give a subcommand" in capsys.readouterr().err
