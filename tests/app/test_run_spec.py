"""Run specs: defaults, overrides, agents_dir, and bad specs failing before Ray starts."""

from __future__ import annotations

import json

import pytest

from swarm_sona.app.cli import main
from swarm_sona.app.run_spec import DEFAULT_AGENTS, RunSpec, load_tasks_file
from swarm_sona.core.config import ConfigError


def _ray_started() -> bool:
    import sys

    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def test_default_spec_is_the_hierarchical_demo_swarm():
    spec = RunSpec.default()
    cfg = spec.swarm_config()
    assert cfg.topology == "hierarchical"
    assert [a.id for a in cfg.coordinators] == ["queen-1"]
    assert [a.type for a in cfg.workers] == ["coder", "reviewer", "tester", "researcher"]
    assert [m.name for m in cfg.sona.llm_router.models] == ["small", "medium", "large"]
    assert spec.workload.executor == "simulated" and spec.workload.tasks == 2000
    assert cfg.shared_reasoning_bank and cfg.consensus_learning


def test_spec_file_round_trips_through_to_plain(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("topology: star\nagents:\n  - {name: hub, type: coordinator}\n  - {id: w1, type: coder, "
                 "hooks: {post: 'echo $REWARD'}}\n  - {id: w2}\nswarm: {mergeRule: median, batchSize: 64}\n"
                 "router: {strategy: quality}\nbudgets: {runUsd: 5, taskUsd: 0.05}\n"
                 "telemetry: {exporters: [memory]}\nseed: 3\n")
    spec = RunSpec.load(p)
    cfg = spec.swarm_config()
    assert cfg.merge_rule == "median" and cfg.batch_size == 64 and cfg.seed == 3
    assert cfg.sona.llm_router.run_budget == 5 and cfg.sona.llm_router.max_cost_per_task == 0.05
    assert cfg.sona.llm_router.strategy == "quality"
    assert spec.agents[1].hooks.post == "echo $REWARD"
    again = tmp_path / "again.json"
    again.write_text(json.dumps(spec.to_plain()))
    assert RunSpec.load(again).swarm_config() == cfg


def test_missing_agents_default_and_gossip_gets_no_queen():
    assert len(RunSpec.from_dict({"topology": "star"}).agents) == len(DEFAULT_AGENTS)
    ring = RunSpec.from_dict({"topology": "ring"})
    assert all(not a.is_coordinator for a in ring.agents) and len(ring.agents) == 4


def test_agents_dir_relative_to_the_spec(tmp_path):
    d = tmp_path / "agents"
    d.mkdir()
    (d / "q.md").write_text("---\nname: q\ntype: queen\n---\n")
    (d / "c.md").write_text("---\nname: c\ntype: coder\nhooks: {pre: 'true'}\n---\nCodes.\n")
    (tmp_path / "s.yaml").write_text("agents_dir: agents\n")
    spec = RunSpec.load(tmp_path / "s.yaml")
    assert [a.id for a in spec.agents] == ["c", "q"]
    assert spec.agents[0].description == "Codes."


def test_overrides_bank_url_or_path_tasks_seed(tmp_path):
    spec = RunSpec.default().with_overrides(tasks=10, seed=4, bank="https://q.example:6333")
    assert (spec.workload.tasks, spec.seed, spec.bank.backend, spec.bank.url) == (10, 4, "qdrant",
                                                                                   "https://q.example:6333")
    local = spec.with_overrides(bank=str(tmp_path / "bank"))
    assert (local.bank.backend, local.bank.path) == ("edge", str(tmp_path / "bank"))
    assert len(spec.make_tasks()) == 10


def test_tasks_file_cycles_with_distinct_task_ids(tmp_path):
    (tmp_path / "t.txt").write_text("one\ntwo\n\n")
    (tmp_path / "s.yaml").write_text("workload: {tasks: 5, tasksFile: t.txt}\n")
    tasks = RunSpec.load(tmp_path / "s.yaml").make_tasks()
    assert [t.text for t in tasks] == ["one", "two", "one", "two", "one"]
    assert len({t.id for t in tasks}) == 5
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: not a task object"):
        load_tasks_file(tmp_path / "bad.jsonl")


BAD = [
    ("topology: tree\n", r"topology: must be one of \['star', 'hierarchical', 'ring', 'mesh'\], got 'tree'"),
    ("agents:\n  - {type: coder}\n", r"agents\[0\]\.id: invalid agent id ''"),
    ("agents:\n  - {id: a}\n  - {type: tester, loraRank: 4}\n", r"agents\[1\]\.id: invalid agent id ''"),
    ("budgets: {runUsd: -5}\n", r"budgets\.run_usd: must be >= 0, got -5\.0"),
    ("budgets: {taskUsd: -0.1}\n", r"budgets\.task_usd: must be >= 0"),
    ("router: {models: [{name: x, cost: -1}]}\n", r"router\.models\.cost: must be >= 0"),
    ("bank: {backend: qdrant}\n", r"bank\.url: backend 'qdrant' needs a server url"),
    ("telemetry: {exporters: [zipkin]}\n", r"telemetry\.exporters: unknown exporter 'zipkin'"),
    ("workload: {tasks: 0}\n", r"workload\.tasks: must be >= 1"),
    ("workload: {executor: openai}\n", r"workload\.tasks_file: the openai executor needs a tasks_file"),
    ("swarm: {mergeRule: nonsense}\n", r"swarm\.merge_rule: "),
    ("swarm: {topology: star}\n", r"swarm: set 'topology' at the top level"),
    ("agents:\n  - {id: a, hooks: {timeout: -1}}\n", r"agents\[0\]\.hooks\.timeout_s: must be > 0"),
    ("agentz: []\n", r"unknown key 'agentz' \(did you mean 'agents'\?\)"),
    ("topology: ring\nagents: [{id: q, type: queen}, {id: w}]\n", r"agents: topology 'ring' has no coordinator"),
    ("agents_dir: nowhere\n", r"agents_dir: .*nowhere: not a directory"),
]


@pytest.mark.parametrize("text, reason", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_spec_names_file_field_reason_and_fails_before_ray(tmp_path, capsys, text, reason):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=reason) as ei:
        RunSpec.load(p)
    assert str(ei.value).startswith(f"{p}: ")
    assert main(["run", str(p), "--tasks", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"swarm-sona: error: {p}: ") and len(err.strip().splitlines()) == 1
    assert not _ray_started()


def test_bad_command_line_values_fail_before_ray(tmp_path, capsys):
    assert main(["run", "--tasks", "0"]) == 2
    assert "--tasks: must be >= 1" in capsys.readouterr().err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["run", "--tasks", "5", "--report", str(f)]) == 2
    assert "--report" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    assert not _ray_started()
