"""Checkpoint files: frames written atomically, the previous one kept as ``<name>.prev``.

A checkpoint is written through a fsynced temp file in the same directory and a rename
(:func:`atomic_write`); the previous intact file becomes ``<name>.prev``. :func:`open_checkpoint`
falls back to it when the newest one is missing or corrupt (never when it is merely of another
schema version: that is refused, so a newer checkpoint is not silently replaced by an older
state) and says so in :attr:`CheckpointRead.path`.

Example:
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "state.ckpt")
    >>> write_checkpoint(p, {"step": 1}); write_checkpoint(p, {"step": 2})
    >>> read_checkpoint(p), read_checkpoint(p + ".prev")
    ({'step': 2}, {'step': 1})
    >>> os.remove(p)
    >>> r = open_checkpoint(p)
    >>> r.body, r.fallback
    ({'step': 1}, True)
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm_sona.core.codec.errors import CheckpointError, CheckpointSchemaError, CodecError, SchemaError
from swarm_sona.core.codec.frames import frame_intact, open_frame, pack_frame

__all__ = ["write_checkpoint", "CheckpointRead", "open_checkpoint", "read_checkpoint", "atomic_write", "prev_path"]

log = logging.getLogger(__name__)


def prev_path(path: Path) -> Path:
    """Where the previous checkpoint of ``path`` is kept: ``<name>.prev`` beside it."""
    return path.with_name(path.name + ".prev")


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write(path: Path, blob: bytes, *, keep_prev: bool, mode: int | None = None) -> None:
    """Write ``blob`` to ``path`` through a fsynced temp file and a rename. With ``keep_prev``
    an intact existing frame at ``path`` becomes ``path.prev`` first. ``mode``: permission bits
    of the new file (default: the temp file's, 0600). A write that fails (``ENOSPC``: disk
    full) leaves ``path`` as it was and raises the OSError with ``filename`` = ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if keep_prev and path.exists():
            if frame_intact(path.read_bytes()):
                os.replace(path, prev_path(path))
            else:
                log.warning("existing checkpoint %s is corrupt; not keeping it as .prev", path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)   # a failed write (disk full) names the file it was for, not its temp
        raise


def write_checkpoint(path: str | os.PathLike[str], state: Any, *, kind: str = "checkpoint") -> None:
    """Atomically write ``state`` (at the current schema version of ``kind``) to ``path``; the
    old file (if valid) becomes ``path.prev``."""
    atomic_write(Path(path), pack_frame(kind, state), keep_prev=True)


@dataclass(frozen=True, eq=False)
class CheckpointRead:
    """What :func:`open_checkpoint` read.

    ``body`` is at schema ``version`` (the kind's current one); ``path`` is the file actually
    read: ``requested`` or, when that was missing or corrupt, its ``.prev`` (then ``fallback``
    is true and ``refused`` holds why the newer file was not used); ``schema`` is the version
    found in that file and ``migrated`` tells whether the body was upgraded from it.
    """

    body: Any = field(repr=False)
    path: Path
    requested: Path
    kind: str
    schema: int
    version: int
    refused: tuple[str, ...] = ()

    @property
    def migrated(self) -> bool:
        """The body was upgraded from an older schema version by registered migrations."""
        return self.schema != self.version

    @property
    def fallback(self) -> bool:
        """The previous checkpoint (``.prev``) was used because the requested one was unusable."""
        return self.path != self.requested


def open_checkpoint(path: str | os.PathLike[str], *, kind: str = "checkpoint",
                    fallback: bool = True) -> CheckpointRead:
    """Read a checkpoint written by :func:`write_checkpoint`; returns a :class:`CheckpointRead`.

    An older schema version is upgraded through the registered migrations. A missing, corrupt
    or truncated file (or one of another kind) raises CheckpointError, unless ``fallback`` is
    true and the previous checkpoint (``path.prev``) is valid, in which case that one is
    returned (``.path`` names it, and a warning is logged). A file refused for its schema
    version (newer than this code, or no migration chain) raises :class:`CheckpointSchemaError`
    without trying ``.prev``: loading the older state instead would silently roll it back.
    """
    path = Path(path)
    errors: list[str] = []
    candidates = [path] + ([prev_path(path)] if fallback else [])
    for i, p in enumerate(candidates):
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            errors.append(f"{p}: missing")
            continue
        except OSError as exc:
            errors.append(f"{p}: {exc.strerror or exc}")
            continue
        try:
            frame = open_frame(data, expect_kind=kind)
        except SchemaError as exc:
            raise CheckpointSchemaError("; ".join([*errors, f"{p}: {exc}"])) from exc
        except CodecError as exc:
            errors.append(f"{p}: {exc}")
            continue
        if i > 0:
            log.warning("checkpoint %s refused (%s); using previous %s", path, errors[0], p)
        if frame.migrated:
            log.info("checkpoint %s: %r body upgraded from schema %d to %d", p, kind, frame.schema, frame.version)
        return CheckpointRead(frame.body, p, path, kind, frame.schema, frame.version, tuple(errors))
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))


def read_checkpoint(path: str | os.PathLike[str], *, kind: str = "checkpoint",
                    fallback: bool = True) -> Any:
    """Read a checkpoint written by :func:`write_checkpoint`; returns its body (upgraded to the
    current schema version). Same rules as :func:`open_checkpoint`, which also tells which file
    was read and whether it was migrated."""
    return open_checkpoint(path, kind=kind, fallback=fallback).body
