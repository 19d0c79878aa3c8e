"""The bank's own write-ahead log: every write to an embedded bank's engine, appended in order
to segment files before the engine sees it, so that a write is durable (and acknowledged) after
one ``fsync`` of the log instead of an engine flush.

Layout: ``<bank>/wal/<first lsn, 20 digits>.wal``, one file per segment: an 8-byte header
(``SSBL`` + the segment format version, little-endian; not a frame's magic, so ``swarm-sona
migrate`` leaves segments alone), then the records. A record is one codec
frame (kind ``bank-wal``: magic, CRC-32, payload length, msgpack ``{kind, schema, body}``) whose
body is ``{"lsn", "op", "ids", ...}``: ``op`` is ``upsert`` (with ``vectors``, float32 (n, dim),
and ``payloads``), ``delete``, ``set`` (``fields`` merged into each point's payload) or ``clear``.
Log sequence numbers (lsn) increase by one per record across segments.

Replaying the records of a log onto any engine state that already holds a prefix of them gives the
state after the last record (an upsert replaces the point, a delete removes it, a set writes
absolute values, a clear empties the store): replay is idempotent, so the engine may have applied
any part of the log before a crash. A segment is deleted once an engine flush covers all of its
records (:meth:`BankLog.drop_upto`).

Reading (:func:`scan_segments`) stops a segment at its first bad frame (short, bad magic or CRC):
at the end of the newest segment that is a torn tail (a write that was never acknowledged: its
``fsync`` did not return) and is dropped and counted; anywhere else the records after it are
lost and reported as damage.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> d = Path(tempfile.mkdtemp())
    >>> log = BankLog(d)
    >>> log.append("delete", ids=["a"]), log.append("delete", ids=["b"])
    (1, 2)
    >>> log.sync(); log.close()
    >>> scan = scan_segments(d)
    >>> [(r.lsn, r.op, r.ids) for r in scan.records], scan.torn_bytes
    ([(1, 'delete', ['a']), (2, 'delete', ['b'])], 0)
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bank.errors import BankError, disk_error
from swarm_sona.bank.metadata import fsync_dir
from swarm_sona.core import codec
from swarm_sona.core.codec.errors import CodecError

__all__ = ["WAL_KIND", "WAL_SCHEMA", "WAL_OPS", "SEGMENT_MAGIC", "SEGMENT_VERSION", "LogRecord", "LogScan", "BankLog", "scan_segments", "segment_files"]

WAL_KIND = "bank-wal"
WAL_SCHEMA = 1
WAL_OPS = ("upsert", "delete", "set", "clear")
_HEADER = 16   # codec frame header: magic, crc32, payload length
_SUFFIX = ".wal"
SEGMENT_MAGIC = b"SSBL"
SEGMENT_VERSION = 1
_SEGMENT_HEADER = SEGMENT_MAGIC + SEGMENT_VERSION.to_bytes(4, "little")

codec.register_schema(WAL_KIND, WAL_SCHEMA)


@dataclass(frozen=True)
class LogRecord:
    """One logged write: ``lsn``, ``op`` (see module docs), the point ``ids``, and per op the
    ``vectors`` and ``payloads`` (upsert) or ``fields`` (set).

    Example:
        >>> LogRecord(3, "delete", ["a"]).points
        1
    """

    lsn: int
    op: str
    ids: list[str]
    vectors: np.ndarray | None = None
    payloads: list[dict[str, Any]] | None = None
    fields: dict[str, Any] | None = None

    @property
    def points(self) -> int:
        """How many points the record writes."""
        return len(self.ids)

    def body(self) -> dict[str, Any]:
        """The frame body of this record."""
        out: dict[str, Any] = {"lsn": self.lsn, "op": self.op, "ids": self.ids}
        if self.vectors is not None:
            out["vectors"] = self.vectors
        if self.payloads is not None:
            out["payloads"] = self.payloads
        if self.fields is not None:
            out["fields"] = self.fields
        return out

    @classmethod
    def from_body(cls, body: Any) -> LogRecord:
        """The record of a frame body; :class:`BankError` when it is not one."""
        if not isinstance(body, dict) or body.get("op") not in WAL_OPS or not isinstance(body.get("lsn"), int) \
                or not isinstance(body.get("ids"), list):
            raise BankError(f"not a bank log record: {str(body)[:80]}")
        vec = body.get("vectors")
        return cls(body["lsn"], body["op"], body["ids"], None if vec is None else np.asarray(vec, np.float32),
                   body.get("payloads"), body.get("fields"))


@dataclass
class LogScan:
    """What :func:`scan_segments` read: the intact ``records`` in lsn order, the ``segments``
    read, ``torn_bytes`` dropped at the end of the newest segment, and ``damage`` (one sentence
    per segment that was cut short before its end: the records after that point are lost).

    Example:
        >>> LogScan().patterns
        0
    """

    records: list[LogRecord] = field(default_factory=list)
    segments: int = 0
    torn_bytes: int = 0
    damage: list[str] = field(default_factory=list)

    @property
    def patterns(self) -> int:
        """Points the intact upsert records write."""
        return sum(r.points for r in self.records if r.op == "upsert")


def segment_files(directory: Path) -> list[Path]:
    """The log's segment files in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == _SUFFIX and p.stem.isdigit())


