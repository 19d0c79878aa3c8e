"""Options shared by ``swarm-sona retrieve`` and ``swarm-sona store``: which bank, how to open it.

``--bank PATH`` names an embedded bank directory (default: ``$SWARM_SONA_BANK_PATH`` or the
user's data dir, see :func:`swarm_sona.bank.default_bank_path`); ``--url URL``
(+ ``--collection``, ``$QDRANT_API_KEY``) uses a Qdrant server instead. Bad arguments exit
with code 2 and a one-line reason on stderr.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="x")
    >>> add_bank_arguments(p)
    >>> parse_bool("yes"), parse_bool("false")
    (True, False)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["add_bank_arguments", "open_bank", "bank_exists", "parse_bool", "parse_json_object", "one_line_errors",
           "with_bank", "fail"]

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def parse_bool(text: str) -> bool:
    """``true/false`` (also 1/0, yes/no, on/off) -> bool, else an argparse type error."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_json_object(text: str) -> dict[str, Any]:
    """A JSON object from the command line, else an argparse type error."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` report bad arguments as one line on stderr with exit code 2."""
    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]


def add_bank_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bank``, ``--url``, ``--collection``, ``--embedder``; and one-line argument errors."""
    one_line_errors(parser)
    g = parser.add_argument_group("bank")
    g.add_argument("--bank", metavar="PATH", help="embedded bank directory (default: $SWARM_SONA_BANK_PATH or "
                                                  "~/.local/share/swarm_sona/bank)")
    g.add_argument("--url", help="use a Qdrant server at this URL instead (API key from $QDRANT_API_KEY)")
    g.add_argument("--collection", default="reasoning_bank", help="Qdrant collection (with --url)")
    g.add_argument("--embedder", default=None,
                   help="embedder for a new bank: 'hashing' (default), 'hashing-v1-<dim>' or "
                        "'sentence-transformers:<model>'; an existing bank always uses the one it records")


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if args.url:
        if args.bank:
            raise ValueError("give --bank or --url, not both")
        return {"backend": "qdrant", "url": args.url, "collection": args.collection}
    cfg: dict[str, Any] = {"backend": "edge"}
    if args.bank:
        cfg["path"] = args.bank
    return cfg


def bank_exists(args: argparse.Namespace) -> bool:
    """True when the embedded bank at ``--bank`` (or the default path) was created already;
    always True with ``--url`` (the server decides). An explicit ``--bank`` that is not a bank
    raises ``ValueError`` naming the path (a typo must not read as an empty bank)."""
    if args.url:
        return True
    from swarm_sona.bank import default_bank_path

    path = Path(args.bank).expanduser() if args.bank else default_bank_path()
    if (path / "bank.json").exists():
        return True
    if args.bank:
        why = "no such directory" if not path.exists() else "not a directory" if not path.is_dir() \
            else "no bank.json in it"
        raise ValueError(f"--bank {args.bank}: not a ReasoningBank ({why})")
    return False


def open_bank(args: argparse.Namespace) -> Any:
    """Open (or create) the bank the arguments name."""
    from swarm_sona.bank import ReasoningBank

    return ReasoningBank(_config(args), embedder=args.embedder)


def fail(command: str, message: object, code: int) -> int:
    """Print ``swarm-sona COMMAND: error: MESSAGE`` (one line) and return ``code``."""
    print(f"swarm-sona {command}: error: {str(message).splitlines()[0] if str(message) else ''}", file=sys.stderr)
    return code


def with_bank(args: argparse.Namespace, command: str, action: Callable[[Any], Any]) -> tuple[int, Any]:
    """Open the bank, run ``action(bank)``, close it. Returns ``(0, result)``, or ``(2, None)`` for bad
    input (``ValueError``, e.g. a reward outside [0, 1]) and ``(1, None)`` when the bank cannot be
    used (held by another process, server unreachable), after a one-line message on stderr."""
    from swarm_sona.bank import BankError

    try:
        bank = open_bank(args)
        try:
            return 0, action(bank)
        finally:
            bank.close()
    except ValueError as exc:  # BankInputError, ConfigError, EmbedderError
        return fail(command, exc, 2), None
    except BankError as exc:
        return fail(command, exc, 1), None
