"""Lazy bank reopen (swarm_sona.bank.loading): a bank opens without loading its cache
(``cache_load``), the store answers every query meanwhile exactly as the loaded cache does, and
writes and deletes made during the load are in the cache once it is live."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarm_sona.bank import ReasoningBank
from swarm_sona.bank.loading import LOAD_BATCH
from swarm_sona.embedding.embedders import HashingEmbedder
from swarm_sona.runtime.actors.bank import BankActor, PatternStore

DIM = 32
N = LOAD_BATCH + 900   # two load batches: a listener can hold the load between them


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    V = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return V / np.linalg.norm(V, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def bank_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lazy") / "bank"
    V = _vectors(N)
    with ReasoningBank(path=path, embedder=HashingEmbedder(DIM)) as bank:
        bank.store_many([{"task": f"task {i}", "output": f"o{i}", "reward": (i % 97) / 96, "success": bool(i % 3),
                          "vector": V[i], "task_type": f"t{i % 5}", "agent_id": f"a{i % 4}"} for i in range(N)])
    return path


QUERIES = _vectors(12, seed=1)
FILTERS: list[dict[str, Any]] = [{}, {"min_reward": 0.5}, {"task_type": "t2"},
                                 {"source_agents": ["a1", "a3"], "success": True}]


def _answers(bank: ReasoningBank) -> list:
    out = [[p.id for p in bank.retrieve_patterns(vector=q, k=5, **f)] for q in QUERIES for f in FILTERS]
    counts = [bank.count(**f) for f in FILTERS]
    return [out, counts]


class Gate:
    """A fill listener that holds the background load after its first batch until opened."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.batches = 0

    def __call__(self, points) -> None:
        self.batches += 1
        assert self.open.wait(30), "the test never released the load"


def test_the_store_answers_while_the_cache_loads_and_writes_meanwhile_are_kept(bank_dir, tmp_path):
    bank_dir = Path(shutil.copytree(bank_dir, tmp_path / "bank"))   # this test writes to it
    with ReasoningBank({"cache_load": "open"}, path=bank_dir) as ref:
        expected = _answers(ref)
        assert ref.stats()["cache_load"]["state"] == "ready" and ref.cache.serving
    gate = Gate()
    t0 = time.perf_counter()
    bank = ReasoningBank({"cache_load": "background"}, path=bank_dir, fill_listeners=[gate])
    try:
        opened_s = time.perf_counter() - t0
        st = bank.stats()
        assert st["cache_load"]["state"] == "loading" and not bank.cache.serving and st["count"] == N
        assert _answers(bank) == expected            # answered by the store, same as the cache
        new = bank.store_pattern("a task stored while loading", "", "x", 1.0, True, vector=QUERIES[0])
        victim = expected[0][0][1]                   # the second-best pattern of query 0, no filter
        assert bank.delete(victim) == 1
        hits = [p.id for p in bank.retrieve_patterns(vector=QUERIES[0], k=5)]
        assert hits[0] == new and victim not in hits
        during = _answers(bank)
        gate.open.set()
        assert bank.wait_loaded(60) and bank.cache.serving and gate.batches == -(-N // LOAD_BATCH)
        assert bank.stats()["cache_load"]["state"] == "ready"
        assert bank.cache.n == N and new in bank.cache and victim not in bank.cache
        assert _answers(bank) == during                # now from the cache: the same answers
        assert bank.count() == N
    finally:
        gate.open.set()
        bank.close()
    print(f"opened a {N}-pattern bank in {opened_s * 1000:.1f} ms with the cache loading")


def test_cache_load_option_decides_whether_open_waits(bank_dir):
    gate = Gate()
    with ReasoningBank({"cache_load": "open"}, path=bank_dir, fill_listeners=[gate]) as bank:
        assert bank.cache.serving and bank.cache.n == N and gate.batches == 0   # loaded before the open returned
    gate.open.set()
    with ReasoningBank({"cache_load": "auto"}, path=bank_dir) as bank:   # auto: small banks load at open
        assert bank.cache.serving and bank.load_status().state == "ready"


def test_close_and_refresh_stop_a_running_load(bank_dir):
    gate = Gate()
    bank = ReasoningBank({"cache_load": "background"}, path=bank_dir, fill_listeners=[gate])
    threading.Timer(0.2, gate.open.set).start()
    bank.refresh()                                   # waits for the loader, then loads now
    assert bank.cache.serving and bank.cache.n == N
    bank.close()
    gate2 = Gate()
    bank = ReasoningBank({"cache_load": "background"}, path=bank_dir, fill_listeners=[gate2])
    threading.Timer(0.2, gate2.open.set).start()
    bank.close()
    assert bank.closed and bank.load_status().state in ("stopped", "ready")
    with ReasoningBank(path=bank_dir) as again:      # the path is free again
        assert again.count() == N


def test_bank_actor_searches_through_the_store_then_the_cache(bank_dir):
    actor = BankActor({"path": str(bank_dir), "cache_load": "background"}, dim=DIM)
    try:
        during = actor.search_batch(QUERIES, 3)      # the loader may or may not be done: both answer the same
        assert actor.bank.wait_loaded(60)
        assert actor.store._fast() and len(actor.store.payloads) == N
        after = actor.search_batch(QUERIES, 3)
        assert [[h["id"] for h in r] for r in during] == [[h["id"] for h in r] for r in after]
        assert all(r and r[0]["task"].startswith("task ") for r in after)
    finally:
        actor.close()


def test_a_pattern_store_without_a_fill_listener_waits_for_the_cache(bank_dir):
    """An agent's own bank (a server collection): its PatternStore builds the index once loaded."""
    with ReasoningBank({"cache_load": "background"}, path=bank_dir) as bank:
        store = PatternStore(bank)
        assert bank.load_status().state == "ready" and store._fast() and len(store.payloads) == N
