"""``swarm-sona bench llm``: real LLM I/O inside the swarm, against the replay endpoint.

A :class:`~swarm_sona.executors.replay.ReplayServer` on 127.0.0.1 answers the OpenAI protocol
from the RouteLLM slice with lognormal latency (``--latency-median`` 0.5 s, ``--latency-p99``)
and serves at most ``--capacity`` (256) requests at once (one more gets 429 + Retry-After).
In one Ray session (local, 127.0.0.1, or ``RAY_ADDRESS``):

1. **Concurrent path**: ``--agents`` (4) agents, learning on (routing, instant loop,
   background loop, bank, consensus), an :class:`~swarm_sona.executors.openai_chat.OpenAIChatExecutor`
   whose ``run_many`` the agents use, the swarm capped at the endpoint's capacity
   (``max_concurrency``, each agent its share), ``--tasks`` (2,000) tasks, one batch per agent
   by default (``--batch-size``).
2. **One-at-a-time path** in the same session: the same executor behind a wrapper whose
   class has no ``run_many`` (so each agent makes one call at a time), ``--serial-tasks`` tasks.

Reported: end-to-end tasks/s of both paths (first dispatch to last result) and goodput
(successful responses, i.e. results without an ``error_kind``, per second); the endpoint's
capacity by Little's law, ``capacity / mean service latency`` (the lognormal's mean,
``median * exp(sigma^2 / 2)``), and each path's goodput as a share of it; p50/p99 task latency
(client side: the call including its retries); 429s the server sent and the retries the
agents' executors made; tasks lost (sent but never returned: must be 0); spend and tokens as
the swarm accounted them beside the server's own ledger; each agent's mean wall seconds by
stage of its batches (``execute`` = the calls); machine load. Before the concurrent path, a
warm-up of ``--capacity`` tasks opens the agents' connection pools (not counted).

``--rpm N`` adds a provider-style budget of N requests/min per model: the server enforces it
(429 + Retry-After), and the executor gets the same budget as a rate limit
(:mod:`~swarm_sona.executors.limits`, at 95 % headroom) leased over the agents (each holds
1/agents of it). Then the limiter's figures count too: attempts that waited for their budget,
seconds waited, fallbacks and cool-downs.

Example:
    >>> from swarm_sona.bench.llm import add_arguments, lognormal_mean
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--tasks", "200"]).tasks
    200
    >>> round(lognormal_mean(0.5, 0.5), 3)
    0.5
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bench.timing import emit, machine_info
from swarm_sona.core.executor import Outcome, Task

__all__ = ["add_arguments", "run", "bench_llm", "lognormal_mean", "PathResult", "OneAtATime"]

_DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "routellm_slice"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``swarm-sona bench llm``."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--agents", type=int, default=4, help="worker agents (default 4)")
    p.add_argument("--tasks", type=int, default=2000, help="tasks on the concurrent path (default 2000)")
    p.add_argument("--serial-tasks", type=int, default=48, help="tasks on the one-at-a-time path (default 48)")
    p.add_argument("--capacity", type=int, default=256, help="requests the endpoint serves at once (default 256)")
    p.add_argument("--latency-median", type=float, default=0.5, help="median service latency, s (default 0.5)")
    p.add_argument("--latency-p99", type=float, default=1.0, help="p99 service latency, s (default 1.0)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="tasks per Ray call (default: tasks / agents, one batch per agent)")
    p.add_argument("--data", default=str(_DATA), help="RouteLLM-style outcomes folder (default: the test slice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rpm", type=int, default=0,
                   help="requests/min per model enforced by the endpoint and leased over the agents (default 0: none)")


def lognormal_mean(median_s: float, p99_s: float) -> float:
    """Mean of the lognormal service latency with this median and p99 (seconds).

    Example:
        >>> round(lognormal_mean(0.5, 1.0), 3)
        0.523
    """
    from swarm_sona.executors.replay import lognormal_sigma

    if median_s <= 0:
        return 0.0
    sigma = lognormal_sigma(median_s, p99_s) if p99_s > median_s else 0.0
    return median_s * math.exp(sigma * sigma / 2)


class OneAtATime:
    """An executor wrapper whose class has no ``run_many``: agents call it once per task.

    Example:
        >>> ex = OneAtATime(lambda t, m, p: Outcome("ok", 1.0, True))
        >>> ex(Task("x"), "m", []).output, hasattr(type(ex), "run_many")
        ('ok', False)
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        return self.inner(task, model, patterns)

    def stats(self) -> Any:
        """The inner executor's stats (calls, retries, 429s, tokens)."""
        fn = getattr(self.inner, "stats", None)
        return fn() if callable(fn) else None


