"""Input checks and the guide's call shapes: every engine entry point validates here first.

Each check raises :class:`~swarm_sona.engine.errors.EngineError` naming what was wrong before
anything changes. :func:`guide_args` turns one call in the guide's shape (a mapping with camelCase
or snake_case keys, and/or keyword arguments) into snake_case keyword arguments, refusing a key
that is neither with the closest valid one.

Example:
    >>> from swarm_sona.engine.inputs import guide_args
    >>> guide_args("finetune", ({"task": "t", "examples": []},), {"epochs": 3}, ("task", "examples", "epochs"))
    {'task': 't', 'examples': [], 'epochs': 3}
    >>> guide_args("retrieve_patterns", ({"minRewrd": 0.5},), {}, ("task", "min_reward"))
    Traceback (most recent call last):
    ...
    swarm_sona.engine.errors.EngineError: retrieve_patterns: unknown key 'minRewrd' (did you mean 'min_reward'?)
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona import kernels as _nk
from swarm_sona.core.config import camel_to_snake
from swarm_sona.core.trajectory import Step, Trajectory, TrajectoryError, check_vector
from swarm_sona.engine.errors import EngineError
from swarm_sona.learning.errors import ModelError
from swarm_sona.learning.heads import plain_label

__all__ = ["guide_args", "guide_trajectory", "vector", "matrix", "step_vectors", "trajectories", "examples", "inputs"]


def guide_args(where: str, args: Sequence[Any], kwargs: Mapping[str, Any], valid: Sequence[str]) -> dict[str, Any]:
    """Snake_case keyword arguments of one call in the guide's shape (see module docs).

    ``args`` may hold one mapping (the guide's object); ``kwargs`` add to it. A key given twice
    (``minReward`` and ``min_reward``) or not in ``valid`` is an :class:`EngineError`.
    """
    items: list[tuple[str, Any]] = []
    if args:
        if len(args) != 1 or not isinstance(args[0], Mapping):
            raise EngineError(f"{where}: expected one mapping (the guide's object) or keyword arguments")
        items.extend(args[0].items())
    items.extend(kwargs.items())
    out: dict[str, Any] = {}
    for raw, value in items:
        if not isinstance(raw, str):
            raise EngineError(f"{where}: keys must be strings, got {raw!r}")
        name = raw if raw in valid else camel_to_snake(raw)
        if name not in valid:
            close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"
            raise EngineError(f"{where}: unknown key {raw!r}{hint}")
        if name in out:
            raise EngineError(f"{where}: key {raw!r} given twice (as {name!r})")
        out[name] = value
    return out


def vector(v: Any, dim: int, what: str) -> np.ndarray:
    """A finite float32 (dim,) vector, or EngineError naming ``what``."""
    try:
        return check_vector(v, dim, what=what)
    except TrajectoryError as exc:
        raise EngineError(str(exc)) from None


def matrix(X: Any, dim: int, what: str) -> np.ndarray:
    """(n, dim) float32 C-contiguous, finite; EngineError naming ``what`` otherwise."""
    try:
        E = np.ascontiguousarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"{what} are not numeric: {exc}") from None
    if E.ndim != 2 or E.shape[1] != dim:
        raise EngineError(f"{what} have shape {E.shape}, expected (n, {dim})")
    finite = np.isfinite(E).all(axis=1)
    if not finite.all():
        raise EngineError(f"{what}: row {int(np.argmin(finite))} contains NaN or inf")
    return E


def step_vectors(steps: Sequence[Any] | None, dim: int, max_steps: int) -> list[np.ndarray]:
    """The last ``max_steps`` checked step embeddings (arrays or :class:`Step` objects)."""
    if not steps or max_steps == 0:
        return []
    out = []
    for i, s in enumerate(steps):
        e = s.embedding if isinstance(s, Step) else s
        if e is None:
            continue
        out.append(vector(e, dim, f"step {i} embedding"))
    return out[-max_steps:]


_F32 = np.dtype(np.float32)


def one_trajectory(t: Any, dim: int, max_steps: int, i: int = 0) -> Trajectory:
    """One checked :class:`Trajectory` (the checks of :func:`trajectories` for one item; ``i``
    numbers it in the error messages)."""
    if type(t) is not Trajectory and isinstance(t, Mapping):
        try:
            t = Trajectory.from_dict(dict(t))
        except TrajectoryError as exc:
            raise EngineError(f"learn: trajectory {i}: {exc}") from None
    if not isinstance(t, Trajectory):
        raise EngineError(f"learn: item {i} is {type(t).__name__}, expected Trajectory")
    e = t.embedding
    if not isinstance(e, np.ndarray) or e.shape != (dim,):
        got = e.shape[0] if isinstance(e, np.ndarray) and e.ndim == 1 else np.shape(e)
        raise EngineError(f"learn: trajectory {i} embedding has dimension {got}, expected {dim}")
    if e.dtype is not _F32 and e.dtype != np.float32:   # the identity test: the common case, cheaply
        raise EngineError(f"learn: trajectory {i} embedding has dtype {e.dtype}, expected float32")
    if not _nk.finite_norm(e):
        raise EngineError(f"learn: trajectory {i} embedding contains NaN or inf")
    r = t.reward
    if not (type(r) is float and 0.0 <= r <= 1.0) and (   # a plain float in range: no further test
            isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0):
        raise EngineError(f"learn: trajectory {i} reward must be a finite number in [0, 1], got {r!r}")
    if t.steps:
        try:
            step_vectors(t.steps, dim, max_steps)
        except EngineError as exc:
            raise EngineError(f"learn: trajectory {i}: {exc}") from None
    return t


def trajectories(traj: Any, dim: int, max_steps: int) -> list[Trajectory]:
    """Checked trajectories from one Trajectory / mapping or an iterable of them."""
    if isinstance(traj, (Trajectory, Mapping)):
        items: list[Any] = [traj]
    else:
        try:
            items = list(traj)
        except TypeError:
            raise EngineError(f"learn: expected a Trajectory or a list of them, got {type(traj).__name__}") from None
    if not items:
        raise EngineError("learn: no trajectories given")
    return [one_trajectory(t, dim, max_steps, i) for i, t in enumerate(items)]


def _array_examples(X: np.ndarray, labels: Any, dim: int, what: str) -> tuple[np.ndarray, list[Any]]:
    labels = list(labels)
    if len(labels) != X.shape[0]:
        raise EngineError(f"{what}: {X.shape[0]} inputs but {len(labels)} labels")
    if X.shape[0] == 0:
        raise EngineError(f"{what}: no examples given")
    if X.shape[1] != dim:
        raise EngineError(f"{what}: inputs have dimension {X.shape[1]}, expected {dim}")
    try:
        X = np.ascontiguousarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"{what}: inputs are not numeric: {exc}") from None
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        raise EngineError(f"{what}: example {int(bad[0])} contains NaN or inf")
    return X, labels


def _pair(i: int, p: Any, what: str) -> tuple[Any, Any]:
    """One example as ``(input, label)``: a pair, or the guide's ``{input, output}`` mapping."""
    if isinstance(p, Mapping):
        keys = set(p)
        if keys != {"input", "output"}:
            raise EngineError(f"{what}: example {i} must have the keys 'input' and 'output', got {sorted(map(str, keys))}")
        return p["input"], p["output"]
    if not isinstance(p, (tuple, list)) or len(p) != 2:
        raise EngineError(f"{what}: example {i} must be an (input, label) pair or {{input, output}}, got {p!r:.60}")
    return p[0], p[1]


def examples(ex: Any, embed: Any, dim: int, what: str) -> tuple[np.ndarray, list[Any]]:
    """``(X (n, dim), labels)`` from ``(input, label)`` pairs, ``{input, output}`` mappings or
    a tuple ``(X array, labels)``; text inputs are embedded with ``embed`` in one call."""
    if isinstance(ex, tuple) and len(ex) == 2 and isinstance(ex[0], np.ndarray) and ex[0].ndim == 2:
        X, labels = _array_examples(ex[0], ex[1], dim, what)
    else:
        if isinstance(ex, (str, Mapping)):
            raise EngineError(f"{what}: examples must be a list of (input, label) pairs or {{input, output}}")
        try:
            pairs = list(ex)
        except TypeError:
            raise EngineError(f"{what}: examples must be (input, label) pairs or (X, y)") from None
        if not pairs:
            raise EngineError(f"{what}: no examples given")
        X = np.empty((len(pairs), dim), np.float32)
        labels = []
        texts: list[tuple[int, str]] = []
        for i, p in enumerate(pairs):
            x, lab = _pair(i, p, what)
            if isinstance(x, str):
                texts.append((i, x))
            else:
                X[i] = vector(x, dim, f"{what}: example {i} input")
            labels.append(lab)
        if texts:
            X[[i for i, _ in texts]] = embed([t for _, t in texts])
    try:
        labels = [plain_label(lab) for lab in labels]
    except ModelError as exc:
        raise EngineError(f"{what}: {exc}") from None
    return X, labels


def inputs(X: Any, embed: Any, dim: int, what: str) -> tuple[np.ndarray, bool]:
    """``(E (n, dim), single)`` for a text, a vector, an (n, dim) array or a list of them."""
    if isinstance(X, str):
        return embed([X]), True
    if isinstance(X, np.ndarray) and X.ndim == 1:
        return vector(X, dim, f"{what}: input")[None, :], True
    if isinstance(X, np.ndarray) and X.ndim == 2:
        if X.shape[1] != dim:
            raise EngineError(f"{what}: inputs have dimension {X.shape[1]}, expected {dim}")
        X = np.ascontiguousarray(X, np.float32)
        if not np.isfinite(X).all():
            raise EngineError(f"{what}: inputs contain NaN or inf")
        return X, False
    items = list(X)
    if not items:
        return np.empty((0, dim), np.float32), False
    out = np.empty((len(items), dim), np.float32)
    texts = [(i, x) for i, x in enumerate(items) if isinstance(x, str)]
    for i, x in enumerate(items):
        if not isinstance(x, str):
            out[i] = vector(x, dim, f"{what}: input {i}")
    if texts:
        out[[i for i, _ in texts]] = embed([t for _, t in texts])
    return out, False


def guide_trajectory(kw: dict[str, Any], embed: Any, dim: int, max_steps: int) -> Trajectory:
    """A checked trajectory from the guide's ``{task, output, reward, ...}`` (snake_case keys):
    without an embedding the task text is embedded with ``embed`` and success defaults to
    reward >= 0.5; ``input`` is dropped (it belongs to the stored pattern)."""
    kw = dict(kw)
    kw.pop("input", None)
    if "embedding" not in kw:
        if not isinstance(kw.get("task"), str):
            raise EngineError("learn: a trajectory mapping without an embedding needs a task text")
        kw["embedding"] = embed(kw["task"])
        reward = kw.get("reward", 0.0)
        kw.setdefault("success", isinstance(reward, (int, float)) and not isinstance(reward, bool) and reward >= 0.5)
    return trajectories(kw, dim, max_steps)[0]
