"""State export and import of a :class:`~swarm_sona.learning.model.SONAModel`: plain data
(base weights, adapters, MicroLoRA, heads), validated before anything changes.

Example:
    >>> from swarm_sona.learning.model import SONAModel
    >>> a, b = SONAModel(dim=8, mlp_hidden=8, n_router=1), SONAModel(dim=8, mlp_hidden=8, n_router=1, seed=1)
    >>> a.router_b[:] = 0.25
    >>> load_model_state(b, model_state(a))
    >>> b.router_b.tolist(), bool((b.layers["v"].W == a.layers["v"].W).all())
    ([0.25], True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm_sona.learning.errors import ModelError
from swarm_sona.learning.heads import TaskHead, plain_label
from swarm_sona.learning.lora import LoRAAdapter, LoRAError, MicroLoRA

if TYPE_CHECKING:   # the model imports this module; its type only for annotations
    from swarm_sona.learning.model import SONAModel

__all__ = ["model_state", "heads_state", "load_heads", "load_model_state", "checked_array"]


def model_state(model: SONAModel, *, include_base: bool = True) -> dict[str, Any]:
    """Plain data: base weights (optional), every adapter, MicroLoRA, heads."""
    st: dict[str, Any] = {"dim": model.dim, "mlp_hidden": model.mlp_hidden, "seed": model.seed,
                          "adapters": {m: {a: ad.to_dict() for a, ad in lin.adapters.items()}
                                       for m, lin in model.layers.items() if lin.adapters},
                          "merged": {m: sorted(lin.merged) for m, lin in model.layers.items() if lin.merged},
                          "active": {m: list(lin.active) for m, lin in model.layers.items()},
                          "micro": model.micro.to_dict(), "heads": heads_state(model)}
    if include_base:
        st["base"] = {m: {"W": lin.W.copy(), "b": lin.b.copy()} for m, lin in model.layers.items()}
    return st


def heads_state(model: SONAModel) -> dict[str, Any]:
    """``{"value": {"w", "b"}, "router": {"W", "b"}, "tasks": {name: {"W", "b", "classes"}}}``."""
    return {"value": {"w": model.value_w.copy(), "b": model.value_b.copy()},
            "router": {"W": model.router_W.copy(), "b": model.router_b.copy()},
            "tasks": {t: {"W": h.W.copy(), "b": h.b.copy(), "classes": list(h.classes)}
                      for t, h in model.task_heads.items()}}


def load_heads(model: SONAModel, heads: Mapping[str, Any], *, where: str = "heads") -> None:
    """Install heads exported by :func:`heads_state` (validated first; all or nothing)."""
    if not isinstance(heads, Mapping):
        raise ModelError(f"{where}: expected a mapping, got {type(heads).__name__}")
    unknown = set(heads) - {"value", "router", "tasks"}
    if unknown:
        raise ModelError(f"{where}: unknown key(s) {sorted(unknown)}; expected value, router, tasks")
    plan: list[tuple[Any, str, np.ndarray]] = []
    if "value" in heads:
        v = heads["value"]
        plan += [(model, "value_w", checked_array(v, "w", (model.dim,), f"{where}.value")),
                 (model, "value_b", checked_array(v, "b", (1,), f"{where}.value"))]
    if "router" in heads:
        r = heads["router"]
        plan += [(model, "router_W", checked_array(r, "W", (model.n_router, model.dim), f"{where}.router")),
                 (model, "router_b", checked_array(r, "b", (model.n_router,), f"{where}.router"))]
    new_heads = {}
    for t, hd in dict(heads.get("tasks") or {}).items():
        w = f"{where}.tasks.{t}"
        if not isinstance(hd, Mapping) or "classes" not in hd:
            raise ModelError(f"{w}: expected a mapping with W, b, classes")
        classes = [plain_label(c) for c in hd["classes"]]
        if len(set(classes)) != len(classes):
            raise ModelError(f"{w}.classes: duplicate labels")
        C = len(classes)
        head = TaskHead(t, model.dim, classes, dtype=model.dtype, seed=model.seed)
        head.W = checked_array(hd, "W", (C, model.dim), w).astype(model.dtype)
        head.b = checked_array(hd, "b", (C,), w).astype(model.dtype)
        new_heads[t] = head
    for obj, attr, arr in plan:
        getattr(obj, attr)[...] = arr
    model.task_heads.update(new_heads)


def load_model_state(model: SONAModel, st: Mapping[str, Any]) -> None:
    """Install a :func:`model_state` (shapes checked; base weights replaced when present)."""
    if not isinstance(st, Mapping):
        raise ModelError(f"model state must be a mapping, got {type(st).__name__}")
    if st.get("dim") != model.dim or st.get("mlp_hidden") != model.mlp_hidden:
        raise ModelError(f"model state is for dim={st.get('dim')}, mlp_hidden={st.get('mlp_hidden')}; "
                         f"this model has dim={model.dim}, mlp_hidden={model.mlp_hidden}")
    base = st.get("base")
    new_base = {}
    if base is not None:
        for m, lin in model.layers.items():
            if m not in base:
                raise ModelError(f"model state: base weights of {m!r} missing")
            new_base[m] = (checked_array(base[m], "W", lin.base.shape, f"base.{m}"),
                           checked_array(base[m], "b", lin.b.shape, f"base.{m}"))
    new_adapters: dict[str, dict[str, LoRAAdapter]] = {}
    for m, ads in dict(st.get("adapters") or {}).items():
        if m not in model.layers:
            raise ModelError(f"model state: unknown module {m!r}")
        new_adapters[m] = {}
        for a, d in ads.items():
            try:
                ad = LoRAAdapter.from_dict(d, kernels=model.kernels, dtype=model.dtype)
            except LoRAError as exc:
                raise ModelError(f"model state: adapter {m}/{a}: {exc}") from exc
            lin = model.layers[m]
            if (ad.d_out, ad.d_in) != lin.base.shape:
                raise ModelError(f"model state: adapter {m}/{a} shape ({ad.d_out}, {ad.d_in}) != {lin.base.shape}")
            new_adapters[m][a] = ad
    try:
        micro = LoRAAdapter.from_dict(st["micro"], kernels=model.kernels, dtype=model.dtype)
    except (KeyError, LoRAError) as exc:
        raise ModelError(f"model state: micro adapter: {exc}") from exc
    if not isinstance(micro, MicroLoRA) or micro.d_in != model.dim:
        raise ModelError("model state: micro adapter has the wrong kind or dimension")
    heads = st.get("heads") or {}
    load_heads(model, heads, where="model state heads")  # validates before changing (heads only)
    for m, (W, b) in new_base.items():
        model.layers[m].W = W  # re-quantised under the layer's scheme
        model.layers[m].b[...] = b
    for m, lin in model.layers.items():
        lin.adapters = dict(new_adapters.get(m, {}))
        lin.merged = set(dict(st.get("merged") or {}).get(m, []))
        lin.set_active(a for a in dict(st.get("active") or {}).get(m, list(lin.adapters)) if a in lin.adapters)
    model.micro = micro  # type: ignore[assignment]
    model.task_heads = {t: h for t, h in model.task_heads.items() if t in dict(heads.get("tasks") or {})}


def checked_array(d: Any, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    """``d[key]`` as a float64 array of ``shape`` with finite entries (ModelError naming
    ``where`` otherwise).

    Example:
        >>> checked_array({"w": [1, 2]}, "w", (2,), "heads.value").tolist()
        [1.0, 2.0]
    """
    if not isinstance(d, Mapping) or key not in d:
        raise ModelError(f"{where}: missing {key!r}")
    a = np.asarray(d[key])
    if a.shape != tuple(shape):
        raise ModelError(f"{where}.{key}: shape {a.shape}, expected {tuple(shape)}")
    if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
        raise ModelError(f"{where}.{key}: must be finite numbers")
    return np.ascontiguousarray(a, dtype=np.float64)
