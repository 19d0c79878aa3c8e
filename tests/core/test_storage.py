"""Checkpoint locations (swarm_sona.core.storage): round trips on a local directory, a shared
``file://`` directory and ``memory://``; a torn newest object falls back to the previous one; the
pointer is the commit (a crash between the object and the pointer leaves the previous state);
garbage collection keeps two objects."""

import os
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm_sona.core import codec, storage
from swarm_sona.core.codec import CheckpointError, CheckpointSchemaError
from swarm_sona.core.codec.frames import frame_intact


@pytest.fixture(params=["local", "file", "memory", "arrow-file", "arrow-instance"])
def where(request, tmp_path, memory_uri):
    """One checkpoint name on each kind of storage: pyarrow's through ``arrow+file://`` and through
    a registered instance (pyarrow's in-memory mock filesystem)."""
    if request.param.startswith("arrow"):
        pafs = pytest.importorskip("pyarrow.fs")
        if request.param == "arrow-instance":
            storage.register_arrow_filesystem("arrowtest", pafs._MockFileSystem())
            return "arrowtest://root/s.ckpt"
        return f"arrow+file://{tmp_path}/s.ckpt"
    return {"local": str(tmp_path / "s.ckpt"), "file": f"file://{tmp_path}/s.ckpt",
            "memory": f"{memory_uri}/s.ckpt"}[request.param]


blobs = st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=blobs)
def test_round_trip_keeps_newest_and_previous(where, seq):
    loc = storage.checkpoint_location(f"{where}.{uuid.uuid4().hex[:8]}")
    assert not loc.exists()
    for b in seq:
        loc.write(b)
    vs = loc.versions()
    assert vs[0].read() == seq[-1]
    if len(seq) > 1:
        assert vs[1].read() == seq[-2]
    assert [v.read() for v in loc.versions(previous=False)] == [seq[-1]]
    assert loc.exists()


def test_codec_round_trip_on_each_storage(where):
    codec.write_checkpoint(where, {"step": 1})
    codec.write_checkpoint(where, {"step": 2})
    r = codec.open_checkpoint(where)
    assert r.body == {"step": 2} and not r.fallback
    assert r.requested == (where if "://" in where else Path(where))
    assert codec.read_checkpoint(where, fallback=False) == {"step": 2}


def test_a_second_reader_of_a_shared_directory_sees_the_writers_state(tmp_path):
    """Two nodes on one shared directory: a reader built apart from the writer follows its pointer."""
    uri = f"file://{tmp_path}/shared/c.ckpt"
    writer = storage.checkpoint_location(uri)
    for i in range(3):
        writer.write(codec.pack_frame("checkpoint", {"i": i}))
        reader = storage.ObjectCheckpoint(uri)
        assert codec.read_checkpoint(reader.uri) == {"i": i}
    assert len(list((tmp_path / "shared" / "c.ckpt.objects").iterdir())) == 2


def _corrupt_current(loc: storage.ObjectCheckpoint, data: bytes) -> str:
    ptr = loc._pointer()
    assert ptr is not None
    loc.fs.pipe_file(loc._obj_path(ptr.current), data)
    return loc._obj_uri(ptr.current)


