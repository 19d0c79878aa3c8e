"""``swarm-sona bench continual``: continual learning on scikit-learn's bundled digits.

Scenarios (5 tasks by default, no download: ``sklearn.datasets.load_digits``, 8x8 images,
1797 samples, a stratified 70/30 train/test split drawn from ``--seed``):

* ``permuted``: task 0 is the original pixel order, task t > 0 a fixed random pixel
  permutation of it (10 classes each).
* ``split``: task t holds digits {2t, 2t+1}.

Every task has its own head (``finetune("perm3", ...)``) and is evaluated with it
(task-incremental): what one task learns in the shared BaseLoRA is what a later task can
overwrite.

Pixels are scaled to [0, 1] and standardised with the training statistics; with ``--dim``
other than 64 they go through a fixed seeded random orthogonal projection to ``dim``.

Methods, all through :meth:`SONA.finetune` on an engine with the same base seed:
``naive`` (lambda = 0), ``ewc`` (EWC++, ``--lam``, online mode, consolidation after each
task), ``replay`` (lambda = 0; each task's mini-batches mix in ``--memory`` stored examples
of every earlier task, through their own heads: ``finetune(..., replay=...)``) and ``joint``
(stage t trains on the data of tasks 0..t together, continuing from stage t-1: the upper
reference).

Metrics (Chaudhry et al., RWalk 2018), from the accuracy matrix ``R[i][j]`` (test accuracy
on task j after training task i): average accuracy ``mean_j R[T-1][j]``; forgetting
``mean_{j<T-1} max_{l<T-1} (R[l][j]) - R[T-1][j]``; intransigence ``mean_k (R*[k][k] -
R[k][k])`` with ``R*`` the joint model's matrix (0 for joint itself).

Example:
    >>> res = run_continual("permuted", seed=0, tasks=2, epochs=1, methods=("naive",), mlp_hidden=32)
    >>> sorted(res["naive"]), len(res["matrices"]["naive"])
    (['avg_acc', 'forgetting', 'intransigence'], 2)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from swarm_sona.bench.timing import emit, machine_info
from swarm_sona.engine.sona import SONA

__all__ = ["add_arguments", "run", "run_continual", "make_tasks", "continual_metrics", "METHODS", "DEFAULTS"]

METHODS = ("naive", "ewc", "replay", "joint")
DEFAULTS: dict[str, Any] = {"dim": 64, "mlp_hidden": 256, "rank": 8, "alpha": 16.0, "lr": 5e-3, "epochs": 5,
                            "batch_size": 32, "lam": 1000.0, "memory": 50,
                            "target_modules": ("v", "o", "mlp_in", "mlp_out")}


def make_tasks(scenario: str, n_tasks: int, seed: int, dim: int = 64) -> list[dict[str, Any]]:
    """The task sequence: a list of ``{"name", "head", "Xtr", "ytr", "Xte", "yte", "classes"}``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if scenario not in ("permuted", "split"):
        raise ValueError(f"unknown scenario {scenario!r} (use permuted or split)")
    if scenario == "split" and not 1 <= n_tasks <= 5:
        raise ValueError(f"split digits has at most 5 tasks, got {n_tasks}")
    if n_tasks < 1:
        raise ValueError(f"need at least one task, got {n_tasks}")
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64) / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    mu = Xtr.mean(0)
    sd = Xtr.std(0)
    sd[sd < 1e-6] = 1.0
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    rng = np.random.default_rng([seed, 0xD161])
    P = None
    if dim != 64:
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim}")
        G = rng.standard_normal((max(dim, 64), max(dim, 64)))
        Q, _ = np.linalg.qr(G)
        P = Q[:dim, :64] * np.sqrt(max(dim, 64) / 64)

    def proj(A: np.ndarray) -> np.ndarray:
        return (A if P is None else A @ P.T).astype(np.float32)

    tasks = []
    for t in range(n_tasks):
        if scenario == "permuted":
            perm = np.arange(64) if t == 0 else rng.permutation(64)
            tasks.append({"name": f"perm{t}", "head": f"perm{t}", "Xtr": proj(Xtr[:, perm]), "ytr": ytr.astype(int),
                          "Xte": proj(Xte[:, perm]), "yte": yte.astype(int), "classes": list(range(10))})
        else:
            cls = [2 * t, 2 * t + 1]
            tr, te = np.isin(ytr, cls), np.isin(yte, cls)
            tasks.append({"name": f"split{t}", "head": f"split{t}", "Xtr": proj(Xtr[tr]), "ytr": ytr[tr].astype(int),
                          "Xte": proj(Xte[te]), "yte": yte[te].astype(int), "classes": cls})
    return tasks


