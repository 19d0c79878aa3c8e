"""Call a method on a peer: a Ray actor handle, a Ray actor by name, or a plain in-process object.

The actors are plain classes so that they can be tested without Ray; a peer they talk to
(a parent coordinator, the bank owner) may be a Ray handle, the object itself, or a
:class:`NamedActor`. Restartable actors get their peers **by name** (:class:`NamedActor`):
an actor handle in a constructor's arguments lives in the object store, and a restart
fails once that copy is gone (Ray issue 53727); a name is plain data, resolved with
``ray.get_actor`` on first use, again after a restart (the constructor runs again) and
again after a call found the peer gone.

Example:
    >>> class Peer:
    ...     def hello(self, x):
    ...         return x + 1
    >>> call(Peer(), "hello", 1)
    2
    >>> NamedActor("swarm-sona-1a2b-bank", namespace="jobs")
    NamedActor('swarm-sona-1a2b-bank', namespace='jobs')
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

__all__ = ["call", "is_actor_handle", "NamedActor", "as_peer", "WarningLog", "node_id"]


def is_actor_handle(obj: Any) -> bool:
    """True for a Ray actor handle (its methods have ``.remote``)."""
    try:
        from ray.actor import ActorHandle
    except ImportError:  # pragma: no cover - ray is a core dependency
        return False
    return isinstance(obj, ActorHandle)


class NamedActor:
    """A Ray actor by name (and namespace), resolved lazily with ``ray.get_actor``.

    Pickles as its name only (the resolved handle is dropped), so it can be a constructor
    argument of a restartable actor. :meth:`handle` resolves (and caches) the handle;
    :meth:`forget` drops it so the next use resolves the name again.

    Example:
        >>> peer = NamedActor("swarm-sona-1a2b-queen-1")
        >>> peer.name, peer.namespace
        ('swarm-sona-1a2b-queen-1', None)
    """

    def __init__(self, name: str, namespace: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"NamedActor: name must be a non-empty string, got {name!r}")
        self.name = name
        self.namespace = namespace
        self._handle: Any = None

    def handle(self) -> Any:
        """The actor's handle (``ray.get_actor``; a ValueError when no such actor is alive)."""
        if self._handle is None:
            import ray

            self._handle = ray.get_actor(self.name, namespace=self.namespace)
        return self._handle

    def forget(self) -> None:
        """Drop the cached handle (the next call looks the name up again)."""
        self._handle = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self.namespace = state.get("namespace")
        self._handle = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NamedActor) and (self.name, self.namespace) == (other.name, other.namespace)

    def __hash__(self) -> int:
        return hash((self.name, self.namespace))

    def __repr__(self) -> str:
        return f"NamedActor({self.name!r}, namespace={self.namespace!r})"


def node_id() -> str | None:
    """The Ray node this process runs on (hex), or None outside a Ray worker / driver."""
    try:
        import ray  # lazily: the actor classes also run in-process, without Ray
    except ImportError:  # pragma: no cover
        return None
    if not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


def as_peer(peer: Any, namespace: str | None = None) -> Any:
    """A peer argument as given to an actor: a string is an actor name (a :class:`NamedActor`
    in ``namespace``); anything else (a handle, an object, a NamedActor, None) is kept.

    Example:
        >>> as_peer("swarm-sona-1a2b-bank", "ns")
        NamedActor('swarm-sona-1a2b-bank', namespace='ns')
        >>> as_peer(None) is None
        True
    """
    if isinstance(peer, str):
        return NamedActor(peer, namespace)
    return peer


def call(peer: Any, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
    """``peer.method(*args, **kwargs)``, through Ray (blocking for the result) if ``peer`` is a
    handle or a :class:`NamedActor`; a NamedActor whose call fails with the actor gone is
    looked up again on the next call."""
    if isinstance(peer, NamedActor):
        import ray
        from ray.exceptions import RayActorError

        try:
            return ray.get(getattr(peer.handle(), method).remote(*args, **kwargs), timeout=timeout)
        except (RayActorError, ValueError):
            peer.forget()
            raise
    if is_actor_handle(peer):
        import ray

        return ray.get(getattr(peer, method).remote(*args, **kwargs), timeout=timeout)
    return getattr(peer, method)(*args, **kwargs)


class WarningLog:
    """Warnings of an actor, logged where it runs and kept (bounded) for the driver to relay.

    Actor processes' logs do not reach the driver; the actors hand these back (in batch
    results, ``drain_warnings()``) and the driver logs them again under the actor's name.

    Example:
        >>> import logging
        >>> w = WarningLog(logging.getLogger("demo"), "agent a0", keep=2)
        >>> for i in range(3):
        ...     w.warn(f"problem {i}")
        >>> w.drain(), w.drain(), w.recent()
        (['agent a0: problem 1', 'agent a0: problem 2'], [], ['agent a0: problem 1', 'agent a0: problem 2'])
    """

    def __init__(self, logger: logging.Logger, who: str, *, keep: int = 100) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"WarningLog: keep must be an integer >= 1, got {keep!r}")
        self.log = logger
        self.who = who
        self._new: deque[str] = deque(maxlen=keep)
        self._recent: deque[str] = deque(maxlen=keep)
        self.count = 0

    def warn(self, message: str) -> None:
        """Log ``message`` as a warning here and keep it for :meth:`drain`."""
        text = f"{self.who}: {message}"
        self.log.warning("%s", text)
        self._new.append(text)
        self._recent.append(text)
        self.count += 1

    def drain(self) -> list[str]:
        """The warnings since the last drain (at most ``keep``)."""
        out = list(self._new)
        self._new.clear()
        return out

    def recent(self) -> list[str]:
        """The last ``keep`` warnings, drained or not."""
        return list(self._recent)
