"""Issue 19: metric label values stay bounded at 64+ agents (telemetry.maxLabelValues, then 'other')."""

from __future__ import annotations

import logging
import urllib.request

import pytest

from swarm_sona.core.config import ConfigError
from swarm_sona.core.telemetry import OTHER, LabelBound, Telemetry, TelemetryConfig
from swarm_sona.runtime.metering import RunMeter

AGENTS = [f"coder-{i}" for i in range(100)]
MODELS = ("small", "large")


def _run_100_agents(tel: Telemetry) -> None:
    """Two results per agent through RunMeter (as SwarmSONA.run feeds it), then one stats snapshot."""
    meter = RunMeter(tel)
    for i, agent in enumerate(AGENTS):
        for model in MODELS:
            meter.result({"agent_id": agent, "model": model, "success": i % 2 == 0, "reward": 0.5,
                          "cost_usd": 0.001, "learn_s": 1e-5})
        meter.batch_done(agent=agent, retrieve_s=2e-4)
    meter.snapshot({"agents": {a: {"engine": {"micro_norm": 1.0, "ewc": {"last_penalty": 0.1}}, "version": 1}
                               for a in AGENTS},
                    "coordinators": {"c0": {"version": 2}}, "bank": {"count": 7}})


def _series(tel: Telemetry) -> tuple[int, set[str], dict[str, list[dict]]]:
    pts = tel.memory_metrics()
    agents = {str(p["attributes"]["agent"]) for ps in pts.values() for p in ps if "agent" in p["attributes"]}
    return sum(len(ps) for ps in pts.values()), agents, pts


@pytest.mark.parametrize("cap", [64, 16])
def test_series_stay_bounded_at_100_agents_and_the_cap_sets_the_bound(cap):
    with Telemetry(TelemetryConfig(metrics_exporter="memory", max_label_values=cap)) as tel:
        _run_100_agents(tel)
        total, agents, pts = _series(tel)
        assert agents == set(AGENTS[:cap]) | {OTHER}          # the first `cap` agents seen, then one bucket
        # tasks: (cap + 1) agents x 2 models x 2 success values at most; nothing is lost in the bucket
        assert len(pts["swarm_sona.tasks"]) <= (cap + 1) * 2 * 2
        assert sum(p["value"] for p in pts["swarm_sona.tasks"]) == 200
        other = [p for p in pts["swarm_sona.tasks"] if p["attributes"]["agent"] == OTHER]
        assert sum(p["value"] for p in other) == 2 * (100 - cap)
        assert sum(p["count"] for p in pts["swarm_sona.learn.duration"]) == 200
        assert len(pts["swarm_sona.adapter.norm"]) == cap + 1
        assert tel.labels.overflow["agent"] > 0 and "model" not in tel.labels.overflow
    with Telemetry(TelemetryConfig(metrics_exporter="memory", max_label_values=0)) as unbounded:
        _run_100_agents(unbounded)
        total_unbounded, agents_unbounded, _ = _series(unbounded)
    assert agents_unbounded == set(AGENTS)
    assert total < total_unbounded


def test_cap_changes_the_exported_series_count():
    counts = {}
    for cap in (64, 8):
        with Telemetry(TelemetryConfig(metrics_exporter="memory", max_label_values=cap)) as tel:
            _run_100_agents(tel)
            counts[cap] = _series(tel)[0]
    assert counts[8] < counts[64]


def test_prometheus_endpoint_exports_a_bounded_number_of_agent_series():
    with Telemetry(TelemetryConfig(metrics_exporter="prometheus", prometheus_port=0, max_label_values=64)) as tel:
        _run_100_agents(tel)
        assert tel.prometheus_url is not None
        text = urllib.request.urlopen(tel.prometheus_url, timeout=5).read().decode()
    norm = [ln for ln in text.splitlines() if ln.startswith("swarm_sona_adapter_norm{")]
    assert len(norm) == 65 and sum('agent="other"' in ln for ln in norm) == 1


def test_model_shares_past_the_cap_add_up_under_other():
    with Telemetry(TelemetryConfig(metrics_exporter="memory", max_label_values=2)) as tel:
        tel.set_routing_share({"a": 0.4, "b": 0.3, "c": 0.2, "d": 0.1})
        shares = {p["attributes"]["model"]: p["value"] for p in tel.memory_metrics()["swarm_sona.router.share"]}
    assert shares.keys() == {"a", "b", OTHER} and shares[OTHER] == pytest.approx(0.3)


def test_first_overflow_of_a_label_warns_once(caplog):
    bound = LabelBound(1)
    with caplog.at_level(logging.WARNING, logger="swarm_sona.core.telemetry"):
        assert [bound("agent", a) for a in ("a", "b", "c", "a")] == ["a", OTHER, OTHER, "a"]
    assert len([r for r in caplog.records if "maxLabelValues" in r.getMessage()]) == 1
    assert bound.overflow == {"agent": 2} and bound.values("agent") == {"a"}


@pytest.mark.parametrize("bad", [-1, 2_000_000, "many"])
def test_bad_cap_is_a_config_error_naming_the_field(bad):
    with pytest.raises(ConfigError, match="max_label_values"):
        TelemetryConfig(max_label_values=bad)
    with pytest.raises(ValueError, match="cap"):
        LabelBound(-1)


def test_cap_reads_from_the_spec_key():
    assert TelemetryConfig.from_dict({"maxLabelValues": 10}).max_label_values == 10


def test_snapshot_summarises_the_agents_past_the_cap_in_other():
    agents = {a: {"engine": {"micro_norm": float(i), "ewc": {"last_penalty": 1.0}}, "version": i}
              for i, a in enumerate(AGENTS)}
    stats = {"agents": agents, "coordinators": {"c0": {"version": 100}}}
    with Telemetry(TelemetryConfig(metrics_exporter="memory", max_label_values=64)) as tel:
        RunMeter(tel).snapshot(stats)
        pts = tel.memory_metrics()
        overflow = dict(tel.labels.overflow)
    lag = {p["attributes"]["agent"]: p["value"] for p in pts["swarm_sona.merge.lag"]}
    norm = {p["attributes"]["agent"]: p["value"] for p in pts["swarm_sona.adapter.norm"]}
    assert len(lag) == len(norm) == 65
    assert lag["coder-0"] == 100 and lag[OTHER] == 100 - 64          # the largest lag of coder-64..99
    assert norm["coder-3"] == 3.0 and norm[OTHER] == pytest.approx(sum(range(64, 100)) / 36)   # their mean
    assert overflow == {"agent": 36}                                   # 'other' itself is not counted again
