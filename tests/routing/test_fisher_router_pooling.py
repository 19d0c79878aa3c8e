"""EWC maths in one place (ewc.py) and router consensus by posterior pooling, through the
coordinator and agent objects in-process (no Ray).

* A constant positive Fisher keeps the coordinator's consolidation on (it used to normalise
  to zeros there and to ones in ``ewc.minmax_normalize``); an all-zero Fisher anchors nothing.
* The coordinator's running Fisher is the ``fisher_update`` EMA the EWC class uses.
* A merge pools the routers' evidence (precision, precision-weighted mean, counts): the
  merged router holds the prior plus every agent's new evidence, whatever rule the
  adapters use; syncing again without new data changes nothing; pushes made before the
  previous merge was installed, or twice in one round, count once; a hierarchy of
  coordinators pools the same way.
"""

import numpy as np
import pytest

from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.messages import MessageError, decode_delta, decode_merged, encode_delta
from swarm_sona.consensus.rules import get_rule
from swarm_sona.consensus.updates import AgentUpdate, MergeError
from swarm_sona.engine.config import SONAConfig
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.learning.config import EWCConfig
from swarm_sona.learning.ewc import EWC, fisher_ema, importance, minmax_normalize
from swarm_sona.routing.router import EVIDENCE_KEYS
from swarm_sona.runtime.actors.agent import AgentActor
from swarm_sona.runtime.actors.coordinator import CoordinatorActor

EX = SimulatedExecutor(seed=0)
CFG = SONAConfig.from_dict({"dim": 32, "mlp_hidden": 16, "llm_router": {"models": EX.model_specs()},
                            "lora": {"shared_a_seed": 0}, "background_every": 10_000})


# ---------------------------------------------------------------------------------------
# Fisher normalisation and consolidation
# ---------------------------------------------------------------------------------------
def _consolidated(fisher, *, lam=1000.0, eta=0.01, **ewc):
    """Anchor a zero state, then merge a state of ones, both pushed with ``fisher``."""
    c = CoordinatorActor("c", ewc={"lambda": lam, **ewc}, eta=eta)
    f = {"B": np.asarray(fisher, np.float32)}
    c.submit(encode_delta(AgentUpdate("w", 1, {"B": np.zeros(len(fisher), np.float32)}, fisher=f)))
    c.merge()
    c.submit(encode_delta(AgentUpdate("w", 2, {"B": np.ones(len(fisher), np.float32)}, fisher=f)))
    return decode_merged(c.merge())["params"]["B"]


def test_constant_positive_fisher_keeps_the_coordinators_consolidation_on():
    s = 0.01 * 1000.0   # eta * lambda
    out = _consolidated([0.5, 0.5, 0.5])
    # every coordinate equally important: all pulled back toward the anchor (0), as by F = 1
    np.testing.assert_allclose(out, np.full(3, 1.0 / (1.0 + s)), rtol=1e-6)
    assert np.all(out < 0.2)
    np.testing.assert_allclose(_consolidated([1e-8, 1e-8]), np.full(2, 1.0 / (1.0 + s)), rtol=1e-6)
    # nothing known (all-zero Fisher): nothing anchored, the merged state passes through
    np.testing.assert_array_equal(_consolidated([0.0, 0.0, 0.0]), np.ones(3))
    # normalisation off: the raw running Fisher (0.9 * 0.5, then the EMA) weighs the pull
    a = EWCConfig().fisher_decay
    F = (1 - a) * a * 0.5 + a * 0.5
    np.testing.assert_allclose(_consolidated([0.5], normalize=False), [1.0 / (1.0 + s * F)], rtol=1e-5)


def test_one_normalisation_rule_for_the_ewc_class_and_the_coordinator():
    for F in ({"x": np.full(3, 2.0)}, {"x": np.zeros(3)}, {"x": np.array([1.0, 3.0]), "y": np.array([2.0])}):
        ewc = EWC(EWCConfig())
        ewc.set_anchor({k: np.zeros_like(v, np.float32) for k, v in F.items()}, F)
        for k in F:
            np.testing.assert_array_equal(ewc.consolidations[0].fisher[k], importance(F)[k])
            np.testing.assert_array_equal(importance(F)[k], minmax_normalize(F)[k])
    assert importance({"x": np.full(2, 7.0)})["x"].tolist() == [1.0, 1.0]
    assert importance({"x": np.zeros(2)})["x"].tolist() == [0.0, 0.0]
    assert importance({"x": np.full(2, 7.0)}, normalize=False)["x"].tolist() == [7.0, 7.0]


