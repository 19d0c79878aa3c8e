"""docs/guide.md: every ``python`` block runs as written (in order, one namespace), the Ray block
in a Ray session, and the page's table names every key and call of the seed guide's samples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guide.md"
SEED = ROOT.parent / "shared" / "seed" / "sona-integration-guide.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)
# TypeScript / JavaScript names of the samples that are not the guide's API
NOT_API = {"console", "log", "Date", "now", "import", "from", "const", "await", "new", "this", "return",
           "async", "export", "private", "constructor", "class", "string", "number", "any"}


def blocks(text: str, lang: str) -> list[tuple[str, str]]:
    """``(info, code)`` of every fenced block in ``lang`` (``info``: the rest of the fence line)."""
    return [(m.group(2).strip(), m.group(3)) for m in FENCE.finditer(text) if m.group(1) == lang]


def guide_names(text: str) -> set[str]:
    """Every object key (``rank:``) and method call (``.route(``, ``new SONA(``) of the TS samples."""
    names: set[str] = set()
    for _, code in blocks(text, "typescript"):
        code = re.sub(r"//[^\n]*|'[^'\n]*'|`[^`\n]*`", "", code)    # comments and strings
        names |= set(re.findall(r"\b([A-Za-z_]\w*)\s*:", code))
        names |= set(re.findall(r"\.([A-Za-z_]\w*)\s*\(", code))
        names |= set(re.findall(r"\bnew\s+([A-Za-z_]\w*)", code))
    return names - NOT_API


def run_page_code(code: list[str], tmp_path: Path, prelude: str = "") -> subprocess.CompletedProcess:
    """The blocks, concatenated in order, run in a fresh Python (one namespace, as a reader runs
    them; nothing leaks into this process, such as warn-once flags). Banks left at their default
    path go under ``tmp_path``."""
    script = tmp_path / "guide_page.py"
    script.write_text(prelude + "\n".join(f"# ---- python block {i}\n{c}" for i, c in enumerate(code)))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_pages_python_blocks_run_in_order(tmp_path):
    code = [c for info, c in blocks(PAGE.read_text(), "python") if info != "ray"]
    assert len(code) >= 8
    done = run_page_code(code, tmp_path, prelude="")
    assert done.returncode == 0, f"{PAGE.name}: a python block failed:\n{done.stderr[-3000:]}"
    assert "Selected model: gpt-4-turbo" in done.stdout and "Learning overhead: " in done.stdout


def test_the_table_names_every_key_and_call_of_the_guide():
    if not SEED.exists():
        pytest.skip(f"seed guide not found at {SEED}")
    names = guide_names(SEED.read_text())
    assert {"route", "benchmark", "learnFromSwarmExecution", "quantization", "preserveTaskMemory"} <= names
    table = PAGE.read_text().split("## The guide's samples")[0]
    missing = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", table))
    assert not missing, f"docs/guide.md's table does not mention {missing}"


def test_guide_names_sees_keys_and_calls_only():
    ts = "const r = await sona.route({ task: 'a: b', maxCost: 5 }); // note: x\nconsole.log(`c: ${r}`)"
    assert guide_names(f"```typescript\n{ts}\n```\n") == {"route", "task", "maxCost"}


@pytest.mark.ray
def test_the_pages_ray_block_runs(tmp_path):
    pytest.importorskip("ray")
    (code,) = [c for info, c in blocks(PAGE.read_text(), "python") if info == "ray"]
    prelude = ("import ray\nray.init(address='local', num_cpus=2, include_dashboard=False, _node_ip_address='127.0.0.1', "
               "log_to_driver=False)\n")
    done = run_page_code([code, "ray.shutdown()\n"], tmp_path, prelude=prelude)
    assert done.returncode == 0, f"{PAGE.name}: the ray block failed:\n{done.stderr[-3000:]}"
