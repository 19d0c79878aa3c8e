"""``swarm-sona bench learning``: latency of the engine's hot paths, in microseconds.

Rows (dim 256 by default, one engine per path, same seed):

* ``instant_step``: ``SONA.learn(trajectory)`` for a task whose activations were cached at
  routing time: validation, instant-loop SGD step on MicroLoRA + value/router heads (kernel
  ``instant_step``), replay bookkeeping (background loop off).
* ``instant_kernel``: the ``instant_step`` kernel call alone.
* ``forward``: the full model forward for one task embedding (attention block, MLP, final
  norm, MicroLoRA, heads; embedding excluded; nothing cached).
* ``apply``: ``SONA.apply`` (MicroLoRA) on one vector; ``apply_batch1024`` on 1024 vectors.
* ``route``: ``SONA.route`` without an LLMRouter (router head, greedy), embedding given.
* ``router_decision``: ``LLMRouter.route`` alone (the learned bandit router a SONA builds from
  its model table by default), embedding given: the routing decision of DESIGN's target.
* ``learn_with_router``: ``SONA.learn`` as ``instant_step`` plus the LLMRouter's bandit
  feedback (what ``learn`` costs with the default router attached).
* ``route_batch64`` / ``learn_batch64``: per task, a chunk of 64 tasks as a swarm agent runs it
  (``engine_batch`` 64): one ``SONA.route_batch`` (``forward_batch`` + the router's vectorised
  decisions) and one ``SONA.learn`` of the 64 trajectories (one ``instant_steps`` kernel call,
  one batched router feedback), with the default router attached.
* ``background_1k``: one ``SONA.background()`` cycle after 1,000 trajectories were learned
  since the last one (:data:`BACKGROUND_TRAJECTORIES`; chunks of 64, 20 embedding clusters,
  mixed outcomes, 3 router models), with an embedded bank on a RAM disk attached. The work:
  ``background_steps`` (4) Adam mini-batches of ``batch_size`` (64) from the replay buffer
  (forward and backward through the attention block's BaseLoRA, the MLP and the heads, the
  EWC++ Fisher update and penalty), the online-consolidation check, then the bank's distillation
  of the 1,000 trajectories: spherical k-means (``distill_clusters`` 8, successes and failures
  apart) and each cluster stored or merged as a pattern (durable: written through the bank's
  write-ahead log). ``BACKGROUND_REPEAT`` cycles, each after 1,000 new trajectories.

Each row is measured twice in the same run: through ``swarm_sona.kernels`` (the
dispatch: the C extension when built, else the numpy backend with argument checks) and with
the plain-numpy reference kernels (``kernels.reference``); ``speedup`` is numpy p50 /
dispatch p50. One BLAS thread (threadpoolctl) unless ``--blas-threads``.

JSON: ``{"instant_step_us": {"p50", "p99", "numpy": {"p50", "p99"}, "speedup"}, "forward_us",
"apply_us", "apply_batch1024_us", "instant_kernel_us", "route_us", "router_decision_us",
"learn_with_router_us", "route_batch64_us", "learn_batch64_us", "background_1k_us", "dim", "kernels",
"machine", "repeat"}``.

``--quantization`` adds the rows of ``lora.quantization`` (:func:`measure_quantization`), for
float32, 8bit and 4bit at each ``--quant-dims`` (default 256 and the guide's 1536; ``mlp_hidden``
= dim): bytes of the frozen base and of every array the engine holds (:func:`array_bytes`; and
what tracemalloc sees retained after building it and running one forward and one background
cycle), forward latency (``SONAModel.forward`` of one embedding) and background-cycle time
(p50/p99), and accuracy against float32 on the same seeds: the engine as a router on the RouteLLM
MMLU stream (:func:`~swarm_sona.bench.routing.run_routing_bench` with the ``full`` engine of
``bench ablation``: realised accuracy and APGR) and continual learning on the digits
(``permuted``, EWC++, average accuracy, :mod:`~swarm_sona.bench.continual`'s tasks and metrics),
each as a difference in points per seed.

Measured (2026-12-02, AMD EPYC 2 cores shared, one BLAS thread; dim 1536, ``mlp_hidden`` 1536;
accuracy: 10 paired seeds, 600 RouteLLM prompts, permuted digits 3 tasks x 5 epochs; deltas in
points vs float32, mean [min, max]):

=======  =============  =============  ==============  ======  ====================  ====================
scheme   base bytes     engine arrays  fwd p50/p99 us  bg p50  router acc d          continual acc d
=======  =============  =============  ==============  ======  ====================  ====================
float32  56.6 M         86.1 M         747 / 1000      102 ms  (71.72 %)             (72.46 %)
8bit     15.0 M 26.6 %  16.2 M 18.8 %  388 / 490       117 ms  +0.00 [0, 0]          +0.25 [-0.86, +1.91]
4bit     7.96 M 14.1 %  9.1 M 10.6 %   553 / 666       110 ms  +0.00 [-0.50, +0.67]  -0.01 [-1.73, +2.28]
=======  =============  =============  ==============  ======  ====================  ====================

(4bit APGR +0.04 [-1.17, +2.23] points.) The float32 engine's arrays include its fused inference
copy (Wo Wv, W_in, W_out); a quantised engine runs the layers on their codes instead. At dim 256
the quantised forward is no faster (37-57 us float32, 43-50 us 4bit: four layer calls through
the kernel wrappers against three fused float products).

Example:
    >>> from swarm_sona.bench.learning import measure
    >>> res = measure(dim=32, repeat=20, models=2)
    >>> sorted(res["forward_us"])
    ['numpy', 'p50', 'p99', 'speedup']
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from contextlib import nullcontext
from types import FunctionType, ModuleType
from typing import Any, TypedDict

import numpy as np

from swarm_sona import kernels
from swarm_sona.bench.ablation import variant_factory
from swarm_sona.bench.continual import continual_metrics, make_tasks
from swarm_sona.bench.routing import DEFAULT_DATA, embed_table, make_embedder, run_routing_bench, subject_subset
from swarm_sona.bench.timing import emit, machine_info, print_table, summarize_us, time_call
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.sona import SONA
from swarm_sona.executors.table import load_routing_table
from swarm_sona.kernels import reference

__all__ = ["add_arguments", "run", "measure", "TARGETS_US", "array_bytes", "reachable_arrays", "measure_quantization",
           "quantization_row", "QuantRow", "QuantAccuracy", "QuantReport", "SCHEMES"]

TARGETS_US = {"instant_step_us": 10.0, "forward_us": 50.0, "apply_us": 2.0, "router_decision_us": 20.0,
              "route_batch64_us": 20.0, "learn_batch64_us": 8.0, "background_1k_us": 50_000.0}
_ROWS = ("instant_step_us", "instant_kernel_us", "forward_us", "apply_us", "apply_batch1024_us", "route_us",
         "router_decision_us", "learn_with_router_us", "route_batch64_us", "learn_batch64_us", "background_1k_us")
#: tasks per call of the chunk rows (the swarm's default ``engine_batch``)
CHUNK = 64
#: trajectories learned before each timed background cycle, and how many cycles are timed
BACKGROUND_TRAJECTORIES = 1000
BACKGROUND_REPEAT = 8


def _per_task(stats: dict[str, float], n: int) -> dict[str, float]:
    return {k: v / n for k, v in stats.items()}


def _engine(dim: int, models: int, kernels: Any, *, router: Any = None, quantization: str | None = None,
            bank: Any = "auto") -> SONA:
    cfg: dict[str, Any] = {"dim": dim, "mlp_hidden": dim, "background_every": 0, "lora": {"quantization": quantization},
           "llm_router": {"models": [{"name": f"model-{i}", "cost": 0.001 * (i + 1), "cost_unit": "call",
                                      "quality": 0.5 + 0.1 * i}
                                     for i in range(models)]}}
    return SONA(cfg, kernels=kernels, router=router, bank=bank)


def _measure_path(kernels: Any, dim: int, repeat: int, models: int) -> dict[str, dict[str, float]]:
    sona = _engine(dim, models, kernels)
    rng = np.random.default_rng(0)
    e = rng.standard_normal(dim).astype(np.float32)
    e /= np.linalg.norm(e)
    arm_model = sona.model_names[-1] if models else None
    traj = Trajectory(task="bench task", embedding=e, model=arm_model, reward=0.75, success=True)
    sona.forward(e)  # routing time: caches the activations the instant loop reuses
    m = sona.model
    h = sona.hidden(e, [])
    arm = len(sona.model_names) - 1
    V = rng.standard_normal((1024, dim)).astype(np.float32)
    out = {
        "instant_step_us": time_call(lambda: sona.learn(traj), repeat=repeat),
        "instant_kernel_us": time_call(lambda: m.instant_step(h, arm, 0.75, 1.0, 0.05, 5.0), repeat=repeat),
        "forward_us": time_call(lambda: m.forward(e), repeat=repeat),
        "apply_us": time_call(lambda: sona.apply(e), repeat=repeat),
        "apply_batch1024_us": time_call(lambda: sona.apply(V), repeat=max(10, repeat // 20)),
    }
    if models:
        out["route_us"] = time_call(lambda: sona.route("bench task", embedding=e), repeat=repeat)
        routed = _engine(dim, models, kernels, router="auto")
        routed.forward(e)
        r = routed.router
        out["router_decision_us"] = time_call(lambda: r.route("bench task", embedding=e), repeat=repeat)
        out["learn_with_router_us"] = time_call(lambda: routed.learn(traj), repeat=repeat)
        # a chunk as an agent of the swarm runs it: one route_batch (forward_batch + router), one learn
        E = rng.standard_normal((CHUNK, dim)).astype(np.float32)
        E /= np.linalg.norm(E, axis=1, keepdims=True)
        texts = [f"bench task {i}" for i in range(CHUNK)]
        decided = routed.route_batch(texts, embeddings=E)
        trajs = [Trajectory(task=t, embedding=x, model=d["model"], reward=0.75, success=bool(i % 2))
                 for i, (t, x, d) in enumerate(zip(texts, E, decided, strict=True))]
        few = max(10, repeat // 20)
        out["route_batch64_us"] = _per_task(time_call(lambda: routed.route_batch(texts, embeddings=E), repeat=few),
                                            CHUNK)
        out["learn_batch64_us"] = _per_task(time_call(lambda: routed.learn(trajs), repeat=few), CHUNK)
    out["background_1k_us"] = background_cycle(dim, models, kernels)
    return out


def background_cycle(dim: int, models: int, kernels: Any, *, trajectories: int = BACKGROUND_TRAJECTORIES,
                     repeat: int = BACKGROUND_REPEAT, seed: int = 0) -> dict[str, float]:
    """Time ``repeat`` background cycles (us), each after ``trajectories`` newly learned ones (see
    the module docs' ``background_1k`` row), with an embedded bank on a RAM disk. Beside the
    timing stats: ``steps`` (mini-batches) and ``clusters`` (distilled) of the last cycle.

    Example:
        >>> from swarm_sona import kernels
        >>> stats = background_cycle(16, 2, kernels, trajectories=50, repeat=2)
        >>> stats["p50"] > 0, stats["steps"], stats["clusters"] > 0
        (True, 4.0, True)
    """
    from swarm_sona.bank import ReasoningBank
    from swarm_sona.bank.edge_backend import ram_tmpdir
    from swarm_sona.embedding.embedders import HashingEmbedder

    workdir = tempfile.mkdtemp(prefix="swarm_sona_bench_bg_", dir=ram_tmpdir())
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    names = [f"model-{i}" for i in range(models)]
    try:
        with ReasoningBank({"path": f"{workdir}/bank"}, embedder=HashingEmbedder(dim)) as bank:
            sona = _engine(dim, models, kernels, bank=bank)
            samples = np.empty(repeat, np.float64)
            last: Any = {}
            for r in range(repeat):
                for lo in range(0, trajectories, CHUNK):
                    m = min(CHUNK, trajectories - lo)
                    E = centres[rng.integers(len(centres), size=m)] + 0.5 * rng.standard_normal((m, dim)).astype(
                        np.float32)
                    E /= np.linalg.norm(E, axis=1, keepdims=True)
                    sona.learn([Trajectory(task=f"task {lo + i}", embedding=E[i], output=f"approach {lo + i}",
                                           model=names[i % models] if models else None,
                                           reward=float(rng.random()), success=bool(rng.random() < 0.6))
                                for i in range(m)])
                t0 = time.perf_counter_ns()
                last = sona.background()
                samples[r] = time.perf_counter_ns() - t0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    distilled = last.get("distilled") or {}
    return {**summarize_us(samples), "steps": float(last.get("steps", 0)),
            "clusters": float(distilled.get("clusters", 0))}


def measure(dim: int = 256, repeat: int = 2000, models: int = 3) -> dict[str, Any]:
    """Time every row through the kernel dispatch and through the numpy reference."""
    fast = _measure_path(kernels, dim, repeat, models)
    slow = _measure_path(reference, dim, repeat, models)
    res: dict[str, Any] = {}
    for key in _ROWS:
        if key not in fast:
            continue
        f, s = fast[key], slow[key]
        res[key] = {"p50": f["p50"], "p99": f["p99"], "numpy": {"p50": s["p50"], "p99": s["p99"]},
                    "speedup": s["p50"] / f["p50"] if f["p50"] > 0 else float("nan")}
    res["dim"] = dim
    res["repeat"] = repeat
    res["kernels"] = kernels.info()
    return res


# ---- lora.quantization: memory, latency, accuracy --------------------------------------------------

SCHEMES: tuple[str | None, ...] = (None, "int8", "nf4")   # float32, the guide's '8bit', '4bit'


class QuantRow(TypedDict):
    """Memory and latency of one engine (``scheme`` None = float32) at ``dim``."""

    dim: int
    scheme: str | None
    base_bytes: int            # the frozen base weights as stored (codes + scales when quantised)
    base_fraction: float       # of the float32 base
    engine_bytes: int          # every numpy buffer the engine holds (array_bytes)
    engine_fraction: float     # of the float32 engine's
    traced_bytes: int          # tracemalloc: retained after build + one forward + one background cycle
    forward_us: dict[str, float]        # SONAModel.forward of one embedding: p50, p99
    background_ms: dict[str, float]     # one background cycle (background_steps Adam mini-batches)


class QuantAccuracy(TypedDict):
    """Accuracy of one scheme per seed and its difference to float32 in points (100 x fraction)."""

    dim: int
    scheme: str | None
    seeds: list[int]
    router_accuracy: list[float]       # realised accuracy of the engine's routing decisions
    router_apgr: list[float]
    continual_avg_acc: list[float]     # permuted digits, EWC++, average accuracy after the last task
    router_delta_points: list[float]
    apgr_delta_points: list[float]
    continual_delta_points: list[float]


class QuantReport(TypedDict):
    """What ``bench learning --quantization`` measures."""

    rows: list[QuantRow]
    accuracy: list[QuantAccuracy]
    settings: dict[str, Any]
    load_average: list[float]


def reachable_arrays(obj: Any) -> list[np.ndarray]:
    """Every numpy buffer reachable from ``obj`` (attributes, slots, containers), each once as its
    owning array (a view stands for its base); modules, functions and classes are not entered.

    Example:
        >>> import numpy as np
        >>> a = np.zeros(100, np.float32)
        >>> [x.shape for x in reachable_arrays({"a": a, "view": a[10:]})]
        [(100,)]
    """
    seen: set[int] = set()
    owners: dict[int, np.ndarray] = {}
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (ModuleType, FunctionType, type, str, bytes, int, float)):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            owners[id(base)] = base
            continue
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        d = getattr(o, "__dict__", None)
        if isinstance(d, dict):
            stack.extend(d.values())
        for slot in getattr(type(o), "__slots__", ()):
            if isinstance(slot, str) and hasattr(o, slot):
                stack.append(getattr(o, slot))
    return list(owners.values())


def array_bytes(obj: Any) -> int:
    """Bytes of :func:`reachable_arrays` of ``obj``.

    Example:
        >>> import numpy as np
        >>> a = np.zeros(100, np.float32)
        >>> array_bytes({"a": a, "view": a[10:], "b": [np.ones(3)]})
        424
    """
    return sum(int(a.nbytes) for a in reachable_arrays(obj))


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    e = rng.standard_normal(dim).astype(np.float32)
    return e / np.linalg.norm(e)


def quantization_row(dim: int, scheme: str | None, *, repeat: int = 200, cycles: int = 10) -> QuantRow:
    """Memory and latency of an engine at ``dim`` (``mlp_hidden`` = dim, 3 router models) whose base
    is stored under ``scheme``; the fractions are filled in by :func:`measure_quantization`.

    Example:
        >>> row = quantization_row(64, "nf4", repeat=5, cycles=1)
        >>> row["base_bytes"] < 64 * 64 * 6 * 4 * 0.15, row["forward_us"]["p50"] > 0
        (True, True)
    """
    tracemalloc.start()
    try:
        sona = _engine(dim, 3, kernels, quantization=scheme)
        rng = np.random.default_rng(0)
        e = _unit(rng, dim)
        for i in range(max(64, sona.config.batch_size)):
            sona.learn(Trajectory(task=f"t{i}", embedding=_unit(rng, dim), model=sona.model_names[i % 3],
                                  reward=float(i % 2), success=bool(i % 2)))
        sona.model.forward(e)
        sona.background()
        traced = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    m = sona.model
    fwd = time_call(lambda: m.forward(e), repeat=repeat, warmup=5)
    bg = time_call(lambda: sona.background(), repeat=cycles, warmup=1)
    return {"dim": dim, "scheme": scheme, "base_bytes": sum(lin.base.nbytes for lin in m.layers.values()),
            "base_fraction": float("nan"), "engine_bytes": array_bytes(sona), "engine_fraction": float("nan"),
            "traced_bytes": int(traced), "forward_us": {"p50": fwd["p50"], "p99": fwd["p99"]},
            "background_ms": {"p50": bg["p50"] / 1e3, "p99": bg["p99"] / 1e3}}


def _router_accuracy(table: Any, features: np.ndarray, scheme: str | None, seed: int) -> tuple[float, float]:
    dim = int(features.shape[1])
    factory = variant_factory("full", mlp_hidden=dim, seed=seed, options={"lora": {"quantization": scheme}})
    res = run_routing_bench(table, features, seed=seed, router_factory=factory)
    return float(res["router"]["accuracy"]), float(res["router"]["apgr"])


def _continual_accuracy(dim: int, scheme: str | None, seed: int, tasks: int, epochs: int) -> float:
    """``bench continual``'s ``ewc`` method on permuted digits (its tasks, settings and metric) with
    the engine's base stored under ``scheme``."""
    seq = make_tasks("permuted", tasks, seed, dim)
    sona = SONA({"dim": dim, "mlp_hidden": dim, "model_seed": seed, "background_lr": 5e-3, "batch_size": 32,
                 "background_every": 0,
                 "lora": {"rank": 8, "alpha": 16.0, "target_modules": ["v", "o", "mlp_in", "mlp_out"], "seed": seed,
                          "quantization": scheme},
                 "ewc": {"lambda": 0.5, "mode": "online", "detect_boundaries": False}}, bank=None)
    R = np.zeros((len(seq), len(seq)))
    for i, task in enumerate(seq):
        sona.finetune(task["head"], (task["Xtr"], list(task["ytr"])), epochs=epochs, seed=seed * 1000 + i,
                      consolidate=True)
        for j in range(i + 1):
            R[i, j] = float(np.mean(np.asarray(sona.predict(seq[j]["head"], seq[j]["Xte"])) == seq[j]["yte"]))
    return continual_metrics(R)["avg_acc"]


def _routing_subset(data: str, prompts: int) -> Any:
    table = load_routing_table(data)
    chosen: list[str] = []
    for subject in sorted(table.subject_names):   # whole subjects, alphabetically, until `prompts`
        chosen.append(subject)
        if sum(s in chosen for s in table.subjects) >= prompts:
            break
    return subject_subset(table, chosen)


def measure_quantization(dims: Sequence[int] = (256, 1536), seeds: Sequence[int] = (0, 1, 2), *,
                         repeat: int = 200, cycles: int = 10, prompts: int = 600, tasks: int = 3, epochs: int = 2,
                         data: str | None = None, accuracy: bool = True) -> QuantReport:
    """The quantisation rows (module docs) for every scheme of :data:`SCHEMES` at each dim.

    ``data``: the RouteLLM folder (default :data:`~swarm_sona.bench.routing.DEFAULT_DATA`; the
    router rows are left out when it is missing); ``accuracy=False`` skips both accuracy benches.

    Example:
        >>> rep = measure_quantization((32,), repeat=3, cycles=1, accuracy=False)
        >>> [r["scheme"] for r in rep["rows"]], rep["rows"][2]["base_fraction"] < 0.2
        ([None, 'int8', 'nf4'], True)
    """
    rows: list[QuantRow] = []
    acc: list[QuantAccuracy] = []
    data = data or (str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else None)
    table = _routing_subset(data, prompts) if accuracy and data else None
    for dim in dims:
        got = [quantization_row(dim, q, repeat=repeat, cycles=cycles) for q in SCHEMES]
        for r in got:
            r["base_fraction"] = r["base_bytes"] / got[0]["base_bytes"]
            r["engine_fraction"] = r["engine_bytes"] / got[0]["engine_bytes"]
        rows += got
        if not accuracy:
            continue
        feats = None if table is None else embed_table(table, make_embedder("hashing-words", dim), progress=False)
        per: dict[str | None, dict[str, list[float]]] = {}
        for q in SCHEMES:
            ra = [_router_accuracy(table, feats, q, s) for s in seeds] if feats is not None else []
            per[q] = {"router": [a for a, _ in ra], "apgr": [p for _, p in ra],
                      "continual": [_continual_accuracy(dim, q, s, tasks, epochs) for s in seeds]}
        for q in SCHEMES:
            delta = {k: [100 * (a - b) for a, b in zip(per[q][k], per[None][k], strict=True)] for k in per[q]}
            acc.append({"dim": dim, "scheme": q, "seeds": list(seeds), "router_accuracy": per[q]["router"],
                        "router_apgr": per[q]["apgr"], "continual_avg_acc": per[q]["continual"],
                        "router_delta_points": delta["router"], "apgr_delta_points": delta["apgr"],
                        "continual_delta_points": delta["continual"]})
    return {"rows": rows, "accuracy": acc, "load_average": list(os.getloadavg()),
            "settings": {"dims": list(dims), "seeds": list(seeds), "repeat": repeat, "cycles": cycles,
                         "routing_prompts": None if table is None else len(table), "continual_tasks": tasks,
                         "continual_epochs": epochs, "kernels": kernels.info()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``swarm-sona bench learning``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--dim", type=int, default=256, help="model / embedding dimension")
    parser.add_argument("--repeat", type=int, default=2000, help="timed calls per row (batch row: repeat/20)")
    parser.add_argument("--models", type=int, default=3, help="router head rows (0 skips the route row)")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads while timing (0 = leave as is)")
    parser.add_argument("--quantization", action="store_true",
                        help="also measure lora.quantization: float32 vs 8bit vs 4bit (memory, latency, accuracy)")
    parser.add_argument("--quant-dims", default="256,1536", help="dims of the quantization rows (comma-separated)")
    parser.add_argument("--quant-seeds", type=int, default=3, help="seeds 0..N-1 of the accuracy rows")
    parser.add_argument("--quant-prompts", type=int, default=600,
                        help="RouteLLM prompts (whole subjects, alphabetically) of the router accuracy rows")
    parser.add_argument("--no-quant-accuracy", action="store_true", help="quantization rows without accuracy")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print a table or JSON."""
    if args.dim < 2 or args.repeat < 1 or args.models < 0:
        raise ValueError("need --dim >= 2, --repeat >= 1, --models >= 0")
    limit: Any = nullcontext()
    if args.blas_threads > 0:
        try:
            from threadpoolctl import threadpool_limits

            limit = threadpool_limits(args.blas_threads)
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            pass
    with limit:
        res = measure(args.dim, args.repeat, args.models)
        if args.quantization:
            dims = tuple(int(d) for d in str(args.quant_dims).split(",") if d.strip())
            res["quantization"] = measure_quantization(dims, tuple(range(args.quant_seeds)),
                                                       prompts=args.quant_prompts,
                                                       accuracy=not args.no_quant_accuracy)
    res["machine"] = machine_info()
    sizes = {"apply_batch1024_us": f"1024x{args.dim}", "route_batch64_us": f"{CHUNK}x{args.dim}/task",
             "learn_batch64_us": f"{CHUNK}x{args.dim}/task",
             "background_1k_us": f"{BACKGROUND_TRAJECTORIES} traj, 4x64"}
    rows = []
    for key in _ROWS:
        if key not in res:
            continue
        r = res[key]
        target = TARGETS_US.get(key)
        rows.append([key[:-3], sizes.get(key, f"{args.dim}"), r["p50"], r["p99"], r["numpy"]["p50"],
                     r["numpy"]["p99"], r["speedup"], "-" if target is None else f"<= {target:g}"])
    k = res["kernels"]
    title = (f"bench learning: dim {args.dim}, mlp {args.dim}, {args.models} router models, {args.repeat} calls/row, "
             f"kernels: {k['active']} ({k['reason']}); times in us")
    emit(res, as_json=args.json, title=title,
         header=["row", "size", "p50", "p99", "numpy p50", "numpy p99", "speedup", "target p50"], rows=rows)
    if args.quantization and not args.json:
        _print_quantization(res["quantization"])
    return 0


def _mean(xs: Sequence[float]) -> str:
    return "-" if not xs else f"{np.mean(xs):+.2f} [{min(xs):+.2f}, {max(xs):+.2f}]"


def _print_quantization(rep: QuantReport) -> None:
    rows = [[r["dim"], r["scheme"] or "float32", r["base_bytes"], f"{100 * r['base_fraction']:.1f}",
             r["engine_bytes"], f"{100 * r['engine_fraction']:.1f}", r["traced_bytes"], r["forward_us"]["p50"],
             r["forward_us"]["p99"], r["background_ms"]["p50"], r["background_ms"]["p99"]] for r in rep["rows"]]
    print_table("lora.quantization: memory (bytes, % of float32) and latency (forward us, background ms)",
                ["dim", "scheme", "base", "base %", "engine", "engine %", "traced", "fwd p50", "fwd p99",
                 "bg p50", "bg p99"], rows)
    acc = [[a["dim"], a["scheme"] or "float32", f"{100 * np.mean(a['router_accuracy']):.2f}" if a["router_accuracy"]
            else "-", _mean(a["router_delta_points"]), _mean(a["apgr_delta_points"]),
            f"{100 * np.mean(a['continual_avg_acc']):.2f}", _mean(a["continual_delta_points"])] for a in rep["accuracy"]]
    if acc:
        print_table(f"accuracy vs float32, points, mean [min, max] over seeds {rep['settings']['seeds']}",
                    ["dim", "scheme", "router acc %", "router d", "APGR d", "continual %", "continual d"], acc)