@dataclass
class PathResult:
    """One path's figures (see the module docs)."""

    tasks: int
    returned: int
    lost: int
    wall_s: float
    tasks_per_s: float
    goodput_per_s: float
    share_of_capacity: float
    latency_p50_s: float
    latency_p99_s: float
    errors_by_kind: dict[str, int]
    success_rate: float
    server_requests: int
    server_requests_by_model: dict[str, int]
    server_429: int
    server_5xx: int
    server_max_in_flight: int
    client_retries: int
    client_429_retried: int
    limiter_waits: int        # attempts that waited for their model's rate-limit budget
    limiter_wait_s: float     # seconds they waited, summed
    fallbacks: int
    cooldowns: int
    cost_usd_swarm: float
    cost_usd_server: float
    tokens_client: int
    tokens_server: int
    agent_s_by_stage: dict[str, float]   # mean per agent: wall seconds by stage of its batches
    in_flight: dict[str, Any]            # the server's slots over the run (replay.InFlightProfile, dispatch to end)
    machine_cpu_busy: float              # share of all cores busy during the run (/proc/stat; nan elsewhere)
    driver_cpu_s: float                  # CPU seconds of the driver process (the replay server's thread included)
    agents_cpu_s: float                  # CPU seconds of the agent processes, summed


def _tasks(base: list[Task], n: int) -> list[Task]:
    """``n`` tasks cycling through ``base`` (each repetition a task of its own id)."""
    return [Task(base[i % len(base)].text, base[i % len(base)].task_type, metadata=dict(base[i % len(base)].metadata))
            for i in range(n)]


def _run_path(sw: Any, srv: Any, tasks: list[Task], batch_size: int, capacity_per_s: float) -> PathResult:
    srv.reset_ledger()
    stages0 = _stages(sw)
    before = _executor_totals(sw)
    cpu0, drv0 = _machine_cpu(), _process_cpu_s()
    t0, m0 = time.perf_counter(), time.monotonic()
    res = list(sw.run(tasks, batch_size=batch_size, progress=False))
    wall, m1 = time.perf_counter() - t0, time.monotonic()
    cpu1, drv1 = _machine_cpu(), _process_cpu_s()
    led = srv.ledger()
    prof = asdict(srv.in_flight_profile(start=m0, end=m1, bin_s=0.5))
    after = _executor_totals(sw)
    stages1 = _stages(sw)
    ok = [r for r in res if "error_kind" not in r]
    lat = np.array([r["latency_s"] for r in res if r.get("latency_s") is not None], float)
    errors: dict[str, int] = {}
    for r in res:
        if "error_kind" in r:
            errors[r["error_kind"]] = errors.get(r["error_kind"], 0) + 1
    returned_ids = {r["task_id"] for r in res}
    goodput = len(ok) / wall
    return PathResult(
        tasks=len(tasks), returned=len(res), lost=sum(1 for t in tasks if t.id not in returned_ids),
        wall_s=round(wall, 3), tasks_per_s=round(len(res) / wall, 1), goodput_per_s=round(goodput, 1),
        share_of_capacity=round(goodput / capacity_per_s, 4),
        latency_p50_s=round(float(np.median(lat)), 4) if lat.size else float("nan"),
        latency_p99_s=round(float(np.percentile(lat, 99)), 4) if lat.size else float("nan"),
        errors_by_kind=errors, success_rate=round(float(np.mean([r["success"] for r in res])), 4) if res else 0.0,
        server_requests=led["requests"],
        server_requests_by_model={m: int(v["requests"]) for m, v in led["models"].items()}, server_429=led["rate_limited"], server_5xx=led["server_errors"],
        server_max_in_flight=led["max_in_flight"],
        client_retries=int(after["retries"] - before["retries"]),
        client_429_retried=int(after["rate_limited"] - before["rate_limited"]),
        limiter_waits=int(after["limiter_waits"] - before["limiter_waits"]),
        limiter_wait_s=round(after["limiter_wait_s"] - before["limiter_wait_s"], 3),
        fallbacks=int(after["fallbacks"] - before["fallbacks"]), cooldowns=int(after["cooldowns"] - before["cooldowns"]),
        cost_usd_swarm=round(float(sum(r["cost_usd"] for r in res)), 8), cost_usd_server=round(led["cost_usd"], 8),
        tokens_client=int(after["prompt_tokens"] + after["completion_tokens"]
                          - before["prompt_tokens"] - before["completion_tokens"]),
        tokens_server=led["prompt_tokens"] + led["completion_tokens"],
        agent_s_by_stage={k: round((v - stages0.get(k, 0.0)) / max(1, len(sw.agents)), 3) for k, v in stages1.items()},
        in_flight={k: v for k, v in prof.items() if k not in ("start_s", "end_s")},
        machine_cpu_busy=round(1.0 - (cpu1[1] - cpu0[1]) / max(1, cpu1[0] - cpu0[0]), 3) if cpu0[0] else float("nan"),
        driver_cpu_s=round(drv1 - drv0, 3),
        agents_cpu_s=round(after["cpu_s"] - before["cpu_s"], 3))


