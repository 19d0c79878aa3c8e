"""Stats of a running swarm, asked of its actors asynchronously, and the coordinators' warnings
and spans brought to the driver.

Example:
    >>> req = swarm.request_stats(params=True)          # doctest: +SKIP
    >>> req.ready()                                      # doctest: +SKIP
    False
    >>> req.result()["agents"]["agent-0"]["tasks"]       # doctest: +SKIP
    512
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["StatsRequest", "drain_coordinator_warnings", "drain_coordinator_spans"]

log = logging.getLogger(__name__)


def drain_coordinator_warnings(coordinators: Mapping[str, Any], relay: Callable[[Iterable[str]], None]) -> None:
    """Bring the coordinators' warnings (lost state, .prev used, torn log) to ``relay`` (the
    driver's log); a coordinator that is restarting gives its warnings with the next call."""
    if not coordinators:
        return
    import ray  # lazily, as everywhere in the driver: start_ray prepares Ray's environment first

    for h in coordinators.values():
        try:
            relay(ray.get(h.drain_warnings.remote(), timeout=30))
        except Exception as exc:
            log.debug("coordinator warnings not drained: %s", exc)


def drain_coordinator_spans(coordinators: Mapping[str, Any], telemetry: Any) -> None:
    """Bring the coordinators' finished spans into the driver's telemetry (best effort)."""
    if not telemetry.tracing or not coordinators:
        return
    import ray

    for h in coordinators.values():
        try:
            telemetry.relay_ingest(ray.get(h.drain_spans.remote(), timeout=30))
        except Exception as exc:
            log.warning("telemetry: coordinator spans lost: %s", exc)


class StatsRequest:
    """Stats asked of a swarm's actors, answered asynchronously (see ``SwarmSONA.request_stats``).

    ``ready()`` tells without blocking whether every actor has answered; ``result()`` waits
    (at most ``timeout`` seconds per actor; an actor that fails or times out gets
    ``{"error": ...}``) and returns what ``SwarmSONA.stats`` returns: ``head`` (the swarm's
    counters as they were at the request), the actors' answers by group (``agents``,
    ``coordinators``, ``bank``, and ``params`` (agent id -> adapter state) when requested),
    the mean ``merge_ms`` of the coordinators, ``topology``, ``bank`` and ``checkpoint_dir``.
    ``finish(out)`` runs on the result before it is returned (the swarm drains its coordinators'
    spans and records a metrics snapshot).

    Example:
        >>> req = swarm.request_stats(params=True)          # doctest: +SKIP
        >>> req.result()["agents"]["agent-0"]["tasks"]       # doctest: +SKIP
        512
    """

    def __init__(self, head: dict[str, Any], refs: dict[str, dict[str, Any]],
                 resend: dict[str, dict[str, Callable[[], Any]]] | None = None, *,
                 tail: Mapping[str, Any] | None = None, has_bank: bool = False,
                 finish: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._head = head
        self._refs = refs
        self._resend = resend or {}
        self._tail = dict(tail or {})
        self._has_bank = has_bank
        self._finish = finish
        self._all = [r for group in refs.values() for r in group.values()]
        self._result: dict[str, Any] | None = None

    def ready(self) -> bool:
        """True once every actor has answered (never blocks)."""
        if self._result is not None or not self._all:
            return True
        import ray

        done, _ = ray.wait(self._all, num_returns=len(self._all), timeout=0)
        return len(done) == len(self._all)

    def _answer(self, group: str, key: str, ref: Any, deadline: float) -> Any:
        """One actor's answer. An actor that is restarting (Ray raises RayActorError for a call
        it had when it died, or while it is unavailable) is asked again until ``deadline``;
        one that never answers gets ``{"state": "restarting" | "unavailable", "error": ...}``."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        resend = self._resend.get(group, {}).get(key)
        last: Exception | None = None
        while True:
            try:
                got = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                if isinstance(got, dict) and group != "params":
                    got.setdefault("state", "alive")
                return got
            except RayActorError as exc:
                last = exc
                if resend is None or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
                ref = resend()
            except GetTimeoutError as exc:
                last = exc
                break
            except Exception as exc:
                return {"state": "error", "error": f"{type(exc).__name__}: {exc}"}
        state = "restarting" if isinstance(last, RayActorError) else "unavailable"
        return {"state": state, "error": f"{type(last).__name__}: {last}"}

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        """The stats (see the class docs); waits for the answers (at most ``timeout`` seconds in
        all; an actor still restarting by then is reported with ``state`` ``"restarting"``)."""
        if self._result is not None:
            return self._result
        deadline = time.monotonic() + timeout
        got = {name: {k: self._answer(name, k, r, deadline) for k, r in group.items()}
               for name, group in self._refs.items()}
        coords = got["coordinators"]
        merge_ms = [float(s["merge_ms_mean"]) for s in coords.values()
                    if isinstance(s, dict) and s.get("merges") and s.get("merge_ms_mean") is not None]
        out = {**self._head, "merge_ms": (sum(merge_ms) / len(merge_ms)) if merge_ms else None,
               "topology": self._tail.get("topology"), "agents": got["agents"], "coordinators": coords,
               "bank": got["bank"].get("bank") if self._has_bank else None,
               "checkpoint_dir": self._tail.get("checkpoint_dir")}
        if "params" in got:
            out["params"] = got["params"]
        if self._finish is not None:
            self._finish(out)
        self._result = out
        self._all = []
        return out
