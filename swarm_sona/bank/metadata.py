"""Schema versions of a bank's metadata (``bank.json``, a server collection's metadata) and of its
flush manifest (``manifest.json``), upgraded through the codec's migration registry.

Both are JSON documents ``{"format", "schema", ...}``. Each is a codec *kind* (``bank-meta``,
``bank-manifest``) with its current schema registered in :mod:`swarm_sona.core.codec`, and every
step ``N -> N+1`` is a :func:`~swarm_sona.core.codec.register_migration` function, exactly as for
checkpoint frames: :func:`upgrade_document` reads an older document, upgrades it in memory and
refuses a newer one with a message naming the file (:mod:`.migrate` rewrites them on disk, for
``swarm-sona migrate PATH``). :func:`write_json_durably` is how every bank document is written.

Schemas of ``bank-meta``: 1 is what swarm_sona 0.1.0 wrote (format ``swarm_sona.reasoning_bank``;
later schema-1 files say ``swarm_sona.bank``); 2 names the format ``swarm_sona.bank`` whatever
wrote it (the step renames it), so a 0.1.0 bank opens again. ``bank-manifest`` is at schema 1.

Example:
    >>> meta, schema = upgrade_document(META_KIND, {"format": "swarm_sona.reasoning_bank", "schema": 1,
    ...                                             "dim": 32, "embedder": "hashing-v1-32"}, "bank.json")
    >>> meta["format"], meta["schema"], schema
    ('swarm_sona.bank', 2, 1)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from swarm_sona.bank.errors import BankError
from swarm_sona.core import codec

__all__ = ["META_KIND", "MANIFEST_KIND", "META_FORMAT", "META_SCHEMA", "MANIFEST_FORMAT", "MANIFEST_SCHEMA",
           "LEGACY_META_FORMATS", "DOCUMENT_FILES", "upgrade_document", "write_json_durably", "fsync_dir"]

META_KIND = "bank-meta"
MANIFEST_KIND = "bank-manifest"
META_FORMAT = "swarm_sona.bank"
META_SCHEMA = 2
MANIFEST_FORMAT = "swarm_sona.bank.manifest"
MANIFEST_SCHEMA = 1
LEGACY_META_FORMATS = ("swarm_sona.reasoning_bank",)   # swarm_sona 0.1.0's bank.json

_FORMATS = {META_KIND: (META_FORMAT, *LEGACY_META_FORMATS), MANIFEST_KIND: (MANIFEST_FORMAT,)}
DOCUMENT_FILES = {"bank.json": META_KIND, "manifest.json": MANIFEST_KIND}   # file name -> kind

codec.register_schema(META_KIND, META_SCHEMA)
codec.register_schema(MANIFEST_KIND, MANIFEST_SCHEMA)


@codec.register_migration(META_KIND, 1)
def meta_1_to_2(body: dict[str, Any]) -> dict[str, Any]:
    """bank-meta 1 -> 2: the format is named ``swarm_sona.bank`` (0.1.0 wrote ``swarm_sona.reasoning_bank``)."""
    return {**body, "format": META_FORMAT}


def _final_format(kind: str) -> str:
    return _FORMATS[kind][0]


def upgrade_document(kind: str, doc: Any, where: str) -> tuple[dict[str, Any], int]:
    """``doc`` (a parsed bank.json or manifest.json of ``kind``) at the current schema, and the
    schema it was read at. Raises :class:`BankError` naming ``where`` when it is not such a
    document, is newer than this swarm_sona, or a migration step is missing or fails."""
    if not isinstance(doc, dict) or doc.get("format") not in _FORMATS[kind]:
        what = "ReasoningBank metadata" if kind == META_KIND else "bank manifest"
        raise BankError(f"{where} is not a swarm_sona {what} file")
    version = doc.get("schema", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BankError(f"{where}: schema must be an integer >= 1, got {version!r}")
    try:
        frame = codec.open_frame(codec.pack_frame(kind, doc, version=version), expect_kind=kind)
    except codec.SchemaError as exc:
        hint = "; upgrade swarm-sona" if version > codec.schema_version(kind) else ""
        raise BankError(f"{where}: {exc}{hint}") from exc
    except codec.CodecError as exc:   # a value msgpack cannot carry: not a document we wrote
        raise BankError(f"{where}: unreadable {kind} document ({exc})") from exc
    body = dict(frame.body)
    if body.get("format") != _final_format(kind):
        raise BankError(f"{where}: schema {frame.version} {kind} document with format {body.get('format')!r}")
    body["schema"] = frame.version
    return body, version


def fsync_dir(path: Path) -> None:
    """fsync a directory (its entries: a rename in it is durable); a no-op on Windows."""
    if sys.platform == "win32":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_durably(path: Path, data: dict[str, Any], check: Any = None) -> None:
    """Write ``data`` as JSON to ``path`` atomically and durably: a temporary file in the same
    directory, fsync, read back and validated (it parses to ``data``, and ``check(parsed)`` raises
    nothing), then renamed over ``path`` and the directory fsynced. A failed check leaves the old
    file in place.

    Example:
        >>> import tempfile, json
        >>> d = Path(tempfile.mkdtemp())
        >>> write_json_durably(d / "m.json", {"count": 3})
        >>> json.loads((d / "m.json").read_text())
        {'count': 3}
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(data, indent=1, sort_keys=True)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        back = json.loads(tmp.read_text(encoding="utf-8"))
        if back != json.loads(text):
            raise BankError(f"{path}: the file read back differs from what was written")
        if check is not None:
            check(back)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
