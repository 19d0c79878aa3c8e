"""Shared test fixtures.

Ray tests: one session per module, 127.0.0.1 only, no dashboard: the module-scoped
``ray_session`` fixture here (a module that needs it for every test sets
``pytestmark = pytest.mark.usefixtures("ray_session")``). A module may set ``RAY_ENV``
(environment variables set before Ray starts, inherited by its workers); ``local_ray`` is the
same start-up (fixture ``start_local_ray``) for a fixture that needs a ``runtime_env`` of its own.

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


@contextlib.contextmanager
def local_ray(*, env: dict[str, str] | None = None, runtime_env: dict | None = None) -> Iterator[object]:
    """A local Ray for tests: 2 CPUs, 127.0.0.1, no dashboard, actor logs kept from the driver;
    ``env`` is set before it starts (its workers inherit it). Yields the ``ray`` module."""
    ray = pytest.importorskip("ray")
    os.environ.update(env or {})
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             **({"runtime_env": runtime_env} if runtime_env else {}))
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_session(request):
    """One local Ray for the test module (:func:`local_ray`, with the module's ``RAY_ENV``)."""
    with local_ray(env=getattr(request.module, "RAY_ENV", None)) as ray:
        yield ray


@pytest.fixture(scope="session")
def start_local_ray():
    """``with start_local_ray(env=..., runtime_env=...) as ray: ...`` (:func:`local_ray`), for a
    module fixture that needs a Ray of its own shape."""
    return local_ray


@pytest.fixture(scope="session")
def serve_http():
    """``with serve_http(Handler) as base_url: ...``: a throwaway HTTP server on loopback."""
    return _serve_on_loopback
