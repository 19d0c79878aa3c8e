"""A watchdog that stops the Ray processes a driver started when that driver dies, however it dies.

A local Ray's GCS and raylet go down with a driver that is SIGKILLed, but some of Ray's
agents (the dashboard agent, the runtime-env agent) stay up, listening. :class:`Reaper`
starts one small process per local Ray (``python -I -S reaper.py DRIVER_PID``, standard
library only). Every ``interval`` seconds it records the driver's Ray process tree
(:func:`~swarm_sona.runtime.processes.ray_descendants`, by PID and start time, so a reused PID
is never hit); when the driver is gone (its pipe closes without a ``stop`` line, or the reaper
is reparented) it SIGTERMs what it recorded, waits up to ``grace`` seconds, then SIGKILLs the
rest. After a clean ``stop`` it only SIGKILLs what is still running ``grace`` seconds later
(Ray's own shutdown normally stopped everything by then).

Example:
    >>> r = Reaper.start(interval=0.2)      # doctest: +SKIP
    >>> r.stop()                            # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["Reaper"]


class Reaper:
    """The driver's handle on its watchdog process (see module docs)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, *, interval: float = 1.0, grace: float = 3.0) -> Reaper:
        """Start a watchdog for this process's Ray tree."""
        args = [sys.executable, "-I", "-S", str(Path(__file__)), str(os.getpid()), repr(interval), repr(grace)]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Tell the watchdog that the driver shut Ray down itself (it then only sweeps leftovers)."""
        if self.proc.stdin is None or self.proc.stdin.closed:
            return
        try:
            self.proc.stdin.write(b"stop\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the watchdog to exit (its exit code, or None on timeout)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def _processes() -> ModuleType:
    """The sibling ``processes`` module, loaded by path (no package import: stdlib only, fast)."""
    if __package__:
        from swarm_sona.runtime import processes

        return processes
    spec = importlib.util.spec_from_file_location("_swarm_sona_processes", Path(__file__).with_name("processes.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _watch(driver: int, interval: float, grace: float) -> None:
    pr: Any = _processes()
    seen: dict[tuple[int, int], Any] = {}
    clean = False
    me = os.getpid()
    while True:
        if os.getppid() != driver:
            break
        for p in pr.ray_descendants(driver, exclude={me}):
            seen[(p.pid, p.start)] = p
        ready, _, _ = select.select([sys.stdin.buffer], [], [], interval)
        if ready:
            line = sys.stdin.buffer.readline()
            if line.strip() == b"stop":
                clean = True
                break
            if not line:  # EOF: the driver is gone
                break
    procs = list(seen.values())
    if not clean:
        pr.kill_all(procs, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.alive() for p in procs):
        time.sleep(0.1)
    pr.kill_all(procs, signal.SIGKILL)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the terminal is the driver's to handle
    _watch(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