def _accuracy(sona: SONA, task: dict[str, Any]) -> float:
    pred = sona.predict(task["head"], task["Xte"])
    return float(np.mean(np.asarray(pred) == task["yte"]))


def continual_metrics(R: np.ndarray, R_joint: np.ndarray | None = None) -> dict[str, float]:
    """Average accuracy, forgetting and intransigence from accuracy matrices (see module docs).

    Example:
        >>> R = np.array([[0.9, 0.0], [0.5, 0.8]])
        >>> m = continual_metrics(R, np.array([[0.9, 0.0], [0.85, 0.9]]))
        >>> round(m["avg_acc"], 3), round(m["forgetting"], 3), round(m["intransigence"], 3)
        (0.65, 0.4, 0.05)
    """
    T = R.shape[0]
    avg = float(np.mean(R[T - 1, :T]))
    forgetting = float(np.mean([R[:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)])) if T > 1 else 0.0
    intr = float(np.mean([R_joint[k, k] - R[k, k] for k in range(T)])) if R_joint is not None else 0.0
    return {"avg_acc": avg, "forgetting": forgetting, "intransigence": intr}


def _engine(method: str, dim: int, mlp_hidden: int, rank: int, alpha: float, lr: float, batch_size: int,
            lam: float, seed: int, target_modules: Sequence[str]) -> SONA:
    cfg = {"dim": dim, "mlp_hidden": mlp_hidden, "model_seed": seed, "background_lr": lr, "batch_size": batch_size,
           "background_every": 0,
           "lora": {"rank": rank, "alpha": alpha, "target_modules": list(target_modules), "seed": seed},
           "ewc": {"lambda": lam if method == "ewc" else 0.0, "mode": "online", "detect_boundaries": False}}
    return SONA(cfg)


