"""examples/endpoints/ (a local Ollama, a vLLM server, a hosted API with the key in an env var)
are complete run specs that work as written except for the URL: each is a valid spec for the
OpenAI-compatible executor, and each runs for real against ``swarm-sona replay-server`` (serving
the example's own models and tasks) with only its ``base_url`` changed; the key reaches the
server from the environment variable the example names. docs/endpoints.md shows the files
themselves and commands that parse."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from swarm_sona.app.cli import build_parser
from swarm_sona.app.commands.run_plan import plan
from swarm_sona.app.run_spec import RunSpec, WorkloadConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "endpoints"
DOC = ROOT / "docs" / "endpoints.md"
NAMES = ("ollama", "vllm", "hosted")
KEYS = {"ollama": None, "vllm": "VLLM_API_KEY", "hosted": "OPENAI_API_KEY"}   # the variable each example reads
KEY = "sk-replay-0123456789abcdef"   # what the replay server requires of an example that sends a key
WRONG = "I am not sure."


def _spec(name: str) -> RunSpec:
    return RunSpec.load(EXAMPLES / f"{name}.yaml")


def _pointed_at(spec: RunSpec, base_url: str) -> RunSpec:
    """The same spec with only ``workload.options.base_url`` changed."""
    w = spec.workload.to_dict(keep_secrets=True)
    return dataclasses.replace(spec, workload=WorkloadConfig.from_dict(
        {**w, "options": {**w["options"], "base_url": base_url}}))


def _write_table(spec: RunSpec, folder: Path) -> str:
    """A RouteLLM-style table of the example's tasks x its router models, with response texts:
    the strongest model (by prior quality) replies with each task's expected answer, every other
    model with a wrong one. Returns the strongest model's name."""
    folder.mkdir(parents=True, exist_ok=True)
    models = [m.name for m in sorted(spec.router.models, key=lambda m: m.quality)]
    strongest = models[-1]
    tasks = {t.text: t for t in spec.make_tasks()}.values()
    with open(folder / "endpoint.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", *models, *[f"{m}::response" for m in models]])
        for t in tasks:
            w.writerow([t.text, *[m == strongest for m in models],
                        *[f"The answer is {t.metadata['expected']}." if m == strongest else WRONG for m in models]])
    return strongest


