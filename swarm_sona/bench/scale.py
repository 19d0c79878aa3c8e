"""``swarm-sona bench scale``: what synchronisation costs as the swarm grows, and what it gives up.

Two parts:

1. **Merge maths in-process** (:func:`merge_curve`): at N = 4 .. 1,024 agents, each agent a
   perturbed copy of a real agent's shareable state (the default engine's adapters, heads and
   router evidence; about 46 KB), one synchronisation of ``star`` (one coordinator merges
   everyone), ``hierarchical`` (``round(sqrt(N))`` queens, the first the root) and ``gossip``
   (a random mesh, ``--gossip-rounds`` rounds of fanout ``--fanout``; Metropolis mixing for
   fedavg, the rule itself on each neighbourhood otherwise) runs step by step through the
   topology's own plan and rules (:mod:`swarm_sona.consensus`). Per row: ``cpu_s`` (every
   merge and copy), ``wall_s`` (the critical path: each stage as long as its slowest step,
   every node on its own core), ``bytes`` moved between nodes, the busiest node's CPU and
   bytes, and ``distance``: relative L2 of the merged result (the root's; for gossip the worst
   agent's) from a *flat* merge of all agents by the same rule. For fedavg hierarchical is the
   flat merge (counts carried up); a median of group medians is not the median (the distance is
   what hierarchical gives up for robust rules), and gossip after a few rounds has not reached
   the average yet. ``growth``: the fitted exponent b of ``cost ~ N^b`` per topology and rule.
2. **Real actors** (:func:`actor_scale`, skipped with ``--no-actors``): swarms of N = 4, 16
   (``--agents``) on Ray: start-up time, tasks/s, the driver's CPU per task, sync wall time
   and the coordinators' CPU per topology, and USS / PSS per agent actor (``psutil``).
3. **A long job** (:func:`job_run`, with ``--job-tasks T``): at the smallest and the largest
   ``--agents`` size, one ``--job-topology`` swarm (default hierarchical) runs T tasks with
   learning on and its usual ``sync_every`` syncs: wall time, tasks/s, the driver's CPU per
   task, syncs, the success rate of the first and last tenth of the tasks, USS per agent.

:func:`checks` reads the issue's targets off a report: the driver's CPU per task at the largest
size over the smallest (target <= 1.2), and at the largest size whether hierarchical sync wall
time and total coordinator CPU are both below star's.

Example:
    >>> rows = merge_curve([4], rules=["fedavg"], topologies=["star", "hierarchical"], width=64)
    >>> [(r["topology"], r["coordinators"]) for r in rows]
    [('star', 1), ('hierarchical', 2)]
    >>> all(r["distance"] < 1e-6 for r in rows)   # fedavg: both equal the flat merge
    True
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from swarm_sona.bench.timing import emit, machine_info
from swarm_sona.consensus.parameter_space import export_params
from swarm_sona.consensus.rules import get_rule
from swarm_sona.consensus.topologies import Broadcast, Hierarchical, MergeStep, Mesh, Star, Topology
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.sona import SONA
from swarm_sona.executors.simulated import SimulatedExecutor

__all__ = ["MergeCost", "ActorScale", "JobRun", "ScaleReport", "TOPOLOGIES", "queens_for", "scale_topology",
           "agent_states", "merge_curve", "growth", "actor_scale", "job_run", "checks", "bench_scale",
           "add_arguments", "run"]

TOPOLOGIES = ("star", "hierarchical", "gossip")
States = dict[str, dict[str, np.ndarray]]


class MergeCost(TypedDict):
    """One in-process synchronisation: topology, rule, agents, coordinators (gossip: every agent
    merges), CPU and critical-path wall seconds, bytes moved, the busiest node's CPU and bytes,
    and the relative L2 distance from the flat merge."""

    topology: str
    rule: str
    agents: int
    coordinators: int
    cpu_s: float
    wall_s: float
    bytes: int
    busiest_cpu_s: float
    busiest_bytes: int
    distance: float


class ActorScale(TypedDict):
    """One real-actor swarm size on ``nodes`` Ray nodes (``nodes_used``: how many ran agents): start-up seconds, tasks/s, driver CPU microseconds per task,
    USS / PSS MB per agent actor (median and max), and per topology the sync wall seconds
    (median of the repeats) with the coordinators' CPU (total and busiest; gossip: the agents')."""

    agents: int
    nodes: int
    nodes_used: int
    startup_s: float
    tasks_per_s: float
    driver_cpu_us_per_task: float
    uss_mb_median: float
    uss_mb_max: float
    pss_mb_median: float
    sync: dict[str, dict[str, float]]


class JobRun(TypedDict):
    """One long job (part 3): agents, topology, tasks done, start-up and run wall seconds, tasks/s,
    driver CPU microseconds per task, syncs (and failed ones), the success rate of the first and
    last tenth of the tasks, and USS MB per agent actor (median and max) at the end."""

    agents: int
    topology: str
    tasks: int
    startup_s: float
    wall_s: float
    tasks_per_s: float
    driver_cpu_us_per_task: float
    syncs: int
    sync_errors: int
    failed_tasks: int
    success_first_tenth: float
    success_last_tenth: float
    uss_mb_median: float
    uss_mb_max: float


class ScaleReport(TypedDict):
    """The whole benchmark: the in-process curve, its growth exponents, the actor rows, the long
    jobs, the checks against the issue's targets, sizes, machine."""

    merge: list[MergeCost]
    growth: dict[str, dict[str, dict[str, float]]]
    actors: list[ActorScale]
    jobs: list[JobRun]
    checks: dict[str, Any]
    sizes: dict[str, Any]
    machine: dict[str, Any]


