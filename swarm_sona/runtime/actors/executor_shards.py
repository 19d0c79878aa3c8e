"""An agent's executor, split for concurrent calls: private copies of at most ``pool_size`` calls
each (every copy with its own connection pool and I/O thread), or slices of at most the agent's
share when the executor has no cap of its own.

Only for an executor whose *class* defines ``run_many(tasks, models, patterns)`` (the class is
checked, not the instance, so a wrapper such as ``HookedExecutor`` that only delegates
attributes keeps its per-call hooks): task ``i`` of ``k`` copies goes to copy ``i % k`` and the
outcomes come back in input order. When the class also defines ``submit(task, model, patterns)``
(a future; :func:`is_streaming`), the calls go one at a time from one queue to whichever copy
has a free slot (:meth:`ExecutorShards.submit`): no copy idles while another has a backlog, and
an agent learns each result as it arrives instead of after the batch's slowest call. httpx's
pool slows down sharply past a few dozen connections
(measured on the replay endpoint, one process, median 0.5 s: 500 calls at 64 in flight 5.1 s,
at 128 in flight 21 s; 8 copies of 16: 3.4 s).

Example:
    >>> from swarm_sona.runtime.actors.executor_shards import ExecutorShards
    >>> class Many:
    ...     max_concurrency = 40
    ...     def __call__(self, task, model, patterns): return None
    ...     def run_many(self, tasks, models, patterns): return [m for m in models]
    >>> shards = ExecutorShards(Many(), max_concurrency=20, pool_size=8, name="a")
    >>> [ex.max_concurrency for ex in shards.copies], shards.run(["t"] * 5, list("abcde"), [[]] * 5)
    ([7, 7, 6], ['a', 'b', 'c', 'd', 'e'])
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["ExecutorShards", "is_concurrent", "is_streaming"]


def is_concurrent(executor: Any) -> bool:
    """True when the executor's class defines ``run_many`` (the batch's calls run concurrently)."""
    return callable(getattr(type(executor), "run_many", None))


def is_streaming(executor: Any) -> bool:
    """True when the executor's class also defines ``submit(task, model, patterns)`` returning a
    future, and the executor has an integer ``max_concurrency``: its calls can be started one by
    one and each result taken as it arrives."""
    cap = getattr(executor, "max_concurrency", None)
    return (is_concurrent(executor) and callable(getattr(type(executor), "submit", None))
            and isinstance(cap, int) and not isinstance(cap, bool))


class ExecutorShards:
    """The executor copies of one agent (module docs). ``max_concurrency``: the agent's share of
    the swarm's cap (None = the executor's own cap); ``pool_size``: calls per copy; ``name``
    names the I/O threads. :attr:`copies` is ``[executor]`` for a synchronous executor."""

    def __init__(self, executor: Any, *, max_concurrency: int | None = None, pool_size: int = 16,
                 name: str = "agent") -> None:
        if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                                            or max_concurrency < 1):
            raise ValueError(f"max_concurrency must be an integer >= 1 or None, got {max_concurrency!r}")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValueError(f"pool_size must be an integer >= 1, got {pool_size!r}")
        self.concurrent = is_concurrent(executor)
        self.name = name
        self.slice: int | None = None   # run_many slices when the executor has no cap of its own to lower
        self.copies: list[Any] = [executor]   # executor copies, each with its own connection pool
        self._threads: ThreadPoolExecutor | None = None
        cap = getattr(executor, "max_concurrency", None)
        if self.concurrent and isinstance(cap, int) and not isinstance(cap, bool):
            share = min(cap, max_concurrency) if max_concurrency is not None else cap
            k = -(-share // pool_size)
            if k > 1 or share != cap:   # private copies (pickled state, fresh connections), the share split
                self.copies = [copy.copy(executor) for _ in range(k)]
                for j, ex in enumerate(self.copies):
                    ex.max_concurrency = share // k + (1 if j < share % k else 0)
        elif self.concurrent and max_concurrency is not None:
            self.slice = max_concurrency
        self.streaming = is_streaming(executor)
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[Any], Any, str, list[dict[str, Any]]]] = deque()
        self._free = [int(getattr(ex, "max_concurrency", 0) or 0) for ex in self.copies]
        self._pumping = threading.local()

    @property
    def executor(self) -> Any:
        """The first copy (the executor itself when it was not copied)."""
        return self.copies[0]

    def run(self, tasks: Sequence[Any], models: Sequence[str], hits: Sequence[list[dict[str, Any]]]) -> list[Any]:
        """The outcomes of ``run_many`` over the copies, in input order. A slice whose call
        raises (or returns the wrong number of outcomes) gives that exception as the outcome
        of each of its tasks."""
        if self.streaming:
            return [f.result() for f in self.submit(tasks, models, hits)]
        k = len(self.copies)
        if k == 1:
            return self._run_slices(self.copies[0], tasks, models, hits)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(k, thread_name_prefix=f"agent-{self.name}-io")
        parts = list(self._threads.map(lambda j: self._run_slices(self.copies[j], tasks[j::k], models[j::k],
                                                                  hits[j::k]), range(k)))
        out: list[Any] = [None] * len(tasks)
        for j, part in enumerate(parts):   # task i went to copy i % k: back into input order
            out[j::k] = part
        return out

    def submit(self, tasks: Sequence[Any], models: Sequence[str],
               hits: Sequence[list[dict[str, Any]]]) -> list[Future[Any]]:
        """Start the tasks' calls and return at once: one future per task, whose result is its
        outcome or the exception its call raised (as in :meth:`run`'s list).

        A streaming executor (:func:`is_streaming`) gets one call at a time from one queue shared
        by its copies, each copy holding at most its ``max_concurrency`` calls: a call starts as
        soon as any slot is free, whichever copy it is on, and each future is done when its own
        call is. Any other executor raises TypeError (use :meth:`run`).
        """
        if not (len(tasks) == len(models) == len(hits)):
            raise ValueError(f"submit: {len(tasks)} tasks, {len(models)} models, {len(hits)} pattern lists")
        if not self.streaming:
            raise TypeError(f"submit: {type(self.executor).__name__} does not stream (it needs submit(), run_many() "
                            f"and an integer max_concurrency); use run()")
        futs: list[Future[Any]] = [Future() for _ in tasks]
        with self._lock:
            self._queue.extend((f, t, m, list(h)) for f, t, m, h in zip(futs, tasks, models, hits, strict=True))
        self._pump()
        return futs

    def _pump(self) -> None:
        """Start queued calls while a copy has a free slot (the copy with the most)."""
        if getattr(self._pumping, "on", False):   # a call that completed at once, inside this loop
            return
        self._pumping.on = True
        try:
            while True:
                with self._lock:
                    if not self._queue:
                        return
                    j = max(range(len(self._free)), key=self._free.__getitem__)
                    if self._free[j] <= 0:
                        return
                    self._free[j] -= 1
                    f, t, m, h = self._queue.popleft()
                try:
                    inner = self.copies[j].submit(t, m, h)
                except Exception as exc:
                    self._done(j, f, None, exc)
                    continue
                inner.add_done_callback(lambda fut, j=j, f=f: self._done(j, f, fut, None))
        finally:
            self._pumping.on = False

    def _done(self, j: int, f: Future[Any], inner: Future[Any] | None, exc: BaseException | None) -> None:
        with self._lock:
            self._free[j] += 1
        if inner is None:
            f.set_result(exc)
        elif inner.cancelled():
            f.set_result(RuntimeError("the call was cancelled"))
        else:
            f.set_result(inner.exception() or inner.result())
        self._pump()

    def _run_slices(self, executor: Any, tasks: Sequence[Any], models: Sequence[str],
                    hits: Sequence[list[dict[str, Any]]]) -> list[Any]:
        step = self.slice or max(1, len(tasks))
        out: list[Any] = []
        for s in range(0, len(tasks), step):
            sl = slice(s, s + step)
            try:
                got = list(executor.run_many(list(tasks[sl]), list(models[sl]), [list(h) for h in hits[sl]]))
                if len(got) != len(tasks[sl]):
                    raise RuntimeError(f"run_many returned {len(got)} outcomes for {len(tasks[sl])} tasks")
            except Exception as exc:
                got = [exc] * len(tasks[sl])
            out.extend(got)
        return out

    def close(self) -> list[str]:
        """Close every copy whose class defines ``close()`` (its connections, the banks its hooks
        opened) and the I/O threads; returns the errors (``"Type: message"``), each copy closed
        even when another fails. A closed executor is not used again."""
        errors: list[str] = []
        for shard in self.copies:
            fn = getattr(type(shard), "close", None)
            if callable(fn):
                try:
                    fn(shard)
                except Exception as exc:  # every copy gets its close
                    errors.append(f"{type(exc).__name__}: {exc}")
        with self._lock:
            queued, self._queue = list(self._queue), deque()
        for f, *_ in queued:
            f.set_result(RuntimeError("the executor was closed before this call started"))
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None
        return errors

    def stats(self) -> dict[str, Any] | None:
        """The executor's own stats summed over the copies (e.g. OpenAIChatExecutor: calls,
        retries, 429s, tokens), None when it has none, ``{"error": ...}`` when they fail."""
        ex_stats: dict[str, Any] | None = None
        for shard in self.copies:
            fn = getattr(shard, "stats", None)
            if not callable(fn):
                break
            try:
                got = fn()
                d = dataclasses.asdict(got) if dataclasses.is_dataclass(got) and not isinstance(got, type) \
                    else dict(got) if isinstance(got, Mapping) else None
            except Exception as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}
            if d is None:
                break
            ex_stats = d if ex_stats is None else {
                k: ({**ex_stats[k], **{e: ex_stats[k].get(e, 0) + n for e, n in v.items()}} if isinstance(v, dict)
                    else ex_stats[k] + v if isinstance(v, (int, float)) and k in ex_stats else v)
                for k, v in d.items()}
        return ex_stats
