"""EWC++: elastic weight consolidation with an online (EMA) Fisher.

* Fisher: every training step's squared gradients are accumulated; every ``n`` steps
  (``fisher_samples``, n = 10 as in the RWalk reference code) the diagonal Fisher is
  updated as an EMA, ``F <- (1 - a) F + a * mean(g^2 over the last n steps)`` with
  ``a = fisher_decay`` (0.9: weight on the new estimate), kernel ``fisher_update``.
* Consolidation (at a task boundary): the running Fisher is min-max normalised to [0, 1]
  over all parameters together and the anchors ``theta*`` are copies of the current
  parameters.
* Penalty: ``(s / 2) * sum F (theta - theta*)^2`` with its exact gradient
  ``s F (theta - theta*)`` (kernel ``ewc_penalty_grad``), added to the loss gradient. ``s`` is
  ``EWCConfig.strength``, which the guide's ``ewc.lambda`` (0-1) sets as ``s = 1000 lambda /
  (1 - lambda)`` (:func:`~swarm_sona.learning.config.guide_lambda_to_strength`).
* Modes: ``online`` keeps one running Fisher across tasks and one (Fisher, anchor) pair,
  replaced at every consolidation; ``separate`` (alias ``offline``) keeps one pair per task
  (the EWC paper) and restarts the running Fisher for each task.
* Task boundaries: given explicitly (:meth:`EWC.consolidate`) or detected by
  :meth:`EWC.observe` when the gradient statistics shift: the mean log gradient norm of
  each window of n steps is compared with the mean and spread of the earlier steps of the
  current task; a one-sided z-score above ``boundary_z`` (after ``boundary_min_samples``
  steps), in two windows in a row, declares a boundary (a new task makes the loss, hence
  the gradients, jump).

A parameter that grew along its first axis since its anchor (a task head that gained
classes) is penalised on the rows it had.

This module is the one home of the EWC maths; the consensus coordinator
(:mod:`swarm_sona.runtime.actors.coordinator`) uses the same functions on merged adapters:
:func:`fisher_ema` (the running Fisher, kernel ``fisher_update``), :func:`importance`
(min-max normalisation by :func:`minmax_normalize`: a constant positive Fisher gives ones,
consolidation stays on; an all-zero Fisher stays zeros, nothing is anchored) and
:func:`proximal_consolidate` (the exact minimiser of the penalised proximal step).

Example:
    >>> import numpy as np
    >>> from swarm_sona.learning.config import EWCConfig
    >>> from swarm_sona.learning.ewc import EWC
    >>> ewc = EWC(EWCConfig(strength=10.0, fisher_samples=2))
    >>> theta = {"w": np.array([1.0, 2.0], np.float32)}
    >>> for _ in range(2):
    ...     _ = ewc.observe({"w": np.array([0.1, 1.0], np.float32)})
    >>> ewc.consolidate(theta, task="t0")
    >>> theta["w"] += 1.0
    >>> loss, grads = ewc.penalty(theta)
    >>> round(loss, 3), grads["w"].tolist()
    (5.0, [0.0, 10.0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.learning.config import EWCConfig

__all__ = ["EWC", "EWCError", "Consolidation", "BoundaryDetector", "minmax_normalize", "importance",
           "fisher_ema", "proximal_consolidate"]


class EWCError(ValueError):
    """Invalid gradients, parameters or EWC state (the message names the parameter)."""


def minmax_normalize(fisher: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Min-max normalise a Fisher dict to [0, 1] over all parameters jointly.

    A constant Fisher (max == min) maps to ones if it is positive (every coordinate equally
    important) and to zeros otherwise.

    Example:
        >>> out = minmax_normalize({"a": np.array([1.0, 3.0]), "b": np.array([2.0])})
        >>> out["a"].tolist(), out["b"].tolist()
        ([0.0, 1.0], [0.5])
    """
    sized = [f for f in fisher.values() if np.size(f)]
    lo = min((float(np.min(f)) for f in sized), default=0.0)
    hi = max((float(np.max(f)) for f in sized), default=0.0)
    out = {}
    for k, f in fisher.items():
        if hi > lo:
            out[k] = ((np.asarray(f, np.float64) - lo) / (hi - lo)).astype(np.float32)
        else:
            out[k] = np.full(np.shape(f), 1.0 if hi > 0 else 0.0, np.float32)
    return out


