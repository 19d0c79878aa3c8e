"""The prequential protocol of ``bench routing``: a fresh router routes a shuffled stream
one prompt at a time and learns each outcome after routing it (``bandit``: the chosen model's
only; ``full``: both); :func:`run_routing_bench` runs the whole table and reports the router
against the baselines, :func:`run_holdout` holds subjects out fold by fold.

Example:
    >>> import numpy as np
    >>> from swarm_sona.executors.table import RoutingTable
    >>> t = RoutingTable(("a?", "b?", "c?", "d?"), ("w", "s"), np.array([[1, 1], [0, 1], [1, 1], [0, 0]], bool),
    ...                  ("x", "y", "x", "y"), "demo")
    >>> out = run_routing_bench(t, np.eye(4, dtype=np.float32), prices={"w": 1.0, "s": 10.0})
    >>> out["n"], sorted(out["router"])[:3]
    (4, ['accuracy', 'apgr', 'apgr_late'])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.bench.routing.metrics import decision_metrics, routing_curve, routing_metrics
from swarm_sona.bench.timing import summarize_us
from swarm_sona.core.executor import Task
from swarm_sona.executors.table import (
    ROUTELLM_PRICES,
    ROUTELLM_STRONG,
    ROUTELLM_WEAK,
    RoutingTable,
    TableError,
    TableExecutor,
)
from swarm_sona.routing.router import LLMRouter

__all__ = ["ROUTELLM_PRIORS", "RouterFactory", "router_config", "default_router", "run_stream", "pick_models",
           "subject_subset", "model_costs", "run_routing_bench", "run_holdout"]

#: Published MMLU (5-shot) scores used as the routers' quality priors: Mixtral-8x7B-Instruct
#: 70.6 % (Mistral AI), GPT-4 86.4 % (OpenAI technical report).
ROUTELLM_PRIORS: dict[str, float] = {ROUTELLM_WEAK: 0.706, ROUTELLM_STRONG: 0.864}

#: builds a router from a router config mapping and the feature dimension (default: LLMRouter)
RouterFactory = Callable[[dict[str, Any], int], Any]


def router_config(table: RoutingTable, executor: TableExecutor, weak: str, strong: str, *, seed: int,
                  cost_weight: float, exploration: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The router config of the bench (the balanced strategy over the weak and strong models,
    priors from :data:`ROUTELLM_PRIORS`, token pricing of ``executor``), updated by ``options``.

    Example:
        >>> t = RoutingTable(("a?", "b?"), ("w", "s"), np.array([[1, 1], [0, 1]], bool), ("x", "y"), "demo")
        >>> cfg = router_config(t, TableExecutor(t, prices={"w": 1.0, "s": 10.0}), "w", "s", seed=0,
        ...                     cost_weight=0.1, exploration="thompson", options={"seed": 3})
        >>> [m["name"] for m in cfg["models"]], cfg["strategy"], cfg["seed"]
        (['w', 's'], 'balanced', 3)
    """
    priors = {m: ROUTELLM_PRIORS.get(m, 0.5) for m in table.models}
    cfg = {"models": [s for s in executor.model_specs(priors) if s["name"] in (weak, strong)],
           "strategy": "balanced", "quality_weight": 1.0, "cost_weight": cost_weight, "speed_weight": 0.0,
           "exploration": exploration, "seed": seed, "chars_per_token": executor.chars_per_token,
           "output_tokens": executor.output_tokens}
    cfg.update(options or {})
    return cfg