def _read_segment(data: bytes) -> tuple[list[LogRecord], int]:
    """The intact records at the start of one segment's bytes and where they end."""
    out: list[LogRecord] = []
    if data[:len(_SEGMENT_HEADER)] != _SEGMENT_HEADER:
        return out, 0
    pos = len(_SEGMENT_HEADER)
    while len(data) - pos >= _HEADER:
        end = pos + _HEADER + int.from_bytes(data[pos + 8:pos + 16], "little")
        if end > len(data):
            break
        try:
            out.append(LogRecord.from_body(codec.open_frame(data[pos:end], expect_kind=WAL_KIND).body))
        except (CodecError, BankError):
            break
        pos = end
    return out, pos


def scan_segments(directory: Path) -> LogScan:
    """Read every segment of the log in ``directory`` (see module docs)."""
    scan = LogScan()
    files = segment_files(directory)
    for i, f in enumerate(files):
        data = f.read_bytes()
        recs, good = _read_segment(data)
        scan.segments += 1
        scan.records += recs
        bad = len(data) - good
        if bad and i == len(files) - 1:
            scan.torn_bytes = bad
        elif bad:
            scan.damage.append(f"bank log segment {f.name} is damaged at byte {good}: {bad} bytes after it "
                               "(records that may have been acknowledged) could not be read")
    return scan


