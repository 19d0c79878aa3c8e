"""Render the fault suite's table from the JSON lines the fault tests wrote (``SWARM_FAULT_TABLE``).

Run as a script::

    SWARM_FAULT_TABLE=/tmp/faults.jsonl pytest tests/runtime/faults/ --junitxml=/tmp/faults.xml
    python tests/runtime/faults/render_table.py /tmp/faults.jsonl --junit /tmp/faults.xml --title unloaded

One row per fault (cases summed): cases and how many passed, bad inputs tried and refused,
acknowledged, found afterwards, lost, and the load average the cases ran at. ``--junit`` adds
the outcome of fault tests that live outside this folder (they assert their own losses but do
not record counts): one row each, counts left blank.

Example:
    >>> rows = [{"fault": "disk full", "outcome": "passed", "bad_inputs": 0, "refused": 0,
    ...          "acknowledged": 5, "found": 5, "lost": 0, "load1": 0.5, "seconds": 1.0}]
    >>> print(render(summarise(rows)).splitlines()[2])
    | disk full | 1 | 1 | 0 | 0 | 0 | 5 | 5 | 0 | 0.5 | 1.0 |
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = ("fault", "cases", "passed", "xfailed", "bad inputs", "refused", "acknowledged", "found", "lost", "load1",
           "seconds")


@dataclass
class Row:
    """One fault's summed cases (``None`` counts: not recorded by the test)."""

    fault: str
    cases: int = 0
    passed: int = 0
    xfailed: int = 0              # known bugs, marked xfail(strict) by their test
    bad_inputs: int | None = 0
    refused: int | None = 0
    acknowledged: int | None = 0
    found: int | None = 0
    lost: int | None = 0
    load_min: float = float("inf")
    load_max: float = 0.0
    seconds: float = 0.0
    control: bool = False         # a control case (losses expected): left out of the totals

    def cells(self) -> list[str]:
        """The row's cells, in :data:`COLUMNS` order."""
        if self.load_min > self.load_max:   # no case said its load
            load = ""
        elif self.load_min == self.load_max:
            load = f"{self.load_min:g}"
        else:
            load = f"{self.load_min:g}-{self.load_max:g}"
        counts = (self.bad_inputs, self.refused, self.acknowledged, self.found, self.lost)
        return [self.fault, str(self.cases), str(self.passed), str(self.xfailed), *("" if c is None else str(c) for c in counts),
                load, f"{self.seconds:.1f}"]


def read_lines(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every JSON line of ``paths``; a line that does not parse raises ValueError naming file and line."""
    out = []
    for p in paths:
        for i, line in enumerate(Path(p).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{p}:{i}: not a JSON line ({exc})") from exc
    return out


def summarise(lines: Iterable[Mapping[str, Any]]) -> list[Row]:
    """Sum the cases of each fault (first-seen order)."""
    rows: dict[str, Row] = {}
    for ln in lines:
        r = rows.setdefault(str(ln["fault"]), Row(str(ln["fault"]), control=bool(ln.get("control"))))
        r.cases += 1
        r.passed += ln.get("outcome") == "passed"
        r.xfailed += ln.get("outcome") == "xfailed"
        for k in ("bad_inputs", "refused", "acknowledged", "found", "lost"):
            v = ln.get(k)
            cur = getattr(r, k)
            setattr(r, k, None if v is None or cur is None else cur + int(v))
        if ln.get("load1") is not None:
            load = float(ln["load1"])
            r.load_min, r.load_max = min(r.load_min, load), max(r.load_max, load)
        r.seconds += float(ln.get("seconds", 0.0))
    return list(rows.values())


def junit_lines(path: str | Path, *, exclude: Sequence[str] = ("runtime/faults/",)) -> list[dict[str, Any]]:
    """Test cases of a JUnit XML report outside the fault folder, as table lines without counts
    (their fault is the test's name)."""
    out = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        name = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        if any(x.replace("/", ".") in name for x in exclude):
            continue
        failed = any(tc.find(t) is not None for t in ("failure", "error"))
        skipped = tc.find("skipped") is not None
        out.append({"fault": f"{tc.get('name', '').split('[')[0]} (outside faults/)",
                    "outcome": "failed" if failed else "skipped" if skipped else "passed",
                    "bad_inputs": None, "refused": None, "acknowledged": None, "found": None, "lost": None,
                    "load1": None, "seconds": float(tc.get("time", 0.0))})
    return out


def render(rows: Sequence[Row], title: str = "") -> str:
    """A Markdown table of ``rows`` with a totals line (control rows, marked, left out of it), and
    ``title`` above it."""
    head = [f"**{title}**", ""] if title else []
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = r.cells()
        if r.control:
            cells[0] += " (control: losses expected)"
        lines.append("| " + " | ".join(cells) + " |")
    counted = [r for r in rows if not r.control]
    if len(counted) > 1:
        tot = Row("total (controls left out)" if len(counted) < len(rows) else "total",
                  load_min=min(r.load_min for r in counted), load_max=max(r.load_max for r in counted))
        for r in counted:
            tot.cases += r.cases
            tot.passed += r.passed
            tot.xfailed += r.xfailed
            tot.seconds += r.seconds
            for k in ("bad_inputs", "refused", "acknowledged", "found", "lost"):
                setattr(tot, k, getattr(tot, k) + (getattr(r, k) or 0))
        lines.append("| " + " | ".join(tot.cells()) + " |")
    return "\n".join(head + lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of the JSON-lines files named on the command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="JSON-lines files written through SWARM_FAULT_TABLE")
    ap.add_argument("--junit", action="append", default=[], help="a pytest --junitxml report: adds the fault "
                    "tests outside tests/runtime/faults/ (outcome only)")
    ap.add_argument("--title", default="", help="a line above the table")
    args = ap.parse_args(argv)
    lines = read_lines(args.files)
    for j in args.junit:
        lines += junit_lines(j)
    if not lines:
        print("no fault cases recorded", file=sys.stderr)
        return 1
    print(render(summarise(lines), args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
