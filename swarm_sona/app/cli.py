"""The ``swarm-sona`` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only maps names to modules and imports just the one that
is used (so ``swarm-sona retrieve`` never pays for importing Ray).

Exit codes: 0 success, 1 the operation failed, 2 bad arguments or bad input (one-line reason
on stderr), 130 interrupted (Ctrl-C), 141 the reader of stdout went away (e.g. ``| head``).

Logging: warnings and errors on stderr by default; ``-v`` adds info, ``-vv`` debug, ``-q``
keeps errors only; ``SWARM_SONA_LOG_LEVEL`` (a level name such as ``INFO``, or a number) sets
the default. ``--log-format json`` (or ``SWARM_SONA_LOG_FORMAT=json``) writes each record as one
JSON object per line, with the trace and span ids of the current span
(:mod:`swarm_sona.core.log_format`). The global options go before the command: ``swarm-sona -v run``.

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["--version"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence

import swarm_sona
from swarm_sona.core.log_format import LOG_FORMATS, log_format, log_formatter

__all__ = ["main", "COMMANDS", "BENCHMARKS", "log_level", "configure_logging"]

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("swarm_sona.app.commands.run", "run a swarm job (local Ray + embedded bank by default)"),
    "submit": ("swarm_sona.app.commands.submit", "submit a swarm job to a Ray cluster (Job Submission API)"),
    "status": ("swarm_sona.app.commands.job_status", "show the status of a submitted job"),
    "stop": ("swarm_sona.app.commands.job_stop", "stop a submitted job"),
    "retrieve": ("swarm_sona.app.commands.retrieve", "retrieve patterns from a ReasoningBank"),
    "store": ("swarm_sona.app.commands.store", "store a pattern into a ReasoningBank"),
    "migrate": ("swarm_sona.app.commands.migrate", "upgrade checkpoints on disk to the current schema versions"),
    "config": ("swarm_sona.app.commands.config_show",
               "config show [SPEC]: the effective config of a run, each value's source and doc (secrets withheld)"),
    "completion": ("swarm_sona.app.commands.completion", "print a bash or zsh completion script"),
    "data": ("swarm_sona.app.commands.data_fetch",
             "data fetch routellm DIR: download RouteLLM's MMLU outcomes, verified by checksums"),
    "info": ("swarm_sona.app.commands.info", "show this installation: version, kernels, Ray, bank location and size, extras"),
    "doctor": ("swarm_sona.app.commands.doctor", "check an embedded ReasoningBank: patterns lost or skipped since its last flush"),
    "replay-server": ("swarm_sona.app.commands.replay_server",
                      "serve recorded LLM outcomes over the OpenAI protocol on 127.0.0.1 (tests, benchmarks)"),
}

BENCHMARKS: dict[str, tuple[str, str]] = {
    "learning": ("swarm_sona.bench.learning", "instant-loop step, forward, MicroLoRA apply (us)"),
    "continual": ("swarm_sona.bench.continual", "continual learning on digits: naive vs EWC++ vs replay vs joint"),
    "bank": ("swarm_sona.bench.bank", "ReasoningBank filtered top-k latency, insert rate, recall"),
    "bank-faiss": ("swarm_sona.bench.bank_faiss", "bank cache filtered top-k vs FAISS flat / IVF / HNSW32 (recall, p50/p99)"),
    "routing": ("swarm_sona.bench.routing", "router on real RouteLLM MMLU outcomes (APGR, CPT)"),
    "ablation": ("swarm_sona.bench.ablation", "engine components on/off on real RouteLLM outcomes (APGR, CPT, paired seeds)"),
    "shift": ("swarm_sona.bench.shift", "forgetting on RouteLLM subject groups A -> B -> A, with and without EWC++"),
    "kernels": ("swarm_sona.bench.kernels", "native C kernels vs numpy reference"),
    "swarm": ("swarm_sona.bench.swarm", "swarm throughput and sharing on/off on Ray"),
    "scale": ("swarm_sona.bench.scale", "sync cost vs swarm size (star / hierarchical / gossip), actors' memory and start-up"),
    "llm": ("swarm_sona.bench.llm", "LLM calls in the swarm vs the replay endpoint's capacity (concurrent vs one at a time)"),
}


class _UsageError(Exception):
    pass


def _attach(parser: argparse.ArgumentParser, module: str) -> None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("swarm_sona"):
            raise _UsageError(f"this build has no {module.rsplit('.', 1)[-1]!r} command yet") from exc
        raise
    mod.add_arguments(parser)
    parser.set_defaults(_run=mod.run)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The argument parser; only the module of the command named in ``argv`` is imported."""
    parser = argparse.ArgumentParser(prog="swarm-sona", description="Self-optimizing agent swarms on Ray.")
    parser.add_argument("--version", action="version", version=f"swarm-sona {swarm_sona.__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="text (default, or SWARM_SONA_LOG_FORMAT) or json: one JSON object per line with "
                             "time, level, logger, message and the current span's trace_id/span_id")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    valued = {i + 1 for i, a in enumerate(argv) if a == "--log-format"}   # its value is not the command
    positional = [a for i, a in enumerate(argv) if not a.startswith("-") and i not in valued]
    chosen = positional[0] if positional else None
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == chosen:
            _attach(sp, module)
    bench = sub.add_parser("bench", help="benchmarks (sizes, median, p99, ratio to numpy)",
                           description="Benchmarks: each prints sizes, median, p99 and a ratio to a baseline.")
    bsub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    chosen_b = positional[1] if chosen == "bench" and len(positional) > 1 else None
    for name, (module, help_) in BENCHMARKS.items():
        sp = bsub.add_parser(name, help=help_, description=help_)
        if name == chosen_b:
            _attach(sp, module)
    return parser


