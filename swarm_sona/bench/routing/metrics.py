"""RouteLLM's routing metrics, computed exactly: the accuracy-vs-strong-share curve of a
router's scores (tied scores form one linear segment), PGR, APGR (the area under PGR), CPT(x)
(the smallest strong share whose PGR reaches x), and the metrics of actual decisions
(accuracy, strong share, cost per correct answer).

Example:
    >>> import numpy as np
    >>> weak = np.array([1, 0, 1, 0], bool); strong = np.array([1, 1, 1, 0], bool)
    >>> m = routing_metrics(np.array([0.0, 1.0, 0.0, 0.0]), weak, strong)
    >>> round(m["apgr"], 3), m["cpt50"]
    (0.875, 0.125)
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["routing_curve", "routing_metrics", "decision_metrics"]


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