@pytest.mark.parametrize("damage", ["torn", "garbage", "gone"])
def test_unreadable_newest_object_falls_back_to_previous(memory_uri, damage):
    uri = f"{memory_uri}/c.ckpt"
    codec.write_checkpoint(uri, {"step": 1})
    codec.write_checkpoint(uri, {"step": 2})
    loc = storage.ObjectCheckpoint(uri)
    ptr = loc._pointer()
    full = loc.fs.cat_file(loc._obj_path(ptr.current))
    if damage == "gone":
        loc.fs.rm_file(loc._obj_path(ptr.current))
    else:
        _corrupt_current(loc, full[: len(full) // 2] if damage == "torn" else b"\x00garbage" * 9)
    r = codec.open_checkpoint(uri)
    assert r.body == {"step": 1} and r.fallback and r.requested == uri
    assert r.path == loc._obj_uri(ptr.previous) and r.refused
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        codec.read_checkpoint(uri, fallback=False)


def test_a_corrupt_newest_is_not_kept_as_previous(memory_uri):
    """Like a local .prev: the next write keeps the last intact state, not the corrupt one."""
    uri = f"{memory_uri}/c.ckpt"
    codec.write_checkpoint(uri, {"step": 1})
    codec.write_checkpoint(uri, {"step": 2})
    loc = storage.ObjectCheckpoint(uri)
    _corrupt_current(loc, b"junk")
    codec.write_checkpoint(uri, {"step": 3})
    assert [codec.open_frame(v.read()).body for v in loc.versions()] == [{"step": 3}, {"step": 1}]


class _Crash(Exception):
    pass


def test_crash_between_object_and_pointer_leaves_the_previous_state(memory_uri, monkeypatch):
    uri = f"{memory_uri}/c.ckpt"
    codec.write_checkpoint(uri, {"step": 1})
    loc = storage.ObjectCheckpoint(uri)
    real_put = storage._put

    def put(fs, path, blob):
        if path == loc.path:        # the pointer: the process dies before it is written
            raise _Crash
        real_put(fs, path, blob)

    monkeypatch.setattr(storage, "_put", put)
    with pytest.raises(_Crash):
        codec.write_checkpoint(uri, {"step": 2})
    monkeypatch.setattr(storage, "_put", real_put)
    assert len(loc.objects()) == 2                        # the new object is there, whole...
    r = codec.open_checkpoint(uri)
    assert r.body == {"step": 1} and not r.fallback       # ...but not committed: the reader sees step 1
    codec.write_checkpoint(uri, {"step": 3})              # the next write collects the orphan
    bodies = [codec.open_frame(v.read()).body for v in loc.versions()]
    assert bodies == [{"step": 3}, {"step": 1}] and len(loc.objects()) == 2


def test_crash_before_the_first_pointer_means_no_checkpoint(memory_uri, monkeypatch):
    uri = f"{memory_uri}/c.ckpt"
    loc = storage.ObjectCheckpoint(uri)
    real_put = storage._put
    monkeypatch.setattr(storage, "_put", lambda fs, path, blob: (_ for _ in ()).throw(_Crash)
                        if path == loc.path else real_put(fs, path, blob))
    with pytest.raises(_Crash):
        codec.write_checkpoint(uri, {"step": 1})
    assert not loc.exists() and loc.objects()
    with pytest.raises(CheckpointError, match="missing"):
        codec.read_checkpoint(uri)


def test_local_crash_before_the_rename_leaves_the_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "c.ckpt"
    codec.write_checkpoint(p, {"step": 1})
    real = os.replace

    def replace(src, dst):
        if str(dst) == str(p):
            raise _Crash
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(_Crash):
        codec.write_checkpoint(p, {"step": 2})
    monkeypatch.setattr(os, "replace", real)
    assert codec.read_checkpoint(p.with_name("c.ckpt.prev")) == {"step": 1}
    assert codec.read_checkpoint(p) == {"step": 1}                 # via .prev: nothing half-written
    assert not [f for f in tmp_path.iterdir() if f.suffix == ".tmp"]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_garbage_collection_keeps_the_last_two(memory_uri, n):
    uri = f"{memory_uri}/c.ckpt"
    for i in range(n):
        codec.write_checkpoint(uri, {"i": i})
    loc = storage.ObjectCheckpoint(uri)
    objs = loc.objects()
    assert len(objs) == min(n, 2)
    ptr = loc._pointer()
    assert set(objs) == {ptr.current, *([ptr.previous] if ptr.previous else [])}
    assert [codec.open_frame(v.read()).body["i"] for v in loc.versions()] == list(range(n - 1, max(-1, n - 3), -1))


def test_torn_pointer_falls_back_to_the_newest_objects(memory_uri):
    uri = f"{memory_uri}/c.ckpt"
    for i in range(3):
        codec.write_checkpoint(uri, {"i": i})
    loc = storage.ObjectCheckpoint(uri)
    loc.fs.pipe_file(loc.path, loc.fs.cat_file(loc.path)[:10])
    assert codec.read_checkpoint(uri) == {"i": 2}
    codec.write_checkpoint(uri, {"i": 3})                  # a fresh pointer is written
    assert codec.read_checkpoint(uri) == {"i": 3} and len(loc.objects()) <= 2


def test_roll_back_restores_the_previous(where):
    loc = storage.checkpoint_location(where)
    loc.write(b"one")
    loc.write(b"two")
    loc.roll_back()
    assert [v.read() for v in loc.versions(previous=False)] == [b"one"]
    loc.roll_back()
    assert not loc.exists()


def test_a_newer_schema_is_refused_without_fallback(memory_uri):
    uri = f"{memory_uri}/c.ckpt"
    codec.write_checkpoint(uri, {"step": 1})
    loc = storage.checkpoint_location(uri)
    loc.write(codec.pack_frame("storage-test-kind", {"x": 1}, version=99), intact=frame_intact)
    with pytest.raises(CheckpointSchemaError):
        codec.read_checkpoint(uri, kind="storage-test-kind")


def test_join_and_is_uri():
    assert storage.join("memory://a/", "b", "c") == "memory://a/b/c"
    assert str(storage.join("/x", "b")) == "/x/b"
    assert storage.is_uri("s3://b/k") and not storage.is_uri("C:\\x") and not storage.is_uri("rel/x")


def test_unknown_scheme_and_missing_fsspec_are_named(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown storage scheme 'nosuch'"):
        storage.checkpoint_location("nosuch://x/c")
    monkeypatch.setitem(sys.modules, "fsspec", None)      # fsspec not installed
    with pytest.raises(storage.StorageUnavailable, match=r"pip install 'swarm-sona\[storage\]'"):
        codec.write_checkpoint("memory://x/c", {"a": 1})
    codec.write_checkpoint(str(tmp_path / "c"), {"a": 1})   # a local path needs no fsspec
    assert codec.read_checkpoint(str(tmp_path / "c")) == {"a": 1}
    with pytest.raises(ValueError, match="not a storage URI"):
        storage.object_dir("/tmp/x")


def test_object_dir_round_trip(memory_uri):
    d = storage.object_dir(f"{memory_uri}/log")
    assert d.names() == []
    d.put("0002-b", b"y")
    d.put("0001-a", b"x")
    assert d.names() == ["0001-a", "0002-b"] and d.get("0001-a") == b"x"
    d.delete("0001-a")
    d.delete("0001-a")
    assert d.names() == ["0002-b"]
    with pytest.raises(FileNotFoundError):
        d.get("0001-a")


def test_bank_snapshot_round_trips_at_a_uri(memory_uri):
    import numpy as np

    from swarm_sona.bank.snapshot import read_snapshot, write_snapshot

    V = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert write_snapshot(f"{memory_uri}/bank.snapshot", "hash", 4, ["p1", "p2"], V, [{"a": 1}, {"a": 2}]) == 2
    snap = read_snapshot(f"{memory_uri}/bank.snapshot", "hash", 4)
    assert snap.ids == ["p1", "p2"] and np.array_equal(snap.vectors, V) and snap.payloads[1] == {"a": 2}


def test_a_registered_filesystem_serves_its_scheme_and_bad_registrations_are_named(memory_uri):
    import fsspec

    mem = fsspec.filesystem("memory")
    root = memory_uri[len("memory://"):]
    storage.register_filesystem("regtest", lambda uri: (mem, f"{root}/{uri[len('regtest://'):]}"))
    storage.check_location("regtest://a/c")   # a registered scheme is known
    codec.write_checkpoint("regtest://a/c", {"a": 1})
    assert codec.read_checkpoint("regtest://a/c") == {"a": 1}
    assert mem.exists(f"{root}/a/c")
    for bad, err in (("x", ValueError), ("arrow+s3", ValueError), ("a b", ValueError)):
        with pytest.raises(err, match="scheme"):
            storage.register_filesystem(bad, lambda uri: (mem, uri))
    with pytest.raises(TypeError, match="callable"):
        storage.register_filesystem("okname", "not a factory")


def test_pyarrow_filesystems_are_named_when_wrong():
    pytest.importorskip("pyarrow.fs")
    with pytest.raises(TypeError, match="pyarrow.fs.FileSystem"):
        storage.register_arrow_filesystem("arrowbad", object())
    with pytest.raises(ValueError, match="pyarrow cannot open it"):
        storage.checkpoint_location("arrow+nosuchscheme://x/c").write(b"x")


def test_a_pyarrow_checkpoint_is_an_object_checkpoint_with_its_pointer(tmp_path):
    pytest.importorskip("pyarrow.fs")
    loc = storage.checkpoint_location(f"arrow+file://{tmp_path}/c.ckpt")
    assert isinstance(loc, storage.ObjectCheckpoint)
    for b in (b"1", b"2", b"3"):
        loc.write(b)
    assert [v.read() for v in loc.versions()] == [b"3", b"2"]
    assert (tmp_path / "c.ckpt").is_file() and len(list((tmp_path / "c.ckpt.objects").iterdir())) == 2