def test_coordinator_fisher_is_the_ewc_ema_and_survives_a_restart(tmp_path):
    f1, f2, f3 = (np.array(v, np.float32) for v in ([1.0, 4.0], [0.25, 0.0], [9.0, 1.0]))
    c = CoordinatorActor("c", checkpoint_dir=str(tmp_path))
    for seq, f in ((1, f1), (2, f2)):
        c.submit(encode_delta(AgentUpdate("w", seq, {"B": np.zeros(2, np.float32)}, fisher={"B": f})))
        c.merge()
    # the EWC class fed gradients g with g^2 = f, one per Fisher update: the same running estimate
    ewc = EWC(EWCConfig(fisher_samples=1, detect_boundaries=False))
    for f in (f1, f2):
        ewc.observe({"B": np.sqrt(f)})
    np.testing.assert_allclose(c.fisher["B"], ewc.importance()["B"], rtol=1e-6)
    a = EWCConfig().fisher_decay
    np.testing.assert_allclose(c.fisher["B"], (1 - a) * a * f1 + a * f2, rtol=1e-6)
    c2 = CoordinatorActor("c", checkpoint_dir=str(tmp_path))   # restored arrays may be read-only
    c2.submit(encode_delta(AgentUpdate("w", 3, {"B": np.zeros(2, np.float32)}, fisher={"B": f3})))
    c2.merge()
    ewc.observe({"B": np.sqrt(f3)})
    np.testing.assert_allclose(c2.fisher["B"], ewc.importance()["B"], rtol=1e-6)
    assert fisher_ema({}, {"B": f1}, 1.0)["B"].tolist() == f1.tolist()


# ---------------------------------------------------------------------------------------
# router pooling through agents and coordinators
# ---------------------------------------------------------------------------------------
def _ev(agent):
    return agent.sona.router.evidence()


def _gain(after, before):
    return {k: after[k] - before[k] for k in EVIDENCE_KEYS}


def _add(base, gains):
    return {k: base[k] + sum(g[k] for g in gains) for k in EVIDENCE_KEYS}


def _assert_evidence(agent, want):
    got = _ev(agent)
    for k in EVIDENCE_KEYS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-9, err_msg=f"{agent.id}: {k}")


def _learn(agent, tasks):
    """Run a batch; returns the evidence it added (no merged state is installed inside)."""
    before = _ev(agent)
    agent.run_batch(tasks)
    return _gain(_ev(agent), before)


def _sync(coord, agents):
    for a in agents:
        assert a.push()["accepted"]
    frame = coord.merge()
    for a in agents:
        a.install(frame)
    return frame


def _adapters(params):
    return {k: v for k, v in params.items() if not k.startswith("router/")}


@pytest.mark.parametrize("rule", ["fedavg", "median"])
def test_a_merge_of_n_routers_holds_the_sum_of_their_evidence(rule):
    coord = CoordinatorActor("c", rule=rule)
    agents = [AgentActor(f"a{i}", CFG, EX, parent=coord, seed=i) for i in range(4)]
    prior = agents[0].sona.router.prior_evidence()
    tasks = EX.tasks(160, seed=1)
    gains = [_learn(a, tasks[i * 40:(i + 1) * 40]) for i, a in enumerate(agents)]
    assert all(g["precision"].sum() > 1.0 for g in gains)
    adapters = [_adapters(a.params()) for a in agents]
    frame = _sync(coord, agents)
    want = _add(prior, gains)
    for a in agents:   # every agent now holds the prior plus all four agents' evidence
        _assert_evidence(a, want)
    assert int(agents[0].sona.router.state_dict()["calls"].sum()) == 160
    # the adapters keep their configured rule
    merged = decode_merged(frame)["params"]
    ref = get_rule(rule)([AgentUpdate(f"a{i}", 1, p, weight=40) for i, p in enumerate(adapters)])
    for k, v in ref.items():
        np.testing.assert_allclose(merged[k], v, rtol=1e-5, atol=1e-6)
    # a second round of disjoint data adds on top of the merged posterior
    gains2 = [_learn(a, EX.tasks(80, seed=2)[i * 20:(i + 1) * 20]) for i, a in enumerate(agents)]
    _sync(coord, agents)
    for a in agents:
        _assert_evidence(a, _add(want, gains2))


