"""``swarm-sona bench shift``: forgetting when the routing stream moves between subject groups.

Protocol, per seed: the subjects are shuffled and cut into group A and group B; a share
(``holdout``) of each group's prompts is held out. One router (the SONA engine with its
LLMRouter, :class:`~swarm_sona.bench.ablation.EngineRouter`, or the LLMRouter alone) then

1. learns prequentially from A's training prompts (bandit feedback, as ``bench routing``);
2. scores A's held-out prompts without learning: ``A after A``;
3. meets the task boundary (``boundary: explicit``: :meth:`SONA.consolidate`, EWC++ anchors =
   the adapters and heads learned on A; ``detected``: only EWC++'s own boundary detection);
4. learns prequentially from B's training prompts;
5. scores A's and B's held-out prompts without learning: ``A after B``, ``B after B``;
6. routes A's held-out prompts again, learning (the A -> B -> A stream): ``A again``.

Forgetting = APGR(A after A) - APGR(A after B). Settings: ``ewc.lambda`` on the integration
guide's 0-1 scale (0 = no EWC++; the guide's 0.4 and 0.5; 0.9), mapped onto the penalty
``(s / 2) sum F (theta - theta*)^2`` by ``s = 1000 lambda / (1 - lambda)``
(:func:`~swarm_sona.learning.config.guide_lambda_to_strength`: 0.4 -> 667, 0.5 -> 1000, the
former default); a setting above 1 is an internal ``ewc.strength`` as it is (label
``strength=...``); and the bandit alone (no engine: nothing for EWC++ to protect).

Measured (47 subjects cut 24/23, 3 seeds, explicit boundary; 2026-12-02): forgetting median
[min, max] at lambda 0: 0.012 [-0.036, 0.034]; 0.4: 0.018 [-0.048, 0.041]; 0.5: 0.017
[-0.044, 0.037]; 0.9: 0.021 [-0.023, 0.045]; bandit alone -0.006. B after B 0.544 / 0.539 /
0.542 / 0.546. The no-EWC run forgets too little (and too noisily) to show a protection: the
routing is carried by the bandit, whose evidence does not decay. On the adapters themselves the
guide's 0.4 holds: the BaseLoRA drift from A's anchor over B is 2 % of the no-EWC drift
(``tests/learning/test_learning_switches.py``).

Example:
    >>> from swarm_sona.executors.table import load_routing_table
    >>> from swarm_sona.bench.routing import embed_table, make_embedder
    >>> t = load_routing_table("tests/data/routellm_slice")
    >>> f = embed_table(t, make_embedder("hashing-words", 32), progress=False)
    >>> r = run_shift(t, f, ShiftConfig(seeds=1, dim=32, mlp_hidden=16, lambdas=(0.0,), bandit=False))
    >>> [s["setting"] for s in r["settings"]], sorted(r["settings"][0]["median"])[:2]
    (['lambda=0'], ['a_after_a', 'a_after_b'])
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

import numpy as np

from swarm_sona.bench.ablation import EngineRouter, variant_factory
from swarm_sona.bench.routing import (
    DEFAULT_DATA,
    embed_table,
    make_embedder,
    pick_models,
    router_config,
    routing_metrics,
    run_stream,
)
from swarm_sona.bench.timing import emit, machine_info
from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.core.progress import Progress
from swarm_sona.executors.table import RoutingTable, TableExecutor, load_routing_table
from swarm_sona.learning.config import EWCConfig, router_anchor_weight

__all__ = ["ShiftConfig", "ShiftSplit", "split_groups", "frozen_scores", "run_shift_once", "run_shift",
           "ShiftResult", "SettingSummary", "ewc_options", "anchor_weight", "add_arguments", "run"]

_KEYS = ("a_after_a", "a_after_b", "b_after_b", "a_again", "forgetting")


@dataclass(frozen=True)
class ShiftConfig(ConfigBase):
    """Settings of one shift run.

    Example:
        >>> ShiftConfig().lambdas
        (0.0, 0.4, 0.5, 0.9)
        >>> ShiftConfig(holdout=1.0)
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: shift.holdout: must be < 0.9, got 1.0
    """

    _section: ClassVar[str] = "shift"

    seeds: int = field_doc("Number of seeds (seed, seed+1, ...): subject split, held-out rows, exploration.", 3)
    seed: int = field_doc("First seed.", 0)
    dim: int = field_doc("Hashed-word feature dimension = the engine model's dimension.", 256)
    mlp_hidden: int = field_doc("Engine model's MLP width.", 128)
    lambdas: tuple[float, ...] = field_doc(
        "ewc.lambda values of the engine runs on the guide's 0-1 scale (0 = no EWC++); above 1: ewc.strength.",
        (0.0, 0.4, 0.5, 0.9))
    bandit: bool = field_doc("Also run the LLMRouter alone (no engine).", True)
    holdout: float = field_doc("Share of each group's prompts held out for scoring, in [0.05, 0.9).", 0.3)
    group_a: float = field_doc("Share of the subjects in group A, in (0, 1).", 0.5)
    boundary: str = field_doc("explicit: consolidate EWC++ at the A -> B switch; detected: rely on detection.",
                              "explicit")
    cost_weight: float = field_doc("balanced strategy's weight on normalised cost.", 0.1)
    evidence_decay: float = field_doc("The router's llm_router.evidence_decay (1 = its evidence never decays).", 1.0)

    def __post_init__(self) -> None:
        for n in ("seeds", "dim", "mlp_hidden"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{self._where(n)}: expected an integer, got {v!r}")
        self._check_range("seeds", 1, 1000)
        self._check_range("dim", 2, 8192)
        self._check_range("mlp_hidden", 1, 65536)
        object.__setattr__(self, "lambdas", tuple(float(x) for x in self.lambdas))
        for x in self.lambdas:
            if not math.isfinite(x) or x < 0:
                raise ConfigError(f"{self._where('lambdas')}: each lambda must be finite and >= 0, got {x!r}")
        if not self.lambdas and not self.bandit:
            raise ConfigError(f"{self._where('lambdas')}: nothing to run (no lambdas and bandit off)")
        self._check_range("holdout", 0.05, 0.9, hi_open=True)
        self._check_range("group_a", 0, 1, lo_open=True, hi_open=True)
        self._check_choice("boundary", ("explicit", "detected"))
        self._check_range("cost_weight", 0)
        self._check_range("evidence_decay", 0, 1, lo_open=True)


@dataclass(frozen=True)
class ShiftSplit:
    """Row indices of one seed's split (``*_train`` in stream order, ``*_test`` held out)."""

    a_subjects: tuple[str, ...]
    b_subjects: tuple[str, ...]
    a_train: np.ndarray
    a_test: np.ndarray
    b_train: np.ndarray
    b_test: np.ndarray


