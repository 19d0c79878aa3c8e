"""``swarm-sona store``: store one pattern into a ReasoningBank (an agent's post-task hook).

``swarm-sona store --task T --input I --output O --reward R --success true|false
[--metadata JSON] [--agent-id A] [--task-type T] [--bank PATH] [--json]``. Prints the pattern's
id (content-derived: storing the same task/input/output again updates that pattern), or
``{"schema_version": 1, "id": ..., "count": ...}`` with ``--json``. Creates the bank if needed. Exit codes: 0
success, 1 the bank cannot be opened (e.g. held by another process), 2 bad arguments or bad
input such as a reward outside [0, 1] (one-line reason on stderr).

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["store", "--task", "t", "--input", "i", "--output", "o", "--reward", "0.9",
    ...       "--success", "true"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from swarm_sona.app.commands.bank_args import add_bank_arguments, fail, parse_bool, parse_json_object, with_bank

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona store``."""
    parser.add_argument("--task", required=True, help="the task text (what is embedded and searched)")
    parser.add_argument("--input", default="", help="what went in")
    parser.add_argument("--output", default="", help="what came out (the approach, or the failed one)")
    parser.add_argument("--reward", type=float, required=True, help="reward in [0, 1]")
    parser.add_argument("--success", type=parse_bool, required=True, help="true or false")
    parser.add_argument("--metadata", type=parse_json_object, default=None, help="JSON object stored with it")
    parser.add_argument("--agent-id", default=None, help="the agent that produced it")
    parser.add_argument("--task-type", default=None, help="task type, for filtering")
    parser.add_argument("--json", action="store_true", help='print {"id": ..., "count": ...}')
    add_bank_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona store``."""
    from swarm_sona.bank import BankInputError, Pattern

    try:  # validate before opening (and maybe creating) the bank
        Pattern.build(args.task, args.input, args.output, args.reward, args.success, args.metadata, args.agent_id,
                      task_type=args.task_type)
    except BankInputError as exc:
        return fail("store", exc, 2)

    def action(bank: Any) -> tuple[str, int]:
        pid = bank.store_pattern(args.task, args.input, args.output, args.reward, args.success, args.metadata,
                                 args.agent_id, task_type=args.task_type)
        return pid, bank.count()

    code, res = with_bank(args, "store", action)
    if code:
        return code
    pid, count = res
    print(json.dumps({"schema_version": 1, "id": pid, "count": count}) if args.json else pid)
    return 0
