"""The command verifier: a user's test command run on the output, bounded and without network.

Example:
    >>> from swarm_sona.executors.verifiers.command import CommandVerifier
    >>> CommandVerifier("true").network in ("auto", "require", "allow")
    True
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarm_sona.core.bounded_process import ProcessEnv, run_bounded
from swarm_sona.core.config import scrub_secrets
from swarm_sona.core.executor import Task
from swarm_sona.executors.verifiers.base import VerifierError, VerifierResult

__all__ = ["CommandVerifier"]


def _can_unshare_net() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("unshare") is not None


@dataclass(frozen=True)
class CommandVerifier:
    """Runs ``command`` in a fresh temporary directory holding ``output.txt`` and ``task.txt``.

    Exit status 0 = pass (reward 1). ``command``: an argv list, or a string run by ``/bin/sh -c``.
    Bounds: ``timeout_s`` wall clock (the process group is killed), ``cpu_s``, ``memory_mb``
    (address space), ``max_file_mb`` per file written, ``max_procs`` (RLIMIT_NPROC, when not
    root), ``max_output_bytes`` of stdout+stderr kept in the detail (read as it comes, the rest dropped;
    :func:`~swarm_sona.core.bounded_process.run_bounded`); the exit status is the verdict, and what
    the command leaves running in its process group is killed when it exits. Environment: ``PATH``,
    ``LANG``, ``HOME`` = the directory, and ``env`` (nothing else of the caller's). Network:
    ``"auto"`` isolates when possible (root on Linux: ``unshare -n``), ``"require"`` raises
    :class:`VerifierError` where it cannot, ``"allow"`` never isolates.

    Example:
        >>> v = CommandVerifier(["grep", "-q", "42", "output.txt"])
        >>> v(Task("q"), "the answer is 42").success, v(Task("q"), "no idea").success
        (True, False)
    """

    command: Sequence[str] | str
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    max_file_mb: int = 16
    max_procs: int = 64
    max_output_bytes: int = 4096
    network: str = "auto"
    env: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.command or (not isinstance(self.command, str) and not all(isinstance(c, str) for c in self.command)):
            raise VerifierError(f"command verifier: command must be a non-empty string or argv list, got {self.command!r}")
        if not (isinstance(self.timeout_s, (int, float)) and 0 < self.timeout_s < math.inf):
            raise VerifierError(f"command verifier: timeout_s must be a positive number, got {self.timeout_s!r}")
        for name in ("cpu_s", "memory_mb", "max_file_mb", "max_procs", "max_output_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise VerifierError(f"command verifier: {name} must be an integer >= 1, got {v!r}")
        if self.network not in ("auto", "require", "allow"):
            raise VerifierError(f"command verifier: network must be 'auto', 'require' or 'allow', got {self.network!r}")
        if self.network == "require" and not _can_unshare_net():
            raise VerifierError("command verifier: network='require' but this platform cannot isolate the network "
                                "(needs root and unshare on Linux); use network='auto' to run without isolation")

    @property
    def network_isolated(self) -> bool:
        """Whether commands run without network (``unshare -n``)."""
        return self.network != "allow" and _can_unshare_net()

    def _limits(self) -> None:   # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 1))
        mem = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        f = self.max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (f, f))
        if os.geteuid() != 0:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.max_procs, self.max_procs))

    def __call__(self, task: Task, output: str) -> VerifierResult:
        argv = ["/bin/sh", "-c", self.command] if isinstance(self.command, str) else list(self.command)
        if self.network_isolated:
            argv = ["unshare", "-n", "--", *argv]
        with tempfile.TemporaryDirectory(prefix="swarm-verify-") as d:
            with open(os.path.join(d, "output.txt"), "w", encoding="utf-8") as fh:
                fh.write(output)
            with open(os.path.join(d, "task.txt"), "w", encoding="utf-8") as fh:
                fh.write(task.text)
            env = ProcessEnv()
            for name, value in {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": d,
                                **(self.env or {})}.items():
                env.put(name, value)
            try:   # the exit status is the verdict: stop reading shortly after it, ending leftover background processes
                r = run_bounded(argv, env=env.env, cwd=d, timeout_s=self.timeout_s, output_cap=self.max_output_bytes,
                                merge_stderr=True, after_exit_s=0.05, preexec_fn=self._limits, label="command")
            except OSError as exc:
                raise VerifierError(f"command verifier: cannot run {argv[0]!r}: {exc}") from exc
        text, timed_out, rc = r.stdout, r.timed_out, r.returncode
        took = r.duration_s
        tail = scrub_secrets(" ".join(text.split()), limit=300)
        if timed_out:
            return VerifierResult(0.0, False, None, f"timeout after {self.timeout_s:g} s: {tail}".strip())
        ok = rc == 0
        return VerifierResult(1.0 if ok else 0.0, ok, str(rc), f"exit {rc} in {took:.2f} s: {tail}".strip())
