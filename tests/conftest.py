"""Shared test fixtures.

Ray tests: one session per module, 127.0.0.1 only, no dashboard (each Ray test module has a
module-scoped ``ray_session`` fixture).

``swarm_sona`` is imported here, before pytest collects any doctest: with
``--import-mode=importlib`` a module whose doctests are collected first would otherwise be
executed a second time as a separate module object (two ``CheckpointError`` classes, two schema
registries).
"""

import contextlib
import os
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402

import swarm_sona  # noqa: E402,F401


@contextlib.contextmanager
def _serve_on_loopback(handler: type) -> Iterator[str]:
    """Serve ``handler`` (an ``http.server`` request handler class) on 127.0.0.1 in a thread;
    yields the ``http://127.0.0.1:PORT/v1`` base URL and stops the server afterwards."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="session")
def serve_http():
    """``with serve_http(Handler) as base_url: ...``: a throwaway HTTP server on loopback."""
    return _serve_on_loopback
