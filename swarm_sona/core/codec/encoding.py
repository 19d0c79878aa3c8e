"""msgpack encoding of plain data and numpy arrays (no pickle, ever).

numpy arrays travel as msgpack ext type 1 holding ``(dtype string, shape, raw bytes)``; only
numeric and bool dtypes are accepted (object arrays are refused both ways). Tuples, sets and
paths are encoded as lists / sorted lists / strings; numpy scalars as Python numbers.

Example:
    >>> import numpy as np
    >>> unpackb(packb({"w": np.arange(3, dtype=np.int16), "n": np.float32(2.5)}))
    {'w': array([0, 1, 2], dtype=int16), 'n': 2.5}
    >>> packb({"x": object()})
    Traceback (most recent call last):
    ...
    swarm_sona.core.codec.errors.CodecError: cannot encode object of type object
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from swarm_sona.core.codec.errors import CodecError

__all__ = ["packb", "unpackb"]

_EXT_NDARRAY = 1
_ALLOWED_KINDS = set("biufc")  # bool, int, uint, float, complex: never object/void
_MAX_NDIM = 32


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise CodecError(f"cannot encode numpy array of dtype {obj.dtype} (only numeric/bool)")
        arr = obj if obj.flags.c_contiguous else np.array(obj, order="C")
        header = msgpack.packb([arr.dtype.str, list(arr.shape)])
        return msgpack.ExtType(_EXT_NDARRAY, header + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise CodecError(f"cannot encode object of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _EXT_NDARRAY:
        raise CodecError(f"unknown msgpack ext type {code}")
    try:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        dtype_str, shape = unpacker.unpack()
        offset = unpacker.tell()
    except Exception as exc:
        raise CodecError(f"malformed ndarray header: {exc}") from exc
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise CodecError(f"malformed ndarray dtype {dtype_str!r}") from exc
    if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
        raise CodecError(f"refusing ndarray of dtype {dtype_str!r}")
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM or not all(
        isinstance(s, int) and s >= 0 for s in shape
    ):
        raise CodecError(f"malformed ndarray shape {shape!r}")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    payload = data[offset:]
    if len(payload) != n * dtype.itemsize:
        raise CodecError(
            f"ndarray byte count {len(payload)} does not match shape {shape} of {dtype_str}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(tuple(shape)).copy()


def packb(obj: Any) -> bytes:
    """Encode plain data + numpy arrays to msgpack bytes."""
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True, strict_types=False)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from exc


def unpackb(data: bytes) -> Any:
    """Decode msgpack bytes produced by :func:`packb` (numpy arrays come back as arrays)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(bytes(data), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises several exception types
        raise CodecError(f"malformed msgpack data: {exc}") from exc
