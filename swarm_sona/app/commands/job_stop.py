"""``swarm-sona stop JOB``: stop a submitted swarm job (Ray Job Submission API).

Asks Ray to stop the job (SIGTERM to its driver, then SIGKILL); ``--wait`` blocks until it
has ended. Exit code 0 when the stop was requested (or the job had already ended), 1 when
the Job API cannot be reached or the job does not exist. Address and auth token: see
:mod:`swarm_sona.app.commands.job_client`.

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["stop", "raysubmit_abc", "--address", "http://127.0.0.1:8265"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
import time

from swarm_sona.app.commands.job_client import (
    TERMINAL,
    JobAPIError,
    add_connection_arguments,
    fail,
    job_api,
    status_name,
)

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona stop``."""
    parser.add_argument("job", help="job (submission) id")
    add_connection_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="wait until the job has ended")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="--wait at most this long (60 s)")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona stop``."""
    try:
        with job_api(args) as client:
            requested = client.stop_job(args.job)
            status = status_name(client.get_job_status(args.job))
            deadline = time.monotonic() + args.timeout
            while args.wait and status not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.5)
                status = status_name(client.get_job_status(args.job))
    except JobAPIError as exc:
        return fail(exc)
    what = "stop requested" if requested else "already ended"
    print(f"{args.job}: {what}; status {status}")
    if args.wait and status not in TERMINAL:
        sys.stderr.write(f"swarm-sona: job {args.job} still {status} after {args.timeout:g} s\n")
        return 1
    return 0
