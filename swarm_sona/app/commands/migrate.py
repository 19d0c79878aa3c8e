"""``swarm-sona migrate PATH``: upgrade checkpoints and frames on disk to the current schema versions.

PATH is a swarm_sona frame file (checkpoint, ``.prev``, engine state, bank snapshot) or a
directory searched recursively (e.g. a swarm's checkpoint directory, or a bank directory: its
``bank.json`` and ``manifest.json`` are migrated too, see ``swarm_sona.bank.migrate``). Each file of an older
schema version is upgraded in place through the registered migrations, its original kept as
``<name>.schema<N>.bak`` next to it; current files are left untouched; files that do not decode,
are newer than this swarm_sona or lack a migration step are reported and never modified. Run it
with the swarm stopped. ``--dry-run`` reports what would be done and writes nothing. ``--json``
prints ``{"schema_version": 1, "path", "dry_run", "ok", "counts", "files": [...]}`` (each file's
path relative to PATH, kind, from_version, to_version, action, reason, backup).

Exit codes: 0 every file is current, upgraded (or would be) or skipped, 1 any file failed,
2 PATH does not exist (one-line reason on stderr).

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["migrate", "checkpoints/", "--dry-run"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from swarm_sona.app.commands.bank_args import fail
from swarm_sona.bank.migrate import migrate_bank_files

__all__ = ["add_arguments", "run", "OUTPUT_SCHEMA_VERSION"]

OUTPUT_SCHEMA_VERSION = 1
"""Version of the ``--json`` output format (bumped when a field changes meaning or goes away)."""

_ACTIONS = ("upgraded", "would-upgrade", "current", "skipped", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona migrate``."""
    parser.add_argument("path", help="a swarm_sona frame file, or a directory to search recursively")
    parser.add_argument("--dry-run", action="store_true", help="report what would be upgraded; write nothing")
    parser.add_argument("--json", action="store_true", help="print the per-file report as JSON")


def _print_text(results: list, root: Path, counts: Counter) -> None:
    base = root if root.is_dir() else root.parent
    for r in results:
        d = r.to_dict(relative_to=base)
        if r.action in ("upgraded", "would-upgrade"):
            detail = f"{r.kind}  schema {r.from_version} -> {r.to_version}  (backup {Path(d['backup']).name})"
        elif r.action == "current":
            detail = f"{r.kind}  schema {r.from_version}"
        else:
            detail = (f"{r.kind}  " if r.kind else "") + (r.reason or "")
        print(f"{r.action:<14} {d['path']}  {detail}")
    summary = ", ".join(f"{counts[a]} {a}" for a in _ACTIONS if counts[a] or a in ("current", "error"))
    print(f"{len(results)} file{'s' if len(results) != 1 else ''}: {summary}")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona migrate``."""
    from swarm_sona.core import codec

    root = Path(args.path)
    try:
        results = codec.migrate_path(root, dry_run=args.dry_run) + migrate_bank_files(root, dry_run=args.dry_run)
    except (FileNotFoundError, NotADirectoryError) as exc:
        return fail("migrate", exc, 2)
    counts = Counter(r.action for r in results)
    ok = not counts["error"]
    if args.json:
        base = root if root.is_dir() else root.parent
        print(json.dumps({"schema_version": OUTPUT_SCHEMA_VERSION, "path": str(root), "dry_run": bool(args.dry_run),
                          "ok": ok, "counts": {a: counts[a] for a in _ACTIONS},
                          "files": [r.to_dict(relative_to=base) for r in results]}))
    else:
        _print_text(results, root, counts)
    return 0 if ok else 1