def _machine_cpu() -> tuple[int, int]:
    """(total, idle) jiffies of all cores from /proc/stat ((0, 0) where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(v), v[3] + (v[4] if len(v) > 4 else 0)


def _process_cpu_s() -> float:
    """CPU seconds (user + system) of this process, all threads."""
    t = os.times()
    return t.user + t.system


def _stages(sw: Any) -> dict[str, float]:
    """The agents' wall seconds per stage of their batches (embed, route, execute, learn, ...), summed."""
    out: dict[str, float] = {}
    for a in sw.stats()["agents"].values():
        for k, v in (a.get("stage_s") or {}).items() if isinstance(a, dict) else ():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def _executor_totals(sw: Any) -> dict[str, float]:
    """The agents' executor counters summed (each agent process has its own executor copy)."""
    tot = dict.fromkeys(("retries", "rate_limited", "prompt_tokens", "completion_tokens", "limiter_waits",
                         "limiter_wait_s", "fallbacks", "cooldowns", "cpu_s"), 0.0)
    for a in sw.stats()["agents"].values():
        tot["cpu_s"] += float(a.get("cpu_s", 0.0) or 0.0) if isinstance(a, dict) else 0.0
        ex = a.get("executor") if isinstance(a, dict) else None
        if isinstance(ex, dict):
            for k in tot:
                tot[k] += float(ex.get(k, 0) or 0) if k != "cpu_s" else 0.0
    return tot


def _executor(url: str, capacity: int, seed: int, rpm: int, agents: int) -> Any:
    """The agents' executor: RouteLLM prices, the choice verifier, with ``rpm`` a rate limit leased over the agents."""
    from swarm_sona.executors.openai_chat import OpenAIChatExecutor
    from swarm_sona.executors.table import ROUTELLM_PRICES
    from swarm_sona.executors.verifiers import ChoiceVerifier, VerifierRegistry

    ex = OpenAIChatExecutor(url, api_key_env=None, timeout_s=30.0, max_retries=3, rate_limit_retries=100,
                            prices={m: (p, p) for m, p in ROUTELLM_PRICES.items()},
                            reward_fn=VerifierRegistry(default=ChoiceVerifier()).reward_fn(),
                            max_concurrency=capacity, seed=seed,
                            limits={"default": {"rpm": rpm}, "headroom": 0.95} if rpm else None)
    ex.lease_limits(agents)   # each agent process holds 1/agents of every budget
    return ex


