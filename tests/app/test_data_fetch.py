"""``swarm-sona data fetch routellm DIR``: files verified by the checksums kept in the project.

No network: sources are ``file://`` trees laid out like the RouteLLM repository (built from the
test slice), and "offline" is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest

from swarm_sona.app.cli import main
from swarm_sona.app.commands.data_fetch import ROUTELLM_FILES, DataFetchError, fetch_routellm

SLICE = Path(__file__).resolve().parents[1] / "data" / "routellm_slice"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "routellm_mmlu"
RESPONSES = "routellm/evals/mmlu/responses"


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _tree(root: Path, files: dict[str, Path]) -> str:
    """A file:// source: ``files`` (repository path -> local file) copied under ``root``."""
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / rel)
    return root.as_uri() + "/"


def _slice_files() -> dict[str, Path]:
    out = {f"{RESPONSES}/{p.name}": p for p in sorted(SLICE.glob("mmlu_*.csv"))}
    out["LICENSE"] = SLICE / "LICENSE"
    return out


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_fetch_downloads_verifies_and_then_keeps_what_is_there(tmp_path):
    files = _slice_files()
    src = _tree(tmp_path / "src", files)
    sums = {rel: _sha(p) for rel, p in files.items()}
    out = tmp_path / "data"
    r = fetch_routellm(out, source=src, files=sums)
    assert sorted(r.fetched) == sorted(Path(rel).name for rel in files) and r.kept == ()
    assert all((out / Path(rel).name).read_bytes() == p.read_bytes() for rel, p in files.items())
    again = fetch_routellm(out, source=src, files=sums)
    assert again.fetched == () and len(again.kept) == len(files)
    (out / "LICENSE").write_text("changed")            # a changed copy is replaced
    assert fetch_routellm(out, source=src, files=sums).fetched == ("LICENSE",)
    assert not list(out.glob("*.part"))


def test_a_checksum_mismatch_keeps_nothing_of_that_file(tmp_path):
    files = _slice_files()
    src = _tree(tmp_path / "src", files)
    sums = {rel: _sha(p) for rel, p in files.items()}
    bad = f"{RESPONSES}/mmlu_anatomy.csv"
    (tmp_path / "src" / bad).write_text("prompt,a,b\ntampered,True,True\n")
    with pytest.raises(DataFetchError, match="mmlu_anatomy.csv: checksum mismatch"):
        fetch_routellm(tmp_path / "data", source=src, files=sums)
    assert not (tmp_path / "data" / "mmlu_anatomy.csv").exists()
    assert not list((tmp_path / "data").glob("*.part"))


def test_offline_exits_1_with_the_manual_steps(tmp_path, capsys):
    rc = main(["data", "fetch", "routellm", str(tmp_path / "d"), "--source", f"http://127.0.0.1:{_closed_port()}/",
               "--timeout", "5"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot read http://127.0.0.1:" in err and "git clone https://github.com/lm-sys/RouteLLM" in err
    assert "Traceback" not in err


def test_the_kept_checksums_are_the_47_subjects_and_the_licence():
    names = [Path(rel).name for rel in ROUTELLM_FILES]
    assert len([n for n in names if n.startswith("mmlu_")]) == 47 and "LICENSE" in names
    assert ROUTELLM_FILES["LICENSE"] == _sha(SLICE / "LICENSE")   # the licence the slice carries


def test_the_cli_fetches_the_whole_set_from_a_local_copy(tmp_path, capsys):
    if not SHARED.is_dir():
        pytest.skip(f"no local copy of the full RouteLLM files at {SHARED}")
    files = {rel: SHARED / Path(rel).name for rel in ROUTELLM_FILES}
    src = _tree(tmp_path / "src", files)
    out = tmp_path / "data"
    assert main(["data", "fetch", "routellm", str(out), "--source", src, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema_version"] == 1 and len(report["fetched"]) == 48 and report["kept"] == []
    assert main(["data", "fetch", "routellm", str(out), "--source", src]) == 0
    assert "0 file(s) downloaded, 48 already present, all 48 verified" in capsys.readouterr().out
    assert main(["data"]) == 2
