"""OpenAIChatExecutor: run tasks on any OpenAI-compatible chat-completions endpoint.

No SDK dependency: ``httpx`` (pooled, keep-alive). Per call it sends
``POST {base_url}/chat/completions`` with the task text as the (last) user message, the
retrieved ReasoningBank patterns as untrusted context (below), and the router's model name.

Calls. ``executor(task, model, patterns)`` (the synchronous executor protocol) runs one call
on a pooled ``httpx.Client``. :meth:`OpenAIChatExecutor.run_many` runs a batch with up to
``max_concurrency`` requests outstanding on an async client (aiohttp, else httpx; its own I/O thread, the
connection pool sized to the cap and kept alive between batches) and returns the outcomes
in input order; :meth:`OpenAIChatExecutor.arun_many` is the same from an event loop. Nothing
is opened until the first call, and pickling (for Ray) carries no connection.

Timeouts and retries. ``timeout_s`` bounds each attempt (the whole request in ``run_many``;
each of connect, write, read and pool wait in a single call). What is retried and how long it
waits (``Retry-After`` honoured, jittered exponential backoff) is :mod:`~swarm_sona.executors.retry`.

Infrastructure failures are not task failures: a call that fails for good returns an
:class:`~swarm_sona.core.executor.Outcome` with ``error_kind`` set (the kinds:
:mod:`~swarm_sona.executors.errors`), reward 0, success False, cost 0, and the message
in ``metadata["error"]``; ``on_error="raise"`` raises :class:`ExecutorError` (with ``.kind``)
instead. :meth:`OpenAIChatExecutor.stats` counts calls, retries, 429s, errors by kind, tokens
and spend (:mod:`~swarm_sona.executors.usage`).

API key: referenced, not copied. ``api_key_env`` (default ``OPENAI_API_KEY``; None = send no
key) names the environment variable read at every request, in the process that makes it, so
an executor shipped to a Ray agent actor carries only the variable's name and the actor reads
its own environment (a local Ray passes the driver's environment, as it was when Ray started,
to its workers; on a cluster set the variable on the nodes or in the job's ``runtime_env``
``env_vars``). A literal ``api_key`` is still accepted: it is held as a
:class:`~swarm_sona.core.config.Secret` (``repr``/``str`` show ``***``) and travels to actors only in
memory (pickled by Ray), never into a file. ``extra_headers`` that carry credentials
(``Authorization``, ``api-key``, ...) are held the same way. ``base_url`` must not carry
credentials (``user:pass@`` or ``?api_key=``): that is refused.

Rate limits (``limits``: a :class:`~swarm_sona.executors.limits.RateLimitConfig`, a mapping of
one, or a :class:`~swarm_sona.executors.limits.RateLimiter`): every attempt first takes its
model's requests/min and tokens/min budget (estimated prompt tokens + ``max_tokens``, corrected
by ``usage``), waits its turn when the budget is spent, goes to the configured fallback model
while its own is cooled down (consecutive infrastructure failures) or over budget for longer than
``max_wait_s``, and a 429's ``Retry-After`` holds the model for every call of this process.
:meth:`OpenAIChatExecutor.lease_limits` makes the executor hold ``1/N`` of each budget (one of N
agents). An outcome answered by a fallback has ``metadata["fallback_from"]``.

Error messages (``ExecutorError``, ``Outcome.metadata["error"]``) hold at most
``max_error_chars`` (200) characters of a response body, scrubbed of the key and of anything
that looks like a credential (``Bearer ...``, ``sk-...``, ``key=...``, ``"api_key": "..."``).

Untrusted context: retrieved patterns are outputs of earlier tasks, i.e. data that anyone who
could run a task may have written. They go into one delimited block of untrusted data
(:mod:`~swarm_sona.executors.prompts`), which the system prompt tells the model to treat as
reference data, never as instructions. The block sits at the end of the system message (``patterns_role="system"``,
the default) or in a user message of its own before the task (``"user"``, which keeps
the data out of the system role entirely). At most ``max_pattern_chars`` (1,000) characters
per pattern and ``max_context_chars`` (4,000) for the whole block between the markers.

Reward: ``reward_fn(task, output_text, response_json) -> float | (float, bool)``. The
default: if ``task.metadata["expected"]`` is set, reward 1 when the expected answer occurs
in the output (case-insensitive) else 0; otherwise 1 when the model finished normally
(``finish_reason == "stop"``) with a non-empty answer. Success = reward >= 0.5 unless the
function says otherwise. Cost: from the response's token ``usage`` and ``prices``
(USD per 1M input / output tokens per model), else 0.

Example:
    >>> from swarm_sona.executors.openai_chat import OpenAIChatExecutor
    >>> ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key="sk-test", timeout_s=0.5, max_retries=0)
    >>> ex.endpoint
    'http://127.0.0.1:9/v1/chat/completions'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from swarm_sona.core.config import Secret, resolve_secret, scrub_secrets, split_url_secret
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.executors.attempts import CallAttempts
from swarm_sona.executors.errors import (
    ERROR_KINDS,
    CallError,
    ExecutorError,
    classify_response,
    classify_transport,
)
from swarm_sona.executors.http_pool import HttpPool
from swarm_sona.executors.limits import RateLimitConfig, RateLimiter
from swarm_sona.executors.prompts import (
    PATTERNS_CLOSE,
    PATTERNS_OPEN,
    chat_body,
    chat_messages,
    escape_markers,
    patterns_block,
)
from swarm_sona.executors.retry import RetryPolicy
from swarm_sona.executors.tokens import count_chat_tokens
from swarm_sona.executors.usage import ExecutorStats, UsageCounters, price_usage, response_usage

# the executor's public surface: its own names and those of the concepts its options speak of
__all__ = ["OpenAIChatExecutor", "ExecutorError", "ExecutorStats", "default_reward", "PATTERNS_OPEN",
           "PATTERNS_CLOSE", "escape_markers", "ERROR_KINDS"]

RewardFn = Callable[[Task, str, Mapping[str, Any]], "float | tuple[float, bool]"]
_SECRET_HEADERS = {"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie"}
Patterns = Sequence[list[dict[str, Any]]]


def default_reward(task: Task, output: str, response: Mapping[str, Any]) -> tuple[float, bool]:
    """Expected-answer match when ``task.metadata["expected"]`` is set, else normal completion.

    Example:
        >>> default_reward(Task("2+2?", metadata={"expected": "4"}), "The answer is 4.", {})
        (1.0, True)
    """
    expected = task.metadata.get("expected") if task.metadata else None
    if expected is not None:
        ok = str(expected).strip().lower() in output.lower()
        return (1.0 if ok else 0.0), ok
    try:
        finish = response["choices"][0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        finish = None
    ok = bool(output.strip()) and finish in ("stop", None)
    return (1.0 if ok else 0.0), ok


def _check_options(base_url: Any, api_key_env: Any, patterns_role: Any, timeout_s: Any, on_error: Any,
                   max_concurrency: Any, **sizes: Any) -> None:
    """Refuse bad constructor options with a message naming the option."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http(s) URL, got {scrub_secrets(str(base_url))!r}")
    if split_url_secret(base_url)[1] is not None:
        raise ValueError(f"base_url must not carry credentials (user:password@ or ?api_key=...): "
                         f"{split_url_secret(base_url)[0]!r}; give the key in the environment variable "
                         "api_key_env (default OPENAI_API_KEY)")
    if api_key_env is not None and not (isinstance(api_key_env, str) and re.match(r"^[A-Za-z_]\w*$", api_key_env)):
        raise ValueError(f"api_key_env must name an environment variable, got {api_key_env!r}")
    if patterns_role not in ("system", "user"):
        raise ValueError(f"patterns_role must be 'system' or 'user', got {patterns_role!r}")
    for name, v in sizes.items():
        lo = 0 if name == "max_error_chars" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ValueError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
    if on_error not in ("fail", "raise"):
        raise ValueError(f"on_error must be 'fail' or 'raise', got {on_error!r}")


