"""msgpack wire and checkpoint format, with per-kind schema versions and migrations.

Messages and checkpoints are msgpack. numpy arrays travel as a msgpack ext type (code 1)
holding ``(dtype string, shape, raw bytes)``; nothing is ever unpickled (object arrays are
refused). A *frame* wraps a payload with a magic, a CRC-32 checksum and an envelope
``{"kind", "schema", "body"}``, so a truncated, corrupt or foreign file is detected and refused.

Schema versions are per kind: :func:`register_schema` sets the version a kind is written at
(a kind nobody registered is at :data:`SCHEMA_VERSION`, 1, which is what every file written
before the registry existed holds). :func:`register_migration` registers the step that
upgrades a body from version N to N+1. Readers (:func:`unpack_frame`, :func:`open_frame`,
:func:`read_checkpoint`, :func:`open_checkpoint`) accept an older version when a chain of
steps up to the current one exists and return the upgraded body; a newer version, or an older
one with a missing step, is refused with :class:`SchemaError` saying which. The module that
writes a kind registers its schema and migrations at import time; :data:`_KIND_OWNERS` names
those modules so that a reader which never imported them (``swarm-sona migrate``) still sees
their registrations. :func:`migrate_path` upgrades files on disk in place.

Checkpoints are written atomically (temp file in the same directory, fsync, rename) and the
previous checkpoint is kept as ``<name>.prev``; :func:`open_checkpoint` falls back to it when
the newest one is missing or corrupt (never when it is merely of another schema version: that
is refused, so a newer checkpoint is not silently replaced by an older state) and says so in
:attr:`CheckpointRead.path`.

Example:
    >>> import numpy as np, tempfile, os
    >>> from swarm_sona.core import codec
    >>> blob = codec.pack_frame("delta", {"B": np.ones((2, 3), np.float32), "n": 5})
    >>> kind, body = codec.unpack_frame(blob, expect_kind="delta")
    >>> body["B"].shape, body["n"]
    ((2, 3), 5)
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "ckpt.msgpack")
    >>> codec.write_checkpoint(p, {"w": np.arange(3.0)})
    >>> codec.read_checkpoint(p)["w"].tolist()
    [0.0, 1.0, 2.0]

    A kind moves to schema 2; files of schema 1 are upgraded when read:

    >>> with codec.schema_registry():   # restores the registry afterwards (tests, doctests)
    ...     codec.register_schema("checkpoint", 2)
    ...     @codec.register_migration("checkpoint", 1)
    ...     def _w_to_weights(body):
    ...         return {"weights": body.pop("w"), **body}
    ...     r = codec.open_checkpoint(p)
    ...     sorted(r.body), r.schema, r.version, r.migrated, r.fallback
    (['weights'], 1, 2, True, False)
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import stat
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "CodecError",
    "CheckpointError",
    "SchemaError",
    "CheckpointSchemaError",
    "packb",
    "unpackb",
    "register_schema",
    "schema_version",
    "register_migration",
    "schema_registry",
    "Frame",
    "pack_frame",
    "open_frame",
    "unpack_frame",
    "write_checkpoint",
    "CheckpointRead",
    "open_checkpoint",
    "read_checkpoint",
    "MigrationResult",
    "migrate_path",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Schema version of a kind nobody registered (every frame written before per-kind versions)."""

_MAGIC = b"SSNA"
_EXT_NDARRAY = 1
_ALLOWED_KINDS = set("biufc")  # bool, int, uint, float, complex: never object/void
_MAX_NDIM = 32

Migration = Callable[[Any], Any]

# kind -> module that writes it (and registers its schema version and migrations on import).
_KIND_OWNERS: dict[str, str] = {
    "sona-engine": "swarm_sona.engine.sona",
    "agent-meta": "swarm_sona.runtime.actors.agent",
    "coordinator": "swarm_sona.runtime.actors.coordinator",
    "swarm": "swarm_sona.runtime.swarm",
    "reasoning_bank": "swarm_sona.bank.bank",
    "delta": "swarm_sona.consensus.messages",
    "merged": "swarm_sona.consensus.messages",
}

_registry_lock = threading.RLock()
_schemas: dict[str, int] = {}
_migrations: dict[tuple[str, int], Migration] = {}
_owners_loaded: set[str] = set()


