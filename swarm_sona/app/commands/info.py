"""``swarm-sona info``: what this installation is: version, kernels, Ray, the bank, the extras.

Reads only: package metadata, the kernel module's ``info()``, the embedded bank's
``bank.json`` / ``manifest.json`` and its size on disk. Nothing is started (Ray is not
imported; its version comes from the package metadata) and no bank is opened, so ``info``
works while a run holds the bank. ``--bank PATH`` looks at another bank directory (default: the
one ``swarm-sona run`` uses, ``$SWARM_SONA_BANK_PATH`` or the user's data directory).
``--json`` prints one JSON object with a ``schema_version``.

Example:
    >>> from swarm_sona.app.commands.info import collect
    >>> i = collect(bank="/nonexistent/bank")
    >>> i.bank_exists, i.kernels["active"] in ("native", "numpy")
    (False, True)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "collect", "Info", "OUTPUT_SCHEMA_VERSION"]

OUTPUT_SCHEMA_VERSION = 1
"""Version of the ``--json`` output format."""

DIST = "swarm-sona"


@dataclasses.dataclass(frozen=True)
class Info:
    """The installation as ``swarm-sona info`` reports it.

    ``extras`` maps each optional extra of the package to whether every distribution it needs
    is installed (``missing`` lists those that are not).
    """

    version: str
    python: str
    platform: str
    kernels: dict[str, Any]
    ray: str | None
    bank_path: str
    bank_exists: bool
    bank_patterns: int | None
    bank_bytes: int | None
    bank_embedder: str | None
    extras: dict[str, bool]
    missing: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready), with ``schema_version``."""
        return {"schema_version": OUTPUT_SCHEMA_VERSION, **dataclasses.asdict(self)}

    def format(self) -> str:
        """An aligned two-column text table."""
        from swarm_sona.app.report import format_bytes, human

        k = self.kernels
        kern = str(k.get("active", "?")) + (f", {k['isa']}" if k.get("isa") else "") \
            + (f" ({k['reason']})" if k.get("active") != "native" and k.get("reason") else "")
        if self.bank_exists:
            size = [f"{human(self.bank_patterns)} patterns" if self.bank_patterns is not None
                    else "pattern count unknown (no manifest yet; swarm-sona doctor counts them)"]
            if self.bank_bytes is not None:
                size.append(format_bytes(self.bank_bytes) + " on disk")
            if self.bank_embedder:
                size.append(f"embedder {self.bank_embedder}")
            bank = f"{self.bank_path} ({', '.join(size)})"
        else:
            bank = f"{self.bank_path} (none yet: the first run creates it)"
        extras = ", ".join(f"{name} {'yes' if ok else 'no (' + ', '.join(self.missing[name]) + ')'}"
                           for name, ok in self.extras.items())
        rows = [("swarm-sona", self.version), ("python", f"{self.python} on {self.platform}"),
                ("kernels", kern), ("ray", self.ray or "not installed"), ("bank", bank), ("extras", extras)]
        width = max(len(r[0]) for r in rows) + 2
        return "\n".join(f"{a:<{width}}{b}" for a, b in rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona info``."""
    parser.add_argument("--bank", metavar="PATH", help="an embedded bank directory (default: the one runs use)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona info``."""
    info = collect(bank=args.bank)
    print(json.dumps(info.to_dict(), sort_keys=True) if args.json else info.format())
    return 0


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _extras() -> tuple[dict[str, bool], dict[str, list[str]]]:
    """Each extra of the package -> installed?, and the distributions it misses."""
    from importlib.metadata import PackageNotFoundError, metadata, requires

    try:
        names = list(metadata(DIST).get_all("Provides-Extra") or [])
        reqs = requires(DIST) or []
    except PackageNotFoundError:
        return {}, {}
    missing: dict[str, list[str]] = {n: [] for n in names}
    for req in reqs:
        m = _EXTRA.search(req)
        if not m or m.group(1) not in missing:
            continue
        dist = re.split(r"[\s\[<>=!~;(]", req.strip(), maxsplit=1)[0]
        if _dist_version(dist) is None and dist not in missing[m.group(1)]:
            missing[m.group(1)].append(dist)
    return {n: not missing[n] for n in names}, missing


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def collect(*, bank: str | None = None) -> Info:
    """The :class:`Info` of this installation (``bank``: a bank directory; default: the runs' one)."""
    from swarm_sona import kernels
    from swarm_sona.app.report import dir_bytes
    from swarm_sona.bank import default_bank_path

    path = Path(bank).expanduser() if bank else default_bank_path()
    meta = _read_json(path / "bank.json")
    manifest = _read_json(path / "manifest.json")
    exists = meta is not None or (path / "shard").is_dir()
    count = manifest.get("count") if manifest and isinstance(manifest.get("count"), int) else None
    embedder = (meta or {}).get("embedder") or (manifest or {}).get("embedder")
    extras, missing = _extras()
    return Info(
        version=_dist_version(DIST) or "unknown", python=platform.python_version(),
        platform=f"{sys.platform} {platform.machine()}", kernels=dict(kernels.info()), ray=_dist_version("ray"),
        bank_path=str(path), bank_exists=exists, bank_patterns=count,
        bank_bytes=dir_bytes(path) if exists else None, bank_embedder=str(embedder) if embedder else None,
        extras=extras, missing={k: v for k, v in missing.items() if v})
