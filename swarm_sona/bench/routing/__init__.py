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

Where things live: the metrics in :mod:`.metrics`, the embedders and the embedded table in
:mod:`.features`, the prequential protocol (and the helpers the other real-data benches
share: :func:`router_config`, :func:`pick_models`, :func:`subject_subset`) in :mod:`.stream`,
the command in :mod:`.cli`.

Example:
    >>> from swarm_sona.bench.routing import routing_metrics
    >>> import numpy as np
    >>> weak = np.array([1, 0, 1, 0], bool); strong = np.array([1, 1, 1, 0], bool)
    >>> m = routing_metrics(np.array([0.0, 1.0, 0.0, 0.0]), weak, strong)
    >>> round(m["apgr"], 3), m["cpt50"]
    (0.875, 0.125)
"""

from __future__ import annotations

from swarm_sona.bench.routing.cli import DEFAULT_DATA, add_arguments, plot_curves, route_latency, run
from swarm_sona.bench.routing.features import embed_table, make_embedder
from swarm_sona.bench.routing.metrics import decision_metrics, routing_curve, routing_metrics
from swarm_sona.bench.routing.stream import (
    ROUTELLM_PRIORS,
    RouterFactory,
    default_router,
    model_costs,
    pick_models,
    router_config,
    run_holdout,
    run_routing_bench,
    run_stream,
    subject_subset,
)

__all__ = ["ROUTELLM_PRIORS", "DEFAULT_DATA", "RouterFactory", "router_config", "pick_models", "subject_subset",
           "default_router", "model_costs", "make_embedder", "routing_curve", "routing_metrics", "decision_metrics",
           "embed_table", "run_stream", "run_routing_bench", "run_holdout", "route_latency", "plot_curves",
           "add_arguments", "run"]
