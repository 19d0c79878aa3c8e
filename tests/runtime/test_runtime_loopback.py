"""A local run listens on loopback only, joins a cluster only when told to, and leaves nothing behind.

The end-to-end test builds a machine with a real default route inside a network namespace
of its own (a veth pair with 198.51.100.7, a documentation-range address, and a default route
through it), starts a swarm there from a driver script that did *not* export
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, lists every listening socket of the namespace, then
SIGKILLs the driver and finds no process of that run left.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from swarm_sona.runtime import startup
from swarm_sona.runtime.listeners import Listener, exposed, listeners
from swarm_sona.runtime.processes import process, ray_descendants

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def _bound(family: int, kind: int, host: str) -> socket.socket:
    s = socket.socket(family, kind)
    s.bind((host, 0))
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s


def test_listeners_reads_tcp_udp_v4_v6_of_a_process():
    socks = [_bound(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1"),
             _bound(socket.AF_INET, socket.SOCK_STREAM, "0.0.0.0"),
             _bound(socket.AF_INET, socket.SOCK_DGRAM, "0.0.0.0")]
    if socket.has_ipv6:
        try:
            socks.append(_bound(socket.AF_INET6, socket.SOCK_STREAM, "::1"))
        except OSError:
            pass
    try:
        got = {(s.proto, s.port): s for s in listeners([os.getpid()])}
        ports = [s.getsockname()[1] for s in socks]
        assert got[("tcp", ports[0])].loopback
        assert not got[("tcp", ports[1])].loopback and got[("tcp", ports[1])].address == "0.0.0.0"
        assert not got[("udp", ports[2])].loopback
        if len(socks) == 4:
            assert got[("tcp6", ports[3])].loopback and got[("tcp6", ports[3])].address == "::1"
        bad = {(s.proto, s.port) for s in exposed([os.getpid()])}
        assert ("tcp", ports[1]) in bad and ("udp", ports[2]) in bad and ("tcp", ports[0]) not in bad
    finally:
        for s in socks:
            s.close()


def test_loopback_forms():
    assert Listener(1, "x", "tcp6", "::ffff:127.0.0.1", 1).loopback
    assert Listener(1, "x", "tcp", "127.0.0.53", 1).loopback
    assert not Listener(1, "x", "tcp6", "::", 1).loopback
    assert not Listener(1, "x", "tcp", "198.51.100.7", 1).loopback


def test_check_loopback_fails_loudly_naming_the_socket():
    s = _bound(socket.AF_INET, socket.SOCK_STREAM, "0.0.0.0")
    try:
        with pytest.raises(startup.RayExposureError, match=rf"0\.0\.0\.0:{s.getsockname()[1]}"):
            startup.check_loopback()
    finally:
        s.close()
    startup.check_loopback()  # nothing exposed once it is closed


class _FakeRay:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kw):
        self.calls.append(kw)


def test_start_ray_starts_its_own_local_ray_unless_an_address_says_otherwise(monkeypatch):
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    monkeypatch.setattr(startup.Reaper, "start", classmethod(lambda cls, **kw: None))
    assert startup.start_ray(num_cpus=1, verify=False) is True
    kw = fake.calls[-1]
    # "local": never attach to a `ray start` cluster found on the machine
    assert kw["address"] == "local" and kw["_node_ip_address"] == "127.0.0.1" and kw["include_dashboard"] is False
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # set before Ray starts its processes
    monkeypatch.setenv("RAY_ADDRESS", "ray://10.0.0.5:10001")
    assert startup.start_ray(verify=False) is False
    assert fake.calls[-1]["address"] == "ray://10.0.0.5:10001"


def test_prepare_environment_corrects_a_ray_imported_first(monkeypatch):
    import ray._private.ray_constants as consts

    monkeypatch.setattr(consts, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    startup.prepare_environment()
    assert consts.ENABLE_RAY_CLUSTER is False and os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"


def test_reaper_kills_what_a_dead_driver_left(tmp_path):
    # a stand-in driver: starts the reaper, then a child that looks like a Ray process, then dies by SIGKILL
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        from swarm_sona.runtime.reaper import Reaper
        r = Reaper.start(interval=0.1, grace=0.5)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "/ray/"])
        print(r.pid, child.pid, flush=True)
        time.sleep(60)
    """))
    drv = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    reaper_pid, child_pid = map(int, drv.stdout.readline().split())
    time.sleep(3.0)  # the reaper has started and recorded the child (it scans every 0.1 s; loaded: 0.5 s was short)
    child = process(child_pid)
    assert child is not None and child.is_ray
    drv.send_signal(signal.SIGKILL)
    drv.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.alive():
        time.sleep(0.1)
    try:
        assert not child.alive()
    finally:
        for pid in (child_pid, reaper_pid):
            p = process(pid)
            if p is not None:
                os.kill(pid, signal.SIGKILL)


