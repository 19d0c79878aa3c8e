"""Upgrading frame files on disk in place (``swarm-sona migrate``): :func:`migrate_path`.

Example:
    >>> import os, tempfile
    >>> from swarm_sona.core.codec import write_checkpoint
    >>> d = tempfile.mkdtemp()
    >>> write_checkpoint(os.path.join(d, "a.ckpt"), {"w": 1})
    >>> [(r.path.name, r.action) for r in migrate_path(d)]
    [('a.ckpt', 'current')]
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm_sona.core.codec.checkpoints import atomic_write
from swarm_sona.core.codec.errors import CodecError
from swarm_sona.core.codec.frames import MAGIC, open_envelope, open_frame, pack_frame
from swarm_sona.core.codec.schemas import schema_version, upgrade_body

__all__ = ["MigrationResult", "migrate_path", "UPGRADED", "WOULD_UPGRADE", "CURRENT", "SKIPPED", "ERROR"]

log = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"\.(ckpt|msgpack|frame)(\.prev)?$|\.prev$")
_BACKUP_NAME = re.compile(r"\.schema\d+\.bak$")
_TEMP_NAME = re.compile(r"^\..+\.tmp$")

UPGRADED, WOULD_UPGRADE, CURRENT, SKIPPED, ERROR = "upgraded", "would-upgrade", "current", "skipped", "error"


@dataclass(frozen=True)
class MigrationResult:
    """What :func:`migrate_path` did with one file.

    ``action`` is ``"upgraded"`` (rewritten at ``to_version``, the original kept as
    ``backup``), ``"would-upgrade"`` (dry run), ``"current"`` (left untouched), ``"skipped"``
    (not a swarm_sona frame, ``reason`` says why) or ``"error"`` (left untouched, ``reason``).
    """

    path: Path
    action: str
    kind: str | None = None
    from_version: int | None = None
    to_version: int | None = None
    reason: str | None = None
    backup: Path | None = None

    @property
    def ok(self) -> bool:
        """Not an error."""
        return self.action != ERROR

    def to_dict(self, relative_to: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """JSON-ready fields (paths relative to ``relative_to`` when given and below it)."""
        def rel(p: Path | None) -> str | None:
            if p is None:
                return None
            if relative_to is not None:
                with contextlib.suppress(ValueError):
                    return str(p.relative_to(relative_to))
            return str(p)

        return {"path": rel(self.path), "action": self.action, "kind": self.kind,
                "from_version": self.from_version, "to_version": self.to_version,
                "reason": self.reason, "backup": rel(self.backup)}


def _backup_path(path: Path, version: int) -> Path:
    return path.with_name(f"{path.name}.schema{version}.bak")


def _migrate_file(path: Path, *, dry_run: bool, target: Path | None = None) -> MigrationResult:
    """Upgrade one frame file (``target``: where its bytes really are, for a symlink given
    explicitly). Never raises for a bad file; never modifies one that fails to decode."""
    real = target or path
    try:
        st = real.stat()
        data = real.read_bytes()
    except OSError as exc:
        return MigrationResult(path, ERROR, reason=f"cannot read: {exc.strerror or exc}")
    try:
        kind, version, body = open_envelope(data)
    except CodecError as exc:
        return MigrationResult(path, ERROR, reason=str(exc))
    current = schema_version(kind)
    if version == current:
        return MigrationResult(path, CURRENT, kind, version, version)
    try:
        body, current = upgrade_body(kind, version, body)
        blob = pack_frame(kind, body, version=current)
        check = open_frame(blob, expect_kind=kind)
        if check.schema != current:  # pragma: no cover - pack/open disagree: a bug, not bad input
            raise CodecError(f"re-encoded frame reads back as schema {check.schema}")
    except CodecError as exc:  # SchemaError, or an upgraded body that cannot be encoded
        return MigrationResult(path, ERROR, kind, version, current, reason=str(exc))
    backup = _backup_path(real, version)
    if dry_run:
        return MigrationResult(path, WOULD_UPGRADE, kind, version, current, backup=backup)
    mode = stat.S_IMODE(st.st_mode)
    try:
        if backup.exists() and backup.read_bytes() != data:
            return MigrationResult(path, ERROR, kind, version, current,
                                   reason=f"backup {backup.name} already exists with other content; move it away")
        if not backup.exists():
            atomic_write(backup, data, keep_prev=False, mode=mode)
        now = real.stat()
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
            return MigrationResult(path, ERROR, kind, version, current,
                                   reason="file changed while migrating (is a swarm running on it?); left as is")
        atomic_write(real, blob, keep_prev=False, mode=mode)
    except OSError as exc:
        return MigrationResult(path, ERROR, kind, version, current, reason=f"cannot write: {exc.strerror or exc}")
    log.info("migrated %s (%r) from schema %d to %d; backup %s", path, kind, version, current, backup)
    return MigrationResult(path, UPGRADED, kind, version, current, backup=backup)


def _is_frame_file(path: Path) -> bool | None:
    """True/False by magic; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return None


def migrate_path(path: str | os.PathLike[str], *, dry_run: bool = False) -> list[MigrationResult]:
    """Upgrade the swarm_sona frame at ``path``, or every frame file below the directory
    ``path`` (recursively, symlinked directories not followed), to the current schema version
    of its kind, in place.

    An older file is re-encoded through the registered migrations, its original bytes are kept
    as ``<name>.schema<N>.bak`` next to it (written first), and the upgraded frame replaces it
    atomically (same permissions; a ``.prev`` is not rotated: it is migrated on its own). Files
    at the current version are left untouched; a file that does not decode, is newer than this
    code or lacks a migration step is reported as an error and never modified. Files that are
    not frames are skipped, and reported only when their name looks like a checkpoint
    (``*.ckpt``, ``*.msgpack``, ``*.prev``); backups and temp files are ignored. With
    ``dry_run`` nothing is written (``"would-upgrade"``). Run it with the swarm stopped.

    Raises FileNotFoundError when ``path`` does not exist, NotADirectoryError when it is
    neither a file nor a directory.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    if root.is_file():
        target = root.resolve() if root.is_symlink() else None
        is_frame = _is_frame_file(root)
        if is_frame is False:
            return [MigrationResult(root, SKIPPED, reason="not a swarm_sona frame")]
        return [_migrate_file(root, dry_run=dry_run, target=target)]
    if not root.is_dir():
        raise NotADirectoryError(f"neither a file nor a directory: {root}")
    results: list[MigrationResult] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            if _BACKUP_NAME.search(name) or _TEMP_NAME.match(name):
                continue
            p = Path(dirpath) / name
            looks = bool(_CHECKPOINT_NAME.search(name))
            if p.is_symlink():
                if looks:
                    results.append(MigrationResult(p, SKIPPED, reason="symbolic link (migrate its target)"))
                continue
            if not p.is_file():
                continue
            is_frame = _is_frame_file(p)
            if is_frame is None:
                results.append(MigrationResult(p, ERROR, reason="cannot read"))
            elif is_frame:
                results.append(_migrate_file(p, dry_run=dry_run))
            elif looks:
                results.append(MigrationResult(p, SKIPPED, reason="not a swarm_sona frame"))
    return results
