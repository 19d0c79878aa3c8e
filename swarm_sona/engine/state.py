"""Engine state in and out: adapter/head deltas for consensus, and whole-engine checkpoints.

* :func:`export_delta` / :func:`import_state` move adapter, head and Fisher state between
  agents and the coordinator (everything validated before anything changes).
* :func:`state_dict` / :func:`load_state_dict` are the one way an engine becomes plain data and
  back; ``SONA.save`` / ``SONA.load`` write and read them as atomic, checksummed checkpoint
  files of kind ``sona-engine``.
* :class:`PeriodicCheckpoints`: ``ewc.checkpointing`` with ``checkpoint_path`` writes a
  checkpoint every ``checkpoint_every`` learning steps.

Schema of the ``sona-engine`` body (:data:`ENGINE_SCHEMA`): 2 stores each layer's frozen base
as it is kept (:meth:`~swarm_sona.learning.model.SONAModel.state_dict`): float
``{"scheme": None, "W", "b"}`` or, with ``lora.quantization``, the codes and per-group scales
(``{"scheme", "shape", "group_size", "codes", "absmax", "b"}``), restored bit-exactly (a 4bit
engine's checkpoint no longer holds a float32 copy of its base, and a restore does not
re-quantise). Schema 1 (0.1.0) stored every base as float32 ``{"W", "b"}``: its migration marks
each ``"scheme": None``, and such a base is re-quantised on load under the engine's
``lora.quantization`` as before. Measured (``SONA.save`` of a fresh engine, dim 1536,
``mlp_hidden`` 1536, 2026-12-02): float 56.9 MB, 8bit 15.3 MB (26.9 %), 4bit 8.2 MB (14.5 %);
before schema 2 a 4bit or 8bit checkpoint was as big as the float one.

Example:
    >>> from swarm_sona.engine.config import SONAConfig
    >>> from swarm_sona.engine.sona import SONA
    >>> from swarm_sona.engine.state import state_dict, load_state_dict
    >>> a = SONA({"dim": 16, "mlp_hidden": 16, "background_every": 0})
    >>> _ = a.learn({"task": "add numbers", "output": "a + b", "reward": 1.0})
    >>> b = SONA(SONAConfig.from_dict(state_dict(a)["config"]))
    >>> load_state_dict(b, state_dict(a))
    >>> b.n_learned, b.forward(b.embed("x"))["value"] == a.forward(a.embed("x"))["value"]
    (1, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm_sona.core import codec
from swarm_sona.engine.errors import CHECKPOINT_KIND, EngineError
from swarm_sona.engine.replay import Replay
from swarm_sona.learning.errors import ModelError
from swarm_sona.learning.ewc import EWCError
from swarm_sona.learning.lora import LoRAError
from swarm_sona.learning.optim import OptimizerError

if TYPE_CHECKING:
    from swarm_sona.engine.sona import SONA

__all__ = ["export_delta", "import_state", "state_dict", "load_state_dict", "PeriodicCheckpoints", "ENGINE_SCHEMA"]

#: schema version of the ``sona-engine`` checkpoint body (module docs)
ENGINE_SCHEMA = 2
codec.register_schema(CHECKPOINT_KIND, ENGINE_SCHEMA)


@codec.register_migration(CHECKPOINT_KIND, 1)
def _float_base_marked(body: Any) -> Any:
    """Schema 1 -> 2: every base of a schema-1 body is float32 ``{"W", "b"}``; mark it
    ``"scheme": None`` (the layout schema 2 names a float base with)."""
    model = body.get("model") if isinstance(body, dict) else None
    base = model.get("base") if isinstance(model, dict) else None
    if isinstance(base, dict):
        for entry in base.values():
            if isinstance(entry, dict):
                entry.setdefault("scheme", None)
    return body

_DELTA_KEYS = {"adapters", "heads", "fisher", "n_trajectories", "n_since_sync", "version"}
_TRAINED = ("base", "value", "router", "tasks")


def _big_ints_to_str(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _big_ints_to_str(v) for k, v in obj.items()}
    if isinstance(obj, int) and not isinstance(obj, bool) and not -(2 ** 63) <= obj < 2 ** 64:
        return {"__bigint__": str(obj)}
    return obj


def _str_to_big_ints(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__bigint__"}:
            return int(obj["__bigint__"])
        return {k: _str_to_big_ints(v) for k, v in obj.items()}
    return obj


# ---- consensus deltas ----------------------------------------------------------------------
def export_delta(sona: SONA) -> dict[str, Any]:
    """``{"adapters": {module | "micro": {"A", "B"}}, "heads", "fisher": {param: arr},
    "n_trajectories", "n_since_sync", "version"}`` (copies); ``fisher`` is the running EWC++
    Fisher of the parameters the background loop / finetune train."""
    m = sona.model
    adapters = {k: ad.state_dict() for k, ad in m.base_adapters().items()}
    adapters["micro"] = m.micro.state_dict()
    known = m.parameters(_TRAINED)
    fisher = {k: f for k, f in sona.ewc.importance().items() if k in known and f.shape == known[k].shape}
    c = sona.counters
    return {"adapters": adapters, "heads": m.heads_state(), "fisher": fisher,
            "n_trajectories": c.n_learned, "n_since_sync": c.n_since_sync, "version": c.version}


def _stage_adapters(sona: SONA, adapters: Any) -> list[tuple[Any, Any]]:
    if not isinstance(adapters, Mapping):
        raise EngineError("import_state: adapters must be a mapping")
    targets = dict(sona.model.base_adapters())
    targets["micro"] = sona.model.micro
    staged = []
    for name, st in adapters.items():
        if name not in targets:
            raise EngineError(f"import_state: unknown adapter {name!r} (have {sorted(targets)})")
        probe = targets[name]
        try:  # validate on a throw-away copy
            tmp = type(probe).from_dict(probe.to_dict(), kernels=sona.kernels)
            tmp.load_state_dict(st, where=f"import_state: adapters.{name}")
        except LoRAError as exc:
            raise EngineError(str(exc)) from None
        staged.append((probe, tmp))
    return staged


def _complete_heads(sona: SONA, heads: Any) -> dict[str, Any]:
    """Task heads imported without ``classes`` keep the classes of the existing head."""
    if not isinstance(heads, Mapping):
        raise EngineError("import_state: heads must be a mapping")
    out = dict(heads)
    tasks = out.get("tasks")
    if tasks:
        if not isinstance(tasks, Mapping):
            raise EngineError("import_state: heads.tasks must be a mapping")
        full = {}
        for t, hd in tasks.items():
            hd = dict(hd) if isinstance(hd, Mapping) else hd
            if isinstance(hd, dict) and "classes" not in hd:
                if t not in sona.model.task_heads:
                    raise EngineError(f"import_state: heads.tasks.{t}: unknown task and no classes given")
                hd["classes"] = list(sona.model.task_heads[t].classes)
            full[t] = hd
        out["tasks"] = full
    return out


def _check_fisher(sona: SONA, fisher: Mapping[str, Any]) -> None:
    params = sona.model.parameters(_TRAINED)
    for k, f in fisher.items():
        if k not in params or np.shape(f) != params[k].shape:
            raise EngineError(f"import_state: fisher entry {k!r} does not match a parameter")
        if not np.all(np.isfinite(f)) or np.any(np.asarray(f) < 0):
            raise EngineError(f"import_state: fisher entry {k!r} must be finite and >= 0")


def import_state(sona: SONA, merged: Mapping[str, Any]) -> None:
    """Install a merged state (layout of :func:`export_delta`; any subset of adapters and
    heads). A ``fisher`` entry anchors EWC++ at the imported parameters with that Fisher.
    Everything is validated before anything changes."""
    if not isinstance(merged, Mapping):
        raise EngineError(f"import_state: expected a mapping, got {type(merged).__name__}")
    unknown = set(merged) - _DELTA_KEYS
    if unknown:
        raise EngineError(f"import_state: unknown key(s) {sorted(unknown)}")
    m = sona.model
    staged = _stage_adapters(sona, merged.get("adapters") or {})
    heads = merged.get("heads")
    heads = _complete_heads(sona, heads) if heads else None
    fisher = merged.get("fisher") or {}
    version = merged.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise EngineError(f"import_state: version must be an integer, got {version!r}")
    if fisher:
        _check_fisher(sona, fisher)
    if heads:
        try:
            m.load_heads(heads, where="import_state: heads")
        except ModelError as exc:
            raise EngineError(str(exc)) from None
    for probe, tmp in staged:
        probe.A[...] = tmp.A
        probe.B[...] = tmp.B
        probe.touch()
    m.touch()
    sona.activations.clear()
    if fisher:
        sona.ewc.set_anchor(m.parameters(_TRAINED), fisher, task="imported")
    if version is not None:
        sona.counters.version = version
    sona.counters.n_since_sync = 0


# ---- whole-engine state ----------------------------------------------------------------------
def _config_for_checkpoint(sona: SONA) -> dict[str, Any]:
    cfg = sona.config.to_dict()
    rb = cfg.get("reasoning_bank")
    if isinstance(rb, dict) and rb.get("api_key"):
        rb["api_key"] = None  # secrets never go into checkpoints
    return cfg


def state_dict(sona: SONA) -> dict[str, Any]:
    """Everything a checkpoint holds (plain data + arrays)."""
    st: dict[str, Any] = {
        "format": CHECKPOINT_KIND, "config": _config_for_checkpoint(sona), "model": sona.model.state_dict(),
        "optimizer": sona.optimizer.state_dict(), "replay": sona.replay.state(sona.dim),
        "pending": [t.id for t in sona.pending], "counters": sona.counters.to_dict(),
        "rng": _big_ints_to_str(sona.rng.bit_generator.state),
        "embedder": getattr(sona.embedder, "name", type(sona.embedder).__name__),
    }
    if sona.config.ewc.checkpointing:
        st["ewc"] = sona.ewc.state_dict()
    if sona.router is not None and hasattr(sona.router, "state_dict"):
        st["router"] = sona.router.state_dict()
    return st


def load_state_dict(sona: SONA, st: Mapping[str, Any]) -> None:
    """Install :func:`state_dict`'s output into a freshly built engine of the same config
    (the replay buffer is checked before anything changes)."""
    replay = Replay.trajectories_from_state(st.get("replay", []), sona.dim)
    for i, t in enumerate(replay):
        if t.dim != sona.dim:
            raise EngineError(f"replay trajectory {i} has dimension {t.dim}, expected {sona.dim}")
    try:
        sona.model.load_state_dict(st["model"])
        if "ewc" in st:
            sona.ewc.load_state_dict(st["ewc"])
        sona.optimizer.load_state_dict(st["optimizer"])
    except (ModelError, EWCError, OptimizerError) as exc:
        raise EngineError(str(exc)) from None
    sona.model.touch()
    sona.activations.clear()
    for t in replay:
        sona.replay.append(t)
    by_id = {t.id: t for t in replay}
    sona.pending.extend(by_id[i] for i in st.get("pending", []) if i in by_id)
    sona.counters.load(st.get("counters", {}))
    if "rng" in st:
        sona.rng.bit_generator.state = _str_to_big_ints(st["rng"])
    if "router" in st and sona.router is not None and hasattr(sona.router, "load_state_dict"):
        sona.router.load_state_dict(st["router"])


def save(sona: SONA, path: str | Path) -> None:
    """Write an atomic, checksummed checkpoint (the previous one is kept as ``path.prev``)."""
    codec.write_checkpoint(path, state_dict(sona), kind=CHECKPOINT_KIND)


class PeriodicCheckpoints:
    """``ewc.checkpointing``: a checkpoint at ``checkpoint_path`` every ``checkpoint_every``
    learning steps (learned trajectories and finetune steps). Off when checkpointing is false,
    the path is None or the period is 0.

    Example:
        >>> from swarm_sona.engine.config import SONAConfig
        >>> PeriodicCheckpoints(SONAConfig(checkpoint_path=None)).active
        False
    """

    def __init__(self, config: Any) -> None:
        self.every = int(config.checkpoint_every)
        self.path = None if config.checkpoint_path is None else Path(config.checkpoint_path)
        self.active = bool(config.ewc.checkpointing and self.path is not None and self.every > 0)
        self.steps = 0
        self.written = 0

    def tick(self, sona: SONA, n: int = 1) -> bool:
        """Count ``n`` learning steps; write a checkpoint when a period completes."""
        if not self.active:
            return False
        before = self.steps // self.every
        self.steps += n
        if self.steps // self.every == before:
            return False
        assert self.path is not None
        save(sona, self.path)
        self.written += 1
        return True
