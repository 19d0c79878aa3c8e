"""Embedded backend: a Qdrant Edge shard (``qdrant-edge-py``) in a local directory.

Layout of a bank directory::

    <path>/bank.json      bank metadata (format, schema, embedder name, dimension), written atomically
                          with fsync and checked against the shard's vector size before it replaces
                          the old one (a missing bank.json is rebuilt from the manifest or the shard)
    <path>/manifest.json  what the last flush made durable: pattern count, last write, embedder and
                          dimension (atomic, fsynced, validated); the bank compares it on open
    <path>/shard/         the Qdrant Edge shard: segments, WAL, payload indexes, HNSW once optimised

Payload indexes are created for the fields retrieval filters on (reward, agent_id, task_type,
source, and outcome: the keyword form of success, because qdrant-edge-py 0.9 matches a boolean
as an integer). Qdrant Edge never optimises by itself and :meth:`EdgeBackend.optimize` (HNSW
build) blocks its caller while holding the GIL (4.5 s at 10k points, ~170 s at 100k on
a 2-core machine), so the bank never calls it on a read or write: call
``ReasoningBank.optimize()`` from a maintenance step. Until then segments are searched
exactly, which is also what the hot-path cache does.

One open handle per path: a second open, in this or another process, fails on the WAL lock
and is reported as :class:`BankLockedError` naming the path and the remedy.

Example:
    >>> import tempfile, numpy as np
    >>> from swarm_sona.bank.edge_backend import EdgeBackend
    >>> b = EdgeBackend(None, persist=False)
    >>> b.open({"embedder": "hashing-v1-2", "dim": 2})
    >>> b.upsert(["6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21"], np.array([[1.0, 0.0]], np.float32), [{"reward": 1.0}])
    >>> b.count()
    1
    >>> b.close()
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bank.backend import StoredPoint
from swarm_sona.bank.errors import BankClosedError, BankError, BankFullError, BankLockedError, disk_error
from swarm_sona.bank.filters import Condition
from swarm_sona.bank.metadata import (
    MANIFEST_FORMAT,
    MANIFEST_KIND,
    MANIFEST_SCHEMA,
    META_FORMAT,
    META_KIND,
    META_SCHEMA,
    upgrade_document,
    write_json_durably,
)

__all__ = ["EdgeBackend", "from_config", "default_bank_path", "ram_tmpdir", "INDEXED_FIELDS", "PathLock"]

# "outcome" is the keyword form of the boolean "success" (qdrant-edge-py 0.9 cannot match booleans)
INDEXED_FIELDS = {"reward": "Float", "outcome": "Keyword", "agent_id": "Keyword", "task_type": "Keyword",
                  "source": "Keyword"}
_UPSERT_BATCH = 1024
HNSW_M = 32
HNSW_EF_CONSTRUCT = 200
HNSW_EF_SEARCH = 128
log = logging.getLogger("swarm_sona.bank")


def default_bank_path() -> Path:
    """Where the embedded bank lives by default: ``$SWARM_SONA_BANK_PATH`` if set, else the user's
    data directory (``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux; ``~/Library/Application
    Support`` on macOS; ``%LOCALAPPDATA%`` on Windows) + ``swarm_sona/bank``.

    Example:
        >>> default_bank_path().name
        'bank'
    """
    env = os.environ.get("SWARM_SONA_BANK_PATH")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "swarm_sona" / "bank"


def ram_tmpdir() -> str | None:
    """A RAM-backed directory for temporary banks (``/dev/shm`` with >= 1 GiB free), else None (the
    system temp dir). A temporary bank needs no durability, and the engine's fsyncs on a real disk
    make creating one ~50x slower (about 1 s instead of 20 ms here)."""
    shm = "/dev/shm"
    try:
        if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 1 << 30:
            return shm
    except OSError:
        pass
    return None


class PathLock:
    """An exclusive, non-blocking lock on ``<bank>/bank.lock`` held while the bank is open.

    Taken *before* the engine touches the shard: a second ``EdgeShard.load`` of a path that is
    open elsewhere does fail on the WAL lock, but only after it has opened the segments, which
    can damage the payload-index journals the first handle is writing (seen with
    qdrant-edge-py 0.9). ``flock`` locks belong to the open file, so a second handle in the same
    process is refused as well; the OS drops the lock when the holder dies.
    """

    def __init__(self, path: Path) -> None:
        self.file = path / "bank.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the lock


def _edge() -> Any:
    import qdrant_edge

    return qdrant_edge


def _locked_message(path: Path) -> str:
    return (f"the ReasoningBank at {path} is already open in another process or handle (the embedded Qdrant "
            "Edge engine allows one open handle per path). Remedy: reach the bank through the process that holds "
            "it (in a swarm: the bank-owner actor), close the other handle, or use backend 'qdrant' with a "
            "Qdrant server so that every process can connect")


class EdgeBackend:
    """Qdrant Edge shard in a directory (see module docs). ``path=None`` means :func:`default_bank_path`;
    ``persist=False`` uses a temporary directory (in RAM when ``/dev/shm`` is available) removed on
    :meth:`close`."""

    kind = "edge"

    def __init__(self, path: str | os.PathLike[str] | None, *, persist: bool = True,
                 min_free_mb: float = 64.0) -> None:
        # the engine writes through mmap: on a full filesystem that is a SIGBUS, not an error, so
        # upsert, flush and open refuse (BankFullError) below this much free space
        self.min_free_bytes = int(float(min_free_mb) * (1 << 20))
        self._tmp: str | None = None
        if not persist:
            self._tmp = tempfile.mkdtemp(prefix="swarm_sona_bank_", dir=ram_tmpdir())
            root = Path(self._tmp)
        else:
            root = Path(path).expanduser() if path is not None else default_bank_path()
        self.path = root.absolute()
        self.location = str(self.path)
        self.meta_file = self.path / "bank.json"
        self.shard_dir = self.path / "shard"
        self._shard: Any = None
        self._lock: PathLock | None = None
        if self.path.exists() and not self.path.is_dir():
            raise BankError(f"bank path {self.path} exists and is not a directory")

    # ---- lifecycle -----------------------------------------------------------------
    def free_bytes(self) -> int | None:
        """Free space (for an unprivileged writer) of the bank's filesystem, None if unknown."""
        p = self.path
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            st = os.statvfs(p)
        except (OSError, AttributeError):
            return None
        return int(st.f_bavail) * int(st.f_frsize)

    def check_space(self, what: str) -> None:
        """Refuse ``what`` (an engine write) with :class:`BankFullError` below ``min_free_mb`` free."""
        if self.min_free_bytes <= 0:
            return
        free = self.free_bytes()
        if free is not None and free < self.min_free_bytes:
            raise BankFullError(28, f"the ReasoningBank at {self.path}: {what} refused: no space left on device "
                                f"({free >> 20} MiB free, below bank.min_free_mb = {self.min_free_bytes / (1 << 20):g}; "
                                "the engine's mmap writes would crash the process); nothing acknowledged is lost, "
                                "free space and retry")

    def _engine_call(self, what: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` of the extension, its plain ``Exception`` (or an OSError) as a bank error."""
        try:
            return fn(*args)
        except BankError:
            raise
        except Exception as exc:   # the extension raises plain Exception
            raise disk_error(self.path, exc, what) from exc

    def read_meta(self) -> dict[str, Any] | None:
        """bank.json at the current schema (an older one upgraded in memory, see :mod:`.metadata`;
        ``swarm-sona migrate`` rewrites it), None for a new bank."""
        if not self.meta_file.exists():
            return None
        try:
            doc = json.loads(self.meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BankError(f"{self.meta_file}: unreadable bank metadata ({exc}); restore it from a snapshot") from exc
        return upgrade_document(META_KIND, doc, str(self.meta_file))[0]

    def shard_dim(self) -> int | None:
        """The vector size the shard was created with (``shard/edge_config.json``), None if no shard."""
        f = self.shard_dir / "edge_config.json"
        if not f.exists():
            return None
        try:
            return int(json.loads(f.read_text(encoding="utf-8"))["vectors"][""]["size"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BankError(f"{f}: unreadable shard configuration ({exc})") from exc

    def recover_meta(self) -> dict[str, Any] | None:
        """For a bank whose bank.json is gone but whose shard exists: the metadata the manifest (or,
        without one, the shard's vector size) implies; ``embedder`` is None when only the dimension
        is known. None for a new bank."""
        dim = self.shard_dim()
        if dim is None:
            return None
        man = self.read_manifest()
        if man is not None and int(man.get("dim", -1)) == dim and isinstance(man.get("embedder"), str):
            return {"embedder": man["embedder"], "dim": dim, "created_at": man.get("created_at"),
                    "recovered_from": "manifest.json"}
        return {"embedder": None, "dim": dim, "created_at": None, "recovered_from": "shard"}

    def _check_meta(self, meta: dict[str, Any]) -> None:
        dim = self.shard_dim()
        if dim is not None and int(meta.get("dim", -1)) != dim:
            raise BankError(f"{self.meta_file}: bank metadata says {meta.get('dim')}-d vectors but the shard at "
                            f"{self.shard_dir} holds {dim}-d vectors; the metadata was not written")

    def _write_meta(self, meta: dict[str, Any]) -> None:
        write_json_durably(self.meta_file, meta, check=self._check_meta)

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    def read_manifest(self) -> dict[str, Any] | None:
        """The last flush's manifest (see module docs), None if there is none; a damaged one raises
        :class:`BankError`."""
        f = self.manifest_file
        if not f.exists():
            return None
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BankError(f"{f}: unreadable bank manifest ({exc})") from exc
        man = upgrade_document(MANIFEST_KIND, doc, str(f))[0]
        if not isinstance(man.get("count"), int):
            raise BankError(f"{f} is not a swarm_sona bank manifest (no count)")
        return man

    def write_manifest(self, info: dict[str, Any]) -> None:
        """Record what is durable now (after :meth:`flush`), atomically and fsynced."""
        def check(m: dict[str, Any]) -> None:
            if not isinstance(m.get("count"), int) or m["count"] < 0:
                raise BankError(f"{self.manifest_file}: refusing a manifest without a valid count: {m!r}")
            self._check_meta(m)
        write_json_durably(self.manifest_file, {"format": MANIFEST_FORMAT, "schema": MANIFEST_SCHEMA, **info},
                           check=check)

    def open(self, meta: dict[str, Any]) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BankError(f"cannot create bank directory {self.path}: {exc.strerror or exc}") from exc
        self.check_space("opening the engine")
        lock = PathLock(self.path)
        if not lock.acquire():
            raise BankLockedError(_locked_message(self.path))
        try:
            self._open_shard(meta)
        except BaseException:
            lock.release()
            raise
        self._lock = lock

    def _open_shard(self, meta: dict[str, Any]) -> None:
        qe = _edge()
        exists = self.shard_dir.is_dir() and any(self.shard_dir.iterdir())
        try:
            if not exists:
                cfg = qe.EdgeConfig(
                    vectors=qe.EdgeVectorParams(size=int(meta["dim"]), distance=qe.Distance.Cosine),
                    hnsw_config=qe.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT,
                                                   full_scan_threshold=10_000))
                try:
                    self._shard = qe.EdgeShard.create(str(self.shard_dir), cfg)
                except Exception as exc:  # another process created it meanwhile: open it instead
                    if "already contains segment data" not in str(exc):
                        raise
                    exists = True
            if exists:
                self._shard = qe.EdgeShard.load(str(self.shard_dir))
        except Exception as exc:  # the extension raises plain Exception
            text = str(exc)
            if "WouldBlock" in text or "lock" in text.lower():
                raise BankLockedError(_locked_message(self.path)) from exc
            raise BankError(f"cannot open the embedded bank at {self.path}: {text}") from exc
        if not exists:
            for name, schema in INDEXED_FIELDS.items():
                self._shard.update(qe.UpdateOperation.create_field_index(name, getattr(qe.PayloadSchemaType, schema)))
        have = self.read_meta()
        if have is None:
            self._write_meta({"format": META_FORMAT, "schema": META_SCHEMA, **meta})
        else:
            self._check_meta(have)

    @property
    def shard(self) -> Any:
        if self._shard is None:
            raise BankClosedError(f"the bank at {self.path} is closed")
        return self._shard

    def flush(self) -> None:
        shard = self.shard
        self.check_space("the engine flush")
        self._engine_call("the engine flush", shard.flush)

    def close(self) -> None:
        """Flush and close the shard and release the path; a failed flush (or too little space to
        risk one) raises a :class:`BankError` naming the path once everything is released."""
        failure: BankError | None = None
        try:
            if self._shard is not None:
                shard, self._shard = self._shard, None
                try:
                    self.check_space("the engine flush at close")
                    self._engine_call("the engine flush at close", shard.flush)
                except BankError as exc:
                    failure = exc
                finally:
                    try:
                        self._engine_call("closing the engine", shard.close)
                    except BankError as exc:
                        failure = failure or exc
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
        if failure is not None:
            raise failure

    def optimize(self) -> bool:
        return bool(self.shard.optimize())

    # ---- data ----------------------------------------------------------------------
    def _filter(self, conditions: Sequence[Condition]) -> Any:
        if not conditions:
            return None
        qe = _edge()
        must = []
        for c in conditions:
            if c.kind == "match":
                must.append(qe.FieldCondition(c.key, match=qe.MatchValue(c.value)))
            elif c.kind == "any":
                must.append(qe.FieldCondition(c.key, match=qe.MatchAny(list(c.value))))
            else:
                must.append(qe.FieldCondition(c.key, range=qe.RangeFloat(**c.value)))
        return qe.Filter(must=must)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        qe = _edge()
        vecs = np.asarray(vectors, np.float32)
        for start in range(0, len(ids), _UPSERT_BATCH):
            stop = min(len(ids), start + _UPSERT_BATCH)
            pts = [qe.Point(ids[i], vecs[i].tolist(), payloads[i]) for i in range(start, stop)]
            shard = self.shard
            self.check_space("an engine upsert")
            self._engine_call("an engine upsert", shard.update, qe.UpdateOperation.upsert_points(pts))

    def set_payload(self, ids: Sequence[str], fields: dict[str, Any]) -> None:
        if ids:
            self.shard.update(_edge().UpdateOperation.set_payload(list(ids), fields))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self.shard.update(_edge().UpdateOperation.delete_points(list(ids)))

    @staticmethod
    def _point(rec: Any, with_vectors: bool, score: float | None = None) -> StoredPoint:
        vec = None
        if with_vectors and rec.vector is not None:
            vec = np.asarray(rec.vector, np.float32)
        return StoredPoint(str(rec.id), dict(rec.payload or {}), vec, score)

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        if not ids:
            return []
        recs = self.shard.retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [self._point(r, with_vectors) for r in recs]

    def search(self, vector: np.ndarray, limit: int, conditions: Sequence[Condition], *,
               with_vectors: bool = False, exact: bool = False) -> list[StoredPoint]:
        qe = _edge()
        req = qe.QueryRequest(limit=int(limit), query=qe.Query.Nearest(np.asarray(vector, np.float32).tolist()),
                              filter=self._filter(conditions), with_payload=True, with_vector=with_vectors,
                              params=qe.SearchParams(hnsw_ef=max(HNSW_EF_SEARCH, 4 * int(limit)), exact=exact))
        return [self._point(r, with_vectors, float(r.score)) for r in self.shard.query(req)]

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True,
               conditions: Sequence[Condition] = ()) -> Iterator[list[StoredPoint]]:
        qe = _edge()
        offset = None
        filt = self._filter(conditions)
        while True:
            recs, offset = self.shard.scroll(qe.ScrollRequest(offset=offset, limit=batch, with_payload=True,
                                                              with_vector=with_vectors, filter=filt))
            if recs:
                yield [self._point(r, with_vectors) for r in recs]
            if offset is None or not recs:
                return

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        return int(self.shard.count(_edge().CountRequest(exact=True, filter=self._filter(conditions))))

    def clear(self) -> None:
        self.shard.update(_edge().UpdateOperation.delete_points_by_filter(_edge().Filter()))


def from_config(cfg: Any, client: Any = None) -> EdgeBackend:
    """The registry's factory of backend ``edge``: the shard at ``cfg.path`` (``persist_to_disk``).

    Example:
        >>> from types import SimpleNamespace
        >>> from_config(SimpleNamespace(path=None, persist_to_disk=False)).kind
        'edge'
    """
    return EdgeBackend(cfg.path, persist=cfg.persist_to_disk, min_free_mb=getattr(cfg, "min_free_mb", 64.0))
