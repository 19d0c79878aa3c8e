"""The Ray processes a driver started (Linux ``/proc``): found by ancestry, named by PID and start time.

A local ``ray.init`` starts the GCS, the raylet and a few Python helpers as children of the
driver; the raylet starts the workers and Ray's agents. :func:`ray_descendants` lists that
tree: the driver's descendants that are Ray's (their executable or script lives in the
installed ``ray`` package, or a worker's title ``ray::...``) and everything below them.
A process is identified by ``(pid, start time)`` so that a PID reused by an unrelated
process after ours exited is never mistaken for ours.

Example:
    >>> import os
    >>> me = process(os.getpid())
    >>> me.pid == os.getpid() and me.alive()
    True
    >>> ray_descendants(os.getpid(), exclude={os.getpid()}) == [] or True
    True
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Proc", "process", "children_map", "ray_descendants", "kill_all"]


@dataclass(frozen=True)
class Proc:
    """A process as ``(pid, start time in clock ticks since boot)``, with its parent and command line."""

    pid: int
    ppid: int
    start: int
    cmdline: str

    def alive(self) -> bool:
        """True while the same process (same PID and start time) exists and is not a zombie."""
        p = process(self.pid)
        return p is not None and p.start == self.start

    @property
    def is_ray(self) -> bool:
        """True for Ray's own executables and scripts, and for Ray worker processes."""
        c = self.cmdline
        return c.startswith("ray::") or f"{os.sep}ray{os.sep}" in c


def process(pid: int) -> Proc | None:
    """The process ``pid`` (None when gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    if rest[0] == "Z":
        return None
    return Proc(pid, int(rest[1]), int(rest[19]), raw.replace(b"\0", b" ").decode("utf-8", "replace").strip())


def children_map() -> dict[int, list[Proc]]:
    """ppid -> the processes whose parent it is, over every process visible in ``/proc``."""
    out: dict[int, list[Proc]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            p = process(int(entry))
            if p is not None:
                out.setdefault(p.ppid, []).append(p)
    return out


def ray_descendants(root: int, *, exclude: Iterable[int] = ()) -> list[Proc]:
    """Ray's processes below ``root``: descendants that are Ray's, and all that is below them."""
    kids = children_map()
    skip = set(exclude)
    out: list[Proc] = []

    def walk(pid: int, inside: bool) -> None:
        for child in kids.get(pid, ()):
            if child.pid in skip:
                continue
            mine = inside or child.is_ray
            if mine:
                out.append(child)
            walk(child.pid, mine)

    walk(root, False)
    return out


def kill_all(procs: Iterable[Proc], sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to each process that is still the same process; returns the PIDs signalled."""
    done = []
    for p in procs:
        if p.alive():
            try:
                os.kill(p.pid, sig)
                done.append(p.pid)
            except (ProcessLookupError, PermissionError):
                pass
    return done
