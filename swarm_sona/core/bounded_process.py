"""Run a child process within bounds: wall time, output kept, environment.

:func:`run_bounded` starts ``argv`` in its own process group (``start_new_session``) and:

* reads stdout and stderr as they come, keeping the first ``output_cap`` bytes of each and
  reading and discarding the rest (a chatty child is not stopped and memory stays bounded);
  ``merge_stderr=True`` sends both to one stream (stdout);
* after ``timeout_s`` kills the whole process group (SIGKILL) and waits at most ``grace_s``
  more for it to exit and its pipes to close, so a run costs at most ``timeout_s + grace_s`` of
  wall time even when a detached (``setsid``) grandchild keeps the output open (the runner then
  closes its ends of the pipes and returns);
* with ``after_exit_s`` set, stops reading that long after the child itself exited and kills
  what is left of its group (for callers that judge the child's exit status, not its
  background processes); by default it reads until the pipes close, within the timeout.

:class:`ProcessEnv` builds an environment from nothing: allow-listed variables of this
process, then values put in by the caller. Values are UTF-8, cut to at most
:data:`ENV_VALUE_MAX` bytes on a character boundary (the kernel limits one variable to
128 KiB); a NUL byte (which no environment can hold) is removed and a lone surrogate (which
UTF-8 cannot encode) becomes U+FFFD; every such change is listed in ``notes``.

Example:
    >>> env = ProcessEnv()
    >>> env.inherit(["PATH"])
    >>> env.put("GREETING", "hi\\0 there")
    >>> r = run_bounded(["/bin/sh", "-c", 'printf %s "$GREETING"; exit 3'], env=env.env, timeout_s=5)
    >>> r.returncode, r.stdout, r.timed_out, env.notes
    (3, 'hi there', False, ['GREETING: removed 1 NUL byte(s)'])
"""

from __future__ import annotations

import codecs
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarm_sona.core.config import is_env_name

__all__ = [
    "DEFAULT_OUTPUT_CAP",
    "ENV_VALUE_MAX",
    "KILL_GRACE_S",
    "BoundedProcessError",
    "ProcessEnv",
    "ProcessResult",
    "clean_env_value",
    "clip_utf8",
    "run_bounded",
]

ENV_VALUE_MAX = 64 * 1024     #: bytes of one environment value (UTF-8)
DEFAULT_OUTPUT_CAP = 4096     #: bytes of stdout / stderr kept per run by default
KILL_GRACE_S = 1.0            #: after the timeout kill: the most we wait for exit and end of output
_READ_CHUNK = 64 * 1024       # bytes read from a pipe at a time
_SURROGATE = re.compile("[\ud800-\udfff]")


class BoundedProcessError(ValueError):
    """An argument of :func:`run_bounded` or :class:`ProcessEnv` is invalid; the message names it."""


def clip_utf8(b: bytes, n: int) -> bytes:
    """The longest prefix of UTF-8 ``b`` of at most ``n`` bytes that ends on a character boundary.

    Example:
        >>> clip_utf8("aé€😀".encode(), 5).decode()
        'aé'
        >>> clip_utf8(b"abc", 3)
        b'abc'
    """
    if len(b) <= n:
        return b
    i = n
    while i > 0 and n - i < 3 and (b[i] & 0xC0) == 0x80:   # b[i] continues a character: back off to its start
        i -= 1
    return b[:i]


