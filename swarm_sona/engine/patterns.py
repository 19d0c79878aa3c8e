"""Pattern storage and retrieval through the engine's ReasoningBank, in the guide's shapes.

:func:`bank_from_config` builds the bank ``reasoning_bank`` describes (enabled, backend,
dimensions, similarity_threshold, cache_size, persist_to_disk) with the engine's embedder.
:class:`PatternAccess` stores and retrieves patterns (positional/keyword arguments, or one
mapping with the guide's camelCase or snake_case keys), stamping the engine's ``agent_id`` on
what it stores, and merges a stored pattern with a new task (:meth:`PatternAccess.apply`).

Example:
    >>> import tempfile
    >>> from swarm_sona.engine.sona import SONA
    >>> sona = SONA({"agentId": "coder-1", "reasoningBank": {"enabled": True, "dimensions": 32,
    ...                                                          "persistToDisk": False}})
    >>> pid = sona.storePattern({"task": "sort a list", "input": "xs", "output": "sorted(xs)",
    ...                          "reward": 0.9, "success": True})
    >>> [p.agent_id for p in sona.retrievePatterns({"task": "sort a list", "k": 1, "sourceAgents": ["coder-1"]})]
    ['coder-1']
    >>> sona.bank.close()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from swarm_sona.bank import Pattern, ReasoningBank
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.embedding.embedders import Embedder
from swarm_sona.engine import inputs
from swarm_sona.engine.errors import EngineError

__all__ = ["PatternAccess", "AppliedPattern", "bank_from_config", "STORE_KEYS", "RETRIEVE_KEYS"]

STORE_KEYS = ("task", "input", "output", "reward", "success", "metadata", "agent_id", "task_type", "vector",
              "title", "description")
RETRIEVE_KEYS = ("task", "query", "k", "vector", "min_reward", "success", "source_agents", "task_type", "metadata",
                 "source", "similarity_threshold", "mmr", "score_weights", "with_vectors", "exact")


class AppliedPattern(TypedDict):
    """A stored pattern's guidance merged with a new task (see :meth:`PatternAccess.apply`)."""

    task: str
    pattern_id: str
    pattern_task: str
    guidance: str
    prompt: str
    similarity: float
    expected_reward: float
    embedding: np.ndarray


def bank_from_config(cfg: ReasoningBankConfig, embedder: Embedder) -> ReasoningBank | None:
    """The ReasoningBank ``cfg`` describes, embedding with ``embedder``; None when disabled.

    Example:
        >>> from swarm_sona.embedding.embedders import HashingEmbedder
        >>> bank_from_config(ReasoningBankConfig(enabled=False), HashingEmbedder(16)) is None
        True
    """
    if not cfg.enabled:
        return None
    return ReasoningBank(cfg, embedder=embedder)


