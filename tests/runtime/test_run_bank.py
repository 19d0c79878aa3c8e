"""RunBank: the run's bank as an agent's executor sees it (no Ray: the bank actor in-process)."""

from __future__ import annotations

import pytest

from swarm_sona.bank import ReasoningBank
from swarm_sona.runtime.actors.bank import BankActor, PatternStore
from swarm_sona.runtime.actors.run_bank import RunBank, offer_run_bank

ITEM = {"task": "parse the config", "output": "use a tokenizer", "reward": 0.9, "success": True}


@pytest.fixture
def actor():
    b = BankActor({"persist_to_disk": False}, dim=64)
    yield b
    b.close()


def test_a_shared_bank_reads_every_agents_patterns_an_unshared_one_only_its_own(actor):
    RunBank(actor, agent_id="writer").store([ITEM])
    shared, own = RunBank(actor, agent_id="reader"), RunBank(actor, agent_id="reader", shared=False)
    assert [p["agent_id"] for p in shared.retrieve("parse the config", 3)] == ["writer"]
    assert own.retrieve("parse the config", 3) == []


def test_filters_reach_the_bank(actor):
    bank = RunBank(actor, agent_id="a")
    bank.store([ITEM, {**ITEM, "output": "split on spaces", "reward": 0.2, "success": False}])
    assert [p["output"] for p in bank.retrieve("parse the config", 5, success=False)] == ["split on spaces"]
    assert [p["output"] for p in bank.retrieve("parse the config", 5, min_reward=0.5)] == ["use a tokenizer"]


def test_a_pattern_store_over_a_bank_in_this_process_works_the_same(tmp_path):
    store = PatternStore(ReasoningBank({"path": str(tmp_path / "b")}, embedder="hashing-v1-64"))
    try:
        bank = RunBank(store, agent_id="a")
        assert len(bank.store([ITEM])) == 1
        assert [p["output"] for p in bank.retrieve("parse the config", 1)] == ["use a tokenizer"]
    finally:
        store.bank.close()


def test_bad_input_names_what_was_wrong(actor):
    with pytest.raises(ValueError, match="no bank"):
        RunBank(None, agent_id="a")
    bank = RunBank(actor, agent_id="a")
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        bank.retrieve("t", 0)
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        bank.retrieve("  ", 1)
    with pytest.raises(ValueError, match="item 0 must be a mapping with a 'task'"):
        bank.store([{"output": "x"}])


def test_only_an_executor_whose_class_takes_the_bank_is_offered_it(actor):
    class Takes:
        def use_run_bank(self, bank):
            self.bank = bank

    class Forwards:   # forwards attributes (like a wrapper) but does not take the bank itself
        def __getattr__(self, name):
            return getattr(Takes(), name)

    bank = RunBank(actor, agent_id="a")
    ex = Takes()
    assert offer_run_bank(ex, bank) and ex.bank is bank
    assert not offer_run_bank(Forwards(), bank) and not offer_run_bank(lambda *a: None, bank)
