"""msgpack wire and checkpoint format.

Messages and checkpoints are msgpack. numpy arrays travel as a msgpack ext type (code 1)
holding ``(dtype string, shape, raw bytes)``; nothing is ever unpickled (object arrays are
refused). A *frame* wraps a payload with a magic, the schema version, a kind tag and a
CRC-32 checksum, so a truncated, corrupt or foreign file is detected and refused.

Checkpoints are written atomically (temp file in the same directory, fsync, rename) and the
previous checkpoint is kept as ``<name>.prev``; :func:`read_checkpoint` falls back to it
when the newest one is corrupt.

Example:
    >>> import numpy as np, tempfile, os
    >>> from swarm_sona import codec
    >>> blob = codec.pack_frame("delta", {"B": np.ones((2, 3), np.float32), "n": 5})
    >>> kind, body = codec.unpack_frame(blob, expect_kind="delta")
    >>> body["B"].shape, body["n"]
    ((2, 3), 5)
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "ckpt.msgpack")
    >>> codec.write_checkpoint(p, {"w": np.arange(3.0)})
    >>> codec.read_checkpoint(p)["w"].tolist()
    [0.0, 1.0, 2.0]
"""

from __future__ import annotations

import logging
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "CodecError",
    "CheckpointError",
    "packb",
    "unpackb",
    "pack_frame",
    "unpack_frame",
    "write_checkpoint",
    "read_checkpoint",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_MAGIC = b"SSNA"
_EXT_NDARRAY = 1
_ALLOWED_KINDS = set("biufc")  # bool, int, uint, float, complex: never object/void
_MAX_NDIM = 32


class CodecError(ValueError):
    """A message or file is malformed, corrupt, of the wrong kind or schema version."""


class CheckpointError(CodecError):
    """A checkpoint cannot be written or read (and no usable previous one exists)."""


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


def pack_frame(kind: str, body: Any, *, version: int = SCHEMA_VERSION) -> bytes:
    """Wrap ``body`` in a checksummed, versioned frame tagged with ``kind``."""
    payload = packb({"kind": kind, "schema": version, "body": body})
    crc = zlib.crc32(payload) & 0xFFFFFFFF
    return _MAGIC + crc.to_bytes(4, "little") + len(payload).to_bytes(8, "little") + payload


def unpack_frame(data: bytes, *, expect_kind: str | None = None,
                 versions: tuple[int, ...] = (SCHEMA_VERSION,)) -> tuple[str, Any]:
    """Check and open a frame; returns ``(kind, body)``.

    Raises CodecError when the magic, length, checksum, schema version or kind is wrong.
    """
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
    if msg["schema"] not in versions:
        raise CodecError(f"unsupported schema version {msg['schema']!r} (supported: {list(versions)})")
    if expect_kind is not None and msg["kind"] != expect_kind:
        raise CodecError(f"expected a {expect_kind!r} message, got {msg['kind']!r}")
    return msg["kind"], msg["body"]


def _frame_intact(data: bytes) -> bool:
    """Magic, length and CRC of a frame check out (cheap: no msgpack decoding)."""
    if len(data) < 16 or data[:4] != _MAGIC:
        return False
    if int.from_bytes(data[8:16], "little") != len(data) - 16:
        return False
    return zlib.crc32(memoryview(data)[16:]) & 0xFFFFFFFF == int.from_bytes(data[4:8], "little")


def _prev_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def write_checkpoint(path: str | os.PathLike[str], state: Any, *, kind: str = "checkpoint") -> None:
    """Atomically write ``state`` to ``path``; the old file (if valid) becomes ``path.prev``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = pack_frame(kind, state)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            if _frame_intact(path.read_bytes()):
                os.replace(path, _prev_path(path))
            else:
                log.warning("existing checkpoint %s is corrupt; not keeping it as .prev", path)
        os.replace(tmp, path)
        try:
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike[str], *, kind: str = "checkpoint",
                    fallback: bool = True) -> Any:
    """Read a checkpoint written by :func:`write_checkpoint`.

    A corrupt or truncated file raises CheckpointError, unless ``fallback`` is true and the
    previous checkpoint (``path.prev``) is valid, in which case that one is returned (and a
    warning logged).
    """
    path = Path(path)
    errors: list[str] = []
    candidates = [path] + ([_prev_path(path)] if fallback else [])
    for i, p in enumerate(candidates):
        if not p.exists():
            errors.append(f"{p}: missing")
            continue
        try:
            _, body = unpack_frame(p.read_bytes(), expect_kind=kind)
        except CodecError as exc:
            errors.append(f"{p}: {exc}")
            continue
        if i > 0:
            log.warning("checkpoint %s refused (%s); using previous %s", path, errors[0], p)
        return body
    raise CheckpointError("no usable checkpoint: " + "; ".join(errors))
