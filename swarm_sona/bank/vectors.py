"""Input checks of the ReasoningBank: unit vectors of the bank's dimension, and pattern ids.

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

__all__ = ["unit_vector", "check_ids"]


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
