"""Telemetry: config/env resolution, the no-op path, trace context across msgpack envelopes,
span relay from actor processes, metric values, the Prometheus endpoint."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request

import pytest

from swarm_sona.core import codec
from swarm_sona.core.config import ConfigError
from swarm_sona.core.telemetry import (
    METRICS,
    SPAN_NAMES,
    TRACE_KEY,
    Telemetry,
    TelemetryConfig,
    prometheus_name,
)


# ---- config ----------------------------------------------------------------------------
def test_config_defaults_to_off_without_exporters():
    cfg = TelemetryConfig().resolve({})
    assert cfg.enabled is False and cfg.traces_exporter == () and cfg.metrics_exporter == ()
    assert cfg.prometheus_host == "127.0.0.1" and cfg.prometheus_port == 9464
    assert cfg.service_name == "swarm-sona" and cfg.otlp_protocol == "grpc"


def test_config_reads_standard_env_vars():
    env = {"OTEL_TRACES_EXPORTER": "console,otlp", "OTEL_METRICS_EXPORTER": "prometheus",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
           "OTEL_EXPORTER_PROMETHEUS_PORT": "9999", "OTEL_SERVICE_NAME": "job-7",
           "OTEL_METRIC_EXPORT_INTERVAL": "2500"}
    cfg = TelemetryConfig().resolve(env)
    assert cfg.traces_exporter == ("console", "otlp")
    assert cfg.metrics_exporter == ("prometheus",)
    assert (cfg.otlp_protocol, cfg.otlp_endpoint) == ("http/protobuf", "http://c:4318")
    assert (cfg.prometheus_port, cfg.service_name, cfg.metric_interval_s) == (9999, "job-7", 2.5)


def test_config_fields_override_env_and_sdk_disabled_wins():
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "otlp"}
    cfg = TelemetryConfig(exporters=["memory", "prometheus"]).resolve(env)
    assert cfg.traces_exporter == ("memory",)          # prometheus is metrics-only
    assert cfg.metrics_exporter == ("memory", "prometheus")
    assert TelemetryConfig(exporters="memory").resolve({"OTEL_SDK_DISABLED": "true"}).enabled is False
    assert TelemetryConfig(exporters="memory", enabled=False).resolve({}).metrics_exporter == ()


@pytest.mark.parametrize("data, field", [
    ({"exporters": ["jaeger"]}, "telemetry.exporters"),
    ({"tracesExporter": "prometheus"}, "telemetry.traces_exporter"),
    ({"otlpProtocol": "udp"}, "telemetry.otlp_protocol"),
    ({"prometheusPort": 70000}, "telemetry.prometheus_port"),
    ({"sampleRatio": 2}, "telemetry.sample_ratio"),
])
def test_bad_config_names_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        TelemetryConfig.from_dict(data)


def test_unknown_exporter_in_env_is_an_error():
    with pytest.raises(ConfigError, match="OTEL|environment"):
        TelemetryConfig().resolve({"OTEL_METRICS_EXPORTER": "statsd"})


# ---- no-op path --------------------------------------------------------------------------
def test_off_is_inert():
    tel = Telemetry(TelemetryConfig(enabled=False))
    assert not tel.enabled and not tel.tracing and not tel.metering
    with tel.span("task", attributes={"a": 1}) as sp:
        sp.set_attribute("x", 1)
        assert not sp.is_recording()
    env = tel.attach_trace({"kind": "batch"})
    assert TRACE_KEY not in env and tel.inject() == {}
    tel.record_task(agent="a", model="m", success=True, reward=1.0, cost_usd=0.1)
    tel.set_bank_size(3)
    assert tel.relay_drain() == [] and tel.relay_ingest([{"name": "x"}]) == 0
    with pytest.raises(ConfigError, match="memory"):
        tel.memory_spans()
    tel.shutdown()


# ---- spans across processes ---------------------------------------------------------------
def _tree(spans):
    by_id = {s.context.span_id: s for s in spans}
    edges = set()
    for s in spans:
        if s.parent is not None and s.parent.span_id in by_id:
            edges.add((by_id[s.parent.span_id].name, s.name))
    return edges


def test_trace_spans_driver_agent_coordinator_through_msgpack_envelopes():
    cfg = TelemetryConfig(exporters="memory")
    driver = Telemetry(cfg, attributes={"swarm_sona.role": "driver"})
    agent = Telemetry(cfg, relay=True, attributes={"swarm_sona.role": "agent", "swarm_sona.agent": "coder-1"})
    coord = Telemetry(cfg, relay=True, attributes={"swarm_sona.role": "coordinator"})
    try:
        # driver -> agent: a batch envelope, msgpack-framed as the actors send it
        with driver.span("run"), driver.span("batch", attributes={"agent": "coder-1"}):
            wire = codec.pack_frame("batch", driver.attach_trace({"tasks": ["t1"]}))
        _, env = codec.unpack_frame(wire, expect_kind="batch")
        with agent.span("task", parent=env[TRACE_KEY], attributes={"task.id": "t1"}):
            with agent.span("retrieve"), agent.span("route"), agent.span("execute"):
                pass
            with agent.span("learn"):
                pass
        with agent.span("background", parent=env[TRACE_KEY]), agent.span("push"):
            push = codec.pack_frame("delta", agent.attach_trace({"agent": "coder-1", "version": 1}))
        _, delta = codec.unpack_frame(push, expect_kind="delta")
        with coord.span("merge", parent=delta[TRACE_KEY]):
            with coord.span("consolidate"), coord.span("checkpoint"):
                pass
        # coordinator spans go back to the agent (e.g. in the broadcast reply) and on to the driver
        agent.relay_ingest(codec.unpackb(codec.packb(coord.relay_drain())))
        relayed = codec.unpackb(codec.packb(agent.relay_drain()))
        assert driver.relay_ingest(relayed) == len(relayed) == 10
        spans = driver.memory_spans()
    finally:
        for t in (driver, agent, coord):
            t.shutdown()
    assert {s.name for s in spans} <= set(SPAN_NAMES)
    assert len({s.context.trace_id for s in spans}) == 1          # one trace across three processes
    edges = _tree(spans)
    assert {("run", "batch"), ("batch", "task"), ("task", "learn"), ("task", "retrieve"),
            ("batch", "background"), ("background", "push"), ("push", "merge"),
            ("merge", "consolidate")} <= edges
    by_name = {s.name: s for s in spans}
    assert by_name["task"].resource.attributes["swarm_sona.agent"] == "coder-1"
    assert by_name["merge"].resource.attributes["swarm_sona.role"] == "coordinator"
    assert by_name["task"].attributes["task.id"] == "t1"
    assert by_name["learn"].end_time >= by_name["learn"].start_time > 0


def test_begin_spans_an_asynchronous_call():
    tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    with tel.span("run"):
        batch = tel.begin("batch", attributes={"agent": "a"})
    carrier = tel.inject(span=batch)
    with tel.span("task", parent=carrier):
        pass
    batch.end()
    spans = {s.name: s for s in tel.memory_spans()}
    assert spans["batch"].parent.span_id == spans["run"].context.span_id
    assert spans["task"].parent.span_id == spans["batch"].context.span_id
    off = Telemetry(TelemetryConfig(enabled=False))
    sp = off.begin("batch")
    assert off.inject(span=sp) == {} and sp.end() is None
    tel.shutdown()


def test_relay_buffer_is_bounded_and_drained_once():
    tel = Telemetry(TelemetryConfig(traces_exporter="memory", relay_max_spans=3), relay=True)
    for _ in range(5):
        with tel.span("task"):
            pass
    assert len(tel.relay_drain()) == 3
    assert tel.relay_drain() == []
    tel.shutdown()


def test_malformed_relayed_span_is_skipped():
    tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    assert tel.relay_ingest([{"name": "task"}, {"trace_id": "zz"}]) == 0
    assert tel.memory_spans() == []
    tel.shutdown()


def test_exception_marks_span_as_error():
    tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    with pytest.raises(RuntimeError), tel.span("execute"):
        raise RuntimeError("executor down")
    (span,) = tel.memory_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.events[0].name == "exception"
    tel.shutdown()


# ---- metrics ------------------------------------------------------------------------------
def test_metric_values():
    tel = Telemetry(TelemetryConfig(metrics_exporter="memory"))
    outcomes = [("coder", "small", True, 1.0, 0.001), ("coder", "big", False, 0.2, 0.03),
                ("tester", "small", True, 0.9, 0.001)]
    for agent, model, ok, reward, cost in outcomes:
        tel.record_task(agent=agent, model=model, success=ok, reward=reward, cost_usd=cost)
        tel.record_learning(8e-6, agent=agent)
        tel.record_retrieval(3e-4, agent=agent)
    tel.set_success_rate(2 / 3)
    tel.set_routing_share({"small": 2 / 3, "big": 1 / 3})
    tel.set_bank_size(42)
    tel.set_adapter_norm(0.5, agent="coder")
    tel.set_ewc_penalty(0.25, agent="coder")
    tel.set_merge_lag(2, agent="coder")
    tel.set_run_duration(1.5)
    m = tel.memory_metrics()
    tel.shutdown()
    assert set(m) == set(METRICS)
    assert [p["value"] for p in m["swarm_sona.run.duration"]] == [1.5]
    assert sum(p["value"] for p in m["swarm_sona.tasks"]) == 3
    ok = sum(p["value"] for p in m["swarm_sona.tasks"] if p["attributes"]["success"])
    assert ok == 2
    assert sum(p["value"] for p in m["swarm_sona.cost"]) == pytest.approx(0.032)
    decisions = {p["attributes"]["model"]: 0 for p in m["swarm_sona.router.decisions"]}
    for p in m["swarm_sona.router.decisions"]:
        decisions[p["attributes"]["model"]] += p["value"]
    assert decisions == {"small": 2, "big": 1}
    assert sum(p["sum"] for p in m["swarm_sona.reward"]) == pytest.approx(2.1)
    learn = m["swarm_sona.learn.duration"]
    assert sum(p["count"] for p in learn) == 3
    # the latency histogram resolves microseconds: 8 us lands in the (5 us, 10 us] bucket
    bucket = learn[0]["bounds"].index(1e-5)
    assert learn[0]["bucket_counts"][bucket] == learn[0]["count"]
    assert m["swarm_sona.success_rate"][0]["value"] == pytest.approx(2 / 3)
    assert {p["attributes"]["model"]: p["value"] for p in m["swarm_sona.router.share"]} == pytest.approx(
        {"small": 2 / 3, "big": 1 / 3})
    assert m["swarm_sona.bank.size"][0]["value"] == 42
    assert m["swarm_sona.adapter.norm"][0] == {"attributes": {"agent": "coder"}, "value": 0.5}
    assert m["swarm_sona.ewc.penalty"][0]["value"] == 0.25
    assert m["swarm_sona.merge.lag"][0] == {"attributes": {"agent": "coder"}, "value": 2}


def test_relay_mode_records_no_metrics():
    tel = Telemetry(TelemetryConfig(exporters="memory"), relay=True)
    assert tel.tracing and not tel.metering
    tel.shutdown()


def test_prometheus_endpoint_listens_on_loopback_with_otel_names():
    # every instrument's published name is checked against a real scrape in test_cluster_manifests
    tel = Telemetry(TelemetryConfig(metrics_exporter="prometheus", prometheus_port=0))
    try:
        assert tel.prometheus_url.startswith("http://127.0.0.1:")
        tel.record_task(agent="a", model="m", success=True, reward=1.0, cost_usd=0.5)
        text = urllib.request.urlopen(tel.prometheus_url, timeout=5).read().decode()
    finally:
        tel.shutdown()
    assert 'swarm_sona_cost_total{agent="a",model="m"' in text
    assert 'swarm_sona_tasks_total{agent="a",model="m"' in text and 'success="true"' in text
    assert prometheus_name("swarm_sona.reward", "count") in text


def test_prometheus_port_in_use_is_a_config_error():
    first = Telemetry(TelemetryConfig(metrics_exporter="prometheus", prometheus_port=0))
    try:
        port = int(first.prometheus_url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(ConfigError, match="prometheus_port"):
            Telemetry(TelemetryConfig(metrics_exporter="prometheus", prometheus_port=port))
    finally:
        first.shutdown()


def _loopback_server(handler: type) -> tuple[http.server.ThreadingHTTPServer, str]:
    """An ``http.server`` serving ``handler`` on 127.0.0.1 in a thread, and its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class _FakeCollector:
    """A tiny OTLP collector on 127.0.0.1 (HTTP/protobuf or gRPC) that keeps what it receives."""

    def __init__(self, protocol: str):
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

        self.span_names: list[str] = []
        self.metric_names: set[str] = set()
        self.protocol = protocol
        collector = self

        def got_traces(req):
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    collector.span_names += [s.name for s in ss.spans]

        def got_metrics(req):
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    collector.metric_names |= {m.name for m in sm.metrics}

        if protocol == "grpc":
            from concurrent import futures

            import grpc
            from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

            class T(tgrpc.TraceServiceServicer):
                def Export(self, request, context):
                    got_traces(request)
                    return tpb.ExportTraceServiceResponse()

            class M(mgrpc.MetricsServiceServicer):
                def Export(self, request, context):
                    got_metrics(request)
                    return mpb.ExportMetricsServiceResponse()

            self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            tgrpc.add_TraceServiceServicer_to_server(T(), self.server)
            mgrpc.add_MetricsServiceServicer_to_server(M(), self.server)
            port = self.server.add_insecure_port("127.0.0.1:0")
            self.server.start()
            self.endpoint = f"http://127.0.0.1:{port}"
        else:
            class H(http.server.BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    if self.path == "/v1/traces":
                        req = tpb.ExportTraceServiceRequest()
                        req.ParseFromString(body)
                        got_traces(req)
                    else:
                        req = mpb.ExportMetricsServiceRequest()
                        req.ParseFromString(body)
                        got_metrics(req)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-protobuf")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *a):
                    pass

            self.server, self.endpoint = _loopback_server(H)

    def close(self):
        if self.protocol == "grpc":
            self.server.stop(0)
        else:
            self.server.shutdown()
            self.server.server_close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_export_reaches_a_collector(protocol):
    collector = _FakeCollector(protocol)
    try:
        tel = Telemetry(TelemetryConfig(exporters="otlp", otlp_protocol=protocol, otlp_endpoint=collector.endpoint,
                                        metric_interval_s=3600))
        with tel.span("task"), tel.span("learn"):
            tel.record_learning(1e-5, agent="a")
        tel.flush()
        tel.shutdown()
    finally:
        collector.close()
    assert collector.span_names == ["learn", "task"]
    assert "swarm_sona.learn.duration" in collector.metric_names


# ---- Pushgateway push (batch jobs) ---------------------------------------------------------
class _FakePushgateway:
    """Records the PUTs a Pushgateway would receive (path and body)."""

    def __init__(self):
        got = self.got = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_PUT(self):
                got.append((self.path, self.rfile.read(int(self.headers["Content-Length"])).decode()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server, self.url = _loopback_server(H)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])   # closed again once the with block ends


def test_push_url_config_is_validated_and_turns_metrics_on():
    cfg = TelemetryConfig.from_dict({"pushUrl": "127.0.0.1:9091"}).resolve({})
    assert cfg.push_url == "http://127.0.0.1:9091" and cfg.enabled
    assert TelemetryConfig().resolve({}).enabled is False
    assert TelemetryConfig(push_url="http://p:9091", enabled=False).resolve({}).push_url is None
    for bad in ("ftp://p:9091", "http://", "http://p:notaport", "http://p:9091/?x=1", ""):
        with pytest.raises(ConfigError, match=r"telemetry\.push_url"):
            TelemetryConfig(push_url=bad)
    with pytest.raises(ConfigError, match=r"telemetry\.push_interval_s"):
        TelemetryConfig(push_url="http://p:9091", push_interval_s=0)


def test_push_sends_the_metrics_periodically_and_at_shutdown():
    gw = _FakePushgateway()
    try:
        tel = Telemetry(TelemetryConfig(push_url=gw.url, push_interval_s=0.1, push_job="job-7",
                                        push_instance="host-1"))
        assert tel.metering and tel.prometheus_url is None    # push only: no pull endpoint opened
        tel.record_task(agent="a", model="m", success=True, reward=1.0, cost_usd=0.5)
        deadline = time.monotonic() + 5
        while not gw.got and time.monotonic() < deadline:
            time.sleep(0.02)
        periodic = len(gw.got)
        tel.record_task(agent="a", model="m", success=True, reward=1.0, cost_usd=0.5)
        tel.shutdown()
    finally:
        gw.close()
    assert periodic >= 1                                   # pushed during the "run"
    path, body = gw.got[-1]                                # ... and once more at the end
    assert path == "/metrics/job/job-7/instance/host-1"
    assert 'swarm_sona_tasks_total{agent="a",model="m"' in body and "} 2.0" in body


def test_push_off_sends_nothing():
    gw = _FakePushgateway()
    try:
        tel = Telemetry(TelemetryConfig(metrics_exporter="memory"))
        tel.record_task(agent="a", model="m", success=True, reward=1.0, cost_usd=0.5)
        assert tel.push() is False
        tel.shutdown()
    finally:
        gw.close()
    assert gw.got == []


def test_unreachable_pushgateway_warns_once_and_never_raises(caplog):
    url = f"http://127.0.0.1:{_closed_port()}"
    tel = Telemetry(TelemetryConfig(push_url=url, push_interval_s=3600))
    tel.record_task(agent="a", model="m", success=True, reward=1.0, cost_usd=0.5)
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="swarm_sona.core.telemetry"):
        assert tel.push() is False and tel.push() is False
        tel.flush()
        tel.shutdown()
    assert time.monotonic() - t0 < 5
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and url in warnings[0], warnings


