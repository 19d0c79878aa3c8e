"""``swarm-sona bench swarm``: swarm throughput on Ray and the value of sharing.

In one Ray session (local, 127.0.0.1, no dashboard, or ``RAY_ADDRESS``):

1. **Sharing on** (shared bank + consensus by the topology's rule): a swarm of ``--agents``
   agents runs ``--tasks`` simulated tasks (:class:`~swarm_sona.executors.simulated.SimulatedExecutor`)
   with batched dispatch (``--batch-size`` tasks per Ray call), learning on (instant loop per
   task, background loop every ``--background-every`` trajectories, consensus every
   ``--sync-every`` tasks per agent): end-to-end tasks/s (embedding, retrieval, routing,
   execution, learning, pattern storage and consensus included). Then, in the same swarm,
   ``--per-call-tasks`` more tasks with one Ray call per task.
2. **Sharing off** (each agent sees only its own patterns, no consensus): the same task stream.

Each agent processes a batch in chunks of ``--engine-batch`` tasks (one vectorised routing
call, the executor per task, then the chunk's instant-loop steps in task order); up to
``--in-flight`` batches per agent are outstanding.

Reported: ``tasks_per_s_batched``, ``tasks_per_s_per_call``, ``merge_ms`` (mean coordinator
merge + consolidation + checkpoint time), ``success_rate_sharing`` / ``success_rate_isolated``
(success over the whole stream: the same tasks in the same order, so "after the same number
of tasks"), the second-half rates, the success curves per window, and sizes. ``breakdown``
(batched run): ``cpu_us_per_task`` (CPU microseconds per task of the agents, the bank actor,
the coordinators and this driver process, their total, and ``available`` = wall time x
cores: the gap is Ray's own processes and whatever else runs on the machine) and
``agent_us_per_task`` (agents' wall time per task by stage: embed, retrieve (waiting for the
bank actor included), route, execute (executor + trajectory record), learn, store, push,
checkpoint, other; ``batch`` = the whole calls); ``load_avg_1min`` after the run.

Example:
    >>> from swarm_sona.bench.swarm import add_arguments
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--agents", "2"]).agents
    2
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from swarm_sona.bench.timing import emit, machine_info

__all__ = ["add_arguments", "run", "bench_swarm"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``swarm-sona bench swarm``."""
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--agents", type=int, default=4, help="worker agents (default 4)")
    p.add_argument("--tasks", type=int, default=20000, help="tasks in the batched run (default 20000)")
    p.add_argument("--topology", default="star", choices=["star", "hierarchical", "ring", "mesh"])
    p.add_argument("--rule", default="fedavg", help="merge rule (default fedavg)")
    p.add_argument("--batch-size", type=int, default=512, help="tasks per Ray call (default 512)")
    p.add_argument("--in-flight", type=int, default=2, help="batches in flight per agent (default 2)")
    p.add_argument("--engine-batch", type=int, default=64,
                   help="tasks an agent routes in one vectorised engine call before learning them (default 64; "
                        "1 = strictly per task)")
    p.add_argument("--per-call-tasks", type=int, default=1000, help="tasks run with one Ray call each (default 1000)")
    p.add_argument("--sync-every", type=int, default=1024, help="tasks per agent between consensus syncs")
    p.add_argument("--background-every", type=int, default=2000, help="engine background loop period")
    p.add_argument("--window", type=int, default=1000, help="tasks per point of the success curves")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")


