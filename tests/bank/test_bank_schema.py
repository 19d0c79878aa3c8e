"""bank.json / manifest.json schema versions and their migration (swarm_sona.bank.metadata,
swarm_sona.bank.migrate): swarm_sona 0.1.0's bank (tests/data/schema1/bank.tar.gz, 143 patterns)
opens, and ``swarm-sona migrate PATH`` upgrades a bank directory in place with a backup."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from swarm_sona.app.cli import main
from swarm_sona.bank import ReasoningBank
from swarm_sona.bank.errors import BankError
from swarm_sona.bank.metadata import META_SCHEMA, write_json_durably
from swarm_sona.bank.migrate import migrate_bank_files

BANK_TAR = Path(__file__).parents[1] / "data" / "schema1" / "bank.tar.gz"


@pytest.fixture
def bank010(tmp_path: Path) -> Path:
    subprocess.run(["tar", "--sparse", "-xzf", str(BANK_TAR), "-C", str(tmp_path)], check=True)
    return tmp_path / "bank"


def test_a_010_bank_opens_without_rewriting_its_metadata(bank010):
    before = (bank010 / "bank.json").read_bytes()
    assert json.loads(before)["format"] == "swarm_sona.reasoning_bank"   # what 0.1.0 wrote
    with ReasoningBank(path=bank010) as bank:
        assert bank.count() == 143 and bank.embedder_name == "hashing-v1-32"
        hits = bank.retrieve_patterns("implement a parser", k=3)
        assert len(hits) == 3 and all(p.task for p in hits)
        assert bank.stats()["recovery"]["problems"] == []
    assert (bank010 / "bank.json").read_bytes() == before   # upgraded in memory only


def test_swarm_sona_migrate_upgrades_a_bank_directory(bank010, capsys):
    before = (bank010 / "bank.json").read_bytes()
    assert main(["migrate", str(bank010), "--dry-run"]) == 0
    assert "would-upgrade  bank.json  bank-meta  schema 1 -> 2" in capsys.readouterr().out
    assert (bank010 / "bank.json").read_bytes() == before
    assert main(["migrate", str(bank010), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    row = next(f for f in out["files"] if f["path"] == "bank.json")
    assert (row["action"], row["from_version"], row["to_version"]) == ("upgraded", 1, META_SCHEMA)
    meta = json.loads((bank010 / "bank.json").read_text())
    assert (meta["format"], meta["schema"], meta["dim"]) == ("swarm_sona.bank", 2, 32)
    assert (bank010 / "bank.json.schema1.bak").read_bytes() == before
    with ReasoningBank(path=bank010) as bank:
        assert bank.count() == 143
        bank.store_pattern("a new task", "", "x", 1.0, True)
    # the bank wrote its manifest at schema 1 (current): a second run changes nothing
    results = migrate_bank_files(bank010)
    assert sorted((r.path.name, r.action) for r in results) == [("bank.json", "current"), ("manifest.json", "current")]


def test_a_newer_schema_is_refused_naming_the_file(tmp_path):
    with ReasoningBank(path=tmp_path / "b", embedder="hashing-v1-16") as bank:
        bank.store_pattern("t", "", "o", 1.0, True)
    meta_file = tmp_path / "b" / "bank.json"
    meta = json.loads(meta_file.read_text())
    assert meta["schema"] == META_SCHEMA and meta["format"] == "swarm_sona.bank"
    write_json_durably(meta_file, {**meta, "schema": META_SCHEMA + 1})
    with pytest.raises(BankError, match=rf"{meta_file}: .*schema {META_SCHEMA + 1}.*upgrade swarm-sona"):
        ReasoningBank(path=tmp_path / "b")
    assert [r.action for r in migrate_bank_files(meta_file)] == ["error"]
    write_json_durably(meta_file, meta)
    man_file = tmp_path / "b" / "manifest.json"
    man = json.loads(man_file.read_text())
    write_json_durably(man_file, {**man, "schema": 9})
    with pytest.raises(BankError, match=rf"{man_file}: .*schema 9"):
        ReasoningBank(path=tmp_path / "b")


def test_migrate_leaves_an_open_bank_alone(bank010):
    with ReasoningBank(path=bank010):
        (r,) = migrate_bank_files(bank010 / "bank.json")
        assert r.action == "error" and "open in another process" in (r.reason or "")
    assert json.loads((bank010 / "bank.json").read_text())["schema"] == 1


def test_foreign_json_files_are_skipped(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text('{"name": "some other tool"}')
    (r,) = migrate_bank_files(tmp_path)
    assert r.action == "skipped"
