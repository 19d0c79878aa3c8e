"""The HTTP pool of a chat executor: a pooled ``httpx.Client`` for single calls, and an async
client on an I/O thread of its own (an event loop run forever) for batches.

The async client is aiohttp's ``ClientSession`` (wrapped by :class:`AiohttpClient` in the one
call the executor makes, ``await client.post(url, content=, headers=)``) when aiohttp is
installed, else ``httpx.AsyncClient``. Measured on a 2-core EPYC against the replay server,
3,000 POSTs at 256 outstanding: httpx 8.6-12.0 ms of client CPU per request (its pool's cost
grows with the connections it holds), aiohttp 0.41-0.44 ms, so an agent's I/O thread, not the
endpoint, was the bottleneck of ``bench llm`` with httpx.

Both pools are sized to the concurrency cap given when they are opened and kept alive between
calls (:meth:`HttpPool.submit` starts one coroutine there without waiting for it); nothing is
opened until first use, :meth:`HttpPool.close` closes both and stops the
thread (they reopen on the next call). A pool is never pickled: an executor shipped to a Ray
actor makes a fresh one there.

Example:
    >>> from swarm_sona.executors.http_pool import HttpPool
    >>> pool = HttpPool(timeout_s=1.0)
    >>> pool.close()   # nothing was opened: a no-op
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.util
import threading
import urllib.parse
import urllib.request
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["HttpPool", "AiohttpClient", "AsyncResponse"]

T = TypeVar("T")


class AsyncResponse:
    """A finished response of :class:`AiohttpClient`: ``status_code``, ``headers`` (case-
    insensitive) and the whole body as ``content`` bytes (the parts of ``httpx.Response`` the
    executor reads)."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: Any, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content


class AiohttpClient:
    """``httpx.AsyncClient``'s ``post(url, content=, headers=)`` on an aiohttp ``ClientSession``
    of at most ``max_connections`` keep-alive connections, opened in the running loop on first
    use. A proxy from the environment (``HTTP(S)_PROXY`` / ``NO_PROXY``, as httpx takes them) is
    looked up once per scheme and host, not per request (aiohttp's ``trust_env`` re-reads them
    and ``~/.netrc`` on a worker thread for every request: measured as most of the client's CPU).

    Example:
        >>> import asyncio
        >>> async def closed():
        ...     async with AiohttpClient(4, timeout_s=1.0) as c:
        ...         pass
        ...     return c.closed
        >>> asyncio.run(closed())
        True
    """

    def __init__(self, max_connections: int, timeout_s: float) -> None:
        self.max_connections = int(max_connections)
        self.timeout_s = float(timeout_s)
        self._session: Any = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self.closed = False

    def _open(self) -> Any:
        import aiohttp

        conn = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections,
                                    keepalive_timeout=30.0)
        return aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    def proxy_for(self, url: str) -> str | None:
        """The environment's proxy for ``url`` (None: connect directly), cached per scheme and host."""
        u = urllib.parse.urlsplit(url)
        key = (u.scheme, u.netloc)
        if key not in self._proxies:
            host = u.hostname or ""
            bypass = not host or urllib.request.proxy_bypass_environment(host)  # type: ignore[attr-defined]
            self._proxies[key] = None if bypass else urllib.request.getproxies_environment().get(u.scheme)
        return self._proxies[key]

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> AsyncResponse:
        """POST ``content``; the response once its whole body has arrived."""
        if self.closed:
            raise RuntimeError("AiohttpClient is closed")
        if self._session is None:
            self._session = self._open()
        async with self._session.post(url, data=content, headers=headers, proxy=self.proxy_for(url)) as r:
            body = await r.read()
            return AsyncResponse(r.status, r.headers, body)

    async def aclose(self) -> None:
        """Close the session and its connections."""
        self.closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> AiohttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _async_library() -> str:
    """The library batches run on: ``"aiohttp"`` when installed, else ``"httpx"``, else ``""``."""
    for name in ("aiohttp", "httpx"):
        if importlib.util.find_spec(name) is not None:
            return name
    return ""


def _limits(max_connections: int) -> Any:
    import httpx

    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                        keepalive_expiry=30.0)


class HttpPool:
    """Lazily opened sync and async HTTP clients (module docs); thread-safe.

    Example:
        >>> HttpPool(timeout_s=0.5).timeout_s
        0.5
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = float(timeout_s)
        self._lock = threading.Lock()
        self._client: Any = None
        self._aclient: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    def sync_client(self, max_connections: int) -> Any:
        """The pooled ``httpx.Client`` (opened on first use with ``max_connections``)."""
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(limits=_limits(max_connections), timeout=self.timeout_s)
            return self._client

    @staticmethod
    def prepare() -> str:
        """Import the async client's library now (``"aiohttp"`` or ``"httpx"``, the one
        :meth:`new_async_client` will use; ``""`` when neither is installed), so that the first
        batch does not pay for it.

        Done when an executor arrives in a process (its unpickling): an import that takes a
        second on a loaded machine, inside the first call, holds back the calls the rate
        limiter has already released, which then reach the endpoint together (measured: 16
        requests in 0.4 s at a leased 10/s, four agents, 2 cores under load; 429s followed).
        """
        name = _async_library()
        if name:
            importlib.import_module(name)
        return name   # "": neither installed, the first call says which module is missing

    def new_async_client(self, max_connections: int) -> Any:
        """A fresh async client (the caller closes it): :class:`AiohttpClient` when aiohttp is
        installed, else ``httpx.AsyncClient``."""
        if _async_library() == "aiohttp":
            return AiohttpClient(max_connections, self.timeout_s)
        import httpx

        return httpx.AsyncClient(limits=_limits(max_connections), timeout=self.timeout_s)

    def kept_async_client(self, max_connections: int) -> Any:
        """The kept-alive async client of the I/O thread (call from that thread's loop)."""
        if self._aclient is None:
            self._aclient = self.new_async_client(max_connections)
        return self._aclient

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                t = threading.Thread(target=loop.run_forever, name="openai-executor-io", daemon=True)
                t.start()
                self._loop, self._loop_thread = loop, t
                self._aclient = self._sem = None
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the I/O thread and block until it returns (not from a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError("run_many blocks; inside a running event loop use 'await executor.arun_many(...)'")
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the I/O thread; its future (done when it returns or raises)."""
        return asyncio.run_coroutine_threadsafe(coro, self._background_loop())

    def kept_semaphore(self, n: int) -> asyncio.Semaphore:
        """The I/O thread's semaphore of ``n`` slots (call from that thread's loop): the calls
        submitted one by one share it, so at most ``n`` of them are outstanding."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(n)
        return self._sem

    def close(self) -> None:
        """Close both pools and stop the I/O thread (they reopen on the next call)."""
        with self._lock:
            client, self._client = self._client, None
            loop, aclient, thread = self._loop, self._aclient, self._loop_thread
            self._loop = self._aclient = self._loop_thread = self._sem = None
        if client is not None:
            client.close()
        if loop is not None and not loop.is_closed():
            if aclient is not None:
                asyncio.run_coroutine_threadsafe(aclient.aclose(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(5)
            loop.close()

    def __reduce__(self) -> Any:   # never carries a connection: a copy is a fresh, closed pool
        return (HttpPool, (self.timeout_s,))
