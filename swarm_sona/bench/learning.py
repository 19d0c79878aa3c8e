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

Each row is measured twice in the same run: through ``swarm_sona.kernels`` (the
dispatch: the C extension when built, else the numpy backend with argument checks) and with
the plain-numpy reference kernels (``kernels.reference``); ``speedup`` is numpy p50 /
dispatch p50. One BLAS thread (threadpoolctl) unless ``--blas-threads``.

JSON: ``{"instant_step_us": {"p50", "p99", "numpy": {"p50", "p99"}, "speedup"}, "forward_us",
"apply_us", "apply_batch1024_us", "instant_kernel_us", "route_us", "router_decision_us",
"learn_with_router_us", "dim", "kernels",
"machine", "repeat"}``.

Example:
    >>> from swarm_sona.bench.learning import measure
    >>> res = measure(dim=32, repeat=20, models=2)
    >>> sorted(res["forward_us"])
    ['numpy', 'p50', 'p99', 'speedup']
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from typing import Any

import numpy as np

from swarm_sona import kernels
from swarm_sona.bench.timing import emit, machine_info, time_call
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.sona import SONA
from swarm_sona.kernels import reference

__all__ = ["add_arguments", "run", "measure", "TARGETS_US"]

TARGETS_US = {"instant_step_us": 10.0, "forward_us": 50.0, "apply_us": 2.0, "router_decision_us": 20.0}
_ROWS = ("instant_step_us", "instant_kernel_us", "forward_us", "apply_us", "apply_batch1024_us", "route_us",
         "router_decision_us", "learn_with_router_us")


def _engine(dim: int, models: int, kernels: Any, *, router: Any = None) -> SONA:
    cfg = {"dim": dim, "mlp_hidden": dim, "background_every": 0,
           "llm_router": {"models": [{"name": f"model-{i}", "cost": 0.001 * (i + 1), "quality": 0.5 + 0.1 * i}
                                     for i in range(models)]}}
    return SONA(cfg, kernels=kernels, router=router)


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
    return out


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``swarm-sona bench learning``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--dim", type=int, default=256, help="model / embedding dimension")
    parser.add_argument("--repeat", type=int, default=2000, help="timed calls per row (batch row: repeat/20)")
    parser.add_argument("--models", type=int, default=3, help="router head rows (0 skips the route row)")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads while timing (0 = leave as is)")


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
    res["machine"] = machine_info()
    sizes = {"apply_batch1024_us": f"1024x{args.dim}"}
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
    return 0
