"""Rate limits per model: token buckets, leased shares, Retry-After, cool-downs and fallbacks.

The pacing maths runs on a fake clock (no timed assertions); the end-to-end tests run the
OpenAI executor against the replay server on 127.0.0.1, which enforces its own requests/min.
"""

from __future__ import annotations

import copy
import pickle
import time
from pathlib import Path

import pytest

from swarm_sona.core.config import ConfigError
from swarm_sona.executors.buckets import TokenBucket
from swarm_sona.executors.limits import ModelLimits, RateLimitConfig, RateLimiter
from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.replay import ReplayConfig, replay_tasks
from swarm_sona.executors.table import ROUTELLM_STRONG, ROUTELLM_WEAK, load_routing_table

DATA = Path(__file__).parents[1] / "data" / "routellm_slice"
TABLE = load_routing_table(DATA)
TASKS = replay_tasks(TABLE)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def starts(lim: RateLimiter, clock: FakeClock, model: str, n: int, tokens: float = 0.0) -> list[float]:
    """The start times of n calls admitted back to back at the clock's time."""
    out = []
    for _ in range(n):
        p = lim.admit(model, tokens)
        assert p.model == model
        out.append(clock.t + p.wait_s)
    return out


def max_in_window(times: list[float], window: float) -> int:
    ts = sorted(times)
    return max(sum(1 for u in ts if t <= u < t + window) for t in ts)


# ---- buckets and the limiter on a fake clock ------------------------------------------------------
def test_bucket_reservations_queue_first_come_first_served_and_refund() -> None:
    b = TokenBucket(rate=10.0, capacity=5.0)
    waits = [b.reserve(1, now=0.0) for _ in range(8)]
    assert waits[:5] == [0.0] * 5 and waits[5:] == pytest.approx([0.1, 0.2, 0.3])
    assert b.reserve(1, now=0.0, max_wait_s=0.2) is None     # conditional: nothing taken
    assert b.reserve(1, now=0.0) == pytest.approx(0.4)
    b.refund(4, now=0.0)
    assert b.reserve(1, now=0.0) == pytest.approx(0.1)
    assert b.reserve(50, now=10.0) == pytest.approx(4.5)    # larger than the bucket: delayed, not refused
    with pytest.raises(ValueError, match="amount"):
        b.reserve(-1, now=0.0)


def test_rpm_pacing_never_exceeds_the_budget_and_shares_divide_it() -> None:
    clock = FakeClock()
    cfg = RateLimitConfig(models={"m": ModelLimits(rpm=600)}, burst_s=1.0)
    whole = starts(RateLimiter(cfg, clock=clock), clock, "m", 100)
    # 600/min = 10/s with a 1 s burst: at most 10 + 10 starts in any 1 s window, and 100 calls take 9 s
    assert max_in_window(whole, 1.0) <= 20 and whole[-1] == pytest.approx(9.0)
    quarter = starts(RateLimiter(cfg, clock=clock).leased(4), clock, "m", 100)   # one of 4 agents: 2.5/s
    assert quarter[-1] == pytest.approx((100 - 2.5) / 2.5)
    four_agents = [t for _ in range(4) for t in starts(RateLimiter(cfg.replace(shares=4), clock=clock), clock, "m", 25)]
    assert max_in_window(four_agents, 1.0) <= 20                # together within the provider's budget
    other = starts(RateLimiter(cfg, clock=clock), clock, "unlisted", 50)
    assert other == [0.0] * 50                                  # no default budget: not limited


def test_tpm_reserves_estimates_and_settles_with_the_actual_usage() -> None:
    clock = FakeClock()
    lim = RateLimiter(RateLimitConfig(default=ModelLimits(tpm=6000), burst_s=1.0), clock=clock)   # 100 tokens/s
    first = lim.admit("m", tokens=100)
    assert first.wait_s == 0.0 and lim.admit("m", tokens=100).wait_s == pytest.approx(1.0)
    lim.settle(first, used_tokens=0)        # the first used nothing: its 100 tokens come back
    assert lim.admit("m", tokens=100).wait_s == pytest.approx(1.0)   # (instead of 2.0)
    p = lim.admit("m", tokens=10)
    lim.settle(p, used_tokens=110)          # used more than reserved: the extra is taken too
    assert lim.admit("m", tokens=1).wait_s == pytest.approx(2.11)   # 100 + 100 + 10 + 100 + 1 tokens at 100/s


