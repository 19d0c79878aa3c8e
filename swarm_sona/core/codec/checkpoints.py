"""Checkpoint files: frames written atomically, the previous one kept as ``<name>.prev``.

A checkpoint is written through a fsynced temp file in the same directory and a rename
(:func:`atomic_write`); the previous intact file becomes ``<name>.prev``. :func:`open_checkpoint`
falls back to it when the newest one is missing or corrupt (never when it is merely of another
schema version: that is refused, so a newer checkpoint is not silently replaced by an older
state) and says so in :attr:`CheckpointRead.path`.

A ``str`` URI (``memory://``, ``file://``, ``s3://``...; needs ``pip install
'swarm-sona[storage]'``) works wherever a path does: the frame goes to a new object and a small
pointer object names it and the previous one (:mod:`swarm_sona.core.storage` states the
atomicity contract of each storage).

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
    >>> u = "memory://codec-doc/state.ckpt"
    >>> write_checkpoint(u, {"step": 1}); write_checkpoint(u, {"step": 2}); read_checkpoint(u)
    {'step': 2}
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarm_sona.core.codec.errors import CheckpointError, CheckpointSchemaError, CodecError, SchemaError
from swarm_sona.core.codec.frames import frame_intact, open_frame, pack_frame
from swarm_sona.core.storage import atomic_write_file, checkpoint_location, prev_path

__all__ = ["write_checkpoint", "CheckpointRead", "open_checkpoint", "read_checkpoint", "atomic_write", "prev_path"]

log = logging.getLogger(__name__)


def atomic_write(path: Path, blob: bytes, *, keep_prev: bool, mode: int | None = None) -> None:
    """Write ``blob`` to ``path`` through a fsynced temp file and a rename. With ``keep_prev``
    an intact existing frame at ``path`` becomes ``path.prev`` first. ``mode``: permission bits
    of the new file (default: the temp file's, 0600). A write that fails (``ENOSPC``: disk
    full) leaves ``path`` as it was and raises the OSError with ``filename`` = ``path``."""
    atomic_write_file(Path(path), blob, keep_prev=keep_prev, mode=mode, intact=frame_intact)


def write_checkpoint(path: str | os.PathLike[str], state: Any, *, kind: str = "checkpoint") -> None:
    """Atomically write ``state`` (at the current schema version of ``kind``) to ``path``; the
    old one (if valid) becomes the previous version (``path.prev`` for a local path). ``path``
    may be a storage URI (``memory://...``, ``s3://...``: :mod:`swarm_sona.core.storage`)."""
    checkpoint_location(path).write(pack_frame(kind, state), keep_prev=True, intact=frame_intact)


@dataclass(frozen=True, eq=False)
class CheckpointRead:
    """What :func:`open_checkpoint` read.

    ``body`` is at schema ``version`` (the kind's current one); ``path`` is the file actually
    read: ``requested`` or, when that was missing or corrupt, its ``.prev`` (then ``fallback``
    is true and ``refused`` holds why the newer file was not used); ``schema`` is the version
    found in that file and ``migrated`` tells whether the body was upgraded from it. For a
    storage URI ``path`` is the object read and ``newest`` the one the pointer names first.
    """

    body: Any = field(repr=False)
    path: Path | str
    requested: Path | str
    kind: str
    schema: int
    version: int
    refused: tuple[str, ...] = ()
    newest: Path | str | None = None

    @property
    def migrated(self) -> bool:
        """The body was upgraded from an older schema version by registered migrations."""
        return self.schema != self.version

    @property
    def fallback(self) -> bool:
        """The previous checkpoint (``.prev``) was used because the requested one was unusable."""
        return self.path != (self.requested if self.newest is None else self.newest)


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
    loc = checkpoint_location(path)
    requested = loc.where
    errors: list[str] = []
    candidates = loc.versions(previous=fallback)
    for i, v in enumerate(candidates):
        p = v.label
        try:
            data = v.read()
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
            log.warning("checkpoint %s refused (%s); using previous %s", requested, errors[0], p)
        if frame.migrated:
            log.info("checkpoint %s: %r body upgraded from schema %d to %d", p, kind, frame.schema, frame.version)
        return CheckpointRead(frame.body, p, requested, kind, frame.schema, frame.version, tuple(errors),
                              newest=candidates[0].label)
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))


def read_checkpoint(path: str | os.PathLike[str], *, kind: str = "checkpoint",
                    fallback: bool = True) -> Any:
    """Read a checkpoint written by :func:`write_checkpoint`; returns its body (upgraded to the
    current schema version). Same rules as :func:`open_checkpoint`, which also tells which file
    was read and whether it was migrated."""
    return open_checkpoint(path, kind=kind, fallback=fallback).body