def clean_env_value(name: str, value: Any, notes: list[str], *, limit: int = ENV_VALUE_MAX) -> bytes:
    """``value`` as environment bytes: NULs removed, lone surrogates -> U+FFFD, cut to ``limit`` bytes;
    each change is appended to ``notes`` (naming ``name``).

    Example:
        >>> notes: list[str] = []
        >>> clean_env_value("X", "a\\0b\\ud800" + "é" * 3, notes, limit=6), notes
        (b'ab\\xef\\xbf\\xbd', ['X: removed 1 NUL byte(s)', 'X: replaced 1 lone surrogate(s) (not encodable as UTF-8) with U+FFFD', 'X: cut from 11 to 5 bytes'])
    """
    if isinstance(value, bytes):
        b = value.replace(b"\0", b"")
        if len(b) != len(value):
            notes.append(f"{name}: removed {len(value) - len(b)} NUL byte(s)")
    else:
        s = value if isinstance(value, str) else str(value)
        if "\0" in s:
            notes.append(f"{name}: removed {s.count(chr(0))} NUL byte(s)")
            s = s.replace("\0", "")
        s, n_bad = _SURROGATE.subn("\ufffd", s)
        if n_bad:
            notes.append(f"{name}: replaced {n_bad} lone surrogate(s) (not encodable as UTF-8) with U+FFFD")
        b = s.encode("utf-8")
    if len(b) > limit:
        clipped = clip_utf8(b, limit)
        notes.append(f"{name}: cut from {len(b)} to {len(clipped)} bytes")
        b = clipped
    return b


@dataclass
class ProcessEnv:
    """An environment built from nothing (a child gets only what is put here), as bytes.

    :meth:`inherit` copies allow-listed variables of this process (by name or prefix),
    :meth:`put` sets one (cleaned by :func:`clean_env_value`; an invalid name is skipped with a
    note), :meth:`prepend_path` puts a directory first on ``PATH``. ``notes`` lists what was
    changed or skipped.

    Example:
        >>> e = ProcessEnv()
        >>> e.put("A", "1"); e.put("BAD=NAME", "x"); e.prepend_path("/opt/bin")
        >>> sorted(e.env), e.notes
        ([b'A', b'PATH'], ["skipped environment variable with an invalid name 'BAD=NAME'"])
    """

    env: dict[bytes, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    value_max: int = ENV_VALUE_MAX

    def __post_init__(self) -> None:
        if isinstance(self.value_max, bool) or not isinstance(self.value_max, int) or self.value_max < 1:
            raise BoundedProcessError(f"ProcessEnv.value_max: must be an integer >= 1, got {self.value_max!r}")

    def put(self, name: str, value: Any) -> None:
        """Set ``name`` to ``value`` (str, bytes or anything ``str()`` takes)."""
        if not is_env_name(name):
            self.notes.append(f"skipped environment variable with an invalid name {name!r}")
            return
        self.env[name.encode()] = clean_env_value(name, value, self.notes, limit=self.value_max)

    def inherit(self, names: Iterable[str] = (), prefixes: Sequence[str] = (),
                source: Mapping[bytes, bytes] | None = None) -> None:
        """Copy the variables of ``source`` (default: this process, raw bytes) named in ``names`` or
        starting with one of ``prefixes``; a named variable that is not set is left out."""
        src: Mapping[bytes, bytes] = source if source is not None else (getattr(os, "environb", None) or {
            os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()})
        wanted = set(names)
        pre = tuple(prefixes)
        for raw_name, v in src.items():
            name = os.fsdecode(raw_name)
            if name in wanted or (pre and name.startswith(pre)):
                self.put(name, v)

    def prepend_path(self, directory: str | bytes | os.PathLike[str]) -> None:
        """Put ``directory`` first on ``PATH`` (unless it already is; no PATH = ``os.defpath``)."""
        first = os.fsencode(directory)
        path = self.env.get(b"PATH") or os.fsencode(os.defpath)
        if path.split(os.pathsep.encode())[0] != first:
            self.env[b"PATH"] = first + os.pathsep.encode() + path


@dataclass
class ProcessResult:
    """What one bounded run did.

    ``returncode`` is the child's exit status (negative: killed by that signal; None: it never
    exited). ``timed_out``: the run hit ``timeout_s`` (the child was still running or its output
    still open) and its group was killed; ``exited_before_kill`` is then the status the child had
    already exited with, if it had. ``stdout``/``stderr`` hold the first ``output_cap`` bytes of
    each, decoded as UTF-8 (bad bytes replaced; a character cut by the cap dropped);
    ``*_total`` count every byte read. ``notes`` say what was dropped or left behind.
    """

    returncode: int | None
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    stdout_total: int = 0
    stderr_total: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    exited_before_kill: int | None = None
    notes: list[str] = field(default_factory=list)


class _Capped:
    """The first ``cap`` bytes of a stream, and how many bytes it had in all."""

    __slots__ = ("buf", "cap", "total")

    def __init__(self, cap: int) -> None:
        self.buf = bytearray()
        self.cap = cap
        self.total = 0

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.buf)
        if room > 0:
            self.buf += chunk[:room]
        self.total += len(chunk)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.buf)

    def text(self) -> str:
        # a character cut by the cap is dropped rather than shown as U+FFFD
        return codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(self.buf), final=not self.truncated)


