"""The prompts' features: the bench's embedders and the table embedded once per run (cached
per table and embedder in-process).

Example:
    >>> make_embedder("hashing", 32).dim
    32
"""

from __future__ import annotations

import numpy as np

from swarm_sona.core.progress import Progress
from swarm_sona.embedding.embedders import Embedder, HashingEmbedder, get_embedder
from swarm_sona.executors.table import RoutingTable

__all__ = ["make_embedder", "embed_table"]

_EMBED_CACHE: dict[tuple[str, int, str], np.ndarray] = {}


def make_embedder(name: str = "hashing-words", dim: int = 4096) -> Embedder:
    """The bench's embedders: ``hashing-words`` (word unigrams only), ``hashing`` (all hashed
    features), or any :func:`~swarm_sona.embedding.embedders.get_embedder` name (``dim`` ignored there).

    Example:
        >>> make_embedder("hashing-words", 64).weights
        (1.0, 0.0, 0.0)
    """
    if name == "hashing-words":
        return HashingEmbedder(dim, w_word=1.0, w_bigram=0.0, w_char=0.0)
    if name in ("hashing", "hash"):
        return HashingEmbedder(dim)
    return get_embedder(name)


def embed_table(table: RoutingTable, embedder: Embedder, *, progress: bool | None = None) -> np.ndarray:
    """Embed every prompt once (float32 ``(n, dim)``); cached per table and embedder in-process."""
    key = (f"{table.source}#{len(table)}#{hash(table.prompts)}", int(embedder.dim),
           f"{embedder.name}{getattr(embedder, 'weights', '')}")
    hit = _EMBED_CACHE.get(key)
    if hit is not None:
        return hit
    n = len(table)
    out = np.empty((n, embedder.dim), dtype=np.float32)
    step = 512
    with Progress(total=n, description=f"embedding ({embedder.name})", enabled=progress) as bar:
        for a in range(0, n, step):
            chunk = list(table.prompts[a:a + step])
            out[a:a + len(chunk)] = embedder.embed(chunk)
            bar.advance(len(chunk))
    out.setflags(write=False)
    _EMBED_CACHE[key] = out
    return out