class BankLog:
    """The append side of the log in ``directory`` (see module docs): :meth:`append` writes a
    record to the active segment (the OS page cache), :meth:`sync` makes every record appended
    before it durable, :meth:`drop_upto` deletes what an engine flush covers. ``segment_bytes``:
    a segment this large is closed and a new one started at the next :meth:`drop_upto`.

    Appends from several threads are ordered by the log's own lock; :meth:`sync` runs without it
    (appends continue during an ``fsync``). Segments found at start are left for the caller's
    replay (:func:`scan_segments`) and deleted by :meth:`drop_upto` or :meth:`reset`.
    """

    def __init__(self, directory: str | os.PathLike[str], *, next_lsn: int = 1,
                 segment_bytes: int = 16 << 20) -> None:
        self.directory = Path(directory)
        self.segment_bytes = int(segment_bytes)
        self._lock = threading.Lock()          # appends, rotation
        self._sync_lock = threading.Lock()     # the fd an fsync uses stays open until it returns
        self.last_lsn = next_lsn - 1
        self.syncs = 0
        # closed segments: (file, last lsn in it, bytes); those found at start are replayed by the caller
        self._closed: list[tuple[Path, int, int]] = [(p, -1, p.stat().st_size) for p in segment_files(self.directory)]
        self._active_bytes = 0
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BankError(f"cannot create the bank log directory {self.directory}: {exc.strerror or exc}") from exc
        self._path, self._fd = self._new_segment(next_lsn)
        self._closed = [c for c in self._closed if c[0] != self._path]
        self._seg_last = self.last_lsn

    def _new_segment(self, first: int) -> tuple[Path, int]:
        path = self.directory / f"{first:020d}{_SUFFIX}"
        # a file of this name can only hold a torn tail (its records would have lsn >= first)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError as exc:
            raise disk_error(self.directory.parent, exc, f"creating the log segment {path}") from exc
        try:
            if os.write(fd, _SEGMENT_HEADER) != len(_SEGMENT_HEADER):
                raise OSError(28, "No space left on device")
            fsync_dir(self.directory)   # the new file's entry is durable before a record in it is acknowledged
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise disk_error(self.directory.parent, exc, f"creating the log segment {path}") from exc
        return path, fd

    def append(self, op: str, *, ids: list[str], vectors: np.ndarray | None = None,
               payloads: list[dict[str, Any]] | None = None, fields: dict[str, Any] | None = None) -> int:
        """Append one record (see :class:`LogRecord`); returns its lsn."""
        with self._lock:
            if self._fd < 0:
                raise BankError(f"the bank log at {self.directory} is closed")
            lsn = self.last_lsn + 1
            blob = codec.pack_frame(WAL_KIND, LogRecord(lsn, op, ids, vectors, payloads, fields).body())
            view = memoryview(blob)
            try:
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:
                # cut the partial record off: a record appended (and acknowledged) after it must stay readable
                try:
                    os.ftruncate(self._fd, len(_SEGMENT_HEADER) + self._active_bytes)
                except OSError:
                    pass
                raise disk_error(self.directory.parent, exc, f"appending to the log segment {self._path}") from exc
            self.last_lsn = self._seg_last = lsn
            self._active_bytes += len(blob)
            return lsn

    @property
    def bytes(self) -> int:
        """Bytes the log's segments hold (what a replay at open would read)."""
        return self._active_bytes + sum(c[2] for c in self._closed)

    def sync(self) -> None:
        """fsync the active segment: every record appended before the call is durable after it."""
        with self._sync_lock:
            if self._fd >= 0:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    raise disk_error(self.directory.parent, exc, f"syncing the log segment {self._path}") from exc
                self.syncs += 1

    def _rotate(self) -> None:
        """Under the lock: close the active segment (fsynced) and start the next one."""
        with self._sync_lock:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise disk_error(self.directory.parent, exc, f"syncing the log segment {self._path}") from exc
            os.close(self._fd)
            self._fd = -1   # until the next segment exists
            self._closed.append((self._path, self._seg_last, self._active_bytes))
            self._path, self._fd = self._new_segment(self.last_lsn + 1)
            self._active_bytes = 0

    def rotate(self) -> int:
        """Close the active segment when it holds records and start a new one (a checkpoint
        does, so that its flush covers whole segments); returns the last lsn written."""
        with self._lock:
            if self._fd >= 0 and self._active_bytes:
                self._rotate()
            return self.last_lsn

    def drop_upto(self, lsn: int) -> int:
        """Delete the segments whose records all have an lsn <= ``lsn`` (an engine flush covers
        them); the active segment is closed first when it is covered and non-empty, or larger
        than ``segment_bytes``. Returns the number of segments deleted."""
        with self._lock:
            if self._fd < 0:
                return 0
            if self._active_bytes and (self._seg_last <= lsn or self._active_bytes >= self.segment_bytes):
                self._rotate()
            keep, gone = [], 0
            for seg in self._closed:
                if seg[1] <= lsn:
                    seg[0].unlink(missing_ok=True)
                    gone += 1
                else:
                    keep.append(seg)
            self._closed = keep
            if gone:
                fsync_dir(self.directory)
            return gone

    def reset(self) -> None:
        """After a replay made every existing record durable in the engine: delete all segments
        but the (empty) active one."""
        self.drop_upto(self.last_lsn)

    def close(self) -> None:
        """Close the active segment (fsynced; idempotent). Its records stay for the next open."""
        with self._lock, self._sync_lock:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                try:
                    os.fsync(fd)
                except OSError as exc:
                    raise disk_error(self.directory.parent, exc, f"syncing the log segment {self._path}") from exc
                finally:
                    os.close(fd)

    @property
    def segments(self) -> int:
        """Segment files the log holds now (the active one included)."""
        return len(self._closed) + (1 if self._fd >= 0 else 0)