def test_repeated_syncs_without_new_data_change_nothing():
    coord = CoordinatorActor("c")
    agents = [AgentActor(f"a{i}", CFG, EX, parent=coord, seed=i) for i in range(3)]
    tasks = EX.tasks(90, seed=3)
    for i, a in enumerate(agents):
        _learn(a, tasks[i * 30:(i + 1) * 30])
    _sync(coord, agents)
    ev0 = [_ev(a) for a in agents]
    params0 = [a.params() for a in agents]
    for _ in range(3):
        for a in agents:
            a.push()
        # nothing new to send (up to the rounding of eta = P * (eta / P) on install)
        assert max(np.abs(v).max() for a in agents for v in coord.book.pending[a.id].evidence.values()) < 1e-12
        frame = coord.merge()
        for a in agents:
            a.install(frame)
    assert decode_merged(frame)["version"] == 4
    for a, ev, p in zip(agents, ev0, params0, strict=True):
        _assert_evidence(a, ev)
        np.testing.assert_array_equal(a.sona.router.state_dict()["calls"], np.rint(ev["calls"]))
        for k in p:
            np.testing.assert_allclose(a.params()[k], p[k], rtol=1e-9, atol=1e-7, err_msg=k)


def test_merging_a_state_with_itself_against_the_last_merge_changes_nothing():
    rng = np.random.default_rng(0)
    state = {"adapters/q/B": rng.normal(size=(4, 2)).astype(np.float32),
             "router/precision": rng.uniform(1, 2, size=(2, 3)), "router/eta": rng.normal(size=(2, 3))}
    ev = {"router/precision": rng.uniform(0, 1, size=(2, 3)), "router/eta": rng.normal(size=(2, 3))}
    book = MergeBook("median")
    book.submit(AgentUpdate("a", 1, state, evidence=ev))
    merged = book.merge().params
    np.testing.assert_allclose(merged["router/precision"], state["router/precision"])  # base = state - evidence
    zero = {k: np.zeros_like(v) for k, v in ev.items()}
    book.submit(AgentUpdate("a", 2, merged, evidence=zero))
    book.submit(AgentUpdate("b", 1, merged))   # no evidence: its state relative to the last merge (zero)
    again = book.merge()
    for k in merged:
        np.testing.assert_allclose(again.params[k], merged[k])
    assert all(np.all(v == 0) for v in again.evidence.values())


def test_pushes_before_installing_or_twice_in_a_round_count_once():
    coord = CoordinatorActor("c", rule="median")
    a, b = (AgentActor(n, CFG, EX, parent=coord, seed=i) for i, n in enumerate(("a", "b")))
    prior = a.sona.router.prior_evidence()
    t = EX.tasks(150, seed=4)
    gains = [_learn(a, t[:30]), _learn(b, t[30:60])]
    a.push()
    b.push()
    m1 = coord.merge()
    gains.append(_learn(a, t[60:90]))
    a.push()                        # before installing m1 (base_version 0)
    gains.append(_learn(a, t[90:120]))
    a.push()                        # again in the same round: replaces the pending push
    b.install(m1)
    gains.append(_learn(b, t[120:150]))
    b.push()
    m2 = coord.merge()
    a.install(m1)                   # late
    a.install(m2)
    b.install(m2)
    want = _add(prior, gains)
    _assert_evidence(a, want)
    _assert_evidence(b, want)
    assert int(a.sona.router.state_dict()["calls"].sum()) == 150


