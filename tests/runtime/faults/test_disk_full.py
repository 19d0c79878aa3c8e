"""Disk full, on a real full filesystem: a small tmpfs mounted in a user + mount namespace.

No loop device and no privilege: ``unshare -rm`` starts a process in a namespace of its own,
mounts a tmpfs of a few MiB there and sleeps; every other process (this test, Ray's actors)
reaches that tmpfs as ``/proc/<pid>/root/<mountpoint>`` (the sleeper's view of the tree), so the
writes of the code under test get a real ``ENOSPC`` from the kernel, with nothing injected.
The tests are skipped where user namespaces are not allowed.

* An agent on Ray whose periodic checkpoint hits ENOSPC: its previous checkpoint stays valid,
  it keeps running (same process, every task of the batch back), and the warning naming the
  file reaches the driver; once space is freed the next checkpoint is written.
* The bank's store hitting ENOSPC (``ReasoningBank.store_many``, in a child process so that a
  crash of the store is observed rather than suffered): the call fails with an exception naming
  the bank's path and "no space", every pattern acknowledged before is still there, and the bank
  reopens and takes writes once space is freed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarm_sona.core import codec

ROOT = Path(__file__).parents[3]


@dataclass
class SmallFS:
    """A tmpfs of ``size`` bytes reachable at ``path`` (through the namespace's holder process)."""

    path: Path
    holder: subprocess.Popen[bytes]
    filler: Path

    def fill(self, leave: int = 0) -> int:
        """Fill the filesystem (a filler file written until ENOSPC), then give back ``leave`` bytes;
        returns the bytes written."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        n = os.fstat(fd).st_size
        chunk = b"\0" * 65536
        try:
            while True:
                try:
                    n += os.write(fd, chunk)
                except OSError:
                    if len(chunk) == 4096:
                        break
                    chunk = chunk[:4096]
            os.ftruncate(fd, max(0, n - leave))
        finally:
            os.close(fd)
        return n

    def free(self) -> None:
        """Give all the filler's space back."""
        self.filler.unlink(missing_ok=True)


@contextmanager
def small_fs(where: Path, size: str) -> Iterator[SmallFS]:
    """A tmpfs of ``size`` (``mount -o size=``) in a namespace of its own, reachable from here;
    skips the test where user namespaces (or ``unshare``) are not available."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    mnt = where / "mnt"
    mnt.mkdir(parents=True)
    holder = subprocess.Popen(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {mnt} "
                               f"&& echo ready && exec sleep 600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != b"ready":
            holder.wait(timeout=10)
            pytest.skip(f"cannot mount a tmpfs in a user namespace: {holder.stderr.read().decode()[:200]}"
                        if holder.stderr else "cannot mount a tmpfs in a user namespace")
        path = Path(f"/proc/{holder.pid}/root") / str(mnt).lstrip("/")
        st = os.statvfs(path)
        assert st.f_blocks * st.f_frsize <= 256 << 20, "not the small tmpfs"
        yield SmallFS(path, holder, path / "filler")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)


def _agent_meta(d: Path, agent: str) -> dict:
    return codec.read_checkpoint(d / agent / "meta.msgpack", kind="agent-meta", fallback=False)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_agent_checkpoint_on_a_full_disk_keeps_the_previous_one_and_the_agent_running(tmp_path, fault_case):
    fault_case.fault = "disk full: agent checkpoint (Ray, tmpfs)"
    from swarm_sona.engine.sona import SONA
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmSONA

    ex = SimulatedExecutor(seed=21)
    agents = [{"id": f"agent-{i}", "type": "worker"} for i in range(2)]
    with small_fs(tmp_path, "24m") as fs:
        ckpt = fs.path / "ckpt"
        with SwarmSONA(agents=agents, executor=ex, sync_every=10**6, batch_size=50, checkpoint_every=100,
                       checkpoint_dir=str(ckpt), bank={"enabled": False}, max_restarts=0) as sw:
            assert len(list(sw.run(ex.tasks(400, seed=22), progress=False))) == 400
            pids = {a: s["pid"] for a, s in sw.stats()["agents"].items()}
            before = {a: _agent_meta(ckpt, a)["tasks_done"] for a in sw.agents}
            assert all(before.values())
            fs.fill()
            res = list(sw.run(ex.tasks(400, seed=23), progress=False))         # every batch checkpoints: ENOSPC
            st = sw.stats()
            full = [w for w in sw.warnings if "checkpoint not written" in w]
            assert len(res) == 400 and not any("error" in r for r in res)   # every task of every batch back
            assert {a: s["pid"] for a, s in st["agents"].items()} == pids    # the same processes: kept running
            for a in sw.agents:                                              # the warning names the file
                assert any(w.startswith(f"agent {a}:") and "No space left on device" in w
                           and f"{a}/engine.ckpt" in w for w in full), full
                assert _agent_meta(ckpt, a)["tasks_done"] == before[a]      # the previous checkpoint, intact
                SONA.load(ckpt / a / "engine.ckpt")
                assert not list((ckpt / a).glob(".*.tmp"))                  # no temp file left behind
            fs.free()
            n_warn = len(full)
            list(sw.run(ex.tasks(400, seed=24), progress=False))
            after = {a: _agent_meta(ckpt, a)["tasks_done"] for a in sw.agents}
            assert all(after[a] > before[a] for a in sw.agents)              # written again once there is room
            assert len([w for w in sw.warnings if "checkpoint not written" in w]) == n_warn
    fault_case.acknowledged = fault_case.found = len(before)   # the checkpoints written before the disk filled
    fault_case.notes.append(f"{len(full)} failed checkpoint writes warned at the driver")


def test_a_meta_write_on_a_full_disk_rolls_the_engine_back_so_engine_and_meta_stay_one_checkpoint(tmp_path,
                                                                                                  fault_case):
    fault_case.fault = "disk full: agent meta write after its engine file (tmpfs)"
    from swarm_sona.engine.state import CHECKPOINT_KIND, state_dict
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.actors.agent import AgentActor

    ex = SimulatedExecutor(seed=41)
    cfg = {"dim": 32, "mlp_hidden": 16, "llm_router": {"models": ex.model_specs()}}
    with small_fs(tmp_path, "8m") as fs:
        a = AgentActor("a", cfg, ex, checkpoint_dir=str(fs.path), checkpoint_every=10**6)
        a.run_batch(ex.tasks(40, seed=42))
        a.checkpoint()                                   # the checkpoint that must survive
        d = fs.path / "a"
        engine, meta = (d / "engine.ckpt").read_bytes(), (d / "meta.msgpack").read_bytes()
        a.run_batch(ex.tasks(40, seed=43))
        blob = codec.pack_frame(CHECKPOINT_KIND, state_dict(a.sona))
        fs.fill(leave=-(-len(blob) // 4096) * 4096)     # room for the new engine file, none for the meta
        with pytest.raises(OSError, match="No space left on device") as err:
            a.checkpoint()
        assert str(err.value.filename).endswith("a/meta.msgpack")   # the engine file was written, the meta not
        assert (d / "engine.ckpt").read_bytes() == engine and (d / "meta.msgpack").read_bytes() == meta
        assert not list(d.glob(".*.tmp"))
        fs.free()
        again = AgentActor("a", cfg, ex, checkpoint_dir=str(fs.path))
        assert again.tasks_done == 40 and again.sona.n_learned == a.sona.n_learned - 40   # one checkpoint
    fault_case.acknowledged = fault_case.found = 1


# ---- the bank --------------------------------------------------------------------------------------
_BANK_CHILD = textwrap.dedent('''
    import json, os, sys
    from swarm_sona.bank import ReasoningBank

    path, stage = sys.argv[1], sys.argv[2]
    def out(**kw):
        print(json.dumps(kw), flush=True)
    def items(tag, n, size=16):
        return [{"task": f"{tag} task {i}", "output": "o" * size, "reward": 0.9, "success": True} for i in range(n)]
    bank = ReasoningBank({"path": path}, embedder="hashing-v1-32")
    if stage == "fill":
        out(acked=bank.store_many(items("before", 60), durable=True))
        out(acked=[bank.store_pattern("one more task", "", "o", 0.9, True)])
        bank.flush()
        out(ready=True)
        sys.stdin.readline()                       # the parent fills the disk now
        for attempt in range(3):
            try:
                ids = bank.store_many(items(f"full {attempt}", 400, 4096), durable=True)
            except Exception as exc:
                out(error=type(exc).__name__, message=str(exc))
            else:
                out(stored_while_full=len(ids))
        out(count=bank.count())
    else:
        acked = json.loads(sys.stdin.readline())
        found = [p for p in acked if bank.get(p) is not None]
        new = bank.store_many(items("after", 50), durable=True)
        bank.close()
        bank = ReasoningBank({"path": path}, embedder="hashing-v1-32")
        out(found=len(found), new_found=sum(bank.get(p) is not None for p in new), count=bank.count())
    bank.close()
''')


@dataclass
class BankOnFullDisk:
    """What the bank scenario saw: the ids acknowledged before the disk filled, the child's
    lines while it was full, how it ended, and the reopen after space was freed."""

    acked: list[str]
    while_full: list[dict]
    returncode: int
    reopened: dict


def _bank_on_full_disk(tmp_path: Path) -> tuple[BankOnFullDisk, Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with small_fs(tmp_path, "160m") as fs:   # Qdrant Edge needs ~60 MiB free to open a bank
        bank = fs.path / "bank"
        child = subprocess.Popen([sys.executable, "-c", _BANK_CHILD, str(bank), "fill"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        assert child.stdin is not None and child.stdout is not None
        acked: list[str] = []
        while True:
            line = json.loads(child.stdout.readline())
            if line.get("ready"):
                break
            acked += line["acked"]
        fs.fill()
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=120)
        while_full = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
        fs.free()
        st = os.statvfs(fs.path)
        print(f"store process exit {child.returncode}; {len(while_full)} lines while full; "
              f"{st.f_bavail * st.f_frsize >> 20} MiB free after the filler went; {err[-300:]}")
        again = subprocess.run([sys.executable, "-c", _BANK_CHILD, str(bank), "reopen"], input=json.dumps(acked) + "\n",
                               capture_output=True, text=True, env=env, timeout=120)
        assert again.returncode == 0, again.stderr[-2000:]
        return BankOnFullDisk(acked, while_full, child.returncode, json.loads(again.stdout.splitlines()[-1])), bank


def test_bank_on_a_full_disk_loses_nothing_acknowledged_and_reopens_once_space_is_freed(tmp_path, fault_case):
    fault_case.fault = "disk full: bank store (tmpfs)"
    got, _ = _bank_on_full_disk(tmp_path)
    fault_case.acknowledged, fault_case.found = len(got.acked), got.reopened["found"]
    fault_case.notes.append(f"store process exit {got.returncode}" + (" (killed by a signal)" if got.returncode < 0 else ""))
    assert len(got.acked) == 61 and got.reopened["found"] == 61            # 0 acknowledged patterns lost
    assert got.reopened["new_found"] == 50                                  # takes writes again once freed


def test_bank_store_on_a_full_disk_fails_with_a_clear_error_naming_the_path(tmp_path, fault_case):
    fault_case.fault = "disk full: bank store error is clear (tmpfs)"
    got, bank = _bank_on_full_disk(tmp_path)
    fault_case.bad_inputs = 3
    errors = [ln for ln in got.while_full if "error" in ln]
    clear = [e for e in errors if "no space" in e["message"].lower() and str(bank) in e["message"]]
    fault_case.refused = len(clear)
    fault_case.notes.append(f"store process exit {got.returncode}; errors: {[e['message'][:80] for e in errors]}")
    assert len(errors) == 3 and got.while_full[-1]["count"] == 61            # nothing half-stored while full
    assert len(clear) == 3, errors                                          # "no space", naming the bank's path
    assert got.returncode == 0, f"the bank's process died or its close failed (exit {got.returncode})"
