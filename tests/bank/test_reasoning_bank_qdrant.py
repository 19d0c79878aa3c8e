"""The ``qdrant`` (qdrant-client) backend. No Qdrant server can be installed on the development
machines, so these tests run the backend's client code against qdrant-client's in-process local
mode (``:memory:`` or a directory), against a closed local port (unreachable server), and
through a wrapper that injects transient failures into a local-mode client."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from swarm_sona.bank import BankError, BankUnavailableError, ReasoningBank
from swarm_sona.bank.qdrant_backend import QdrantBackend, is_transient
from swarm_sona.embedding.embedders import HashingEmbedder

DIM = 16


class FlakyClient:
    """Delegates to a local-mode client; the first ``fail`` calls of each listed method raise."""

    def __init__(self, real: QdrantClient, fail: int, methods=("upsert",), exc=None) -> None:
        self.real, self.fail, self.methods = real, fail, set(methods)
        self.calls: dict[str, int] = {}
        self.exc = exc or ResponseHandlingException(httpx.ConnectError("connection reset by peer"))

    def __getattr__(self, name):
        fn = getattr(self.real, name)

        def wrapped(*args, **kwargs):
            n = self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.methods and n <= self.fail:
                raise self.exc
            return fn(*args, **kwargs)

        return wrapped


def qdrant_cfg(**kw):
    return {"backend": "qdrant", "url": "http://qdrant.invalid:6333", "retry_backoff_s": 0.001, **kw}


def test_qdrant_backend_via_local_mode_path_survives_a_new_process(tmp_path):
    url = f"file://{tmp_path / 'qdrant'}"
    with ReasoningBank({"backend": "qdrant", "url": url}, embedder=HashingEmbedder(DIM)) as bank:
        ids = bank.store_many([{"task": f"task number {i}", "reward": i / 20, "success": i % 2 == 0}
                               for i in range(20)])
        bank.delete(ids[:2])
        expected = [p.id for p in bank.retrieve_patterns("task number 7", k=5, min_reward=0.2)]
    code = textwrap.dedent("""
        import json, sys
        from swarm_sona.bank import ReasoningBank
        with ReasoningBank({"backend": "qdrant", "url": sys.argv[1]}) as bank:
            print(json.dumps({"count": bank.count(), "embedder": bank.embedder_name,
                              "ids": [p.id for p in bank.retrieve_patterns("task number 7", k=5, min_reward=0.2)]}))
    """)
    proc = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == {"count": 18, "embedder": f"hashing-v1-{DIM}", "ids": expected}


@pytest.mark.parametrize("grpc", [False, True])
def test_qdrant_backend_unreachable_server_gives_a_clear_error(grpc):
    cfg = {"backend": "qdrant", "url": "http://127.0.0.1:1", "prefer_grpc": grpc, "retries": 2,
           "retry_backoff_s": 0.001, "timeout_s": 2}
    with pytest.raises(BankUnavailableError) as info:
        ReasoningBank(cfg, embedder=HashingEmbedder(DIM))
    msg = str(info.value)
    assert "Qdrant server at http://127.0.0.1:1 is unreachable" in msg and "3 times" in msg
    assert "backend 'edge'" in msg


def test_qdrant_backend_via_local_mode_retries_transient_errors_with_backoff():
    sleeps: list[float] = []
    flaky = FlakyClient(QdrantClient(location=":memory:"), fail=2)
    backend = QdrantBackend("http://x", client=flaky, retries=3, backoff_s=0.1, sleep=sleeps.append)
    backend.open({"embedder": f"hashing-v1-{DIM}", "dim": DIM})
    backend.upsert(["6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21"], np.ones((1, DIM), np.float32), [{"reward": 1.0}])
    assert flaky.calls["upsert"] == 3 and backend.count() == 1
    assert len(sleeps) == 2 and 0.05 <= sleeps[0] <= 0.15 and 0.1 <= sleeps[1] <= 0.3  # doubling, jittered


def test_qdrant_backend_via_local_mode_gives_up_after_retries_and_writes_nothing():
    flaky = FlakyClient(QdrantClient(location=":memory:"), fail=100)
    bank = ReasoningBank(qdrant_cfg(retries=2), embedder=HashingEmbedder(DIM), client=flaky)
    with pytest.raises(BankUnavailableError, match="upsert failed 3 times"):
        bank.store_pattern("t", "", "", 0.5, True)
    assert flaky.calls["upsert"] == 3
    assert bank.count() == 0 and len(bank.cache) == 0
    bank.close()


def test_qdrant_backend_via_local_mode_does_not_retry_real_errors():
    bad = UnexpectedResponse(400, "Bad Request", b'{"status": {"error": "bad filter"}}', httpx.Headers())
    flaky = FlakyClient(QdrantClient(location=":memory:"), fail=1, exc=bad)
    bank = ReasoningBank(qdrant_cfg(), embedder=HashingEmbedder(DIM), client=flaky)
    with pytest.raises(BankError, match="Qdrant upsert failed") as info:
        bank.store_pattern("t", "", "", 0.5, True)
    assert not isinstance(info.value, BankUnavailableError) and flaky.calls["upsert"] == 1
    bank.close()


def test_qdrant_backend_via_local_mode_upserts_in_batches():
    counting = FlakyClient(QdrantClient(location=":memory:"), fail=0)
    bank = ReasoningBank(qdrant_cfg(batch_size=7), embedder=HashingEmbedder(DIM), client=counting)
    bank.store_many([{"task": f"t{i}", "reward": 0.5, "success": True} for i in range(20)])
    assert counting.calls["upsert"] == 3 and bank.count() == 20
    bank.close()
    counting.real.get_collections()  # an injected client is not closed by the bank


def test_qdrant_backend_via_local_mode_refuses_a_foreign_collection():
    client = QdrantClient(location=":memory:")
    client.create_collection("reasoning_bank", vectors_config=models.VectorParams(size=DIM,
                                                                                    distance=models.Distance.COSINE))
    with pytest.raises(BankError, match="not a swarm_sona ReasoningBank"):
        ReasoningBank(qdrant_cfg(), embedder=HashingEmbedder(DIM), client=client)


def test_qdrant_backend_api_key_comes_from_env(monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    b = QdrantBackend("https://qdrant.example:6333", prefer_grpc=False)
    assert b.client.init_options["api_key"] == "from-env"
    b2 = QdrantBackend("https://qdrant.example:6333", api_key="explicit")
    assert b2.client.init_options["api_key"] == "explicit"


def test_transient_error_classification():
    assert is_transient(ResponseHandlingException(httpx.ConnectError("refused")))
    assert is_transient(UnexpectedResponse(503, "Unavailable", b"", httpx.Headers()))
    assert not is_transient(UnexpectedResponse(404, "Not Found", b"", httpx.Headers()))
    assert is_transient(TimeoutError()) and not is_transient(KeyError("x"))
