"""Agent definitions (Markdown + YAML front matter) and the hook runner."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from swarm_sona.app.agent_defs import (
    AgentDef,
    HookedExecutor,
    HookRunner,
    HooksConfig,
    load_agent_file,
    load_agents_dir,
    parse_agent_markdown,
)
from swarm_sona.core.config import ConfigError
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.runtime.config import AgentSpec

CODER = """---
name: coder-1
type: coder
capabilities: [python, refactoring]
loraRank: 16
hooks:
  pre: echo "pre $AGENT_ID $TASK_TYPE"
  post: echo "$TASK|$OUTPUT|$REWARD|$SUCCESS|$MODEL" > "$HOOK_LOG"
  timeout: 5
---
# Coder

Writes and refactors code.
"""


def _agent(**hooks) -> AgentDef:
    return AgentDef(AgentSpec(id="w"), HooksConfig(**hooks))


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text, encoding="utf-8")
    return p


def test_markdown_agent_file_loads_every_field(tmp_path):
    a = load_agent_file(_write(tmp_path, "coder.md", CODER))
    assert (a.id, a.type, a.spec.capabilities, a.spec.lora_rank) == ("coder-1", "coder", ("python", "refactoring"), 16)
    assert a.hooks.timeout_s == 5.0 and a.hooks.pre.startswith("echo")
    assert a.description.startswith("# Coder") and "refactors" in a.description
    assert a.source == str(tmp_path / "coder.md")
    assert a.to_swarm_agent() == {"id": "coder-1", "type": "coder", "lora_rank": 16,
                                  "capabilities": ["python", "refactoring"], "description": a.description}


def test_agents_dir_loads_sorted_and_skips_readme(tmp_path):
    _write(tmp_path, "b.md", "---\nname: b\ntype: tester\n---\n")
    _write(tmp_path, "a.md", "---\nid: a\ntype: queen\n---\n")
    _write(tmp_path, "README.md", "not an agent")
    _write(tmp_path, "notes.txt", "ignored")
    agents = load_agents_dir(tmp_path)
    assert [x.id for x in agents] == ["a", "b"]
    assert agents[0].is_coordinator and not agents[1].is_coordinator


@pytest.mark.parametrize("text, match", [
    ("name: x\n", r"no YAML front matter"),
    ("---\nname: x\n", r"not closed"),
    ("---\nname: [x\n---\n", r"cannot parse the front matter"),
    ("---\n- a\n- b\n---\n", r"must be a mapping"),
    ("---\ntype: coder\n---\nbody\n", r"agent\.id: invalid agent id ''"),
    ("---\nname: 'bad id!'\n---\n", r"agent\.id: invalid agent id 'bad id!'"),
    ("---\nname: x\nloraRank: -1\n---\n", r"agent\.lora_rank: must be >= 1"),
    ("---\nname: x\nhooks: {pre: ''}\n---\n", r"hooks\.pre: a hook must be a non-empty"),
    ("---\nname: x\nhooks: {timeout: 0}\n---\n", r"hooks\.timeout_s: must be > 0"),
    ("---\nname: x\ncapabilities: python\n---\n", r"agent\.capabilities: expected a list"),
    ("---\nname: x\ncolour: red\n---\n", r"unknown key 'colour'"),
])
def test_bad_agent_files_name_file_field_and_reason(tmp_path, text, match):
    p = _write(tmp_path, "bad.md", text)
    with pytest.raises(ConfigError, match=match) as ei:
        load_agent_file(p)
    assert str(p) in str(ei.value)


def test_duplicate_ids_and_empty_dirs_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="no agent files"):
        load_agents_dir(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        load_agents_dir(tmp_path / "missing")
    _write(tmp_path, "a.md", "---\nname: same\n---\n")
    _write(tmp_path, "b.md", "---\nname: same\n---\n")
    with pytest.raises(ConfigError, match=r"b\.md: id: duplicate agent id 'same' \(also in .*a\.md\)"):
        load_agents_dir(tmp_path)


def test_hooks_see_task_and_outcome_in_their_environment(tmp_path):
    log = tmp_path / "hook.log"
    agent = parse_agent_markdown(CODER, source="coder.md")
    runner = HookRunner(agent, {"HOOK_LOG": str(log)})
    task = Task("fix the parser", task_type="code")
    pre = runner.pre(task)
    assert pre.ok and pre.stdout.strip() == "pre coder-1 code"
    post = runner.post(task, Outcome("patched", 0.75, True, cost_usd=0.01), model="big")
    assert post.ok, post.summary()
    assert log.read_text().strip() == "fix the parser|patched|0.75|true|big"
    assert (runner.runs, runner.failures) == (2, 0)


def test_failing_hooks_are_reported_and_the_task_still_runs(tmp_path, caplog):
    calls = []

    def inner(task, model, patterns):
        calls.append(task.text)
        return Outcome("out", 0.0, False)

    agent = _agent(pre="echo boom >&2; exit 2", post="no-such-command-xyz")
    ex = HookedExecutor(inner, agent)
    with caplog.at_level("WARNING"):
        out = ex(Task("t1"), "small", [])
        out2 = ex(Task("t2"), "small", [])
    assert calls == ["t1", "t2"]
    assert out.success is False and out2.output == "out"
    assert out.metadata["hook_errors"] == ["pre hook failed: exit 2: boom",
                                           out.metadata["hook_errors"][1]]
    assert "command not found" in out.metadata["hook_errors"][1]
    assert ex.runner.failures == 4
    assert "agent w: pre hook failed" in caplog.text


def test_hook_timeout_kills_the_whole_process_group(tmp_path):
    marker = tmp_path / "survived"
    agent = _agent(pre=f"(sleep 3; touch {marker}) & sleep 30", timeout_s=0.3)
    t0 = time.monotonic()
    res = HookRunner(agent).pre(Task("t"))
    assert time.monotonic() - t0 < 5
    assert not res.ok and "timed out after 0.3 s" in res.error
    time.sleep(3.5)
    assert not marker.exists()          # the background child was killed with the group


def test_missing_hook_cwd_is_reported_not_raised(tmp_path):
    agent = _agent(pre="true", cwd=str(tmp_path / "nope"))
    res = HookRunner(agent).pre(Task("t"))
    assert not res.ok and res.error.startswith("cannot start")


class _Inner:
    seed = 7

    def __call__(self, task, model, patterns):
        return Outcome("x", 1.0, True)


def test_hooked_executor_pickles_and_delegates_attributes():
    ex = HookedExecutor(_Inner(), _agent())
    clone = pickle.loads(pickle.dumps(ex))
    assert clone.seed == 7 and clone(Task("t"), "m", []).metadata == {}
    assert not clone.runner.active


def test_long_values_are_clipped_to_fit_the_environment(tmp_path):
    agent = _agent(pre='printf %s "$TASK" | wc -c')
    res = HookRunner(agent).pre(Task("x" * 300_000))
    assert res.ok and int(res.stdout.strip()) == 64 * 1024


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_agents_load_with_built_in_actions_instead_of_a_process_per_task(tmp_path, monkeypatch):
    from swarm_sona.app.agent_defs import HookedExecutor
    from swarm_sona.app.run_spec import RunSpec
    from swarm_sona.core.executor import Outcome

    spec = RunSpec.load(EXAMPLES / "spec.yaml")
    assert {a.type for a in spec.agents} == {"coordinator", "coder", "reviewer", "tester", "researcher"}
    by_id = {a.id: a for a in spec.agents}
    coder, researcher = by_id["coder-1"].hooks, by_id["researcher-1"].hooks
    assert coder.retrieve is not None and coder.retrieve.k == 3 and coder.retrieve.min_reward == 0.5
    assert researcher.store is not None and not researcher.post and not coder.pre
    # no agent starts swarm-sona (a Python process) per task any more
    assert not any(cmd and "swarm-sona" in cmd for a in spec.agents for cmd in (a.hooks.pre, a.hooks.post))
    monkeypatch.setenv("SWARM_SONA_FINDINGS", str(tmp_path / "findings"))
    monkeypatch.setenv("SWARM_SONA_NOTES", str(tmp_path / "findings"))   # the coder reads what was found
    inner = lambda task, model, patterns: Outcome(f"answer to {task.text}", 0.8, True)   # noqa: E731
    researcher_ex = HookedExecutor(inner, by_id["researcher-1"])
    researcher_ex(Task("survey parsers"), "small", [])
    researcher_ex.builtin.close()   # one open handle per embedded bank: the coder opens it next
    t = Task("survey parsers again")
    out = HookedExecutor(inner, by_id["coder-1"])(t, "small", [])
    assert "hook_errors" not in out.metadata
    assert [p["output"] for p in t.metadata["hook_patterns"]] == ["answer to survey parsers"]


def test_built_in_action_failures_are_reported_like_hook_failures(tmp_path):
    from swarm_sona.app.agent_defs import HookedExecutor
    from swarm_sona.core.executor import Outcome

    (tmp_path / "file").write_text("not a bank")
    agent = AgentDef.from_dict({"id": "a", "hooks": {"store": {"bank": str(tmp_path / "file")}}})
    ex = HookedExecutor(lambda task, model, patterns: Outcome("o", 1.0, True), agent)
    out = ex(Task("t"), "small", [])
    assert out.success and out.metadata["hook_errors"][0].startswith("store action failed: ")
    assert ex.runner.failures == 1
    with pytest.raises(ConfigError, match="hooks.retrieve.bank: 'run' or a bank directory is needed"):
        AgentDef.from_dict({"id": "a", "hooks": {"retrieve": {"bank": " ", "k": 2}}})
    # no bank: the run's bank, which an executor outside a swarm does not have (reported, not raised)
    run = AgentDef.from_dict({"id": "a", "hooks": {"retrieve": {"k": 2}}})
    assert run.hooks.retrieve is not None and run.hooks.retrieve.bank == "run"
    t = Task("t")
    out = HookedExecutor(lambda task, model, patterns: Outcome("o", 1.0, True), run)(t, "small", [])
    assert out.metadata["hook_errors"] == ["retrieve action failed: RuntimeError: retrieve action: bank 'run' but "
                                           "there is no run's bank here (outside a swarm, or a swarm without a "
                                           "bank); give the action a bank directory"]
    with pytest.raises(ConfigError, match="hooks.retrieve.k"):
        AgentDef.from_dict({"id": "a", "hooks": {"retrieve": {"bank": "/b", "k": 0}}})


def test_closing_a_hooked_executor_records_its_banks_and_closes_the_inner_one(tmp_path):
    from swarm_sona.app.report import bank_count

    class Inner:
        closed = 0

        def __call__(self, task, model, patterns):
            return Outcome("done", 0.9, True)

        def close(self):
            self.closed += 1

    agent = AgentDef.from_dict({"id": "a", "hooks": {"store": {"bank": str(tmp_path / "notes")}}})
    ex = HookedExecutor(inner := Inner(), agent)
    ex(Task("write the notes"), "small", [])
    ex.close()
    assert bank_count(tmp_path / "notes") == 1 and inner.closed == 1
