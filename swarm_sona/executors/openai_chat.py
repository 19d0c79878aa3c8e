"""OpenAIChatExecutor: run tasks on any OpenAI-compatible chat-completions endpoint.

Standard library only (``urllib``): no SDK dependency. Per call it sends
``POST {base_url}/chat/completions`` with the task text as the user message, the retrieved
ReasoningBank patterns as context in the system message, and the router's model name.
Timeouts, retries with exponential backoff (honouring ``Retry-After``) on connection
errors, timeouts, HTTP 408/409/429 and 5xx; other HTTP errors are not retried.

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

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from swarm_sona.executors.base import Outcome, Task

__all__ = ["OpenAIChatExecutor", "ExecutorError", "default_reward"]

RewardFn = Callable[[Task, str, Mapping[str, Any]], "float | tuple[float, bool]"]
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class ExecutorError(RuntimeError):
    """The endpoint failed for good (after retries) or returned something unusable."""


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


class OpenAIChatExecutor:
    """Executor over an OpenAI-compatible ``/chat/completions`` endpoint (see module docs).

    ``on_error="fail"`` turns a permanent failure into a failed Outcome (reward 0, the error
    in ``metadata["error"]``) so a swarm keeps going; ``"raise"`` raises ExecutorError.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 60.0, max_retries: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 20.0, temperature: float | None = 0.0,
                 max_tokens: int | None = 512, system_prompt: str = "You are a careful, concise assistant.",
                 reward_fn: RewardFn | None = None, prices: Mapping[str, tuple[float, float]] | None = None,
                 max_patterns: int = 3, extra_headers: Mapping[str, str] | None = None,
                 extra_body: Mapping[str, Any] | None = None, on_error: str = "fail") -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if on_error not in ("fail", "raise"):
            raise ValueError(f"on_error must be 'fail' or 'raise', got {on_error!r}")
        self.base_url = base_url.rstrip("/")
        self.endpoint = self.base_url + "/chat/completions"
        self.api_key = api_key
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.reward_fn = reward_fn or default_reward
        self.prices = dict(prices or {})
        self.max_patterns = max_patterns
        self.extra_headers = dict(extra_headers or {})
        self.extra_body = dict(extra_body or {})
        self.on_error = on_error
        self.calls = 0
        self.retries = 0

    def __getstate__(self) -> dict[str, Any]:  # picklable for Ray (no open connections held)
        return dict(self.__dict__)

    def messages(self, task: Task, patterns: list[dict[str, Any]]) -> list[dict[str, str]]:
        """The chat messages for a task: system prompt + retrieved patterns, then the task."""
        system = self.system_prompt
        lines = []
        for p in (patterns or [])[: self.max_patterns]:
            payload = p.get("payload", p) if isinstance(p, Mapping) else {}
            text = payload.get("content") or payload.get("output") or payload.get("description") or ""
            title = payload.get("task") or payload.get("title") or ""
            ok = "worked" if payload.get("success", (payload.get("reward") or 0) >= 0.5) else "failed"
            if title or text:
                lines.append(f"- ({ok}) {title}: {text}".strip())
        if lines:
            system += "\n\nApproaches from similar past tasks:\n" + "\n".join(lines)
        return [{"role": "system", "content": system}, {"role": "user", "content": task.text}]

    def _request(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json", **self.extra_headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempt = 0
        while True:
            req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - http(s) checked
                    raw = resp.read()
                try:
                    parsed = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise ExecutorError(f"{self.endpoint}: response is not JSON: {exc}") from exc
                if not isinstance(parsed, dict):
                    raise ExecutorError(f"{self.endpoint}: response is not a JSON object")
                return parsed, attempt
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace") if exc.fp else ""
                err = ExecutorError(f"{self.endpoint}: HTTP {exc.code}: {detail}".strip())
                if exc.code not in _RETRY_STATUS:
                    raise err from exc
                ra = exc.headers.get("Retry-After") if exc.headers else None
                try:
                    retry_after = float(ra) if ra is not None else None
                except ValueError:
                    retry_after = None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                err = ExecutorError(f"{self.endpoint}: {type(exc).__name__}: {reason}")
            if attempt >= self.max_retries:
                raise err
            delay = retry_after if retry_after is not None else self.backoff_s * (2 ** attempt)
            time.sleep(min(max(0.0, delay), self.max_backoff_s))
            attempt += 1
            self.retries += 1

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        body: dict[str, Any] = {"model": model, "messages": self.messages(task, patterns)}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body.update(self.extra_body)
        t0 = time.perf_counter()
        self.calls += 1
        try:
            resp, retries = self._request(body)
            try:
                output = resp["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError) as exc:
                raise ExecutorError(f"{self.endpoint}: response has no choices[0].message.content") from exc
            if not isinstance(output, str):
                raise ExecutorError(f"{self.endpoint}: message content is not a string")
        except ExecutorError as exc:
            if self.on_error == "raise":
                raise
            return Outcome(output="", reward=0.0, success=False, cost_usd=0.0,
                           latency_s=time.perf_counter() - t0, metadata={"error": str(exc), "model": model})
        latency = time.perf_counter() - t0
        scored = self.reward_fn(task, output, resp)
        if isinstance(scored, tuple):
            reward, success = float(scored[0]), bool(scored[1])
        else:
            reward = float(scored)
            success = reward >= 0.5
        reward = min(1.0, max(0.0, reward)) if math.isfinite(reward) else 0.0
        usage = resp.get("usage") or {}
        pin, pout = self.prices.get(model, (0.0, 0.0))
        try:
            cost = (float(usage.get("prompt_tokens", 0)) * pin + float(usage.get("completion_tokens", 0)) * pout) / 1e6
        except (TypeError, ValueError, AttributeError):
            cost = 0.0
        return Outcome(output=output, reward=reward, success=success, cost_usd=max(0.0, cost), latency_s=latency,
                       metadata={"model": resp.get("model", model), "usage": usage, "retries": retries})

    def __repr__(self) -> str:
        return f"OpenAIChatExecutor({self.base_url!r}, timeout_s={self.timeout_s}, max_retries={self.max_retries})"
