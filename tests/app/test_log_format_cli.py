"""``--log-format json`` / ``SWARM_SONA_LOG_FORMAT=json``: the command's log records as JSON lines, and
the warnings a run logs inside a task's spans carry that task's trace id."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from swarm_sona.app.agent_defs import AgentDef, HookedExecutor
from swarm_sona.core.log_format import JsonLogFormatter
from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.sona import SONA
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.actors.agent_pipeline import PipelineSettings, TaskPipeline
from swarm_sona.runtime.actors.executor_shards import ExecutorShards

SCHEMA1 = Path(__file__).parents[1] / "data" / "schema1" / "swarm"


def _migrate(tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``swarm-sona -v OPTIONS migrate`` of a copy of the schema-1 checkpoints (it logs one INFO line per upgrade)."""
    d = tmp_path / f"swarm{len(list(tmp_path.iterdir()))}"
    shutil.copytree(SCHEMA1, d)
    code = "import sys; from swarm_sona.app.cli import main; sys.exit(main(sys.argv[1:]))"
    full = {k: v for k, v in os.environ.items() if k != "SWARM_SONA_LOG_FORMAT"} | (env or {})
    return subprocess.run([sys.executable, "-c", code, "-v", *options, "migrate", str(d)], capture_output=True,
                          text=True, timeout=120, env=full)


def test_the_log_format_option_flips_a_commands_stderr_between_text_and_json(tmp_path):
    text = _migrate(tmp_path)
    assert text.returncode == 0, text.stderr
    lines = text.stderr.splitlines()
    assert lines and all(line.startswith("swarm-sona: INFO swarm_sona.core.codec.migrate: migrated ") for line in lines)
    for run in (_migrate(tmp_path, "--log-format", "json"), _migrate(tmp_path, env={"SWARM_SONA_LOG_FORMAT": "json"})):
        assert run.returncode == 0, run.stderr
        recs = [json.loads(line) for line in run.stderr.splitlines()]   # every line is one JSON object
        assert len(recs) == len(lines)
        assert {r["level"] for r in recs} == {"INFO"} and {r["logger"] for r in recs} == {"swarm_sona.core.codec.migrate"}
        assert all(r["message"].startswith("migrated ") and "trace_id" not in r for r in recs)
    # the option wins over the environment
    back = _migrate(tmp_path, "--log-format", "text", env={"SWARM_SONA_LOG_FORMAT": "json"})
    assert back.stderr.splitlines()[0].startswith("swarm-sona: INFO ")


def test_a_bad_log_format_in_the_environment_is_a_usage_error(tmp_path):
    r = _migrate(tmp_path, env={"SWARM_SONA_LOG_FORMAT": "xml"})
    assert r.returncode == 2 and "SWARM_SONA_LOG_FORMAT='xml': not a log format" in r.stderr


def test_a_runs_hook_warnings_carry_the_trace_id_of_their_task(tmp_path):
    """The agent pipeline a run uses, tracing on: a failing post hook warns inside the task's
    ``execute`` span, and the JSON line has that task's trace id (each task is its own trace)."""
    ex = SimulatedExecutor(seed=0)
    sona = SONA(SONAConfig.from_dict({"dim": 64, "llm_router": {"models": ex.model_specs()}}))
    hooked = HookedExecutor(ex, AgentDef.from_dict({"id": "coder-1", "hooks": {"post": "exit 3"}}))
    tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("swarm_sona.app.agent_defs")
    logger.addHandler(handler)
    try:
        pipe = TaskPipeline(PipelineSettings("coder-1"), ExecutorShards(hooked), store=None, tel=tel)
        with tel.span("batch"):
            carrier = tel.inject()
        tasks = ex.tasks(3)
        pipe.run(sona, tasks, trace=carrier)
        spans = tel.memory_spans()
    finally:
        logger.removeHandler(handler)
        tel.shutdown()
    recs = [json.loads(line) for line in buf.getvalue().splitlines()]
    warned = [r for r in recs if r["level"] == "WARNING" and "post hook failed" in r["message"]]
    assert len(warned) == 3
    task_traces = {s.attributes["task.id"]: format(s.context.trace_id, "032x") for s in spans if s.name == "task"}
    executes = {format(s.context.span_id, "016x"): format(s.context.trace_id, "032x")
                for s in spans if s.name == "execute"}
    batch_trace = format(next(s for s in spans if s.name == "batch").context.trace_id, "032x")
    assert [r["trace_id"] for r in warned] == [task_traces[t.id] for t in tasks]   # in task order, one trace each
    assert all(executes[r["span_id"]] == r["trace_id"] for r in warned)           # logged in the execute span
    assert batch_trace not in {r["trace_id"] for r in warned}
