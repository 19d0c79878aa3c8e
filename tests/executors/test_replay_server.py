"""The replay endpoint and the OpenAI executor against it, on 127.0.0.1 (small, seconds)."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from swarm_sona.app.cli import main
from swarm_sona.core.config import ConfigError
from swarm_sona.core.executor import Task
from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.replay import ReplayConfig, ReplayServer, answer_key, replay_tasks
from swarm_sona.executors.table import ROUTELLM_PRICES, ROUTELLM_STRONG, ROUTELLM_WEAK, load_routing_table
from swarm_sona.executors.tokens import count_chat_tokens, count_tokens
from swarm_sona.executors.verifiers import ChoiceVerifier, JudgeVerifier, VerifierRegistry

DATA = Path(__file__).parents[1] / "data" / "routellm_slice"
TABLE = load_routing_table(DATA)
TASKS = replay_tasks(TABLE)
PRICES = {m: (p, p) for m, p in ROUTELLM_PRICES.items()}


def executor(srv: ReplayServer, **kw: object) -> OpenAIChatExecutor:
    opts: dict[str, object] = {"api_key_env": None, "timeout_s": 5.0, "max_retries": 2, "backoff_s": 0.01,
                               "prices": PRICES, "reward_fn": VerifierRegistry(default=ChoiceVerifier()).reward_fn(),
                               "seed": 0}
    opts.update(kw)
    return OpenAIChatExecutor(srv.base_url, **opts)  # type: ignore[arg-type]


def test_answers_follow_the_recorded_outcomes_through_a_verifier(replay) -> None:
    with replay() as srv:
        ex = executor(srv)
        tasks = TASKS[:60]
        models = [ROUTELLM_WEAK if i % 2 else ROUTELLM_STRONG for i in range(len(tasks))]
        outs = ex.run_many(tasks, models)
        ex.close()
    for t, m, o in zip(tasks, models, outs, strict=True):
        assert o.error_kind is None
        assert o.success == bool(TABLE.correct[t.metadata["row"], TABLE.models.index(m)]), (t.id, m, o.output)
    assert len({o.output.split()[0] for o in outs}) > 1     # several prose forms, not one template


def test_recorded_response_text_is_served(tmp_path: Path) -> None:
    (tmp_path / "qa.csv").write_text('prompt,m,m::response\n"What is 6*7?",True,"6*7 = 42.\n#### 42"\n')
    table = load_routing_table(tmp_path)
    assert table.responses == {"m": ("6*7 = 42.\n#### 42",)}
    srv = ReplayServer(ReplayConfig(data=str(tmp_path), latency_median_s=0, latency_p99_s=0, prices={"m": 1.0}))
    with srv:
        out = OpenAIChatExecutor(srv.base_url, api_key_env=None)(Task("What is 6*7?"), "m", [])
    assert out.output == "6*7 = 42.\n#### 42"


def test_usage_tokens_and_spend_equal_the_server_ledger(replay) -> None:
    with replay() as srv:
        ex = executor(srv)
        outs = ex.run_many(TASKS[:40], ROUTELLM_STRONG)
        one = ex(TASKS[40], ROUTELLM_WEAK, [])          # the synchronous path counts the same way
        ex.close()
        led = srv.ledger()
    st = ex.stats()
    assert led["ok"] == 41 and st.calls == 41
    assert (st.prompt_tokens, st.completion_tokens) == (led["prompt_tokens"], led["completion_tokens"])
    assert st.cost_usd == pytest.approx(led["cost_usd"], rel=1e-12)
    assert sum(o.cost_usd for o in [*outs, one]) == pytest.approx(led["cost_usd"], rel=1e-12)
    msgs = ex.messages(TASKS[0], [])
    assert outs[0].metadata["usage"]["prompt_tokens"] == count_chat_tokens(msgs)
    assert outs[0].metadata["usage"]["completion_tokens"] == count_tokens(outs[0].output)


def test_ledger_endpoint_and_models(replay) -> None:
    with replay() as srv:
        executor(srv)(TASKS[0], ROUTELLM_WEAK, [])
        led = json.load(urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/ledger"))
        models = json.load(urllib.request.urlopen(srv.base_url + "/models"))
    assert led["models"][ROUTELLM_WEAK]["ok"] == 1 and led["requests"] == 1
    assert [m["id"] for m in models["data"]] == list(TABLE.models)


@pytest.mark.parametrize("cap", [1, 16])
def test_concurrency_reaches_the_cap(cap: int, replay) -> None:
    with replay(latency_median_s=0.4, latency_p99_s=0.4, max_concurrency=16) as srv:
        ex = executor(srv, max_concurrency=cap)
        t0 = time.perf_counter()
        outs = ex.run_many(TASKS[:32] if cap > 1 else TASKS[:4], ROUTELLM_STRONG)
        took = time.perf_counter() - t0
        ex.close()
        led = srv.ledger()
    assert all(o.error_kind is None for o in outs)
    assert led["max_in_flight"] == cap and led["rate_limited"] == 0
    if cap > 1:
        assert took < 32 * 0.4 / 4      # at least 4x the serial rate


def test_in_flight_profile_shows_where_the_slots_were_idle(replay) -> None:
    # 8 slots, 16 calls of 0.2 s with 8 at a time: two full waves, no idle slot between them
    with replay(latency_median_s=0.2, latency_p99_s=0.2, max_concurrency=8, record_in_flight=True) as srv:
        ex = executor(srv, max_concurrency=8)
        ex.run_many(TASKS[:8], ROUTELLM_WEAK)    # connections open
        srv.reset_ledger()
        t0 = time.monotonic()
        ex.run_many(TASKS[:16], ROUTELLM_WEAK)
        time.sleep(0.3)                          # idle after the run: the window's tail
        prof = srv.in_flight_profile(start=t0, end=time.monotonic(), bin_s=0.1)
        whole = srv.in_flight_profile()
        ex.close()
    assert prof.slot_s == pytest.approx(16 * 0.2, rel=0.15)          # request-seconds served
    assert prof.after_last_s >= 0.29 and prof.first_s < 0.2
    assert prof.steady_in_flight > 6 and prof.ramp_s < 0.2 and prof.drain_s >= 0.29
    assert whole.utilisation > prof.utilisation and whole.span_s < prof.span_s
    assert max(prof.bins) == pytest.approx(8, abs=0.5) and prof.bins[-1] == 0.0
    with replay() as srv, pytest.raises(RuntimeError, match="record_in_flight"):
        srv.in_flight_profile()


def test_rate_limits_are_retried_and_never_exceeded(replay) -> None:
    with replay(latency_median_s=0.05, latency_p99_s=0.1, max_concurrency=4, retry_after_s=0.05) as srv:
        ex = executor(srv, max_concurrency=12, rate_limit_retries=50)
        outs = ex.run_many(TASKS[:36], ROUTELLM_WEAK)
        ex.close()
        led = srv.ledger()
    assert all(o.error_kind is None for o in outs)       # nothing lost
    assert led["rate_limited"] > 0 and led["max_in_flight"] <= 4
    assert ex.stats().rate_limited == led["rate_limited"] and led["ok"] == 36


def test_rate_limit_retries_exhausted_is_an_error_kind(replay) -> None:
    with replay(latency_median_s=0.2, latency_p99_s=0.2, max_concurrency=1, retry_after_s=0.01) as srv:
        ex = executor(srv, max_concurrency=4, rate_limit_retries=0)
        outs = ex.run_many(TASKS[:4], ROUTELLM_WEAK)
        ex.close()
    kinds = sorted(str(o.error_kind) for o in outs)
    assert kinds.count("rate_limit") == 3 and kinds.count("None") == 1


def test_auth_failure_is_quick_and_not_retried(monkeypatch: pytest.MonkeyPatch, replay) -> None:
    monkeypatch.setenv("REPLAY_TEST_KEY", "sk-right-key-123456")
    with replay(api_key_env="REPLAY_TEST_KEY") as srv:
        bad = executor(srv, api_key="sk-wrong-key-999999", backoff_s=2.0, max_retries=3)
        t0 = time.perf_counter()
        out = bad(TASKS[0], ROUTELLM_WEAK, [])
        took = time.perf_counter() - t0
        many = bad.run_many(TASKS[:3], ROUTELLM_WEAK)
        good = executor(srv, api_key_env="REPLAY_TEST_KEY")(TASKS[0], ROUTELLM_WEAK, [])
        led = srv.ledger()
    assert out.error_kind == "auth" and not out.success and out.reward == 0.0 and took < 1.0
    assert out.metadata["error_kind"] == "auth" and "401" in out.metadata["error"]
    assert "sk-wrong-key-999999" not in out.metadata["error"]
    assert [o.error_kind for o in many] == ["auth"] * 3
    assert good.error_kind is None
    assert led["unauthorized"] == 4 and led["ok"] == 1      # no retry of a 401


def test_server_errors_are_retried_then_reported(replay) -> None:
    with replay(error_rate=0.5, seed=3) as srv:
        once = executor(srv, max_retries=0).run_many(TASKS[:40], ROUTELLM_WEAK)
        retried = executor(srv, max_retries=8).run_many(TASKS[:40], ROUTELLM_WEAK)
        led = srv.ledger()
    assert 5 <= sum(o.error_kind == "server" for o in once) <= 35
    assert sum(o.error_kind == "server" for o in retried) < sum(o.error_kind == "server" for o in once)
    assert led["server_errors"] > 0


def test_timeout_and_network_errors_are_kinds(replay) -> None:
    with replay(latency_median_s=1.0, latency_p99_s=1.0) as srv:
        t0 = time.perf_counter()
        outs = executor(srv, timeout_s=0.2, max_retries=0).run_many(TASKS[:2], ROUTELLM_WEAK)
        one = executor(srv, timeout_s=0.2, max_retries=0)(TASKS[0], ROUTELLM_WEAK, [])
        assert time.perf_counter() - t0 < 1.5
        port = srv.port
    assert [o.error_kind for o in outs] == ["timeout", "timeout"] and one.error_kind == "timeout"
    gone = OpenAIChatExecutor(f"http://127.0.0.1:{port}/v1", api_key_env=None, max_retries=0, timeout_s=1)
    assert gone(TASKS[0], ROUTELLM_WEAK, []).error_kind == "network"
    assert gone.run_many(TASKS[:2], ROUTELLM_WEAK)[1].error_kind == "network"


def test_batches_run_on_aiohttp_and_a_caller_httpx_client_gives_the_same_answers(replay) -> None:
    import asyncio

    import httpx

    from swarm_sona.executors.http_pool import AiohttpClient

    with replay(latency_median_s=0.01, latency_p99_s=0.05) as srv:
        ex = executor(srv, max_concurrency=8)
        outs = ex.run_many(TASKS[:12], ROUTELLM_STRONG)
        assert isinstance(ex._pool._aclient, AiohttpClient)   # the batch path's default client

        async def on_httpx() -> list:
            async with httpx.AsyncClient() as c:
                return await ex.arun_many(TASKS[:12], ROUTELLM_STRONG, client=c)

        via_httpx = asyncio.run(on_httpx())
        ex.close()
    assert [o.output for o in outs] == [o.output for o in via_httpx]
    assert all(o.error_kind is None for o in outs) and [o.cost_usd for o in outs] == [o.cost_usd for o in via_httpx]


def test_an_executor_arriving_in_a_process_imports_its_http_library_before_its_first_call() -> None:
    # a first call that imports aiohttp on a loaded machine holds back the calls the limiter has
    # already released; they then reach the endpoint together (429s): the import comes with the executor
    import pickle
    import subprocess
    import sys

    ex = OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None, max_concurrency=4)
    code = ("import pickle, sys; assert 'aiohttp' not in sys.modules; "
            "ex = pickle.loads(sys.stdin.buffer.read()); print('aiohttp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(ex), capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "True"


def test_an_executor_still_unpickles_where_neither_http_library_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import pickle

    from swarm_sona.executors import http_pool

    real = importlib.util.find_spec
    monkeypatch.setattr(http_pool.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("aiohttp", "httpx") else real(name, *a))
    assert http_pool.HttpPool.prepare() == ""
    ex = pickle.loads(pickle.dumps(OpenAIChatExecutor("http://127.0.0.1:9/v1", api_key_env=None)))
    assert ex.max_concurrency >= 1


def test_the_environment_proxy_is_honoured_by_the_batch_client(monkeypatch: pytest.MonkeyPatch, replay) -> None:
    with replay(latency_median_s=0.0, latency_p99_s=0.0) as srv:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")   # nothing listens there
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        ex = executor(srv, max_retries=0)
        via_proxy = ex.run_many(TASKS[:2], ROUTELLM_WEAK)
        ex.close()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        ex = executor(srv, max_retries=0)
        direct = ex.run_many(TASKS[:2], ROUTELLM_WEAK)
        ex.close()
    assert [o.error_kind for o in via_proxy] == ["network", "network"]
    assert [o.error_kind for o in direct] == [None, None]


def test_unknown_model_is_a_request_error(replay) -> None:
    with replay() as srv:
        out = executor(srv)(TASKS[0], "no-such-model", [])
    assert out.error_kind == "request" and "404" in out.metadata["error"]


def test_run_many_validates_and_keeps_order(replay) -> None:
    with replay(latency_median_s=0.01, latency_p99_s=0.2) as srv:
        ex = executor(srv)
        outs = ex.run_many(TASKS[:20], ROUTELLM_STRONG)
        with pytest.raises(ValueError, match="3 tasks but 2 model names"):
            ex.run_many(TASKS[:3], [ROUTELLM_WEAK, ROUTELLM_STRONG])
        ex.close()
    assert [o.output for o in outs] == [srv.answer(t.text, ROUTELLM_STRONG)[0] for t in TASKS[:20]]


def test_judge_verifier_against_the_replay_server(replay) -> None:
    task = next(t for t in TASKS if TABLE.correct[t.metadata["row"], TABLE.models.index(ROUTELLM_STRONG)])
    key = answer_key(task.text)
    wrong = next(c for c in "ABCD" if c != key)
    weak_wrong = next(t for t in TASKS if not TABLE.correct[t.metadata["row"], TABLE.models.index(ROUTELLM_WEAK)])
    with replay() as srv:
        judge = JudgeVerifier(srv.base_url, ROUTELLM_STRONG, api_key_env=None)
        right_v = judge(task, f"I believe the answer is ({key}).")
        wrong_v = judge(task, f"Answer: {wrong}")
        weak = JudgeVerifier(srv.base_url, ROUTELLM_WEAK, api_key_env=None)
        flipped = weak(weak_wrong, f"The answer is {answer_key(weak_wrong.text)}.")
        down = JudgeVerifier(srv.base_url, "no-such-judge", api_key_env=None)(task, "A")
    assert (right_v.reward, right_v.success) == (1.0, True)
    assert (wrong_v.reward, wrong_v.success) == (0.0, False)
    assert flipped.reward == 0.0            # a judge recorded wrong on that task judges wrongly
    assert down.error_kind == "request" and down.reward == 0.0


def test_config_is_validated_and_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        ReplayConfig(data=str(DATA), max_concurrency=0)
    with pytest.raises(ConfigError, match="error_rate"):
        ReplayConfig(data=str(DATA), error_rate=0.9)
    assert main(["replay-server", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_latency_distribution_has_the_configured_median_and_p99() -> None:
    srv = ReplayServer(ReplayConfig(data=str(DATA), latency_median_s=0.5, latency_p99_s=3.0, seed=1), table=TABLE)
    draws = sorted(srv.shaper.latency() for _ in range(20000))
    assert draws[10000] == pytest.approx(0.5, rel=0.05)
    assert draws[19800] == pytest.approx(3.0, rel=0.1)


def _serve_cli(*flags: str):
    """``swarm-sona replay-server`` as a user starts it (its own process, 127.0.0.1), with ``flags``."""
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "swarm_sona", "replay-server", "--data", str(DATA), "--json",
                             "--latency-median", "0.01", "--latency-p99", "0.02", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=30)[1][-2000:])
    return proc, json.loads(line)["url"]


@pytest.mark.parametrize("flags", [(), ("--rate-limit-rpm", "60", "--rate-burst", "2",
                                        "--model-error-rate", f"{ROUTELLM_STRONG}=1")])
def test_the_cli_rate_limit_and_model_error_flags_shape_the_traffic(flags: tuple[str, ...]) -> None:
    proc, url = _serve_cli(*flags)
    try:
        ex = OpenAIChatExecutor(url, api_key_env=None, timeout_s=10.0, max_retries=0, backoff_s=0.01,
                                rate_limit_retries=0, prices=PRICES, seed=0)
        weak = ex.run_many(TASKS[:5], ROUTELLM_WEAK)
        strong = ex.run_many(TASKS[:1], ROUTELLM_STRONG)
        ex.close()
        with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/ledger", timeout=10) as r:
            led = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    kinds = [o.error_kind for o in weak]
    if flags:   # a bucket of 2 at 1 request/s: the first 2 admitted, those sent right after refused
        assert kinds.count(None) >= 2 and kinds.count("rate_limit") >= 1
        assert led["rate_limited"] == kinds.count("rate_limit")
        assert strong[0].error_kind is not None                     # that model is down
    else:
        assert kinds == [None] * 5 and led["rate_limited"] == 0 and strong[0].error_kind is None
