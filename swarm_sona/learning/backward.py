"""The model's backward pass: exact gradients of every trainable parameter (and of the input)
from gradients of the outputs.

:func:`backward` runs :func:`~swarm_sona.learning.heads.heads_backward` (heads + MicroLoRA,
down to the pre-MicroLoRA hidden state ``h``), then :func:`block_backward` through the block of
:mod:`swarm_sona.learning.model` (final norm, MLP, attention or the one-token shortcut, input
norm), using the cache :meth:`~swarm_sona.learning.model.SONAModel.forward_batch` kept. The
tests check every gradient against finite differences.

Example:
    >>> import numpy as np
    >>> from swarm_sona.learning.model import SONAModel
    >>> m = SONAModel(dim=8, mlp_hidden=8, n_router=1)
    >>> out, cache = m.forward_batch(np.ones((2, 8), np.float32) / 8)
    >>> g = backward(m, cache, {"router_logits": np.ones((2, 1))}, need_input_grad=True)
    >>> sorted(g)[:3], g["input"].shape
    (['input', 'micro.A', 'micro.B'], (2, 1, 8))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm_sona.learning.heads import heads_backward
from swarm_sona.learning.norm import layer_norm_backward
from swarm_sona.learning.param_names import adapter_prefix

if TYPE_CHECKING:   # the model imports this module; its type only for annotations
    from swarm_sona.learning.model import SONAModel

__all__ = ["backward", "block_backward", "collect"]


def backward(model: SONAModel, cache: Mapping[str, Any], grads: Mapping[str, np.ndarray], *,
             need_input_grad: bool = False) -> dict[str, np.ndarray]:
    """Exact gradients from gradients of the outputs (see
    :meth:`~swarm_sona.learning.model.SONAModel.backward`)."""
    out: dict[str, np.ndarray] = {}
    g_h = heads_backward(model, cache, grads, out)
    block_backward(model, cache, g_h, out, need_input_grad=need_input_grad)
    return out


def block_backward(model: SONAModel, cache: Mapping[str, Any], g_h: np.ndarray, out: dict[str, np.ndarray], *,
                   need_input_grad: bool = False) -> None:
    """Gradients of the block's adapters into ``out`` from the gradient ``g_h`` w.r.t. the
    final hidden state; ``out["input"]`` (n, T, d) when ``need_input_grad``."""
    L = model.layers
    g_h2 = layer_norm_backward(cache["hn"], cache["ln2_inv"], g_h * model.inv_sqrt_d)
    g_a, ga = L["mlp_out"].backward(cache["mlp_out"], g_h2)
    collect(out, "mlp_out", ga)
    assert g_a is not None  # input gradients are on by default
    g_u = g_a * cache["relu"]
    g_h1n, ga = L["mlp_in"].backward(cache["mlp_in"], g_u)
    collect(out, "mlp_in", ga)
    assert g_h1n is not None
    g_h1 = g_h2 + layer_norm_backward(cache["h1n"], cache["ln1_inv"], g_h1n)
    g_att, ga = L["o"].backward(cache["o"], g_h1)
    collect(out, "o", ga)
    assert g_att is not None
    g_xn = _attention_backward(model, cache, g_att, out, need_input_grad)
    if need_input_grad:
        assert g_xn is not None
        gX = layer_norm_backward(cache["xn"], cache["ln0_inv"], g_xn)
        gX[:, 0] += g_h1
        out["input"] = gX


def _attention_backward(model: SONAModel, cache: Mapping[str, Any], g_att: np.ndarray, out: dict[str, np.ndarray],
                        need_input_grad: bool) -> np.ndarray | None:
    """Through the attention (q, k, v) or, with one token, ``v`` alone; returns the gradient
    w.r.t. the normalised tokens (n, T, d) when ``need_input_grad``."""
    n, T, d = cache["n"], cache["T"], model.dim
    L = model.layers
    if T == 1:
        g_x0n, ga = L["v"].backward(cache["v"], g_att, need_input_grad=need_input_grad)
        collect(out, "v", ga)
        return None if g_x0n is None else g_x0n[:, None, :]
    p, V, K, q = cache["p"], cache["V"], cache["K"], cache["q_out"]
    gV = p[:, :, None] * g_att[:, None, :]
    gp = np.einsum("nd,ntd->nt", g_att, V)
    gs = p * (gp - (p * gp).sum(axis=1, keepdims=True)) * model.inv_sqrt_d
    gq = np.einsum("nt,ntd->nd", gs, K)
    gK = gs[:, :, None] * q[:, None, :]
    g_v, ga = L["v"].backward(cache["v"], gV.reshape(n * T, d), need_input_grad=need_input_grad)
    collect(out, "v", ga)
    g_k, ga = L["k"].backward(cache["k"], gK.reshape(n * T, d), need_input_grad=need_input_grad)
    collect(out, "k", ga)
    g_q, ga = L["q"].backward(cache["q"], gq, need_input_grad=need_input_grad)
    collect(out, "q", ga)
    if not need_input_grad:
        return None
    assert g_v is not None and g_k is not None and g_q is not None
    g_xn = (g_v + g_k).reshape(n, T, d)
    g_xn[:, 0] += g_q
    return g_xn


def collect(out: dict[str, np.ndarray], module: str, adapter_grads: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Adapter gradients of ``module`` into ``out`` under the model's parameter names
    (``"<module>.A"`` for the default adapter, ``"<module>[<adapter>].A"`` for others).

    Example:
        >>> g = {}
        >>> collect(g, "v", {"default": {"B": np.zeros(1)}, "extra": {"B": np.ones(1)}})
        >>> sorted(g)
        ['v.B', 'v[extra].B']
    """
    for aname, g in adapter_grads.items():
        prefix = adapter_prefix(module, aname)
        for pname, arr in g.items():
            out[f"{prefix}.{pname}"] = arr
