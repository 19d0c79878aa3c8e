"""The ``swarm-sona bench routing`` command: options, the runs over seeds (and held-out
subjects), the routing-decision latency, the curves plot and the printed table.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--seeds", "3"]).seeds
    3
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bench.routing.features import embed_table, make_embedder
from swarm_sona.bench.routing.stream import run_holdout, run_routing_bench
from swarm_sona.bench.timing import emit, machine_info, time_call
from swarm_sona.core.progress import Progress
from swarm_sona.executors.table import ROUTELLM_STRONG, ROUTELLM_WEAK, RoutingTable, load_routing_table
from swarm_sona.routing.router import LLMRouter

__all__ = ["DEFAULT_DATA", "route_latency", "plot_curves", "add_arguments", "run"]

DEFAULT_DATA = Path("..") / "shared" / "data" / "routellm_mmlu"


def route_latency(dim: int = 256, *, repeat: int = 3000, exploration: str = "thompson") -> dict[str, float]:
    """Median and p99 (us) of one routing decision, embedding excluded, with two token-priced models."""
    router = LLMRouter({"models": [
        {"name": ROUTELLM_WEAK, "cost": 0.6, "cost_unit": "1m_tokens", "quality": 0.706},
        {"name": ROUTELLM_STRONG, "cost": 20.0, "cost_unit": "1m_tokens", "quality": 0.864}],
        "strategy": "balanced", "cost_weight": 0.1, "exploration": exploration}, dim=dim)
    x = np.random.default_rng(0).standard_normal(dim).astype(np.float32)
    x /= np.linalg.norm(x)
    text = "Which of the following is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"
    st = time_call(lambda: router.route(text, embedding=x), repeat=repeat, warmup=100)
    out: dict[str, Any] = {"p50": st["p50"], "p99": st["p99"], "dim": dim, "exploration": exploration}
    return out


def plot_curves(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Accuracy vs strong-call share: router and oracle curves, random diagonal, fixed models."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("--plot needs matplotlib: pip install 'swarm-sona[report]'") from exc
    curves = result["curves"]
    aw, as_ = result["always_weak"]["accuracy"], result["always_strong"]["accuracy"]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    share, acc = curves["router"]
    r = result["router"]
    ax.plot(share, acc, label=f"learned router (APGR {r['apgr']:.3f})", color="C0")
    oshare, oacc = curves["oracle"]
    ax.plot(oshare, oacc, label=f"oracle (APGR {result['oracle']['apgr']:.3f})", color="C2", linestyle=":")
    ax.plot([0, 1], [aw, as_], label="random (APGR 0.5)", color="grey", linestyle="--")
    ax.scatter([0, 1], [aw, as_], color="black", zorder=3, label="always weak / always strong")
    ax.scatter([r["strong_share"]], [r["accuracy"]], color="C3", marker="*", s=120, zorder=4,
               label=f"router's decisions ({r['strong_share']:.0%} strong)")
    ax.set_xlabel("share of calls to the strong model")
    ax.set_ylabel("accuracy")
    ax.set_title(f"RouteLLM MMLU, n={result['n']}, {result['feedback']} feedback, seed {result['seed']}")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _default_data() -> str | None:
    return str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona bench routing``."""
    parser.add_argument("--data", default=_default_data(), metavar="DIR",
                        help="folder of RouteLLM-style CSV files (default ../shared/data/routellm_mmlu when present)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seed", type=int, default=0, help="stream shuffle / exploration seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="run seeds S..S+N-1 and report each and the mean (default 1)")
    parser.add_argument("--feedback", choices=("bandit", "full"), default="bandit",
                        help="learn the chosen model's outcome only (bandit, default) or both (full)")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the accuracy-vs-strong-share curves (first seed)")
    parser.add_argument("--holdout-subjects", type=int, default=0, metavar="N",
                        help="also evaluate on unseen subjects: folds of N subjects, each held out once")
    parser.add_argument("--embedder", default="hashing-words",
                        help="hashing-words (default: hashed word unigrams), hashing (all hashed features), "
                             "or an embedder name such as sentence-transformers:all-MiniLM-L6-v2")
    parser.add_argument("--dim", type=int, default=4096, help="hashing embedders' dimension (default 4096)")
    parser.add_argument("--cost-weight", type=float, default=0.1,
                        help="balanced strategy's weight on normalised cost for the decisions (default 0.1)")
    parser.add_argument("--exploration", choices=("thompson", "linucb", "none"), default="thompson")
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="use a random subset of N prompts")


def _mean_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in ("router", "random", "always_weak", "always_strong", "oracle"):
        keys = runs[0][method].keys()
        out[method] = {}
        for k in keys:
            vals = [r[method][k] for r in runs]
            out[method][k] = None if any(v is None for v in vals) else float(np.mean(vals))
    out["n"] = runs[0]["n"]
    return out