def test_a_hierarchy_of_coordinators_pools_the_same_evidence():
    root = CoordinatorActor("root")
    queens = [CoordinatorActor(f"q{j}", parent=root) for j in range(2)]
    agents = [AgentActor(f"a{i}", CFG, EX, parent=queens[i // 2], seed=i) for i in range(4)]
    prior = agents[0].sona.router.prior_evidence()

    def sync():
        for a in agents:
            a.push()
        for q in queens:
            q.merge()                # pushes the queen's merged state and round evidence to the root
        frame = root.merge()
        for q in queens:
            q.install_if(frame)
        for a in agents:
            a.install(frame)

    tasks = EX.tasks(120, seed=5)
    gains = [_learn(a, tasks[i * 30:(i + 1) * 30]) for i, a in enumerate(agents)]
    sync()
    want = _add(prior, gains)
    for a in agents:
        _assert_evidence(a, want)
    sync()                           # nothing new: nothing changes
    for a in agents:
        _assert_evidence(a, want)
    more = _learn(agents[3], EX.tasks(20, seed=6))
    sync()
    for a in agents:
        _assert_evidence(a, _add(want, [more]))


def test_gossip_mix_averages_router_evidence_under_any_rule():
    cfg = CFG.replace(lora=CFG.lora.replace(shared_a_seed=None))   # ties may trim A too
    a, b = AgentActor("a", cfg, EX, seed=0), AgentActor("b", cfg, EX, seed=1)
    t = EX.tasks(60, seed=7)
    _learn(a, t[:30])
    _learn(b, t[30:])
    ea, eb = _ev(a), _ev(b)
    frames = [a.export_frame(), b.export_frame()]
    a.mix(None, frames, rule="ties", rule_options={"density": 0.2})   # would zero most precisions
    for k in ("precision", "eta", "latency_sum"):
        np.testing.assert_allclose(_ev(a)[k], (ea[k] + eb[k]) / 2, rtol=1e-9, err_msg=k)


# ---------------------------------------------------------------------------------------
# merge book and messages
# ---------------------------------------------------------------------------------------
def test_merge_book_pools_evidence_and_dedupes_retries():
    P = {"router/precision": np.ones(2), "B": np.zeros(2, np.float32)}
    book = MergeBook("fedavg")
    book.submit(AgentUpdate("a", 1, P, evidence={"router/precision": np.zeros(2)}))
    base = book.merge().params
    e1, e2, e3 = np.array([1.0, 0.0]), np.array([0.5, 2.0]), np.array([0.0, 3.0])
    assert book.submit(AgentUpdate("a", 2, {**P, "B": np.ones(2, np.float32)}, evidence={"router/precision": e1}))
    assert not book.submit(AgentUpdate("a", 2, P, evidence={"router/precision": e1}))   # a retry
    assert book.submit(AgentUpdate("a", 3, {**P, "B": np.full(2, 3.0, np.float32)},
                                   evidence={"router/precision": e2}))                  # replaces, adds
    assert book.submit(AgentUpdate("b", 1, P, evidence={"router/precision": e3}))
    r = book.merge()
    np.testing.assert_allclose(r.params["router/precision"], base["router/precision"] + e1 + e2 + e3)
    np.testing.assert_allclose(r.evidence["router/precision"], e1 + e2 + e3)
    np.testing.assert_allclose(r.params["B"], [1.5, 1.5])   # the rule: a's latest state and b's
    with pytest.raises(MergeError, match="evidence"):
        AgentUpdate("a", 1, P, evidence={"nope": np.zeros(2)})
    with pytest.raises(MergeError, match="evidence"):
        AgentUpdate("a", 1, P, evidence={"router/precision": np.zeros(3)})


def test_delta_messages_carry_evidence_and_reject_bad_evidence():
    P = {"router/precision": np.ones(2), "B": np.zeros(2, np.float32)}
    u = decode_delta(encode_delta(AgentUpdate("a", 1, P, evidence={"router/precision": np.array([1.0, 2.0])})))
    assert u.evidence["router/precision"].tolist() == [1.0, 2.0]
    assert decode_delta(encode_delta(AgentUpdate("a", 1, P))).evidence is None
    for bad in ({"router/precision": np.zeros(3)}, {"nope": np.zeros(2)}, {"router/precision": np.array([1.0, np.nan])}):
        u = AgentUpdate("a", 1, P)
        u.evidence = bad   # forged after validation
        with pytest.raises(MessageError):
            decode_delta(encode_delta(u))


def test_a_push_the_coordinator_ignored_is_sent_again():
    coord = CoordinatorActor("c")
    a = AgentActor("a", CFG, EX, parent=coord, seed=0)
    prior = a.sona.router.prior_evidence()
    t = EX.tasks(60, seed=8)
    gains = [_learn(a, t[:30])]
    _sync(coord, [a])
    gains.append(_learn(a, t[30:]))
    a.ledger.seq = 0                 # as after a restart from a checkpoint older than the last push
    assert not a.push()["accepted"]  # seq 1 again: ignored, so its evidence is still unsent
    _sync(coord, [a])                # seq 2: taken
    _assert_evidence(a, _add(prior, gains))
    np.testing.assert_allclose(decode_merged(coord.latest())["params"]["router/calls"].sum(), 60)