def queens_for(n: int) -> int:
    """Queens of an automatically sized hierarchy of ``n`` workers: ``round(sqrt(n))``, at least 1.

    Example:
        >>> [queens_for(n) for n in (1, 4, 16, 64, 1024)]
        [1, 2, 4, 8, 32]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"queens_for: n must be an integer >= 1, got {n!r}")
    return max(1, round(math.sqrt(n)))


def scale_topology(name: str, workers: Sequence[str], rule: str, *, rounds: int = 3, fanout: int = 2,
                   seed: int = 0) -> Topology:
    """The topology ``name`` (star, hierarchical with :func:`queens_for` queens, or gossip: a
    random mesh) over ``workers`` merging by ``rule``.

    Example:
        >>> scale_topology("hierarchical", [f"w{i}" for i in range(16)], "median").coordinators
        ('queen-0', 'queen-1', 'queen-2', 'queen-3')
    """
    if name == "star":
        return Star(list(workers), ["coordinator"], rule=rule)
    if name == "hierarchical":
        return Hierarchical(list(workers), [f"queen-{i}" for i in range(queens_for(len(workers)))], rule=rule)
    if name == "gossip":
        return Mesh(list(workers), rule="gossip" if rule == "fedavg" else rule, rounds=rounds, fanout=fanout,
                    seed=seed)
    raise ValueError(f"scale_topology: unknown topology {name!r} (expected one of {list(TOPOLOGIES)})")


def _template(width: int | None) -> dict[str, np.ndarray]:
    """A real agent's shareable state (default engine, the simulated executor's models), or with
    ``width`` one float32 vector of that many entries."""
    if width is not None:
        return {"w": np.zeros(width, np.float32)}
    cfg = SONAConfig.from_dict({"llm_router": {"models": SimulatedExecutor(seed=0).model_specs()}})
    return export_params(SONA(cfg), "factor")[0]


def agent_states(n: int, *, seed: int = 0, width: int | None = None) -> States:
    """``n`` agents' states: the template plus independent Gaussian noise (scale 0.1 + |x|).

    Example:
        >>> s = agent_states(3, width=8)
        >>> sorted(s), s["agent-0"]["w"].shape
        (['agent-0', 'agent-1', 'agent-2'], (8,))
    """
    base = _template(width)
    rng = np.random.default_rng(seed)
    return {f"agent-{i}": {k: (v + rng.normal(0, 1, v.shape) * (0.1 + np.abs(v))).astype(v.dtype)
                           for k, v in base.items()} for i in range(n)}


def _nbytes(state: Mapping[str, np.ndarray]) -> int:
    return sum(int(np.asarray(v).nbytes) for v in state.values())


def _flat(state: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(state[k], np.float64).ravel() for k in sorted(state)])


class _Ledger:
    """Per-node CPU and bytes of one synchronisation, and the stages' critical path."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        self.wall = 0.0
        self.moved = 0

    def add(self, node: str, cpu: float = 0.0, nbytes: int = 0) -> None:
        self.cpu[node] = self.cpu.get(node, 0.0) + cpu
        self.bytes[node] = self.bytes.get(node, 0) + nbytes


