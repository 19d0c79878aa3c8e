"""Timing and reporting helpers shared by every benchmark.

Example:
    >>> from swarm_sona.bench.timing import time_call, machine_info
    >>> stats = time_call(lambda: sum(range(100)), repeat=50)
    >>> sorted(stats)
    ['mean', 'n', 'p50', 'p99']
    >>> "cpu" in machine_info()
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import numpy as np

__all__ = ["time_call", "summarize_us", "machine_info", "print_table", "emit"]


def summarize_us(samples_ns: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Median, p99 and mean in microseconds of a list of nanosecond samples."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3
    if a.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "mean": float("nan"), "n": 0}
    return {"p50": float(np.median(a)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "n": int(a.size)}


def time_call(fn: Callable[[], Any], *, repeat: int = 1000, warmup: int = 20,
              inner: int = 1) -> dict[str, float]:
    """Time ``fn`` ``repeat`` times (each sample runs it ``inner`` times); stats in microseconds
    per call."""
    for _ in range(warmup):
        fn()
    samples = np.empty(repeat, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(repeat):
        t0 = clock()
        for _ in range(inner):
            fn()
        samples[i] = (clock() - t0) / inner
    return summarize_us(samples)


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python and numpy versions, for benchmark headers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": sys.platform}


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
                file: Any = None) -> None:
    """Print an aligned plain-text table (numbers formatted to 4 significant digits)."""
    file = file or sys.stdout

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(header)]
    print(title, file=file)
    info = machine_info()
    print(f"machine: {info['cpu']} x{info['cores']} cores, python {info['python']}, numpy {info['numpy']}",
          file=file)
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)), file=file)


_JSON_OUT: list[TextIO] = []   # where emit() writes JSON inside json_stdout()


@contextlib.contextmanager
def json_stdout(as_json: bool = True) -> Iterator[None]:
    """While a benchmark runs with ``--json``, anything else printed to stdout (Ray's raylet and
    worker messages, which Ray prints to stdout) goes to stderr, so stdout carries the one JSON
    object :func:`emit` writes and a pipe into ``jq`` gets only that.

    Example:
        >>> import io
        >>> out, err = io.StringIO(), io.StringIO()
        >>> with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), json_stdout():
        ...     print("(raylet) WARNING: 8 PYTHON worker processes")
        ...     emit({"tasks": 3}, as_json=True)
        >>> out.getvalue().splitlines(), err.getvalue().splitlines()
        (['{"tasks": 3}'], ['(raylet) WARNING: 8 PYTHON worker processes'])
    """
    if not as_json:
        yield
        return
    _JSON_OUT.append(sys.stdout)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_OUT.pop()


def emit(result: Any, *, as_json: bool, title: str = "", header: Sequence[str] = (),
         rows: Sequence[Sequence[Any]] = ()) -> None:
    """Print ``result`` as JSON (one object; to the real stdout inside :func:`json_stdout`) or
    the table given by ``header``/``rows``."""
    if as_json:
        print(json.dumps(result, default=float), file=_JSON_OUT[-1] if _JSON_OUT else sys.stdout)
    else:
        print_table(title, header, rows)
