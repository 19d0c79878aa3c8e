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

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

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


def emit(result: Any, *, as_json: bool, title: str = "", header: Sequence[str] = (),
         rows: Sequence[Sequence[Any]] = ()) -> None:
    """Print ``result`` as JSON (one object) or the table given by ``header``/``rows``."""
    if as_json:
        print(json.dumps(result, default=float))
    else:
        print_table(title, header, rows)
