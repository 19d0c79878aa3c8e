"""The lease broker as a Ray actor: limiters in other processes reach it by name (RayLease)."""

from __future__ import annotations

import pickle
import time

import pytest

from swarm_sona.executors.limits import RateLimiter
from swarm_sona.runtime.launch import leased_executor
from swarm_sona.runtime.lease import RayLease, start_lease_broker

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_limiters_rebalance_through_the_broker_actor() -> None:
    from swarm_sona.executors.leases import LeaseSeat
    from swarm_sona.executors.openai_chat import OpenAIChatExecutor

    client = start_lease_broker("test-leases", None, ["a", "b"], rebalance_s=0.2, floor=0.2)
    shipped = pickle.loads(pickle.dumps(client))          # what an agent actor gets: the name only
    assert shipped.rebalance("a", {"m": 5.0}) == {"m": 0.5}
    time.sleep(0.7)                                       # b silent for 2 x 0.2 + 0.2 s: reclaimed
    assert shipped.rebalance("a", {"m": 5.0})["m"] == pytest.approx(0.9)
    assert client.shares()["m"] == pytest.approx({"a": 0.9, "b": 0.1})
    ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None,
                            limits={"default": {"rpm": 600}, "rebalance_s": 0.2})
    agent_ex = pickle.loads(pickle.dumps(leased_executor(ex, 2, LeaseSeat(client, "b", 0.1))))
    assert agent_ex.limiter.admit("m").model == "m" and agent_ex.limiter.share("m") == pytest.approx(0.1)
    gone = RateLimiter({"default": {"rpm": 600}, "shares": 2, "rebalance_s": 0.2})
    gone.attach_lease(RayLease("no-such-broker", timeout_s=0.5), "a", floor_share=0.05)
    gone.admit("m")
    time.sleep(0.25)
    gone.admit("m")
    assert gone.share("m") == 0.05                        # unreachable: down to its floor
    with pytest.raises(ValueError, match="members must be distinct"):
        start_lease_broker("test-leases-2", None, ["a", "a"], rebalance_s=0.2)