def test_retry_after_holds_the_whole_model() -> None:
    clock = FakeClock()
    lim = RateLimiter(RateLimitConfig(), clock=clock)
    assert lim.admit("m").wait_s == 0.0
    lim.report("m", "rate_limit", retry_after=4.0)
    clock.t = 1.0
    assert lim.admit("m").wait_s == pytest.approx(3.0) and lim.admit("other").wait_s == 0.0
    clock.t = 5.0
    assert lim.admit("m").wait_s == 0.0


def test_cooldown_after_consecutive_infra_failures_then_half_open() -> None:
    clock = FakeClock()
    lim = RateLimiter(RateLimitConfig(failure_threshold=3, cooldown_s=30.0), clock=clock)
    for kind in ("server", "auth", "timeout", "request"):   # auth, request: no verdict, the count goes on
        lim.report("m", kind)
    assert lim.state("m") == "closed"
    lim.report("m", None)                                   # a success resets the count
    for _ in range(2):
        lim.report("m", "server")
    assert lim.state("m") == "closed"
    assert lim.report("m", "server") is True and lim.state("m") == "open"
    p = lim.admit("m")                                      # no fallback: the call waits, nothing dropped
    assert p.model is None and p.wait_s == pytest.approx(30.0)
    clock.t = 30.0
    assert lim.admit("m").model == "m"                      # the one probe
    assert lim.admit("m").model is None                     # others wait while it is out
    lim.report("m", "server")                               # the probe failed: another cooldown
    assert lim.state("m") == "open" and lim.admit("m").wait_s == pytest.approx(30.0)
    clock.t = 60.0
    assert lim.admit("m").model == "m"
    lim.report("m", None)
    assert lim.state("m") == "closed" and lim.stats().cooldowns == {"m": 2}


def test_fallback_while_cooled_down_or_over_budget_else_wait() -> None:
    clock = FakeClock()
    cfg = RateLimitConfig(models={"a": ModelLimits(rpm=60), "b": ModelLimits(rpm=60)}, fallback={"a": "b", "b": "c"},
                          burst_s=1.0, max_wait_s=5.0, failure_threshold=1, cooldown_s=10.0)
    lim = RateLimiter(cfg, clock=clock)
    got = [lim.admit("a") for _ in range(8)]
    # a's own budget for waits <= 5 s, then b's, then c (unlimited)
    assert [p.model for p in got] == ["a"] * 6 + ["b", "b"] and got[6].fallback_from == "a"
    assert [p.wait_s for p in got[:6]] == pytest.approx([0, 1, 2, 3, 4, 5])
    lim.report("a", "server")                               # a cools down: its calls go down the chain
    clock.t = 100.0
    lim.report("a", "server")
    assert lim.admit("a").model == "b"
    lone = RateLimiter(RateLimitConfig(models={"a": ModelLimits(rpm=60)}, max_wait_s=1.0), clock=clock)
    assert [lone.admit("a").model for _ in range(5)] == ["a"] * 5    # no fallback: all wait their turn
    assert lone.stats().waited == 4 and lone.stats().fallbacks == 0


def test_config_refuses_bad_values_with_the_field_named() -> None:
    for kw, msg in (({"shares": 0}, "shares"), ({"headroom": 0.0}, "headroom"), ({"burst_s": 0}, "burst_s"),
                    ({"fallback": {"a": "a"}}, "itself"), ({"models": {"a": {"rpm": -1}}}, "rpm"),
                    ({"failure_threshold": -1}, "failure_threshold")):
        with pytest.raises(ConfigError, match=msg):
            RateLimitConfig(**kw)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="did you mean 'rpm'"):
        RateLimitConfig.from_dict({"models": {"a": {"rpmm": 5}}})
    cfg = RateLimitConfig.from_dict({"models": {"a": {"rpm": 5, "tpm": 100}}, "maxWaitS": 2, "shares": 2})
    assert cfg.models["a"].tpm == 100 and cfg.max_wait_s == 2.0 and "shares" in RateLimitConfig.field_docs()