def _cpu(st: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds per actor process and the agents' per-stage wall seconds, from ``SwarmSONA.stats()``."""
    agents = [a for a in st["agents"].values() if isinstance(a, dict) and "cpu_s" in a]
    stages: dict[str, float] = {}
    for a in agents:
        for k, v in a.get("stage_s", {}).items():
            stages[k] = stages.get(k, 0.0) + v
    coords = [c for c in st["coordinators"].values() if isinstance(c, dict) and "cpu_s" in c]
    return {"agents": sum(a["cpu_s"] for a in agents), "coordinators": sum(c["cpu_s"] for c in coords),
            "bank": (st["bank"] or {}).get("cpu_s", 0.0), "stages": stages}


def _breakdown(before: dict[str, Any], after: dict[str, Any], driver_cpu: float, wall: float,
               n: int) -> dict[str, Any]:
    """Per-task microseconds: CPU by process role, and the agents' time by stage of a batch."""
    def us(v: float) -> float:
        return round(v / n * 1e6, 1)

    cpu = {k: us(after[k] - before[k]) for k in ("agents", "bank", "coordinators")}
    cpu["driver"] = us(driver_cpu)
    cpu["total"] = round(sum(cpu.values()), 1)
    cpu["available"] = us(wall * (os.cpu_count() or 1))   # all cores for the whole run (other load included)
    st = {k: us(v - before["stages"].get(k, 0.0)) for k, v in after["stages"].items()}
    if "batch" in st:   # what the named stages do not cover (Ray argument decoding, results, merged installs)
        st["other"] = round(st["batch"] - sum(v for k, v in st.items() if k != "batch"), 1)
    return {"cpu_us_per_task": cpu, "agent_us_per_task": st}


def _curve(success: np.ndarray, window: int) -> list[float]:
    return [round(float(success[i:i + window].mean()), 4) for i in range(0, len(success), window)]


def _measure(sw: Any, stream: list[Any], mode: str, *, batch_size: int, max_in_flight: int,
             window: int) -> tuple[dict[str, Any], list[float]]:
    """One mode's batched run over ``stream``: its success rates, cost per task and success curve;
    for ``sharing`` also the throughput, the CPU breakdown and the load right after the run."""
    sharing = mode == "sharing"
    out: dict[str, Any] = {}
    before = _cpu(sw.stats()) if sharing else None
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = list(sw.run(stream, batch_size=batch_size, progress=False, max_in_flight=max_in_flight))
    dt = time.perf_counter() - t0
    if before is not None:
        out["breakdown"] = _breakdown(before, _cpu(sw.stats()), time.process_time() - c0, dt, len(res))
        out["load_avg_1min"] = round(os.getloadavg()[0], 2)   # machine load right after the run
    succ = np.array([r["success"] for r in res], float)
    out[f"success_rate_{mode}"] = round(float(succ.mean()), 4)
    out[f"success_rate_{mode}_second_half"] = round(float(succ[len(succ) // 2:].mean()), 4)
    if sharing:
        out["tasks_per_s_batched"] = round(len(res) / dt, 1)
    out[f"cost_usd_per_task_{mode}"] = round(float(np.mean([r["cost_usd"] for r in res])), 6)
    return out, _curve(succ, window)


def _per_call_and_stats(sw: Any, extra: list[Any]) -> dict[str, Any]:
    """The same swarm on ``extra`` tasks with one Ray call each (tasks/s), then its merge and
    bank figures."""
    t0 = time.perf_counter()
    n = sum(1 for _ in sw.run(extra, batch_size=1, progress=False))
    out: dict[str, Any] = {"tasks_per_s_per_call": round(n / (time.perf_counter() - t0), 1)}
    st = sw.stats()
    out["merge_ms"] = None if st["merge_ms"] is None else round(st["merge_ms"], 3)
    out["syncs"] = st["syncs"]
    out["bank_patterns"] = (st["bank"] or {}).get("count", st["acked_patterns"])
    out["acked_patterns"] = st["acked_patterns"]
    return out


def bench_swarm(*, agents: int = 4, tasks: int = 20000, topology: str = "star", rule: str = "fedavg",
                batch_size: int = 512, per_call_tasks: int = 1000, sync_every: int = 1024,
                background_every: int = 2000, window: int = 1000, seed: int = 0,
                num_cpus: int | None = None, max_in_flight: int = 2, engine_batch: int = 64) -> dict[str, Any]:
    """Run the benchmark (see module docs) and return the result dict."""
    from swarm_sona.executors.simulated import SimulatedExecutor
    from swarm_sona.runtime.startup import cluster_cpus, start_ray, stop_ray
    from swarm_sona.runtime.swarm import SwarmSONA

    if agents < 1 or tasks < 2 or batch_size < 1 or max_in_flight < 1 or engine_batch < 1:
        raise ValueError("need agents >= 1, tasks >= 2, batch_size >= 1, in-flight >= 1 and engine_batch >= 1")
    owns = start_ray(num_cpus=num_cpus)
    try:
        ex = SimulatedExecutor(seed=seed)
        stream = ex.tasks(tasks, seed=seed + 1)
        coords = [{"id": "queen", "type": "coordinator"}] if topology == "hierarchical" else []
        spec = {"topology": topology, "agents": coords + [{"id": f"agent-{i}", "type": "worker"} for i in range(agents)],
                "merge_rule": rule, "sync_every": sync_every, "batch_size": batch_size, "seed": seed,
                "sona": {"background_every": background_every}}
        out: dict[str, Any] = {}
        curves = {}
        for mode in ("sharing", "isolated"):
            sharing = mode == "sharing"
            with SwarmSONA({**spec, "shared_reasoning_bank": sharing, "consensus_learning": sharing},
                           executor=ex, engine_batch=engine_batch) as sw:
                got, curves[mode] = _measure(sw, stream, mode, batch_size=batch_size, max_in_flight=max_in_flight,
                                             window=window)
                out.update(got)
                if sharing:
                    out.update(_per_call_and_stats(sw, ex.tasks(per_call_tasks, seed=seed + 2)))
        from swarm_sona import kernels

        out.update({"curve_sharing": curves["sharing"], "curve_isolated": curves["isolated"],
                    "oracle_success_rate": round(ex.oracle_success_rate(stream), 4),
                    "sizes": {"agents": agents, "tasks": tasks, "per_call_tasks": per_call_tasks,
                              "batch_size": batch_size, "in_flight": max_in_flight, "engine_batch": engine_batch,
                              "topology": topology, "rule": rule, "window": window,
                              "sync_every": sync_every, "background_every": background_every,
                              "ray_cpus": cluster_cpus()},
                    "kernels": kernels.info()["active"], "machine": machine_info()})
        return out
    finally:
        stop_ray(owns)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona bench swarm``."""
    res = bench_swarm(agents=args.agents, tasks=args.tasks, topology=args.topology, rule=args.rule,
                      batch_size=args.batch_size, per_call_tasks=args.per_call_tasks, sync_every=args.sync_every,
                      background_every=args.background_every, window=args.window, seed=args.seed,
                      num_cpus=args.num_cpus, max_in_flight=args.in_flight, engine_batch=args.engine_batch)
    rows = [["tasks/s batched", res["tasks_per_s_batched"]], ["tasks/s one call per task", res["tasks_per_s_per_call"]],
            ["batched / per-call", round(res["tasks_per_s_batched"] / max(res["tasks_per_s_per_call"], 1e-9), 2)],
            ["merge ms (mean)", res["merge_ms"]], ["success sharing", res["success_rate_sharing"]],
            ["success isolated", res["success_rate_isolated"]],
            ["success sharing / isolated (2nd half)",
             f"{res['success_rate_sharing_second_half']} / {res['success_rate_isolated_second_half']}"],
            ["oracle model choice (no reuse)", res["oracle_success_rate"]],
            ["load average (1 min) after the batched run", res["load_avg_1min"]],
            ["CPU us/task by process (batched run)",
             " ".join(f"{k}={v}" for k, v in res["breakdown"]["cpu_us_per_task"].items())],
            ["agent us/task by stage (wall)",
             " ".join(f"{k}={v}" for k, v in res["breakdown"]["agent_us_per_task"].items())],
            ["curve sharing", " ".join(map(str, res["curve_sharing"]))],
            ["curve isolated", " ".join(map(str, res["curve_isolated"]))]]
    emit(res, as_json=args.json, title=f"bench swarm: {res['sizes']}", header=["metric", "value"], rows=rows)
    return 0
