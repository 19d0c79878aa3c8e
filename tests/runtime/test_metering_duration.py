"""RunMeter's run duration: the seconds a swarm streamed tasks (tasks / it = a batch job's throughput)."""

from __future__ import annotations

from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
from swarm_sona.runtime.metering import RunMeter

RESULT = {"agent_id": "a", "model": "small", "success": True, "reward": 1.0, "cost_usd": 0.0}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _duration(tel: Telemetry) -> float | None:
    pts = tel.memory_metrics().get("swarm_sona.run.duration") or []
    return pts[0]["value"] if pts else None


def test_the_duration_counts_each_runs_stream_and_not_the_time_between_runs():
    tel, clock = Telemetry(TelemetryConfig(metrics_exporter="memory")), Clock()
    m = RunMeter(tel, clock=clock)
    try:
        m.run_started()
        clock.t += 0.5
        m.result(RESULT)
        m.batch_done(agent="a", retrieve_s=None)
        clock.t += 0.5
        m.batch_done(agent="a", retrieve_s=None)
        assert _duration(tel) == 1.0 and m.run_duration_s == 1.0
        clock.t += 60.0                      # idle between two runs of the same swarm
        m.run_started()
        clock.t += 2.0
        m.result(RESULT)
        m.batch_done(agent="a", retrieve_s=None)
        assert _duration(tel) == 3.0
    finally:
        tel.shutdown()


def test_without_run_started_the_stream_is_timed_from_the_first_result():
    tel, clock = Telemetry(TelemetryConfig(metrics_exporter="memory")), Clock()
    m = RunMeter(tel, clock=clock)
    try:
        clock.t += 30.0                      # e.g. the swarm's start-up: not streaming
        m.result(RESULT)
        m.batch_done(agent="a", retrieve_s=None)
        assert _duration(tel) is None        # 0 s so far: no gauge (tasks / 0 would be +Inf)
        clock.t += 0.25
        m.result(RESULT)
        m.batch_done(agent="a", retrieve_s=None)
        assert _duration(tel) == 0.25
    finally:
        tel.shutdown()
