import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from swarm_sona.core import codec
from swarm_sona.core.codec import CheckpointError, CodecError


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int8, np.int64, np.bool_]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
def test_ndarray_round_trip(arr):
    out = codec.unpackb(codec.packb({"a": arr}))["a"]
    assert out.dtype == arr.dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_non_contiguous_and_nested():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    body = {"x": [a, {"y": a.T}], "t": (1, 2)}
    out = codec.unpackb(codec.packb(body))
    np.testing.assert_array_equal(out["x"][0], a)
    np.testing.assert_array_equal(out["x"][1]["y"], a.T)
    assert out["t"] == [1, 2]


def test_object_arrays_and_unknown_types_refused():
    with pytest.raises(CodecError, match="dtype object"):
        codec.packb(np.array([object()], dtype=object))
    with pytest.raises(CodecError, match="cannot encode"):
        codec.packb({"f": lambda: 0})


def test_frame_detects_corruption_truncation_version_kind():
    blob = codec.pack_frame("delta", {"w": np.ones(8, np.float32)})
    assert codec.unpack_frame(blob, expect_kind="delta")[0] == "delta"
    bad = bytearray(blob)
    bad[-3] ^= 0xFF
    with pytest.raises(CodecError, match="checksum"):
        codec.unpack_frame(bytes(bad))
    with pytest.raises(CodecError, match="truncated"):
        codec.unpack_frame(blob[:-5])
    with pytest.raises(CodecError, match="bad magic"):
        codec.unpack_frame(b"garbage" * 4)
    with pytest.raises(CodecError, match="expected a 'merge' message"):
        codec.unpack_frame(blob, expect_kind="merge")
    future = codec.pack_frame("delta", {}, version=99)
    with pytest.raises(CodecError, match="schema version 99 .*written by a newer swarm_sona: schema 99, this one reads up to 1"):
        codec.unpack_frame(future)
    with pytest.raises(CodecError, match="expected bytes"):
        codec.unpack_frame("not bytes")  # type: ignore[arg-type]


def test_malformed_ndarray_ext_refused():
    import msgpack

    header = msgpack.packb(["<f4", [10]])
    ext = msgpack.ExtType(1, header + b"\x00" * 8)  # 2 floats, claims 10
    with pytest.raises(CodecError, match="byte count"):
        codec.unpackb(msgpack.packb(ext))
    ext = msgpack.ExtType(1, msgpack.packb(["|O", [1]]) + b"\x00" * 8)
    with pytest.raises(CodecError, match="refusing ndarray"):
        codec.unpackb(msgpack.packb(ext))
    with pytest.raises(CodecError, match="unknown msgpack ext"):
        codec.unpackb(msgpack.packb(msgpack.ExtType(7, b"x")))


def test_checkpoint_atomic_and_fallback(tmp_path):
    p = tmp_path / "c.ckpt"
    codec.write_checkpoint(p, {"v": 1})
    codec.write_checkpoint(p, {"v": 2})
    assert codec.read_checkpoint(p)["v"] == 2
    assert (tmp_path / "c.ckpt.prev").exists()
    # corrupt the newest: the previous one is used
    data = bytearray(p.read_bytes())
    data[20] ^= 0x55
    p.write_bytes(bytes(data))
    assert codec.read_checkpoint(p)["v"] == 1
    with pytest.raises(CheckpointError, match="checksum"):
        codec.read_checkpoint(p, fallback=False)
    # truncated and no valid prev: refused
    p.write_bytes(p.read_bytes()[:10])
    (tmp_path / "c.ckpt.prev").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        codec.read_checkpoint(p)
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_write_failure_keeps_old(tmp_path):
    p = tmp_path / "c.ckpt"
    codec.write_checkpoint(p, {"v": 1})
    with pytest.raises(CodecError):
        codec.write_checkpoint(p, {"v": object()})
    assert codec.read_checkpoint(p)["v"] == 1


def test_trajectory_vectors_refuse_every_non_finite_pattern():
    from swarm_sona.core.trajectory import TrajectoryError, check_vector

    for bad in ([np.inf, -np.inf], [np.nan, 1.0], [-np.inf, 0.0], [3e38, 3e38, np.nan]):
        with pytest.raises(TrajectoryError, match="NaN or inf"):
            check_vector(np.array(bad))
    big = np.full(4, 3e38, np.float32)          # finite, sums past float32 range: accepted
    assert check_vector(big).shape == (4,)
