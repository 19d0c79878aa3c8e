"""``swarm-sona bench routing``: the learned router on real model outcomes (RouteLLM MMLU).

Protocol (prequential, online): the table's prompts are shuffled with ``--seed`` and a fresh
:class:`~swarm_sona.routing.router.LLMRouter` routes them one by one. Each prompt is routed before its
outcome is learned; with ``--feedback bandit`` (default) the router learns only the outcome of
the model it picked, with ``full`` it learns both. The router's *score* for a prompt is its
estimate, at routing time, of ``P(strong solves) - P(weak solves)``.

Metrics (RouteLLM's, computed exactly on the scores of the whole stream): routing the top
``k`` prompts by score to the strong model and the rest to the weak one gives an accuracy for
every strong share ``k / n``; tied scores form one segment of the curve (the expectation
under random tie-breaking), so the curve is piecewise linear through the tie-group
boundaries. PGR = (accuracy - weak accuracy) / (strong accuracy - weak accuracy); APGR is the
area under PGR over the strong share in [0, 1] (trapezoids, exact for that curve); CPT(x) is
the smallest strong share whose PGR reaches x (linear interpolation on the curve). A router
that ranks at random scores 0.5.

Besides, the router's *actual decisions* (strategy ``balanced`` with ``--cost-weight``) give
its realised accuracy, strong-call share and cost per correct answer (cost of the calls it
made, from :class:`~swarm_sona.executors.table.TableExecutor`: price per 1M tokens x
estimated tokens). Baselines on the same stream: ``random`` (uniform random scores;
decisions: the strong model with the router's realised strong share), ``always_weak``,
``always_strong`` (no scores: their APGR/CPT are null) and ``oracle`` (score = strong correct -
weak correct; decisions: the strong model exactly where only it is right).

``--holdout-subjects N``: generalisation to unseen subjects. The subjects are shuffled and cut
into folds of N; for each fold a fresh router learns prequentially from a stream of the other
subjects' prompts, then routes a fresh stream of the held-out subjects' prompts (still
learning). Every subject is held out once; the held-out prompts' scores are pooled for the
metrics (``holdout``), and each fold's own APGR is listed.

Features: the prompts are embedded once per run and the router receives the embeddings.
``--embedder hashing-words`` (default) is the hashing embedder restricted to word unigrams
(``HashingEmbedder(dim, w_bigram=0, w_char=0)``) at ``--dim 4096``: on this data the
character trigrams and word bigrams add noise (bandit APGR, mean of seeds 0-2: 0.636 with
words only, 0.627 with every feature, 0.602 with every feature at dim 256).
``hashing`` is the default embedder's full feature set; any other name goes to
:func:`swarm_sona.embedding.embedders.get_embedder` (e.g. ``sentence-transformers:all-MiniLM-L6-v2`` with the
``embeddings`` extra). A routing decision's cost grows only linearly with the dimension.
Priors: the models' published MMLU scores (:data:`ROUTELLM_PRIORS`), not this data.

Example:
    >>> from swarm_sona.bench.routing import routing_metrics
    >>> import numpy as np
    >>> weak = np.array([1, 0, 1, 0], bool); strong = np.array([1, 1, 1, 0], bool)
    >>> m = routing_metrics(np.array([0.0, 1.0, 0.0, 0.0]), weak, strong)
    >>> round(m["apgr"], 3), m["cpt50"]
    (0.875, 0.125)
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bench.timing import emit, machine_info, summarize_us, time_call
from swarm_sona.core.executor import Task
from swarm_sona.core.progress import Progress
from swarm_sona.embedding.embedders import Embedder, HashingEmbedder, get_embedder
from swarm_sona.executors.table import (
    ROUTELLM_PRICES,
    ROUTELLM_STRONG,
    ROUTELLM_WEAK,
    RoutingTable,
    TableError,
    TableExecutor,
    load_routing_table,
)
from swarm_sona.routing.router import LLMRouter

__all__ = ["ROUTELLM_PRIORS", "DEFAULT_DATA", "RouterFactory", "router_config", "pick_models", "subject_subset", "make_embedder", "routing_curve",
           "routing_metrics", "decision_metrics",
           "embed_table", "run_stream", "run_routing_bench", "run_holdout", "route_latency", "plot_curves",
           "add_arguments", "run"]

#: Published MMLU (5-shot) scores used as the routers' quality priors: Mixtral-8x7B-Instruct
#: 70.6 % (Mistral AI), GPT-4 86.4 % (OpenAI technical report).
ROUTELLM_PRIORS: dict[str, float] = {ROUTELLM_WEAK: 0.706, ROUTELLM_STRONG: 0.864}
DEFAULT_DATA = Path("..") / "shared" / "data" / "routellm_mmlu"

_EMBED_CACHE: dict[tuple[str, int, str], np.ndarray] = {}
#: builds a router from a router config mapping and the feature dimension (default: LLMRouter)
RouterFactory = Callable[[dict[str, Any], int], Any]


# =====================================================================================
# metrics
# =====================================================================================
def routing_curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact accuracy-vs-strong-share curve: ``(share, accuracy)`` at the tie-group boundaries.

    The prompts with the highest scores go to the strong model; within a group of equal
    scores the curve is linear (random tie-breaking in expectation).

    Example:
        >>> s, a = routing_curve(np.zeros(2), np.array([True, False]), np.array([True, True]))
        >>> s.tolist(), a.tolist()
        ([0.0, 1.0], [0.5, 1.0])
    """
    scores = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak, dtype=bool)
    strong = np.asarray(strong, dtype=bool)
    n = scores.shape[0]
    if n == 0 or weak.shape != (n,) or strong.shape != (n,):
        raise ValueError(f"scores, weak and strong must be non-empty and of equal length, got "
                         f"{scores.shape}, {weak.shape}, {strong.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or inf")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    gain = (strong.astype(np.int64) - weak.astype(np.int64))[order]
    cum = np.concatenate([[0], np.cumsum(gain)])
    bounds = np.concatenate([[0], np.nonzero(np.diff(sorted_scores))[0] + 1, [n]])
    return bounds / n, (int(weak.sum()) + cum[bounds]) / n


