"""Delta / merged messages: round trip, and malformed or wrong-version messages rejected."""

import numpy as np
import pytest

from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.messages import MessageError, decode_delta, decode_merged, encode_delta, encode_merged
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core import codec


def _update(seq=1, agent="w1"):
    return AgentUpdate(agent, seq, {"adapters/q/B": np.ones((4, 2), np.float32)}, weight=7,
                       fisher={"adapters/q/B": np.full((4, 2), 0.5, np.float32)}, base_version=3)


def test_round_trip_and_trace():
    u = decode_delta(encode_delta(_update(), trace={"traceparent": "00-ab-cd-01"}))
    assert (u.agent_id, u.seq, u.base_version, u.weight) == ("w1", 1, 3, 7.0)
    np.testing.assert_array_equal(u.fisher["adapters/q/B"], 0.5)
    assert u.metadata["trace"]["traceparent"] == "00-ab-cd-01"
    m = decode_merged(encode_merged(4, {"x": np.zeros(3)}, agents=["a"], rule="median"))
    assert m["version"] == 4 and m["rule"] == "median"


@pytest.mark.parametrize("make,match", [
    (lambda: codec.pack_frame("delta", {"agent_id": "w1"}, version=99), "unsupported schema version 99"),
    (lambda: codec.pack_frame("merged", {"version": 1, "params": {}}), "expected a 'delta' message"),
    (lambda: encode_delta(_update())[:-4], "truncated"),
    (lambda: b"garbage", "bad magic"),
    (lambda: codec.pack_frame("delta", {"agent_id": "w1", "seq": 1}), "missing fields"),
    (lambda: codec.pack_frame("delta", {"agent_id": "w1", "seq": -1, "base_version": 0, "n_trajectories": 1,
                                        "params": {"x": np.zeros(2)}}), "seq"),
    (lambda: codec.pack_frame("delta", {"agent_id": "w1", "seq": 1, "base_version": 0, "n_trajectories": 1,
                                        "params": {"x": np.array([np.inf])}}), "NaN or inf"),
    (lambda: codec.pack_frame("delta", {"agent_id": "w1", "seq": 1, "base_version": 0, "n_trajectories": 1,
                                        "params": {"x": "not an array"}}), "must be an array"),
])
def test_bad_messages_rejected_and_merged_state_unchanged(make, match):
    book = MergeBook("median")
    book.submit(_update(1, "w0"))
    before = book.merge()
    blob = make()
    with pytest.raises(MessageError, match=match):
        book.submit(decode_delta(blob))
    assert book.version == before.version and book.pending_agents == []
    np.testing.assert_array_equal(book.merged["adapters/q/B"], before.params["adapters/q/B"])


def test_corrupt_byte_detected():
    blob = bytearray(encode_delta(_update()))
    blob[40] ^= 0x01
    with pytest.raises(MessageError, match="checksum"):
        decode_delta(bytes(blob))
