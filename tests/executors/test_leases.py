"""Rebalanced rate-limit shares: the lease broker's invariants on a fake clock, and on the replay
server one busy agent among four idle ones getting their unused budget with no 429."""

from __future__ import annotations

import pickle
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from swarm_sona.executors.leases import LeaseBroker
from swarm_sona.executors.limits import RateLimiter
from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.replay import replay_tasks
from swarm_sona.executors.table import ROUTELLM_STRONG, load_routing_table

DATA = Path(__file__).parents[1] / "data" / "routellm_slice"
TASKS = replay_tasks(load_routing_table(DATA))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_shares_never_add_up_to_more_than_the_budget_under_any_demand() -> None:
    clock, rng = Clock(), random.Random(0)
    members = ["a", "b", "c", "d"]
    broker = LeaseBroker(members, floor=0.2, grace_s=0.5, rebalance_s=0.25, clock=clock)
    applied: dict[str, dict[str, float]] = {m: {} for m in members}   # what each limiter runs at
    for _ in range(2000):
        clock.t += rng.uniform(0.0, 0.2)
        m = rng.choice(members)
        applied[m] = broker.rebalance(m, {"x": rng.choice([0.0, 0.0, 1.0, 50.0]), "y": rng.uniform(0, 5)})
        for model in ("x", "y"):
            # a share given up counts until it matures: whatever order the members apply theirs in
            held = broker.shares()[model]
            assert sum(held.values()) <= 1.0 + 1e-9
            assert sum(min(applied[k].get(model, 0.25), held[k]) for k in members) <= 1.0 + 1e-9
    with pytest.raises(ValueError, match="unknown member 'z'"):
        broker.rebalance("z", {})
    with pytest.raises(ValueError, match="floor"):
        LeaseBroker(members, floor=1.5)


def test_a_busy_member_gets_the_idle_ones_budget_and_a_silent_one_is_reclaimed() -> None:
    clock = Clock()
    broker = LeaseBroker(["a", "b", "c", "d"], floor=0.2, grace_s=0.5, rebalance_s=0.25, clock=clock)
    assert broker.rebalance("a", {"m": 10.0})["m"] == 0.25      # the others hold theirs
    clock.t = 1.1                                                # b, c, d silent for 2 x 0.25 + 0.5 s
    assert broker.rebalance("a", {"m": 10.0})["m"] == pytest.approx(0.85)
    assert broker.rebalance("b", {"m": 10.0})["m"] == pytest.approx(0.05)   # back to work: its floor
    clock.t = 1.3                                                # a's demand falls: b gets a's half
    assert broker.rebalance("a", {"m": 10.0})["m"] == pytest.approx(0.05 + 0.8 / 2)
    clock.t = 1.9
    assert broker.rebalance("b", {"m": 10.0})["m"] == pytest.approx(0.05 + 0.8 / 2)
    assert sum(broker.shares()["m"].values()) <= 1.0 + 1e-9
    copy = pickle.loads(pickle.dumps(broker))                   # to a Ray actor: fresh, equal shares
    assert copy.members == broker.members and copy.shares() == {}


def test_a_limiter_runs_at_its_rebalanced_share_and_falls_to_its_floor_without_the_broker() -> None:
    clock = Clock()
    broker = LeaseBroker(["a", "b"], floor=0.2, grace_s=0.0, rebalance_s=0.5, clock=clock)
    lim = RateLimiter({"default": {"rpm": 600}, "shares": 2, "rebalance_s": 0.5, "headroom": 1.0}, clock=clock)
    lim.attach_lease(broker, "a", floor_share=0.1)
    for _ in range(5):
        lim.admit("m")
    assert lim.share("m") == 0.5
    clock.t = 2.0                          # b silent: reclaimed; a's demand is all of it
    lim.admit("m")
    assert lim.share("m") == pytest.approx(0.9)
    waits = [lim.admit("m").wait_s for _ in range(20)]
    assert max(waits) <= 0.5               # nothing reserved further ahead than one period
    assert lim.admit("m").model is None    # beyond that: asks again later
    fixed = RateLimiter({"default": {"rpm": 600}, "shares": 2}, clock=clock)
    with pytest.raises(ValueError, match="rebalance_s"):
        fixed.attach_lease(broker, "a", floor_share=0.1)

    class Down:
        def rebalance(self, member, demand):
            raise ConnectionError("broker gone")

    lim2 = RateLimiter({"default": {"rpm": 600}, "shares": 2, "rebalance_s": 0.5}, clock=clock)
    lim2.attach_lease(Down(), "a", floor_share=0.1)
    lim2.admit("m")
    clock.t = 3.0
    lim2.admit("m")
    assert lim2.share("m") == 0.1
    shipped = pickle.loads(pickle.dumps(lim))   # a copy in an agent process keeps the lease
    assert shipped._lease is not None and shipped.share("m") == 0.5


def run_one_busy_agent(replay, rebalance: bool) -> tuple[float, dict, float]:
    """4 agents' executors (each its own limiter, as in 4 processes), one of them busy."""
    rpm = 2400   # 40 requests/s per model at the server (bursts of 4)
    with replay(rate_limit_rpm=rpm, rate_burst=4) as srv:
        limits = {"default": {"rpm": rpm}, "headroom": 0.9, "burst_s": 0.2, "rebalance_s": 0.25 if rebalance else 0.0}
        base = OpenAIChatExecutor(srv.base_url, api_key_env=None, max_concurrency=16, seed=0, limits=limits)
        base.lease_limits(4)
        agents = [pickle.loads(pickle.dumps(base)) for _ in range(4)]
        if rebalance:
            broker = LeaseBroker(["a0", "a1", "a2", "a3"], floor=0.2, grace_s=0.25, rebalance_s=0.25)
            for i, ex in enumerate(agents):
                ex.limiter.attach_lease(broker, f"a{i}", floor_share=0.05)
        with ThreadPoolExecutor(1) as pool:
            agents[1].run_many(TASKS[:1], ROUTELLM_STRONG)   # the idle ones ran once, long ago
            t0 = time.perf_counter()
            outs = pool.submit(agents[0].run_many, TASKS[:32], ROUTELLM_STRONG).result()
            took = time.perf_counter() - t0
        for ex in agents:
            ex.close()
        led = srv.ledger()
    assert all(o.error_kind is None for o in outs)
    return took, dict(led), agents[0].limiter.share(ROUTELLM_STRONG)


def test_one_busy_agent_of_four_gets_more_than_its_quarter_and_never_a_429(replay) -> None:
    fixed_s, fixed_led, fixed_share = run_one_busy_agent(replay, rebalance=False)
    reb_s, reb_led, reb_share = run_one_busy_agent(replay, rebalance=True)
    quarter = 0.25 * 0.9 * 2400 / 60                      # requests/s of a fixed share: 9
    print(f"fixed: {32 / fixed_s:.1f}/s (share {fixed_share}), rebalanced: {32 / reb_s:.1f}/s (share {reb_share:.2f})")
    assert fixed_led["rate_limited"] == 0 and reb_led["rate_limited"] == 0   # the server's limit held
    assert fixed_share == 0.25 and reb_share > 0.5
    assert 32 / fixed_s < quarter * 1.3                   # fixed: about its quarter
    assert 32 / reb_s > quarter * 1.3 and reb_s < 0.75 * fixed_s   # rebalanced: the idle ones' budget