def log_level(verbose: int = 0, quiet: bool = False, environ: Mapping[str, str] | None = None) -> int:
    """The log level for the options and ``SWARM_SONA_LOG_LEVEL`` (a ValueError names a bad value).

    Example:
        >>> log_level(), log_level(1), log_level(2), log_level(quiet=True), log_level(environ={"SWARM_SONA_LOG_LEVEL": "info"})
        (30, 20, 10, 40, 20)
    """
    env = os.environ if environ is None else environ
    raw = (env.get("SWARM_SONA_LOG_LEVEL") or "").strip()
    if raw:
        if raw.isdigit():
            base = int(raw)
        else:
            named = logging.getLevelNamesMapping().get(raw.upper())
            if named is None:
                raise ValueError(f"SWARM_SONA_LOG_LEVEL={raw!r}: not a log level (DEBUG, INFO, WARNING, ERROR or a number)")
            base = named
    else:
        base = logging.WARNING
    if quiet:
        return max(base, logging.ERROR)
    return max(logging.DEBUG, base - 10 * verbose) if verbose else base


def configure_logging(*, verbose: int = 0, quiet: bool = False, fmt: str | None = None) -> None:
    """Send log records at :func:`log_level` and above to stderr (once per process), in the format
    :func:`~swarm_sona.core.log_format.log_format` chooses from ``fmt`` and ``SWARM_SONA_LOG_FORMAT``."""
    level = log_level(verbose, quiet)
    formatter = log_formatter(log_format(fmt))
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swarm-sona`` console script; returns the exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`swarm-sona status ... | head`): no traceback, and no second
        # error when Python flushes stdout at exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
    except _UsageError as exc:
        print(f"swarm-sona: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        configure_logging(verbose=args.verbose, quiet=args.quiet, fmt=args.log_format)
    except ValueError as exc:
        print(f"swarm-sona: error: {exc}", file=sys.stderr)
        return 2
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "benchmark", None) and getattr(args, "json", False):
            from swarm_sona.bench.timing import json_stdout

            with json_stdout():   # stdout carries the one JSON object, Ray's messages go to stderr
                return int(run(args) or 0)
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("swarm-sona: interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:  # ConfigError, CodecError, bad input of every kind
        print(f"swarm-sona: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # a ConnectionError too, but the reader went away: handled in main()
    except ConnectionError as exc:  # a Ray address or server that cannot be reached
        print(f"swarm-sona: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