def run_stream(router: LLMRouter, executor: TableExecutor, features: np.ndarray, order: np.ndarray,
               weak: str, strong: str, *, feedback: str = "bandit", tasks: Sequence[Task] | None = None,
               timings: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Route the rows ``order`` one by one, learning after each; returns ``(scores, chose_strong)``.

    ``scores[t]`` = estimated P(strong) - P(weak) for ``order[t]`` at routing time.
    ``timings`` (optional) receives each routing decision's duration in ns.
    """
    if feedback not in ("bandit", "full"):
        raise ValueError(f"feedback must be 'bandit' or 'full', got {feedback!r}")
    table = executor.table
    iw, is_ = router.index[weak], router.index[strong]
    scores = np.empty(len(order))
    chose = np.zeros(len(order), dtype=bool)
    clock = time.perf_counter_ns
    for t, i in enumerate(order):
        i = int(i)
        task = tasks[i] if tasks is not None else Task(table.prompts[i], metadata={"row": i}, id=str(i))
        x = features[i]
        t0 = clock()
        d = router.route(task, embedding=x)
        if timings is not None:
            timings.append(clock() - t0)
        p = router.success_probabilities(embedding=x)
        scores[t] = p[is_] - p[iw]
        chose[t] = d.model == strong
        out = executor(task, d.model, [])
        router.feedback(task, d.model, out.success, out.reward, out.cost_usd, out.latency_s, embedding=x)
        if feedback == "full":
            other = weak if d.model == strong else strong
            o2 = executor(task, other, [])
            # a counterfactual observation: learned from, not paid for
            router.feedback(task, other, o2.success, o2.reward, 0.0, o2.latency_s, embedding=x)
    return scores, chose


def pick_models(table: RoutingTable, weak: str | None, strong: str | None) -> tuple[str, str]:
    """The ``(weak, strong)`` models: the given ones (checked against the table), RouteLLM's pair
    when the table has it, else the less and the more accurate of a two-model table.

    Example:
        >>> t = RoutingTable(("a?", "b?"), ("w", "s"), np.array([[1, 1], [0, 1]], bool), ("x", "y"), "demo")
        >>> pick_models(t, None, None)
        ('w', 's')
    """
    if weak is None and strong is None:
        if set(ROUTELLM_PRICES) <= set(table.models):
            return ROUTELLM_WEAK, ROUTELLM_STRONG
        if len(table.models) != 2:
            raise TableError(f"the table has {len(table.models)} models {list(table.models)}: name the weak and "
                             "strong ones (--weak, --strong)")
        acc = table.accuracy()
        w, s = sorted(table.models, key=lambda m: acc[m])
        return w, s
    for m in (weak, strong):
        if m not in table.models:
            raise TableError(f"unknown model {m!r}; the table has {list(table.models)}")
    assert weak is not None and strong is not None
    return weak, strong


def default_router(config: dict[str, Any], dim: int) -> LLMRouter:
    """The default :data:`RouterFactory`: today's :class:`LLMRouter`.

    Example:
        >>> default_router({"models": [{"name": "w"}, {"name": "s"}]}, 8).index
        {'w': 0, 's': 1}
    """
    return LLMRouter(config, dim=dim)



def subject_subset(table: RoutingTable, subjects: Sequence[str]) -> RoutingTable:
    """The table restricted to the rows of ``subjects`` (in table order); a ValueError names an
    unknown subject.

    Example:
        >>> t = RoutingTable(("a?", "b?", "c?"), ("w", "s"), np.array([[1, 1], [0, 1], [1, 0]], bool),
        ...                  ("x", "y", "x"), "demo")
        >>> subject_subset(t, ["x"]).prompts
        ('a?', 'c?')
    """
    known = set(table.subject_names)
    bad = [s for s in subjects if s not in known]
    if bad:
        raise ValueError(f"unknown subject(s) {bad}; the table has {sorted(known)}")
    keep = set(subjects)
    idx = np.array([i for i, s in enumerate(table.subjects) if s in keep], dtype=np.int64)
    return RoutingTable(tuple(table.prompts[i] for i in idx), table.models, table.correct[idx],
                        tuple(table.subjects[i] for i in idx), f"{table.source}[{len(keep)} subjects]",
                        {m: tuple(r[i] for i in idx) for m, r in table.responses.items()})


def _report(rows: np.ndarray, scores: np.ndarray, chose: np.ndarray, table: RoutingTable, weak: str,
            strong: str, cost_w: np.ndarray, cost_s: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    jw, js = table.models.index(weak), table.models.index(strong)
    yw, ys = table.correct[rows, jw], table.correct[rows, js]
    cw, cs = cost_w[rows], cost_s[rows]
    out: dict[str, Any] = {}
    router = routing_metrics(scores, yw, ys)
    router.update(decision_metrics(chose, yw, ys, cw, cs))
    out["router"] = router
    share = float(chose.mean())
    rnd = routing_metrics(rng.random(len(rows)), yw, ys)
    rnd.update(decision_metrics(rng.random(len(rows)) < share, yw, ys, cw, cs))
    out["random"] = rnd
    none = {"apgr": None, "cpt50": None, "cpt80": None}
    out["always_weak"] = {**none, **decision_metrics(np.zeros(len(rows), bool), yw, ys, cw, cs)}
    out["always_strong"] = {**none, **decision_metrics(np.ones(len(rows), bool), yw, ys, cw, cs)}
    orc = routing_metrics(ys.astype(np.float64) - yw, yw, ys)
    orc.update(decision_metrics(ys & ~yw, yw, ys, cw, cs))
    out["oracle"] = orc
    out["n"] = len(rows)
    return out


def model_costs(executor: TableExecutor, weak: str, strong: str) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt of the executor's table, the USD of calling the weak and the strong model."""
    prompts = executor.table.prompts
    return (np.array([executor.cost(p, weak) for p in prompts]),
            np.array([executor.cost(p, strong) for p in prompts]))


def run_routing_bench(table: RoutingTable, features: np.ndarray, *, seed: int = 0, feedback: str = "bandit",
                      cost_weight: float = 0.1, exploration: str = "thompson", weak: str | None = None,
                      strong: str | None = None, prices: dict[str, float] | None = None,
                      router_options: Mapping[str, Any] | None = None,
                      router_factory: RouterFactory | None = None) -> dict[str, Any]:
    """One prequential run over the whole table (shuffled with ``seed``); the JSON of the issue.

    ``router_options``: extra :class:`~swarm_sona.routing.config.LLMRouterConfig` keys for the router
    (e.g. ``{"learning_rate": 0.5}``). ``router_factory(config, dim)``: builds the router from
    that config mapping instead of :class:`LLMRouter` (anything with ``index``, ``route``,
    ``success_probabilities`` and ``feedback`` as :func:`run_stream` calls them, e.g. a SONA
    engine wrapped by :class:`swarm_sona.bench.ablation.EngineRouter`).

    Returns ``{"router": {apgr, cpt50, cpt80, accuracy, strong_share, cost_per_correct, cost, apgr_late}``
    (``apgr_late``: APGR of the second half of the stream alone),
    "random": {...}, "always_weak": {...}, "always_strong": {...}, "oracle": {...}, "n", "seed",
    "feedback", "route_us": {p50, p99, dim}, "curves": {...}}``.
    """
    executor = TableExecutor(table, prices=prices)
    weak, strong = pick_models(table, weak, strong)
    if features.shape[0] != len(table):
        raise ValueError(f"features have {features.shape[0]} rows, the table {len(table)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(table))
    router = (router_factory or default_router)(router_config(table, executor, weak, strong, seed=seed,
                                                         cost_weight=cost_weight, exploration=exploration,
                                                         options=router_options), int(features.shape[1]))
    timings: list[int] = []
    scores, chose = run_stream(router, executor, features, order, weak, strong, feedback=feedback,
                               timings=timings)
    cost_w, cost_s = model_costs(executor, weak, strong)
    out = _report(order, scores, chose, table, weak, strong, cost_w, cost_s, np.random.default_rng(seed + 1))
    jw, js = table.models.index(weak), table.models.index(strong)
    yw, ys = table.correct[order, jw], table.correct[order, js]
    half = len(order) // 2   # the second half of the stream: what the router does once it has learned
    late = routing_metrics(scores[half:], yw[half:], ys[half:]) if ys[half:].mean() != yw[half:].mean() else None
    out["router"]["apgr_late"] = None if late is None else late["apgr"]
    share, acc = routing_curve(scores, yw, ys)
    oshare, oacc = routing_curve(ys.astype(np.float64) - yw, yw, ys)
    out["curves"] = {"router": [share.tolist(), acc.tolist()], "oracle": [oshare.tolist(), oacc.tolist()]}
    st = summarize_us(timings)
    out.update(seed=seed, feedback=feedback, weak=weak, strong=strong,
               route_us={"p50": st["p50"], "p99": st["p99"], "dim": int(features.shape[1])})
    return out


def run_holdout(table: RoutingTable, features: np.ndarray, *, subjects_per_fold: int, seed: int = 0,
                feedback: str = "bandit", cost_weight: float = 0.1, exploration: str = "thompson",
                weak: str | None = None, strong: str | None = None, prices: dict[str, float] | None = None,
                router_options: Mapping[str, Any] | None = None,
                router_factory: RouterFactory | None = None,
                fold_features: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Any]:
    """Leave-subjects-out: every fold of ``subjects_per_fold`` subjects is held out once (see module docs).

    ``router_factory``: as in :func:`run_routing_bench` (one fresh router per fold).
    ``fold_features``: called with a fold's training rows, returns the feature matrix (all rows)
    that fold routes on (a representation fitted on the training rows alone); None: ``features``."""
    names = table.subject_names
    if isinstance(subjects_per_fold, bool) or not isinstance(subjects_per_fold, int) or \
            not 1 <= subjects_per_fold < len(names):
        raise ValueError(f"--holdout-subjects must be in [1, {len(names) - 1}] (the table has {len(names)} "
                         f"subjects), got {subjects_per_fold!r}")
    executor = TableExecutor(table, prices=prices)
    weak, strong = pick_models(table, weak, strong)
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    folds = [shuffled[k:k + subjects_per_fold] for k in range(0, len(shuffled), subjects_per_fold)]
    subj = np.array(table.subjects)
    jw, js = table.models.index(weak), table.models.index(strong)
    all_rows, all_scores, all_chose, fold_apgr = [], [], [], []
    for k, fold in enumerate(folds):
        held = np.isin(subj, fold)
        train = rng.permutation(np.nonzero(~held)[0])
        test = rng.permutation(np.nonzero(held)[0])
        x = features if fold_features is None else fold_features(train)
        router = (router_factory or default_router)(router_config(table, executor, weak, strong, seed=seed * 1000 + k,
                                                             cost_weight=cost_weight, exploration=exploration,
                                                             options=router_options), int(x.shape[1]))
        run_stream(router, executor, x, train, weak, strong, feedback=feedback)
        scores, chose = run_stream(router, executor, x, test, weak, strong, feedback=feedback)
        yw, ys = table.correct[test, jw], table.correct[test, js]
        fold_apgr.append(routing_metrics(scores, yw, ys)["apgr"] if ys.mean() != yw.mean() else None)
        all_rows.append(test)
        all_scores.append(scores)
        all_chose.append(chose)
    rows = np.concatenate(all_rows)
    cost_w, cost_s = model_costs(executor, weak, strong)
    out = _report(rows, np.concatenate(all_scores), np.concatenate(all_chose), table, weak, strong, cost_w,
                  cost_s, np.random.default_rng(seed + 1))
    valid = [a for a in fold_apgr if a is not None]
    out.update(subjects_per_fold=subjects_per_fold, folds=folds, fold_apgr=fold_apgr,
               fold_apgr_mean=float(np.mean(valid)) if valid else None, seed=seed, feedback=feedback)
    return out
