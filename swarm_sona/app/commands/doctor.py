"""``swarm-sona doctor BANK``: check an embedded ReasoningBank directory after a crash or a copy.

Opens the bank (as a swarm would: a missing ``bank.json`` is rebuilt from the manifest or the
shard) and compares what it holds with the manifest of its last flush: patterns missing, the last
write missing, metadata rebuilt, foreign payloads skipped. Run it with the swarm stopped (the
embedded engine allows one open handle per path). ``--json`` prints the report as one JSON object
(``schema_version``, ``path``, ``healthy``, ``count``, ``expected``, ``missing``,
``last_write_present``, ``metadata_rebuilt_from``, ``foreign_skipped``, ``foreign_examples``,
``embedder``, ``dim``, ``problems``).

Exit codes: 0 healthy, 1 problems found (or the bank cannot be opened), 2 BANK is not a bank
directory (one-line reason on stderr).

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["doctor", "~/.local/share/swarm_sona/bank"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json

from swarm_sona.app.commands.bank_args import fail

__all__ = ["add_arguments", "run", "OUTPUT_SCHEMA_VERSION"]

OUTPUT_SCHEMA_VERSION = 1
"""Version of the ``--json`` output format."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona doctor``."""
    parser.add_argument("bank", help="directory of an embedded ReasoningBank")
    parser.add_argument("--embedder", default=None, help="open with this embedder (default: the recorded one)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona doctor``."""
    from swarm_sona.bank.health import BankPathError, check_bank

    try:
        h = check_bank(args.bank, embedder=args.embedder)
    except BankPathError as exc:
        return fail("doctor", exc, 2)
    if args.json:
        print(json.dumps({"schema_version": OUTPUT_SCHEMA_VERSION, **h.to_dict()}))
    else:
        exp = "no manifest" if h.expected is None else f"{h.expected} at the last flush"
        print(f"{'healthy' if h.healthy else 'PROBLEMS'}  {h.path}  {h.count} patterns ({exp}), "
              f"{h.dim}-d {h.embedder}, {h.foreign_skipped} foreign skipped")
        for prob in h.problems:
            print(f"  - {prob}")
    return 0 if h.healthy else 1