def bench_llm(*, agents: int = 4, tasks: int = 2000, serial_tasks: int = 48, capacity: int = 256,
              latency_median_s: float = 0.5, latency_p99_s: float = 1.0, batch_size: int | None = None,
              data: str = str(_DATA), seed: int = 0, rpm: int = 0) -> dict[str, Any]:
    """Run the benchmark (see module docs) and return the result dict."""
    from swarm_sona.executors.replay import ReplayConfig, ReplayServer, replay_tasks
    from swarm_sona.executors.table import TableExecutor, load_routing_table
    from swarm_sona.runtime.startup import start_ray, stop_ray
    from swarm_sona.runtime.swarm import SwarmSONA

    if agents < 1 or tasks < agents or serial_tasks < 0 or capacity < agents:
        raise ValueError(f"need agents >= 1, tasks >= agents, serial_tasks >= 0 and capacity >= agents; got "
                         f"agents={agents}, tasks={tasks}, serial_tasks={serial_tasks}, capacity={capacity}")
    table = load_routing_table(data)
    base = replay_tasks(table)
    srv = ReplayServer(ReplayConfig(data=data, latency_median_s=latency_median_s, latency_p99_s=latency_p99_s,
                                    max_concurrency=capacity, retry_after_s=0.25, seed=seed, rate_limit_rpm=rpm,
                                    record_in_flight=True),
                       table=table)
    mean_s = lognormal_mean(latency_median_s, latency_p99_s)
    cap_per_s = capacity / mean_s if mean_s > 0 else float("inf")
    url = srv.start()
    owns = start_ray()
    try:
        ex = _executor(url, capacity, seed, rpm, agents)
        bs = batch_size or math.ceil(tasks / agents)
        spec: dict[str, Any] = {"agents": agents, "router": TableExecutor(table).model_specs(), "sharedReasoningBank": True,
                "consensusLearning": True, "sync_every": max(1, bs // 2), "batch_size": bs, "seed": seed}
        out: dict[str, Any] = {}
        with SwarmSONA(executor=ex, max_concurrency=capacity, **spec) as sw:
            # warm-up: every agent opens its connection pools (a running swarm has them open)
            _run_path(sw, srv, _tasks(base, capacity), math.ceil(capacity / agents), cap_per_s)
            conc = _run_path(sw, srv, _tasks(base, tasks), bs, cap_per_s)
            st = sw.stats()
            out["learned"] = sum(int((a.get("engine") or {}).get("n_learned", 0) or 0)
                                 for a in st["agents"].values() if isinstance(a, dict))
            out["syncs"] = st["syncs"]
            out["bank_patterns"] = (st["bank"] or {}).get("count", st["acked_patterns"])
        out["load_avg_1min_after_concurrent"] = round(os.getloadavg()[0], 2)
        serial = None
        if serial_tasks:
            with SwarmSONA(executor=OneAtATime(ex), **{**spec, "batch_size": max(1, math.ceil(serial_tasks / agents)),
                                                       "sync_every": 128}) as sw:
                serial = _run_path(sw, srv, _tasks(base, serial_tasks), max(1, math.ceil(serial_tasks / agents)),
                                   cap_per_s)
        out.update({"concurrent": asdict(conc), "one_at_a_time": asdict(serial) if serial else None,
                    "speedup": round(conc.goodput_per_s / serial.goodput_per_s, 1) if serial and serial.goodput_per_s
                    else None,
                    "capacity_per_s": round(cap_per_s, 1), "mean_service_latency_s": round(mean_s, 4),
                    "sizes": {"agents": agents, "tasks": tasks, "serial_tasks": serial_tasks, "capacity": capacity,
                              "latency_median_s": latency_median_s, "latency_p99_s": latency_p99_s,
                              "batch_size": bs, "distinct_prompts": len(base), "rpm_per_model": rpm},
                    "machine": machine_info()})
        return out
    finally:
        stop_ray(owns)
        srv.stop()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona bench llm``."""
    res = bench_llm(agents=args.agents, tasks=args.tasks, serial_tasks=args.serial_tasks, capacity=args.capacity,
                    latency_median_s=args.latency_median, latency_p99_s=args.latency_p99, batch_size=args.batch_size,
                    data=args.data, seed=args.seed, rpm=args.rpm)
    c, s = res["concurrent"], res["one_at_a_time"] or {}
    keys = ["tasks", "returned", "lost", "wall_s", "tasks_per_s", "goodput_per_s", "share_of_capacity",
            "latency_p50_s", "latency_p99_s", "errors_by_kind", "server_429", "client_429_retried",
            "limiter_waits", "limiter_wait_s", "fallbacks", "cooldowns",
            "server_max_in_flight", "cost_usd_swarm", "cost_usd_server", "tokens_client", "tokens_server"]
    rows = [[k, c.get(k), s.get(k, "-")] for k in keys]
    rows.append(["capacity (tasks/s, Little's law)", res["capacity_per_s"], res["capacity_per_s"]])
    emit(res, as_json=args.json, title=f"bench llm: {res['sizes']}", header=["metric", "concurrent", "one at a time"],
         rows=rows)
    return 0
