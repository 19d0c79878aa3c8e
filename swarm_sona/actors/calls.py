"""Call a method on a peer that is either a Ray actor handle or a plain in-process object.

The actors are plain classes so that they can be tested without Ray; a peer they talk to
(a parent coordinator, the bank owner) may be a Ray handle or the object itself.

Example:
    >>> class Peer:
    ...     def hello(self, x):
    ...         return x + 1
    >>> call(Peer(), "hello", 1)
    2
"""

from __future__ import annotations

from typing import Any

__all__ = ["call", "is_actor_handle"]


def is_actor_handle(obj: Any) -> bool:
    """True for a Ray actor handle (its methods have ``.remote``)."""
    try:
        from ray.actor import ActorHandle
    except ImportError:  # pragma: no cover - ray is a core dependency
        return False
    return isinstance(obj, ActorHandle)


def call(peer: Any, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
    """``peer.method(*args, **kwargs)``, through Ray (blocking for the result) if ``peer`` is a handle."""
    if is_actor_handle(peer):
        import ray

        return ray.get(getattr(peer, method).remote(*args, **kwargs), timeout=timeout)
    return getattr(peer, method)(*args, **kwargs)
