"""docs/security.md's code blocks run as written: its retention YAML is a valid bank config with
the limits the text states, and its redactor registration gives a bank that redacts with it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from swarm_sona.bank import ReasoningBank
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.core.redaction import resolve_redactor, unregister_redactor

DOC = Path(__file__).parents[2] / "docs" / "security.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_the_retention_block_is_a_bank_config_with_the_stated_limits() -> None:
    [block] = blocks("yaml")
    cfg = ReasoningBankConfig.from_dict(yaml.safe_load(block)["bank"])
    assert cfg.retention.max_age == 30 * 86400 and cfg.retention.max_per_task_type == 50000
    assert cfg.retention.prune_every == 1000


def test_the_redactor_block_registers_a_redactor_a_bank_uses(tmp_path) -> None:
    [block] = blocks("python")
    try:
        exec(compile(block, str(DOC), "exec"), {})
        assert resolve_redactor("corp")("see ACME-INTERNAL docs") == "see [corp] docs"
        # "then: bank: {redact: corp+secrets}" as the block's last line says
        with ReasoningBank({"redact": "corp+secrets"}, path=tmp_path / "b", embedder="hashing-v1-64") as bank:
            [pid] = bank.store_many([{"task": "read ACME-INTERNAL notes", "input": "", "output": "ok",
                                      "reward": 1.0, "success": True}])
            got = bank.get(pid)
            assert got is not None and "[corp]" in got.task and "ACME-INTERNAL" not in str(got)
    finally:
        unregister_redactor("corp")
