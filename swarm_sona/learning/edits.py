"""The process-wide edit epoch: one counter that every change of a layer's base, adapter set or
adapter arrays advances, so a cache of weights derived from them is valid while it stands still.

Each versioned object (:class:`~swarm_sona.learning.lora.LoRAAdapter`,
:class:`~swarm_sona.learning.lora_linear.LoRALinear`,
:class:`~swarm_sona.learning.quantization.StoredWeight`, the model itself) declares its
``version`` attribute as an :class:`EditVersion`: assigning it (``self.version += 1`` in
``touch`` and every mutating method) also draws a fresh value of the epoch. A cache stores the
epoch it was built at and compares one integer, instead of walking every layer's and adapter's
version on each inference call (that walk was half of a one-task forward at dim 256).

The epoch is shared by every model of the process, so an edit of one model also makes another
model's cache rebuild once: conservative, never stale. Values come from
:func:`itertools.count` (atomic under the GIL) and are never reused, so two threads bumping at
once cannot bring back a value a cache holds.

Example:
    >>> from swarm_sona.learning.edits import EditVersion, epoch
    >>> class Layer:
    ...     version = EditVersion()
    ...     def __init__(self): self.version = 0
    >>> layer = Layer(); seen = epoch()
    >>> layer.version += 1
    >>> layer.version, epoch() != seen
    (1, True)
"""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["EditVersion", "epoch", "bump"]

_COUNTER = itertools.count(1)
_current = 0


def epoch() -> int:
    """The current edit epoch: changes whenever any versioned learning object changes."""
    return _current


def bump() -> int:
    """Draw a fresh epoch (never seen before in this process) and return it."""
    global _current
    _current = value = next(_COUNTER)
    return value


class EditVersion:
    """Data descriptor for an ``int`` version attribute whose every assignment also bumps the
    edit epoch (see the module docstring)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_edit_" + name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__[self._slot]

    def __set__(self, obj: Any, value: int) -> None:
        obj.__dict__[self._slot] = value
        bump()