def _merge(topo: Topology, step: MergeStep, cur: States, counts: dict[str, float], led: _Ledger) -> float:
    """Run one merge step into ``cur``'s next state; returns its CPU seconds (charged to the target)."""
    t0 = time.process_time()
    out = topo.run_step(step, cur, counts)
    dt = time.process_time() - t0
    if step.rule is not None and step.target not in step.sources:   # the count the merge stands for
        counts[step.target] = get_rule(step.rule, **dict(step.rule_kwargs)).count(
            [AgentUpdate(s, 0, {"_": np.zeros(1)}, weight=counts[s]) for s in step.sources])
    sent = [s for s in step.sources if s != step.target]
    for s in sent:
        n = _nbytes(cur[s])
        led.add(s, nbytes=n)
        led.add(step.target, nbytes=n)
        led.moved += n
    led.add(step.target, cpu=dt)
    cur[f"\0{step.target}"] = out   # staged: steps of a stage read the states before it
    return dt


def run_sync(topo: Topology, states: States) -> tuple[States, _Ledger]:
    """One synchronisation of ``topo`` over the workers' ``states``, step by step, with its ledger."""
    cur: States = {k: dict(v) for k, v in states.items()}
    counts = dict.fromkeys(topo.nodes, 1.0)
    led = _Ledger()
    for stage in topo.schedule(0):
        longest = 0.0
        for step in stage:
            if isinstance(step, MergeStep):
                longest = max(longest, _merge(topo, step, cur, counts, led))
                continue
            assert isinstance(step, Broadcast)
            t0 = time.process_time()
            for t in step.targets:
                if t != step.source:
                    cur[f"\0{t}"] = {k: v.copy() for k, v in cur[step.source].items()}
                    n = _nbytes(cur[step.source])
                    led.add(step.source, nbytes=n)
                    led.add(t, nbytes=n)
                    led.moved += n
            dt = time.process_time() - t0
            led.add(step.source, cpu=dt)
            longest = max(longest, dt)
        for k in [k for k in cur if k.startswith("\0")]:
            cur[k[1:]] = cur.pop(k)
        led.wall += longest
    return cur, led


def _distance(topo: Topology, out: States, flat: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(flat)), 1e-12)
    nodes = [topo.root] if topo.root is not None else list(topo.workers)
    return max(float(np.linalg.norm(_flat(out[n]) - flat)) for n in nodes if n is not None) / scale


