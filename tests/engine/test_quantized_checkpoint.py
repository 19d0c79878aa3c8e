"""A quantised base in the engine checkpoint (schema 2 of ``sona-engine``): a 4bit / 8bit
engine's checkpoint stores each layer's codes and per-group scales (not a float32 copy), a
restore installs them bit-exactly (the restored forward equals the saved one exactly), and a
schema-1 checkpoint (every base float32, as 0.1.0 wrote) still loads through the migration."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from swarm_sona.core import codec
from swarm_sona.core.codec import CheckpointError
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.sona import CHECKPOINT_KIND, SONA
from swarm_sona.engine.state import ENGINE_SCHEMA
from swarm_sona.learning.quantization import quantize_weight

SCHEMA1 = Path(__file__).parents[1] / "data" / "schema1"
DIM = 64


def engine(quantization, seed=0):
    return SONA({"dim": DIM, "mlp_hidden": DIM, "backgroundEvery": 0, "modelSeed": seed,
                 "lora": {"quantization": quantization}})


def trained(quantization):
    s = engine(quantization)
    for i in range(6):
        s.learn({"task": f"implement feature {i}", "output": f"code {i}", "reward": (i % 3) / 2})
    s.background(force=True)          # BaseLoRA steps: adapters non-zero on top of the quantised base
    return s


def probes(s):
    return [s.embed(t) for t in ("implement feature 1", "fix the parser", "write docs")]


def same_forward(a, b):
    for e in probes(a):
        fa, fb = a.forward(e), b.forward(e)
        assert np.array_equal(fa["hidden"], fb["hidden"]) and fa["value"] == fb["value"]
    X = np.stack(probes(a))
    assert np.array_equal(a.model.encode(X[:, None, :]), b.model.encode(X[:, None, :]))


@pytest.mark.parametrize(("quantization", "scheme", "dtype"), [("4bit", "nf4", np.uint8), ("8bit", "int8", np.int8)])
def test_codes_and_scales_are_stored_and_restored_bit_exactly(tmp_path, quantization, scheme, dtype):
    s = trained(quantization)
    s.save(tmp_path / "e.ckpt")
    r = codec.open_checkpoint(tmp_path / "e.ckpt", kind=CHECKPOINT_KIND)
    assert (r.schema, r.version, r.migrated) == (ENGINE_SCHEMA, ENGINE_SCHEMA, False) and ENGINE_SCHEMA == 2
    base = r.body["model"]["base"]
    assert set(base) == set(s.model.layers)
    for m, entry in base.items():
        q = s.model.layers[m].base.quantized
        assert "W" not in entry and entry["scheme"] == scheme and entry["codes"].dtype == dtype
        assert np.array_equal(entry["codes"], q.codes) and np.array_equal(entry["absmax"], q.absmax)
        assert entry["absmax"].dtype == np.float32 and tuple(entry["shape"]) == q.shape
    back = SONA.load(tmp_path / "e.ckpt")
    for m, lin in back.model.layers.items():
        q0, q1 = s.model.layers[m].base.quantized, lin.base.quantized
        assert q1.scheme == scheme and q1.group_size == q0.group_size
        assert q1.codes.tobytes() == q0.codes.tobytes() and q1.absmax.tobytes() == q0.absmax.tobytes()
    same_forward(s, back)
    # and it goes on learning the same way from there
    t = {"task": "implement feature 9", "output": "x", "reward": 1.0}
    s.learn(t)
    back.learn(t)
    same_forward(s, back)


def test_quantised_checkpoints_are_smaller_than_the_float_one(tmp_path):
    sizes = {}
    for q in (None, "4bit", "8bit"):
        engine(q).save(tmp_path / f"{q}.ckpt")
        sizes[q] = (tmp_path / f"{q}.ckpt").stat().st_size
    base_float = sum(lin.base.nbytes for lin in engine(None).model.layers.values())
    saved = {q: sizes[None] - sizes[q] for q in ("4bit", "8bit")}
    # the file shrinks by what the base no longer stores as float32 (14.1 % / 26.6 % of it kept)
    assert saved["4bit"] == pytest.approx((1 - 0.5625 / 4) * base_float, rel=0.02)
    assert saved["8bit"] == pytest.approx((1 - 1.0625 / 4) * base_float, rel=0.02)
    assert sizes["4bit"] < sizes["8bit"] < sizes[None]


def _as_schema1(s):
    """``s``'s state in the schema-1 layout: every base float32 ``{"W", "b"}`` (no scheme)."""
    st = s.state_dict()
    st["model"]["base"] = {m: {"W": lin.W.astype(np.float32), "b": lin.b.copy()} for m, lin in s.model.layers.items()}
    return st


