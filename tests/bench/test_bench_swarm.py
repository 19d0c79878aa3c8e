"""bench swarm: the no-op executor, the in-process profile of an agent and the bank actor, the no-op row on Ray."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import pytest

from swarm_sona.bench import swarm as bs
from swarm_sona.core.executor import Task
from swarm_sona.executors.simulated import SimulatedExecutor

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def test_noop_executor_is_fixed_and_validated() -> None:
    ex = bs.NoopExecutor(SimulatedExecutor().model_specs())
    a, b = ex(Task("x"), "small", []), ex(Task("y"), "large", [{"task": "z"}])
    assert (a.output, a.reward, a.success, a.cost_usd) == ("noop", 1.0, True, 0.0) == (b.output, b.reward,
                                                                                         b.success, b.cost_usd)
    assert a is not b   # a new outcome per call
    with pytest.raises(ValueError, match="at least one model"):
        bs.NoopExecutor([])


def test_profile_separates_agent_bank_and_executor() -> None:
    sim = bs.profile_pipeline(executor="simulated", tasks=128, batch_size=64, top=1000)
    noop = bs.profile_pipeline(executor="noop", tasks=128, batch_size=64, top=1000)

    def names(rows: list[bs.ProfileRow]) -> str:
        return " ".join(r.function for r in rows)
    assert "simulated.py" in names(sim.agent_self) and "simulated.py" not in names(noop.agent_self)
    for p in (sim, noop):
        assert "run_batch" in names(p.agent_cumulative)
        bank = names(p.bank_cumulative)
        assert "search_batch" in bank and "store_batch" in bank   # the bank's calls are on its own profile
        assert "parse_items" in bank and "parse_items" not in names(p.agent_self)   # ... not on the agent's
        assert p.agent_us_per_task > 0 and p.bank_us_per_task > 0 and p.tasks == 128
        cum = [r.cum_us_per_task for r in p.agent_cumulative]
        assert cum == sorted(cum, reverse=True)
    with pytest.raises(ValueError, match="'simulated' or 'noop'"):
        bs.profile_pipeline(executor="llm")


def test_cli_profile_prints_both_executors(capsys: pytest.CaptureFixture[str]) -> None:
    p = argparse.ArgumentParser()
    bs.add_arguments(p)
    assert bs.run(p.parse_args(["--profile", "64", "--batch-size", "32", "--top", "3", "--json"])) == 0
    got = json.loads(capsys.readouterr().out)
    assert [g["executor"] for g in got] == ["simulated", "noop"] and len(got[0]["bank_self"]) == 3
    assert bs.run(p.parse_args(["--profile", "64", "--batch-size", "32", "--top", "2"])) == 0
    assert "profile noop: bank actor, top 2 by self time" in capsys.readouterr().out


@pytest.mark.usefixtures("ray_session")
def test_noop_row_on_ray_flips_with_the_option() -> None:
    kw: dict[str, Any] = {"agents": 2, "tasks": 64, "batch_size": 16, "per_call_tasks": 2, "sync_every": 32, "window": 32}
    on = bs.bench_swarm(**kw, noop=True)
    off = bs.bench_swarm(**kw, noop=False)
    assert "noop" not in off and on["noop"]["tasks_per_s_batched"] > 0
    assert on["noop"]["breakdown"]["cpu_us_per_task"]["agents"] > 0
