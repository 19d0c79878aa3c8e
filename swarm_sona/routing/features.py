"""A task as the bandit sees it: features ``x = [embedding, 1]`` and the router head's probabilities.

:class:`TaskFeatures` embeds a task (or checks a given embedding) into a preallocated buffer,
remembers the last routed text so its feedback reuses the same features, and checks router-head
probabilities (one per model, by name or in config order).

Example:
    >>> tf = TaskFeatures(dim=3, names=("a", "b"))
    >>> tf.load(None, [1.0, 2.0, 3.0]).tolist()
    [1.0, 2.0, 3.0, 1.0]
    >>> tf.head({"b": 0.25})
    [None, 0.25]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.embedding.embedders import Embedder, HashingEmbedder
from swarm_sona.routing.decision import check_number
from swarm_sona.routing.errors import RouterError

__all__ = ["TaskFeatures"]


class TaskFeatures:
    """Features of tasks for a router of ``dim`` and models ``names`` (see the module docs).

    ``embedder``: used for texts given without an embedding (default ``HashingEmbedder(dim)``,
    created on first use). ``xb`` is the buffer :meth:`load` fills (D = dim + 1).
    """

    def __init__(self, dim: int, names: Sequence[str], embedder: Embedder | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise RouterError(f"dim must be a positive integer, got {dim!r}")
        dim = int(dim)
        if embedder is not None and getattr(embedder, "dim", dim) != dim:
            raise RouterError(f"embedder {getattr(embedder, 'name', embedder)!r} has dimension "
                              f"{embedder.dim}, the router expects {dim}")
        self.dim, self.D = dim, dim + 1
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self._embedder = embedder
        self.xb = np.zeros(self.D)
        self.xb[-1] = 1.0
        self.last_text: str | None = None
        self.last_x = np.zeros(self.D)
        self.has_last = False

    @property
    def embedder(self) -> Embedder:
        """The embedder used for tasks given without an embedding."""
        if self._embedder is None:
            self._embedder = HashingEmbedder(self.dim)
        return self._embedder

    def load(self, text: str | None, embedding: Any) -> np.ndarray:
        """Fill (and return) :attr:`xb` with a task's features; the last routed text's
        features are reused without embedding it again."""
        xb = self.xb
        if embedding is not None:
            if type(embedding) is np.ndarray and embedding.shape == (self.dim,):
                xb[:-1] = embedding
                return xb
            try:
                arr = np.asarray(embedding, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise RouterError(f"embedding is not numeric: {exc}") from exc
            if arr.shape != (self.dim,):
                raise RouterError(f"embedding has shape {arr.shape}, expected ({self.dim},)")
            xb[:-1] = arr
            return xb
        if text is None:
            raise RouterError("a task text or an embedding is needed")
        if self.has_last and text == self.last_text:
            xb[:] = self.last_x
            return xb
        vec = np.asarray(self.embedder.embed([text]), dtype=np.float64)
        if vec.shape != (1, self.dim):
            raise RouterError(f"embedder returned shape {vec.shape}, expected (1, {self.dim})")
        xb[:-1] = vec[0]
        return xb

    def remember(self, text: str | None, x: np.ndarray) -> None:
        """Record ``x`` as the features of the last routed ``text`` (no-op for None)."""
        if text is not None:
            self.last_text = text
            self.last_x[:] = x
            self.has_last = True

    def batch(self, texts: list[str | None], embeddings: Any) -> np.ndarray:
        """(n, D) features ``[embedding, 1]``, checked (texts embedded in one call when no
        embeddings are given)."""
        n = len(texts)
        if embeddings is None:
            missing = [i for i, t in enumerate(texts) if t is None]
            if missing:
                raise RouterError(f"task {missing[0]}: a task text or an embedding is needed")
            E = np.asarray(self.embedder.embed([t for t in texts if t is not None]), dtype=np.float64) if n else np.zeros((0, self.dim))
        else:
            try:
                E = np.asarray(embeddings, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise RouterError(f"embeddings are not numeric: {exc}") from exc
        if E.shape != (n, self.dim):
            raise RouterError(f"embeddings have shape {E.shape}, expected ({n}, {self.dim})")
        X = np.empty((n, self.D))
        X[:, :-1] = E
        X[:, -1] = 1.0
        return X

    def batch_reusing_last(self, texts: list[str | None], embeddings: Any) -> np.ndarray:
        """:meth:`batch`, but without embeddings a row whose text is the last routed text
        reuses its features (as :meth:`load` would); checked finite."""
        if embeddings is None and texts:
            reuse = [self.has_last and t is not None and t == self.last_text for t in texts]
            todo = [i for i in range(len(texts)) if not reuse[i]]
            X = np.empty((len(texts), self.D))
            X[:, -1] = 1.0
            if todo:
                X[todo] = self.batch([texts[i] for i in todo], None)
            for i in range(len(texts)):
                if reuse[i]:
                    X[i] = self.last_x
        else:
            X = self.batch(texts, embeddings)
        if not np.isfinite(X).all():
            raise RouterError("embedding contains NaN or inf")
        return X

    def head(self, head_probs: Any) -> list[float | None] | None:
        """Checked router-head probabilities, one entry per model (None where none), or None."""
        if head_probs is None:
            return None
        M = len(self.names)
        out: list[float | None] = [None] * M
        if isinstance(head_probs, Mapping):
            for k, v in head_probs.items():
                i = self.index.get(k)
                if i is None:
                    raise RouterError(f"head_probs: unknown model {k!r}; models are {list(self.names)}")
                out[i] = check_number(v, f"head_probs[{k!r}]", lo=0.0, hi=1.0)
            return out
        arr = np.asarray(head_probs, dtype=np.float64).ravel()
        if arr.shape != (M,):
            raise RouterError(f"head_probs has {arr.size} entries, expected {M} (one per model)")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
            raise RouterError("head_probs must be probabilities in [0, 1]")
        probs: list[float | None] = [float(v) for v in arr.tolist()]
        return probs

    def batch_head(self, head_probs: Any, n: int) -> np.ndarray | None:
        """(n, M) head probabilities with NaN where a model has none, or None."""
        if head_probs is None:
            return None
        M = len(self.names)
        if isinstance(head_probs, np.ndarray) and head_probs.ndim == 2:
            H = np.asarray(head_probs, dtype=np.float64)
            if H.shape != (n, M):
                raise RouterError(f"head_probs has shape {H.shape}, expected ({n}, {M})")
            if not np.isfinite(H).all() or (H < 0).any() or (H > 1).any():
                raise RouterError("head_probs must be probabilities in [0, 1]")
            return H
        rows = list(head_probs)
        if len(rows) != n:
            raise RouterError(f"head_probs has {len(rows)} entries for {n} tasks")
        H = np.full((n, M), np.nan)
        for i, hp in enumerate(rows):
            h = self.head(hp)
            if h is not None:
                H[i] = [np.nan if v is None else v for v in h]
        return H
