"""Extension points: a merge rule and a topology registered from outside the package, run
through the consensus path (the topology's SyncPlan executed with MergeBooks), in-process."""

import numpy as np
import pytest

from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.rules import RULES, get_rule, register_rule, unregister_rule
from swarm_sona.consensus.state import state_distance
from swarm_sona.consensus.topologies import (
    TOPOLOGIES,
    Broadcast,
    MergeStep,
    Topology,
    TopologyError,
    get_topology,
    register_topology,
    unregister_topology,
)
from swarm_sona.consensus.updates import AgentUpdate, MergeError


# ---- what a user writes: one rule function + one register_rule call --------------------
def geometric_median(updates, *, iters=50):
    """Weiszfeld's geometric median of the flat updates (tolerates just under half)."""
    names = sorted(updates[0].params)
    X = np.stack([np.concatenate([np.ravel(u.params[k]).astype(np.float64) for k in names]) for u in updates])
    z = np.median(X, axis=0)
    for _ in range(iters):
        d = np.maximum(np.linalg.norm(X - z, axis=1), 1e-12)
        z = (X / d[:, None]).sum(0) / (1.0 / d).sum()
    out, i = {}, 0
    for k in names:
        n = updates[0].params[k].size
        out[k] = z[i:i + n].reshape(updates[0].params[k].shape)
        i += n
    return out


# ---- what a user writes: one Topology subclass + one register_topology call -------------
class Relay(Topology):
    """A hub merges every worker, then relays the merge to them; needs >= 3 workers so a robust
    rule can tolerate one bad agent."""

    name = "relay"
    central = True

    def __init__(self, workers, coordinators=("hub",), *, rule="fedavg", rounds=1):
        super().__init__(workers, tuple(coordinators) or ("hub",), rule=rule, rounds=rounds)

    def check_agents(self):
        if len(self.workers) < 3 or len(self.coordinators) != 1:
            raise TopologyError(f"relay: needs >= 3 workers and one hub, got {len(self.workers)} and "
                                f"{list(self.coordinators)}")

    def stages(self, round_index=0):
        hub = self.coordinators[0]
        return [[MergeStep(hub, self.workers, self.rule.name, rule_kwargs=self.rule.kwargs)],
                [Broadcast(hub, self.workers)]]


@pytest.fixture
def registered():
    rule = register_rule("geomed", geometric_median, aliases=("geometric_median",),
                         tolerates=lambda n, **_: (n - 1) // 2, tolerance_doc="f <= (n - 1) // 2")
    register_topology(Relay, aliases=("hub_and_spoke",))
    yield rule
    unregister_rule("geomed")
    unregister_topology("relay")


def run_plan(topo, states, weights, fishers):
    """The consensus path in-process: each MergeStep is a MergeBook round, Broadcasts copy."""
    results = {}
    for stage in topo.plan(0).stages:
        new = {}
        for step in stage:
            if isinstance(step, MergeStep):
                book = MergeBook(step.rule, **dict(step.rule_kwargs))
                for s in step.sources:
                    book.submit(AgentUpdate(s, 1, states[s], weight=weights[s], fisher=fishers.get(s)))
                results[step.target] = book.merge()
                new[step.target] = results[step.target].params
            else:
                for t in step.targets:
                    new[t] = dict(states[step.source])
        states.update(new)
    return states, results


def test_a_user_rule_and_topology_run_through_the_consensus_path(registered):
    assert registered.robust and registered.clip == 3.0 and registered.tolerates(5) == 2
    assert "geomed" in RULES and "relay" in TOPOLOGIES
    topo = get_topology("hub_and_spoke", ["w0", "w1", "w2", "w3", "w4"], rule="geometric_median")
    assert topo.name == "relay" and topo.rule.name == "geomed" and topo.plan(0).root == "hub"
    rng = np.random.default_rng(0)
    honest = {f"w{i}": {"B": rng.normal(1.0, 0.05, size=(4, 2))} for i in range(4)}
    states = {**honest, "w4": {"B": np.full((4, 2), 1e6)}}            # one poisoned agent
    weights = {**{w: 10 for w in honest}, "w4": 10 ** 12}             # with a forged weight
    fishers = {**{w: {"B": np.ones((4, 2))} for w in honest}, "w4": {"B": np.full((4, 2), 1e30)}}
    out, res = run_plan(topo, dict(states), weights, fishers)
    mean = {"B": np.mean([s["B"] for s in honest.values()], axis=0)}
    for w in ("w0", "w4", "hub"):
        assert state_distance(out[w], mean) < 0.2, w                   # everyone holds the robust merge
    assert res["hub"].rule == "geomed" and res["hub"].n_trajectories == 50.0
    np.testing.assert_allclose(res["hub"].fisher["B"], 1.0, rtol=1e-5)  # the Fisher by the same rule
    # the same plan with fedavg is dragged away by the poisoned agent (so the test can fail)
    out2, _ = run_plan(get_topology("relay", sorted(states), rule="fedavg"), dict(states), weights, fishers)
    assert state_distance(out2["hub"], mean) > 1e3


def test_registration_is_checked(registered):
    with pytest.raises(MergeError, match="already the merge rule 'geomed'"):
        register_rule("geomed", geometric_median)
    with pytest.raises(MergeError, match="already the merge rule 'median'"):
        register_rule("my_median", geometric_median, aliases=("coordinate_median",))
    with pytest.raises(MergeError, match="no option 'nope'"):
        get_rule("geomed", nope=1)
    assert get_rule("geomed", iters=5).kwargs == (("iters", 5),)
    with pytest.raises(TopologyError, match="already the topology Relay"):
        register_topology(Relay)
    with pytest.raises(TopologyError, match="needs >= 3 workers"):
        get_topology("relay", ["a", "b"])
    with pytest.raises(TopologyError, match="did you mean 'relay'"):
        get_topology("rely", ["a", "b", "c"])