class CodecError(ValueError):
    """A message or file is malformed, corrupt, of the wrong kind or schema version."""


class CheckpointError(CodecError):
    """A checkpoint cannot be written or read (and no usable previous one exists)."""


class SchemaError(CodecError):
    """A frame is intact but of a schema version this code cannot read: newer than the current
    version of its kind, older without a registered migration chain, or a migration failed."""


class CheckpointSchemaError(CheckpointError, SchemaError):
    """A checkpoint is refused because of its schema version (no ``.prev`` fallback is tried)."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise CodecError(f"cannot encode numpy array of dtype {obj.dtype} (only numeric/bool)")
        arr = obj if obj.flags.c_contiguous else np.array(obj, order="C")
        header = msgpack.packb([arr.dtype.str, list(arr.shape)])
        return msgpack.ExtType(_EXT_NDARRAY, header + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise CodecError(f"cannot encode object of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _EXT_NDARRAY:
        raise CodecError(f"unknown msgpack ext type {code}")
    try:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        dtype_str, shape = unpacker.unpack()
        offset = unpacker.tell()
    except Exception as exc:
        raise CodecError(f"malformed ndarray header: {exc}") from exc
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise CodecError(f"malformed ndarray dtype {dtype_str!r}") from exc
    if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
        raise CodecError(f"refusing ndarray of dtype {dtype_str!r}")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(
        isinstance(s, int) and s >= 0 for s in shape
    ):
        raise CodecError(f"malformed ndarray shape {shape!r}")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    payload = data[offset:]
    if len(payload) != n * dtype.itemsize:
        raise CodecError(
            f"ndarray byte count {len(payload)} does not match shape {shape} of {dtype_str}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(tuple(shape)).copy()


def packb(obj: Any) -> bytes:
    """Encode plain data + numpy arrays to msgpack bytes."""
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True, strict_types=False)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from exc


def unpackb(data: bytes) -> Any:
    """Decode msgpack bytes produced by :func:`packb` (numpy arrays come back as arrays)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(bytes(data), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises several exception types
        raise CodecError(f"malformed msgpack data: {exc}") from exc


# ---- schema registry ---------------------------------------------------------------------
def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a frame kind must be a non-empty string, got {kind!r}")
    return kind


def _check_version(version: Any, what: str = "schema version") -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {version!r}")
    return version


def _load_owner(kind: str) -> None:
    """Import the module that registers ``kind``'s schema (once; failures are only logged).

    Not under the registry lock: the import system serialises concurrent imports of a module
    (a second thread waits until it is initialised) and lets its own thread re-enter one."""
    if kind in _owners_loaded:
        return
    module = _KIND_OWNERS.get(kind)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except Exception as exc:  # an optional dependency missing: the kind stays at what is registered
        log.debug("cannot import %s for the schema of %r: %s", module, kind, exc)
    _owners_loaded.add(kind)


def register_schema(kind: str, version: int) -> None:
    """Set the current schema version of ``kind``: what :func:`pack_frame` writes and readers
    upgrade older bodies to (through :func:`register_migration` steps)."""
    _check_kind(kind)
    _check_version(version)
    with _registry_lock:
        _schemas[kind] = version


def schema_version(kind: str) -> int:
    """The current schema version of ``kind`` (:data:`SCHEMA_VERSION` when nobody registered one).

    >>> schema_version("a-kind-nobody-registered")
    1
    """
    _load_owner(kind)
    return _schemas.get(kind, SCHEMA_VERSION)


def register_migration(kind: str, from_version: int) -> Callable[[Migration], Migration]:
    """Decorator registering ``fn(body) -> body`` that upgrades a ``kind`` body from schema
    ``from_version`` to ``from_version + 1``. The body passed in is freshly decoded (the
    function may change it in place) and the one returned must not be None. Registering a
    different function for the same step raises ValueError."""
    _check_kind(kind)
    _check_version(from_version, "from_version")

    def decorator(fn: Migration) -> Migration:
        if not callable(fn):
            raise TypeError(f"a migration must be callable, got {type(fn).__name__}")
        with _registry_lock:
            old = _migrations.get((kind, from_version))
            if old is not None and old is not fn:
                raise ValueError(f"a migration of {kind!r} from schema {from_version} to {from_version + 1} "
                                 f"is already registered ({getattr(old, '__qualname__', old)!r})")
            _migrations[(kind, from_version)] = fn
        return fn

    return decorator


@contextlib.contextmanager
def schema_registry() -> Iterator[None]:
    """Snapshot the schema and migration registry and restore it on exit (for tests).

    The modules of the built-in kinds are imported first so that their registrations are part
    of the snapshot and survive the restore.
    """
    for kind in _KIND_OWNERS:
        _load_owner(kind)
    with _registry_lock:
        schemas, migrations = dict(_schemas), dict(_migrations)
    try:
        yield
    finally:
        with _registry_lock:
            _schemas.clear()
            _schemas.update(schemas)
            _migrations.clear()
            _migrations.update(migrations)


def _newer_message(kind: str, version: int, current: int) -> str:
    return (f"unsupported schema version {version} of a {kind!r} frame: written by a newer swarm_sona: "
            f"schema {version}, this one reads up to {current}")


def _upgrade(kind: str, version: int, body: Any) -> tuple[Any, int]:
    """Upgrade ``body`` of ``kind`` from ``version`` to the current version; ``(body, current)``."""
    current = schema_version(kind)
    if version > current:
        raise SchemaError(_newer_message(kind, version, current))
    steps = []
    for v in range(version, current):
        fn = _migrations.get((kind, v))
        if fn is None:
            raise SchemaError(f"unsupported schema version {version} of a {kind!r} frame: no migration from "
                              f"schema {v} to {v + 1} registered (register_migration({kind!r}, {v})); "
                              f"this one reads schema {current}")
        steps.append((v, fn))
    for v, fn in steps:
        try:
            out = fn(body)
        except Exception as exc:
            raise SchemaError(f"migration of a {kind!r} frame from schema {v} to {v + 1} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        if out is None:
            raise SchemaError(f"migration of a {kind!r} frame from schema {v} to {v + 1} returned None")
        body = out
    return body, current


# ---- frames --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Frame:
    """An opened frame: ``body`` is at schema ``version`` (the kind's current one unless an
    explicit ``versions=`` allow-list was used); ``schema`` is the version that was read."""

    kind: str
    body: Any = field(repr=False)
    schema: int
    version: int

    @property
    def migrated(self) -> bool:
        """The body was upgraded by migrations (``schema < version``)."""
        return self.schema != self.version


def pack_frame(kind: str, body: Any, *, version: int | None = None) -> bytes:
    """Wrap ``body`` in a checksummed frame tagged with ``kind`` and its schema version (by
    default :func:`schema_version` of ``kind``; pass ``version`` only to forge old or future
    frames in tests, or to pin a wire format)."""
    _check_kind(kind)
    version = schema_version(kind) if version is None else _check_version(version)
    payload = packb({"kind": kind, "schema": version, "body": body})
    crc = zlib.crc32(payload) & 0xFFFFFFFF
    return _MAGIC + crc.to_bytes(4, "little") + len(payload).to_bytes(8, "little") + payload


def _open_envelope(data: Any) -> tuple[str, int, Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 16 or data[:4] != _MAGIC:
        raise CodecError("not a swarm_sona frame (bad magic or too short)")
    crc = int.from_bytes(data[4:8], "little")
    length = int.from_bytes(data[8:16], "little")
    payload = data[16:]
    if len(payload) != length:
        raise CodecError(f"truncated frame: expected {length} payload bytes, got {len(payload)}")
    if zlib.crc32(payload) & 0xFFFFFFFF != crc:
        raise CodecError("frame checksum mismatch (corrupt data)")
    msg = unpackb(payload)
    if not isinstance(msg, dict) or not {"kind", "schema", "body"} <= msg.keys():
        raise CodecError("malformed frame envelope")
    kind, version = msg["kind"], msg["schema"]
    if not isinstance(kind, str) or not kind:
        raise CodecError(f"malformed frame envelope: kind {kind!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CodecError(f"malformed frame envelope: schema version {version!r}")
    return kind, version, msg["body"]


def open_frame(data: bytes, *, expect_kind: str | None = None,
               versions: tuple[int, ...] | None = None) -> Frame:
    """Check and open a frame (a wire message or a file's bytes) and upgrade its body to the
    current schema version of its kind.

    Raises CodecError when the magic, length, checksum, envelope or kind is wrong, and
    :class:`SchemaError` for a version that cannot be read (see :func:`unpack_frame`).
    """
    kind, version, body = _open_envelope(data)
    if expect_kind is not None and kind != expect_kind:
        raise CodecError(f"expected a {expect_kind!r} message, got {kind!r}")
    if versions is not None:  # explicit allow-list: the body as written, no migration
        if version not in versions:
            current = schema_version(kind)
            if version > current and version > max(versions, default=0):
                raise SchemaError(_newer_message(kind, version, current))
            raise SchemaError(f"unsupported schema version {version} of a {kind!r} frame "
                              f"(supported: {list(versions)})")
        return Frame(kind, body, version, version)
    body, current = _upgrade(kind, version, body)
    return Frame(kind, body, version, current)


def unpack_frame(data: bytes, *, expect_kind: str | None = None,
                 versions: tuple[int, ...] | None = None) -> tuple[str, Any]:
    """Check and open a frame; returns ``(kind, body)`` with the body at the current schema
    version of its kind (older versions are upgraded through the registered migrations).

    Raises CodecError when the magic, length, checksum, envelope or kind is wrong, and
    :class:`SchemaError` (a CodecError) when the schema version is newer than this code reads
    or older without a chain of migrations (the message names the missing step).

    ``versions`` is the older interface, kept for callers that pin a wire format: an explicit
    allow-list of versions returned as written, without migration. Prefer the default.
    """
    frame = open_frame(data, expect_kind=expect_kind, versions=versions)
    return frame.kind, frame.body


def _frame_intact(data: bytes) -> bool:
    """Magic, length and CRC of a frame check out (cheap: no msgpack decoding)."""
    if len(data) < 16 or data[:4] != _MAGIC:
        return False
    if int.from_bytes(data[8:16], "little") != len(data) - 16:
        return False
    return zlib.crc32(memoryview(data)[16:]) & 0xFFFFFFFF == int.from_bytes(data[4:8], "little")


# ---- checkpoints ---------------------------------------------------------------------------
def _prev_path(path: Path) -> Path:
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


def _atomic_write(path: Path, blob: bytes, *, keep_prev: bool, mode: int | None = None) -> None:
    """Write ``blob`` to ``path`` through a fsynced temp file and a rename. With ``keep_prev``
    an intact existing frame at ``path`` becomes ``path.prev`` first. ``mode``: permission bits
    of the new file (default: the temp file's, 0600)."""
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
            if _frame_intact(path.read_bytes()):
                os.replace(path, _prev_path(path))
            else:
                log.warning("existing checkpoint %s is corrupt; not keeping it as .prev", path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_checkpoint(path: str | os.PathLike[str], state: Any, *, kind: str = "checkpoint") -> None:
    """Atomically write ``state`` (at the current schema version of ``kind``) to ``path``; the
    old file (if valid) becomes ``path.prev``."""
    _atomic_write(Path(path), pack_frame(kind, state), keep_prev=True)


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
    candidates = [path] + ([_prev_path(path)] if fallback else [])
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


# ---- migrating files on disk -------------------------------------------------------------------
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
        kind, version, body = _open_envelope(data)
    except CodecError as exc:
        return MigrationResult(path, ERROR, reason=str(exc))
    current = schema_version(kind)
    if version == current:
        return MigrationResult(path, CURRENT, kind, version, version)
    try:
        body, current = _upgrade(kind, version, body)
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
            _atomic_write(backup, data, keep_prev=False, mode=mode)
        now = real.stat()
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
            return MigrationResult(path, ERROR, kind, version, current,
                                   reason="file changed while migrating (is a swarm running on it?); left as is")
        _atomic_write(real, blob, keep_prev=False, mode=mode)
    except OSError as exc:
        return MigrationResult(path, ERROR, kind, version, current, reason=f"cannot write: {exc.strerror or exc}")
    log.info("migrated %s (%r) from schema %d to %d; backup %s", path, kind, version, current, backup)
    return MigrationResult(path, UPGRADED, kind, version, current, backup=backup)


def _is_frame_file(path: Path) -> bool | None:
    """True/False by magic; None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _MAGIC
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
