"""The replay server: the aiohttp handlers of the OpenAI chat-completions protocol and the serving thread.

``POST /v1/chat/completions`` answers from the outcome table
(:mod:`~swarm_sona.executors.replay.answers`) after the shaped latency, admission and faults
(:mod:`~swarm_sona.executors.replay.faults`); ``GET /v1/models`` lists the table's models;
``GET /ledger`` / ``POST /ledger/reset`` read and zero the server's own ledger. aiohttp is an
optional dependency, imported when the server starts.

Example:
    >>> from swarm_sona.executors.replay.config import ReplayConfig
    >>> srv = ReplayServer(ReplayConfig(data="tests/data/routellm_slice", latency_median_s=0, latency_p99_s=0))
    >>> url = srv.start()
    >>> url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    True
    >>> srv.stop()
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarm_sona.core.config import resolve_secret
from swarm_sona.executors.replay.answers import ReplayAnswers, stable_hash
from swarm_sona.executors.replay.config import ReplayConfig
from swarm_sona.executors.replay.faults import TrafficShaper
from swarm_sona.executors.replay.ledger import InFlightProfile, Ledger, LedgerDict, ModelLedger, in_flight_profile
from swarm_sona.executors.table import ROUTELLM_PRICES, RoutingTable, load_routing_table
from swarm_sona.executors.tokens import count_chat_tokens, count_tokens

__all__ = ["ReplayServer"]


def _error(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None) -> Any:
    from aiohttp import web

    return web.json_response({"error": {"message": message, "type": kind, "code": status}},
                             status=status, headers=headers)


def _completion(model: str, prompt: str, text: str, pt: int, ct: int) -> dict[str, Any]:
    return {"id": f"chatcmpl-replay-{stable_hash(time.time_ns(), prompt) % 10**12}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}


@dataclass
class _Admission:
    status: int                        # 0 = admitted
    retry_after: float | None = None   # with a 429
    delay: float = 0.0
    fail: bool = False
    reason: str = ""                   # of a 429


class ReplayServer:
    """The replay endpoint (see :mod:`swarm_sona.executors.replay`); ``start()`` serves from a background thread.

    Example:
        >>> from swarm_sona.executors.replay.config import ReplayConfig
        >>> ReplayServer(ReplayConfig(data="tests/data/routellm_slice")).port is None
        True
    """

    def __init__(self, config: ReplayConfig, table: RoutingTable | None = None) -> None:
        self.config = config
        self.table = table if table is not None else load_routing_table(config.data)
        self.answers = ReplayAnswers(self.table)
        prices = dict(ROUTELLM_PRICES)
        prices.update(config.prices)
        self.prices = {m: float(prices.get(m, 0.0)) for m in self.table.models}
        self.shaper = TrafficShaper(config)
        self._ledger = self._new_ledger(0)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    def answer(self, prompt: str, model: str) -> tuple[str, bool]:
        """The reply to ``prompt`` from ``model`` and whether the prompt is in the table."""
        return self.answers.answer(prompt, model)

    def _required_key(self) -> str | None:
        return resolve_secret(self.config.api_key, self.config.api_key_env)

    # ---- handlers ---------------------------------------------------------------------------
    @staticmethod
    async def _parse(request: Any) -> tuple[str, list[Any], str, int]:
        body = await request.json()
        model, messages, max_tokens = body["model"], body["messages"], body.get("max_tokens") or 0
        if not isinstance(model, str) or not isinstance(messages, list) or not messages \
                or isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError
        user = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return model, messages, user[-1] if user and isinstance(user[-1], str) else "", max_tokens

    def _admit(self, model: str, mled: ModelLedger, authorization: str, charge: float) -> _Admission:
        """Auth, model, concurrency cap, requests/min and tokens/min (``charge`` tokens), in that
        order (under the lock)."""
        key, led = self._required_key(), self._ledger
        mled.requests += 1
        if key and authorization != f"Bearer {key}":
            mled.unauthorized += 1
            return _Admission(401)
        if model not in self.answers.column:
            led.bad_requests += 1
            return _Admission(404)
        if led.in_flight >= self.config.max_concurrency:
            mled.rate_limited += 1
            return _Admission(429, self.config.retry_after_s, reason=f"{self.config.max_concurrency} requests in flight")
        refused = self.shaper.admit(model, time.monotonic(), charge)
        if refused is not None:
            mled.rate_limited += 1
            if refused.limit == "tpm":
                mled.tokens_limited += 1
                return _Admission(429, refused.retry_after,
                                  reason=f"{self.config.rate_limit_tpm} tokens per minute for {model}")
            return _Admission(429, refused.retry_after,
                              reason=f"{self.config.rate_limit_rpm} requests per minute for {model}")
        led.change(+1, time.monotonic())
        return _Admission(0, delay=self.shaper.latency(), fail=self.shaper.fails(model))

    def _refusal(self, adm: _Admission, model: str) -> Any:
        if adm.status == 401:
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        if adm.status == 404:
            return _error(404, f"The model {model!r} does not exist; this replay serves {self.answers.models}",
                          "invalid_request_error")
        return _error(429, f"Rate limit reached: {adm.reason}.", "rate_limit_error",
                      {"Retry-After": f"{adm.retry_after:g}"})

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        try:
            model, messages, prompt, max_tokens = await self._parse(request)
        except (ValueError, KeyError, TypeError, AttributeError):
            with self._lock:
                self._ledger.bad_requests += 1
            return _error(400, "body must be JSON with a model name, a non-empty messages list and "
                          "max_tokens (if given) an integer >= 0", "invalid_request_error")
        pt = count_chat_tokens(messages)
        charge = float(pt + max_tokens) if self.config.rate_limit_tpm else 0.0
        with self._lock:
            mled = self._ledger.of(model)
            adm = self._admit(model, mled, request.headers.get("Authorization", ""), charge)
        if adm.status:
            return self._refusal(adm, model)
        try:
            if adm.delay > 0:
                await asyncio.sleep(adm.delay)
            if adm.fail:
                with self._lock:
                    mled.server_errors += 1
                return _error(503, "The server is overloaded (replayed error).", "server_error")
            text, known = self.answers.answer(prompt, model)
            ct = count_tokens(text)
            with self._lock:
                if charge:   # the tokens/min charge corrected by the real completion (a 503 keeps it all)
                    self.shaper.settle(model, charge, float(pt + ct), time.monotonic())
                mled.ok += 1
                mled.prompt_tokens += pt
                mled.completion_tokens += ct
                mled.cost_usd += (pt + ct) * self.prices[model] / 1e6
                mled.unknown_prompts += 0 if known else 1
        finally:
            with self._lock:
                self._ledger.change(-1, time.monotonic())
        return web.json_response(_completion(model, prompt, text, pt, ct))

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        key = self._required_key()
        if key and request.headers.get("Authorization", "") != f"Bearer {key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "replay"} for m in self.table.models]})

    async def _ledger_get(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(self.ledger())

    async def _ledger_reset(self, request: Any) -> Any:
        from aiohttp import web

        self.reset_ledger()
        return web.json_response(self.ledger())

    def _app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/ledger", self._ledger_get)
        app.router.add_post("/ledger/reset", self._ledger_reset)
        return app

    # ---- ledger and serving -------------------------------------------------------------------
    def ledger(self) -> LedgerDict:
        """The server's own ledger (what ``GET /ledger`` returns)."""
        with self._lock:
            return self._ledger.to_dict(self.config.max_concurrency)

    def reset_ledger(self) -> None:
        """Zero the ledger (requests in flight stay counted in ``in_flight``)."""
        with self._lock:
            self._ledger = self._new_ledger(self._ledger.in_flight)

    def _new_ledger(self, in_flight: int) -> Ledger:
        timeline = [(time.monotonic(), in_flight)] if self.config.record_in_flight else None
        return Ledger(in_flight=in_flight, timeline=timeline)

    def in_flight_profile(self, *, start: float | None = None, end: float | None = None,
                          bin_s: float = 0.25) -> InFlightProfile:
        """How full the server's slots were since the last reset (``record_in_flight`` on):
        between ``start`` and ``end`` (``time.monotonic()`` seconds; default the first admission
        to the last completion), see :func:`~swarm_sona.executors.replay.ledger.in_flight_profile`."""
        if not self.config.record_in_flight:
            raise RuntimeError("in_flight_profile: the replay server keeps no timeline; "
                               "start it with ReplayConfig(record_in_flight=True)")
        with self._lock:
            events = list(self._ledger.timeline or [])
        if start is None and len(events) > 1:
            events = events[1:]   # the reset's own mark: the window opens at the first admission
        return in_flight_profile(events, self.config.max_concurrency, start=start, end=end, bin_s=bin_s)

    async def serve(self, ready: threading.Event | None = None) -> None:
        """Serve on 127.0.0.1 until cancelled (the CLI's loop)."""
        from aiohttp import web

        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.config.port, backlog=2048, reuse_address=True)
        await site.start()
        self.port = int(runner.addresses[0][1])
        if ready is not None:
            ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` (after start)."""
        if self.port is None:
            raise RuntimeError("the replay server is not running; call start() first")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 10.0) -> str:
        """Serve from a daemon thread; returns :attr:`base_url`."""
        if self._thread is not None:
            return self.base_url
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop
        box: dict[str, BaseException] = {}

        def main() -> None:
            asyncio.set_event_loop(loop)
            self._task = loop.create_task(self.serve(ready))
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                box["error"] = exc
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="replay-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or "error" in box:
            self.stop()
            raise RuntimeError(f"the replay server did not start: {box.get('error', 'timed out')}")
        return self.base_url

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._thread is None or self._loop is None:
            return
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        self._thread = None
        self.port = None

    def __enter__(self) -> ReplayServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