def test_limiter_is_shared_by_executor_copies_and_fresh_after_pickling() -> None:
    ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None, limits={"default": {"rpm": 60}})
    twin = copy.copy(ex)                       # an agent's executor copies: one budget in one process
    assert twin.limiter is ex.limiter
    assert ex.limiter is not None
    ex.limiter.admit("m")
    shipped = pickle.loads(pickle.dumps(ex))   # to a Ray actor: a limiter of its own, full buckets
    assert shipped.limiter is not ex.limiter and shipped.limiter is not None
    assert shipped.limiter.admit("m").wait_s == 0.0
    ex.lease_limits(3)
    assert ex.limiter.config.shares == 3


# ---- against the replay server --------------------------------------------------------------------
def test_requests_per_minute_stay_within_what_the_server_enforces(replay) -> None:
    tasks = TASKS[:24]
    with replay(rate_limit_rpm=600, rate_burst=2) as srv:   # 10 requests/s per model, a fresh budget
        paced = OpenAIChatExecutor(srv.base_url, api_key_env=None, max_concurrency=16, seed=1,
                                   limits={"models": {ROUTELLM_STRONG: {"rpm": 600}}, "headroom": 0.9,
                                           "burst_s": 0.2})
        outs2 = paced.run_many(tasks, ROUTELLM_STRONG)
        paced.close()
        limited = srv.ledger()
    with replay(rate_limit_rpm=600, rate_burst=2) as srv:
        free = OpenAIChatExecutor(srv.base_url, api_key_env=None, max_concurrency=16, seed=1, backoff_s=0.05)
        free.run_many(tasks, ROUTELLM_STRONG)
        free.close()
        unlimited = srv.ledger()
    # the server does enforce it: unpaced, the calls herd into 429s (and some run out of retries)
    assert unlimited["rate_limited"] > 0 and free.stats().rate_limited > 0
    assert all(o.error_kind is None for o in outs2)                    # paced: nothing lost, no 429
    assert limited["rate_limited"] == 0 and limited["ok"] == len(tasks)
    st = paced.stats()
    assert st.rate_limited == 0 and st.limiter_waits > 0 and st.limiter_wait_s > 0


def test_tokens_per_minute_stay_within_what_the_server_enforces(replay) -> None:
    # 30k tokens/min = 500 tokens/s, a bucket of 600; a request is ~80 prompt + 16 max_tokens tokens
    tasks, tpm = TASKS[:20], 30_000
    with replay(rate_limit_tpm=tpm, tpm_burst=600) as srv:
        free = OpenAIChatExecutor(srv.base_url, api_key_env=None, max_concurrency=8, seed=1, max_tokens=16,
                                  backoff_s=0.05, rate_limit_retries=0)
        outs1 = free.run_many(tasks, ROUTELLM_STRONG)
        free.close()
        unpaced = srv.ledger()
    with replay(rate_limit_tpm=tpm, tpm_burst=600) as srv:
        paced = OpenAIChatExecutor(srv.base_url, api_key_env=None, max_concurrency=8, seed=1, max_tokens=16,
                                   rate_limit_retries=0, limits={"default": {"tpm": tpm}, "headroom": 0.9})
        t0 = time.perf_counter()
        outs2 = paced.run_many(tasks, ROUTELLM_STRONG)
        took = time.perf_counter() - t0
        paced.close()
        limited = srv.ledger()
    # the server enforces tokens/min: unpaced, the calls run into 429s (no retries: they fail)
    assert unpaced["tokens_limited"] > 0 and unpaced["tokens_limited"] == unpaced["rate_limited"]
    assert sum(o.error_kind == "rate_limit" for o in outs1) == unpaced["tokens_limited"]
    # paced by the client's tpm limiter: never a 429, and the budget binds (it waits its turn)
    assert all(o.error_kind is None for o in outs2) and limited["rate_limited"] == 0 and limited["ok"] == 20
    st = paced.stats()
    assert st.limiter_waits > 0 and st.prompt_tokens + st.completion_tokens == \
        limited["prompt_tokens"] + limited["completion_tokens"]
    served = limited["prompt_tokens"] + 20 * 16   # what was charged at admission, at most
    assert took >= (served - 0.9 * 500) / 500 * 0.8   # at about the budget's pace, not all at once
    with pytest.raises(ConfigError, match="rate_limit_tpm"):
        ReplayConfig(data=str(DATA), rate_limit_tpm=-1)