@contextmanager
def _replay_server(data: Path, key: str | None) -> Iterator[str]:
    """``swarm-sona replay-server`` on 127.0.0.1 (requiring ``key`` as the bearer key if given); yields its base URL."""
    env = {**os.environ, "REPLAY_KEY": key or ""}
    argv = [sys.executable, "-m", "swarm_sona", "replay-server", "--data", str(data), "--port", "0", "--json",
            "--latency-median", "0.01", "--latency-p99", "0.05"] + (["--api-key-env", "REPLAY_KEY"] if key else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "replay-server printed nothing"
        yield json.loads(line)["url"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _ledger(base_url: str) -> dict:
    return json.load(urllib.request.urlopen(base_url.removesuffix("/v1") + "/ledger", timeout=5))


# ---- the examples as specs -----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_each_example_is_a_complete_openai_run_spec_that_syncs(name, tmp_path):
    spec = _spec(name)
    w = spec.workload
    assert w.executor == "openai" and w.tasks_file == "tasks.jsonl"
    assert w.options.get("api_key_env", "OPENAI_API_KEY") == KEYS[name]
    assert not spec.withheld_secrets() and "api_key" not in w.options   # the key is never in the file
    assert re.fullmatch(r"https?://[^/@?]+/v1", w.options["base_url"]), w.options["base_url"]
    assert (w.options["base_url"].startswith("https://") == (name == "hosted"))   # local servers: http
    tasks = spec.make_tasks()
    assert len(tasks) == w.tasks and all(t.metadata.get("expected") for t in tasks)
    ex = spec.make_executor()
    assert ex.api_key is None and ex.api_key_env == KEYS[name]
    p = plan(spec.with_overrides(bank=str(tmp_path / "bank")))
    assert p.consensus and p.expected_syncs > 0 and p.warnings == (), p.warnings
    assert [m.name for m in spec.router_config().models] == [m.name for m in spec.router.models]


def test_the_hosted_key_comes_only_from_the_named_variable(tmp_path, monkeypatch):
    """Flip the environment variable and the same spec is refused (401) or answered."""
    spec = _spec("hosted")
    model = _write_table(spec, tmp_path / "table")
    task = spec.make_tasks()[0]
    with _replay_server(tmp_path / "table", KEY) as url:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        refused = _pointed_at(spec, url).make_executor()(task, model, [])
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        answered = _pointed_at(spec, url).make_executor()(task, model, [])
        led = _ledger(url)
    assert refused.error_kind == "auth" and not refused.success
    assert answered.error_kind is None and answered.success
    assert answered.cost_usd > 0   # priced with the example's prices
    assert led["unauthorized"] == 1 and led["ok"] == 1


# ---- each example runs for real against the replay server -----------------------------------
@pytest.fixture(scope="module")
def ray_with_keys(start_local_ray):
    """A local Ray whose workers (the agent actors) have the examples' key variables set."""
    with start_local_ray(runtime_env={"env_vars": {"OPENAI_API_KEY": KEY, "VLLM_API_KEY": KEY}}) as ray:
        yield ray


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_example_runs_against_the_replay_server_with_only_its_url_changed(name, tmp_path, monkeypatch,
                                                                             ray_with_keys):
    from swarm_sona.app.commands.run import execute

    monkeypatch.setenv("SWARM_SONA_BANK_PATH", str(tmp_path / "bank"))   # where a default run keeps its bank
    spec = _spec(name)
    strongest = _write_table(spec, tmp_path / "table")
    with _replay_server(tmp_path / "table", KEY if KEYS[name] else None) as url:
        summary = execute(_pointed_at(spec, url), progress=False)
        led = _ledger(url)
    n = spec.workload.tasks
    assert summary["tasks"] == n and not summary.get("failed_tasks") and not summary["errors_by_kind"], summary
    assert summary["syncs"] > 0 and summary["patterns_stored"] > 0
    assert led["unauthorized"] == 0 and led["bad_requests"] == 0 and led["unknown_prompts"] == 0, led
    assert led["ok"] >= n and set(led["models"]) <= {m.name for m in spec.router.models}
    # the reward is the example's expected-answer check: a task succeeded exactly when the model that
    # answered it is the one the table has reply with the expected answers
    share = summary["routing_share"]
    assert summary["success_rate"] == pytest.approx(share.get(strongest, 0.0)), (summary["success_rate"], share)
    if name == "hosted":   # priced per token, within the example's budgets
        assert 0 < summary["spend_usd"] <= spec.budgets.run_usd
    else:
        assert summary["spend_usd"] == 0


# ---- docs/endpoints.md shows these files and commands that parse ----------------------------
def _fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.S | re.M)


def test_the_docs_page_shows_each_example_file_verbatim():
    text = DOC.read_text(encoding="utf-8")
    shown = {}
    for block in _fenced(text, "yaml"):
        m = re.match(r"# swarm-sona run (examples/endpoints/\w+\.yaml)\n", block)
        assert m, f"a YAML block of {DOC.name} that is not an example file:\n{block[:200]}"
        shown[m.group(1)] = block
    assert sorted(shown) == sorted(f"examples/endpoints/{n}.yaml" for n in NAMES)
    for path, block in shown.items():
        assert block == (ROOT / path).read_text(encoding="utf-8"), f"{DOC.name} shows an outdated {path}"


def test_the_docs_pages_swarm_sona_commands_parse_and_name_files_that_exist():
    cmds = [shlex.split(line.strip(), comments=True) for block in _fenced(DOC.read_text(encoding="utf-8"), "bash")
            for line in block.splitlines() if line.strip().startswith("swarm-sona ")]
    assert {c[1] for c in cmds} == {"run", "replay-server"} and any("--check" in c for c in cmds)
    for argv in cmds:
        build_parser(argv[1:]).parse_args(argv[1:])   # exits (SystemExit) on an unknown option
        for arg in argv[2:]:
            if arg.startswith(("examples/", "tests/")):
                assert (ROOT / arg).exists(), arg
    runs = {a for c in cmds if c[1] == "run" for a in c[2:] if a.endswith(".yaml")}
    assert runs >= {f"examples/endpoints/{n}.yaml" for n in NAMES}
