"""The router's evidence decay (``llm_router.evidence_decay``) and its EWC anchor
(:meth:`LLMRouter.consolidate`, and the engine's task boundaries at ``ewc.lambda``)."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_sona.core import codec
from swarm_sona.core.config import ConfigError
from swarm_sona.engine import SONA
from swarm_sona.routing import LLMRouter, RouterError

A, B = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]


def _router(decay: float, **kw) -> LLMRouter:
    return LLMRouter({"models": [{"name": "m", "quality": 0.5}], "exploration": "none", "evidenceDecay": decay,
                      **kw}, dim=3)


def _a_then_b(r: LLMRouter, weight: float | None) -> float:
    """P(success) on A's features after learning A (all succeed) then B (all fail)."""
    for _ in range(30):
        r.feedback(None, "m", True, embedding=A)
    if weight is not None:
        r.consolidate(weight)
    for _ in range(200):
        r.feedback(None, "m", False, embedding=B)
    return float(r.success_probabilities(embedding=A)[0])


def test_without_decay_nothing_is_forgotten_and_an_anchor_changes_nothing() -> None:
    kept = _a_then_b(_router(1.0), None)
    assert kept == pytest.approx(_a_then_b(_router(1.0), 1.0), abs=0)   # the anchor is never read
    assert _a_then_b(_router(0.98), None) < kept - 0.2                    # the decay forgets A


def test_the_anchor_keeps_what_was_learned_before_the_boundary() -> None:
    forgot = _a_then_b(_router(0.98), None)
    assert _a_then_b(_router(0.98), 0.0) == pytest.approx(forgot)         # weight 0: the prior
    half, whole = _a_then_b(_router(0.98), 0.5), _a_then_b(_router(0.98), 1.0)
    assert forgot + 0.1 < half < whole                                     # more weight, more kept
    assert whole > _a_then_b(_router(1.0), None) - 0.1


def test_consolidate_sets_the_anchor_to_the_prior_plus_weighted_evidence() -> None:
    r = _router(0.9)
    for _ in range(5):
        r.feedback(None, "m", True, embedding=A)
    p = r.posterior
    r.consolidate(0.667)
    np.testing.assert_allclose(p.AP, p.P0 + 0.667 * (p.P - p.P0))
    np.testing.assert_allclose(p.AE, p.P0 * p.W0 + 0.667 * (p.P * p.W - p.P0 * p.W0))
    with pytest.raises(RouterError, match="weight must be a finite number >= 0"):
        r.consolidate(-1.0)


def test_the_anchor_survives_a_checkpoint_and_an_old_state_has_the_prior_as_anchor() -> None:
    r = _router(0.95)
    _a_then_b(r, 1.0)
    state = codec.unpackb(codec.packb(r.state_dict()))
    assert {"anchor_weights", "anchor_precision"} <= set(state)
    r2 = _router(0.95)
    r2.load_state_dict(state)
    np.testing.assert_allclose(r2.posterior.AP, r.posterior.AP)
    for _ in range(50):   # the same anchor: the same forgetting from here on
        r.feedback(None, "m", False, embedding=B)
        r2.feedback(None, "m", False, embedding=B)
    np.testing.assert_allclose(r2.state_dict()["weights"], r.state_dict()["weights"], rtol=1e-12)
    old = {k: v for k, v in state.items() if not k.startswith("anchor_")}   # a state from before anchors
    r2.load_state_dict(old)
    assert r2.posterior.AP is None
    with pytest.raises(RouterError, match="only one of"):
        r2.load_state_dict({**old, "anchor_precision": state["anchor_precision"]})
    with pytest.raises(RouterError, match="anchor_precision' must be > 0"):
        r2.load_state_dict({**state, "anchor_precision": -state["anchor_precision"]})


def test_decay_needs_the_diagonal_posterior() -> None:
    with pytest.raises(ConfigError, match="evidence_decay: below 1 it needs posterior 'diagonal'"):
        _router(0.9, posterior="full")
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="evidence_decay"):
            _router(bad)
    full = LLMRouter({"models": [{"name": "m"}], "posterior": "full"}, dim=3)
    with pytest.raises(RouterError, match="needs llm_router.posterior 'diagonal'"):
        full.consolidate(1.0)
    state = _router(0.9).state_dict()
    with pytest.raises(RouterError, match="anchor"):
        full.load_state_dict({**full.state_dict(), "anchor_weights": state["prior_weights"],
                              "anchor_precision": state["prior_precision"]})


def _engine(decay: float, lam: float) -> SONA:
    return SONA({"dim": 3, "mlp_hidden": 4, "background_every": 0, "ewc": {"lambda": lam},
                 "llm_router": {"models": [{"name": "m"}], "exploration": "none", "evidence_decay": decay}},
                bank=None)


@pytest.mark.parametrize("lam,weight", [(0.4, 0.4 / 0.6), (0.5, 1.0), (0.0, 0.0)])
def test_an_engine_task_boundary_consolidates_a_decaying_router_at_ewc_lambda(lam: float, weight: float) -> None:
    sona = _engine(0.9, lam)
    assert sona.router is not None
    sona.router.feedback(None, "m", True, embedding=A)
    p = sona.router.posterior
    sona.consolidate("A")
    np.testing.assert_allclose(p.AP, p.P0 + weight * (p.P - p.P0))


def test_an_engine_boundary_leaves_a_router_that_never_forgets_alone() -> None:
    sona = _engine(1.0, 0.5)
    assert sona.router is not None
    sona.router.feedback(None, "m", True, embedding=A)
    sona.consolidate("A")
    assert sona.router.posterior.AP is None and "anchor_weights" not in sona.router.state_dict()
