"""Migration of a bank directory's documents on disk: ``bank.json`` and ``manifest.json`` of an
older schema are rewritten at the current one (through the codec's migration registry, see
:mod:`.metadata`), the original kept as ``<name>.schema<N>.bak``; this is what ``swarm-sona
migrate PATH`` runs besides the codec's frame migration. The shard itself needs no migration.

Example:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "bank.json").write_text('{"format": "swarm_sona.reasoning_bank", "schema": 1, "dim": 8}')
    >>> [(r.action, r.from_version, r.to_version) for r in migrate_bank_files(d)]
    [('upgraded', 1, 2)]
    >>> json.loads((d / "bank.json").read_text())["format"], (d / "bank.json.schema1.bak").exists()
    ('swarm_sona.bank', True)
    >>> [r.action for r in migrate_bank_files(d)]
    ['current']
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from swarm_sona.bank.edge_backend import PathLock
from swarm_sona.bank.errors import BankError
from swarm_sona.bank.metadata import DOCUMENT_FILES, upgrade_document, write_json_durably
from swarm_sona.core import codec

__all__ = ["migrate_bank_files"]


def _result(path: Path, action: str, kind: str | None = None, from_version: Any = None, to_version: Any = None,
            **kw: Any) -> codec.MigrationResult:
    return codec.MigrationResult(path, action, kind, from_version, to_version, **kw)


def _migrate_one(path: Path, kind: str, *, dry_run: bool) -> codec.MigrationResult:
    try:
        raw = path.read_text(encoding="utf-8")
        doc = json.loads(raw)
    except (OSError, ValueError) as exc:
        return _result(path, "error", kind, reason=f"cannot read: {exc}")
    current = codec.schema_version(kind)
    try:
        body, version = upgrade_document(kind, doc, str(path))
    except BankError as exc:
        if "is not a swarm_sona" in str(exc):
            return _result(path, "skipped", reason=f"not a swarm_sona {kind} document")
        return _result(path, "error", kind, doc.get("schema"), current, reason=str(exc))
    if version == current:
        return _result(path, "current", kind, version, version)
    backup = path.with_name(f"{path.name}.schema{version}.bak")
    if dry_run:
        return _result(path, "would-upgrade", kind, version, current, backup=backup)
    try:
        if backup.exists() and backup.read_text(encoding="utf-8") != raw:
            return _result(path, "error", kind, version, current,
                           reason=f"backup {backup.name} already exists with other content; move it away")
        mode = stat.S_IMODE(path.stat().st_mode)
        if not backup.exists():
            write_json_durably(backup, doc)
            os.chmod(backup, mode)
        write_json_durably(path, body, check=lambda back: upgrade_document(kind, back, str(path)))
        os.chmod(path, mode)
    except (OSError, BankError) as exc:
        return _result(path, "error", kind, version, current, reason=f"cannot write: {exc}")
    return _result(path, "upgraded", kind, version, current, backup=backup)


def migrate_bank_files(root: str | os.PathLike[str], *, dry_run: bool = False) -> list[codec.MigrationResult]:
    """Upgrade every ``bank.json`` and ``manifest.json`` at or below ``root`` (a bank directory,
    a directory holding banks, or one such file) to the current schema, in place (see module
    docs). A bank that is open (its ``bank.lock`` held) is reported as an error and left alone;
    JSON files of those names that are not bank documents are skipped. With ``dry_run`` nothing is
    written (``"would-upgrade"``). Raises FileNotFoundError when ``root`` does not exist."""
    base = Path(root)
    if not base.exists():
        raise FileNotFoundError(f"no such file or directory: {base}")
    if base.is_file():
        files = [base] if base.name in DOCUMENT_FILES else []
    else:
        files = sorted(p for name in DOCUMENT_FILES for p in base.rglob(name) if p.is_file() and not p.is_symlink())
    results: list[codec.MigrationResult] = []
    for p in files:
        kind = DOCUMENT_FILES[p.name]
        lock = PathLock(p.parent)
        if not dry_run and not lock.acquire():
            results.append(_result(p, "error", kind, reason="the bank is open in another process or handle; "
                                                            "stop it first"))
            continue
        try:
            results.append(_migrate_one(p, kind, dry_run=dry_run))
        finally:
            lock.release()
    return results
