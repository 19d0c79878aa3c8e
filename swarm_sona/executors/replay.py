"""A replay endpoint: an OpenAI-compatible chat-completions server answering from recorded outcomes.

``swarm-sona replay-server`` (and :class:`ReplayServer` in tests and benchmarks) binds
127.0.0.1 only and speaks the parts of the OpenAI protocol an executor uses:
``POST /v1/chat/completions`` and ``GET /v1/models``; ``GET /ledger`` returns the server's own
count of what it served (``POST /ledger/reset`` zeroes it), so a benchmark can compare the
client's tokens and spend with an independent count.

Answers. The last user message is looked up in a RouteLLM-style table
(:func:`~swarm_sona.executors.table.load_routing_table`): "did model M solve prompt P".

* Where the table records the response text (a ``<model>::response`` column), that text.
* Else, for a multiple-choice prompt (option lines ``A. ...``): RouteLLM's files record only
  whether the model was right, not the answer key, so the replay's key is a letter picked by a
  hash of the prompt (:func:`answer_key`; tasks built by :func:`replay_tasks` carry it as
  ``metadata["expected"]``). A model recorded right answers with the key letter, one recorded
  wrong with another letter, in one of a few prose forms ("The answer is (B) Glomerulus.").
* Else ``"Recorded outcome: correct."`` / ``"...incorrect."``.
* A prompt not in the table gets a hashed letter when it has options, else a fixed sentence
  (counted in the ledger's ``unknown_prompts``).
* A judge request (the prompt holds ``<task>...</task>`` and ``<answer>...</answer>``, the form
  :class:`~swarm_sona.executors.verifiers.JudgeVerifier` sends) is scored ``Score: 1`` when the
  candidate's letter is the key, else ``Score: 0``; flipped where the judge model is recorded
  wrong on that task.

``usage`` counts tokens of the actual texts with :func:`count_tokens` (GPT-style pre-tokenizer
pieces, one more token per 6 characters of a long piece, 4 tokens of overhead per message plus 3 per
reply, as OpenAI's cookbook counts chat messages): close to, not equal to, a real BPE count.

Traffic shaping. Latency is lognormal with the configured median and p99
(``sigma = ln(p99 / median) / 2.326``). At most ``max_concurrency`` requests are served at
once; one more is answered ``429`` with ``Retry-After`` at once. A share ``error_rate`` of the
admitted requests is answered ``503`` after their latency. With a key configured, a request
without ``Authorization: Bearer <key>`` gets ``401``.

Example:
    >>> import json, urllib.request
    >>> from swarm_sona.executors.replay import ReplayConfig, ReplayServer
    >>> cfg = ReplayConfig(data="tests/data/routellm_slice", latency_median_s=0.01, latency_p99_s=0.02)
    >>> with ReplayServer(cfg) as srv:  # doctest: +SKIP
    ...     models = json.load(urllib.request.urlopen(srv.base_url + "/models"))
    ...     srv.ledger()["requests"]
    0
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypedDict

from swarm_sona.core.config import ConfigBase, ConfigError, Secret, field_doc, resolve_secret
from swarm_sona.core.executor import Task
from swarm_sona.executors.table import ROUTELLM_PRICES, RoutingTable, load_routing_table
from swarm_sona.executors.verifiers import extract_choice, mc_options

__all__ = ["ReplayConfig", "ReplayServer", "ModelLedger", "LedgerDict", "count_tokens", "count_chat_tokens",
           "answer_key", "replay_tasks", "lognormal_sigma"]

_PIECE = re.compile(r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+(?!\S)|\s+""", re.UNICODE)
_JUDGE = re.compile(r"<task>\s*(.*?)\s*</task>.*?<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_Z99 = 2.3263478740408408   # standard normal quantile of 0.99


def count_tokens(text: str) -> int:
    """Approximate BPE token count of ``text``: GPT-style pieces, one more token per 6 characters of a long piece.

    Example:
        >>> count_tokens("The answer is (B) Glomerulus."), count_tokens("")
        (9, 0)
    """
    return sum(1 + (len(p.strip() or p) - 1) // 6 for p in _PIECE.findall(text))


def count_chat_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat ``messages``: each message's content + 4, plus 3 for the reply's start.

    Example:
        >>> count_chat_tokens([{"role": "user", "content": "Hi there"}])
        9
    """
    total = 3
    for m in messages:
        content = m.get("content", "")
        total += 4 + count_tokens(content if isinstance(content, str) else json.dumps(content))
    return total


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "little")


def answer_key(prompt: str) -> str | None:
    """The replay's answer key of a multiple-choice ``prompt`` (a letter picked by a hash), else None.

    Example:
        >>> answer_key("Which?\\nA. x\\nB. y\\nC. z\\nD. w\\nAnswer:") in "ABCD", answer_key("no options")
        (True, None)
    """
    opts = mc_options(prompt)
    if not opts:
        return None
    letters = sorted(opts)
    return letters[_h("key", prompt) % len(letters)]


def replay_tasks(table: RoutingTable) -> list[Task]:
    """The table's tasks, each with ``metadata["expected"]`` = :func:`answer_key` where it has one.

    Example:
        >>> t = load_routing_table("tests/data/routellm_slice")
        >>> tasks = replay_tasks(t)
        >>> len(tasks) == len(t), tasks[0].metadata["expected"] in "ABCD"
        (True, True)
    """
    out = []
    for t in table.tasks():
        key = answer_key(t.text)
        if key is not None:
            t.metadata["expected"] = key
        out.append(t)
    return out


def lognormal_sigma(median_s: float, p99_s: float) -> float:
    """The lognormal shape with this median and 99th percentile.

    Example:
        >>> round(lognormal_sigma(0.5, 0.5 * math.exp(2.3263478740408408)), 6)
        1.0
    """
    return math.log(p99_s / median_s) / _Z99


@dataclass(frozen=True)
class ReplayConfig(ConfigBase):
    """Settings of the replay endpoint (see the module docs).

    Example:
        >>> ReplayConfig(data="tests/data/routellm_slice", max_concurrency=64).max_concurrency
        64
        >>> ReplayConfig(data="x", latency_p99_s=0.1, latency_median_s=0.5)
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: replay.latency_p99_s: must be >= latency_median_s (0.5), got 0.1
    """

    _section: ClassVar[str] = "replay"

    data: str = field_doc("Folder of RouteLLM-style CSV files (prompt, then True/False per model).", "")
    port: int = field_doc("TCP port on 127.0.0.1 (0 = any free port).", 0)
    latency_median_s: float = field_doc("Median of the lognormal service latency, seconds (0 = no delay).", 0.8)
    latency_p99_s: float = field_doc("99th percentile of the service latency, seconds (>= the median).", 5.0)
    max_concurrency: int = field_doc("Requests served at once; one more is answered 429 with Retry-After.", 256)
    retry_after_s: float = field_doc("Retry-After sent with a 429, seconds (fractions allowed).", 1.0)
    error_rate: float = field_doc("Share of admitted requests answered 503 after their latency, in [0, 0.5].", 0.0)
    api_key_env: str | None = field_doc("Environment variable holding the bearer key required (None = no auth).",
                                        None)
    api_key: Secret | None = field_doc("A literal bearer key required (prefer api_key_env).", None)
    prices: dict[str, float] = field_doc("USD per 1M tokens per model (input = output); default RouteLLM's.",
                                         factory=dict)
    seed: int = field_doc("Seed of the latency and error draws.", 0)

    def __post_init__(self) -> None:
        if not isinstance(self.data, str) or not self.data:
            raise ConfigError("replay.data: give the folder of the recorded outcomes table (e.g. --data DIR)")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"replay.port: must be an integer in [0, 65535], got {self.port!r}")
        self._check_range("latency_median_s", 0.0)
        self._check_range("latency_p99_s", 0.0)
        if self.latency_p99_s < self.latency_median_s:
            raise ConfigError(f"replay.latency_p99_s: must be >= latency_median_s ({self.latency_median_s}), "
                              f"got {self.latency_p99_s}")
        if isinstance(self.max_concurrency, bool) or not isinstance(self.max_concurrency, int) \
                or self.max_concurrency < 1:
            raise ConfigError(f"replay.max_concurrency: must be an integer >= 1, got {self.max_concurrency!r}")
        self._check_range("retry_after_s", 0.0)
        self._check_range("error_rate", 0.0, 0.5)
        for m, p in self.prices.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
                raise ConfigError(f"replay.prices[{m!r}]: must be a finite number >= 0, got {p!r}")


@dataclass
class ModelLedger:
    """What the server did for one model (or in total)."""

    requests: int = 0            # chat-completion requests naming this model, whatever their answer
    ok: int = 0                  # answered 200
    prompt_tokens: int = 0       # of the 200 answers
    completion_tokens: int = 0
    cost_usd: float = 0.0        # tokens * price / 1e6 of the 200 answers
    rate_limited: int = 0        # 429
    server_errors: int = 0       # 503
    unauthorized: int = 0        # 401
    unknown_prompts: int = 0     # 200 answers to prompts not in the table


class LedgerDict(TypedDict):
    """``GET /ledger``: totals, per-model ledgers (:class:`ModelLedger` fields) and concurrency."""

    requests: int
    ok: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    rate_limited: int
    server_errors: int
    unauthorized: int
    unknown_prompts: int
    bad_requests: int
    in_flight: int
    max_in_flight: int
    max_concurrency: int
    models: dict[str, dict[str, Any]]


@dataclass
class _Ledger:
    models: dict[str, ModelLedger] = field(default_factory=dict)
    bad_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def of(self, model: str) -> ModelLedger:
        return self.models.setdefault(model, ModelLedger())

    def to_dict(self, cap: int) -> LedgerDict:
        tot = ModelLedger()
        for m in self.models.values():
            for k, v in asdict(m).items():
                setattr(tot, k, getattr(tot, k) + v)
        d: dict[str, Any] = asdict(tot)
        d.update(bad_requests=self.bad_requests, in_flight=self.in_flight, max_in_flight=self.max_in_flight,
                 max_concurrency=cap, models={k: asdict(v) for k, v in sorted(self.models.items())})
        return LedgerDict(**d)  # type: ignore[typeddict-item]


_FORMS_RIGHT = ("The answer is {L}.", "{L}. {T}", "Looking at the options, ({L}) {T} is correct.", "Answer: {L}")


class ReplayServer:
    """The replay endpoint (see the module docs); ``start()`` serves from a background thread.

    Example:
        >>> srv = ReplayServer(ReplayConfig(data="tests/data/routellm_slice", latency_median_s=0, latency_p99_s=0))
        >>> url = srv.start()
        >>> url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        True
        >>> srv.stop()
    """

    def __init__(self, config: ReplayConfig, table: RoutingTable | None = None) -> None:
        self.config = config
        self.table = table if table is not None else load_routing_table(config.data)
        prices = dict(ROUTELLM_PRICES)
        prices.update(config.prices)
        self.prices = {m: float(prices.get(m, 0.0)) for m in self.table.models}
        self._col = {m: j for j, m in enumerate(self.table.models)}
        self._row: dict[str, int] = {}
        for i, p in enumerate(self.table.prompts):
            self._row.setdefault(p.strip(), i)
        self._sigma = lognormal_sigma(config.latency_median_s, config.latency_p99_s) \
            if config.latency_median_s > 0 else 0.0
        self._rng = random.Random(config.seed)
        self._ledger = _Ledger()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self.port: int | None = None

    # ---- answers ---------------------------------------------------------------------------
    def answer(self, prompt: str, model: str) -> tuple[str, bool]:
        """The reply to ``prompt`` from ``model`` and whether the prompt is in the table."""
        judged = _JUDGE.search(prompt)
        if judged:
            return self._judge(judged.group(1), judged.group(2), model), True
        i = self._row.get(prompt.strip())
        opts = mc_options(prompt)
        if i is None:
            if opts:
                letters = sorted(opts)
                return "The answer is " + letters[_h("unknown", prompt, model) % len(letters)] + ".", False
            return "No recorded answer for this prompt.", False
        j = self._col[model]
        responses = self.table.responses.get(model) if self.table.responses else None
        if responses is not None and responses[i]:
            return responses[i], True
        right = bool(self.table.correct[i, j])
        if not opts:
            return f"Recorded outcome: {'correct' if right else 'incorrect'}.", True
        key = answer_key(prompt)
        assert key is not None
        others = sorted(set(opts) - {key})
        letter = key if right or not others else others[_h("wrong", prompt, model) % len(others)]
        form = _FORMS_RIGHT[_h("form", prompt, model) % len(_FORMS_RIGHT)]
        return form.format(L=letter, T=opts[letter]), True

    def _judge(self, task_text: str, candidate: str, model: str) -> str:
        key = answer_key(task_text)
        i = self._row.get(task_text.strip())
        if key is None:
            return "Score: 0.5"
        score = 1 if extract_choice(candidate, sorted(mc_options(task_text))) == key else 0
        if i is not None and not bool(self.table.correct[i, self._col[model]]):
            score = 1 - score
        return f"Score: {score}"

    def _latency(self) -> float:
        if self.config.latency_median_s <= 0:
            return 0.0
        return self.config.latency_median_s * math.exp(self._sigma * self._rng.gauss(0.0, 1.0))

    def _required_key(self) -> str | None:
        return resolve_secret(self.config.api_key, self.config.api_key_env)

    # ---- HTTP ------------------------------------------------------------------------------
    def _app(self) -> Any:
        from aiohttp import web

        def err(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None) -> Any:
            return web.json_response({"error": {"message": message, "type": kind, "code": status}},
                                     status=status, headers=headers)

        async def chat(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.json()
                model = body["model"]
                messages = body["messages"]
                if not isinstance(model, str) or not isinstance(messages, list) or not messages:
                    raise ValueError
                user = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
                prompt = user[-1] if user and isinstance(user[-1], str) else ""
            except (ValueError, KeyError, TypeError, AttributeError):
                with self._lock:
                    self._ledger.bad_requests += 1
                return err(400, "body must be JSON with a model name and a non-empty messages list",
                           "invalid_request_error")
            led = self._ledger
            key = self._required_key()
            with self._lock:
                mled = led.of(model)
                mled.requests += 1
                if key and request.headers.get("Authorization", "") != f"Bearer {key}":
                    mled.unauthorized += 1
                    status = 401
                elif model not in self._col:
                    led.bad_requests += 1
                    status = 404
                elif led.in_flight >= self.config.max_concurrency:
                    mled.rate_limited += 1
                    status = 429
                else:
                    status = 0
                    led.in_flight += 1
                    led.max_in_flight = max(led.max_in_flight, led.in_flight)
                    delay = self._latency()
                    fail = self.config.error_rate > 0 and self._rng.random() < self.config.error_rate
            if status == 401:
                return err(401, "Incorrect API key provided.", "invalid_request_error")
            if status == 404:
                return err(404, f"The model {model!r} does not exist; this replay serves {list(self._col)}",
                           "invalid_request_error")
            if status == 429:
                return err(429, f"Rate limit reached: {self.config.max_concurrency} requests in flight.",
                           "rate_limit_error", {"Retry-After": f"{self.config.retry_after_s:g}"})
            try:
                if delay > 0:
                    await asyncio.sleep(delay)
                if fail:
                    with self._lock:
                        mled.server_errors += 1
                    return err(503, "The server is overloaded (replayed error).", "server_error")
                text, known = self.answer(prompt, model)
                pt = count_chat_tokens(messages)
                ct = count_tokens(text)
                with self._lock:
                    mled.ok += 1
                    mled.prompt_tokens += pt
                    mled.completion_tokens += ct
                    mled.cost_usd += (pt + ct) * self.prices[model] / 1e6
                    mled.unknown_prompts += 0 if known else 1
            finally:
                with self._lock:
                    led.in_flight -= 1
            return web.json_response({
                "id": f"chatcmpl-replay-{_h(time.time_ns(), prompt) % 10**12}", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}})

        async def models(request: web.Request) -> web.StreamResponse:
            key = self._required_key()
            if key and request.headers.get("Authorization", "") != f"Bearer {key}":
                return err(401, "Incorrect API key provided.", "invalid_request_error")
            return web.json_response({"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "replay"} for m in self.table.models]})

        async def ledger(request: web.Request) -> web.StreamResponse:
            return web.json_response(self.ledger())

        async def reset(request: web.Request) -> web.StreamResponse:
            self.reset_ledger()
            return web.json_response(self.ledger())

        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", models)
        app.router.add_get("/ledger", ledger)
        app.router.add_post("/ledger/reset", reset)
        return app

    def ledger(self) -> LedgerDict:
        """The server's own ledger (what ``GET /ledger`` returns)."""
        with self._lock:
            return self._ledger.to_dict(self.config.max_concurrency)

    def reset_ledger(self) -> None:
        """Zero the ledger (requests in flight stay counted in ``in_flight``)."""
        with self._lock:
            self._ledger = _Ledger(in_flight=self._ledger.in_flight)

    async def serve(self, ready: threading.Event | None = None) -> None:
        """Serve on 127.0.0.1 until cancelled (the CLI's loop)."""
        from aiohttp import web

        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.config.port, backlog=2048, reuse_address=True)
        await site.start()
        self._runner = runner
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
            task = loop.create_task(self.serve(ready))
            self._task = task
            try:
                loop.run_until_complete(task)
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
        task = getattr(self, "_task", None)
        if task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(10)
        self._thread = None
        self.port = None

    def __enter__(self) -> ReplayServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
