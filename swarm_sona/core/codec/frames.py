"""Frames: a payload wrapped with a magic, a CRC-32 checksum, its length and an envelope ``{kind, schema, body}``.

A truncated, corrupt or foreign blob is refused with :class:`~swarm_sona.core.codec.errors.CodecError`
(:func:`open_envelope`); :func:`open_frame` also upgrades an older body to the current schema
of its kind (:mod:`swarm_sona.core.codec.schemas`) and refuses a newer one.

Example:
    >>> blob = pack_frame("delta", {"n": 5})
    >>> open_envelope(blob)
    ('delta', 1, {'n': 5})
    >>> frame_intact(blob), frame_intact(blob[:-1])
    (True, False)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from swarm_sona.core.codec.encoding import packb, unpackb
from swarm_sona.core.codec.errors import CodecError, SchemaError
from swarm_sona.core.codec.schemas import (
    check_kind,
    check_version,
    newer_schema_message,
    schema_version,
    upgrade_body,
)

__all__ = ["MAGIC", "Frame", "pack_frame", "open_envelope", "open_frame", "unpack_frame", "frame_intact"]

MAGIC = b"SSNA"
"""The first four bytes of every frame."""


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
    check_kind(kind)
    version = schema_version(kind) if version is None else check_version(version)
    payload = packb({"kind": kind, "schema": version, "body": body})
    crc = zlib.crc32(payload) & 0xFFFFFFFF
    return MAGIC + crc.to_bytes(4, "little") + len(payload).to_bytes(8, "little") + payload


def open_envelope(data: Any) -> tuple[str, int, Any]:
    """``(kind, schema version, body)`` of a frame as written (no migration); CodecError when the
    magic, length, checksum or envelope is wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 16 or data[:4] != MAGIC:
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
    kind, version, body = open_envelope(data)
    if expect_kind is not None and kind != expect_kind:
        raise CodecError(f"expected a {expect_kind!r} message, got {kind!r}")
    if versions is not None:  # explicit allow-list: the body as written, no migration
        if version not in versions:
            current = schema_version(kind)
            if version > current and version > max(versions, default=0):
                raise SchemaError(newer_schema_message(kind, version, current))
            raise SchemaError(f"unsupported schema version {version} of a {kind!r} frame "
                              f"(supported: {list(versions)})")
        return Frame(kind, body, version, version)
    body, current = upgrade_body(kind, version, body)
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


def frame_intact(data: bytes) -> bool:
    """Magic, length and CRC of a frame check out (cheap: no msgpack decoding)."""
    if len(data) < 16 or data[:4] != MAGIC:
        return False
    if int.from_bytes(data[8:16], "little") != len(data) - 16:
        return False
    return zlib.crc32(memoryview(data)[16:]) & 0xFFFFFFFF == int.from_bytes(data[4:8], "little")
