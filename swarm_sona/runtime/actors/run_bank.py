"""The run's bank as an agent's executor sees it: retrieve by text, store outcomes.

The agent's pipeline reaches the run's ReasoningBank through its pattern store (the swarm's
bank actor by name, or a :class:`~swarm_sona.runtime.actors.bank.PatternStore` over a Qdrant
server). :class:`RunBank` offers that same store to code that runs *inside* the executor, such
as the built-in ``retrieve`` / ``store`` hook actions of agent definitions
(:mod:`swarm_sona.app.hook_actions`): the runtime cannot import the app, so the pipeline offers
the bank to any executor whose class defines ``use_run_bank(bank)`` (:func:`offer_run_bank`).

Retrieval reads what every agent stored (only this agent's patterns when the swarm's bank is
not shared, as for the pipeline's own retrieval); a store is durable when the call returns (the
bank actor's group commit) and goes through the bank's retention and redaction like any store.

Example:
    >>> from swarm_sona.runtime.actors.bank import BankActor
    >>> bank = RunBank(BankActor({"persist_to_disk": False}, dim=64), agent_id="coder-1")
    >>> ids = bank.store([{"task": "parse the config", "output": "use a tokenizer", "reward": 0.9, "success": True}])
    >>> [(p["output"], p["agent_id"]) for p in bank.retrieve("parse the config", 1)]
    [('use a tokenizer', 'coder-1')]
    >>> class Wants:
    ...     def use_run_bank(self, bank): self.bank = bank
    >>> ex = Wants(); offer_run_bank(ex, bank), ex.bank is bank
    (True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swarm_sona.runtime.actors.bank import PatternStore
from swarm_sona.runtime.actors.calls import call

__all__ = ["RunBank", "offer_run_bank"]

_STORED = ("task", "input", "output", "reward", "success", "agent_id", "task_type", "metadata")


class RunBank:
    """The run's bank through the agent's pattern ``store`` (kept as :attr:`peer`; module docs). ``agent_id`` marks what
    :meth:`store` writes; ``shared`` False limits :meth:`retrieve` to this agent's patterns;
    ``timeout_s`` bounds each call to the bank actor. Picklable (the store is a name or an object)."""

    def __init__(self, store: Any, *, agent_id: str, shared: bool = True, timeout_s: float = 60.0) -> None:
        if store is None:
            raise ValueError("RunBank: store is None (this swarm has no bank)")
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError(f"RunBank: agent_id must be a non-empty string, got {agent_id!r}")
        if not timeout_s > 0:
            raise ValueError(f"RunBank: timeout_s must be > 0, got {timeout_s!r}")
        self.peer = store
        self.agent_id = agent_id
        self.shared = bool(shared)
        self.timeout_s = float(timeout_s)

    def retrieve(self, text: str, k: int, *, min_reward: float | None = None,
                 success: bool | None = None) -> list[dict[str, Any]]:
        """The ``k`` best patterns for ``text`` (best first), as dicts with at least ``id, score,
        task, output, reward, success, agent_id, task_type``; filters as ``ReasoningBank.retrieve_patterns``."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"RunBank.retrieve: text must be a non-empty string, got {text!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"RunBank.retrieve: k must be an integer >= 1, got {k!r}")
        filters = {"min_reward": min_reward, "success": success,
                   "source_agents": None if self.shared else [self.agent_id]}
        if isinstance(self.peer, PatternStore):   # a Qdrant server opened in this process
            return [p.to_dict() for p in self.peer.bank.retrieve_patterns(text, k, **filters)]
        return list(call(self.peer, "retrieve", text, k, timeout=self.timeout_s, **filters))

    def store(self, items: Sequence[Mapping[str, Any]]) -> list[str]:
        """Store pattern items (``task``, ``output``, ``reward``, ``success``; optional ``input``,
        ``task_type``, ``metadata``; ``agent_id`` defaults to this agent's) in one durable call;
        returns the acknowledged ids. The bank embeds each task text."""
        records = []
        for i, it in enumerate(items):
            if not isinstance(it, Mapping) or "task" not in it:
                raise ValueError(f"RunBank.store: item {i} must be a mapping with a 'task', got {it!r}")
            rec = {key: it[key] for key in _STORED if key in it}
            rec.setdefault("agent_id", self.agent_id)
            records.append(rec)
        if not records:
            return []
        return list(call(self.peer, "store_batch", records, timeout=self.timeout_s))


def offer_run_bank(executor: Any, bank: RunBank) -> bool:
    """Hand ``bank`` to ``executor`` when its class defines ``use_run_bank`` (a wrapper that only
    forwards attributes does not count); returns whether it was taken."""
    use = getattr(type(executor), "use_run_bank", None)
    if not callable(use):
        return False
    use(executor, bank)
    return True
