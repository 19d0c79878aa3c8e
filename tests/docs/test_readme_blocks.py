"""The README's code blocks run: every block marked ``<!-- test: KIND -->`` on the line before
its opening fence is executed (or validated) here, so the README cannot drift from the code.

Kinds: ``run`` (a bash or python block, executed; seconds), ``run ray`` (executed, starts a
local Ray: marked slow), ``spec`` (a YAML run spec: loaded and planned against examples/agents),
``agent`` (a Markdown agent file: parsed). Unmarked blocks (installing, benchmarks, cluster
commands) are not run. Shell blocks run under ``bash -e -o pipefail`` from the repository root
with a fresh HOME and data directory and this interpreter's scripts first on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"^<!--\s*test:\s*([a-z ]+?)\s*-->\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    kind: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{self.lang}"


def blocks(path: Path) -> list[Block]:
    """The marked fenced blocks of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = MARK.match(lines[i])
        f = FENCE.match(lines[i + 1]) if m and i + 1 < len(lines) else None
        if m and f:
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            out.append(Block(path.name, i + 2, f.group(1), m.group(1), "\n".join(lines[i + 2:end]) + "\n"))
            i = end
        i += 1
    return out


ALL = [b for p in DOCS for b in blocks(p)]


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_SONA_", "OTEL_", "RAY_ADDRESS"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def _execute(b: Block, tmp_path: Path) -> None:
    if b.lang == "python":
        argv = [sys.executable, "-c", b.code]
    elif b.lang in ("bash", "sh", "shell"):
        argv = ["bash", "-e", "-o", "pipefail", "-c", b.code]
    else:
        raise AssertionError(f"{b.id}: a 'run' block must be bash or python, not {b.lang!r}")
    r = subprocess.run(argv, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{b.id} exited {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def test_the_readme_opens_with_install_and_run_then_install_and_test():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", text, re.S)
    assert first and text.index("```") < text.index("\n## ")
    run, test = first.group(1).strip().splitlines()
    assert "pip install -e ." in run and run.endswith("swarm-sona run")
    assert 'pip install -e ".[test]"' in test and test.endswith("python -m pytest")


def test_enough_of_the_readme_is_marked_to_run():
    kinds = [b.kind for b in ALL if b.doc == "README.md"]
    assert kinds.count("run") >= 3 and "run ray" in kinds and "spec" in kinds and "agent" in kinds, kinds
    assert all(b.kind in ("run", "run ray", "spec", "agent") for b in ALL), [b.kind for b in ALL]


@pytest.mark.parametrize("b", [b for b in ALL if b.kind == "run"], ids=lambda b: b.id)
def test_runnable_block(b, tmp_path):
    _execute(b, tmp_path)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("b", [b for b in ALL if b.kind == "run ray"], ids=lambda b: b.id)
def test_runnable_block_on_a_local_ray(b, tmp_path):
    _execute(b, tmp_path)


@pytest.mark.parametrize("b", [b for b in ALL if b.kind == "spec"], ids=lambda b: b.id)
def test_spec_block_is_a_valid_spec_that_syncs(b, tmp_path):
    from swarm_sona.app.commands.run_plan import plan
    from swarm_sona.app.run_spec import RunSpec

    shutil.copytree(ROOT / "examples" / "agents", tmp_path / "agents")
    (tmp_path / "spec.yaml").write_text(b.code)
    assert isinstance(yaml.safe_load(b.code), dict)
    p = plan(RunSpec.load(tmp_path / "spec.yaml").with_overrides(bank=str(tmp_path / "bank")))
    assert p.expected_syncs > 0 and not p.warnings, p.warnings


@pytest.mark.parametrize("b", [b for b in ALL if b.kind == "agent"], ids=lambda b: b.id)
def test_agent_block_is_a_valid_agent_file(b):
    from swarm_sona.app.agent_defs import parse_agent_markdown

    a = parse_agent_markdown(b.code, source=b.id)
    assert a.id and a.type
