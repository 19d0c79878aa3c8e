"""Issue 14's learning switches: MicroLoRA on/off, online EWC++ consolidation (and the penalty
metric it moves), the guide's ewc.lambda scale, the router-head gate."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import swarm_sona.learning.config as lcfg
from swarm_sona.core.config import ConfigError
from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.head_gate import SHARES, HeadGate
from swarm_sona.engine.sona import SONA
from swarm_sona.learning.config import EWCConfig, guide_lambda_to_strength, strength_to_guide_lambda
from swarm_sona.learning.ewc import EWC
from swarm_sona.runtime.metering import RunMeter

MODELS = [{"name": "weak", "quality": 0.5, "cost": 0.001, "cost_unit": "call"},
          {"name": "strong", "quality": 0.7, "cost": 0.01, "cost_unit": "call"}]
DIM = 32


def _engine(**cfg):
    base = {"dim": DIM, "mlp_hidden": 16, "background_every": 50, "llm_router": {"models": MODELS, "seed": 1}}
    for k, v in cfg.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return SONA(base, bank=None)


def _stream(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        e = rng.standard_normal(DIM).astype(np.float32)
        e /= np.linalg.norm(e)
        ok = bool(e[0] > 0) if i % 2 else bool(rng.random() < 0.3)
        out.append(Trajectory(task=f"t{i}", embedding=e, model=("weak", "strong")[i % 2], reward=float(ok),
                              success=ok))
    return out


# ---- MicroLoRA switch -------------------------------------------------------------------------
def test_micro_lora_switch_off_leaves_the_hidden_state_and_trains_only_the_heads():
    on, off = _engine(), _engine(micro_lora=False)
    assert SONAConfig.from_dict({"microLora": False}).micro_lora is False
    for s in (on, off):
        s.learn(_stream(60))
    assert on.model.micro.norm() > 0 and off.model.micro.norm() == 0.0
    e = _stream(1, seed=5)[0].embedding
    f_on, f_off = on.model.forward(e), off.model.forward(e)
    np.testing.assert_array_equal(f_off["hidden"], f_off["h"])      # MicroLoRA adds nothing
    assert not np.array_equal(f_on["hidden"], f_on["h"])
    fresh = _engine(micro_lora=False)
    assert not np.allclose(off.model.router_W, fresh.model.router_W)  # the heads still learn
    # the switch survives a checkpoint round trip (the state's MicroLoRA is re-switched off)
    back = _engine(micro_lora=False)
    back.load_state_dict(on.state_dict() | {"config": off.state_dict()["config"]})
    assert back.model.micro.scale == 0.0


# ---- online consolidation and the penalty metric ----------------------------------------------
def _penalty_gauge(sona):
    tel = Telemetry(TelemetryConfig(metrics_exporter="memory"))
    try:
        RunMeter(tel).snapshot({"agents": {"a0": {"engine": sona.stats()}}})
        return [p["value"] for p in tel.memory_metrics()["swarm_sona.ewc.penalty"]]
    finally:
        tel.shutdown()


def test_consolidate_every_anchors_in_one_stream_and_moves_the_penalty_metric():
    plain, online = _engine(), _engine(ewc={"consolidate_every": 100})
    for s in (plain, online):
        s.learn(_stream(400))
    # one stream, no detected boundary: without online consolidation EWC++ never anchors
    assert plain.stats()["ewc"]["consolidations"] == 0 and plain.counters.n_boundaries == 0
    assert plain.stats()["ewc"]["last_penalty"] == 0.0 and _penalty_gauge(plain) == [0.0]
    st = online.stats()["ewc"]
    assert st["consolidations"] == 1 and online.counters.n_consolidations == 4   # online mode: one anchor, replaced
    assert st["tasks"] == ["online-4"] and st["last_penalty"] > 0
    assert _penalty_gauge(online)[0] > 0
    # the adapters differ once the penalty acts
    a, b = plain.model.base_adapters(), online.model.base_adapters()
    assert any(not np.allclose(a[m].B, b[m].B) for m in a)


def test_consolidate_every_is_validated():
    with pytest.raises(ConfigError, match="consolidate_every: needs mode 'online'"):
        EWCConfig(consolidate_every=10, mode="separate")
    with pytest.raises(ConfigError, match="consolidate_every"):
        EWCConfig.from_dict({"consolidateEvery": -1})


# ---- the guide's lambda scale -----------------------------------------------------------------
def test_guide_lambda_maps_onto_the_strength_and_back():
    assert guide_lambda_to_strength(0.5) == 1000.0 and EWCConfig().strength == 1000.0
    assert EWCConfig.from_dict({"lambda": 0.4}).strength == pytest.approx(2000.0 / 3)
    assert EWCConfig.from_dict({"lambda": 0}).strength == 0.0
    assert EWCConfig.from_dict({"lambda": 1.0}).strength == 1e6
    for s in (1.0, 200.0, 1000.0, 9000.0):
        assert guide_lambda_to_strength(strength_to_guide_lambda(s)) == pytest.approx(s)
    # the internal scale stays reachable, and to_dict/from_dict round-trips
    cfg = EWCConfig.from_dict({"strength": 5.0})
    assert cfg.strength == 5.0 and EWCConfig.from_dict(cfg.to_dict()) == cfg
    assert EWC(cfg).lam == 5.0 and EWC(EWCConfig.from_dict({"lambda": 0.4})).lam == pytest.approx(666.667, abs=1e-3)


def test_old_scale_lambda_is_read_as_strength_and_warned_once(monkeypatch):
    monkeypatch.setattr(lcfg, "_OLD_SCALE_WARNED", False)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        a = EWCConfig.from_dict({"lambda": 2000})
        b = SONAConfig.from_dict({"ewc": {"lambda": 5000.0}})
    assert a.strength == 2000.0 and b.ewc.strength == 5000.0
    msgs = [str(w.message) for w in got if "old internal scale" in str(w.message)]
    assert len(msgs) == 1 and "strength 2000" in msgs[0] and "0.6667" in msgs[0]


@pytest.mark.parametrize("data, msg", [({"lambda": -0.1}, "ewc.lambda"), ({"lambda": "high"}, "ewc.lambda"),
                                       ({"lambda": 0.4, "strength": 3.0}, "not both"),
                                       ({"strength": -1.0}, "ewc.strength")])
def test_bad_lambda_is_refused(data, msg):
    with pytest.raises(ConfigError, match=msg):
        EWCConfig.from_dict(data)


def test_the_guides_lambda_protects_an_anchored_task():
    """Task A learned, consolidated, then task B: at the guide's 0.4 the adapters stay nearer A's."""
    a_stream, b_stream = _stream(200, seed=1), _stream(300, seed=2)
    drift = {}
    for lam in (0.0, 0.4):
        s = _engine(ewc={"lambda": lam, "detect_boundaries": False})
        s.learn(a_stream)
        s.consolidate("A")
        anchor = {k: v.copy() for k, v in s.model.parameters(("base",)).items()}
        s.learn(b_stream)
        drift[lam] = sum(float(np.sum((v - anchor[k]) ** 2)) for k, v in s.model.parameters(("base",)).items())
    assert drift[0.4] < 0.5 * drift[0.0]


# ---- the head gate ----------------------------------------------------------------------------
def test_head_gate_follows_the_measured_log_loss():
    gate = HeadGate(window=50)
    assert gate.share == 0.0 and gate.head_probs(None, np.zeros(2), np.array([0.9, 0.1])) is None
    for _ in range(4):            # fewer than window // 10 outcomes: still shut
        gate.record(0.5, 0.9, 1.0)
    assert gate.share == 0.0
    gate.record(0.5, 0.9, 1.0)
    assert gate.share == 1.0
    for _ in range(200):          # a head right half the time where the bandit is calibrated at 0.5
        gate.record(0.5, 0.9, 1.0)
        gate.record(0.5, 0.9, 0.0)
    assert gate.share == 0.0
    st = gate.stats()
    assert st["outcomes"] == 405 and set(st["log_loss"]) == {f"{g:g}" for g in SHARES}
    with pytest.raises(ValueError, match="window"):
        HeadGate(window=0)


class _Router:
    def success_probabilities(self, *, embedding):
        return np.array([0.4, 0.6])


def test_head_gate_rescales_the_head_so_the_routers_blend_is_the_chosen_share():
    gate = HeadGate(window=10)
    gate.share = 0.25
    p = gate.head_probs(_Router(), np.zeros(2), np.array([1.0, 0.0]))
    np.testing.assert_allclose(p, [0.4 + 0.25 * 0.6, 0.6 - 0.25 * 0.6])
    P = gate.head_probs_batch(_Router(), np.zeros((2, 2)), np.array([[1.0, 0.0], [0.4, 0.6]]))
    np.testing.assert_allclose(P[1], [0.4, 0.6])


def _routed(sona, stream):
    picks = []
    for t in stream:
        d = sona.route(t.task, embedding=t.embedding)
        picks.append(d.model)
        sona.learn(Trajectory(task=t.task, embedding=t.embedding, model=d.model,
                              success=bool(t.embedding[0] > 0) if d.model == "strong" else bool(t.embedding[1] > 0),
                              reward=1.0))
    return picks


def test_head_gate_on_shuts_out_a_head_that_does_not_help():
    """A head that learns nothing (instant_lr 0, no background loop: its random initial weights
    stay): with the gate the engine routes exactly as the bandit alone; without it the head
    changes decisions."""
    stream = _stream(300, seed=3)
    kw = {"instant_lr": 0.0, "background_every": 0, "llm_router": {"head_weight": 1.0, "prior_strength": 1.0}}
    gated, blended = _engine(head_gate=True, head_gate_window=100, **kw), _engine(**kw)
    bandit = _engine(**{**kw, "llm_router": {"head_weight": 0.0, "prior_strength": 1.0}})
    a, b, c = _routed(gated, stream), _routed(blended, stream), _routed(bandit, stream)
    assert gated.stats()["head_gate"]["share"] == 0.0 and gated.stats()["head_gate"]["outcomes"] == 300
    assert a == c and b != c
    assert blended.stats()["head_gate"] is None
