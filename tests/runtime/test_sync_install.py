"""SyncRunner installs the merged version on an agent that is restarting by asking again (a
loaded machine's restart took longer than the sync: ``ActorUnavailableError`` reached the
caller of ``sync(wait=True)``), and gives up after its deadline with the error counted."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from ray.exceptions import ActorUnavailableError  # noqa: E402

from swarm_sona.consensus.topologies import get_topology  # noqa: E402
from swarm_sona.runtime.sync import SyncRunner  # noqa: E402


class Restarting:
    """An agent handle whose first ``fails`` install calls find the actor between lives."""

    def __init__(self, fails: int) -> None:
        self.fails, self.calls = fails, 0
        self.install = self

    def remote(self, refs):
        self.calls += 1
        if self.calls <= self.fails:
            raise ActorUnavailableError("the actor is restarting", b"\0" * 16)
        return 7


@pytest.fixture
def runner(monkeypatch):
    monkeypatch.setattr(ray, "get", lambda x, **kw: x)   # the fake handle returns values, not refs
    monkeypatch.setattr("time.sleep", lambda s: None)
    return SyncRunner(get_topology("star", ["w1"], ["c"]), counters={"sync_errors": 0}, telemetry=None)


def test_an_agent_that_is_restarting_is_asked_again(runner):
    agent = Restarting(fails=3)
    assert runner._install(agent, []) == 7
    assert agent.calls == 4 and runner.counters["sync_errors"] == 0


def test_an_agent_that_stays_away_is_counted_not_raised(runner):
    agent = Restarting(fails=10**9)
    assert runner._install(agent, [], deadline_s=0.0) is None
    assert runner.counters["sync_errors"] == 1
