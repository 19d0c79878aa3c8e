"""``swarm-sona status JOB``: the status of a submitted swarm job (Ray Job Submission API).

Prints the job's status, message, entrypoint and times (or ``--json``); ``--logs`` adds its
logs so far; ``--wait`` blocks until the job ends. The exit code follows the job's state:
0 for a job that SUCCEEDED or is still PENDING/RUNNING (with ``--wait``: only SUCCEEDED), 1 for
a job that FAILED or was STOPPED, and 1 when the Job API cannot be reached or the job does not
exist (with a one-line message). Address and auth token: see :mod:`swarm_sona.app.commands.job_client`.

Example:
    >>> from swarm_sona.app.cli import main
    >>> main(["status", "raysubmit_abc", "--address", "http://127.0.0.1:8265"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from swarm_sona.app.commands.job_client import (
    TERMINAL,
    JobAPIError,
    add_connection_arguments,
    fail,
    job_api,
    status_name,
)

__all__ = ["add_arguments", "run", "job_record", "exit_code"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona status``."""
    parser.add_argument("job", help="job (submission) id, as printed by swarm-sona submit")
    add_connection_arguments(parser)
    parser.add_argument("--logs", action="store_true", help="also print the job's logs so far")
    parser.add_argument("--wait", action="store_true", help="wait until the job has ended")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def job_record(info: Any) -> dict[str, Any]:
    """The fields of a Ray ``JobDetails``/``JobInfo`` that matter here, as plain data."""
    def ms(v: Any) -> str | None:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v / 1000)) if v else None

    return {"job_id": getattr(info, "submission_id", None) or getattr(info, "job_id", None),
            "status": status_name(info.status), "message": info.message, "entrypoint": info.entrypoint,
            "start_time": ms(info.start_time), "end_time": ms(info.end_time),
            "metadata": dict(info.metadata or {})}


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona status``."""
    try:
        with job_api(args) as client:
            info = client.get_job_info(args.job)
            while args.wait and status_name(info.status) not in TERMINAL:
                time.sleep(1.0)
                info = client.get_job_info(args.job)
            rec = job_record(info)
            if args.logs:
                rec["logs"] = client.get_job_logs(args.job)
    except JobAPIError as exc:
        return fail(exc)
    if args.json:
        print(json.dumps(rec, sort_keys=True))
    else:
        logs = rec.pop("logs", None)
        for k, v in rec.items():
            if v not in (None, {}, ""):
                print(f"{k:<11} {v}")
        if logs:
            print(logs, end="" if logs.endswith("\n") else "\n")
    return exit_code(rec["status"], wait=args.wait)


def exit_code(status: str, *, wait: bool = False) -> int:
    """The command's exit code for a job in ``status`` (see the module docs).

    Example:
        >>> exit_code("SUCCEEDED"), exit_code("RUNNING"), exit_code("FAILED"), exit_code("RUNNING", wait=True)
        (0, 0, 1, 1)
    """
    if status == "SUCCEEDED":
        return 0
    if status in TERMINAL or wait:
        return 1
    return 0
