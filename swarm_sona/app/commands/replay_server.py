"""``swarm-sona replay-server``: an OpenAI-compatible endpoint answering from recorded outcomes.

Binds 127.0.0.1 only (there is no option to bind elsewhere). Serves
``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /ledger`` (the server's own count of
requests, tokens, spend, 429s and 5xx per model) and ``POST /ledger/reset``, until Ctrl-C. On
start it prints one line: ``replay-server: serving <url> (<n> prompts, models ...)``, or with
``--json`` one JSON object ``{"url", "port", "prompts", "models"}``. See
:mod:`swarm_sona.executors.replay` for the answers and the traffic shaping.

Exit codes: 0 stopped by Ctrl-C/SIGTERM, 2 bad input (missing data folder, invalid option).

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["replay-server", "--data", "tests/data/routellm_slice", "--latency-median", "0.5"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import TYPE_CHECKING

from swarm_sona.app.commands.bank_args import fail
from swarm_sona.core.config import ConfigError

if TYPE_CHECKING:
    from swarm_sona.executors.replay import ReplayConfig

__all__ = ["add_arguments", "config_from_args", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona replay-server``."""
    parser.add_argument("--data", required=True, help="folder of RouteLLM-style CSV files (e.g. ../shared/data/routellm_mmlu)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: any free port)")
    parser.add_argument("--latency-median", type=float, default=0.8, help="median service latency, s (default 0.8)")
    parser.add_argument("--latency-p99", type=float, default=None, help="p99 service latency, s (default 6.25 x median)")
    parser.add_argument("--max-concurrency", type=int, default=256, help="requests served at once; more get 429")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of a 429, s (default 1)")
    parser.add_argument("--rate-limit-rpm", type=int, default=0,
                        help="requests per minute admitted per model, else 429 with Retry-After (default 0: no limit)")
    parser.add_argument("--rate-burst", type=int, default=0,
                        help="requests admitted at once above the rpm pace (default 0: one second's worth)")
    parser.add_argument("--rate-limit-tpm", type=int, default=0,
                        help="tokens per minute admitted per model, prompt + max_tokens (default 0: no limit)")
    parser.add_argument("--tpm-burst", type=int, default=0,
                        help="tokens admitted at once above the tpm pace (default 0: one second's worth)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 503 (default 0)")
    parser.add_argument("--model-error-rate", action="append", default=[], metavar="MODEL=RATE",
                        help="a model's own share answered 503, in [0, 1] (1 = the model is down); repeatable")
    parser.add_argument("--api-key-env", default=None,
                        help="environment variable holding the bearer key to require (default: no auth)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latency and error draws")
    parser.add_argument("--json", action="store_true", help="print the start-up line as JSON")


def config_from_args(args: argparse.Namespace) -> ReplayConfig:
    """The server's :class:`~swarm_sona.executors.replay.ReplayConfig` from the command's options
    (validated there: a bad value raises ``ConfigError`` naming the option).

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> cfg = config_from_args(p.parse_args(["--data", "d", "--rate-limit-rpm", "600",
        ...                                      "--model-error-rate", "gpt-4=1"]))
        >>> cfg.rate_limit_rpm, cfg.model_error_rates, cfg.latency_p99_s
        (600, {'gpt-4': 1.0}, 5.0)
    """
    from swarm_sona.executors.replay import ReplayConfig

    rates: dict[str, float] = {}
    for item in args.model_error_rate:
        model, sep, rate = str(item).rpartition("=")
        try:
            if not sep or not model:
                raise ValueError
            rates[model] = float(rate)
        except ValueError:
            raise ConfigError(f"--model-error-rate: expected MODEL=RATE (e.g. gpt-4=0.5), got {item!r}") from None
    p99 = args.latency_p99 if args.latency_p99 is not None else 6.25 * args.latency_median
    return ReplayConfig(data=args.data, port=args.port, latency_median_s=args.latency_median, latency_p99_s=p99,
                        max_concurrency=args.max_concurrency, retry_after_s=args.retry_after,
                        rate_limit_rpm=args.rate_limit_rpm, rate_burst=args.rate_burst,
                        rate_limit_tpm=args.rate_limit_tpm, tpm_burst=args.tpm_burst,
                        error_rate=args.error_rate, model_error_rates=rates, api_key_env=args.api_key_env,
                        seed=args.seed)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    from swarm_sona.executors.replay import ReplayServer
    from swarm_sona.executors.table import TableError

    try:
        cfg = config_from_args(args)
        server = ReplayServer(cfg)
    except (ConfigError, TableError) as exc:
        return fail("replay-server", exc, 2)
    if cfg.api_key_env and server._required_key() is None:
        return fail("replay-server", f"--api-key-env {cfg.api_key_env}: that environment variable is not set", 2)

    async def main() -> None:
        import threading

        ready = threading.Event()
        task = asyncio.ensure_future(server.serve(ready))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            await task   # raises the start-up error
        models = list(server.table.models)
        info = {"url": server.base_url, "port": server.port, "prompts": len(server.table), "models": models}
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"replay-server: serving {info['url']} ({info['prompts']} prompts, models "
                  f"{', '.join(models)}); ledger at http://127.0.0.1:{server.port}/ledger", flush=True)
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(main())
    except OSError as exc:
        return fail("replay-server", exc, 2)
    except KeyboardInterrupt:
        pass
    print("replay-server: stopped", file=sys.stderr)
    return 0