def run_continual(scenario: str = "permuted", seed: int = 0, tasks: int = 5, *, methods: Sequence[str] = METHODS,
                  epochs: int = DEFAULTS["epochs"], dim: int = DEFAULTS["dim"], mlp_hidden: int = DEFAULTS["mlp_hidden"],
                  rank: int = DEFAULTS["rank"], alpha: float = DEFAULTS["alpha"], lr: float = DEFAULTS["lr"],
                  batch_size: int = DEFAULTS["batch_size"], lam: float = DEFAULTS["lam"],
                  memory: int = DEFAULTS["memory"],
                  target_modules: Sequence[str] = DEFAULTS["target_modules"]) -> dict[str, Any]:
    """Run the methods on one scenario and seed; returns the JSON document of the benchmark
    (plus ``"matrices"``: each method's accuracy matrix, ``"seconds"`` per method)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown} (known: {list(METHODS)})")
    seq = make_tasks(scenario, tasks, seed, dim)
    T = len(seq)
    mats: dict[str, np.ndarray] = {}
    secs: dict[str, float] = {}
    order = sorted(methods, key=lambda m: m != "joint")  # joint first: the others' intransigence needs it
    for method in order:
        t0 = time.perf_counter()
        sona = _engine(method, dim, mlp_hidden, rank, alpha, lr, batch_size, lam, seed, target_modules)
        R = np.zeros((T, T))
        memory_sets: dict[str, tuple[np.ndarray, list[int]]] = {}
        rng = np.random.default_rng([seed, 0x3E3])
        for i, task in enumerate(seq):
            replay = None
            if method == "joint":
                replay = {s["head"]: (s["Xtr"], list(s["ytr"])) for s in seq[:i]}
            elif method == "replay":
                replay = dict(memory_sets)
            sona.finetune(task["head"], (task["Xtr"], list(task["ytr"])), epochs=epochs, seed=seed * 1000 + i,
                          consolidate=method == "ewc", replay=replay)
            if method == "replay" and memory > 0:
                keep = rng.choice(len(task["ytr"]), size=min(memory, len(task["ytr"])), replace=False)
                memory_sets[task["head"]] = (task["Xtr"][keep], list(task["ytr"][keep]))
            for j in range(i + 1):
                R[i, j] = _accuracy(sona, seq[j])
        mats[method] = R
        secs[method] = time.perf_counter() - t0
    out: dict[str, Any] = {"scenario": scenario, "seed": seed, "tasks": T}
    for method in methods:
        out[method] = continual_metrics(mats[method], mats.get("joint"))
        if "joint" not in mats:
            out[method]["intransigence"] = None
    out["matrices"] = {m: mats[m].round(4).tolist() for m in methods}
    out["seconds"] = {m: round(secs[m], 2) for m in methods}
    out["settings"] = {"epochs": epochs, "dim": dim, "mlp_hidden": mlp_hidden, "rank": rank, "alpha": alpha, "lr": lr,
                       "batch_size": batch_size, "lambda": lam, "memory": memory,
                       "target_modules": list(target_modules), "ewc_mode": "online"}
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI options of ``swarm-sona bench continual``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--scenario", choices=("permuted", "split"), default="permuted")
    parser.add_argument("--tasks", type=int, default=5, help="number of tasks (split: at most 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs per task")
    parser.add_argument("--dim", type=int, default=DEFAULTS["dim"], help="engine dim (64 = raw pixels)")
    parser.add_argument("--mlp-hidden", type=int, default=DEFAULTS["mlp_hidden"])
    parser.add_argument("--rank", type=int, default=DEFAULTS["rank"], help="BaseLoRA rank")
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate")
    parser.add_argument("--lam", type=float, default=DEFAULTS["lam"], help="EWC++ lambda")
    parser.add_argument("--memory", type=int, default=DEFAULTS["memory"], help="replay: stored examples per task")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON with ``--json``)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        threadpool_limits = None
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    kwargs = dict(methods=methods, epochs=args.epochs, dim=args.dim, mlp_hidden=args.mlp_hidden, rank=args.rank,
                  lr=args.lr, lam=args.lam, memory=args.memory, batch_size=args.batch_size)
    if threadpool_limits is not None:
        with threadpool_limits(1):  # small matrices: one BLAS thread is faster and steadier
            res = run_continual(args.scenario, args.seed, args.tasks, **kwargs)
    else:
        res = run_continual(args.scenario, args.seed, args.tasks, **kwargs)
    rows = []
    for m in methods:
        r = res[m]
        rows.append([m, r["avg_acc"], r["forgetting"], "-" if r["intransigence"] is None else r["intransigence"],
                     res["seconds"][m]])
    s = res["settings"]
    title = (f"bench continual: {res['scenario']} digits, {res['tasks']} tasks, seed {res['seed']}, "
             f"{s['epochs']} epochs/task, dim {s['dim']}, LoRA rank {s['rank']} on {','.join(s['target_modules'])}, "
             f"Adam lr {s['lr']}, EWC++ lambda {s['lambda']}, replay memory {s['memory']}/task")
    if args.json:
        res["machine"] = machine_info()
    emit(res, as_json=args.json, title=title, header=["method", "avg_acc", "forgetting", "intransigence", "seconds"],
         rows=rows)
    return 0
