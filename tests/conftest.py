"""Shared test fixtures.

Ray tests: one session per module, 127.0.0.1 only, no dashboard: the module-scoped
``ray_session`` fixture here (a module that needs it for every test sets
``pytestmark = pytest.mark.usefixtures("ray_session")``). A module may set ``RAY_ENV``
(environment variables set before Ray starts, inherited by its workers); ``local_ray`` is the
same start-up (fixture ``start_local_ray``) for a fixture that needs a ``runtime_env`` of its own.

Endpoints on 127.0.0.1: ``serve_http`` (any ``http.server`` handler), ``replay`` (the replay
server over the RouteLLM test slice, zero latency unless told) and ``fake_openai`` (a fake
OpenAI endpoint with scripted replies that records what it was sent).

``swarm_sona`` is imported here, before pytest collects any doctest: with
``--import-mode=importlib`` a module whose doctests are collected first would otherwise be
executed a second time as a separate module object (two ``CheckpointError`` classes, two schema
registries).
"""

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402

import swarm_sona  # noqa: E402,F401
from swarm_sona.executors.replay import ReplayConfig, ReplayServer  # noqa: E402
from swarm_sona.executors.table import RoutingTable, load_routing_table  # noqa: E402

ROUTELLM_SLICE = Path(__file__).parent / "data" / "routellm_slice"
_TABLES: dict[str, RoutingTable] = {}


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
    for attempt in range(3):   # Ray gives its raylet a fixed 30 s to register: a machine at load 80 misses it
        try:
            # address "local": always a new Ray of its own, never a cluster found on the machine (a
            # `ray start` of another user, or a stale /tmp/ray/ray_current_cluster of a killed run)
            ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                     log_to_driver=False,
                     **({"runtime_env": runtime_env} if runtime_env else {}))
            break
        except Exception as exc:
            ray.shutdown()   # what the failed start left
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
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


@pytest.fixture
def memory_uri() -> Iterator[str]:
    """A fresh ``memory://`` prefix (a storage URI for checkpoints), removed afterwards: fsspec's
    memory filesystem is process-wide."""
    fsspec = pytest.importorskip("fsspec")
    import uuid

    root = f"memory://test-{uuid.uuid4().hex[:10]}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root[len("memory://"):]):
        fs.rm(root[len("memory://"):], recursive=True)


@pytest.fixture(scope="session")
def serve_http():
    """``with serve_http(Handler) as base_url: ...``: a throwaway HTTP server on loopback."""
    return _serve_on_loopback


@contextlib.contextmanager
def _replay_on_loopback(data: str | Path = ROUTELLM_SLICE, **options: Any) -> Iterator[ReplayServer]:
    """A started :class:`ReplayServer` over ``data`` (the table loaded once per folder), zero
    latency unless ``options`` say otherwise; stopped afterwards."""
    opts: dict[str, Any] = {"latency_median_s": 0.0, "latency_p99_s": 0.0}
    opts.update(options)
    table = _TABLES.get(str(data))
    if table is None:
        table = _TABLES[str(data)] = load_routing_table(data)
    srv = ReplayServer(ReplayConfig(data=str(data), **opts), table=table)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def replay():
    """``with replay(**ReplayConfig options) as srv: ...``: the replay server on loopback."""
    return _replay_on_loopback


Reply = Callable[[dict[str, Any]], "tuple[int, dict[str, Any] | None, dict[str, str]]"]


@dataclass
class FakeOpenAI:
    """A fake OpenAI endpoint: ``url``; ``seen``: each request as ``{path, auth, body}``;
    ``script``: ``(status, payload, headers)`` answered in order, then ``reply`` (default: a
    completion "answer to <last user message>: 42", usage 100 + 20 tokens; a payload of None
    is that completion too)."""

    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, dict[str, Any] | None, dict[str, str]]] = field(default_factory=list)
    reply: Reply | None = None

    @staticmethod
    def completion(body: dict[str, Any]) -> dict[str, Any]:
        user = body["messages"][-1]["content"]
        return {"model": body["model"], "choices": [{"message": {"role": "assistant",
                "content": f"answer to {user}: 42"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20}}

    def answer(self, request: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, payload, headers = self.script.pop(0) if self.script else \
            self.reply(request) if self.reply is not None else (200, None, {})
        return status, payload if payload is not None else self.completion(request["body"]), headers


@contextlib.contextmanager
def _fake_openai_on_loopback(reply: Reply | None = None) -> Iterator[FakeOpenAI]:
    ep = FakeOpenAI(reply=reply)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            request = {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            ep.seen.append(request)
            status, payload, headers = ep.answer(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    with _serve_on_loopback(Handler) as url:
        ep.url = url
        yield ep


@pytest.fixture(scope="session")
def fake_openai():
    """``with fake_openai(reply=None) as ep: ...``: a :class:`FakeOpenAI` endpoint on loopback;
    ``reply(request) -> (status, payload, headers)`` answers what the script does not."""
    return _fake_openai_on_loopback
