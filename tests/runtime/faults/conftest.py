"""The fault suite's table: each fault test records what it injected and what it found.

A test takes the ``fault_case`` fixture and fills in its :class:`FaultCase` (the fault it
injected, the bad inputs it tried and how many were refused with a clear error, what was
acknowledged before the fault, what was found afterwards and what was lost). When the
environment variable ``SWARM_FAULT_TABLE`` names a file, one JSON line per test case is appended
to it at teardown, with the test's outcome, its duration and the machine's load average; the
table is rendered by ``python tests/runtime/faults/render_table.py FILE``.

Example (in a test of this folder)::

    def test_torn_file(fault_case, tmp_path):
        fault_case.fault = "torn push log"
        fault_case.acknowledged, fault_case.found = 1, 1
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

TABLE_ENV = "SWARM_FAULT_TABLE"


@dataclass
class FaultCase:
    """One test case's line of the fault table (``lost`` is derived when left unset).

    Example:
        >>> c = FaultCase(test="t", fault="disk full", acknowledged=3, found=3)
        >>> c.line()["lost"], c.line()["fault"]
        (0, 'disk full')
    """

    test: str
    fault: str = ""               # what was injected ("" = the test did not say: not a row of the table)
    bad_inputs: int = 0           # malformed frames / bad arguments tried
    refused: int = 0              # of those, refused with a clear error (or counted and skipped)
    acknowledged: int = 0         # pushes / patterns / checkpoints acknowledged before the fault
    found: int = 0                # of those, found afterwards
    lost: int | None = None       # None: acknowledged - found
    control: bool = False         # a control run (the protection switched off): its losses are expected
    notes: list[str] = field(default_factory=list)

    def line(self) -> dict[str, object]:
        """The JSON line's fields (outcome, duration and load are added by the fixture)."""
        d = asdict(self)
        d["lost"] = self.acknowledged - self.found if self.lost is None else self.lost
        return d


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_fault_rep_{rep.when}", rep)


def _outcome(node: pytest.Item) -> str:
    for when in ("setup", "call"):
        rep = getattr(node, f"_fault_rep_{when}", None)
        if rep is None:
            continue
        if rep.skipped:
            return "xfailed" if hasattr(rep, "wasxfail") else "skipped"
        if rep.failed:
            return "failed"
        if when == "call" and hasattr(rep, "wasxfail"):
            return "xpassed"
    return "passed"


@pytest.fixture
def fault_case(request: pytest.FixtureRequest) -> Iterator[FaultCase]:
    """This test case's :class:`FaultCase`; appended to ``$SWARM_FAULT_TABLE`` at teardown."""
    case = FaultCase(test=request.node.nodeid)
    t0 = time.monotonic()
    yield case
    path = os.environ.get(TABLE_ENV)
    if not path or not case.fault:
        return
    line = {**case.line(), "outcome": _outcome(request.node), "seconds": round(time.monotonic() - t0, 2),
            "load1": round(os.getloadavg()[0], 2)}
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