def _cpt(share: np.ndarray, pgr: np.ndarray, target: float) -> float | None:
    hit = np.nonzero(pgr >= target - 1e-12)[0]
    if hit.size == 0:
        return None
    k = int(hit[0])
    if k == 0:
        return 0.0
    x0, x1, y0, y1 = share[k - 1], share[k], pgr[k - 1], pgr[k]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)


def routing_metrics(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> dict[str, Any]:
    """APGR, CPT(50%), CPT(80%) of a router's scores (see the module documentation).

    Raises ValueError when the strong and weak models are equally accurate (PGR undefined).
    """
    share, acc = routing_curve(scores, weak, strong)
    acc_w, acc_s = float(np.mean(weak)), float(np.mean(strong))
    if acc_s == acc_w:
        raise ValueError("the strong and weak models are equally accurate on these prompts: PGR is undefined")
    pgr = (acc - acc_w) / (acc_s - acc_w)
    apgr = float(np.sum((pgr[1:] + pgr[:-1]) * 0.5 * np.diff(share)))
    return {"apgr": apgr, "cpt50": _cpt(share, pgr, 0.5), "cpt80": _cpt(share, pgr, 0.8)}


def decision_metrics(chose_strong: np.ndarray, weak: np.ndarray, strong: np.ndarray,
                     cost_weak: np.ndarray, cost_strong: np.ndarray) -> dict[str, Any]:
    """Realised accuracy, strong share and cost per correct answer of actual decisions.

    Example:
        >>> decision_metrics(np.array([True, False]), np.array([False, True]), np.array([True, True]),
        ...                  np.array([1.0, 1.0]), np.array([3.0, 3.0]))
        {'accuracy': 1.0, 'strong_share': 0.5, 'cost_per_correct': 2.0, 'cost': 4.0}
    """
    s = np.asarray(chose_strong, dtype=bool)
    correct = np.where(s, strong, weak)
    cost = float(np.where(s, cost_strong, cost_weak).sum())
    n_ok = int(correct.sum())
    return {"accuracy": float(correct.mean()), "strong_share": float(s.mean()),
            "cost_per_correct": cost / n_ok if n_ok else None, "cost": cost}


# =====================================================================================
# embedding
# =====================================================================================
def make_embedder(name: str = "hashing-words", dim: int = 4096) -> Embedder:
    """The bench's embedders: ``hashing-words`` (word unigrams only), ``hashing`` (all hashed
    features), or any :func:`~swarm_sona.embedding.embedders.get_embedder` name (``dim`` ignored there).

    Example:
        >>> make_embedder("hashing-words", 64).weights
        (1.0, 0.0, 0.0)
    """
    if name == "hashing-words":
        return HashingEmbedder(dim, w_word=1.0, w_bigram=0.0, w_char=0.0)
    if name in ("hashing", "hash"):
        return HashingEmbedder(dim)
    return get_embedder(name)


def embed_table(table: RoutingTable, embedder: Embedder, *, progress: bool | None = None) -> np.ndarray:
    """Embed every prompt once (float32 ``(n, dim)``); cached per table and embedder in-process."""
    key = (f"{table.source}#{len(table)}#{hash(table.prompts)}", int(embedder.dim),
           f"{embedder.name}{getattr(embedder, 'weights', '')}")
    hit = _EMBED_CACHE.get(key)
    if hit is not None:
        return hit
    n = len(table)
    out = np.empty((n, embedder.dim), dtype=np.float32)
    step = 512
    with Progress(total=n, description=f"embedding ({embedder.name})", enabled=progress) as bar:
        for a in range(0, n, step):
            chunk = list(table.prompts[a:a + step])
            out[a:a + len(chunk)] = embedder.embed(chunk)
            bar.advance(len(chunk))
    out.setflags(write=False)
    _EMBED_CACHE[key] = out
    return out


# =====================================================================================
# the online stream
# =====================================================================================
def _router_config(table: RoutingTable, executor: TableExecutor, weak: str, strong: str, *, seed: int,
                   cost_weight: float, exploration: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
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


def _pick_models(table: RoutingTable, weak: str | None, strong: str | None) -> tuple[str, str]:
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


def _llm_router(config: dict[str, Any], dim: int) -> LLMRouter:
    """The default router factory: today's LLMRouter."""
    return LLMRouter(config, dim=dim)


#: public names of the helpers the other real-data benches share (one home for each fact)
router_config = _router_config
pick_models = _pick_models


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


def _costs(executor: TableExecutor, weak: str, strong: str) -> tuple[np.ndarray, np.ndarray]:
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
    weak, strong = _pick_models(table, weak, strong)
    if features.shape[0] != len(table):
        raise ValueError(f"features have {features.shape[0]} rows, the table {len(table)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(table))
    router = (router_factory or _llm_router)(_router_config(table, executor, weak, strong, seed=seed,
                                                         cost_weight=cost_weight, exploration=exploration,
                                                         options=router_options), int(features.shape[1]))
    timings: list[int] = []
    scores, chose = run_stream(router, executor, features, order, weak, strong, feedback=feedback,
                               timings=timings)
    cost_w, cost_s = _costs(executor, weak, strong)
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
                router_factory: RouterFactory | None = None) -> dict[str, Any]:
    """Leave-subjects-out: every fold of ``subjects_per_fold`` subjects is held out once (see module docs).

    ``router_factory``: as in :func:`run_routing_bench` (one fresh router per fold)."""
    names = table.subject_names
    if isinstance(subjects_per_fold, bool) or not isinstance(subjects_per_fold, int) or \
            not 1 <= subjects_per_fold < len(names):
        raise ValueError(f"--holdout-subjects must be in [1, {len(names) - 1}] (the table has {len(names)} "
                         f"subjects), got {subjects_per_fold!r}")
    executor = TableExecutor(table, prices=prices)
    weak, strong = _pick_models(table, weak, strong)
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
        router = (router_factory or _llm_router)(_router_config(table, executor, weak, strong, seed=seed * 1000 + k,
                                                             cost_weight=cost_weight, exploration=exploration,
                                                             options=router_options), int(features.shape[1]))
        run_stream(router, executor, features, train, weak, strong, feedback=feedback)
        scores, chose = run_stream(router, executor, features, test, weak, strong, feedback=feedback)
        yw, ys = table.correct[test, jw], table.correct[test, js]
        fold_apgr.append(routing_metrics(scores, yw, ys)["apgr"] if ys.mean() != yw.mean() else None)
        all_rows.append(test)
        all_scores.append(scores)
        all_chose.append(chose)
    rows = np.concatenate(all_rows)
    cost_w, cost_s = _costs(executor, weak, strong)
    out = _report(rows, np.concatenate(all_scores), np.concatenate(all_chose), table, weak, strong, cost_w,
                  cost_s, np.random.default_rng(seed + 1))
    valid = [a for a in fold_apgr if a is not None]
    out.update(subjects_per_fold=subjects_per_fold, folds=folds, fold_apgr=fold_apgr,
               fold_apgr_mean=float(np.mean(valid)) if valid else None, seed=seed, feedback=feedback)
    return out


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


# =====================================================================================
# plot
# =====================================================================================
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


# =====================================================================================
# CLI
# =====================================================================================
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
    rows = []
    for method in ("router", "random", "always_weak", "always_strong", "oracle"):
        m = result[method]
        rows.append([method, m["apgr"] if m["apgr"] is not None else "-", m["cpt50"] if m["cpt50"] is not None
                     else "-", m["cpt80"] if m["cpt80"] is not None else "-", m["accuracy"], m["strong_share"],
                     m["cost_per_correct"] if m["cost_per_correct"] is not None else "-"])
    seeds = f"seed {args.seed}" if args.seeds == 1 else f"seeds {args.seed}..{args.seed + args.seeds - 1} (mean)"
    title = (f"bench routing: n={result['n']} prompts, {args.feedback} feedback, {args.exploration} exploration, "
             f"{seeds}, embedder {args.embedder} (dim {embedder.dim})")
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
    return 0
