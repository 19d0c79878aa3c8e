"""Progress display for long operations: a live bar on a terminal, silent when piped.

Example:
    >>> from swarm_sona.core.progress import Progress
    >>> with Progress(total=3, description="demo", enabled=False) as p:
    ...     for _ in range(3):
    ...         p.advance(1, success_rate=1.0)
    >>> p.completed
    3
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """A minimal progress bar (rich when installed and on a TTY, else plain text on a TTY).

    ``enabled=None`` means: show it only when ``stream`` is a terminal.
    """

    def __init__(self, total: int | None, description: str = "", *, enabled: bool | None = None,
                 stream: TextIO | None = None, min_interval_s: float = 0.1) -> None:
        self.total = total
        self.description = description
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.completed = 0
        self.fields: dict[str, Any] = {}
        self._min_interval = min_interval_s
        self._last = 0.0
        self._start = time.monotonic()
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
                from rich.progress import Progress as RichProgress

                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                          MofNCompleteColumn(), TimeElapsedColumn(),
                                          TextColumn("{task.fields[info]}"),
                                          console=Console(file=self.stream), transient=False)
                self._rich.__enter__()
                self._task = self._rich.add_task(self.description, total=self.total, info="")
            except ImportError:
                self._rich = None
        return self

    def _info(self) -> str:
        parts = []
        for k, v in self.fields.items():
            parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
        return " ".join(parts)

    def advance(self, n: int = 1, **fields: Any) -> None:
        """Mark ``n`` more items done; ``fields`` are shown beside the bar (e.g. success_rate)."""
        self.completed += n
        self.fields.update(fields)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self._min_interval and (self.total is None or self.completed < self.total):
            return
        self._last = now
        if self._rich is not None:
            self._rich.update(self._task, completed=self.completed, info=self._info())
        else:
            tot = f"/{self.total}" if self.total else ""
            self.stream.write(f"\r{self.description} {self.completed}{tot} {self._info()}   ")
            self.stream.flush()

    def __exit__(self, *exc: Any) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=self.completed, info=self._info())
            self._rich.__exit__(*exc)
        else:
            self.stream.write("\n")
            self.stream.flush()
