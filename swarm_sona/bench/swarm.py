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

3. **No-op executor** (``--noop``, on by default): the sharing run again on the same stream with
   :class:`NoopExecutor` (a fixed successful outcome, no work): ``noop`` = its tasks/s,
   breakdown and load, so the simulator's own cost is the difference.

``--profile TASKS`` runs no Ray: :func:`profile_pipeline` cProfiles one agent and the bank
actor in this process (the same classes and pipeline, simulated and no-op executor) and prints
the top ``--top`` functions by cumulative and by self time, per task, for each.

Example:
    >>> from swarm_sona.bench.swarm import add_arguments
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--agents", "2"]).agents
    2
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from swarm_sona.bench.timing import emit, machine_info, print_table
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.engine.config import SONAConfig
from swarm_sona.executors.simulated import SimulatedExecutor
from swarm_sona.runtime.actors.agent import AgentActor  # the actor classes run in-process here (no Ray)
from swarm_sona.runtime.actors.bank import BankActor
from swarm_sona.runtime.launch import engine_config

__all__ = ["add_arguments", "run", "bench_swarm", "NoopExecutor", "ProfileRow", "PipelineProfile",
           "profile_pipeline"]


class NoopExecutor:
    """An executor that does no work: every task gets the same successful outcome (reward 1, cost 0).

    It has the simulator's router model specs, so a swarm routes exactly as with the simulator;
    what a run costs with it is the swarm's own per-task cost (embed, retrieve, route, learn, store,
    dispatch), the simulator's removed. A new :class:`Outcome` per call (the pipeline may attach
    metadata to it).

    Example:
        >>> ex = NoopExecutor(SimulatedExecutor().model_specs())
        >>> out = ex(Task("anything"), "small", [])
        >>> (out.output, out.reward, out.success, out.cost_usd), [m["name"] for m in ex.model_specs()]
        (('noop', 1.0, True, 0.0), ['small', 'medium', 'large'])
    """

    def __init__(self, models: Sequence[Mapping[str, Any]]) -> None:
        if not models:
            raise ValueError("NoopExecutor: models must name at least one model spec")
        self.models = [dict(m) for m in models]
        self.names = frozenset(str(m["name"]) for m in self.models)

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        return Outcome("noop", 1.0, True)

    def model_specs(self) -> list[dict[str, Any]]:
        """The router model specs it was given."""
        return [dict(m) for m in self.models]

    def __repr__(self) -> str:
        return f"NoopExecutor(models={sorted(self.names)})"


@dataclass
class ProfileRow:
    """One function of a cProfile: calls, and self / cumulative time in microseconds per task."""

    function: str
    calls: int
    self_us_per_task: float
    cum_us_per_task: float


@dataclass
class PipelineProfile:
    """cProfile of one agent's per-task path and of the bank actor's calls (see :func:`profile_pipeline`)."""

    executor: str
    tasks: int
    wall_s: float
    agent_us_per_task: float
    bank_us_per_task: float
    agent_cumulative: list[ProfileRow] = field(default_factory=list)
    agent_self: list[ProfileRow] = field(default_factory=list)
    bank_cumulative: list[ProfileRow] = field(default_factory=list)
    bank_self: list[ProfileRow] = field(default_factory=list)


