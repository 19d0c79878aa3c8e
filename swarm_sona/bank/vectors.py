"""Input checks of the ReasoningBank: unit vectors of the bank's dimension (of a query, of the
items of a store), and pattern ids.

Example:
    >>> import numpy as np
    >>> unit_vector([3.0, 4.0], 2, "hashing-v1-2", "query vector").tolist()
    [0.6000000238418579, 0.800000011920929]
    >>> check_ids("6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21")
    ['6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21']
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np

from swarm_sona.bank.errors import BankDimensionError, BankInputError
from swarm_sona.bank.items import ItemBatch
from swarm_sona.embedding.embedders import Embedder

__all__ = ["unit_vector", "check_ids", "query_vector", "item_vectors"]


def unit_vector(v: Any, dim: int, embedder_name: str, what: str) -> np.ndarray:
    """``v`` as a unit-norm float32 vector of dimension ``dim``; :class:`BankInputError` (not
    numeric, not 1-D, NaN/inf, all zeros) or :class:`BankDimensionError` naming ``what``."""
    if isinstance(v, np.ndarray) and v.dtype == np.float32:
        arr = v
    else:
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise BankInputError(f"{what} is not numeric: {exc}") from exc
    if arr.ndim != 1:
        raise BankInputError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != dim:
        raise BankDimensionError(f"{what} has dimension {arr.shape[0]}, but this bank holds {dim}-d "
                                 f"vectors made by embedder {embedder_name!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        ss = float(arr @ arr)  # one pass: NaN/inf show up here (or an overflow of huge values)
    if not math.isfinite(ss):
        if not np.all(np.isfinite(arr)):
            raise BankInputError(f"{what} contains NaN or inf")
        a64 = arr.astype(np.float64)
        return (a64 / math.sqrt(float(a64 @ a64))).astype(np.float32)
    if ss == 0.0:
        raise BankInputError(f"{what} is all zeros (an empty text, or no word characters?)")
    return (arr / np.float32(math.sqrt(ss))).astype(np.float32, copy=False)


def check_ids(ids: str | Iterable[str]) -> list[str]:
    """One id or many as canonical UUID strings; :class:`BankInputError` naming a bad one."""
    lst = [ids] if isinstance(ids, str) else list(ids)
    out = []
    for i in lst:
        try:
            out.append(str(uuid.UUID(str(i))))
        except ValueError as exc:
            raise BankInputError(f"{i!r} is not a pattern id (a UUID)") from exc
    return out


def query_vector(query: Any, vector: Any, embedder: Embedder, dim: int) -> np.ndarray:
    """The unit query vector of a retrieval: ``vector`` (or a ``query`` that is an array), else the
    embedding of the task text ``query``; :class:`BankInputError` for both or neither.

    Example:
        >>> from swarm_sona.embedding.embedders import get_embedder
        >>> query_vector(None, [0.0, 2.0], get_embedder("hashing-v1-2"), 2).tolist()
        [0.0, 1.0]
    """
    name = str(embedder.name)
    if vector is not None and query is not None:
        raise BankInputError("give a task text or a vector, not both")
    if vector is None and isinstance(query, (np.ndarray, list, tuple)):
        query, vector = None, query
    if vector is not None:
        return unit_vector(vector, dim, name, "query vector")
    if not isinstance(query, str):
        raise BankInputError(f"query must be a task text or a vector, got {type(query).__name__}")
    return unit_vector(embedder.embed([query])[0], dim, name, f"embedding of query {query[:60]!r}")


def item_vectors(batch: ItemBatch, embedder: Embedder, dim: int, *, embed_original: bool,
                 single: bool) -> np.ndarray:
    """Row i: the unit vector of store item i: the vector it gave, else the embedding of its task
    (of the original text when ``embed_original``, of the redacted one otherwise), embedded in one
    call. Errors name the item (unless ``single``).

    Example:
        >>> from swarm_sona.embedding.embedders import get_embedder
        >>> b = ItemBatch([], [[3.0, 4.0]], ["t"])
        >>> item_vectors(b, get_embedder("hashing-v1-2"), 2, embed_original=False, single=True).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    name = str(embedder.name)
    given, patterns, originals = batch.vectors, batch.patterns, batch.originals
    V = np.empty((len(given), dim), np.float32)
    to_embed = [i for i, v in enumerate(given) if v is None]
    if to_embed:
        E = embedder.embed([originals[i] if embed_original else patterns[i].task for i in to_embed])
        for j, i in enumerate(to_embed):
            V[i] = unit_vector(E[j], dim, name, f"{'' if single else f'item {i}: '}embedding of task "
                                                f"{patterns[i].task[:60]!r}")
    rows = [i for i, v in enumerate(given) if v is not None]
    if rows and not _unit_rows(V, rows, [given[i] for i in rows], dim):
        for i in rows:   # the exact per-vector checks, with an error naming the item
            V[i] = unit_vector(given[i], dim, name, f"{'' if single else f'item {i}: '}vector")
    return V


_vecdot = getattr(np, "vecdot", None)


def _unit_rows(V: np.ndarray, rows: list[int], vecs: list[Any], dim: int) -> bool:
    """The fast path of :func:`item_vectors`: when every given vector is a float32 array of shape
    ``(dim,)`` with a finite, non-zero norm, write their unit vectors into rows ``rows`` of ``V``
    (the same float32 arithmetic as :func:`unit_vector`) and return True; else write nothing and
    return False (the caller checks them one by one)."""
    if not all(isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (dim,) for v in vecs):
        return False
    M = np.stack(vecs)
    with np.errstate(over="ignore", invalid="ignore"):
        # each row's dot exactly as unit_vector's arr @ arr (numpy < 2 has no vecdot: one dot per row)
        ss = (_vecdot(M, M).astype(np.float64) if _vecdot is not None else
              np.fromiter((float(r @ r) for r in M), np.float64, len(M)))
    if not np.all(np.isfinite(ss)) or not np.all(ss > 0.0):
        return False
    V[rows] = M / np.sqrt(ss).astype(np.float32)[:, None]
    return True
