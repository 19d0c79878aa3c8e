"""What an embedded bank holds on disk, read without opening it: its pattern count and size.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> bank_count(d), dir_bytes(d)
    (None, 0)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["bank_count", "dir_bytes"]


def bank_count(path: str | os.PathLike[str] | None) -> int | None:
    """Patterns an embedded bank held at its last flush (its ``manifest.json``), without opening it;
    None when there is no such bank or manifest.

    Example:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "manifest.json").write_text(json.dumps({"format": "swarm_sona.bank.manifest", "count": 7}))
        >>> bank_count(d), bank_count(d / "missing")
        (7, None)
    """
    if path is None:
        return None
    try:
        man = json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    count = man.get("count") if isinstance(man, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def dir_bytes(path: str | os.PathLike[str] | None) -> int | None:
    """Bytes of the files under ``path`` (a bank directory); None when it is not a directory.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "x").write_bytes(b"12345")
        >>> dir_bytes(d), dir_bytes(d / "missing")
        (5, None)
    """
    if path is None:
        return None
    p = Path(path)
    if not p.is_dir():
        return None
    total = 0
    for f in p.rglob("*"):
        try:
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
        except OSError:
            continue
    return total