def importance(fisher: Mapping[str, np.ndarray], normalize: bool = True) -> dict[str, np.ndarray]:
    """The per-coordinate importance a consolidation anchors with: the Fisher min-max
    normalised (:func:`minmax_normalize`) when ``normalize``, else a float32 copy.

    Example:
        >>> importance({"w": np.full(2, 0.3)})["w"].tolist()   # constant > 0: consolidation stays on
        [1.0, 1.0]
        >>> importance({"w": np.zeros(2)})["w"].tolist()       # nothing known: nothing anchored
        [0.0, 0.0]
    """
    if normalize:
        return minmax_normalize(fisher)
    return {k: np.array(f, np.float32, copy=True) for k, f in fisher.items()}


def _grow(F: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Zeros of ``shape``; the rows of ``F`` are kept when only its first axis grew."""
    new = np.zeros(shape, np.float32)
    if F is not None and F.ndim == len(shape) and F.shape[1:] == shape[1:] and F.shape[0] <= shape[0]:
        new[: F.shape[0]] = F
    return new


def fisher_ema(fisher: dict[str, np.ndarray], estimate: Mapping[str, np.ndarray], decay: float, *,
               kernels: ModuleType | None = None) -> dict[str, np.ndarray]:
    """EWC++ running Fisher, in place: ``F <- (1 - a) F + a F_new`` per name (``a = decay``,
    kernel ``fisher_update``); returns ``fisher``.

    A name seen for the first time starts from zeros (``F = a F_new``); a name whose first
    axis grew keeps the rows it had. Names of ``fisher`` absent from ``estimate`` are kept.

    Example:
        >>> F = fisher_ema({}, {"w": np.array([1.0, 0.0])}, 0.5)
        >>> fisher_ema(F, {"w": np.array([1.0, 2.0])}, 0.5)["w"].tolist()
        [0.75, 1.0]
    """
    k = kernels if kernels is not None else _nk
    for name, g2 in estimate.items():
        g2 = np.ascontiguousarray(g2, np.float32)
        F = fisher.get(name)
        if F is None or F.shape != g2.shape:
            F = _grow(F, g2.shape)
        elif F.dtype != np.float32 or not F.flags.c_contiguous or not F.flags.writeable:
            F = np.array(F, np.float32, copy=True)   # e.g. read-only arrays from a checkpoint
        fisher[name] = F
        k.fisher_update(F, g2, decay)
    return fisher


def proximal_consolidate(merged: Mapping[str, np.ndarray], anchor: Mapping[str, np.ndarray] | None,
                         fisher: Mapping[str, np.ndarray] | None, strength: float) -> dict[str, np.ndarray]:
    """EWC++ consolidation of a merged state toward its anchor, per coordinate:
    ``theta = (x + s F a) / (1 + s F)``, the exact minimiser of
    ``1/2 ||theta - x||^2 + s/2 sum F (theta - a)^2`` (``s`` = learning rate * lambda;
    ``F``: the importance, see :func:`importance`). Names without an anchor or Fisher, or
    whose shapes differ, pass through unchanged.

    Example:
        >>> proximal_consolidate({"w": np.array([4.0, 4.0])}, {"w": np.zeros(2)}, {"w": np.array([1.0, 0.0])}, 3.0)["w"]
        array([1., 4.])
    """
    out = {}
    for k, x in merged.items():
        if (anchor is None or fisher is None or k not in anchor or k not in fisher or strength <= 0
                or np.shape(anchor[k]) != np.shape(x) or np.shape(fisher[k]) != np.shape(x)):
            out[k] = x
            continue
        sf = strength * np.asarray(fisher[k], np.float64)
        out[k] = ((np.asarray(x, np.float64) + sf * np.asarray(anchor[k], np.float64)) / (1.0 + sf)).astype(x.dtype)
    return out


@dataclass
class Consolidation:
    """One (normalised Fisher, anchor) pair, taken at the end of ``task``."""

    task: str | None
    fisher: dict[str, np.ndarray]
    anchor: dict[str, np.ndarray]


class BoundaryDetector:
    """One-sided z-test of a window's mean against the current task's earlier windows.

    Observations are grouped in non-overlapping windows of ``window`` steps. Once the task
    has ``min_samples`` earlier observations, a window whose mean lies more than ``z``
    standard errors above their mean is suspect; two suspect windows in a row declare a
    boundary (one noisy window does not), and the history restarts.

    Example:
        >>> det = BoundaryDetector(window=5, z=3.0, min_samples=20)
        >>> rng = np.random.default_rng(0)
        >>> any(det.update(float(x)) for x in rng.normal(0, 1, 500))
        False
        >>> any(det.update(float(x)) for x in rng.normal(4, 1, 10))
        True
    """

    confirm = 2

    def __init__(self, window: int = 10, z: float = 3.0, min_samples: int = 50) -> None:
        self.window = max(int(window), 2)
        self.z = float(z)
        self.min_samples = int(min_samples)
        self.reset()

    def reset(self) -> None:
        """Start a new task: forget the history."""
        self.current: list[float] = []
        self.suspect: list[float] = []
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.last_z = 0.0

    def _absorb(self, xs: list[float]) -> None:
        for x in xs:  # Welford
            self.n += 1
            delta = x - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (x - self.mean)

    def update(self, x: float) -> bool:
        """Add one observation; True when a boundary is detected (the history then resets)."""
        if not math.isfinite(x):
            return False
        self.current.append(float(x))
        if len(self.current) < self.window:
            return False
        win, self.current = self.current, []
        if self.n < max(self.min_samples, 2):
            self._absorb(win)
            return False
        std = math.sqrt(self.m2 / (self.n - 1))
        se = max(std, 1e-12) / math.sqrt(len(win))
        self.last_z = (sum(win) / len(win) - self.mean) / se
        if self.last_z > self.z:
            self.suspect.extend(win)
            if len(self.suspect) >= self.confirm * self.window:
                self.reset()
                return True
            return False
        self._absorb(self.suspect + win)
        self.suspect = []
        return False

    def state_dict(self) -> dict[str, Any]:
        """Plain data for checkpoints."""
        return {"current": list(self.current), "suspect": list(self.suspect), "n": self.n,
                "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
        self.reset()
        self.current = [float(x) for x in st.get("current", [])]
        self.suspect = [float(x) for x in st.get("suspect", [])]
        self.n = int(st.get("n", 0))
        self.mean = float(st.get("mean", 0.0))
        self.m2 = float(st.get("m2", 0.0))


class EWC:
    """EWC++ state and operations (see module docs).

    Example:
        >>> ewc = EWC(EWCConfig(mode="separate"))
        >>> ewc.penalty({"w": np.zeros(3, np.float32)})[0]
        0.0
    """

    def __init__(self, config: EWCConfig | None = None, *, kernels: ModuleType | None = None) -> None:
        self.config = config or EWCConfig()
        self._k = kernels if kernels is not None else _nk
        self.fisher: dict[str, np.ndarray] = {}
        self._acc: dict[str, np.ndarray] = {}
        self._acc_n = 0
        self.consolidations: list[Consolidation] = []
        self.n_steps = 0
        self.n_fisher_updates = 0
        self.n_boundaries_detected = 0
        self.detector = BoundaryDetector(self.config.fisher_samples, self.config.boundary_z,
                                         self.config.boundary_min_samples)
        self.last_penalty = 0.0

    @property
    def lam(self) -> float:
        """Penalty strength ``s`` (``config.strength``; the guide's lambda mapped, see module docs)."""
        return float(self.config.strength)

    # ---- Fisher ------------------------------------------------------------------------------------
    def observe(self, grads: Mapping[str, np.ndarray], *, detect: bool | None = None) -> bool:
        """Feed one step's loss gradients (without the penalty's). Updates the Fisher EMA every
        n steps; returns True when a task boundary is detected (if detection is on)."""
        g32 = {}
        sq = 0.0
        for name, g in grads.items():
            g = np.asarray(g, dtype=np.float32)
            if not np.all(np.isfinite(g)):
                raise EWCError(f"gradient of {name!r} contains NaN or inf")
            acc = self._acc.get(name)
            if acc is not None and acc.shape != g.shape:
                self._flush()
                acc = None
            g32[name] = g
            sq += float(np.vdot(g, g))
        for name, g in g32.items():
            acc = self._acc.get(name)
            if acc is None:
                self._acc[name] = g * g
            else:
                acc += g * g
        self._acc_n += 1
        self.n_steps += 1
        if self._acc_n >= self.config.fisher_samples:
            self._flush()
        if detect is None:
            detect = self.config.detect_boundaries
        if detect and self.detector.update(math.log(math.sqrt(sq) + 1e-12)):
            self.n_boundaries_detected += 1
            return True
        return False

    def _flush(self) -> None:
        if self._acc_n == 0:
            return
        inv = np.float32(1.0 / self._acc_n)
        fisher_ema(self.fisher, {name: acc * inv for name, acc in self._acc.items()}, self.config.fisher_decay,
                   kernels=self._k)
        self._acc = {}
        self._acc_n = 0
        self.n_fisher_updates += 1

    # ---- consolidation ---------------------------------------------------------------------------------
    def consolidate(self, params: Mapping[str, np.ndarray], task: str | None = None) -> None:
        """Task boundary: normalise the running Fisher, take anchors = copies of ``params``.

        Parameters without a Fisher estimate get importance 0 (they are not anchored).
        """
        self._flush()
        for name, p in params.items():
            if not np.all(np.isfinite(p)):
                raise EWCError(f"parameter {name!r} contains NaN or inf; refusing to anchor it")
        fisher = {k: self.fisher[k] for k in params if k in self.fisher and self.fisher[k].shape == np.shape(params[k])}
        fisher = importance(fisher, self.config.normalize)
        anchor = {k: np.array(params[k], dtype=np.float32, copy=True) for k in fisher}
        c = Consolidation(task, fisher, anchor)
        if self.config.mode == "online":
            self.consolidations = [c]
        else:
            self.consolidations.append(c)
            self.fisher = {}
        self.detector.reset()

    def set_anchor(self, params: Mapping[str, np.ndarray], fisher: Mapping[str, np.ndarray],
                   task: str | None = None, *, normalize: bool | None = None) -> None:
        """Consolidate with a given Fisher (e.g. a merged one from the coordinator)."""
        for k, f in fisher.items():
            if k not in params:
                raise EWCError(f"Fisher given for unknown parameter {k!r}")
            if np.shape(f) != np.shape(params[k]):
                raise EWCError(f"Fisher of {k!r} has shape {np.shape(f)}, parameter has {np.shape(params[k])}")
            if not np.all(np.isfinite(f)) or np.any(np.asarray(f) < 0):
                raise EWCError(f"Fisher of {k!r} must be finite and >= 0")
        fz = importance({k: np.asarray(f, np.float32) for k, f in fisher.items()},
                        self.config.normalize if normalize is None else normalize)
        c = Consolidation(task, fz, {k: np.array(params[k], np.float32, copy=True) for k in fz})
        if self.config.mode == "online":
            self.consolidations = [c]
        else:
            self.consolidations.append(c)

    # ---- penalty -----------------------------------------------------------------------------------------
    def penalty(self, params: Mapping[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        """``(lambda/2) sum F (theta - theta*)^2`` over every consolidation and its gradient."""
        total = 0.0
        grads: dict[str, np.ndarray] = {}
        lam = self.lam
        if lam == 0.0:
            self.last_penalty = 0.0
            return 0.0, grads
        for c in self.consolidations:
            for name, F in c.fisher.items():
                if name not in params:
                    continue
                theta = np.asarray(params[name])
                anchor = c.anchor[name]
                if theta.shape != anchor.shape:
                    if theta.ndim == anchor.ndim and theta.shape[1:] == anchor.shape[1:] and theta.shape[0] > anchor.shape[0]:
                        sub = theta[: anchor.shape[0]]
                        val, g_sub = self._k.ewc_penalty_grad(np.ascontiguousarray(sub, np.float32), anchor, F, lam)
                        g = np.zeros(theta.shape, np.float32)
                        g[: anchor.shape[0]] = g_sub
                    else:
                        raise EWCError(f"parameter {name!r} has shape {theta.shape}, anchored with {anchor.shape}")
                else:
                    val, g = self._k.ewc_penalty_grad(np.asarray(theta, np.float32), anchor, F, lam)
                total += val
                if name in grads:
                    grads[name] = grads[name] + g
                else:
                    grads[name] = g
        self.last_penalty = total
        return total, grads

    def importance(self) -> dict[str, np.ndarray]:
        """The running (unnormalised) Fisher including steps not yet folded into the EMA."""
        self._flush()
        return {k: f.copy() for k, f in self.fisher.items()}

    # ---- state --------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters for telemetry: steps, Fisher updates, consolidations, last penalty."""
        return {"mode": self.config.mode, "lambda": self.lam, "guide_lambda": self.config.guide_lambda,
                "steps": self.n_steps,
                "fisher_updates": self.n_fisher_updates, "consolidations": len(self.consolidations),
                "tasks": [c.task for c in self.consolidations],
                "boundaries_detected": self.n_boundaries_detected, "last_penalty": self.last_penalty,
                "last_z": self.detector.last_z}

    def state_dict(self) -> dict[str, Any]:
        """Plain data (Fisher, accumulator, anchors, detector, counters) for checkpoints."""
        return {"fisher": {k: v.copy() for k, v in self.fisher.items()},
                "acc": {k: v.copy() for k, v in self._acc.items()}, "acc_n": self._acc_n,
                "consolidations": [{"task": c.task, "fisher": c.fisher, "anchor": c.anchor}
                                   for c in self.consolidations],
                "n_steps": self.n_steps, "n_fisher_updates": self.n_fisher_updates,
                "n_boundaries_detected": self.n_boundaries_detected, "detector": self.detector.state_dict()}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        """Install a :meth:`state_dict` (validated first)."""
        if not isinstance(st, Mapping):
            raise EWCError(f"EWC state must be a mapping, got {type(st).__name__}")
        try:
            fisher = {str(k): np.asarray(v, np.float32) for k, v in dict(st.get("fisher", {})).items()}
            acc = {str(k): np.asarray(v, np.float32) for k, v in dict(st.get("acc", {})).items()}
            cons = []
            for c in st.get("consolidations", []):
                f = {str(k): np.asarray(v, np.float32) for k, v in dict(c["fisher"]).items()}
                a = {str(k): np.asarray(v, np.float32) for k, v in dict(c["anchor"]).items()}
                if set(f) != set(a) or any(f[k].shape != a[k].shape for k in f):
                    raise EWCError("EWC state: a consolidation's Fisher and anchor do not match")
                cons.append(Consolidation(c.get("task"), f, a))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EWCError):
                raise
            raise EWCError(f"malformed EWC state: {exc}") from exc
        self.fisher = fisher
        self._acc = acc
        self._acc_n = int(st.get("acc_n", 0))
        self.consolidations = cons
        self.n_steps = int(st.get("n_steps", 0))
        self.n_fisher_updates = int(st.get("n_fisher_updates", 0))
        self.n_boundaries_detected = int(st.get("n_boundaries_detected", 0))
        self.detector.load_state_dict(st.get("detector", {}))
