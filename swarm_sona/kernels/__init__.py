"""Hot-path kernels: native C when built, the numpy reference otherwise.

Every function here has the signature and semantics of its twin in
:mod:`swarm_sona.kernels.reference`. The active backend is chosen once at import:
:mod:`.native_backend` (the compiled extension ``_native``) when it imports, else
:mod:`.numpy_backend`; ``SWARM_SONA_NATIVE=0`` forces numpy. Both apply the same argument
rules (:mod:`.validate`): read-only inputs of another dtype or layout are converted once;
arrays updated in place must already be writable C-contiguous float32; anything else raises
:class:`KernelInputError` naming the argument. :func:`info` says which path is active and why.

Example:
    >>> from swarm_sona import kernels
    >>> kernels.info()["active"] in ("native", "numpy")
    True
    >>> kernels.micro_apply([1.0, 2.0], [[1.0, 0.0]], [[1.0], [0.0]], 1.0).tolist()
    [2.0, 2.0]
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

from swarm_sona.kernels import numpy_backend, reference
from swarm_sona.kernels.validate import KernelInputError

__all__ = ["info", "backend", "KernelInputError", *reference.__all__]

def _choose() -> tuple[ModuleType, dict[str, Any]]:
    if os.environ.get("SWARM_SONA_NATIVE", "1").strip() == "0":
        return numpy_backend, {"active": "numpy", "reason": "SWARM_SONA_NATIVE=0", "isa": None}
    if importlib.util.find_spec("swarm_sona.kernels._native") is None:
        return numpy_backend, {"active": "numpy", "isa": None,
                               "reason": "native extension not built (no C compiler at install time, or "
                                         "SWARM_SONA_BUILD_NATIVE=0); reinstall with a compiler to build it"}
    try:
        from swarm_sona.kernels import native_backend
    except ImportError as exc:
        return numpy_backend, {"active": "numpy", "reason": f"native extension unavailable: {exc}", "isa": None}
    return native_backend, {"active": "native", "reason": "compiled extension loaded",
                            "isa": f"{native_backend.ISA}; int8 dot: {native_backend.INT8_ISA}; "
                                   f"nf4 decode: {native_backend.Q_ISA}"}


_BACKEND, _INFO = _choose()


def info() -> dict[str, Any]:
    """``{"active": "native" | "numpy", "reason": str, "isa": str | None}``."""
    return dict(_INFO)


def backend() -> ModuleType:
    """The active backend module (``native_backend`` or ``numpy_backend``)."""
    return _BACKEND


finite_norm = _BACKEND.finite_norm
lora_delta = _BACKEND.lora_delta
micro_apply = _BACKEND.micro_apply
lora_grad = _BACKEND.lora_grad
instant_step = _BACKEND.instant_step
forward_one = _BACKEND.forward_one
instant_steps = _BACKEND.instant_steps
bandit_update = _BACKEND.bandit_update
fisher_update = _BACKEND.fisher_update
ewc_penalty_grad = _BACKEND.ewc_penalty_grad
topk = _BACKEND.topk
topk_int8 = _BACKEND.topk_int8
topk_int8_rerank = _BACKEND.topk_int8_rerank
topk_int4_rerank = _BACKEND.topk_int4_rerank
quantize_int4 = _BACKEND.quantize_int4
quantize_int8 = _BACKEND.quantize_int8
kmeans_assign = _BACKEND.kmeans_assign
ivf_probe = _BACKEND.ivf_probe
ivf_topk = _BACKEND.ivf_topk
hash_embed = _BACKEND.hash_embed
dequantize_rows = _BACKEND.dequantize_rows
qlinear = _BACKEND.qlinear
qlinear_t = _BACKEND.qlinear_t
