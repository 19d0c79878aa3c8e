"""Issue 19: one trace per task, linked to its batch span in the run's trace (telemetry.taskTraces)."""

from __future__ import annotations

import pytest

from swarm_sona.core import codec
from swarm_sona.core.telemetry import RUN_TRACE_ATTR, TRACE_KEY, Telemetry, TelemetryConfig

N = 12


def _run(task_traces: bool) -> list:
    """A driver's run -> batch span, an agent (relay mode, another 'process') running N tasks with
    route/execute/learn children as the agent actor does, its spans relayed back in the batch result."""
    driver = Telemetry(TelemetryConfig(traces_exporter="memory", task_traces=task_traces))
    agent = Telemetry(driver.config.to_dict(), relay=True)    # what SwarmSONA hands its agent actors
    with driver.span("run"):
        batch = driver.begin("batch", attributes={"tasks": N})
        envelope = codec.unpackb(codec.packb({TRACE_KEY: driver.inject(span=batch), "tasks": list(range(N))}))
        trace = envelope[TRACE_KEY]
        tasks = [agent.begin_task(parent=trace, attributes={"task.id": str(i)}) for i in envelope["tasks"]]
        for span in tasks:
            ctx = agent.inject(span=span)
            for child in ("route", "learn"):
                agent.begin(child, parent=ctx).end()
            with agent.span("execute", parent=ctx):
                pass
            span.end()
        result = codec.unpackb(codec.packb({"spans": agent.relay_drain()}))
        assert driver.relay_ingest(result["spans"]) == 4 * N
        batch.end()
    spans = driver.memory_spans()
    driver.shutdown()
    agent.shutdown()
    return spans


def test_n_tasks_give_n_traces_each_linked_to_its_batch_and_run():
    spans = _run(task_traces=True)
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    run, batch = by_name["run"][0], by_name["batch"][0]
    tasks = by_name["task"]
    task_traces = {t.context.trace_id for t in tasks}
    assert len(tasks) == N and len(task_traces) == N
    assert run.context.trace_id not in task_traces
    assert batch.context.trace_id == run.context.trace_id
    for t in tasks:
        assert t.parent is None                                   # the root of its own trace
        assert [ln.context.span_id for ln in t.links] == [batch.context.span_id]   # link survives the relay
        assert t.links[0].context.trace_id == run.context.trace_id
        assert t.attributes[RUN_TRACE_ATTR] == format(run.context.trace_id, "032x")
    # every child stays in its task's trace, under the task span
    task_ids = {t.context.span_id: t.context.trace_id for t in tasks}
    for name in ("route", "execute", "learn"):
        assert len(by_name[name]) == N
        for s in by_name[name]:
            assert task_ids[s.parent.span_id] == s.context.trace_id
    # the run's trace is small now: run + batch (was run + batch + 4 N)
    assert sum(s.context.trace_id == run.context.trace_id for s in spans) == 2


def test_task_traces_off_keeps_one_trace_per_run():
    spans = _run(task_traces=False)
    assert len({s.context.trace_id for s in spans}) == 1
    batch = next(s for s in spans if s.name == "batch")
    tasks = [s for s in spans if s.name == "task"]
    assert len(tasks) == N and all(t.parent.span_id == batch.context.span_id and not t.links for t in tasks)
    assert all(RUN_TRACE_ATTR not in t.attributes for t in tasks)


def test_task_span_without_a_carrier_is_a_plain_root_and_off_is_a_noop():
    with Telemetry(TelemetryConfig(traces_exporter="memory")) as tel:
        tel.begin_task(attributes={"task.id": "t"}).end()
        (s,) = tel.memory_spans()
        assert s.parent is None and not s.links and RUN_TRACE_ATTR not in s.attributes
    off = Telemetry(TelemetryConfig(enabled=False))
    span = off.begin_task(parent={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    assert not span.is_recording()


@pytest.mark.parametrize("value,expected", [(None, True), (False, False)])
def test_task_traces_reads_from_the_spec_key(value, expected):
    data = {} if value is None else {"taskTraces": value}
    assert TelemetryConfig.from_dict(data).task_traces is expected
