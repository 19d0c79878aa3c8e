"""``swarm-sona retrieve "TASK"``: the patterns most similar to a task (an agent's pre-task hook).

Prints the patterns best first as guidance text, or a JSON list with ``--json`` (each pattern's
id, task, input, output, reward, success, agent, similarity, score, use counts, metadata).
Filters: ``--min-reward``, ``--success``, ``--agent`` (repeatable), ``--task-type``
(repeatable), ``--metadata JSON``, ``--threshold``; ``--mmr LAMBDA`` diversifies;
``--mark-used`` records the use of the returned patterns. A bank that does not exist yet gives
no patterns (exit 0) and is not created. Exit codes: 0 success, 1 the bank cannot be opened
(e.g. held by another process), 2 bad arguments (one-line reason on stderr).

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["retrieve", "fix the failing test", "--k", "5", "--min-reward", "0.85", "--json"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from swarm_sona.app.commands.bank_args import (
    add_bank_arguments,
    bank_exists,
    fail,
    parse_bool,
    parse_json_object,
    with_bank,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona retrieve``."""
    parser.add_argument("task", help="task text to find similar patterns for")
    parser.add_argument("--k", type=int, default=None, help="number of patterns (default: the bank's default_k, 1)")
    parser.add_argument("--min-reward", type=float, default=None, help="only patterns with reward >= this")
    parser.add_argument("--success", type=parse_bool, default=None, help="only successes (true) or failures (false)")
    parser.add_argument("--agent", action="append", default=None, help="only patterns of this agent (repeatable)")
    parser.add_argument("--task-type", action="append", default=None, help="only this task type (repeatable)")
    parser.add_argument("--metadata", type=parse_json_object, default=None,
                        help='metadata filter as JSON, e.g. \'{"lang": "py", "tier": {"gte": 2}}\'')
    parser.add_argument("--threshold", type=float, default=None, help="minimum cosine similarity in [-1, 1]")
    parser.add_argument("--mmr", type=float, default=None, help="diversify with MMR, lambda in [0, 1]")
    parser.add_argument("--mark-used", action="store_true", help="record that the returned patterns were used")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    add_bank_arguments(parser)


def _print_text(patterns: list) -> None:
    for i, p in enumerate(patterns, 1):
        who = f" agent={p.agent_id}" if p.agent_id else ""
        print(f"{i}. [similarity {p.similarity:.3f}, reward {p.reward:.2f}, "
              f"{'success' if p.success else 'failure'}{who}] {p.task}")
        for line in p.guidance().splitlines()[1:]:
            print(f"   {line}")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona retrieve``."""
    if args.k is not None and args.k < 1:
        return fail("retrieve", f"--k must be >= 1, got {args.k}", 2)
    try:
        exists = bank_exists(args)
    except ValueError as exc:
        return fail("retrieve", exc, 2)
    if not exists:
        print("swarm-sona retrieve: no ReasoningBank in the default location yet (store a pattern first)",
              file=sys.stderr)
        if args.json:
            print("[]")
        return 0

    def action(bank: Any) -> list:
        patterns = bank.retrieve_patterns(
            args.task, args.k, min_reward=args.min_reward, success=args.success, source_agents=args.agent,
            task_type=args.task_type, metadata=args.metadata, similarity_threshold=args.threshold, mmr=args.mmr)
        if args.mark_used and patterns:
            bank.mark_used([p.id for p in patterns])
        return patterns

    code, patterns = with_bank(args, "retrieve", action)
    if code:
        return code
    if args.json:
        print(json.dumps([p.to_dict() for p in patterns]))
    else:
        _print_text(patterns)
    return 0
