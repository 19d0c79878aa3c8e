"""Checkpoint locations: a local POSIX path, or a URI of an fsspec filesystem (``memory://``,
``file://``, ``s3://``, ``gs://``...), so an actor restarted on another node finds its state.

One interface, :class:`CheckpointLocation` (one named checkpoint: write a new version, list the
versions a reader may use, newest first), with two implementations and their atomicity
contracts:

* :class:`LocalCheckpoint` (a path without a scheme): the new bytes go to a temp file in the
  same directory, are ``fsync``-ed, and replace the file by ``rename``; the directory is then
  fsynced. The previous intact file is kept as ``<name>.prev`` (renamed first). A reader sees
  the old file or the new one, whole, even after a power loss; a crash leaves at most a stray
  temp file.
* :class:`ObjectCheckpoint` (``scheme://...``, through fsspec): object stores have no rename
  and no fsync, but one ``PUT`` of a whole object is atomic (the object appears whole or not at
  all). Each write puts the bytes in a *new* object under a unique name
  (``<name>.objects/<generation>-<random>``), then writes the small *pointer* object ``<name>``
  naming it and the previous target. The pointer is the commit: a crash between the two puts
  leaves the pointer on the previous state (the orphan object is collected by the next write).
  Readers follow the pointer and fall back to the previous target when the newest object is
  missing or unreadable; a pointer that is itself unreadable (torn on a store without atomic
  puts) is ignored and the newest listed objects are tried instead. After the pointer is
  written, objects other than the pointer's two targets are deleted (garbage collection keeps
  the last two). ``file://`` goes through fsspec's temp file + move (atomic, not fsynced).
  One writer per checkpoint (the actor owning it); readers may run anywhere.

fsspec is optional: a URI needs ``pip install 'swarm-sona[storage]'`` (and the filesystem's own
package, e.g. ``s3fs`` for ``s3://``); without it a URI raises :class:`StorageUnavailable`.

pyarrow filesystems (``pip install 'swarm-sona[arrow]'``) take the same object path, wrapped
for fsspec by ``fsspec.implementations.arrow.ArrowFSWrapper``, so their contract is the
object store's above: ``arrow+<scheme>://...`` opens ``pyarrow.fs.FileSystem.from_uri`` of the
rest (``arrow+s3://bucket/ckpt``, ``arrow+gs://...``, ``arrow+hdfs://...``, ``arrow+file:///...``),
and :func:`register_arrow_filesystem` names a configured pyarrow filesystem instance (an
``S3FileSystem`` with its region and credentials) under a scheme of its own. Any other
filesystem plugs in the same way through :func:`register_filesystem`.

:class:`ObjectDir` is the object store counterpart of a directory of small records (put a
whole object under a name, list, get, delete): the coordinator's push log on a URI is one
object per acknowledged push.

Example:
    >>> loc = checkpoint_location("memory://storage-doc/state.ckpt")
    >>> loc.write(b"one"); loc.write(b"two")
    >>> [v.read() for v in loc.versions()]
    [b'two', b'one']
    >>> loc.write(b"three"); len(loc.objects())    # garbage collection keeps the last two
    2
    >>> is_uri("s3://bucket/ckpt"), is_uri("/var/ckpt"), str(join("memory://x", "a0", "meta"))
    (True, False, 'memory://x/a0/meta')
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CheckpointLocation", "LocalCheckpoint", "ObjectCheckpoint", "ObjectDir", "Version",
           "StorageUnavailable", "checkpoint_location", "object_dir", "is_uri", "join", "check_location",
           "atomic_write_file", "prev_path", "INSTALL_HINT", "register_filesystem", "register_arrow_filesystem",
           "FilesystemFactory"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'swarm-sona[storage]'"
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")   # two letters at least: "C:\\..." is a path
_PTR_MAGIC = b"SSNAPTR1"
_OBJECTS = ".objects"


class StorageUnavailable(ImportError):
    """A storage URI was given but fsspec (or the filesystem's package) is not installed."""


def is_uri(where: str | os.PathLike[str]) -> bool:
    """True when ``where`` is a URI with a scheme (``memory://...``, ``s3://...``), False for a
    local path.

    Example:
        >>> is_uri("file:///tmp/x"), is_uri("relative/dir"), is_uri("C:\\\\ckpt")
        (True, False, False)
    """
    return isinstance(where, str) and _URI.match(where) is not None


def join(base: str | os.PathLike[str], *parts: str) -> str | Path:
    """``base`` / ``parts``: a URI string for a URI (``pathlib`` would fold its ``//``), a
    :class:`~pathlib.Path` for a local path.

    Example:
        >>> join("s3://bucket/ckpt/", "a0", "engine.ckpt"), join("/tmp/ckpt", "a0")
        ('s3://bucket/ckpt/a0/engine.ckpt', PosixPath('/tmp/ckpt/a0'))
    """
    if is_uri(base):
        assert isinstance(base, str)
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(base).joinpath(*parts)


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError as exc:
        raise StorageUnavailable(f"checkpoints at a storage URI need fsspec: {INSTALL_HINT}") from exc
    return fsspec


def check_location(where: str | os.PathLike[str]) -> None:
    """Raise unless ``where`` is a local path or a URI whose scheme fsspec knows:
    :class:`StorageUnavailable` without fsspec, ValueError for an unknown scheme. The
    filesystem's own package (``s3fs``...) is needed only where it is opened.

    Example:
        >>> check_location("memory://ckpt"); check_location("/tmp/ckpt")
        >>> check_location("nosuch://x")
        Traceback (most recent call last):
        ...
        ValueError: checkpoint location 'nosuch://x': unknown storage scheme 'nosuch' (fsspec knows ...)
    """
    if not is_uri(where):
        return
    assert isinstance(where, str)
    m = _URI.match(where)
    assert m is not None
    scheme = m.group(1).lower()
    if scheme in _FILESYSTEMS or scheme.startswith(_ARROW_PREFIX):
        return
    known = set(_fsspec().available_protocols())
    if scheme not in known:
        raise ValueError(f"checkpoint location {where!r}: unknown storage scheme {scheme!r} "
                         f"(fsspec knows {', '.join(sorted(known)[:12])}, ...)")


#: ``uri -> (fsspec filesystem, path inside it)`` of a registered scheme (:func:`register_filesystem`)
FilesystemFactory = Callable[[str], tuple[Any, str]]
_FILESYSTEMS: dict[str, FilesystemFactory] = {}
_ARROW_PREFIX = "arrow+"


def register_filesystem(scheme: str, factory: FilesystemFactory) -> None:
    """Serve URIs ``<scheme>://...`` with ``factory(uri) -> (fsspec filesystem, path)``, ahead of
    fsspec's own schemes (the extension point for a filesystem fsspec does not know, or one
    configured in code). A scheme starting with ``arrow+`` is taken by pyarrow's.

    Example:
        >>> import fsspec
        >>> register_filesystem("scratch", lambda uri: (fsspec.filesystem("memory"), "/scratch/" + uri[10:]))
        >>> loc = checkpoint_location("scratch://doc/state.ckpt"); loc.write(b"x")
        >>> [v.read() for v in loc.versions()], fsspec.filesystem("memory").exists("/scratch/doc/state.ckpt")
        ([b'x'], True)
    """
    if not isinstance(scheme, str) or _URI.match(f"{scheme}://") is None:
        raise ValueError(f"filesystem scheme must be letters, digits, '+', '.' or '-' (two at least), got {scheme!r}")
    if scheme.lower().startswith(_ARROW_PREFIX):
        raise ValueError(f"filesystem scheme {scheme!r}: 'arrow+...' is pyarrow's (FileSystem.from_uri of the rest)")
    if not callable(factory):
        raise TypeError(f"filesystem factory for {scheme!r} must be callable, got {type(factory).__name__}")
    _FILESYSTEMS[scheme.lower()] = factory


def _arrow_wrapper() -> Any:
    try:
        import pyarrow.fs  # noqa: F401
        from fsspec.implementations.arrow import ArrowFSWrapper
    except ImportError as exc:
        raise StorageUnavailable(f"pyarrow filesystems need pyarrow and fsspec: pip install 'swarm-sona[arrow]' "
                                 f"({exc})") from exc
    return ArrowFSWrapper


def register_arrow_filesystem(scheme: str, filesystem: Any) -> None:
    """Serve URIs ``<scheme>://<path>`` from a pyarrow filesystem instance (``pyarrow.fs.S3FileSystem(
    region=...)``, ``LocalFileSystem()``, ...): ``<path>`` is the path inside it.

    Example:
        >>> import pyarrow.fs, tempfile                                   # doctest: +SKIP
        >>> register_arrow_filesystem("lake", pyarrow.fs.LocalFileSystem())  # doctest: +SKIP
        >>> checkpoint_location(f"lake://{tempfile.mkdtemp()}/c").write(b"x")  # doctest: +SKIP
    """
    wrapper = _arrow_wrapper()
    import pyarrow.fs

    if not isinstance(filesystem, pyarrow.fs.FileSystem):
        raise TypeError(f"register_arrow_filesystem({scheme!r}): expected a pyarrow.fs.FileSystem, "
                        f"got {type(filesystem).__name__}")
    fs = wrapper(filesystem)
    n = len(scheme) + 3
    register_filesystem(scheme, lambda uri: (fs, uri[n:]))


def _open_arrow(uri: str) -> tuple[Any, str]:
    wrapper = _arrow_wrapper()
    import pyarrow.fs

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri[len(_ARROW_PREFIX):])
    except (pyarrow.ArrowException, ValueError, OSError) as exc:
        raise ValueError(f"checkpoint location {uri!r}: pyarrow cannot open it ({exc})") from exc
    return wrapper(fs), str(path)


