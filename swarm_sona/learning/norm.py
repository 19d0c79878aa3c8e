"""Layer normalisation without affine parameters, and its exact backward.

Example:
    >>> import numpy as np
    >>> from swarm_sona.learning.norm import layer_norm
    >>> xhat, inv = layer_norm(np.array([[1.0, 3.0]]))
    >>> xhat.round(3).tolist()
    [[-1.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["LN_EPS", "layer_norm", "layer_norm_backward"]

#: variance epsilon of :func:`layer_norm`
LN_EPS = 1e-5


def layer_norm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) / sqrt(var + eps)`` over the last axis, and ``1 / sqrt(var + eps)`` (for the backward)."""
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    inv = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + LN_EPS)
    xc *= inv
    return xc, inv


def layer_norm_backward(xhat: np.ndarray, inv: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the input of :func:`layer_norm` from the gradient ``g`` of its output
    (``xhat``, ``inv``: what the forward returned).

    Example:
        >>> xhat, inv = layer_norm(np.array([[1.0, 3.0]]))
        >>> layer_norm_backward(xhat, inv, np.ones((1, 2))).tolist()   # a shift changes nothing
        [[0.0, 0.0]]
    """
    gm = g.mean(axis=-1, keepdims=True)
    gxm = (g * xhat).mean(axis=-1, keepdims=True)
    return inv * (g - gm - xhat * gxm)
