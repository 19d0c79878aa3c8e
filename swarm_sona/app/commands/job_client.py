"""Connecting to a Ray cluster's Job Submission API (shared by ``submit``, ``status``, ``stop``).

Address: ``--address``, else ``RAY_API_SERVER_ADDRESS``, else ``RAY_ADDRESS`` when it is an
``http(s)://`` URL, else ``http://127.0.0.1:8265`` (a local head's dashboard).

Token authentication (Ray >= 2.52; on by default for new clusters in recent Ray): the
cluster's token is sent as ``Authorization: Bearer <token>``. It is looked up, first match
wins, in

1. ``--token-file PATH``,
2. ``RAY_AUTH_TOKEN`` (the token itself),
3. ``RAY_AUTH_TOKEN_PATH`` (a file holding it),
4. ``~/.ray/auth_token`` (where ``ray get-auth-token --generate`` and a local ``ray.init``
   write it).

For a remote cluster copy the head's token there (the launcher config in ``cluster/`` mounts
your local ``~/.ray/auth_token`` onto every node, so they agree), or export
``RAY_AUTH_TOKEN``. With no token found nothing is sent, which works with clusters that run
with ``RAY_AUTH_MODE=disabled``. The token is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["add_connection_arguments", "resolve_address", "find_token", "connect", "job_api", "fail", "explain",
           "status_name", "JobAPIError", "TERMINAL"]

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class JobAPIError(RuntimeError):
    """The Job API cannot be reached or refused the request (message says why and what to do)."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--address`` and ``--token-file``."""
    parser.add_argument("--address", metavar="URL",
                        help="the cluster's dashboard / Job API, e.g. http://HEAD:8265 (default: "
                             "RAY_API_SERVER_ADDRESS, RAY_ADDRESS if http(s), else http://127.0.0.1:8265)")
    parser.add_argument("--token-file", metavar="PATH",
                        help="file with the cluster's auth token (default: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, "
                             "~/.ray/auth_token)")


def resolve_address(address: str | None, environ: Any = None) -> str:
    """The Job API URL to use (see module docs).

    Example:
        >>> resolve_address(None, {"RAY_ADDRESS": "ray://x:10001"})
        'http://127.0.0.1:8265'
        >>> resolve_address("head:8265", {})
        'http://head:8265'
    """
    env = os.environ if environ is None else environ
    addr = address or env.get("RAY_API_SERVER_ADDRESS")
    if not addr:
        ra = env.get("RAY_ADDRESS", "")
        addr = ra if ra.startswith(("http://", "https://")) else "http://127.0.0.1:8265"
    if "://" not in addr:
        addr = "http://" + addr
    if not addr.startswith(("http://", "https://")):
        raise ValueError(f"--address: the Job API needs an http(s):// URL (the dashboard port, 8265), got {addr!r}")
    return addr.rstrip("/")


def _read_token(path: Path, where: str, *, required: bool) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if required:
            raise ValueError(f"{where}: {path} does not exist") from None
        return None
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
    if not text and required:
        raise ValueError(f"{where}: {path} is empty")
    return text or None


def find_token(token_file: str | None = None, environ: Any = None) -> tuple[str | None, str | None]:
    """``(token, where it came from)``; ``(None, None)`` when there is none (see module docs).

    An explicitly named file (``--token-file``, ``RAY_AUTH_TOKEN_PATH``) that is missing or
    empty is an error; a missing ``~/.ray/auth_token`` just means "no token".

    Example:
        >>> find_token(None, {"RAY_AUTH_TOKEN": " abc "})
        ('abc', 'RAY_AUTH_TOKEN')
    """
    env = os.environ if environ is None else environ
    if token_file:
        return _read_token(Path(token_file).expanduser(), "--token-file", required=True), "--token-file"
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser()
        return _read_token(path, "RAY_AUTH_TOKEN_PATH", required=True), "RAY_AUTH_TOKEN_PATH"
    token = _read_token(Path.home() / ".ray" / "auth_token", "~/.ray/auth_token", required=False)
    return (token, "~/.ray/auth_token") if token else (None, None)


def connect(args: argparse.Namespace) -> Any:
    """A ``JobSubmissionClient`` for ``args.address`` with the auth header when a token is found."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:  # pragma: no cover - ray[default] missing
        raise JobAPIError("the Job Submission API needs ray[default]: pip install 'swarm-sona[cluster]'") from exc
    address = resolve_address(getattr(args, "address", None))
    token, _ = find_token(getattr(args, "token_file", None))
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return JobSubmissionClient(address, headers=headers)
    except Exception as exc:
        raise JobAPIError(explain(exc, address, token is not None)) from exc


@contextmanager
def job_api(args: argparse.Namespace) -> Iterator[Any]:
    """A connected client for a ``with`` block; any failure inside becomes a :class:`JobAPIError`
    saying why and what to do."""
    client = connect(args)
    try:
        yield client
    except JobAPIError:
        raise
    except Exception as exc:
        raise JobAPIError(explain(exc, client.get_address(), True)) from exc


def fail(exc: BaseException) -> int:
    """Report a failed Job API operation on stderr; returns exit code 1."""
    sys.stderr.write(f"swarm-sona: error: {exc}\n")
    return 1


def explain(exc: BaseException, address: str, had_token: bool) -> str:
    """A one-paragraph reason for a failed Job API call, with the remedy."""
    text = str(exc)
    if "401" in text or "Unauthorized" in text or "Authentication required" in text:
        return (f"the Ray cluster at {address} requires its auth token and none was found; set RAY_AUTH_TOKEN, "
                "or put the head's token in ~/.ray/auth_token, or pass --token-file")
    if "403" in text or "Forbidden" in text or "Invalid authentication token" in text:
        return (f"the Ray cluster at {address} rejected the auth token"
                + (" (from RAY_AUTH_TOKEN / --token-file / ~/.ray/auth_token); use the head's token" if had_token
                   else ""))
    if isinstance(exc, ConnectionError) or "Failed to connect" in text or "Connection refused" in text:
        return f"cannot reach the Ray Job API at {address} ({text.splitlines()[0] if text else type(exc).__name__})"
    return f"Ray Job API at {address}: {text or type(exc).__name__}"


def status_name(status: Any) -> str:
    """``JobStatus.SUCCEEDED`` (or the plain string) -> ``'SUCCEEDED'``."""
    return str(getattr(status, "value", status))
