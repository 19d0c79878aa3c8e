"""The pattern LRU of a ReasoningBank: decoded payloads of recently written or retrieved patterns.

Example:
    >>> lru = PayloadLRU(1)
    >>> lru.put("a", {"x": 1}); lru.put("b", {"x": 2})
    >>> len(lru), lru.get("b")
    (1, {'x': 2})
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["PayloadLRU"]


class PayloadLRU:
    """Decoded payloads of recently written or retrieved patterns (least recently used evicted first).

    The bank puts a pattern's fields (:meth:`Pattern.payload_fields`) here when it writes the
    pattern and when retrieval had to read it from the store, and drops them when a payload
    changes (``mark_used``) or the pattern is deleted, so that retrieval serves those patterns
    without a store round trip (~6-10 us per payload in qdrant-edge-py 0.9) while the memory
    stays bounded. ``size=0`` turns it off.

    Example:
        >>> lru = PayloadLRU(2)
        >>> lru.put("a", {"x": 1}); lru.put("b", {"x": 2}); lru.put("c", {"x": 3})
        >>> lru.get("a") is None, lru.get("c")
        (True, {'x': 3})
    """

    def __init__(self, size: int, decode: Callable[[str, Any], dict[str, Any]] | None = None) -> None:
        self.size = int(size)
        self._d: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._raw: set[str] = set()   # ids whose entry is a stored payload not yet decoded (put_raw)
        self.decode = decode
        self.hits = 0
        self.misses = 0

    def get(self, pid: str) -> dict[str, Any] | None:
        """The cached payload (marked recently used) or None."""
        p = self._d.get(pid)
        if p is None:
            self.misses += 1
            return None
        if pid in self._raw and self.decode is not None:
            self._raw.discard(pid)
            p = self._d[pid] = self.decode(pid, p)
        self._d.move_to_end(pid)
        self.hits += 1
        return p

    def put_raw(self, ids: Sequence[str], payloads: Sequence[Mapping[str, Any]]) -> None:
        """Remember just-written payloads as stored, decoded by ``decode(id, payload)`` on their
        first :meth:`get` (a write pays nothing for the patterns never read back). Only the last
        ``size`` are kept.

        Example:
            >>> lru = PayloadLRU(2, decode=lambda pid, pl: {"id": pid, **pl})
            >>> lru.put_raw(["a", "b", "c"], [{"x": 1}, {"x": 2}, {"x": 3}])
            >>> lru.get("a"), lru.get("c")
            (None, {'id': 'c', 'x': 3})
        """
        if self.size <= 0 or self.decode is None:
            return
        d, raw = self._d, self._raw
        for pid, pl in zip(ids[-self.size:], payloads[-self.size:], strict=True):
            d[pid] = pl   # type: ignore[assignment]  # decoded on first get
            d.move_to_end(pid)
            raw.add(pid)
        while len(d) > self.size:
            raw.discard(d.popitem(last=False)[0])

    def put(self, pid: str, payload: dict[str, Any]) -> None:
        """Remember a payload read from the store."""
        if self.size <= 0:
            return
        self._d[pid] = payload
        self._d.move_to_end(pid)
        self._raw.discard(pid)
        while len(self._d) > self.size:
            self._raw.discard(self._d.popitem(last=False)[0])

    def discard(self, ids: Iterable[str]) -> None:
        """Forget these patterns (they were written or deleted)."""
        for pid in ids:
            self._d.pop(pid, None)
            self._raw.discard(pid)

    def clear(self) -> None:
        """Forget everything."""
        self._d.clear()
        self._raw.clear()

    def __len__(self) -> int:
        return len(self._d)