class PatternAccess:
    """The engine's pattern calls over whatever bank ``get_bank()`` returns (see module docs)."""

    def __init__(self, get_bank: Callable[[], Any], dim: int, agent_id: str | None,
                 embed: Callable[[str], np.ndarray], apply: Callable[[np.ndarray], np.ndarray]) -> None:
        self.get_bank = get_bank
        self.dim = dim
        self.agent_id = agent_id
        self.embed = embed
        self.micro_apply = apply

    def need_bank(self, what: str) -> Any:
        """The attached bank, or EngineError saying how to attach one / that its dimension differs."""
        bank = self.get_bank()
        if bank is None:
            raise EngineError(f"{what} needs a ReasoningBank: SONA(config, bank=ReasoningBank(...)) or "
                              "config reasoningBank: {enabled: true, ...}")
        if getattr(bank, "dim", self.dim) != self.dim:
            raise EngineError(f"{what}: the bank holds {bank.dim}-d vectors, the engine is {self.dim}-d")
        return bank

    def store(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """Store one pattern: ``(task, input, output, reward, success, metadata, agent_id)``
        positionally, or one mapping / keywords with :data:`STORE_KEYS` (camelCase too)."""
        if args and isinstance(args[0], Mapping):
            kw = inputs.guide_args("store_pattern", args, kwargs, STORE_KEYS)
        else:
            if len(args) > 7:
                raise EngineError(f"store_pattern: at most 7 positional arguments, got {len(args)}")
            kw = inputs.guide_args("store_pattern", (), {**dict(zip(STORE_KEYS[:len(args)], args, strict=True)), **kwargs}, STORE_KEYS)
        missing = [k for k in ("task", "input", "output", "reward", "success") if k not in kw]
        if missing:
            raise EngineError(f"store_pattern: missing {', '.join(missing)}")
        if kw.get("agent_id") is None:
            kw["agent_id"] = self.agent_id
        bank = self.need_bank("store_pattern")
        return str(bank.store_pattern(kw.pop("task"), kw.pop("input"), kw.pop("output"), kw.pop("reward"),
                                      kw.pop("success"), kw.pop("metadata", None), kw.pop("agent_id"), **kw))

    def store_learned(self, raw: Mapping[str, Any], t: Trajectory) -> list[str]:
        """A guide-form ``learn({task, output, reward})`` (no embedding given) with an output is
        also stored as a pattern when a bank is attached (``input`` defaults to the task)."""
        if self.get_bank() is None or "embedding" in raw or not t.output:
            return []
        inp = raw.get("input") or t.task
        return [self.store((), {"task": t.task, "input": inp, "output": t.output, "reward": t.reward,
                                "success": t.success, "metadata": t.metadata or None, "agent_id": t.agent_id,
                                "task_type": t.task_type, "vector": t.embedding})]

    def retrieve(self, query: Any, k: Any, filters: Mapping[str, Any]) -> list[Pattern]:
        """Patterns similar to a task text or vector; or one mapping / keywords with
        :data:`RETRIEVE_KEYS` (``task`` is the query text; camelCase too)."""
        if isinstance(query, Mapping):
            kw = inputs.guide_args("retrieve_patterns", (query,), filters, RETRIEVE_KEYS)
        else:
            kw = inputs.guide_args("retrieve_patterns", (), filters, RETRIEVE_KEYS)
            if query is not None:
                kw["query"] = query
        if k is not None:
            if "k" in kw:
                raise EngineError("retrieve_patterns: k given twice")
            kw["k"] = k
        if "task" in kw:
            if kw.get("query") is not None:
                raise EngineError("retrieve_patterns: give the query as task or query, not both")
            kw["query"] = kw.pop("task")
        q, kk = kw.pop("query", None), kw.pop("k", None)
        return list(self.need_bank("retrieve_patterns").retrieve_patterns(q, kk, **kw))

    def _resolve(self, pattern: Any) -> Pattern:
        if isinstance(pattern, str):
            found = self.need_bank("apply").get(pattern)
            if found is None:
                raise EngineError(f"apply: no pattern {pattern!r} in the bank")
            return found  # type: ignore[no-any-return]
        if isinstance(pattern, Mapping):
            if "id" not in pattern or "task" not in pattern:
                raise EngineError("apply: a pattern mapping needs at least 'id' and 'task'")
            vec = pattern.get("vector")
            return Pattern.from_payload(pattern["id"], pattern,
                                        vector=None if vec is None else np.asarray(vec, np.float32))
        if not isinstance(pattern, Pattern):
            raise EngineError(f"apply: expected a Pattern, its dict or its id, got {type(pattern).__name__}")
        return pattern

    def apply(self, pattern: Any, task: Any) -> AppliedPattern:
        """A stored pattern (a Pattern, its dict, or its id) merged with a new task: ``prompt``
        is the guidance followed by the task, ``similarity`` the cosine of the task's embedding
        and the pattern's vector, ``expected_reward`` the pattern's reward scaled by it (>= 0),
        ``embedding`` the task's embedding with MicroLoRA applied; the bank records the use."""
        if not isinstance(task, str) or not task.strip():
            raise EngineError("apply(pattern, task): task must be a non-empty string")
        pattern = self._resolve(pattern)
        e = self.embed(task)
        pv = pattern.vector if pattern.vector is not None else self.embed(pattern.task)
        pv = inputs.vector(pv, self.dim, "pattern vector")
        ne, npv = float(np.linalg.norm(e)), float(np.linalg.norm(pv))
        sim = float(e @ pv) / (ne * npv) if ne > 0 and npv > 0 else 0.0
        guidance = pattern.guidance()
        bank = self.get_bank()
        if bank is not None:
            bank.mark_used(pattern.id)
        return {"task": task, "pattern_id": pattern.id, "pattern_task": pattern.task, "guidance": guidance,
                "prompt": f"{guidance}\n\nNew task: {task}", "similarity": sim,
                "expected_reward": float(pattern.reward) * max(0.0, sim), "embedding": self.micro_apply(e)}
