"""Extension points: a merge rule and a topology registered from outside the package, run
through the consensus path (the topology's SyncPlan executed with MergeBooks), in-process; the
same extension points (and a bank backend) named by import reference from one module outside
the package (``tests/extension_pkg/my_extensions.py``), resolved in-process and in a small Ray
swarm."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from swarm_sona.bank.backend import registered_backends, unregister_backend
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
    topology_class,
    unregister_topology,
)
from swarm_sona.consensus.updates import AgentUpdate, MergeError
from swarm_sona.routing.strategies import STRATEGIES


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


# ---- extensions named by import reference, from one module outside the package ----------
TESTS_DIR = str(Path(__file__).resolve().parents[1])
EXT = "extension_pkg.my_extensions:"


@pytest.fixture
def ext_path():
    """``tests/`` importable (as a user's package would be), and the registries left as found."""
    sys.path.insert(0, TESTS_DIR)
    rules, topos, strategies, banks = set(RULES), set(TOPOLOGIES), set(STRATEGIES), set(registered_backends())
    yield
    sys.path.remove(TESTS_DIR)
    for reg, before in ((RULES, rules), (TOPOLOGIES, topos), (STRATEGIES, strategies)):
        for k in set(reg) - before:
            del reg[k]
    for name in set(registered_backends()) - banks:
        unregister_backend(name)


def test_a_rule_named_by_import_reference_is_imported_and_registered_under_it(ext_path):
    assert EXT + "MIDRANGE" not in RULES            # importing the module registers nothing
    rule = get_rule(EXT + "MIDRANGE")
    assert rule.name == EXT + "MIDRANGE" and RULES[rule.name] == rule and rule.tolerates(5) == 0
    assert get_rule(rule.to_dict()) == rule           # the name travels: another process resolves it again
    book = MergeBook(EXT + "MIDRANGE")
    for a, v in zip("abc", [0.0, 1.0, 4.0], strict=True):
        book.submit(AgentUpdate(a, 1, {"x": np.array([v])}, weight=1))
    out = book.merge()
    assert out.rule == EXT + "MIDRANGE" and out.params["x"].tolist() == [2.0]   # midrange, not the mean 1.67
    plain = get_rule(EXT + "midrange")                # a plain function is a rule too (tolerates none)
    assert plain.fn is rule.fn and not plain.robust and plain.clip is None


def test_bad_rule_references_say_what_is_wrong(ext_path):
    with pytest.raises(MergeError, match="cannot import module 'extension_pkg.nope'"):
        get_rule("extension_pkg.nope:rule")
    with pytest.raises(MergeError, match="has no attribute 'NOPE'"):
        get_rule(EXT + "NOPE")
    with pytest.raises(MergeError, match="str is neither a MergeRule nor a function"):
        get_rule(EXT + "LOG_ENV")
    with pytest.raises(MergeError, match="write it as 'package.module:attribute'"):
        get_rule("extension_pkg.my_extensions:")
    with pytest.raises(MergeError, match="first argument"):
        get_rule("os:getpid")                         # callable, but takes no list of updates


def test_a_topology_named_by_import_reference(ext_path):
    cls = topology_class(EXT + "FanIn")
    assert cls.name == "fan_in" and TOPOLOGIES[EXT + "FanIn"] is cls
    topo = get_topology(EXT + "FanIn", ["a", "b"], rule=EXT + "MIDRANGE")
    plan = topo.plan(0)
    assert plan.root == "hub" and plan.rule == EXT + "MIDRANGE" and topo.edges() == {"hub": ["a", "b"],
                                                                                     "a": ["hub"], "b": ["hub"]}
    with pytest.raises(TopologyError, match="expected a Topology subclass"):
        topology_class(EXT + "midrange")
    with pytest.raises(TopologyError, match="cannot import module"):
        topology_class("extension_pkg.nope:FanIn")


def test_a_spec_and_a_swarm_config_name_a_topology_by_import_reference(ext_path):
    from swarm_sona.app.run_spec import RunSpec
    from swarm_sona.core.config import ConfigError
    from swarm_sona.runtime.config import SwarmConfig

    TOPOLOGIES.pop(EXT + "FanIn", None)                  # nothing resolved it before the config does
    workers = [{"id": "a", "type": "worker"}, {"id": "b", "type": "worker"}]
    assert SwarmConfig.from_dict({"topology": EXT + "FanIn", "agents": workers}).topology == EXT + "FanIn"
    assert RunSpec.from_dict({"topology": EXT + "FanIn"}).topology == EXT + "FanIn"
    for make in (lambda t: SwarmConfig.from_dict({"topology": t, "agents": workers}),
                 lambda t: RunSpec.from_dict({"topology": t})):
        with pytest.raises(ConfigError, match="topology.*expected a Topology subclass"):
            make(EXT + "midrange")
        with pytest.raises(ConfigError, match="topology.*cannot import module"):
            make("extension_pkg.nope:FanIn")
        with pytest.raises(ConfigError, match="must be one of"):
            make("tree")



LOG_ENV = "SWARM_SONA_EXTENSION_LOG"   # the variable extension_pkg.my_extensions logs its uses to


@pytest.fixture(scope="module")
def ray_with_extensions(tmp_path_factory, start_local_ray):
    """One Ray session for the module whose workers can import ``extension_pkg`` (``tests/`` on
    the PYTHONPATH of its runtime_env) and log each extension use to one file, as the driver does."""
    log = tmp_path_factory.mktemp("extensions") / "uses.log"
    saved = os.environ.get(LOG_ENV)
    path = os.pathsep.join(p for p in (TESTS_DIR, os.environ.get("PYTHONPATH", "")) if p)
    with start_local_ray(env={LOG_ENV: str(log)},
                         runtime_env={"env_vars": {"PYTHONPATH": path, LOG_ENV: str(log)}}):
        yield log
    if saved is None:
        os.environ.pop(LOG_ENV, None)
    else:
        os.environ[LOG_ENV] = saved


def _uses(log):
    """kind -> {pid: calls} from the extension log."""
    out: dict[str, dict[int, int]] = {}
    for line in log.read_text().splitlines():
        kind, pid = line.split()
        out.setdefault(kind, {}).setdefault(int(pid), 0)
        out[kind][int(pid)] += 1
    return out


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_swarm_runs_a_users_rule_strategy_topology_and_bank_backend(ray_with_extensions, ext_path):
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmSONA

    log = ray_with_extensions
    ex = SimulatedExecutor(seed=0)
    workers = [{"id": f"agent-{i}", "type": "worker"} for i in range(3)]
    with SwarmSONA(topology=EXT + "FanIn", agents=workers, executor=ex, merge_rule=EXT + "MIDRANGE",
                   router={"models": ex.model_specs(), "strategy": EXT + "longest_name"},
                   bank={"backend": EXT + "counting_edge"}, sync_every=40, batch_size=40,
                   sona={"background_every": 60}) as sw:
        res = list(sw.run(ex.tasks(240, seed=1), progress=False))
        sw.sync(wait=True)
        merged = sw.merged_params()
        st = sw.stats()
    assert len(res) == 240 and merged is not None
    assert {r["model"] for r in res} == {"medium"}      # the longest name, whatever the bandit thinks
    uses = _uses(log)
    me = os.getpid()
    assert me in uses["topology"]                        # the driver plans syncs by the user's topology
    assert uses["rule"] and me not in uses["rule"]       # the hub (another process) merged by midrange
    agents = set(uses["strategy"])
    assert me not in agents and len(agents) == 3         # every agent's router ranked by the strategy
    bank = set(uses["bank"])
    assert len(bank) == 1 and not bank & (agents | {me})  # one bank actor (single owner) stored through it
    assert st["acked_patterns"] > 0 and st["bank"]["count"] > 0, st["bank"]
    assert "hub" in st["coordinators"] and st["syncs"] >= 2, st


@pytest.mark.ray
@pytest.mark.slow
def test_gossip_agents_import_a_users_rule_themselves(ray_with_extensions, ext_path):
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmSONA

    log = ray_with_extensions
    log.write_text("")
    ex = SimulatedExecutor(seed=1)
    workers = [{"id": f"agent-{i}", "type": "worker"} for i in range(3)]
    with SwarmSONA(topology="ring", agents=workers, executor=ex, merge_rule=EXT + "MIDRANGE", sync_every=10 ** 6,
                   batch_size=50, gossip_rounds=1, bank={"enabled": False}, sona={"background_every": 100}) as sw:
        assert sw.topology.rule.name == EXT + "MIDRANGE"
        list(sw.run(ex.tasks(150, seed=2), progress=False))
        assert "rule" not in _uses(log)                  # no sync yet
        sw.sync(wait=True, rounds=1)
    users = set(_uses(log)["rule"])
    assert len(users) == 3 and os.getpid() not in users  # each ring agent merged its neighbourhood by midrange