def test_a_model_that_keeps_failing_cools_down_and_its_tasks_go_to_the_fallback(replay) -> None:
    tasks = TASKS[:12]
    limits = {"failure_threshold": 2, "cooldown_s": 60.0, "fallback": {ROUTELLM_WEAK: ROUTELLM_STRONG}}
    with replay(model_error_rates={ROUTELLM_WEAK: 1.0}) as srv:       # the weak model is down
        ex = OpenAIChatExecutor(srv.base_url, api_key_env=None, max_concurrency=4, backoff_s=0.01, seed=2,
                                limits=limits)
        outs = ex.run_many(tasks, ROUTELLM_WEAK)
        ex.close()
        led = srv.ledger()
        srv.reset_ledger()
        never = OpenAIChatExecutor(srv.base_url, api_key_env=None, max_concurrency=4, backoff_s=0.01, seed=2,
                                   limits={**limits, "failure_threshold": 0})
        outs2 = never.run_many(tasks, ROUTELLM_WEAK)
        never.close()
    assert all(o.error_kind is None and o.metadata["fallback_from"] == ROUTELLM_WEAK for o in outs)
    assert all(o.metadata["model"] == ROUTELLM_STRONG for o in outs)
    assert led["models"][ROUTELLM_STRONG]["ok"] == len(tasks)
    assert led["models"][ROUTELLM_WEAK]["server_errors"] <= 2 + 4     # the threshold + calls already in flight
    st = ex.stats()
    assert st.cooldowns >= 1 and st.fallbacks >= len(tasks) and st.errors == {}
    assert all(o.error_kind == "server" for o in outs2)                # breaker off: 5xx after retries


def test_tokens_are_estimated_only_where_a_tokens_per_minute_budget_needs_them() -> None:
    lim = RateLimiter(RateLimitConfig(models={"t": ModelLimits(tpm=1000), "r": ModelLimits(rpm=10)},
                                      fallback={"r": "t"}))
    assert lim.counts_tokens("t") and lim.counts_tokens("r") and not lim.counts_tokens("other")


def test_a_stalled_process_releases_its_backlog_at_the_budgets_pace() -> None:
    clock = FakeClock()
    lim = RateLimiter(RateLimitConfig(models={"m": ModelLimits(rpm=600)}, burst_s=0.1), clock=clock)   # 10/s
    permits = [lim.admit("m") for _ in range(10)]
    assert [p.wait_s for p in permits] == pytest.approx([0.1 * i for i in range(10)])
    clock.t = 5.0                      # every slot has passed while the process was stalled
    sent = [p for p in permits if lim.release(p) == 0.0]
    assert len(sent) == 1              # not the whole backlog at once
    clock.t = 5.15
    assert sum(1 for p in permits[1:] if lim.release(p) == 0.0) == 1
    unlimited = lim.admit("other")
    assert lim.release(unlimited) == 0.0


def test_a_single_call_goes_to_the_fallback_while_its_model_is_cooled_down(replay) -> None:
    with replay() as srv:
        ex = OpenAIChatExecutor(srv.base_url, api_key_env=None, limits={
            "failure_threshold": 1, "cooldown_s": 600.0, "fallback": {ROUTELLM_WEAK: ROUTELLM_STRONG}})
        assert ex.limiter is not None
        before = ex(TASKS[0], ROUTELLM_WEAK, [])
        ex.limiter.report(ROUTELLM_WEAK, "timeout")          # as if its last call had timed out
        after = ex(TASKS[0], ROUTELLM_WEAK, [])
        ex.close()
        led = srv.ledger()
    assert before.metadata["model"] == ROUTELLM_WEAK and "fallback_from" not in before.metadata
    assert after.metadata["model"] == ROUTELLM_STRONG and after.metadata["fallback_from"] == ROUTELLM_WEAK
    assert led["models"][ROUTELLM_STRONG]["ok"] == 1 and ex.stats().fallbacks == 1
