"""Forward passes of the engine's model, with the activation cache the instant loop reuses.

:meth:`Activations.forward` / :meth:`Activations.forward_batch` run the model for task
embeddings and cache the pre-MicroLoRA hidden states by input bytes (bounded, oldest first out),
so that learning an input that was routed costs no second pass through the network.

Example:
    >>> import numpy as np
    >>> from swarm_sona.engine.config import SONAConfig
    >>> from swarm_sona.learning.model import SONAModel
    >>> from swarm_sona.engine.activations import Activations
    >>> acts = Activations(SONAModel.from_config(SONAConfig(dim=16, mlp_hidden=16)), 16, 8)
    >>> out = acts.forward(np.ones(16, np.float32))
    >>> out["hidden"].shape, 0.0 < out["value"] < 1.0, len(acts.cache)
    ((16,), True, 1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np

from swarm_sona.engine import inputs
from swarm_sona.engine.errors import EngineError
from swarm_sona.learning.model import SONAModel

__all__ = ["Activations", "Forward", "ForwardBatch", "CACHE_SIZE"]

_F32 = np.dtype(np.float32)
CACHE_SIZE = 1024


class Forward(TypedDict):
    """Model outputs for one task."""

    hidden: np.ndarray
    value: float
    router_probs: np.ndarray


class ForwardBatch(TypedDict):
    """Model outputs for many tasks, one row each (``h``: the pre-MicroLoRA hidden states)."""

    h: np.ndarray
    hidden: np.ndarray
    value: np.ndarray
    router_probs: np.ndarray


def _key(e: np.ndarray, steps: Sequence[np.ndarray] | None) -> bytes:
    return e.tobytes() if not steps else b"".join([e.tobytes(), *(s.tobytes() for s in steps)])


class Activations:
    """The model's forward passes for one engine plus their hidden-state cache (see module docs)."""

    def __init__(self, model: SONAModel, dim: int, max_steps: int) -> None:
        self.model = model
        self.dim = dim
        self.max_steps = max_steps
        self.cache: dict[bytes, np.ndarray] = {}

    def clear(self) -> None:
        """Forget every cached activation (after the network's weights changed)."""
        self.cache.clear()

    def _put(self, key: bytes, h: np.ndarray) -> None:
        if len(self.cache) >= CACHE_SIZE:
            del self.cache[next(iter(self.cache))]
        self.cache[key] = h

    def step_vectors(self, steps: Sequence[Any] | None) -> list[np.ndarray]:
        """Checked step embeddings of a trajectory (the last ``max_steps``)."""
        return inputs.step_vectors(steps, self.dim, self.max_steps)

    def hidden(self, e: np.ndarray, steps: list[np.ndarray]) -> np.ndarray:
        """Pre-MicroLoRA hidden state of one checked input (cached)."""
        key = _key(e, steps)
        h = self.cache.get(key)
        if h is None:
            h = self.model.encode_one(e) if not steps else self.model.encode(self.model.tokens(e, steps))[0]
            self._put(key, h)
        return h

    def hidden_batch(self, E: np.ndarray, steps: list[list[np.ndarray]] | None) -> np.ndarray:
        """Pre-MicroLoRA hidden states (n, d) of checked rows: cached rows are reused, the
        others are encoded in one batched pass and cached."""
        n = E.shape[0]
        keys = [_key(E[i], steps[i] if steps else None) for i in range(n)]
        get = self.cache.get
        hs = [get(k) for k in keys]
        miss = [i for i, h in enumerate(hs) if h is None]
        if n and not miss:   # every row cached (the swarm's case: routed, then learned)
            return np.stack(hs)  # type: ignore[arg-type]
        H = np.empty((n, self.dim), np.float32)
        for i, h in enumerate(hs):
            if h is not None:
                H[i] = h
        if miss:
            if steps is None or not any(steps[i] for i in miss):
                Hm = self.model.encode(E[miss])
            else:
                X, mask = self.model.pack(E[miss], [steps[i] for i in miss])
                Hm = self.model.encode(X, mask)
            H[miss] = Hm
            for j, i in enumerate(miss):
                self._put(keys[i], Hm[j])
        return H

    def forward(self, embedding: Any, steps: Sequence[Any] | None = None) -> Forward:
        """Model outputs for one task (caches the activations the instant loop reuses)."""
        e = inputs.vector(embedding, self.dim, "embedding")
        h = self.hidden(e, self.step_vectors(steps))
        m = self.model
        hm = m.micro.apply(h)
        vl = float(hm @ m.value_w) + float(m.value_b[0])
        rl = m.router_W @ hm
        rl += m.router_b
        return {"hidden": hm, "value": 1.0 / (1.0 + math.exp(-vl)) if vl > -700 else 0.0,
                "router_probs": 0.5 * (1.0 + np.tanh(0.5 * rl))}

    def forward_batch(self, embeddings: Any, steps: Sequence[Sequence[Any] | None] | None = None) -> ForwardBatch:
        """Model outputs for many tasks in one vectorised pass (row i equals ``forward`` of row i)."""
        E = inputs.matrix(embeddings, self.dim, "forward_batch: embeddings")
        n = E.shape[0]
        rows = None
        if steps is not None:
            steps = list(steps)
            if len(steps) != n:
                raise EngineError(f"forward_batch: {len(steps)} step lists for {n} embeddings")
            rows = [self.step_vectors(s) for s in steps]
            if not any(rows):
                rows = None
        H = self.hidden_batch(E, rows) if n else np.empty((0, self.dim), np.float32)
        m = self.model
        hm = m.micro.apply(H) if n else H.copy()
        vl = hm @ m.value_w
        vl += m.value_b[0]
        rl = hm @ m.router_W.T
        rl += m.router_b
        return {"h": H, "hidden": hm, "value": 0.5 * (1.0 + np.tanh(0.5 * vl)),
                "router_probs": 0.5 * (1.0 + np.tanh(0.5 * rl))}

    def apply(self, vector: Any) -> np.ndarray:
        """MicroLoRA applied to a (dim,) vector or the rows of an (n, dim) array."""
        v = vector
        if not (type(v) is np.ndarray and v.dtype is _F32 and v.flags.c_contiguous):
            try:
                v = np.ascontiguousarray(v, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise EngineError(f"apply: vector is not numeric: {exc}") from None
        if v.ndim not in (1, 2) or v.shape[-1] != self.dim:
            raise EngineError(f"apply: vector has shape {v.shape}, expected ({self.dim},) or (n, {self.dim})")
        out = self.model.micro.apply(v, finite=True)   # the kernel flags NaN/inf in its own pass
        if out is None:
            raise EngineError("apply: vector contains NaN or inf (or values too large)" if v.ndim == 1
                              else "apply: vectors contain NaN or inf (or values too large)")
        return out  # type: ignore[no-any-return]
