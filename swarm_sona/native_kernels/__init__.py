"""Hot-path kernels: native C when built, the numpy reference otherwise.

Every function here has the signature and semantics of its twin in
:mod:`swarm_sona.native_kernels.reference`. ``SWARM_SONA_NATIVE=0`` forces the numpy path.
:func:`info` says which path is active and why.

Example:
    >>> from swarm_sona import native_kernels
    >>> native_kernels.info()["active"] in ("native", "numpy")
    True
"""

from __future__ import annotations

import os
from typing import Any

from swarm_sona.native_kernels import reference

__all__ = [
    "info",
    "lora_delta",
    "micro_apply",
    "lora_grad",
    "instant_step",
    "fisher_update",
    "ewc_penalty_grad",
    "topk",
    "topk_int8",
    "quantize_int8",
    "kmeans_assign",
    "hash_embed",
]

_INFO: dict[str, Any] = {"active": "numpy", "reason": "native extension not built yet", "isa": None}

if os.environ.get("SWARM_SONA_NATIVE", "1") == "0":
    _INFO["reason"] = "SWARM_SONA_NATIVE=0"


def info() -> dict[str, Any]:
    """``{"active": "native" | "numpy", "reason": str, "isa": str | None}``."""
    return dict(_INFO)


lora_delta = reference.lora_delta
micro_apply = reference.micro_apply
lora_grad = reference.lora_grad
instant_step = reference.instant_step
fisher_update = reference.fisher_update
ewc_penalty_grad = reference.ewc_penalty_grad
topk = reference.topk
topk_int8 = reference.topk_int8
quantize_int8 = reference.quantize_int8
kmeans_assign = reference.kmeans_assign
hash_embed = reference.hash_embed