def split_groups(table: RoutingTable, seed: int, *, group_a: float = 0.5, holdout: float = 0.3) -> ShiftSplit:
    """Subjects shuffled with ``seed`` into A and B; each group's rows shuffled, ``holdout`` held out.

    Example:
        >>> from swarm_sona.executors.table import load_routing_table
        >>> sp = split_groups(load_routing_table("tests/data/routellm_slice"), 0)
        >>> len(sp.a_subjects), len(sp.a_train) + len(sp.a_test) + len(sp.b_train) + len(sp.b_test)
        (2, 300)
    """
    names = table.subject_names
    if len(names) < 2:
        raise ValueError(f"a shift needs at least 2 subjects, the table has {len(names)}")
    rng = np.random.default_rng([seed, 0x5A1F7])
    order = [names[i] for i in rng.permutation(len(names))]
    k = min(len(names) - 1, max(1, round(group_a * len(names))))
    a, b = tuple(sorted(order[:k])), tuple(sorted(order[k:]))
    subj = np.array(table.subjects)

    def cut(group: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.permutation(np.nonzero(np.isin(subj, group))[0])
        n_test = max(1, round(holdout * len(rows)))
        return rows[n_test:], rows[:n_test]

    a_train, a_test = cut(a)
    b_train, b_test = cut(b)
    return ShiftSplit(a, b, a_train, a_test, b_train, b_test)


def frozen_scores(router: Any, features: np.ndarray, rows: np.ndarray, weak: str, strong: str) -> np.ndarray:
    """``P(strong) - P(weak)`` of each row by the router's mean estimates, learning nothing."""
    iw, is_ = router.index[weak], router.index[strong]
    out = np.empty(len(rows))
    for t, i in enumerate(rows):
        p = router.success_probabilities(embedding=features[int(i)])
        out[t] = p[is_] - p[iw]
    return out


def _apgr(scores: np.ndarray, rows: np.ndarray, table: RoutingTable, weak: str, strong: str) -> float | None:
    yw, ys = table.correct[rows, table.models.index(weak)], table.correct[rows, table.models.index(strong)]
    if yw.mean() == ys.mean():
        return None
    return float(routing_metrics(scores, yw, ys)["apgr"])


def ewc_options(setting: float) -> dict[str, float]:
    """The ``ewc`` section of a setting: ``lambda`` on the guide's 0-1 scale, above 1 ``strength``.

    Example:
        >>> ewc_options(0.4), ewc_options(2000.0)
        ({'lambda': 0.4}, {'strength': 2000.0})
    """
    return {"lambda": float(setting)} if setting <= 1.0 else {"strength": float(setting)}


def anchor_weight(setting: float) -> float:
    """The router anchor's weight of a setting, as the engine passes it at a boundary
    (:func:`~swarm_sona.learning.config.router_anchor_weight` of the setting's strength).

    Example:
        >>> round(anchor_weight(0.4), 3), anchor_weight(0.5), anchor_weight(2000.0)
        (0.667, 1.0, 2.0)
    """
    return router_anchor_weight(EWCConfig.from_dict(ewc_options(setting)).strength)


def run_shift_once(table: RoutingTable, features: np.ndarray, split: ShiftSplit, *, setting: float | None,
                   seed: int, config: ShiftConfig, bandit_lambda: float = 0.0) -> dict[str, Any]:
    """One router through A -> B -> A (module docs); ``setting``: the ewc lambda, None = bandit
    alone, which with ``bandit_lambda`` > 0 is consolidated at the boundary at
    :func:`anchor_weight` of it (:meth:`LLMRouter.consolidate`: only a decaying router reads it)."""
    executor = TableExecutor(table)
    weak, strong = pick_models(table, None, None)
    rc = router_config(table, executor, weak, strong, seed=seed, cost_weight=config.cost_weight,
                       exploration="thompson", options={"evidence_decay": config.evidence_decay})
    dim = int(features.shape[1])
    if setting is None:
        router = variant_factory("bandit")(rc, dim)
    else:
        router = variant_factory("full", mlp_hidden=config.mlp_hidden, seed=seed,
                                 options={"ewc": ewc_options(setting)})(rc, dim)
    run_stream(router, executor, features, split.a_train, weak, strong)
    out: dict[str, Any] = {"seed": seed}
    out["a_after_a"] = _apgr(frozen_scores(router, features, split.a_test, weak, strong), split.a_test, table,
                             weak, strong)
    if isinstance(router, EngineRouter) and config.boundary == "explicit":
        router.sona.consolidate("A")
    elif not isinstance(router, EngineRouter) and bandit_lambda > 0 and config.boundary == "explicit":
        router.consolidate(anchor_weight(bandit_lambda))
    run_stream(router, executor, features, split.b_train, weak, strong)
    out["a_after_b"] = _apgr(frozen_scores(router, features, split.a_test, weak, strong), split.a_test, table,
                             weak, strong)
    out["b_after_b"] = _apgr(frozen_scores(router, features, split.b_test, weak, strong), split.b_test, table,
                             weak, strong)
    scores, _ = run_stream(router, executor, features, split.a_test, weak, strong)
    out["a_again"] = _apgr(scores, split.a_test, table, weak, strong)
    out["forgetting"] = (None if out["a_after_a"] is None or out["a_after_b"] is None
                         else out["a_after_a"] - out["a_after_b"])
    if isinstance(router, EngineRouter):
        out["boundaries_detected"] = int(router.sona.counters.n_boundaries)
    return out


class SettingSummary(TypedDict):
    """One setting over the seeds."""

    setting: str
    seeds: list[dict[str, Any]]
    median: dict[str, float | None]
    min: dict[str, float | None]
    max: dict[str, float | None]
    seconds: float


class ShiftResult(TypedDict):
    """What :func:`run_shift` returns (``splits``: each seed's groups and sizes)."""

    n: int
    subjects: int
    seeds: list[int]
    splits: list[dict[str, Any]]
    settings: list[SettingSummary]


def _label(setting: float | None, bandit_lambda: float | None = None) -> str:
    if setting is None:
        return "bandit" if bandit_lambda is None else f"bandit {_label(bandit_lambda)}"
    return f"lambda={setting:g}" if setting <= 1.0 else f"strength={setting:g}"


def _stats(rows: Sequence[dict[str, Any]], fn: Any) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k in _KEYS:
        vals = [r[k] for r in rows]
        out[k] = None if any(v is None for v in vals) else float(fn(vals))
    return out


def run_shift(table: RoutingTable, features: np.ndarray, config: ShiftConfig | None = None, *,
              progress: bool | None = False) -> ShiftResult:
    """Every setting on every seed (module docs); medians, min and max over the seeds."""
    cfg = config or ShiftConfig()
    if features.shape != (len(table), cfg.dim):
        raise ValueError(f"features have shape {features.shape}, expected ({len(table)}, {cfg.dim})")
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    # (engine lambda or None, the bandit's anchor lambda or None); a decaying router's bandit row
    # is consolidated at each lambda (with no decay the anchor is never read: one bandit row)
    bandit_rows: list[float | None] = list(cfg.lambdas) if cfg.evidence_decay < 1 and cfg.lambdas else [None]
    settings: list[tuple[float | None, float | None]] = [
        *((x, None) for x in cfg.lambdas), *(((None, b) for b in bandit_rows) if cfg.bandit else ())]
    splits = {s: split_groups(table, s, group_a=cfg.group_a, holdout=cfg.holdout) for s in seeds}
    per: dict[str, list[dict[str, Any]]] = {_label(*x): [] for x in settings}
    secs = {_label(*x): 0.0 for x in settings}
    with Progress(total=len(seeds) * len(settings), description="shift", enabled=progress) as bar:
        for s in seeds:
            for x, b in settings:
                t0 = time.process_time()
                per[_label(x, b)].append(run_shift_once(table, features, splits[s], setting=x, seed=s, config=cfg,
                                                        bandit_lambda=b or 0.0))
                secs[_label(x, b)] += time.process_time() - t0
                bar.advance(1)
    summaries: list[SettingSummary] = [
        {"setting": k, "seeds": v, "median": _stats(v, np.median), "min": _stats(v, np.min),
         "max": _stats(v, np.max), "seconds": secs[k]} for k, v in per.items()]
    split_info = [{"seed": s, "a_subjects": list(sp.a_subjects), "b_subjects": list(sp.b_subjects),
                   "a_train": len(sp.a_train), "a_test": len(sp.a_test), "b_train": len(sp.b_train),
                   "b_test": len(sp.b_test)} for s, sp in splits.items()]
    return {"n": len(table), "subjects": len(table.subject_names), "seeds": seeds, "splits": split_info,
            "settings": summaries}


# =====================================================================================
# CLI
# =====================================================================================
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona bench shift``."""
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else None, metavar="DIR",
                        help="folder of RouteLLM-style CSV files (default ../shared/data/routellm_mmlu when present)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seeds", type=int, default=3, help="seeds (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--dim", type=int, default=256, help="hashed-word feature dimension = engine dim (default 256)")
    parser.add_argument("--mlp-hidden", type=int, default=128, help="engine MLP width (default 128)")
    parser.add_argument("--lambdas", default="0,0.4,0.5,0.9",
                        help="comma-separated ewc.lambda values on the guide's 0-1 scale (default 0,0.4,0.5,0.9; "
                             "0.5 is the default strength 1000); a value above 1 is an internal ewc.strength")
    parser.add_argument("--no-bandit", action="store_true", help="skip the LLMRouter-alone row")
    parser.add_argument("--holdout", type=float, default=0.3, help="held-out share of each group (default 0.3)")
    parser.add_argument("--boundary", choices=("explicit", "detected"), default="explicit")
    parser.add_argument("--decay", type=float, default=1.0, metavar="G",
                        help="the router's evidence_decay in (0, 1] (default 1: its evidence never decays)")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona bench shift``."""
    if args.data is None:
        raise ValueError(f"no routing data: pass --data DIR ({DEFAULT_DATA} does not exist)")
    try:
        lambdas = tuple(float(x) for x in args.lambdas.split(",") if x.strip())
    except ValueError as exc:
        raise ValueError(f"--lambdas: expected comma-separated numbers, got {args.lambdas!r}") from exc
    cfg = ShiftConfig(seeds=args.seeds, seed=args.seed, dim=args.dim, mlp_hidden=args.mlp_hidden, lambdas=lambdas,
                      bandit=not args.no_bandit, holdout=args.holdout, boundary=args.boundary,
                      evidence_decay=args.decay)
    table = load_routing_table(args.data)
    features = embed_table(table, make_embedder("hashing-words", cfg.dim), progress=None if not args.json else False)
    t0 = time.perf_counter()
    res = run_shift(table, features, cfg, progress=None if not args.json else False)
    out: dict[str, Any] = {**res, "wall_s": time.perf_counter() - t0, "machine": machine_info(),
                           "data": str(args.data), "boundary": cfg.boundary,
                           "evidence_decay": cfg.evidence_decay}
    if args.json:
        emit(out, as_json=True)
        return 0
    rows = []
    for sm in res["settings"]:
        md, lo, hi = sm["median"], sm["min"], sm["max"]
        rows.append([sm["setting"], _fmt(md["a_after_a"]), _fmt(md["a_after_b"]),
                     f"{_fmt(md['forgetting'])} [{_fmt(lo['forgetting'])}, {_fmt(hi['forgetting'])}]",
                     _fmt(md["b_after_b"]), _fmt(md["a_again"]), f"{sm['seconds']:.0f}"])
    sp = res["splits"][0]
    title = (f"bench shift: n={res['n']} prompts, {res['subjects']} subjects, A/B = {len(sp['a_subjects'])}/"
             f"{len(sp['b_subjects'])} subjects, held out {cfg.holdout:.0%} (seed {sp['seed']}: A train "
             f"{sp['a_train']}, A test {sp['a_test']}, B train {sp['b_train']}, B test {sp['b_test']}), seeds "
             f"{res['seeds'][0]}..{res['seeds'][-1]} (medians), boundary {cfg.boundary}, dim {cfg.dim}, "
             f"router evidence_decay {cfg.evidence_decay:g}")
    emit(out, as_json=False, title=title,
         header=["setting", "APGR A after A", "A after B", "forgetting [min, max]", "B after B", "A again",
                 "CPU s"], rows=rows)
    print("forgetting = APGR(A after A) - APGR(A after B), both scored on A's held-out prompts without learning")
    return 0
