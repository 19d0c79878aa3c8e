"""A model / engine whose frozen base is quantised (``lora.quantization``) keeps no float copy of it.

Inference runs the layers on their codes (the C kernels) instead of the fused float cache, so the
engine's arrays shrink with the scheme; its outputs agree with the training forward and with a
float model holding the dequantised weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from swarm_sona.bench.learning import array_bytes, reachable_arrays
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.sona import SONA
from swarm_sona.learning.config import LoRAConfig
from swarm_sona.learning.model import SONAModel

DIM = 128


def _engine(quantization: str | None) -> SONA:
    sona = SONA({"dim": DIM, "mlp_hidden": DIM, "background_every": 0, "batch_size": 16,
                 "lora": {"quantization": quantization},
                 "llm_router": {"models": [{"name": "a", "quality": 0.6}, {"name": "b", "quality": 0.8}]}}, bank=None)
    rng = np.random.default_rng(0)
    for i in range(16):
        e = rng.standard_normal(DIM).astype(np.float32)
        sona.learn(Trajectory(task=f"t{i}", embedding=e / np.linalg.norm(e), model="ab"[i % 2],
                              reward=float(i % 2), success=bool(i % 2)))
    sona.forward(np.full(DIM, DIM ** -0.5, np.float32))   # inference: builds whatever cache it uses
    sona.background()                                      # training: forward + backward on the base
    return sona


def test_an_engine_with_4bit_holds_no_float_copy_of_its_base():
    sona = _engine("4bit")
    shapes = {lin.base.shape for lin in sona.model.layers.values()}
    shapes |= {(b, a) for a, b in shapes}
    floats = [a for a in reachable_arrays(sona) if a.dtype.kind == "f"]
    big = [a.shape for a in floats if a.ndim == 2 and a.shape in shapes]
    assert big == []                                       # no W, W^T, fused Wo Wv or merged copy
    assert max(a.size for a in floats) < DIM * DIM         # nor any float array of a weight's size
    base_f32 = 6 * DIM * DIM * 4                           # six layers of (DIM, DIM) in float32
    assert sum(lin.base.nbytes for lin in sona.model.layers.values()) <= 0.15 * base_f32


def test_flipping_quantization_changes_the_engines_memory():
    size = {q: array_bytes(_engine(q)) for q in (None, "8bit", "4bit")}
    base_f32 = 6 * DIM * DIM * 4
    assert size["4bit"] < size["8bit"] < size[None]
    # float: base + fused cache (Wo Wv, W_in, W_out) on top of the rest; 4bit: 14.1 % of the base
    assert size[None] - size["4bit"] >= base_f32 * (1 - 0.141) + 3 * DIM * DIM * 4 - 1024
    assert size["4bit"] <= 0.2 * size[None]


@pytest.mark.parametrize("scheme", ["nf4", "int8"])
def test_quantised_inference_matches_the_training_forward_and_the_dequantised_float_model(scheme):
    lora = LoRAConfig(rank=4, quantization=scheme, target_modules=("q", "k", "v", "o", "mlp_in", "mlp_out"))
    m = SONAModel(dim=64, mlp_hidden=96, n_router=2, lora=lora, seed=3)
    for ad in m.base_adapters().values():
        ad.B[:] = np.random.default_rng(1).normal(scale=0.05, size=ad.B.shape)
        ad.touch()
    m.touch()
    f = SONAModel(dim=64, mlp_hidden=96, n_router=2, lora=LoRAConfig(rank=4, target_modules=lora.target_modules),
                  seed=3)
    f.load_state_dict(m.state_dict())                      # the dequantised base, float
    assert m.quantized and not f.quantized
    rng = np.random.default_rng(2)
    E = rng.standard_normal((5, 64)).astype(np.float32)
    steps = [[rng.standard_normal(64).astype(np.float32)] for _ in range(5)]
    X, mask = m.pack(E, steps)
    for tokens in (E, X):
        h_inf = m.encode(tokens)
        out, _ = m.forward_batch(tokens)
        np.testing.assert_allclose(h_inf, out["h"], atol=2e-5)
        np.testing.assert_allclose(h_inf, f.encode(tokens), atol=2e-5)
    np.testing.assert_allclose(m.forward(E[0])["h"], f.forward(E[0])["h"], atol=2e-5)
    assert m._fused == {} and f._fused                     # only the float model built a fused cache


def test_a_model_requantised_after_float_use_drops_its_fused_copy():
    m = SONAModel(dim=64, mlp_hidden=64, n_router=1)
    e = np.full(64, 0.125, np.float32)
    before = array_bytes(m.forward(e)) + array_bytes(m)
    for lin in m.layers.values():
        lin.base.requantize("nf4")
    h = m.forward(e)["h"]
    assert array_bytes(m) < 0.2 * before and np.isfinite(h).all()
