"""Byzantine agents at each robust rule's stated tolerance, through the consensus path (MergeBook).

Stated bound (swarm_sona.consensus.rules): with at most ``rule.tolerates(n)`` bad agents sending
poisoned parameters, a forged Fisher, the largest weight a push may carry and forged router
evidence, the merged parameters and Fisher each stay within the diameter of the honest agents'
bounding box (``||max_i x_i - min_i x_i||``, honest agents only) of the honest-only merge; the
trajectory count handed upstream stays within ``n x [min, max]`` honest weight; the pooled
evidence stays within ``f * clip * (largest honest evidence norm)`` of the honest sum. One
more bad agent than tolerated is allowed to break it, and does (median, trimmed_mean).
"""

import numpy as np
import pytest

from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.messages import DELTA_KIND, MESSAGE_SCHEMA, MessageError, decode_delta, encode_delta
from swarm_sona.consensus.rules import DEFAULT_CLIP, fedavg, get_rule
from swarm_sona.consensus.state import state_distance
from swarm_sona.consensus.updates import MAX_WEIGHT, AgentUpdate, MergeError
from swarm_sona.core import codec

N = 7
ROBUST = [("median", {}), ("trimmed_mean", {"f": 2}), ("krum", {}), ("multi_krum", {})]
EV = "router/precision"


def _honest(k, rng):
    base = {"adapters/q/B": rng.normal(size=(8, 4)), "heads/v/w": rng.normal(size=8)}
    out = []
    for i in range(k):
        params = {n: (v + 0.05 * rng.normal(size=v.shape)).astype(np.float32) for n, v in base.items()}
        fisher = {n: rng.uniform(0.5, 1.5, size=v.shape).astype(np.float32) for n, v in base.items()}
        ev = rng.uniform(1.0, 2.0, size=(2, 3))
        params[EV] = 10.0 + ev
        out.append(AgentUpdate(f"h{i}", 1, params, weight=int(rng.integers(20, 40)), fisher=fisher,
                               evidence={EV: ev}))
    return out


def _bad(k, honest, attack):
    ref = honest[0]
    out = []
    for j in range(k):
        if attack == "huge":
            params = {n: np.full_like(v, 1e6) for n, v in ref.params.items()}
        else:   # sign flip, 100x
            params = {n: -100.0 * v for n, v in ref.params.items()}
        params[EV] = ref.params[EV].copy()
        fisher = {n: np.full_like(v, 1e30) for n, v in ref.fisher.items()}
        out.append(AgentUpdate(f"z{j}", 1, params, weight=MAX_WEIGHT, fisher=fisher,
                               evidence={EV: np.full((2, 3), 1e12)}))
    return out


def _merge(rule, kw, ups):
    book = MergeBook(rule, **kw)
    for u in ups:
        assert book.submit(u)
    return book.merge()


def _diameter(states):
    names = [n for n in states[0] if not n.startswith("router/")]
    return np.sqrt(sum(float(np.sum((np.max([s[n] for s in states], 0).astype(np.float64)
                                     - np.min([s[n] for s in states], 0)) ** 2)) for n in names))


def _adapters(d):
    return {k: v for k, v in d.items() if not k.startswith("router/")}


@pytest.mark.parametrize("attack", ["huge", "flip"])
@pytest.mark.parametrize("rule,kw", ROBUST)
def test_robust_rules_hold_at_their_stated_tolerance(rule, kw, attack):
    rng = np.random.default_rng(3)
    f = get_rule(rule, **kw).tolerates(N)
    assert f >= 2, (rule, f)
    honest = _honest(N - f, rng)
    ups = honest + _bad(f, honest, attack)
    want = _merge(rule, kw, honest)
    got = _merge(rule, kw, ups)
    # parameters
    bound = _diameter([u.params for u in honest])
    dist = state_distance(_adapters(got.params), _adapters(want.params))
    assert dist <= bound, (rule, attack, dist, bound)
    # Fisher: aggregated by the same rule, the forged 1e30 ignored
    fbound = _diameter([u.fisher for u in honest])
    fdist = state_distance(got.fisher, want.fisher)
    assert fdist <= fbound, (rule, attack, fdist, fbound)
    assert max(float(v.max()) for v in got.fisher.values()) < 2.0
    # the count handed upstream (a queen's weight): bad weights of 1e12 do not inflate it
    ws = [u.weight for u in honest]
    assert N * min(ws) <= got.n_trajectories <= N * max(ws), got.n_trajectories
    # router evidence: each agent's clipped to DEFAULT_CLIP x the median agent's
    honest_sum = sum(u.evidence[EV] for u in honest)
    ev_bound = f * DEFAULT_CLIP * max(np.linalg.norm(u.evidence[EV]) for u in honest)
    assert np.linalg.norm(got.evidence[EV] - honest_sum) <= ev_bound * (1 + 1e-9)   # tight: clipped onto it
    assert np.linalg.norm(want.evidence[EV] - honest_sum) < 1e-9   # honest alone: nothing clipped


