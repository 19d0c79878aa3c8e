"""Text -> vector embedders.

An :class:`Embedder` turns a list of texts into a float32 array ``(n, dim)`` whose rows are
L2-normalised (an empty text gives a zero row). Every embedder has a ``name`` and a ``dim``;
a ReasoningBank records both and refuses vectors of another dimension.

The default :class:`HashingEmbedder` needs no model download and is deterministic across
processes and machines. Its generative process, which the native kernel reproduces exactly:

1. ``text.lower()`` encoded as UTF-8 bytes.
2. Words are maximal runs of bytes that are ASCII letters/digits or >= 0x80.
3. Features: every word (weight ``w_word``), every pair of consecutive words joined by a
   space (weight ``w_bigram``), and every byte 3-gram of ``"<" + word + ">"`` (weight
   ``w_char``).
4. Each feature's bytes, prefixed with a one-byte tag (``b"w"``, ``b"b"``, ``b"c"``), are
   hashed with 64-bit FNV-1a; bucket = ``h % dim``, sign = ``+1`` if bit 63 of ``h`` is 0
   else ``-1``; the row accumulates ``sign * weight`` at the bucket.
5. The row is L2-normalised.

Example:
    >>> from swarm_sona.embed import HashingEmbedder
    >>> emb = HashingEmbedder(dim=64)
    >>> v = emb.embed(["fix the failing unit test", "fix the failing unit tests"])
    >>> v.shape, v.dtype
    ((2, 64), dtype('float32'))
    >>> round(float(v[0] @ v[1]), 2) > 0.5
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder", "HashingEmbedder", "EmbedderError", "hashing_embed_reference", "get_embedder"]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF


class EmbedderError(ValueError):
    """An embedder cannot be built or was given input it cannot embed."""


@runtime_checkable
class Embedder(Protocol):
    """Protocol: ``embed(texts) -> float32 (n, dim)``, rows L2-normalised."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - protocol
        ...


def _fnv1a(tag: int, data: bytes) -> int:
    h = _FNV_OFFSET
    h = ((h ^ tag) * _FNV_PRIME) & _MASK64
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


def _is_word_byte(b: int) -> bool:
    return (48 <= b <= 57) or (65 <= b <= 90) or (97 <= b <= 122) or b >= 0x80


def _words(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    start = -1
    for i, b in enumerate(data):
        if _is_word_byte(b):
            if start < 0:
                start = i
        elif start >= 0:
            out.append(data[start:i])
            start = -1
    if start >= 0:
        out.append(data[start:])
    return out


def hashing_embed_reference(text: str, dim: int, w_word: float = 1.0, w_bigram: float = 0.5,
                            w_char: float = 0.25) -> np.ndarray:
    """Pure-Python reference of the hashing embedder for one text (float32, L2-normalised)."""
    row = np.zeros(dim, dtype=np.float64)

    def add(tag: int, feat: bytes, w: float) -> None:
        h = _fnv1a(tag, feat)
        row[h % dim] += -w if (h >> 63) else w

    words = _words(text.lower().encode("utf-8"))
    prev: bytes | None = None
    for w in words:
        add(ord("w"), w, w_word)
        if prev is not None:
            add(ord("b"), prev + b" " + w, w_bigram)
        prev = w
        padded = b"<" + w + b">"
        for i in range(len(padded) - 2):
            add(ord("c"), padded[i : i + 3], w_char)
    norm = float(np.linalg.norm(row))
    if norm > 0:
        row /= norm
    return row.astype(np.float32)


class HashingEmbedder:
    """Deterministic hashing embedder over word, word-bigram and character-trigram features.

    Uses the native kernel when available (``swarm_sona.native_kernels``), else the
    pure-Python reference; both give the same vectors within float32 rounding.

    Example:
        >>> HashingEmbedder(dim=32).embed(["hello world"]).shape
        (1, 32)
    """

    def __init__(self, dim: int = 256, *, w_word: float = 1.0, w_bigram: float = 0.5,
                 w_char: float = 0.25) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise EmbedderError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.weights = (float(w_word), float(w_bigram), float(w_char))
        self.name = f"hashing-v1-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a list of texts into a float32 ``(len(texts), dim)`` array."""
        if isinstance(texts, str):
            raise EmbedderError("embed() takes a list of texts, not a single string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise EmbedderError(f"text {i} is {type(t).__name__}, expected str")
        from swarm_sona import native_kernels

        return native_kernels.hash_embed(texts, self.dim, *self.weights)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text into a float32 ``(dim,)`` vector."""
        return self.embed([text])[0]

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"


def get_embedder(name: str = "hashing", dim: int = 256) -> Embedder:
    """Build an embedder by name: ``hashing`` or ``sentence-transformers:<model>``."""
    if name in ("hashing", "hash") or name.startswith("hashing-v1"):
        return HashingEmbedder(dim=dim)
    raise EmbedderError(f"unknown embedder {name!r} (known: 'hashing')")
