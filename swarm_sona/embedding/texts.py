"""The one check of what an embedder's ``embed`` takes: a list of strings, never one string.

Example:
    >>> check_texts(("a", "b"), ValueError)
    ['a', 'b']
    >>> check_texts("a", ValueError)
    Traceback (most recent call last):
    ...
    ValueError: embed() takes a list of texts, not a single string
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["check_texts"]


def check_texts(texts: Sequence[str], error: type[Exception]) -> list[str]:
    """``texts`` as a list of strings, or ``error`` naming the first bad one."""
    if isinstance(texts, str):
        raise error("embed() takes a list of texts, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise error(f"text {i} is {type(t).__name__}, expected str")
    return out
