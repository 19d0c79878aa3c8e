"""Supervised fine-tuning: task heads + BaseLoRA on labelled examples, with EWC++.

Example:
    >>> from swarm_sona.engine.sona import SONA
    >>> sona = SONA({"dim": 32, "mlp_hidden": 32})
    >>> res = sona.finetune({"task": "mood", "epochs": 3, "examples": [
    ...     {"input": "great, thanks", "output": "pos"}, {"input": "awful bug", "output": "neg"}]})
    >>> res["classes"], sona.classes("mood")
    (['neg', 'pos'], ['neg', 'pos'])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

import numpy as np

from swarm_sona.engine import inputs
from swarm_sona.engine.config import SONAConfig
from swarm_sona.engine.errors import EngineError
from swarm_sona.learning.errors import ModelError
from swarm_sona.learning.ewc import EWC
from swarm_sona.learning.heads import TaskHead, softmax_cross_entropy
from swarm_sona.learning.model import SONAModel
from swarm_sona.learning.optim import Adam, clip_grad_norm

__all__ = ["Finetuner", "FinetuneResult"]

Embed = Callable[[list[str]], np.ndarray]


class FinetuneResult(TypedDict):
    """What :meth:`Finetuner.finetune` did (``n``, ``loss``, ``train_acc`` over all examples)."""

    task: str
    n: int
    epochs: int
    steps: int
    loss: float
    train_acc: float
    ewc_penalty: float
    classes: list[Any]
    duration_s: float


def _check_int(v: Any, name: str, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise EngineError(f"finetune: {name} must be an integer >= {low}, got {v!r}")
    return v


class Finetuner:
    """Fine-tuning and prediction through task heads (see module docs)."""

    def __init__(self, config: SONAConfig, model: SONAModel, ewc: EWC, embed: Embed) -> None:
        self.config = config
        self.model = model
        self.ewc = ewc
        self.embed = embed
        self.history: list[dict[str, Any]] = []

    def _groups(self, task: str, examples: Any, replay: Mapping[str, Any] | None) -> list[tuple[str, np.ndarray, list[Any]]]:
        if not isinstance(task, str) or not task:
            raise EngineError(f"finetune: task must be a non-empty string, got {task!r}")
        if replay is not None and not isinstance(replay, Mapping):
            raise EngineError(f"finetune: replay must be a mapping task -> examples, got {type(replay).__name__}")
        dim = self.config.dim
        groups = [(task, *inputs.examples(examples, self.embed, dim, "finetune"))]
        for rt, rex in (replay or {}).items():
            if not isinstance(rt, str) or not rt:
                raise EngineError(f"finetune: replay task names must be non-empty strings, got {rt!r}")
            if rt == task:
                raise EngineError(f"finetune: replay names the task being trained ({task!r}); pass its examples once")
            groups.append((rt, *inputs.examples(rex, self.embed, dim, f"finetune: replay[{rt!r}]")))
        return groups

    def finetune(self, task: str, examples: Any, epochs: int = 5, *, lr: float | None = None,
                 batch_size: int | None = None, seed: int | None = None, replay: Mapping[str, Any] | None = None,
                 rng: np.random.Generator) -> FinetuneResult:
        """Train task head ``task`` + BaseLoRA (see :meth:`swarm_sona.engine.sona.SONA.finetune`);
        ``rng`` is used when ``seed`` is None."""
        t0 = time.perf_counter()
        _check_int(epochs, "epochs", 1)
        bs = _check_int(self.config.batch_size if batch_size is None else batch_size, "batch_size", 1)
        lr = self.config.background_lr if lr is None else lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise EngineError(f"finetune: lr must be a finite number > 0, got {lr!r}")
        groups = self._groups(task, examples, replay)
        heads, ys = [], []
        for name, _, labels in groups:
            classes = list(dict.fromkeys(labels))
            if all(isinstance(c, int) for c in classes) or all(isinstance(c, str) for c in classes):
                classes = sorted(classes)
            heads.append(self.model.ensure_task_head(name, classes))
            ys.append(heads[-1].encode(labels))
        X = np.concatenate([g[1] for g in groups]) if len(groups) > 1 else groups[0][1]
        y = np.concatenate(ys) if len(ys) > 1 else ys[0]
        G = np.concatenate([np.full(len(g[2]), i) for i, g in enumerate(groups)])
        params = self.model.parameters(("base", *(f"task:{name}" for name, _, _ in groups)))
        opt, r = Adam(lr), rng if seed is None else np.random.default_rng(seed)
        n, steps, loss_sum, correct, pens = X.shape[0], 0, 0.0, 0, []
        for ep in range(epochs):
            order = r.permutation(n)
            loss_sum, correct = 0.0, 0
            for s in range(0, n, bs):
                b = order[s:s + bs]
                loss, hits, pen = self._step(X[b], y[b], G[b], heads, params, opt, r, ep == epochs - 1)
                loss_sum += loss
                correct += hits
                pens.append(pen)
                steps += 1
        res: FinetuneResult = {"task": task, "n": n, "epochs": epochs, "steps": steps, "loss": loss_sum / n,
                               "train_acc": correct / n, "ewc_penalty": float(np.mean(pens)) if pens else 0.0,
                               "classes": list(heads[0].classes), "duration_s": time.perf_counter() - t0}
        self.history.append({k: v for k, v in res.items() if k != "classes"})
        return res

    def _step(self, Xb: np.ndarray, yb: np.ndarray, gb: np.ndarray, heads: list[TaskHead],
              params: dict[str, np.ndarray], opt: Adam, rng: np.random.Generator,
              last_epoch: bool) -> tuple[float, int, float]:
        """One Adam step on a mini-batch (each row through its group's head); returns
        (summed loss, correct predictions in the last epoch, EWC++ penalty)."""
        model = self.model
        out, cache = model.forward_batch(Xb, training=True, rng=rng)
        hm = out["hidden"]
        g_hidden = np.zeros_like(hm)
        grads: dict[str, np.ndarray] = {}
        loss_sum, correct = 0.0, 0
        for g in np.unique(gb):
            rows = np.flatnonzero(gb == g)
            head = heads[g]
            logits = hm[rows] @ head.W.T + head.b
            loss, g_logits, probs = softmax_cross_entropy(logits, yb[rows])
            g_logits *= len(rows) / len(gb)  # mean over the whole batch
            grads[f"task.{head.name}.W"] = (g_logits.T @ hm[rows]).astype(np.float32)
            grads[f"task.{head.name}.b"] = g_logits.sum(axis=0).astype(np.float32)
            g_hidden[rows] = g_logits @ head.W
            loss_sum += loss * len(rows)
            if last_epoch:
                correct += int(np.sum(np.argmax(probs, axis=1) == yb[rows]))
        gm = model.backward(cache, {"hidden": g_hidden})
        grads.update({k: gm[k] for k in params if k in gm})
        self.ewc.observe(grads, detect=False)
        pen, pg = self.ewc.penalty(params)
        for k, v in pg.items():
            grads[k] = grads[k] + v if k in grads else v
        clip_grad_norm(grads, self.config.grad_clip)
        opt.step(params, grads)
        model.touch()
        return loss_sum, correct, pen

    def predict_proba(self, task: str, X: Any) -> np.ndarray:
        """Class probabilities (n, C) of task head ``task`` (columns: :meth:`classes`)."""
        try:
            head = self.model.task_head(task)
        except ModelError as exc:
            raise EngineError(f"predict: {exc}") from None
        E, _ = inputs.inputs(X, self.embed, self.config.dim, "predict")
        if E.shape[0] == 0:
            return np.empty((0, len(head.classes)), np.float32)
        logits = self.model.micro.apply(self.model.encode(E)) @ head.W.T + head.b
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, task: str, X: Any) -> Any:
        """Labels from task head ``task``: one label for one input (text or vector), else a list."""
        p = self.predict_proba(task, X)
        labels = self.model.task_heads[task].decode(np.argmax(p, axis=1))
        single = isinstance(X, str) or (isinstance(X, np.ndarray) and X.ndim == 1)
        return labels[0] if single else labels

    def classes(self, task: str) -> list[Any]:
        """Labels of task head ``task`` in column order."""
        try:
            return list(self.model.task_head(task).classes)
        except ModelError as exc:
            raise EngineError(str(exc)) from None