def merge_curve(sizes: Sequence[int], *, rules: Sequence[str] = ("fedavg", "median", "trimmed_mean"),
                topologies: Sequence[str] = TOPOLOGIES, rounds: int = 3, fanout: int = 2, seed: int = 0,
                width: int | None = None, repeat: int = 3) -> list[MergeCost]:
    """Part 1 (see module docs): one :class:`MergeCost` per size, rule and topology (the median
    of ``repeat`` runs by CPU).

    Example:
        >>> [r["distance"] > 0 for r in merge_curve([9], rules=["median"], topologies=["hierarchical"], width=32)]
        [True]
    """
    bad = [t for t in topologies if t not in TOPOLOGIES]
    if repeat < 1:
        raise ValueError(f"merge_curve: repeat must be >= 1, got {repeat!r}")
    if bad or not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in sizes):
        raise ValueError(f"merge_curve: sizes must be integers >= 2 (got {list(sizes)}) and topologies among "
                         f"{list(TOPOLOGIES)} (unknown: {bad})")
    rows: list[MergeCost] = []
    for n in sizes:
        states = agent_states(n, seed=seed + n, width=width)
        ups = [AgentUpdate(a, 0, s, weight=1.0) for a, s in sorted(states.items())]
        for rule in rules:
            flat = _flat(get_rule(rule)(ups))
            for name in topologies:
                topo = scale_topology(name, list(states), rule, rounds=rounds, fanout=fanout, seed=seed)
                runs = sorted((run_sync(topo, states) for _ in range(repeat)), key=lambda r: sum(r[1].cpu.values()))
                out, led = runs[len(runs) // 2]   # the median run by CPU (the machine may be shared)
                busiest = max(led.cpu, key=lambda k: led.cpu[k])
                rows.append(MergeCost(
                    topology=name, rule=rule, agents=n,
                    coordinators=len(topo.coordinators) if topo.central else n,
                    cpu_s=round(sum(led.cpu.values()), 6), wall_s=round(led.wall, 6), bytes=led.moved,
                    busiest_cpu_s=round(led.cpu[busiest], 6), busiest_bytes=max(led.bytes.values(), default=0),
                    distance=float(f"{_distance(topo, out, flat):.3e}")))
    return rows


def growth(rows: Sequence[MergeCost]) -> dict[str, dict[str, dict[str, float]]]:
    """Fitted exponent b of ``cost ~ a N^b`` (least squares on log-log) per topology and rule,
    for ``cpu_s``, ``wall_s``, ``bytes`` and ``busiest_cpu_s`` (needs two sizes or more).

    Example:
        >>> rows = [MergeCost(topology="star", rule="fedavg", agents=n, coordinators=1, cpu_s=n * 1e-3,
        ...                   wall_s=n * 1e-3, bytes=100 * n, busiest_cpu_s=n * 1e-3, busiest_bytes=100 * n,
        ...                   distance=0.0) for n in (4, 16, 64)]
        >>> growth(rows)["star"]["fedavg"]["bytes"]
        1.0
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    keys = ("cpu_s", "wall_s", "bytes", "busiest_cpu_s")
    for topo in sorted({r["topology"] for r in rows}):
        for rule in sorted({r["rule"] for r in rows}):
            sel = sorted((r for r in rows if r["topology"] == topo and r["rule"] == rule), key=lambda r: r["agents"])
            if len({r["agents"] for r in sel}) < 2:
                continue
            x = np.log([r["agents"] for r in sel])
            fit = {k: round(float(np.polyfit(x, np.log([max(float(r[k]), 1e-9) for r in sel]), 1)[0]), 2)  # type: ignore[literal-required]
                   for k in keys}
            out.setdefault(topo, {})[rule] = fit
    return out


# ---- part 2: real actors ---------------------------------------------------------------------------
def _memory_mb(pids: Sequence[int]) -> tuple[list[float], list[float]]:
    """USS and PSS in MB of each process of ``pids`` (``psutil.memory_full_info``)."""
    import psutil

    uss, pss = [], []
    for pid in pids:
        try:
            m = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        uss.append(m.uss / 2**20)
        pss.append(getattr(m, "pss", m.uss) / 2**20)
    return uss, pss


def _cpu_of(group: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v["cpu_s"]) for k, v in group.items() if isinstance(v, dict) and "cpu_s" in v}


def _sync_cost(sw: Any, repeats: int, central: bool) -> dict[str, float]:
    """Median sync wall seconds over ``repeats`` synchronisations and the CPU they cost the
    coordinators (gossip: the agents, who mix), in total and on the busiest one."""
    walls = []
    key = "coordinators" if central else "agents"
    c0 = _cpu_of(sw.stats()[key])
    for _ in range(repeats):
        t0 = time.perf_counter()
        sw.sync(wait=True)
        walls.append(time.perf_counter() - t0)
    c1 = _cpu_of(sw.stats()[key])
    used = {k: c1[k] - c0.get(k, 0.0) for k in c1}
    return {"wall_s_median": round(float(np.median(walls)), 4), "wall_s_max": round(max(walls), 4),
            "cpu_s_total": round(sum(used.values()) / repeats, 4),
            "cpu_s_busiest": round(max(used.values(), default=0.0) / repeats, 4)}


def _swarm_spec(topology: str, n: int, seed: int, *, sync_every: int = 10**6, nodes: int = 1) -> dict[str, Any]:
    workers = [{"id": f"agent-{i}", "type": "worker"} for i in range(n)]
    if topology == "hierarchical":
        workers = [{"id": f"queen-{i}", "type": "queen"} for i in range(queens_for(n))] + workers
    return {"topology": "mesh" if topology == "gossip" else topology, "agents": workers, "seed": seed,
            "sync_every": sync_every, "batch_size": 64, "gossip_rounds": 3, "fanout": 2,
            "sona": {"background_every": 500}, "placement": "spread" if nodes > 1 else "default"}


def _one_size(n: int, *, tasks_per_agent: int, repeats: int, seed: int, nodes: int = 1) -> ActorScale:
    """Start-up, throughput, driver CPU and memory on a star swarm of ``n``, then the sync cost of
    every topology (each its own swarm, warmed by the same tasks); on ``nodes`` > 1 the actors
    are spread over the nodes."""
    from swarm_sona.runtime.swarm import SwarmSONA  # lazily: the in-process part needs no Ray

    ex = SimulatedExecutor(seed=seed)
    sync: dict[str, dict[str, float]] = {}
    row: dict[str, Any] = {"agents": n, "nodes": nodes}
    for topo in TOPOLOGIES:
        t0 = time.perf_counter()
        with SwarmSONA(_swarm_spec(topo, n, seed, nodes=nodes), executor=ex) as sw:
            started = time.perf_counter() - t0
            stream = ex.tasks(tasks_per_agent * n, seed=seed + 1)
            c0, t1 = time.process_time(), time.perf_counter()
            done = sum(1 for _ in sw.run(stream, progress=False))
            wall, cpu = time.perf_counter() - t1, time.process_time() - c0
            if topo == "star":
                agents = sw.stats()["agents"].values()
                uss, pss = _memory_mb([a["pid"] for a in agents])
                row.update(nodes_used=len({a.get("node_id") for a in agents if a.get("node_id")}),
                           startup_s=round(started, 2), tasks_per_s=round(done / wall, 1),
                           driver_cpu_us_per_task=round(cpu / done * 1e6, 1),
                           uss_mb_median=round(float(np.median(uss)), 1), uss_mb_max=round(max(uss), 1),
                           pss_mb_median=round(float(np.median(pss)), 1))
            sync[topo] = {"startup_s": round(started, 2), **_sync_cost(sw, repeats, topo != "gossip")}
    row["sync"] = sync
    return ActorScale(**row)  # type: ignore[typeddict-item]


def actor_scale(sizes: Sequence[int], *, tasks_per_agent: int = 64, repeats: int = 3, seed: int = 0,
                num_cpus: int | None = None, nodes: int = 1) -> list[ActorScale]:
    """Part 2 (see module docs): one :class:`ActorScale` per swarm size, on a local Ray (or
    ``RAY_ADDRESS``), or with ``nodes`` > 1 on a local multi-node cluster
    (:class:`~swarm_sona.runtime.startup.LocalCluster`: a head and ``nodes - 1`` workers on
    loopback, ``num_cpus`` logical CPUs each, default 2) with the actors spread over the nodes."""
    from swarm_sona.runtime.startup import LocalCluster, start_ray, stop_ray  # lazily: needs Ray

    if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"actor_scale: sizes must be integers >= 1, got {list(sizes)}")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"actor_scale: nodes must be an integer >= 1, got {nodes!r}")
    if nodes > 1:
        with LocalCluster(nodes, num_cpus=num_cpus or 2):
            return [_one_size(n, tasks_per_agent=tasks_per_agent, repeats=repeats, seed=seed, nodes=nodes)
                    for n in sizes]
    owns = start_ray(num_cpus=num_cpus)
    try:
        return [_one_size(n, tasks_per_agent=tasks_per_agent, repeats=repeats, seed=seed) for n in sizes]
    finally:
        stop_ray(owns)


def job_run(n: int, tasks: int, *, topology: str = "hierarchical", sync_every: int = 128,
            seed: int = 0) -> JobRun:
    """Part 3 (see module docs): a swarm of ``n`` agents (``topology``, syncing every
    ``sync_every`` tasks per agent) runs ``tasks`` simulated tasks with learning on; on a local
    Ray (or ``RAY_ADDRESS``), started here when none is running.

    Example:
        >>> job_run(4, 2000)["tasks"]                                    # doctest: +SKIP
        2000
    """
    if topology not in TOPOLOGIES:
        raise ValueError(f"job_run: unknown topology {topology!r} (expected one of {list(TOPOLOGIES)})")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (n, tasks, sync_every)):
        raise ValueError(f"job_run: n, tasks and sync_every must be integers >= 1, got {n!r}, {tasks!r}, "
                         f"{sync_every!r}")
    from swarm_sona.runtime.startup import start_ray, stop_ray  # lazily: the in-process part needs no Ray
    from swarm_sona.runtime.swarm import SwarmSONA

    owns = start_ray()
    try:
        ex = SimulatedExecutor(seed=seed)
        t0 = time.perf_counter()
        with SwarmSONA(_swarm_spec(topology, n, seed, sync_every=sync_every), executor=ex) as sw:
            started = time.perf_counter() - t0
            stream = ex.tasks(tasks, seed=seed + 1)
            c0, t1 = time.process_time(), time.perf_counter()
            ok = [bool(r["success"]) for r in sw.run(stream, progress=False)]
            wall, cpu = time.perf_counter() - t1, time.process_time() - c0
            st = sw.stats()
            uss, _ = _memory_mb([a["pid"] for a in st["agents"].values() if "pid" in a])
    finally:
        stop_ray(owns)
    tenth = max(1, len(ok) // 10)
    return JobRun(agents=n, topology=topology, tasks=len(ok), startup_s=round(started, 2), wall_s=round(wall, 2),
                  tasks_per_s=round(len(ok) / max(wall, 1e-9), 1),
                  driver_cpu_us_per_task=round(cpu / max(1, len(ok)) * 1e6, 1),
                  syncs=int(st.get("syncs", 0)), sync_errors=int(st.get("sync_errors", 0)),
                  failed_tasks=int(st.get("failed_tasks", 0)),
                  success_first_tenth=round(sum(ok[:tenth]) / tenth, 3),
                  success_last_tenth=round(sum(ok[-tenth:]) / tenth, 3),
                  uss_mb_median=round(float(np.median(uss)), 1) if uss else float("nan"),
                  uss_mb_max=round(max(uss), 1) if uss else float("nan"))


def checks(actors: Sequence[ActorScale], jobs: Sequence[JobRun] = (), *, uss_budget_mb: float = 150.0,
           driver_ratio_max: float = 1.2) -> dict[str, Any]:
    """The issue's targets read off the actor rows and the jobs: the driver's CPU per task at the
    largest size over the smallest (from the jobs when there are two, else from the actor rows),
    the largest USS per agent actor against ``uss_budget_mb``, and at the largest size
    hierarchical's sync wall time and total coordinator CPU against star's. A figure that
    cannot be read (one size only, a topology missing) is left out.

    Example:
        >>> def row(n, us, hw, hc):
        ...     sync = {"star": {"wall_s_median": 1.0, "cpu_s_total": 1.0},
        ...             "hierarchical": {"wall_s_median": hw, "cpu_s_total": hc}}
        ...     return ActorScale(agents=n, nodes=1, nodes_used=1, startup_s=1.0, tasks_per_s=1.0, driver_cpu_us_per_task=us,
        ...                       uss_mb_median=60.0, uss_mb_max=70.0, pss_mb_median=65.0, sync=sync)
        >>> c = checks([row(4, 50.0, 2.0, 2.0), row(64, 55.0, 0.5, 0.9)])
        >>> c["driver_ratio"], c["driver_ok"], c["hierarchical_below_star"], c["uss_ok"]
        (1.1, True, True, True)
    """
    out: dict[str, Any] = {}
    one_node = [r for r in actors if r.get("nodes", 1) == min((a.get("nodes", 1) for a in actors), default=1)]
    runs: Sequence[Mapping[str, Any]] = jobs if len({j["agents"] for j in jobs}) >= 2 else one_node
    by_n = sorted(runs, key=lambda r: r["agents"])
    if len({r["agents"] for r in by_n}) >= 2:
        lo, hi = by_n[0], by_n[-1]
        ratio = hi["driver_cpu_us_per_task"] / max(lo["driver_cpu_us_per_task"], 1e-9)
        out.update(driver_ratio=round(ratio, 2), driver_ratio_sizes=[lo["agents"], hi["agents"]],
                   driver_ratio_from="jobs" if runs is jobs else "actors", driver_ok=ratio <= driver_ratio_max)
    mem = [float(r["uss_mb_max"]) for r in [*actors, *jobs] if not math.isnan(float(r["uss_mb_max"]))]
    if mem:
        out.update(uss_mb_max=max(mem), uss_ok=max(mem) <= uss_budget_mb)
    if actors:   # on the fewest nodes measured (more nodes on one machine add cross-node calls, not CPUs)
        fewest = min(r.get("nodes", 1) for r in actors)
        top = max((r for r in actors if r.get("nodes", 1) == fewest), key=lambda r: r["agents"])
        star, hier = top["sync"].get("star"), top["sync"].get("hierarchical")
        if star and hier:
            out.update(sync_agents=top["agents"],
                       hierarchical_wall_over_star=round(hier["wall_s_median"] / max(star["wall_s_median"], 1e-9), 3),
                       hierarchical_cpu_over_star=round(hier["cpu_s_total"] / max(star["cpu_s_total"], 1e-9), 3),
                       hierarchical_below_star=hier["wall_s_median"] < star["wall_s_median"]
                       and hier["cpu_s_total"] < star["cpu_s_total"])
    return out


def bench_scale(*, merge_sizes: Sequence[int] = (4, 16, 64, 256, 1024), agents: Sequence[int] = (4, 16),
                rules: Sequence[str] = ("fedavg", "median", "trimmed_mean"), actors: bool = True,
                tasks_per_agent: int = 64, repeats: int = 3, seed: int = 0,
                num_cpus: int | None = None, job_tasks: int = 0,
                job_topology: str = "hierarchical", nodes: Sequence[int] = (1,)) -> ScaleReport:
    """All parts (see module docs) as one :class:`ScaleReport`; ``job_tasks`` > 0 adds the long
    jobs (part 3) at the smallest and the largest of ``agents``; ``nodes``: the real-actor part
    once per node count (1: a local Ray; more: a local multi-node cluster, actors spread)."""
    if job_tasks and job_topology not in TOPOLOGIES:
        raise ValueError(f"bench_scale: unknown job topology {job_topology!r} (expected one of {list(TOPOLOGIES)})")
    rows = merge_curve(merge_sizes, rules=rules, seed=seed)
    act = [row for k in nodes for row in actor_scale(agents, tasks_per_agent=tasks_per_agent, repeats=repeats,
                                                     seed=seed, num_cpus=num_cpus, nodes=k)] if actors else []
    jobs = [job_run(n, job_tasks, topology=job_topology, seed=seed) for n in sorted({min(agents), max(agents)})
            ] if actors and job_tasks > 0 else []
    return ScaleReport(merge=rows, growth=growth(rows), actors=act, jobs=jobs, checks=checks(act, jobs),
                       sizes={"merge_sizes": list(merge_sizes), "agents": list(agents), "nodes": list(nodes),
                              "rules": list(rules),
                              "tasks_per_agent": tasks_per_agent, "repeats": repeats, "job_tasks": job_tasks,
                              "state_bytes": _nbytes(_template(None)), "load_avg_1min": round(os.getloadavg()[0], 2)},
                       machine=machine_info())


def _sizes(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """CLI options of ``swarm-sona bench scale``.

    Example:
        >>> p = argparse.ArgumentParser(); add_arguments(p)
        >>> p.parse_args(["--agents", "4,16,64"]).agents
        [4, 16, 64]
    """
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--agents", type=_sizes, default=[4, 16], help="real-actor swarm sizes (default 4,16)")
    p.add_argument("--merge-sizes", type=_sizes, default=[4, 16, 64, 256, 1024],
                   help="in-process merge sizes (default 4,16,64,256,1024)")
    p.add_argument("--rules", default="fedavg,median,trimmed_mean", help="merge rules (comma-separated)")
    p.add_argument("--no-actors", action="store_true", help="in-process part only")
    p.add_argument("--tasks-per-agent", type=int, default=64, help="tasks per agent before the syncs (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="syncs timed per topology (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray (default: all), or of each node with --nodes > 1 (default 2)")
    p.add_argument("--nodes", type=_sizes, default=[1],
                   help="Ray nodes of the real-actor part, e.g. 1,3 (more than 1: a local multi-node cluster on "
                        "loopback, the actors spread over it)")
    p.add_argument("--job-tasks", type=int, default=0,
                   help="also run a job of this many tasks, learning on, at the smallest and largest --agents")
    p.add_argument("--job-topology", choices=TOPOLOGIES, default="hierarchical", help="the job's topology")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona bench scale``."""
    res = bench_scale(merge_sizes=args.merge_sizes, agents=args.agents, rules=args.rules.split(","),
                      actors=not args.no_actors, tasks_per_agent=args.tasks_per_agent, repeats=args.repeats,
                      seed=args.seed, num_cpus=args.num_cpus, job_tasks=args.job_tasks,
                      job_topology=args.job_topology, nodes=args.nodes)
    rows: list[list[Any]] = [[r["topology"], r["rule"], r["agents"], r["coordinators"], f"{r['cpu_s'] * 1e3:.1f}",
                              f"{r['wall_s'] * 1e3:.1f}", f"{r['bytes'] / 2**20:.2f}",
                              f"{r['busiest_cpu_s'] * 1e3:.1f}", r["distance"]] for r in res["merge"]]
    rows += [["actors", f"{a['nodes_used']}/{a['nodes']} node(s)", a["agents"], "", f"start {a['startup_s']} s", f"{a['tasks_per_s']} tasks/s",
              f"USS {a['uss_mb_median']} MB", f"driver {a['driver_cpu_us_per_task']} us/task",
              " ".join(f"{t}={s['wall_s_median']}s/{s['cpu_s_total']}cpu" for t, s in a["sync"].items())]
             for a in res["actors"]]
    rows += [["job", j["topology"], j["agents"], "", f"{j['tasks']} tasks", f"{j['tasks_per_s']} tasks/s",
              f"USS {j['uss_mb_median']} MB", f"driver {j['driver_cpu_us_per_task']} us/task",
              f"syncs {j['syncs']}, success {j['success_first_tenth']} -> {j['success_last_tenth']}"]
             for j in res["jobs"]]
    if res["checks"]:
        rows.append(["checks", "", "", "", "", "", "", "", " ".join(f"{k}={v}" for k, v in res["checks"].items())])
    emit(res, as_json=args.json, title=f"bench scale: {res['sizes']}",
         header=["topology", "rule", "N", "coords", "cpu ms", "wall ms", "MB moved", "busiest ms", "distance"],
         rows=rows)
    return 0
