"""The dispatch pool: batches of tasks to the least-loaded agent, a cap on batches in flight per
agent, and one retry on another agent of a batch whose actor died.

Like Ray's ``ActorPool``, but keyed by agent id and with per-agent loads: :meth:`DispatchPool.fill`
sends queued batches while some agent is below ``max_in_flight`` (the least loaded first, ties
by id), :meth:`DispatchPool.collect` waits for finished calls and reports each as a
:class:`Finished` (``done``, ``retry`` (queued again at the head, the dead agent excluded) or
``lost`` (its retry died too)). Sending and waiting go through two small seams, a ``submit``
callable and a :class:`Futures` (Ray's ``wait``/``get`` by default), so the pool runs without Ray
in tests.

Example:
    >>> from swarm_sona.runtime.dispatch import Batch, DispatchPool, Ready, ReadyFutures
    >>> sent = []
    >>> def submit(agent, batch):
    ...     sent.append((agent, batch.batch_id))
    ...     return Ready(len(batch.tasks)), None   # (ref, note)
    >>> pool = DispatchPool(["a", "b"], submit, max_in_flight=1, futures=ReadyFutures())
    >>> pool.extend([Batch(i, ["t"] * 3) for i in range(3)])
    >>> pool.fill(), sent
    (2, [('a', 0), ('b', 1)])
    >>> [(f.kind, f.agent_id, f.output) for f in pool.collect()]
    [('done', 'a', 3), ('done', 'b', 3)]
    >>> pool.fill(), pool.busy
    (1, True)
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["Batch", "Finished", "Futures", "RayFutures", "Ready", "ReadyFutures", "DispatchPool"]


@dataclass(frozen=True)
class Batch:
    """A batch of tasks for one agent call: its id, its tasks, how often it was tried, and the
    agents it must not go to (those it died with)."""

    batch_id: int
    tasks: Sequence[Any]
    attempt: int = 0
    exclude: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Finished:
    """A call that ended: ``done`` (``output`` is the agent's reply), ``retry`` (the agent died
    with it; queued again for another agent) or ``lost`` (it died a second time; ``error`` says
    how). ``note`` is what ``submit`` returned beside the ref (e.g. the batch's span)."""

    kind: Literal["done", "retry", "lost"]
    agent_id: str
    batch: Batch
    output: Any = None
    error: BaseException | None = None
    note: Any = None


class Futures(Protocol):
    """How the pool waits for calls: ``wait`` returns the finished refs of ``refs`` (at least one
    unless ``timeout`` passed), ``get`` a ref's value (raising what the call raised);
    ``lost`` are the exceptions that mean the agent died with the call (those are retried)."""

    lost: tuple[type[BaseException], ...]

    def wait(self, refs: list[Any], timeout: float) -> list[Any]: ...

    def get(self, ref: Any) -> Any: ...


class RayFutures:
    """:class:`Futures` over Ray object refs (``RayActorError`` / ``RayTaskError`` are lost calls).

    Example:
        >>> RayFutures().lost[0].__name__                              # doctest: +SKIP
        'RayActorError'
    """

    def __init__(self) -> None:
        from ray.exceptions import RayActorError, RayTaskError  # lazily: start_ray prepares Ray first

        self.lost: tuple[type[BaseException], ...] = (RayActorError, RayTaskError)

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        import ray

        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        return list(ready)

    def get(self, ref: Any) -> Any:
        import ray

        return ray.get(ref)


@dataclass(eq=False)
class Ready:
    """A call that has already finished, with its ``value`` or ``error`` (the ref type of
    :class:`ReadyFutures`; compared by identity, as Ray's refs are)."""

    value: Any = None
    error: BaseException | None = None


class ReadyFutures:
    """:class:`Futures` for :class:`Ready` refs (tests and in-process use); an ``error`` of a
    ``lost`` type counts as a dead agent.

    Example:
        >>> f = ReadyFutures()
        >>> r = Ready(1)
        >>> f.wait([r], 0.0) == [r], f.get(r)
        (True, 1)
    """

    def __init__(self, lost: tuple[type[BaseException], ...] = (ConnectionError,)) -> None:
        self.lost = lost

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        return list(refs)

    def get(self, ref: Any) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value


class DispatchPool:
    """Batches to agents: the least-loaded agent below ``max_in_flight``, one retry elsewhere.

    ``submit(agent_id, batch) -> (ref, note)`` sends one batch (``note`` comes back in the
    :class:`Finished`); ``futures`` waits for refs (default: :class:`RayFutures`). A batch whose
    agent died (an exception of ``futures.lost``) is queued again at the head, excluding that
    agent; when every agent is excluded and nothing is in flight, the exclusion is lifted (there
    is nothing else to try). An agent whose call died is *suspect* for ``suspect_s`` seconds (or
    until a call of it finishes): while any agent is not suspect, batches wait for room on those,
    so a retry does not land on another agent that died with the same node. A second death
    loses the batch. Any other exception of a call is
    raised from :meth:`collect`.

    Example:
        >>> from swarm_sona.runtime.dispatch import Batch, DispatchPool, Ready, ReadyFutures
        >>> calls = iter([Ready(error=ConnectionError("died")), Ready("ok")])
        >>> pool = DispatchPool(["a", "b"], lambda a, b: (next(calls), a), futures=ReadyFutures())
        >>> pool.extend([Batch(0, ["t"])])
        >>> _ = pool.fill(); [(f.kind, f.note) for f in pool.collect()]
        [('retry', 'a')]
        >>> _ = pool.fill(); [(f.kind, f.note, f.batch.attempt) for f in pool.collect()]
        [('done', 'b', 1)]
    """

    def __init__(self, agents: Iterable[str], submit: Callable[[str, Batch], tuple[Any, Any]], *,
                 max_in_flight: int = 2, futures: Futures | None = None, suspect_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.agents = list(agents)
        if not self.agents:
            raise ValueError("DispatchPool: needs at least one agent")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"DispatchPool: max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.submit = submit
        self.futures: Futures = futures if futures is not None else RayFutures()
        self.load = dict.fromkeys(self.agents, 0)   # batches in flight per agent
        self.queue: deque[Batch] = deque()
        self.in_flight: dict[Any, tuple[str, Batch, Any]] = {}   # ref -> (agent, batch, note)
        self.suspect_s = float(suspect_s)
        self.clock = clock
        self.suspects: dict[str, float] = {}   # agent -> when a call of it died

    @property
    def busy(self) -> bool:
        """True while a batch is queued or in flight."""
        return bool(self.queue or self.in_flight)

    def extend(self, batches: Iterable[Batch]) -> None:
        """Queue batches (sent in order by :meth:`fill`)."""
        self.queue.extend(batches)

    def drop_queued(self) -> int:
        """Forget the batches not sent yet; returns how many tasks they held."""
        n = sum(len(b.tasks) for b in self.queue)
        self.queue.clear()
        return n

    def pick(self, batch: Batch) -> str | None:
        """The agent the batch goes to now (least loaded below the cap, not excluded; ties by
        id), or None when every such agent is at its cap. While any agent is not suspect, only
        those are candidates (a batch waits for room rather than go to an agent that just died)."""
        now = self.clock()
        healthy = {a for a in self.agents if now - self.suspects.get(a, -math.inf) >= self.suspect_s}
        pool = healthy - batch.exclude or set(self.agents)
        cands = [a for a in self.agents if a in pool and self.load[a] < self.max_in_flight and a not in batch.exclude]
        return min(cands, key=lambda a: (self.load[a], a)) if cands else None

    def fill(self) -> int:
        """Send queued batches while an agent has room; returns how many were sent."""
        sent = 0
        while self.queue:
            batch = self.queue[0]
            agent = self.pick(batch)
            if agent is None:
                if batch.exclude and not self.in_flight and all(a in batch.exclude for a in self.agents):
                    self.queue[0] = Batch(batch.batch_id, batch.tasks, batch.attempt)   # nothing else to try
                    continue
                break
            self.queue.popleft()
            ref, note = self.submit(agent, batch)
            self.in_flight[ref] = (agent, batch, note)
            self.load[agent] += 1
            sent += 1
        return sent

    def collect(self, timeout: float = 60.0) -> list[Finished]:
        """Wait (at most ``timeout`` seconds) for calls in flight to finish; one
        :class:`Finished` per finished call (none after a timeout)."""
        if not self.in_flight:
            return []
        out = []
        for ref in self.futures.wait(list(self.in_flight), timeout):
            agent, batch, note = self.in_flight.pop(ref)
            self.load[agent] -= 1
            try:
                value = self.futures.get(ref)
            except self.futures.lost as exc:
                self.suspects[agent] = self.clock()
                if batch.attempt == 0:
                    self.queue.appendleft(Batch(batch.batch_id, batch.tasks, 1, batch.exclude | {agent}))
                    out.append(Finished("retry", agent, batch, error=exc, note=note))
                else:
                    out.append(Finished("lost", agent, batch, error=exc, note=note))
                continue
            self.suspects.pop(agent, None)
            out.append(Finished("done", agent, batch, output=value, note=note))
        return out