# trimmed_mean with its norm clip on still holds at f + 1 while honest agents are a majority (the
# clip's reference, the coordinate median, is then honest); with the clip off it breaks at f + 1
@pytest.mark.parametrize("rule,kw", [("median", {}), ("trimmed_mean", {"f": 2, "clip": None})])
def test_one_more_bad_agent_than_tolerated_breaks_it(rule, kw):
    rng = np.random.default_rng(4)
    f = get_rule(rule, **kw).tolerates(N) + 1
    honest = _honest(N - f, rng)
    want = _merge(rule, {}, honest)
    got = _merge(rule, kw, honest + _bad(f, honest, "huge"))
    dist = state_distance(_adapters(got.params), _adapters(want.params))
    assert dist > 1e3 * _diameter([u.params for u in honest]), (rule, dist)


def test_forged_weights_are_refused_with_a_clear_error():
    x = {"B": np.ones(2)}
    for w in (1e300, 1e308, float("inf"), -1, 2.5, True):
        with pytest.raises(MergeError, match="weight .trajectory count. must be an integer"):
            AgentUpdate("z", 1, x, weight=w)
    blob = encode_delta(AgentUpdate("z", 1, x, weight=3))
    body = {"agent_id": "z", "seq": 1, "base_version": 0, "n_trajectories": 1e300, "params": x, "fisher": None,
            "metadata": {}, "trace": {}}
    forged = codec.pack_frame(DELTA_KIND, body, version=MESSAGE_SCHEMA)   # well-formed, forged count
    with pytest.raises(MessageError, match="weight"):
        decode_delta(forged)
    assert decode_delta(blob).weight == 3.0


def test_fedavg_is_overflow_safe():
    # before: two deltas of weight 1e308 merged silently to all zeros (the weights summed to inf)
    big = [AgentUpdate(a, 1, {"x": np.array([1.0, 3.0])}, weight=MAX_WEIGHT) for a in "ab"]
    np.testing.assert_allclose(fedavg(big)["x"], [1.0, 3.0])
    huge = [AgentUpdate(a, 1, {"x": np.array([1.5e308])}, weight=w) for a, w in zip("ab", [1, 3], strict=True)]
    np.testing.assert_allclose(fedavg(huge)["x"], [1.5e308])   # the sum of values would overflow
    # beyond the dtype: an error naming it, never inf
    with pytest.raises(MergeError, match="not finite in float32"):
        fedavg([AgentUpdate("a", 1, {"x": np.ones(1, np.float32)}),
                AgentUpdate("b", 1, {"x": np.array([1e300])})])


def test_the_median_rule_no_longer_takes_a_forged_fisher():
    # the reproduction of the issue: one agent, weight as large as allowed, forged Fisher
    honest = [AgentUpdate(f"h{i}", 1, {"B": np.ones(3)}, weight=10, fisher={"B": np.ones(3)}) for i in range(4)]
    bad = AgentUpdate("z", 1, {"B": np.ones(3)}, weight=MAX_WEIGHT, fisher={"B": np.full(3, 1e30)})
    r = _merge("median", {}, honest + [bad])
    np.testing.assert_allclose(r.fisher["B"], 1.0)
    assert r.n_trajectories == 50.0
    r = _merge("fedavg", {}, honest + [bad])   # fedavg tolerates no bad agent: it is the weighted mean
    assert r.fisher["B"][0] > 1e29 and r.n_trajectories == 40 + MAX_WEIGHT


def test_the_clip_option_bounds_a_bad_agent():
    rng = np.random.default_rng(5)
    honest = _honest(4, rng)
    ups = honest + _bad(1, honest, "huge")
    want = _merge("fedavg", {}, honest)
    plain = _merge("fedavg", {}, ups)
    clipped = _merge("fedavg", {"clip": 3.0}, ups)
    d_plain = state_distance(_adapters(plain.params), _adapters(want.params))
    d_clip = state_distance(_adapters(clipped.params), _adapters(want.params))
    assert d_plain > 1e5 and d_clip < 3 * _diameter([u.params for u in honest]), (d_plain, d_clip)
    # robust rules clip the pooled evidence by default; clip=None turns it off
    on = _merge("median", {}, ups)
    off = _merge("median", {"clip": None}, ups)
    assert float(off.evidence[EV].max()) >= 1e12 > 1e3 > float(on.evidence[EV].max())


def test_clip_is_validated():
    for bad in (0.5, float("nan"), "3", True):
        with pytest.raises(MergeError, match="clip"):
            get_rule("median", clip=bad)
    assert get_rule("median").clip == DEFAULT_CLIP and get_rule("fedavg").clip is None
    assert get_rule("median", clip=None).to_dict() == {"name": "median", "clip": None}
