"""Versioned formats with migration (codec schema registry, open_checkpoint, migrate_path, swarm-sona migrate).

tests/data/schema1 holds state written by swarm_sona 0.1.0 (schema 1 everywhere); it is copied
to tmp_path before anything is opened. Schema bumps are registered only for test kinds, inside
``codec.schema_registry()`` (restored afterwards).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from swarm_sona.app.cli import COMMANDS, main
from swarm_sona.core import codec
from swarm_sona.core.codec import CheckpointError, CheckpointSchemaError, CodecError, SchemaError
from swarm_sona.core.codec.frames import open_envelope
from swarm_sona.engine.sona import CHECKPOINT_KIND as ENGINE_KIND
from swarm_sona.engine.sona import SONA
from swarm_sona.runtime.actors.coordinator import _CKPT_KIND as _COORD_KIND
from swarm_sona.runtime.actors.schema import AGENT_META_KIND as META_KIND

SCHEMA1 = Path(__file__).parents[1] / "data" / "schema1"
KIND = "test-migrate-kind"


@pytest.fixture
def registry():
    with codec.schema_registry():
        yield


@pytest.fixture
def schema1(tmp_path):
    dest = tmp_path / "schema1"
    shutil.copytree(SCHEMA1, dest)
    return dest


def _kind_of(name: str) -> str:
    base = name.removesuffix(".prev")
    return {"swarm.msgpack": "swarm", "meta.msgpack": META_KIND, "coordinator.coord.msgpack": _COORD_KIND,
            "engine.ckpt": ENGINE_KIND}[base]


def _frames(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.read_bytes()[:4] == b"SSNA")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _v2(body):  # test migration 1 -> 2: "w" renamed "weights"
    body["weights"] = body.pop("w")
    return body


def _v3(body):  # 2 -> 3: a new field with its default
    body.setdefault("scale", 1.0)
    return body


def _at_v3():
    codec.register_schema(KIND, 3)
    codec.register_migration(KIND, 1)(_v2)
    codec.register_migration(KIND, 2)(_v3)


# ---- (1) schema-1 state written by 0.1.0 opens with the current code --------------------------
def test_every_schema1_frame_opens(schema1):
    frames = _frames(schema1)
    assert len(frames) == 12
    upgraded = {META_KIND, _COORD_KIND, ENGINE_KIND}   # schema 2: router evidence; the engine's quantised base
    for p in frames:
        r = codec.open_checkpoint(p, kind=_kind_of(p.name), fallback=False)
        assert (r.path, r.schema, r.version, r.migrated, r.fallback) == (
            p, 1, codec.schema_version(r.kind), r.kind in upgraded, False)
        assert isinstance(r.body, dict) and r.body
        assert codec.read_checkpoint(p, kind=_kind_of(p.name), fallback=False).keys() == r.body.keys()
    assert codec.schema_version(META_KIND) == codec.schema_version(_COORD_KIND) == codec.schema_version(ENGINE_KIND) == 2
    meta = codec.read_checkpoint(schema1 / "swarm" / "agent-0" / "meta.msgpack", kind=META_KIND)
    assert meta["id"] and int(meta["seq"]) >= 0
    assert "router/eta" in meta["pushed"] and "router/weights" not in meta["pushed"]
    coord = codec.read_checkpoint(schema1 / "swarm" / "coordinator.coord.msgpack", kind=_COORD_KIND)
    merged = coord["book"]["merged"]
    assert "router/weights" not in merged and merged["router/calls"].tolist() == [0.0, 0.0, 0.0]
    old = codec.open_frame((schema1 / "swarm" / "coordinator.coord.msgpack").read_bytes(), versions=(1,)).body
    np.testing.assert_allclose(merged["router/eta"] / merged["router/precision"],
                               old["book"]["merged"]["router/weights"])   # the same posterior mean
    assert "config" in codec.read_checkpoint(schema1 / "swarm" / "swarm.msgpack", kind="swarm")


def test_schema1_engine_loads_and_routes(schema1):
    s = SONA.load(schema1 / "engine.ckpt")
    d = s.route("implement a parser")
    assert d["model"] in {"small", "large"}


def test_schema1_prev_fallback_is_visible(schema1):
    main_p = schema1 / "swarm" / "agent-0" / "meta.msgpack"
    data = bytearray(main_p.read_bytes())
    data[-3] ^= 0xFF
    main_p.write_bytes(bytes(data))
    r = codec.open_checkpoint(main_p, kind=META_KIND)
    assert r.fallback and r.path == main_p.with_name("meta.msgpack.prev") and r.requested == main_p
    assert "checksum" in r.refused[0]
    with pytest.raises(CheckpointError, match="checksum"):
        codec.open_checkpoint(main_p, kind=META_KIND, fallback=False)


# ---- (2) registry: upgrade on read, newer refused, missing step named ---------------------------
def test_registry_defaults_and_restore():
    assert codec.schema_version(KIND) == codec.SCHEMA_VERSION == 1
    with codec.schema_registry():
        _at_v3()
        assert codec.schema_version(KIND) == 3
        _, version, _ = open_envelope(codec.pack_frame(KIND, {}))
        assert version == 3
        with pytest.raises(ValueError, match="already registered"):
            codec.register_migration(KIND, 1)(_v3)
        codec.register_migration(KIND, 1)(_v2)  # the same function again: fine
    assert codec.schema_version(KIND) == 1
    assert codec.migration(KIND, 1) is None
    assert codec.schema_version(ENGINE_KIND) == 2  # built-in kinds survive the restore
    for bad in (0, -1, True, "2", 1.0):
        with pytest.raises(ValueError):
            codec.register_schema(KIND, bad)
    with pytest.raises(ValueError):
        codec.register_schema("", 2)


def test_old_frame_upgraded_on_read(registry, tmp_path):
    old = codec.pack_frame(KIND, {"w": np.arange(3.0)})  # written while KIND is at 1
    p = tmp_path / "x.ckpt"
    codec.write_checkpoint(p, {"w": np.ones(2)}, kind=KIND)
    _at_v3()
    kind, body = codec.unpack_frame(old, expect_kind=KIND)
    assert kind == KIND and sorted(body) == ["scale", "weights"] and body["weights"].tolist() == [0.0, 1.0, 2.0]
    f = codec.open_frame(old)
    assert (f.schema, f.version, f.migrated) == (1, 3, True)
    r = codec.open_checkpoint(p, kind=KIND)
    assert (r.path, r.schema, r.version, r.migrated, r.fallback) == (p, 1, 3, True, False)
    assert r.body["weights"].tolist() == [1.0, 1.0] and r.body["scale"] == 1.0
    assert codec.read_checkpoint(p, kind=KIND)["scale"] == 1.0
    # from schema 2 only the last step runs
    mid = codec.pack_frame(KIND, {"weights": [5]}, version=2)
    assert codec.unpack_frame(mid)[1] == {"weights": [5], "scale": 1.0}
    # a fresh write is at 3 and reads back unmigrated
    codec.write_checkpoint(p, r.body, kind=KIND)
    r2 = codec.open_checkpoint(p, kind=KIND)
    assert (r2.schema, r2.migrated) == (3, False)


def test_newer_frame_refused_with_clear_message(registry, tmp_path):
    _at_v3()
    future = codec.pack_frame(KIND, {"weights": []}, version=4)
    with pytest.raises(SchemaError, match="written by a newer swarm_sona: schema 4, this one reads up to 3"):
        codec.unpack_frame(future)
    # a newer checkpoint is refused even though a valid .prev exists: no silent rollback
    p = tmp_path / "x.ckpt"
    codec.write_checkpoint(p, {"weights": [], "scale": 2.0}, kind=KIND)
    p.with_name("x.ckpt.prev").write_bytes(p.read_bytes())
    p.write_bytes(future)
    with pytest.raises(CheckpointSchemaError, match="newer swarm_sona: schema 4") as ei:
        codec.read_checkpoint(p, kind=KIND)
    assert isinstance(ei.value, CheckpointError) and isinstance(ei.value, SchemaError)


def test_missing_step_refused_naming_it(registry):
    old = codec.pack_frame(KIND, {"w": [1]})
    codec.register_schema(KIND, 3)
    codec.register_migration(KIND, 1)(_v2)  # 2 -> 3 missing
    with pytest.raises(SchemaError, match=r"no migration from schema 2 to 3 registered \(register_migration\("):
        codec.unpack_frame(old)


def test_failing_migration_reported(registry, tmp_path):
    codec.register_schema(KIND, 2)
    codec.register_migration(KIND, 1)(_v2)
    bad = codec.pack_frame(KIND, {"no_w": 1}, version=1)
    with pytest.raises(SchemaError, match="from schema 1 to 2 failed: KeyError"):
        codec.unpack_frame(bad)


def test_wire_frames_follow_the_same_rules(registry):
    """A wire message (bytes in, bytes out) migrates and refuses exactly like a file."""
    from swarm_sona.consensus.messages import MessageError, decode_delta

    wire = codec.pack_frame(KIND, {"w": [1.0]})
    codec.register_schema(KIND, 2)
    codec.register_migration(KIND, 1)(_v2)
    assert codec.unpack_frame(bytearray(wire), expect_kind=KIND)[1] == {"weights": [1.0]}
    assert codec.unpack_frame(memoryview(codec.pack_frame(KIND, {"weights": [2.0]})))[1] == {"weights": [2.0]}
    with pytest.raises(SchemaError, match="newer swarm_sona: schema 3, this one reads up to 2"):
        codec.unpack_frame(codec.pack_frame(KIND, {}, version=3))
    # messages.py pins its wire schema with versions=: the allow-list keeps working, without migration
    assert codec.unpack_frame(wire, versions=(1,))[1] == {"w": [1.0]}
    with pytest.raises(SchemaError, match=r"unsupported schema version 2 of a .* \(supported: \[1\]\)"):
        codec.unpack_frame(codec.pack_frame(KIND, {}), versions=(1,))
    with pytest.raises(MessageError, match="written by a newer swarm_sona: schema 99"):
        decode_delta(codec.pack_frame("delta", {"agent_id": "w1"}, version=99))


def test_envelope_schema_must_be_a_positive_int():
    import msgpack

    for schema in (0, "1", True, None):
        payload = msgpack.packb({"kind": "k", "schema": schema, "body": {}})
        import zlib

        blob = b"SSNA" + zlib.crc32(payload).to_bytes(4, "little") + len(payload).to_bytes(8, "little") + payload
        with pytest.raises(CodecError, match="malformed frame envelope"):
            codec.unpack_frame(blob)


# ---- (3) migrate_path -----------------------------------------------------------------------
def _tree(root: Path) -> Path:
    """A checkpoint dir: test-kind files at schema 1 (main + .prev, nested), the schema-1 swarm
    state (current), a non-frame file named like a checkpoint and one not."""
    codec.write_checkpoint(root / "a.ckpt", {"w": [1]}, kind=KIND)
    codec.write_checkpoint(root / "a.ckpt", {"w": [2]}, kind=KIND)  # a.ckpt.prev holds w=[1]
    codec.write_checkpoint(root / "deep" / "er" / "b.msgpack", {"w": [3]}, kind=KIND)
    (root / "a.ckpt").chmod(0o644)
    # the schema-1 swarm files whose kinds are still at schema 1 (agent metas and the coordinator
    # moved to schema 2 with the router-evidence change, the agents' engines with the quantised
    # base: test_schema1_router_kinds_upgrade)
    shutil.copytree(SCHEMA1 / "swarm", root / "swarm",
                    ignore=shutil.ignore_patterns("meta.msgpack*", "coordinator.coord.msgpack*", "engine.ckpt*"))
    (root / "notes.txt").write_text("not a frame")
    return root


def test_migrate_path_upgrades_in_place_with_backups_and_is_idempotent(registry, tmp_path):
    root = _tree(tmp_path / "ckpt")
    (root / "junk.msgpack").write_bytes(b"\x93\x01\x02\x03")  # msgpack, not a frame: reported skipped
    before = _snapshot(root)
    codec.register_schema(KIND, 2)
    codec.register_migration(KIND, 1)(_v2)
    results = {str(r.path.relative_to(root)): r for r in codec.migrate_path(root)}
    upgraded = {k for k, r in results.items() if r.action == "upgraded"}
    assert upgraded == {"a.ckpt", "a.ckpt.prev", "deep/er/b.msgpack"}
    assert {k for k, r in results.items() if r.action == "current"} == {
        str(p.relative_to(root)) for p in _frames(root / "swarm")}
    assert results["junk.msgpack"].action == "skipped" and "notes.txt" not in results
    for name in upgraded:
        r = results[name]
        assert (r.kind, r.from_version, r.to_version) == (KIND, 1, 2)
        assert r.backup == root / f"{name}.schema1.bak" and r.backup.read_bytes() == before[name]
        assert codec.open_frame((root / name).read_bytes()).schema == 2
    # the .prev was upgraded on its own, not replaced by the old main file
    assert codec.read_checkpoint(root / "a.ckpt.prev", kind=KIND, fallback=False) == {"weights": [1]}
    r = codec.open_checkpoint(root / "a.ckpt", kind=KIND)
    assert r.body == {"weights": [2]} and (r.schema, r.migrated) == (2, False)
    assert (root / "a.ckpt").stat().st_mode & 0o777 == 0o644
    assert not list(root.rglob("*.tmp"))
    for name, data in before.items():  # everything else byte-identical
        if name not in upgraded:
            assert (root / name).read_bytes() == data, name
    after = _snapshot(root)
    again = codec.migrate_path(root)
    assert {r.action for r in again} == {"current", "skipped"}
    assert [r for r in again if r.action == "skipped"] == [results["junk.msgpack"]]
    assert _snapshot(root) == after


def test_migrate_path_corrupt_newer_and_dry_run_change_nothing(registry, tmp_path):
    root = _tree(tmp_path / "ckpt")
    corrupt = root / "c.ckpt"
    codec.write_checkpoint(corrupt, {"w": [9]}, kind=KIND)
    data = bytearray(corrupt.read_bytes())
    data[-2] ^= 0x55
    corrupt.write_bytes(bytes(data))
    (root / "future.ckpt").write_bytes(codec.pack_frame(KIND, {}, version=7))
    codec.register_schema(KIND, 2)
    codec.register_migration(KIND, 1)(_v2)
    before = _snapshot(root)
    dry = {r.path.name: r for r in codec.migrate_path(root, dry_run=True)}
    assert _snapshot(root) == before
    assert dry["a.ckpt"].action == "would-upgrade" and not dry["a.ckpt"].backup.exists()
    assert dry["c.ckpt"].action == "error" and "checksum" in dry["c.ckpt"].reason
    assert dry["future.ckpt"].action == "error" and "newer swarm_sona: schema 7" in dry["future.ckpt"].reason
    res = {r.path.name: r for r in codec.migrate_path(root)}
    assert res["a.ckpt"].action == "upgraded" and res["c.ckpt"].action == "error" and not res["c.ckpt"].ok
    assert corrupt.read_bytes() == before["c.ckpt"] and not (root / "c.ckpt.schema1.bak").exists()
    assert (root / "future.ckpt").read_bytes() == before["future.ckpt"]
    # a single file; a missing path
    single = codec.migrate_path(root / "deep" / "er" / "b.msgpack")
    assert [r.action for r in single] == ["current"]
    assert [r.action for r in codec.migrate_path(root / "notes.txt")] == ["skipped"]
    with pytest.raises(FileNotFoundError):
        codec.migrate_path(root / "nope")


def test_migrate_path_refuses_to_overwrite_a_different_backup(registry, tmp_path):
    p = tmp_path / "a.ckpt"
    codec.write_checkpoint(p, {"w": [1]}, kind=KIND)
    original = p.read_bytes()
    p.with_name("a.ckpt.schema1.bak").write_bytes(b"someone else's backup")
    codec.register_schema(KIND, 2)
    codec.register_migration(KIND, 1)(_v2)
    (r,) = codec.migrate_path(p)
    assert r.action == "error" and "already exists" in r.reason and p.read_bytes() == original


def test_schema1_router_kinds_upgrade_in_place_and_the_rest_stays(schema1):
    before = _snapshot(schema1)
    results = codec.migrate_path(schema1)
    assert len(results) == 12
    assert {r.kind for r in results} == {"swarm", META_KIND, _COORD_KIND, ENGINE_KIND}
    up = {str(r.path.relative_to(schema1)) for r in results if r.action == "upgraded"}
    assert up == {"swarm/agent-0/meta.msgpack", "swarm/agent-0/meta.msgpack.prev", "swarm/agent-1/meta.msgpack",
                  "swarm/agent-1/meta.msgpack.prev", "swarm/coordinator.coord.msgpack",
                  "swarm/coordinator.coord.msgpack.prev", "engine.ckpt",
                  "swarm/agent-0/engine.ckpt", "swarm/agent-0/engine.ckpt.prev",
                  "swarm/agent-1/engine.ckpt", "swarm/agent-1/engine.ckpt.prev"}
    assert all(r.action == "current" for r in results if str(r.path.relative_to(schema1)) not in up)
    for name, data in before.items():
        if name not in up and not name.endswith(".bak"):
            assert (schema1 / name).read_bytes() == data, name
    assert {r.action for r in codec.migrate_path(schema1) if not r.path.name.endswith(".bak")} == {"current"}


# ---- (4) swarm-sona migrate ------------------------------------------------------------------
def test_cli_migrate_exit_codes_and_json(registry, tmp_path, capsys):
    assert "migrate" in COMMANDS
    root = _tree(tmp_path / "ckpt")
    codec.register_schema(KIND, 2)
    codec.register_migration(KIND, 1)(_v2)
    before = _snapshot(root)

    assert main(["migrate", str(root), "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema_version"] == 1 and out["dry_run"] is True and out["ok"] is True
    assert out["counts"]["would-upgrade"] == 3 and out["counts"]["error"] == 0
    assert {f["path"] for f in out["files"] if f["action"] == "would-upgrade"} == {
        "a.ckpt", "a.ckpt.prev", "deep/er/b.msgpack"}
    assert _snapshot(root) == before

    assert main(["migrate", str(root)]) == 0
    text = capsys.readouterr().out
    assert "upgraded       a.ckpt  test-migrate-kind  schema 1 -> 2  (backup a.ckpt.schema1.bak)" in text
    assert text.splitlines()[-1].startswith(f"{len(out['files'])} files: 3 upgraded")

    assert main(["migrate", str(root), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {f["action"] for f in again["files"]} == {"current"}

    (root / "bad.ckpt").write_bytes(b"SSNA" + b"\x00" * 20)
    assert main(["migrate", str(root), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    (bad,) = [f for f in out["files"] if f["action"] == "error"]
    assert bad["path"] == "bad.ckpt" and "truncated" in bad["reason"] and out["ok"] is False

    assert main(["migrate", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swarm-sona migrate: error: no such file") and err.count("\n") == 1