def _subset(table: RoutingTable, n: int, seed: int) -> RoutingTable:
    idx = np.sort(np.random.default_rng(seed + 7).choice(len(table), size=n, replace=False))
    return RoutingTable(tuple(table.prompts[i] for i in idx), table.models, table.correct[idx],
                        tuple(table.subjects[i] for i in idx), f"{table.source}[subset {n}/{seed}]")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona bench routing``."""
    if args.data is None:
        raise ValueError(f"no routing data: pass --data DIR (default {DEFAULT_DATA} relative to the current "
                         "directory does not exist)")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if not math.isfinite(args.cost_weight) or args.cost_weight < 0:
        raise ValueError(f"--cost-weight must be >= 0, got {args.cost_weight}")
    table = load_routing_table(args.data)
    if args.limit:
        if not 2 <= args.limit <= len(table):
            raise ValueError(f"--limit must be in [2, {len(table)}], got {args.limit}")
        table = _subset(table, args.limit, args.seed)
    embedder = make_embedder(args.embedder, args.dim)
    quiet = args.json
    features = embed_table(table, embedder, progress=None if not quiet else False)
    runs = []
    with Progress(total=args.seeds, description="routing stream", enabled=None if not quiet else False) as bar:
        for s in range(args.seed, args.seed + args.seeds):
            runs.append(run_routing_bench(table, features, seed=s, feedback=args.feedback,
                                          cost_weight=args.cost_weight, exploration=args.exploration))
            bar.advance(1, apgr=runs[-1]["router"]["apgr"])
    if args.plot:
        plot_curves(runs[0], args.plot)
    result: dict[str, Any] = _mean_of(runs) if len(runs) > 1 else {k: v for k, v in runs[0].items()
                                                                     if k != "curves"}
    if len(runs) > 1:
        result["seeds"] = [{k: v for k, v in r.items() if k != "curves"} for r in runs]
    result.update(feedback=args.feedback, embedder=args.embedder, embedder_dim=embedder.dim, data=str(args.data))
    if args.holdout_subjects:
        hold = [run_holdout(table, features, subjects_per_fold=args.holdout_subjects, seed=s,
                            feedback=args.feedback, cost_weight=args.cost_weight, exploration=args.exploration)
                for s in range(args.seed, args.seed + args.seeds)]
        result["holdout"] = hold[0] if len(hold) == 1 else {
            **_mean_of(hold), "subjects_per_fold": args.holdout_subjects, "seeds": hold,
            "fold_apgr_mean": float(np.mean([h["fold_apgr_mean"] for h in hold]))}
    result["route_latency_us"] = route_latency(256)
    result["machine"] = machine_info()
    if args.json:
        emit(result, as_json=True)
        return 0
    _print_summary(args, result, runs, embedder.dim)
    return 0


def _print_summary(args: argparse.Namespace, result: dict[str, Any], runs: list[dict[str, Any]], dim: int) -> None:
    """The human-readable table of one ``bench routing`` result, then its per-seed, held-out and
    latency lines."""
    rows = []
    for method in ("router", "random", "always_weak", "always_strong", "oracle"):
        m = result[method]
        rows.append([method, m["apgr"] if m["apgr"] is not None else "-", m["cpt50"] if m["cpt50"] is not None
                     else "-", m["cpt80"] if m["cpt80"] is not None else "-", m["accuracy"], m["strong_share"],
                     m["cost_per_correct"] if m["cost_per_correct"] is not None else "-"])
    seeds = f"seed {args.seed}" if args.seeds == 1 else f"seeds {args.seed}..{args.seed + args.seeds - 1} (mean)"
    title = (f"bench routing: n={result['n']} prompts, {args.feedback} feedback, {args.exploration} exploration, "
             f"{seeds}, embedder {args.embedder} (dim {dim})")
    emit(result, as_json=False, title=title, header=["method", "APGR", "CPT(50%)", "CPT(80%)", "accuracy",
                                                     "strong share", "USD/correct"], rows=rows)
    if len(runs) > 1:
        print("router APGR per seed: " + ", ".join(f"{r['seed']}: {r['router']['apgr']:.4f}" for r in runs))
    if args.holdout_subjects:
        h = result["holdout"]
        print(f"held-out subjects (folds of {args.holdout_subjects}, every subject held out once): router APGR "
              f"{h['router']['apgr']:.4f} pooled, {h['fold_apgr_mean']:.4f} mean of folds; oracle "
              f"{h['oracle']['apgr']:.4f}, random {h['random']['apgr']:.4f}")
    lat = result["route_latency_us"]
    print(f"routing decision (embedding excluded, dim {lat['dim']}): median {lat['p50']:.2f} us, "
          f"p99 {lat['p99']:.2f} us; in the stream (dim {runs[0]['route_us']['dim']}): median "
          f"{runs[0]['route_us']['p50']:.2f} us")
