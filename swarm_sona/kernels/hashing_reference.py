"""Pure-Python reference of the hashing embedder (the semantics the native ``hash_embed`` kernel reproduces).

The generative process is documented in :mod:`swarm_sona.embedding.embedders`: lower-cased
UTF-8 bytes, words = runs of ASCII letters/digits or bytes >= 0x80, word / word-bigram / byte
3-gram features hashed with tagged 64-bit FNV-1a into ``dim`` signed buckets, L2-normalised.

Example:
    >>> v = hashing_embed_reference("fix the failing test", 16)
    >>> v.shape, round(float((v * v).sum()), 4)
    ((16,), 1.0)
"""

from __future__ import annotations

import numpy as np

__all__ = ["hashing_embed_reference"]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF



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
