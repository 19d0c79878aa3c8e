"""kill -9 of a driver mid-run: a driver process runs a swarm on its own local Ray (2 agents, the
embedded bank behind the bank actor, durable stores) in a loop; every pattern id the swarm
acknowledges is appended to a file and fsynced by the driver before it goes on. The driver gets
SIGKILL a seeded 0-1.5 s after its first acknowledgement; its watchdog stops its Ray processes
(the bank actor among them, mid-write). The bank reopened afterwards must hold every id in the
file.

Seeds are printed; ``SWARM_FAULT_REPS`` sets the repetitions (default 3 for CI; 20 when asked).
Run under the machine-wide lock: ``flock /tmp/swarm-cpu.lock pytest tests/runtime/faults/test_driver_kill.py``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from swarm_sona.bank import BankLockedError, ReasoningBank

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPS = int(os.environ.get("SWARM_FAULT_REPS", "3"))

_DRIVER = textwrap.dedent("""
    import os, sys
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.swarm import SwarmSONA
    from swarm_sona.runtime.tally import AckedPatterns

    bank_path, ack_file, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fd = os.open(ack_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    class LoggedAcks(AckedPatterns):
        # every id the swarm acknowledged, on disk (fsynced) before the run goes on
        def extend(self, ids):
            ids = list(ids)
            if ids:
                os.write(fd, ("\\n".join(ids) + "\\n").encode())
                os.fsync(fd)
            super().extend(ids)

    ex = SimulatedExecutor(seed=seed)
    sw = SwarmSONA(agents=2, executor=ex, bank={"path": bank_path}, sync_every=100, batch_size=50, seed=seed)
    sw.acked_patterns = LoggedAcks(seed=seed)
    print("READY", flush=True)
    for r in range(10 ** 6):
        for _ in sw.run(ex.tasks(400, seed=seed * 1000 + r), progress=False):
            pass
""")


def _acked(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    return [x for x in lines[:-1] if x]   # the last line may be cut short: never acknowledged to the file


def _open_when_free(path: str, timeout: float = 90.0) -> ReasoningBank:
    """The bank, once the killed driver's bank actor released it (its watchdog stops it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # the recovery report is checked below
                return ReasoningBank(path=path)
        except BankLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


@pytest.mark.parametrize("rep", range(REPS))
def test_driver_killed_mid_run_loses_no_acknowledged_pattern(tmp_path, rep, fault_case):
    fault_case.fault = "kill -9 driver mid-run (Ray, 2 agents, bank actor writing)"
    seed = 7000 + rep
    kill_after = random.Random(seed).uniform(0.0, 1.5)
    print(f"seed={seed} kill_after={kill_after:.3f}s")
    bank_path, ack_file = str(tmp_path / "bank"), tmp_path / "acked.txt"
    (tmp_path / "driver.py").write_text(_DRIVER)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONPATH=os.pathsep.join(sys.path))
    err = open(tmp_path / "driver.err", "w")
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), bank_path, str(ack_file), str(seed)],
                            stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 180
        while not _acked(ack_file) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _acked(ack_file), f"no acknowledgement before the kill: {(tmp_path / 'driver.err').read_text()[-3000:]}"
        time.sleep(kill_after)
        assert proc.poll() is None, "the driver ended by itself"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        err.close()
    acked = _acked(ack_file)
    with _open_when_free(bank_path) as bank:
        missing = [i for i in acked if bank.get(i) is None]
        rec = bank.recovery
        found = bank.count()
    fault_case.acknowledged, fault_case.found = len(acked), len(acked) - len(missing)
    print(f"acknowledged {len(acked)}, found {len(acked) - len(missing)} (bank holds {found}), lost {len(missing)}; "
          f"log replayed {(rec.get('wal') or {}).get('records')} records, torn bytes "
          f"{(rec.get('wal') or {}).get('torn_bytes')}")
    assert missing == []
    assert rec["problems"] == []
