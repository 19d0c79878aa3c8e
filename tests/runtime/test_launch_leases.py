"""Each agent of a swarm gets an executor holding its share of the rate limits (runtime.launch)."""

from swarm_sona.app.agent_defs import AgentDef, HookedExecutor
from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.launch import leased_executor


def limited() -> OpenAIChatExecutor:
    return OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None, limits={"default": {"rpm": 600}})


def test_an_executor_with_rate_limits_is_leased_as_a_copy() -> None:
    ex = limited()
    got = leased_executor(ex, 4)
    assert got is not ex and got.limiter.config.shares == 4 and ex.limiter.config.shares == 1


def test_a_hooked_executor_leases_its_inner_executor() -> None:
    inner = limited()
    hooked = HookedExecutor(inner, AgentDef.from_dict({"id": "a", "type": "coder"}))
    got = leased_executor(hooked, 3)
    assert got is not hooked and got.inner.limiter.config.shares == 3 and inner.limiter.config.shares == 1


def test_an_executor_without_rate_limits_is_shared_as_it_is() -> None:
    sim = SimulatedExecutor(seed=0)
    assert leased_executor(sim, 4) is sim
    plain = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None)
    assert leased_executor(plain, 4).limiter is None