class OpenAIChatExecutor:
    """Executor over an OpenAI-compatible ``/chat/completions`` endpoint (see module docs).

    ``on_error="fail"`` turns a permanent failure into a failed Outcome (reward 0, the error
    in ``metadata["error"]``) so a swarm keeps going; ``"raise"`` raises ExecutorError.

    Example:
        >>> ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None, max_retries=0, timeout_s=0.2)
        >>> ex(Task("hi"), "m", []).error_kind
        'network'
    """

    def __init__(self, base_url: str, api_key: str | Secret | None = None, *,
                 api_key_env: str | None = "OPENAI_API_KEY", timeout_s: float = 60.0, max_retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 20.0, temperature: float | None = 0.0,
                 max_tokens: int | None = 512, system_prompt: str = "You are a careful, concise assistant.",
                 reward_fn: RewardFn | None = None, prices: Mapping[str, tuple[float, float]] | None = None,
                 max_patterns: int = 3, max_pattern_chars: int = 1000, max_context_chars: int = 4000,
                 patterns_role: str = "system", max_error_chars: int = 200,
                 extra_headers: Mapping[str, str | Secret] | None = None,
                 extra_body: Mapping[str, Any] | None = None, on_error: str = "fail", max_concurrency: int = 64,
                 rate_limit_retries: int = 10, jitter: float = 0.25, seed: int | None = None,
                 limits: RateLimitConfig | RateLimiter | Mapping[str, Any] | None = None) -> None:
        _check_options(base_url, api_key_env, patterns_role, timeout_s, on_error, max_concurrency,
                       max_pattern_chars=max_pattern_chars, max_context_chars=max_context_chars,
                       max_error_chars=max_error_chars)
        self.retry = RetryPolicy(max_retries, rate_limit_retries, float(backoff_s), float(max_backoff_s), float(jitter))
        self.base_url = base_url.rstrip("/")
        self.endpoint = self.base_url + "/chat/completions"
        self.api_key: Secret | None = Secret(api_key) if api_key else None
        self.api_key_env = api_key_env
        self.timeout_s = float(timeout_s)
        self.temperature, self.max_tokens, self.system_prompt = temperature, max_tokens, system_prompt
        self.reward_fn = reward_fn or default_reward
        self.prices = dict(prices or {})
        self.max_patterns, self.max_pattern_chars, self.max_context_chars = max_patterns, max_pattern_chars, \
            max_context_chars
        self.patterns_role = patterns_role
        self.max_error_chars = max_error_chars
        self.extra_headers = {k: Secret(v) if k.lower() in _SECRET_HEADERS and isinstance(v, str) and v else v
                              for k, v in dict(extra_headers or {}).items() if v is not None}
        self.extra_body = dict(extra_body or {})
        self.on_error = on_error
        self.max_concurrency = max_concurrency
        self._rng = random.Random(seed)
        self._pool = HttpPool(self.timeout_s)
        self._usage = UsageCounters()
        self.limiter: RateLimiter | None = limits if isinstance(limits, RateLimiter) or limits is None \
            else RateLimiter(limits)

    def lease_limits(self, shares: int) -> None:
        """Hold ``1/shares`` of every rate-limit budget (this executor is one of ``shares`` agents).

        Example:
            >>> ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None, limits={"default": {"rpm": 600}})
            >>> ex.lease_limits(4); ex.limiter.config.shares
            4
        """
        if self.limiter is not None:
            self.limiter = self.limiter.leased(shares)

    @property
    def max_retries(self) -> int:
        """Retries after a connection error, a timeout, 408/409 or 5xx (:class:`RetryPolicy`)."""
        return self.retry.max_retries

    def __getstate__(self) -> dict[str, Any]:  # picklable for Ray (no open connections held)
        # api_key: a Secret (pickled in memory) or None; api_key_env: a name
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # a copy (Ray's, or an agent's executor copies) gets a fresh pool and counters of its own;
        # the HTTP library is imported now, in the receiving process, not inside its first call
        self._pool = HttpPool(self.timeout_s)
        self._pool.prepare()
        self._usage = copy.copy(state["_usage"])

    def _key(self) -> str | None:
        """The key for this request: the literal, else ``$api_key_env`` read now, in this process."""
        return resolve_secret(self.api_key, self.api_key_env)

    def patterns_block(self, patterns: list[dict[str, Any]]) -> str:
        """The retrieved patterns as one delimited block of untrusted data ('' when there are none),
        within this executor's caps (:func:`~swarm_sona.executors.prompts.patterns_block`).

        Example:
            >>> ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None)
            >>> print(ex.patterns_block([{"payload": {"task": "sum", "output": "used a loop", "reward": 1.0}}]))
            <retrieved_patterns>
            [1] (worked) sum: used a loop
            </retrieved_patterns>
        """
        return patterns_block(patterns, max_patterns=self.max_patterns, max_pattern_chars=self.max_pattern_chars,
                              max_context_chars=self.max_context_chars)

    def messages(self, task: Task, patterns: list[dict[str, Any]]) -> list[dict[str, str]]:
        """The chat messages (:func:`~swarm_sona.executors.prompts.chat_messages`) for ``task``."""
        return chat_messages(task.text, self.system_prompt, self.patterns_block(patterns), self.patterns_role)

    def _scrub(self, text: str, limit: int | None = None) -> str:
        known = [self.api_key, *(v for v in self.extra_headers.values() if isinstance(v, Secret))]
        env_key = resolve_secret(None, self.api_key_env)
        return scrub_secrets(text, *known, env_key, limit=limit)

    # ---- HTTP -------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   **{k: v.reveal() if isinstance(v, Secret) else v for k, v in self.extra_headers.items()}}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _judge(self, r: Any) -> dict[str, Any] | CallError:
        return classify_response(r.status_code, r.headers, r.content, self.endpoint, scrub=self._scrub,
                                 max_error_chars=self.max_error_chars)

    def _transport(self, exc: BaseException) -> CallError:
        return classify_transport(exc, self.endpoint, scrub=self._scrub, max_error_chars=self.max_error_chars)

    def _attempts(self, body: dict[str, Any]) -> CallAttempts:
        model, tokens = str(body.get("model", "")), 0.0
        if self.limiter is not None and self.limiter.counts_tokens(model):   # prompt + the completion allowed
            done = body.get("max_tokens") or self.limiter.config.completion_tokens
            tokens = float(count_chat_tokens(body.get("messages") or []) + done)
        return CallAttempts(model, tokens, self.retry, self._rng, self.limiter, self._usage)

    def _request(self, body: dict[str, Any]) -> tuple[dict[str, Any], CallAttempts]:
        """POST ``body`` (synchronously, pooled); the parsed answer and the call's attempts."""
        client = self._pool.sync_client(self.max_concurrency)
        att = self._attempts(body)
        while True:
            model, wait = att.before()
            if wait > 0:
                time.sleep(wait)
            if model is None:
                continue
            data = json.dumps({**body, "model": model}).encode("utf-8")
            try:
                res = self._judge(client.post(self.endpoint, content=data, headers=self._headers()))
            except Exception as exc:  # noqa: BLE001 - httpx's transport errors (and OSError) classified
                res = self._transport(exc)
            if not isinstance(res, CallError):
                att.answered(res)
                return res, att
            time.sleep(att.failed(res))

    async def _arequest(self, client: Any, body: dict[str, Any]) -> tuple[dict[str, Any], CallAttempts]:
        att = self._attempts(body)
        while True:
            model, wait = att.before()
            if wait > 0:
                await asyncio.sleep(wait)
            if model is None:
                continue
            data = json.dumps({**body, "model": model}).encode("utf-8")
            try:
                async with asyncio.timeout(self.timeout_s):
                    r = await client.post(self.endpoint, content=data, headers=self._headers())
                res = self._judge(r)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - httpx's / aiohttp's transport errors, TimeoutError
                res = self._transport(exc)
            if not isinstance(res, CallError):
                att.answered(res)
                return res, att
            await asyncio.sleep(att.failed(res))

    # ---- one task ----------------------------------------------------------------------------
    def _body(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> dict[str, Any]:
        return chat_body(model, self.messages(task, patterns or []), temperature=self.temperature,
                         max_tokens=self.max_tokens, extra_body=self.extra_body)

    def _failed(self, err: CallError, model: str, t0: float) -> Outcome:
        self._usage.error(err.kind)
        if self.on_error == "raise":
            raise ExecutorError(str(err), kind=err.kind) from None
        return Outcome(output="", reward=0.0, success=False, cost_usd=0.0, latency_s=time.perf_counter() - t0,
                       metadata={"error": str(err), "error_kind": err.kind, "model": model}, error_kind=err.kind)

    def _score(self, task: Task, output: str, resp: dict[str, Any]) -> tuple[float, bool]:
        scored = self.reward_fn(task, output, resp)
        if isinstance(scored, tuple):
            reward, success = float(scored[0]), bool(scored[1])
        else:
            reward = float(scored)
            success = reward >= 0.5
        return (min(1.0, max(0.0, reward)) if math.isfinite(reward) else 0.0), success

    def _finish(self, task: Task, resp: dict[str, Any], att: CallAttempts, t0: float) -> Outcome:
        model = att.model
        try:
            output = resp["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            err = CallError("response", self._scrub(f"{self.endpoint}: response has no choices[0].message.content",
                                                    self.max_error_chars + 120))
            return self._failed(err, model, t0)
        if not isinstance(output, str):
            err = CallError("response", self._scrub(f"{self.endpoint}: message content is not a string",
                                                    self.max_error_chars + 120))
            return self._failed(err, model, t0)
        latency = time.perf_counter() - t0
        reward, success = self._score(task, output, resp)
        usage = response_usage(resp)
        pt, ct, cost = price_usage(usage, self.prices.get(model, (0.0, 0.0)))
        self._usage.add(prompt_tokens=pt, completion_tokens=ct, cost_usd=cost)
        meta: dict[str, Any] = {"model": resp.get("model", model), "usage": usage, "retries": att.retries}
        if att.fallback_from is not None:
            meta["fallback_from"] = att.fallback_from
        return Outcome(output=output, reward=reward, success=success, cost_usd=cost, latency_s=latency, metadata=meta)

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        t0 = time.perf_counter()
        self._usage.add(calls=1)
        try:
            resp, att = self._request(self._body(task, model, patterns))
        except CallError as err:
            return self._failed(err, model, t0)
        return self._finish(task, resp, att, t0)

    async def acall(self, task: Task, model: str, patterns: list[dict[str, Any]], *, client: Any) -> Outcome:
        """One task on an async client (the async twin of ``__call__``): anything with
        ``await client.post(url, content=, headers=)`` answering ``status_code``, ``headers``
        and ``content``, as ``httpx.AsyncClient`` and :class:`~.http_pool.AiohttpClient` do."""
        t0 = time.perf_counter()
        self._usage.add(calls=1)
        try:
            resp, att = await self._arequest(client, self._body(task, model, patterns))
        except CallError as err:
            return self._failed(err, model, t0)
        return self._finish(task, resp, att, t0)

    # ---- many tasks --------------------------------------------------------------------------
    async def arun_many(self, tasks: Sequence[Task], models: str | Sequence[str],
                        patterns: Patterns | None = None, *, client: Any = None) -> list[Outcome]:
        """Run ``tasks`` with up to ``max_concurrency`` requests outstanding; outcomes in input order.

        ``models``: one name for all, or one per task; ``patterns``: one list per task (or None).
        ``client``: an async client to use, e.g. an ``httpx.AsyncClient`` (default: a pooled one
        made for this call, see :mod:`~.http_pool`).
        """
        names, pats = self._batch_args(tasks, models, patterns)
        sem = asyncio.Semaphore(self.max_concurrency)

        async def one(i: int, c: Any) -> Outcome:
            async with sem:
                return await self.acall(tasks[i], names[i], pats[i], client=c)

        if client is not None:
            return list(await asyncio.gather(*(one(i, client) for i in range(len(tasks)))))
        async with self._pool.new_async_client(self.max_concurrency) as c:
            return list(await asyncio.gather(*(one(i, c) for i in range(len(tasks)))))

    def _batch_args(self, tasks: Sequence[Task], models: str | Sequence[str],
                    patterns: Patterns | None) -> tuple[list[str], list[list[dict[str, Any]]]]:
        n = len(tasks)
        names = [models] * n if isinstance(models, str) else list(models)
        if len(names) != n:
            raise ValueError(f"run_many: {n} tasks but {len(names)} model names (give one name or one per task)")
        pats = [[] for _ in range(n)] if patterns is None else [list(p or []) for p in patterns]
        if len(pats) != n:
            raise ValueError(f"run_many: {n} tasks but {len(pats)} pattern lists (give None or one per task)")
        return names, pats

    async def _run_on_pool(self, tasks: Sequence[Task], models: str | Sequence[str],
                           patterns: Patterns | None) -> list[Outcome]:
        client = self._pool.kept_async_client(self.max_concurrency)
        return await self.arun_many(tasks, models, patterns, client=client)

    def run_many(self, tasks: Sequence[Task], models: str | Sequence[str],
                 patterns: Patterns | None = None) -> list[Outcome]:
        """Blocking :meth:`arun_many` on this executor's I/O thread and its kept-alive connection pool.

        Infrastructure failures are outcomes with ``error_kind`` set (never exceptions, unless
        ``on_error="raise"``). From inside a running event loop, ``await arun_many(...)`` instead.
        """
        self._batch_args(tasks, models, patterns)   # validate here, in the caller's thread
        return self._pool.run(self._run_on_pool(tasks, models, patterns))

    def submit(self, task: Task, model: str, patterns: list[dict[str, Any]] | None = None
               ) -> concurrent.futures.Future[Outcome]:
        """Start one task on the I/O thread's kept-alive pool and return at once: its future
        gives the :class:`Outcome` (exceptions as :meth:`__call__`'s). The calls submitted wait
        for one of ``max_concurrency`` slots, so no more than that are outstanding however many
        are submitted; an agent uses this to learn each result as it arrives.

        Example:
            >>> ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None, max_retries=0, timeout_s=0.2)
            >>> ex.submit(Task("hi"), "m").result().error_kind
            'network'
            >>> ex.close()
        """
        if not isinstance(model, str):
            raise TypeError(f"submit: model must be a model name (str), got {type(model).__name__}")
        return self._pool.submit(self._one_on_pool(task, model, list(patterns or [])))

    async def _one_on_pool(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        async with self._pool.kept_semaphore(self.max_concurrency):
            return await self.acall(task, model, patterns, client=self._pool.kept_async_client(self.max_concurrency))

    def stats(self) -> ExecutorStats:
        """What this executor (in this process) did so far."""
        return self._usage.snapshot()

    def close(self) -> None:
        """Close the connection pools and stop the I/O thread (the executor stays usable: they reopen)."""
        self._pool.close()

    def __repr__(self) -> str:
        key = "api_key=Secret('***'), " if self.api_key is not None else ""
        return (f"OpenAIChatExecutor({self.base_url!r}, {key}api_key_env={self.api_key_env!r}, "
                f"timeout_s={self.timeout_s}, max_retries={self.max_retries}, max_concurrency={self.max_concurrency})")