def _exit_watch(sel: selectors.BaseSelector, proc: subprocess.Popen[bytes]) -> int | None:
    """Register a pidfd of ``proc`` (Linux >= 5.3) so that a select wakes at its exit; None where unavailable."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None
    sel.register(fd, selectors.EVENT_READ, None)
    return fd


def _drain(sel: selectors.BaseSelector, until: float, proc: subprocess.Popen[bytes] | None = None,
           after_exit_s: float | None = None) -> None:
    """Read the registered pipes into their _Capped until all reached EOF or ``until`` (monotonic);
    with ``proc`` and ``after_exit_s``, at most ``after_exit_s`` past the moment ``proc`` exited
    (seen through a pidfd, else by polling every 10 ms)."""
    pidfd = _exit_watch(sel, proc) if proc is not None and after_exit_s is not None else None
    if after_exit_s is None:
        proc = None
    try:
        while len(sel.get_map()) > (pidfd is not None):
            now = time.monotonic()
            if proc is not None and after_exit_s is not None and proc.poll() is not None:   # it exited
                until = min(until, now + after_exit_s)
                proc = None
                if pidfd is not None:
                    sel.unregister(pidfd)
                    os.close(pidfd)
                    pidfd = None
            left = until - now
            if left <= 0:
                return
            for key, _ in sel.select(left if proc is None or pidfd is not None else min(left, 0.01)):
                if key.data is None:      # the pidfd: the exit is taken at the top of the loop
                    continue
                try:
                    chunk = os.read(key.fd, _READ_CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    key.data.add(chunk)
                else:
                    sel.unregister(key.fd)
    finally:
        if pidfd is not None:
            sel.unregister(pidfd)
            os.close(pidfd)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except OSError:
            pass


def _check_args(argv: Sequence[str], timeout_s: float, output_cap: int, grace_s: float,
                after_exit_s: float | None) -> None:
    if isinstance(argv, (str, bytes)) or not argv or not all(isinstance(a, (str, bytes, os.PathLike)) for a in argv):
        raise BoundedProcessError(f"run_bounded: argv must be a non-empty list of strings, got {argv!r}")
    for name, v, low in (("timeout_s", timeout_s, False), ("grace_s", grace_s, True),
                         ("after_exit_s", after_exit_s, True)):
        if name == "after_exit_s" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= v < float("inf")) or (not low and v == 0):
            rel = ">= 0" if low else "> 0"
            raise BoundedProcessError(f"run_bounded: {name} must be a finite number {rel}, got {v!r}")
    if isinstance(output_cap, bool) or not isinstance(output_cap, int) or output_cap < 0:
        raise BoundedProcessError(f"run_bounded: output_cap must be an integer >= 0, got {output_cap!r}")


def _stop_timed_out(proc: subprocess.Popen[bytes], sel: selectors.BaseSelector, grace_s: float, label: str,
                    notes: list[str]) -> None:
    """SIGKILL a timed-out child's process group, wait for it and drain its pipes, both bounded by
    ``grace_s``; say in ``notes`` what could not be ended or read."""
    _kill_group(proc)
    grace = time.monotonic() + grace_s
    try:                                        # bounded: a SIGKILLed child exits at once
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        notes.append(f"the {label} did not exit within {grace_s:g} s of SIGKILL")
    _drain(sel, grace)                          # bounded: a process outside the group may hold the pipes
    if sel.get_map():
        notes.append(f"output pipes still held open by a process outside the {label}'s process group "
                     "(e.g. started with setsid); stopped reading")


def _truncation_notes(out: _Capped, err: _Capped | None) -> list[str]:
    """One note per stream that kept only part of its output (``err`` None: merged into stdout)."""
    streams = (("stdout", out),) if err is None else (("stdout", out), ("stderr", err))
    return [f"{name}: kept the first {len(cap.buf)} of {cap.total} bytes" for name, cap in streams if cap.truncated]


def run_bounded(argv: Sequence[str], *, env: Mapping[bytes, bytes] | Mapping[str, str], timeout_s: float,
                cwd: str | None = None, output_cap: int = DEFAULT_OUTPUT_CAP, merge_stderr: bool = False,
                after_exit_s: float | None = None, grace_s: float = KILL_GRACE_S,
                preexec_fn: Callable[[], None] | None = None, label: str = "process",
                notes: list[str] | None = None) -> ProcessResult:
    """Run ``argv`` (no shell) in its own process group within the bounds described in the module docs.

    ``env`` is the child's whole environment (see :class:`ProcessEnv`); ``preexec_fn`` runs in the
    child before exec (e.g. resource limits); ``label`` names the child in ``notes``, which the
    result's notes extend. Raises :class:`BoundedProcessError` for invalid arguments and the
    ``OSError``/``ValueError`` of :class:`subprocess.Popen` when the child cannot start (missing
    program or ``cwd``, E2BIG, ...); a non-zero exit or a timeout is a result, not an exception.

    Example:
        >>> r = run_bounded(["/bin/sh", "-c", "yes | head -c 100000; sleep 30"], env={"PATH": "/usr/bin:/bin"},
        ...                 timeout_s=0.5, output_cap=10)
        >>> r.timed_out, r.stdout_total, len(r.stdout), r.stdout_truncated, r.duration_s < 2
        (True, 100000, 10, True, True)
    """
    _check_args(argv, timeout_s, output_cap, grace_s, after_exit_s)
    notes = [] if notes is None else notes
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, bufsize=0,
                            start_new_session=True, preexec_fn=preexec_fn)  # noqa: PLW1509 - limits in the child
    assert proc.stdout is not None
    out, err = _Capped(output_cap), _Capped(output_cap)
    sel = selectors.DefaultSelector()
    timed_out = False
    exited_first: int | None = None
    try:
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, out)
        if proc.stderr is not None:
            sel.register(proc.stderr.fileno(), selectors.EVENT_READ, err)
        _drain(sel, deadline, proc, after_exit_s)       # until the pipes are closed, or the timeout
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        timed_out = proc.returncode is None or (bool(sel.get_map()) and after_exit_s is None)
        if timed_out:
            exited_first = proc.returncode
            _stop_timed_out(proc, sel, grace_s, label, notes)
        elif after_exit_s is not None:                  # the child exited: end what is left of its group
            _kill_group(proc)
            if sel.get_map():
                    notes.append(f"stopped reading {after_exit_s:g} s after the {label} exited; killed what was left "
                             "of its process group")
    finally:
        if proc.returncode is None and not timed_out:   # leaving on an exception (e.g. KeyboardInterrupt)
            _kill_group(proc)
        sel.close()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    notes.extend(_truncation_notes(out, None if merge_stderr else err))
    return ProcessResult(proc.returncode, time.perf_counter() - t0, out.text(), err.text(), out.total, err.total,
                         out.truncated, err.truncated, timed_out, exited_first, notes)