# ---- OTLP with no collector --------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_with_no_collector_warns_one_line_and_exits_at_once(protocol, caplog):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with caplog.at_level("DEBUG"):
        tel = Telemetry(TelemetryConfig(exporters="otlp", otlp_protocol=protocol, otlp_endpoint=endpoint,
                                        metric_interval_s=3600))
        for _ in range(3):
            with tel.span("task"), tel.span("learn"):
                tel.record_learning(1e-5, agent="a")
            tel.flush()
        tel.shutdown()
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0, elapsed                         # the SDK alone: 10 s of retries per export
    warnings = [r for r in caplog.records if r.levelno >= 30]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert endpoint.split("//")[1] in warnings[0].getMessage() and "unreachable" in warnings[0].getMessage()


def test_otlp_timeout_bounds_an_export_to_a_collector_that_never_answers():
    import socket

    silent = socket.socket()            # accepts connections (the kernel does) and never replies
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    took = {}
    try:
        for timeout in (0.3, 1.5):
            tel = Telemetry(TelemetryConfig(traces_exporter="otlp", otlp_protocol="http/protobuf",
                                            otlp_endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}",
                                            otlp_timeout_s=timeout))
            with tel.span("task"):
                pass
            t0 = time.monotonic()
            tel.flush()
            took[timeout] = time.monotonic() - t0
            tel.shutdown()
    finally:
        silent.close()
    assert took[0.3] < 1.0 and took[1.5] >= 1.2, took
    with pytest.raises(ConfigError, match=r"telemetry\.otlp_timeout_s"):
        TelemetryConfig(otlp_timeout_s=0)
