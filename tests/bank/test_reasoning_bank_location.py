"""One bank-location parser (swarm_sona.bank.location): URL or path -> backend + config."""

import pytest

from swarm_sona.app.run_spec import RunSpec
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.location import BankLocationError, bank_config, parse_bank_location
from swarm_sona.core.config import ConfigError


def test_url_is_qdrant_path_is_edge(tmp_path):
    assert parse_bank_location("http://localhost:6333").settings() == {"backend": "qdrant",
                                                                      "url": "http://localhost:6333", "path": None}
    loc = parse_bank_location(tmp_path / "b")
    assert loc.backend == "edge" and loc.path == str(tmp_path / "b")
    cfg = bank_config(str(tmp_path / "b"), ReasoningBankConfig(cache_size=7, backend="qdrant", url="http://x:1"))
    assert (cfg.backend, cfg.path, cfg.url, cfg.cache_size) == ("edge", str(tmp_path / "b"), None, 7)


@pytest.mark.parametrize("bad, words", [("", "empty"), ("ftp://h/b", "scheme 'ftp'"), ("https://", "no host"),
                                        ("a\x00b", "NUL")])
def test_bad_locations_error_clearly(bad, words):
    with pytest.raises(BankLocationError, match=words):
        parse_bank_location(bad)


def test_a_file_is_not_a_bank_directory(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    with pytest.raises(BankLocationError, match="existing file"):
        parse_bank_location(f)
    with pytest.raises(BankLocationError, match="is a file"):
        parse_bank_location(f / "sub" / "bank")
    with pytest.raises(ConfigError, match="--bank"):
        RunSpec.default().with_overrides(bank=str(f))


def test_mapping_with_url_and_no_backend_is_a_server():
    assert bank_config({"url": "https://q:6333"}).backend == "qdrant"
    assert bank_config({"url": "https://q:6333", "backend": "edge"}).backend == "edge"   # explicit wins
    assert RunSpec.from_dict({"bank": {"url": "https://q:6333"}}).bank.backend == "qdrant"
    assert RunSpec.from_dict({"bank": {"cacheSize": 3}}).bank.backend == "edge"
    spec = RunSpec.default().with_overrides(bank="https://q:6333")
    assert (spec.bank.backend, spec.bank.url, spec.bank.path) == ("qdrant", "https://q:6333", None)
