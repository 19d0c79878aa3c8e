"""SimulatedExecutor (generative process, learning signals) and OpenAIChatExecutor against a
fake OpenAI-compatible server on 127.0.0.1 started inside the test."""


import numpy as np
import pytest

from swarm_sona.core.executor import Task
from swarm_sona.executors.openai_chat import ExecutorError, OpenAIChatExecutor
from swarm_sona.executors.simulated import SimulatedExecutor


def test_simulated_is_seeded_and_text_carries_the_truth():
    ex = SimulatedExecutor(seed=3)
    a, b = ex.tasks(50, seed=9), ex.tasks(50, seed=9)
    assert [t.text for t in a] == [t.text for t in b]
    assert [t.text for t in a] != [t.text for t in ex.tasks(50, seed=10)]
    for t in a:
        fam, _sub, _d = ex.truth(t.text)
        assert fam == t.task_type and fam in t.text
    out1 = [ex(t, "medium", []).success for t in a]
    assert out1 == [SimulatedExecutor(seed=3)(t, "medium", []).success for t in a]


def test_simulated_rates_match_hidden_probabilities_and_learning_helps():
    ex = SimulatedExecutor(seed=0)
    tasks = ex.tasks(6000, seed=1)
    for m in ("small", "large"):
        emp = np.mean([ex(t, m, []).success for t in tasks])
        exp = np.mean([ex.success_probability(t, m) for t in tasks])
        assert abs(emp - exp) < 0.03
    # the best model differs across families, so a per-family choice beats any single model
    best_single = max(np.mean([ex.success_probability(t, m) for t in tasks]) for m in ex.success_rates)
    assert ex.oracle_success_rate(tasks) > best_single + 0.03
    # a retrieved successful pattern of the same skill raises success; another skill's does not
    t = tasks[0]
    same = [{"payload": {"task": t.text, "reward": 0.9}}]
    other = next(u for u in tasks if ex.truth(u.text)[:2] != ex.truth(t.text)[:2])
    p0 = ex.success_probability(t, "small")
    assert ex.success_probability(t, "small", same) > p0
    assert ex.success_probability(t, "small", [{"payload": {"task": other.text, "reward": 0.9}}]) == p0
    assert ex.success_probability(t, "small", [{"payload": {"task": t.text, "reward": 0.1}}]) == p0
    costs = {m: ex(t, m, []).cost_usd for m in ex.success_rates}
    assert costs["small"] < costs["medium"] < costs["large"]
    with pytest.raises(ValueError, match="unknown model"):
        ex(t, "gpt-x", [])


@pytest.fixture(scope="module")
def fake(fake_openai):
    """The fake OpenAI endpoint of conftest (scripted replies, requests recorded)."""
    with fake_openai() as ep:
        yield ep


def test_openai_executor_success_cost_and_patterns(fake):
    fake.script, fake.seen = [], []
    ex = OpenAIChatExecutor(fake.url, api_key="sk-local", prices={"m1": (1.0, 2.0)}, timeout_s=5)
    out = ex(Task("what is six times seven", metadata={"expected": "42"}), "m1",
             [{"payload": {"task": "multiply", "content": "use a table", "reward": 1.0}}])
    assert out.success and out.reward == 1.0
    assert out.cost_usd == pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)
    req = fake.seen[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-local"
    assert req["body"]["model"] == "m1" and "use a table" in req["body"]["messages"][0]["content"]
    wrong = ex(Task("q", metadata={"expected": "1337"}), "m1", [])
    assert not wrong.success and wrong.reward == 0.0
    custom = OpenAIChatExecutor(fake.url, reward_fn=lambda t, o, r: 0.7)(Task("x"), "m1", [])
    assert custom.reward == 0.7 and custom.success


def test_openai_executor_retries_then_gives_up(fake):
    fake.seen = []
    fake.script = [(503, {"error": "busy"}, {}), (429, {"error": "slow down"}, {"Retry-After": "0"})]
    ex = OpenAIChatExecutor(fake.url, max_retries=2, backoff_s=0.01, timeout_s=5)
    out = ex(Task("hello"), "m", [])
    assert out.success and out.metadata["retries"] == 2 and len(fake.seen) == 3
    fake.script = [(400, {"error": "bad"}, {})]
    with pytest.raises(ExecutorError, match="HTTP 400"):
        OpenAIChatExecutor(fake.url, on_error="raise")(Task("x"), "m", [])
    fake.script = [(500, {}, {})] * 3
    failed = OpenAIChatExecutor(fake.url, max_retries=2, backoff_s=0.0)(Task("x"), "m", [])
    assert not failed.success and "HTTP 500" in failed.metadata["error"]
    fake.script = [(200, {"choices": []}, {})]
    assert "no choices" in OpenAIChatExecutor(fake.url)(Task("x"), "m", []).metadata["error"]


def test_openai_executor_timeout_and_refused():
    with pytest.raises(ValueError, match="base_url"):
        OpenAIChatExecutor("ftp://x")
    ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", timeout_s=0.5, max_retries=1, backoff_s=0.0, on_error="raise")
    with pytest.raises(ExecutorError, match="127.0.0.1:9"):
        ex(Task("x"), "m", [])
    assert ex.stats().retries == 1
