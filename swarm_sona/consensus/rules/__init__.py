"""Merge rules as one registry: each rule is a :class:`MergeRule` carrying its name, aliases,
the number of bad agents it tolerates, whether it is robust, its norm clip, its options and
its function. :func:`register_rule` adds one (from any package); :func:`get_rule` finds one by
name, alias or import reference ``"package.module:attribute"`` (so Ray workers import a user's
rule themselves) and binds options. All rules are deterministic: updates are ordered by agent
id before any arithmetic.

Where things live: the registry and :class:`MergeRule` in :mod:`.registry`, the averaging
rules (fedavg, fisher, ties, dare) in :mod:`.averaging`, the robust rules (median,
trimmed_mean, krum, multi_krum) and their tolerances in :mod:`.robust`, the shared array
arithmetic in :mod:`.arrays`.

==================  ============================================================  =====================
rule                what it computes                                              tolerates f of n
==================  ============================================================  =====================
``fedavg``          mean weighted by trajectory counts (overflow-safe)            0 (one bad agent moves it anywhere)
``fisher``          per coordinate: sum_i w_i F_i x_i / sum_i w_i F_i              0
``median``          coordinate-wise median                                        f <= (n - 1) // 2 (just under half)
``trimmed_mean``    per coordinate: drop the f largest and f smallest, average    f (given, default ceil(0.2 n)); 2f < n
``krum``            the update closest (sum of squared distances to its            f with n >= 2f + 3
                    n - f - 2 nearest) to the others; ``multi_krum`` averages
                    the m best
``ties``            TIES-merging: trim to top-density magnitudes, elect sign by   0 (for merging adapters of
                    mass, average the agreeing entries                             different tasks)
``dare``            drop-and-rescale (seeded) then average                        0
==================  ============================================================  =====================

A *robust* rule (tolerance > 0: median, trimmed_mean, krum, multi_krum) trusts nothing an
agent reports about itself: it ignores the self-reported weights, aggregates the Fisher with
itself (not a weighted mean), reports the round's trajectory count as ``n x median weight``,
and by default clips every update's norm (``clip=3.0``: no update farther from the reference
than 3x the median agent's distance, see :func:`~swarm_sona.consensus.updates.clip_updates`)
and every agent's pooled evidence (3x the median agent's evidence). Non-robust rules weight by
the (validated) counts, aggregate the Fisher by the overflow-safe weighted mean and do not clip
unless given ``clip=``.

Stated bound (checked by ``tests/consensus/test_byzantine.py``): with at most ``tolerates(n)`` bad agents,
whatever they send (poisoned parameters, forged Fisher, the largest allowed weight), the merged
parameters and Fisher of median, trimmed_mean, krum and multi_krum each stay within the
diameter of the honest agents' bounding box (per name: ``||max_i x_i - min_i x_i||``, honest
agents only) of the merge of the honest agents alone.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.rules import get_rule
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> ups = [AgentUpdate(a, 0, {"x": np.array([v])}, weight=w)
    ...        for a, v, w in zip("abc", [1.0, 2.0, 1e9], [5, 5, 10 ** 12])]
    >>> r = get_rule("median")
    >>> r(ups)["x"].tolist(), r.tolerates(3), r.count(ups)
    ([2.0], 1, 15.0)
"""

from __future__ import annotations

from swarm_sona.consensus.rules.averaging import dare, fedavg, fisher_weighted, ties
from swarm_sona.consensus.rules.registry import (
    DEFAULT_CLIP,
    RULES,
    MergeRule,
    get_rule,
    register_rule,
    tolerated_faults,
    unregister_rule,
)
from swarm_sona.consensus.rules.robust import (
    coordinate_median,
    krum,
    krum_tolerance,
    median_tolerance,
    multi_krum,
    trim_tolerance,
    trimmed_mean,
)

__all__ = ["MergeRule", "RULES", "register_rule", "unregister_rule", "get_rule", "tolerated_faults", "fedavg",
           "fisher_weighted", "coordinate_median", "trimmed_mean", "krum", "multi_krum", "ties", "dare",
           "DEFAULT_CLIP"]

register_rule("fedavg", fedavg, aliases=("mean", "avg"), tolerance_doc="0 (one bad agent moves it anywhere)")
register_rule("fisher", fisher_weighted, aliases=("fisher_weighted",), tolerance_doc="0 (a forged Fisher wins)")
register_rule("median", coordinate_median, aliases=("coordinate_median",), tolerates=median_tolerance,
              tolerance_doc="f <= (n - 1) // 2")
register_rule("trimmed_mean", trimmed_mean, aliases=("trimmedmean",), tolerates=trim_tolerance,
              tolerance_doc="f (default ceil(trim n), 2f < n)")
register_rule("krum", krum, tolerates=krum_tolerance, tolerance_doc="f with n >= 2f + 3")
register_rule("multi_krum", multi_krum, aliases=("multikrum",), tolerates=krum_tolerance,
              tolerance_doc="f with n >= 2f + 3")
register_rule("ties", ties, tolerance_doc="0 (merges adapters of different tasks)")
register_rule("dare", dare, tolerance_doc="0")
