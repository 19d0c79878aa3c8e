"""Names of the model's modules and trainable parameters, and the parameters by group.

Parameter names: ``"<module>.A"``/``"<module>.B"`` for the default BaseLoRA,
``"<module>[<adapter>].A"`` for other named adapters, ``"micro.A"``/``"micro.B"``,
``"value.w"``, ``"value.b"``, ``"router.W"``, ``"router.b"``, ``"task.<name>.W"``,
``"task.<name>.b"``.

Example:
    >>> from swarm_sona.learning.param_names import adapter_prefix
    >>> adapter_prefix("v", "default"), adapter_prefix("v", "extra")
    ('v', 'v[extra]')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from swarm_sona.learning.errors import ModelError

if TYPE_CHECKING:   # the model imports this module; its type only for annotations
    from swarm_sona.learning.model import SONAModel

__all__ = ["MODULES", "DEFAULT_ADAPTER", "adapter_prefix", "named_parameters"]

#: the block's linear modules, in forward order of their kinds
MODULES = ("q", "k", "v", "o", "mlp_in", "mlp_out")
#: the name of the BaseLoRA every target module carries
DEFAULT_ADAPTER = "default"


def adapter_prefix(module: str, adapter: str) -> str:
    """The prefix of an adapter's parameter names: ``module`` for the default adapter, else
    ``module[adapter]``."""
    return module if adapter == DEFAULT_ADAPTER else f"{module}[{adapter}]"


def named_parameters(model: SONAModel, groups: Iterable[str] = ("base", "value", "router")) -> dict[str, np.ndarray]:
    """Trainable arrays by name (views; in-place updates change the model).

    Groups: ``base`` (default BaseLoRA), ``adapters`` (every named unmerged adapter),
    ``micro``, ``value``, ``router``, ``tasks`` (all task heads) or ``task:<name>``.

    Example:
        >>> from swarm_sona.learning.model import SONAModel
        >>> sorted(named_parameters(SONAModel(dim=4, mlp_hidden=4, n_router=1), ("router", "value")))
        ['router.W', 'router.b', 'value.b', 'value.w']
    """
    out: dict[str, np.ndarray] = {}
    for g in groups:
        if g in ("base", "adapters"):
            for m in MODULES:
                lin = model.layers[m]
                for aname, ad in lin.adapters.items():
                    if aname in lin.merged or aname not in lin.active:
                        continue
                    if g == "base" and aname != DEFAULT_ADAPTER:
                        continue
                    prefix = adapter_prefix(m, aname)
                    for pname, arr in ad.parameters().items():
                        out[f"{prefix}.{pname}"] = arr
        elif g == "micro":
            for pname, arr in model.micro.parameters().items():
                out[f"micro.{pname}"] = arr
        elif g == "value":
            out["value.w"] = model.value_w
            out["value.b"] = model.value_b
        elif g == "router":
            if model.n_router:
                out["router.W"] = model.router_W
                out["router.b"] = model.router_b
        elif g == "tasks" or g.startswith("task:"):
            names = list(model.task_heads) if g == "tasks" else [g[5:]]
            for t in names:
                head = model.task_head(t)
                out[f"task.{t}.W"] = head.W
                out[f"task.{t}.b"] = head.b
        else:
            raise ModelError(f"unknown parameter group {g!r} "
                             "(use base, adapters, micro, value, router, tasks, task:<name>)")
    return out
