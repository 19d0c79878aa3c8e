"""The bank actor's PatternStore: redacted index, fast path kept after retention deletes, ties
broken by reward then recency, point-in-time snapshots (in-process, no Ray)."""

import numpy as np

from swarm_sona.bank import ReasoningBank
from swarm_sona.runtime.actors.bank import BankActor, PatternStore


def test_tie_at_k1_the_success_wins_over_the_failure():
    b = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-32")
    b.store_pattern("deploy the service", "", "rolled back", 0.1, False)
    b.store_pattern("deploy the service", "", "blue-green", 0.9, True)     # same vector, later, better
    assert b.retrieve_patterns("deploy the service", k=1)[0].success is True
    store = PatternStore(b)
    v = b.embedder.embed(["deploy the service"])
    hit = store.search_batch(v, 1)[0][0]
    assert hit["success"] is True and hit["reward"] == 0.9
    b.close()


def test_index_is_redacted_and_fast_path_survives_a_delete():
    b = ReasoningBank({"persist_to_disk": False, "redact": "secrets"}, embedder="hashing-v1-32")
    store = PatternStore(b)
    secret = "sk-" + "A1b2C3d4E5f6G7h8I9j0K1l2"
    ids = store.store_batch([{"task": f"call the api with key {secret}", "reward": 0.9, "success": True,
                              "vector": np.eye(32, dtype=np.float32)[0]},
                             {"task": "other", "reward": 0.9, "success": True,
                              "vector": np.eye(32, dtype=np.float32)[1]}])
    assert all(secret not in f["task"] for f in store.payloads.values())
    b.delete([ids[1]])
    assert store._fast() and ids[1] not in store.payloads
    b.close()


def test_actor_snapshot_and_restore(tmp_path):
    a = BankActor({"persist_to_disk": False}, dim=16)
    a.store_batch([{"task": "sort list", "embedding": np.eye(16, dtype=np.float32)[0], "reward": 0.9,
                    "success": True}])
    assert a.snapshot(str(tmp_path / "bank.snap")) == 1
    a.store_batch([{"task": "later", "embedding": np.eye(16, dtype=np.float32)[1], "reward": 0.9,
                    "success": True}])
    assert a.count() == 2 and a.restore(str(tmp_path / "bank.snap")) == 1 and a.count() == 1
    assert a.search_batch(np.eye(16, dtype=np.float32)[:1], 1)[0][0]["task"] == "sort list"
    a.close()