class _ProfiledStore:
    """The bank actor as the agent sees it, each call moved from the agent's profiler to the bank's."""

    def __init__(self, bank: BankActor, agent: cProfile.Profile, own: cProfile.Profile) -> None:
        self.bank, self.agent, self.own = bank, agent, own

    def _switch(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.agent.disable()
        self.own.enable()
        try:
            return getattr(self.bank, method)(*args, **kwargs)
        finally:
            self.own.disable()
            self.agent.enable()

    def search_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self._switch("search_batch", *args, **kwargs)

    def store_batch(self, *args: Any, **kwargs: Any) -> Any:
        return self._switch("store_batch", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bank, name)


def _top(prof: cProfile.Profile, n_tasks: int, key: str, top: int) -> tuple[list[ProfileRow], float]:
    raw: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = [ProfileRow(f"{os.path.basename(f)}:{line}({name})" if line else name, int(nc),
                       round(tt / n_tasks * 1e6, 2), round(ct / n_tasks * 1e6, 2))
            for (f, line, name), (_, nc, tt, ct, _) in raw.items()]
    total = sum(r.self_us_per_task for r in rows)
    rows.sort(key=lambda r: -getattr(r, key))
    return rows[:top], round(total, 1)


def _one_blas_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits  # optional: comes with scikit-learn
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _profile_run(ex: Any, cfg: SONAConfig, stream: list[Task], agent_prof: cProfile.Profile,
                 bank_prof: cProfile.Profile, *, batch_size: int, engine_batch: int, seed: int) -> float:
    """One agent over a durable embedded bank, in-process; returns the profiled wall seconds."""
    workdir = tempfile.mkdtemp(prefix="swarm_sona_profile_")
    try:
        bank = BankActor({"path": f"{workdir}/bank"}, dim=cfg.dim, embedder=cfg.embedder_name)
        try:
            agent = AgentActor("agent-0", cfg, ex, store=_ProfiledStore(bank, agent_prof, bank_prof),
                               engine_batch=engine_batch, checkpoint_dir=f"{workdir}/ckpt", seed=seed)
            agent.run_batch(stream[:batch_size], batch_id=-1)   # warm-up: caches, first allocations
            t0 = time.perf_counter()
            agent_prof.enable()
            for b, lo in enumerate(range(0, len(stream), batch_size)):
                agent.run_batch(stream[lo:lo + batch_size], batch_id=b)
            agent_prof.disable()
            return time.perf_counter() - t0
        finally:
            bank.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def profile_pipeline(*, executor: str = "simulated", tasks: int = 4096, batch_size: int = 512,
                     engine_batch: int = 64, background_every: int = 2000, top: int = 15,
                     seed: int = 0) -> PipelineProfile:
    """cProfile one agent and the bank actor running the swarm's pipeline in this process (no Ray).

    The same classes as in ``bench swarm`` (:class:`AgentActor` over a durable embedded
    :class:`BankActor`, learning on), called in-process: the agent's profiler is paused while
    the bank serves a call and the bank's runs instead, so the two are apart. Not covered: Ray
    (argument encoding, scheduling), consensus pushes (no coordinator), the bank's background
    threads. Times are per task, with cProfile's own overhead in them (per-call costs inflate).

    Example:
        >>> prof = profile_pipeline(executor="noop", tasks=64, batch_size=32, top=3)  # doctest: +SKIP
        >>> len(prof.agent_self), prof.tasks  # doctest: +SKIP
        (3, 64)
    """
    if executor not in ("simulated", "noop"):
        raise ValueError(f"profile executor must be 'simulated' or 'noop', got {executor!r}")
    if tasks < 1 or batch_size < 1 or top < 1:
        raise ValueError(f"need tasks, batch_size and top >= 1, got {tasks}, {batch_size}, {top}")
    sim = SimulatedExecutor(seed=seed)
    ex: Any = sim if executor == "simulated" else NoopExecutor(sim.model_specs())
    stream = sim.tasks(tasks, seed=seed + 1)
    cfg = engine_config(SONAConfig.from_dict({"background_every": background_every}), executor=ex, router=None,
                        bank=None, seed=seed)
    agent_prof, bank_prof = cProfile.Profile(), cProfile.Profile()
    with _one_blas_thread():   # as in a Ray worker (OMP_NUM_THREADS=1); 2 BLAS threads cost ~9x on 2 busy cores
        wall = _profile_run(ex, cfg, stream, agent_prof, bank_prof, batch_size=batch_size,
                            engine_batch=engine_batch, seed=seed)
    a_cum, a_total = _top(agent_prof, tasks, "cum_us_per_task", top)
    a_self, _ = _top(agent_prof, tasks, "self_us_per_task", top)
    b_cum, b_total = _top(bank_prof, tasks, "cum_us_per_task", top)
    b_self, _ = _top(bank_prof, tasks, "self_us_per_task", top)
    return PipelineProfile(executor, tasks, round(wall, 3), a_total, b_total, a_cum, a_self, b_cum, b_self)


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
    p.add_argument("--noop", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the batched sharing swarm with the no-op executor (the simulator's cost apart)")
    p.add_argument("--profile", type=int, default=0, metavar="TASKS",
                   help="instead of the Ray run: cProfile TASKS tasks of one agent + the bank actor in-process, "
                        "simulated and no-op executor (0 = off)")
    p.add_argument("--top", type=int, default=15, help="rows per profile table (default 15)")


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
                num_cpus: int | None = None, max_in_flight: int = 2, engine_batch: int = 64,
                noop: bool = True) -> dict[str, Any]:
    """Run the benchmark (see module docs) and return the result dict (``noop``: add the no-op row)."""
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
        if noop:   # the same stream and swarm with an executor that does nothing
            with SwarmSONA({**spec, "shared_reasoning_bank": True, "consensus_learning": True},
                           executor=NoopExecutor(ex.model_specs()), engine_batch=engine_batch) as sw:
                got, _ = _measure(sw, stream, "sharing", batch_size=batch_size, max_in_flight=max_in_flight,
                                  window=window)
            out["noop"] = {k: got[k] for k in ("tasks_per_s_batched", "breakdown", "load_avg_1min")}
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


def _print_profiles(profs: Sequence[PipelineProfile], as_json: bool) -> None:
    if as_json:
        emit([asdict(p) for p in profs], as_json=True, title="", header=[], rows=[])
        return
    for p in profs:
        for side, tables in (("agent", (p.agent_cumulative, p.agent_self)), ("bank actor", (p.bank_cumulative,
                                                                                           p.bank_self))):
            total = p.agent_us_per_task if side == "agent" else p.bank_us_per_task
            for rows, by in zip(tables, ("cumulative", "self"), strict=True):
                print_table(f"profile {p.executor}: {side}, top {len(rows)} by {by} time, {p.tasks} tasks, "
                            f"{total} us/task profiled ({p.wall_s} s wall)",
                            ["function", "calls", "self us/task", "cum us/task"],
                            [[r.function, r.calls, r.self_us_per_task, r.cum_us_per_task] for r in rows])
                print()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona bench swarm``."""
    if args.profile:
        _print_profiles([profile_pipeline(executor=e, tasks=args.profile, batch_size=args.batch_size,
                                          engine_batch=args.engine_batch, background_every=args.background_every,
                                          top=args.top, seed=args.seed) for e in ("simulated", "noop")], args.json)
        return 0
    res = bench_swarm(agents=args.agents, tasks=args.tasks, topology=args.topology, rule=args.rule,
                      batch_size=args.batch_size, per_call_tasks=args.per_call_tasks, sync_every=args.sync_every,
                      background_every=args.background_every, window=args.window, seed=args.seed,
                      num_cpus=args.num_cpus, max_in_flight=args.in_flight, engine_batch=args.engine_batch,
                      noop=args.noop)
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
            *([["tasks/s batched, no-op executor", res["noop"]["tasks_per_s_batched"]],
               ["CPU us/task by process, no-op executor",
                " ".join(f"{k}={v}" for k, v in res["noop"]["breakdown"]["cpu_us_per_task"].items())],
               ["agent us/task by stage (wall), no-op executor",
                " ".join(f"{k}={v}" for k, v in res["noop"]["breakdown"]["agent_us_per_task"].items())]]
              if "noop" in res else []),
            ["curve sharing", " ".join(map(str, res["curve_sharing"]))],
            ["curve isolated", " ".join(map(str, res["curve_isolated"]))]]
    emit(res, as_json=args.json, title=f"bench swarm: {res['sizes']}", header=["metric", "value"], rows=rows)
    return 0