def _open_fs(uri: str) -> tuple[Any, str]:
    scheme = uri.split("://", 1)[0].lower()
    if scheme.startswith(_ARROW_PREFIX):
        return _open_arrow(uri)
    if scheme in _FILESYSTEMS:
        fs, path = _FILESYSTEMS[scheme](uri)
        return fs, str(path)
    check_location(uri)
    try:
        fs, path = _fsspec().core.url_to_fs(uri)
    except ImportError as exc:
        raise StorageUnavailable(f"checkpoint location {uri!r}: {exc}") from exc
    return fs, str(path)


def _is_local_fs(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem
    return isinstance(fs, LocalFileSystem)


def _put(fs: Any, path: str, blob: bytes) -> None:
    """One whole-object write: a single put on object stores, temp + move for ``file://``."""
    parent = path.rsplit("/", 1)[0]
    if _is_local_fs(fs):
        fs.makedirs(parent, exist_ok=True)
        f = fs.open(path, "wb", autocommit=False)
        with f:
            f.write(blob)
        f.commit()
        return
    try:
        fs.pipe_file(path, bytes(blob))
    except FileNotFoundError:   # a filesystem with directories that a write does not create (pyarrow's local one)
        fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(path, bytes(blob))


@dataclass(frozen=True)
class Version:
    """One readable version of a checkpoint: ``label`` names it (the file or object read),
    ``read()`` returns its bytes (FileNotFoundError when it is gone)."""

    label: Path | str
    read: Callable[[], bytes]


class CheckpointLocation(ABC):
    """Where one checkpoint lives (module docs for the contracts). ``where`` is what the caller
    gave: a :class:`~pathlib.Path` or a URI string."""

    where: Path | str

    @abstractmethod
    def write(self, blob: bytes, *, keep_prev: bool = True, intact: Callable[[bytes], bool] | None = None,
              mode: int | None = None) -> None:
        """Write ``blob`` as the newest version. With ``keep_prev`` the current newest version is
        kept as the previous one when ``intact(its bytes)`` (or always, without ``intact``).
        ``mode``: permission bits of a local file (object stores have none)."""

    @abstractmethod
    def versions(self, *, previous: bool = True) -> list[Version]:
        """The versions a reader may use, newest first (only the newest without ``previous``).
        Never empty: a missing checkpoint is one version whose ``read`` raises FileNotFoundError."""

    @abstractmethod
    def exists(self) -> bool:
        """Any version is there (the newest or the previous one)."""

    @abstractmethod
    def roll_back(self) -> None:
        """Drop the newest version: the previous one becomes the newest (none left without one)."""


def atomic_write_file(path: Path, blob: bytes, *, keep_prev: bool, mode: int | None = None,
                      intact: Callable[[bytes], bool] | None = None) -> None:
    """Write ``blob`` to ``path`` through a fsynced temp file and a rename. With ``keep_prev``
    an existing file at ``path`` (when ``intact(its bytes)``, if given) becomes
    ``<name>.prev`` first. ``mode``: permission bits of the new file (default: the temp
    file's, 0600). A write that fails (``ENOSPC``: disk full) leaves ``path`` as it was and
    raises the OSError with ``filename`` = ``path``.

    Example:
        >>> p = Path(tempfile.mkdtemp()) / "x.bin"
        >>> atomic_write_file(p, b"1", keep_prev=True); atomic_write_file(p, b"2", keep_prev=True)
        >>> p.read_bytes(), p.with_name("x.bin.prev").read_bytes()
        (b'2', b'1')
    """
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
            if intact is None or intact(path.read_bytes()):
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


class LocalCheckpoint(CheckpointLocation):
    """A checkpoint file on a local (or shared POSIX) filesystem; the previous one is
    ``<name>.prev`` beside it (module docs).

    Example:
        >>> loc = LocalCheckpoint(Path(tempfile.mkdtemp()) / "s.ckpt")
        >>> loc.write(b"a"); loc.write(b"b"); [v.label.name for v in loc.versions()]
        ['s.ckpt', 's.ckpt.prev']
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.where = self.path = Path(path)
        self.prev = prev_path(self.path)

    def write(self, blob: bytes, *, keep_prev: bool = True, intact: Callable[[bytes], bool] | None = None,
              mode: int | None = None) -> None:
        atomic_write_file(self.path, blob, keep_prev=keep_prev, mode=mode, intact=intact)

    def versions(self, *, previous: bool = True) -> list[Version]:
        paths = [self.path, self.prev] if previous else [self.path]
        return [Version(p, p.read_bytes) for p in paths]

    def exists(self) -> bool:
        return self.path.exists() or self.prev.exists()

    def roll_back(self) -> None:
        if self.prev.exists():
            os.replace(self.prev, self.path)   # a rename: needs no space
        else:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Pointer:
    gen: int
    current: str
    previous: str | None


def _pack_pointer(p: _Pointer) -> bytes:
    body = json.dumps({"gen": p.gen, "current": p.current, "previous": p.previous}, sort_keys=True).encode()
    return _PTR_MAGIC + zlib.crc32(body).to_bytes(4, "little") + body


def _unpack_pointer(data: bytes) -> _Pointer:
    if data[:8] != _PTR_MAGIC or len(data) < 12:
        raise ValueError("not a checkpoint pointer")
    body = data[12:]
    if zlib.crc32(body) != int.from_bytes(data[8:12], "little"):
        raise ValueError("checkpoint pointer checksum mismatch (torn or corrupt)")
    d = json.loads(body)
    if not isinstance(d, dict) or not isinstance(d.get("current"), str) or not isinstance(d.get("gen"), int):
        raise ValueError("malformed checkpoint pointer")
    prev = d.get("previous")
    return _Pointer(d["gen"], d["current"], prev if isinstance(prev, str) else None)


def _gen_of(name: str) -> int:
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else -1


class ObjectCheckpoint(CheckpointLocation):
    """A checkpoint in an fsspec filesystem: the pointer object ``<uri>`` names the newest and
    the previous data objects under ``<uri>.objects/`` (module docs).

    Example:
        >>> loc = ObjectCheckpoint("memory://storage-doc2/c.ckpt")
        >>> loc.write(b"a"); loc.versions()[0].read()
        b'a'
        >>> loc.roll_back(); loc.exists()
        False
    """

    def __init__(self, uri: str) -> None:
        self.where = self.uri = uri
        self.fs, self.path = _open_fs(uri)
        self.objects_path = self.path + _OBJECTS

    def _obj_path(self, name: str) -> str:
        return f"{self.objects_path}/{name}"

    def _obj_uri(self, name: str) -> str:
        return f"{self.uri}{_OBJECTS}/{name}"

    def objects(self) -> list[str]:
        """Names of the data objects present, oldest first (generation order)."""
        try:
            listed = self.fs.ls(self.objects_path, detail=False)
        except FileNotFoundError:
            return []
        names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed]
        return sorted((n for n in names if _gen_of(n) >= 0), key=lambda n: (_gen_of(n), n))

    def _pointer(self) -> _Pointer | None:
        """The pointer; None when there is none; ValueError when it is unreadable."""
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return _unpack_pointer(bytes(data))

    def _version(self, name: str) -> Version:
        return Version(self._obj_uri(name), lambda: bytes(self.fs.cat_file(self._obj_path(name))))

    def versions(self, *, previous: bool = True) -> list[Version]:
        try:
            ptr = self._pointer()
        except ValueError as exc:
            names = self.objects()[::-1][:2]
            log.warning("checkpoint pointer %s unusable (%s); trying the newest objects %s", self.uri, exc, names)
            out = [self._version(n) for n in names] or [Version(self.uri, self._missing)]
            return out if previous else out[:1]
        if ptr is None:
            return [Version(self.uri, self._missing)]
        out = [self._version(ptr.current)]
        if previous and ptr.previous:
            out.append(self._version(ptr.previous))
        return out

    def _missing(self) -> bytes:
        raise FileNotFoundError(self.uri)

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def write(self, blob: bytes, *, keep_prev: bool = True, intact: Callable[[bytes], bool] | None = None,
              mode: int | None = None) -> None:
        try:
            ptr = self._pointer()
        except ValueError as exc:
            log.warning("checkpoint pointer %s unusable (%s); writing a fresh one", self.uri, exc)
            ptr = None
        listed = self.objects()
        gen = max([ptr.gen if ptr else 0, *(_gen_of(n) for n in listed)]) + 1
        name = f"{gen:012d}-{uuid.uuid4().hex[:12]}"
        _put(self.fs, self._obj_path(name), blob)     # 1. the new object, whole
        previous = None
        if keep_prev and ptr is not None:
            previous = ptr.current if self._usable(ptr.current, intact) else ptr.previous
        _put(self.fs, self.path, _pack_pointer(_Pointer(gen, name, previous)))   # 2. the commit
        self._collect(keep={name, previous})

    def _usable(self, name: str, intact: Callable[[bytes], bool] | None) -> bool:
        try:
            data = bytes(self.fs.cat_file(self._obj_path(name)))
        except (FileNotFoundError, OSError):
            return False
        if intact is not None and not intact(data):
            log.warning("existing checkpoint %s is corrupt; not keeping it as previous", self._obj_uri(name))
            return False
        return True

    def _collect(self, keep: set[str | None]) -> None:
        for n in self.objects():
            if n not in keep:
                try:
                    self.fs.rm_file(self._obj_path(n))
                except FileNotFoundError:
                    pass

    def roll_back(self) -> None:
        try:
            ptr = self._pointer()
        except ValueError:
            ptr = None
        if ptr is None or ptr.previous is None:
            if self.fs.exists(self.path):
                self.fs.rm_file(self.path)
            self._collect(keep=set())
            return
        _put(self.fs, self.path, _pack_pointer(_Pointer(ptr.gen + 1, ptr.previous, None)))
        self._collect(keep={ptr.previous})


def checkpoint_location(where: str | os.PathLike[str] | CheckpointLocation) -> CheckpointLocation:
    """The :class:`CheckpointLocation` of ``where``: :class:`ObjectCheckpoint` for a URI,
    :class:`LocalCheckpoint` for a path.

    Example:
        >>> type(checkpoint_location("memory://x/c")).__name__, type(checkpoint_location("/tmp/c")).__name__
        ('ObjectCheckpoint', 'LocalCheckpoint')
    """
    if isinstance(where, CheckpointLocation):
        return where
    if is_uri(where):
        assert isinstance(where, str)
        return ObjectCheckpoint(where)
    return LocalCheckpoint(where)


class ObjectDir:
    """A prefix of whole objects in an fsspec filesystem: :meth:`put` (one atomic write under a
    name), :meth:`names` (sorted), :meth:`get`, :meth:`delete`.

    Example:
        >>> d = object_dir("memory://storage-doc3/log")
        >>> d.put("0001", b"x"); d.put("0002", b"y"); d.names()
        ['0001', '0002']
        >>> d.delete("0001"); [d.get(n) for n in d.names()]
        [b'y']
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, path = _open_fs(self.uri)
        self.path = path.rstrip("/")

    def put(self, name: str, blob: bytes) -> None:
        """Write the object ``name`` whole (it appears complete or not at all)."""
        _put(self.fs, f"{self.path}/{name}", blob)

    def get(self, name: str) -> bytes:
        """The bytes of object ``name`` (FileNotFoundError when it is gone)."""
        return bytes(self.fs.cat_file(f"{self.path}/{name}"))

    def names(self) -> list[str]:
        """The objects' names, sorted."""
        try:
            listed = self.fs.ls(self.path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in listed)

    def delete(self, name: str) -> None:
        """Remove object ``name`` (nothing when it is already gone)."""
        try:
            self.fs.rm_file(f"{self.path}/{name}")
        except FileNotFoundError:
            pass


def object_dir(uri: str) -> ObjectDir:
    """The :class:`ObjectDir` at ``uri`` (a URI: local directories need no such thing)."""
    if not is_uri(uri):
        raise ValueError(f"object_dir: {uri!r} is not a storage URI (scheme://...)")
    return ObjectDir(uri)