_NETNS = textwrap.dedent("""
    set -eu
    ip link set lo up
    ip link add v0 type veth peer name v1
    ip addr add 198.51.100.7/24 dev v0
    ip link set v0 up; ip link set v1 up
    ip route add default dev v0
    "$PY" "$DIR/driver.py" "$DIR/bank" > "$DIR/out" 2> "$DIR/err" &
    d=$!
    for i in $(seq 1 240); do grep -q READY "$DIR/out" && break; kill -0 $d || break; sleep 0.5; done
    ss -ltnuH > "$DIR/listen"
    ip -o addr show v0 > "$DIR/addr"
    ip route show default > "$DIR/route"
    kill -9 $d
""")

_DRIVER = textwrap.dedent("""
    import sys, time
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmSONA
    ex = SimulatedExecutor(seed=0)
    sw = SwarmSONA(agents=2, executor=ex, bank={"path": sys.argv[1]}, sync_every=50, batch_size=50)
    print("READY", len(list(sw.run(ex.tasks(200, seed=1), progress=False))), flush=True)
    time.sleep(300)
""")


def _marked(marker: str) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{e}/environ").read_bytes():
                    out.append(int(e))
            except OSError:
                pass
    return out


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip") or not shutil.which("ss"),
                    reason="needs root, unshare, ip and ss for a network namespace of its own")
def test_a_run_on_a_routed_machine_listens_on_loopback_only_and_a_killed_driver_leaves_nothing(tmp_path):
    (tmp_path / "driver.py").write_text(_DRIVER)
    (tmp_path / "netns.sh").write_text(_NETNS)
    marker = f"swarm-sona-test-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    env.update(PY=sys.executable, DIR=str(tmp_path), SWARM_SONA_TEST_MARK=marker)
    try:
        subprocess.run(["unshare", "-n", "bash", str(tmp_path / "netns.sh")], env=env, check=True, timeout=240)
        out = (tmp_path / "out").read_text()
        assert "READY 200" in out, (out, (tmp_path / "err").read_text()[-3000:])
        assert "198.51.100.7" in (tmp_path / "addr").read_text() and "default" in (tmp_path / "route").read_text()
        rows = [line.split() for line in (tmp_path / "listen").read_text().splitlines() if line.strip()]
        local = [r[4] for r in rows]  # Netid State Recv-Q Send-Q Local-Address:Port ...
        assert len(local) >= 5, rows  # gcs, raylet, agents, workers: the run was up
        beyond = [a for a in local if not (a.startswith("127.") or a.startswith("[::ffff:127.") or a.startswith("[::1]"))]
        assert beyond == [], rows
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _marked(marker):
            time.sleep(0.5)
        left = _marked(marker)
        assert left == [], [process(p) for p in left]
    finally:
        for pid in _marked(marker):  # never leave a process behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_no_ray_process_of_this_test_process_is_left():
    assert [p for p in ray_descendants(os.getpid()) if p.alive()] == []


def test_a_port_the_user_opened_on_purpose_is_allowed_only_in_the_driver():
    s = _bound(socket.AF_INET, socket.SOCK_STREAM, "0.0.0.0")
    try:
        port = s.getsockname()[1]
        startup.check_loopback(allow_ports=[port])
        with pytest.raises(startup.RayExposureError):
            startup.check_loopback(allow_ports=[port + 1 if port < 65535 else port - 1])
    finally:
        s.close()


def test_a_dead_address_fails_in_seconds_naming_it(monkeypatch):
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1"):
        startup.start_ray("127.0.0.1:1")
    with pytest.raises(ConnectionError, match="ray://127.0.0.1:1"):
        startup.start_ray("ray://127.0.0.1:1")
    assert time.monotonic() - t0 < 12 and fake.calls == []   # ray.init never ran
