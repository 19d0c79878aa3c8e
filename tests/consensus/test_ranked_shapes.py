"""The merge book refuses ``adapters/*`` entries that are not LoRA factors (not 2-D, or an A/B
pair of inconsistent rank) and still merges a push of another LoRA rank apart."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.updates import AgentUpdate, MergeError


def _push(agent: str, r: int, seq: int = 1, d_in: int = 4, d_out: int = 3) -> AgentUpdate:
    return AgentUpdate(agent, seq, {"adapters/q/A": np.full((r, d_in), 1.0), "adapters/q/B": np.full((d_out, r), 2.0),
                                    "heads/v/w": np.ones(4)})


def test_a_one_d_adapter_entry_is_refused_naming_it():
    book = MergeBook(min_updates=1)
    assert book.submit(_push("w1", 2))
    bad = AgentUpdate("evil", 1, {"adapters/q/A": np.ones(8), "adapters/q/B": np.ones((3, 2)), "heads/v/w": np.ones(4)})
    with pytest.raises(MergeError, match=r"evil.*'adapters/q/A'.*\(8,\).*2-D"):
        book.submit(bad)
    assert book.pending_agents == ["w1"]


def test_a_first_push_with_a_one_d_adapter_is_refused_too():
    with pytest.raises(MergeError, match="adapters/q/B"):
        MergeBook().submit(AgentUpdate("a", 1, {"adapters/q/A": np.ones((2, 4)), "adapters/q/B": np.ones(3)}))


def test_an_inconsistent_a_b_rank_is_refused():
    bad = AgentUpdate("x", 1, {"adapters/q/A": np.ones((4, 4)), "adapters/q/B": np.ones((3, 2)), "heads/v/w": np.ones(4)})
    with pytest.raises(MergeError, match=r"x: adapters/q.*rank 4.*rank 2"):
        MergeBook().submit(bad)


def test_a_push_of_another_rank_is_still_merged_apart():
    book = MergeBook(min_updates=3)
    for agent, r in (("w1", 2), ("w2", 2), ("q1", 4)):
        assert book.submit(_push(agent, r))
    res = book.merge()
    assert res is not None
    assert {"adapters/q/A@2x4", "adapters/q/A@4x4", "adapters/q/B@3x2", "adapters/q/B@3x4",
            "heads/v/w"} <= set(res.params)
    assert res.params["adapters/q/A@4x4"].shape == (4, 4)