def test_a_schema1_float_checkpoint_of_a_quantised_engine_loads_re_quantised(tmp_path):
    s = trained("4bit")
    p = tmp_path / "old.ckpt"
    p.write_bytes(codec.pack_frame(CHECKPOINT_KIND, _as_schema1(s), version=1))
    r = codec.open_checkpoint(p, kind=CHECKPOINT_KIND)
    assert (r.schema, r.version, r.migrated) == (1, ENGINE_SCHEMA, True)
    assert all(e["scheme"] is None and "W" in e for e in r.body["model"]["base"].values())
    back = SONA.load(p)
    for m, lin in back.model.layers.items():      # re-quantised from the float copy, as before schema 2
        assert lin.base.scheme == "nf4"
        expect = quantize_weight(s.model.layers[m].W, "nf4", lin.base.group_size)
        assert np.array_equal(lin.base.quantized.codes, expect.codes)
    for e in probes(s):
        np.testing.assert_allclose(back.forward(e)["hidden"], s.forward(e)["hidden"], atol=1e-5)


def test_the_0_1_0_engine_checkpoint_migrates_and_loads(tmp_path):
    shutil.copy(SCHEMA1 / "engine.ckpt", tmp_path / "engine.ckpt")
    r = codec.open_checkpoint(tmp_path / "engine.ckpt", kind=CHECKPOINT_KIND)
    assert (r.schema, r.version, r.migrated) == (1, ENGINE_SCHEMA, True)
    s = SONA.load(tmp_path / "engine.ckpt")
    assert s.route("implement a parser")["model"] in {"small", "large"}
    (res,) = codec.migrate_path(tmp_path / "engine.ckpt")
    assert (res.action, res.from_version, res.to_version) == ("upgraded", 1, ENGINE_SCHEMA)
    again = SONA.load(tmp_path / "engine.ckpt")
    same_forward(s, again)


def test_a_checkpoint_of_another_scheme_is_stored_under_the_engines_own(tmp_path):
    s8 = trained("8bit")
    st = s8.state_dict()
    cfg = dict(st["config"])
    cfg["lora"] = {**cfg["lora"], "quantization": "nf4"}
    s4 = SONA(SONAConfig.from_dict(cfg))
    s4.load_state_dict(st)
    for m, lin in s4.model.layers.items():
        assert lin.base.scheme == "nf4"
        expect = quantize_weight(s8.model.layers[m].W, "nf4", lin.base.group_size)
        assert np.array_equal(lin.base.quantized.codes, expect.codes)
    f = SONA(SONAConfig.from_dict({**cfg, "lora": {**cfg["lora"], "quantization": None}}))
    f.load_state_dict(st)                                  # into a float engine: the dequantised base
    for m, lin in f.model.layers.items():
        assert lin.base.scheme is None and np.array_equal(lin.W, s8.model.layers[m].W)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("codes", lambda e: e["codes"][:-1], r"base\.q\.codes: \d+ uint8 codes, expected \d+"),
    ("codes", lambda e: e["codes"].astype(np.int8), r"base\.q\.codes: expected a 1-D uint8 array"),
    ("absmax", lambda e: np.full_like(e["absmax"], np.nan), r"base\.q\.absmax: scales must be finite"),
    ("scheme", lambda e: "3bit", r"base\.q: unknown quantization '3bit'"),
    ("shape", lambda e: [DIM, DIM + 2], r"base\.q\.codes: \d+ uint8 codes, expected \d+"),
])
def test_a_damaged_quantised_base_is_refused_naming_the_field(tmp_path, field, value, message):
    s = trained("4bit")
    st = s.state_dict()
    entry = st["model"]["base"]["q"]
    entry[field] = value(entry)
    before = s.model.layers["q"].base.quantized
    with pytest.raises(Exception, match=message):
        s.load_state_dict(st)
    assert s.model.layers["q"].base.quantized is before          # nothing changed
    codec.write_checkpoint(tmp_path / "bad.ckpt", st, kind=CHECKPOINT_KIND)
    with pytest.raises(CheckpointError, match=message):
        SONA.load(tmp_path / "bad.ckpt")
