"""The typed results of :class:`~swarm_sona.runtime.swarm.SwarmSONA`: dicts with known keys
(TypedDicts), so a driver reads ``r["model"]`` as before and a type checker knows the keys.

Example:
    >>> from swarm_sona.runtime.results import SyncSummary, TaskResult
    >>> s: SyncSummary = {"syncs": 3, "version": 2}
    >>> r: TaskResult = {"task_id": "t1", "agent_id": "agent-0", "model": "small", "success": True,
    ...                  "reward": 1.0, "cost_usd": 0.001, "patterns": 1, "task_type": None}
    >>> sorted(TaskResult.__required_keys__)[:3], s["version"]
    (['agent_id', 'cost_usd', 'model'], 2)
"""

from typing import Any, NotRequired, TypedDict

__all__ = ["TaskResult", "SyncSummary", "SwarmExecutionResult", "ConsolidateResult", "SwarmStats"]


class TaskResult(TypedDict):
    """One task's result as :meth:`SwarmSONA.run` yields it."""

    task_id: str
    agent_id: str | None
    model: str | None
    success: bool
    reward: float
    cost_usd: float                      # every attempt's cost (retry_with_upgrade)
    patterns: int                        # patterns retrieved for it
    task_type: str | None
    learn_s: NotRequired[float]          # its instant-loop step
    latency_s: NotRequired[float]
    retrieve_s: NotRequired[float]       # its batch's retrieval call
    batch_id: NotRequired[str]
    batch_n: NotRequired[int]
    attempts: NotRequired[list[str]]     # models tried, in order (retry_with_upgrade)
    hook_errors: NotRequired[list[str]]
    error: NotRequired[str]              # why it failed (with error_kind)
    error_kind: NotRequired[str]         # embed, retrieve, execute, hook, learn, lost, or an infra kind
    infra: NotRequired[bool]             # the endpoint failed, not the model


class SyncSummary(TypedDict):
    """What :meth:`SwarmSONA.sync` did: the swarm's sync count and the merged version the agents
    installed (None for gossip or without ``wait``)."""

    syncs: int
    version: int | None


class SwarmExecutionResult(TypedDict):
    """:meth:`SwarmSONA.learn_from_swarm_execution`: the agents that learned, each one's learn
    result, the pattern ids stored for the consensus answer, the sync that followed (or None)."""

    agents: list[str]
    learned: list[Any]
    stored: list[str]
    sync: SyncSummary | None


class ConsolidateResult(TypedDict):
    """:meth:`SwarmSONA.consolidate`: each agent's background-loop result and the sync after it."""

    agents: dict[str, Any]
    sync: SyncSummary | None


class SwarmStats(TypedDict, total=False):
    """:meth:`SwarmSONA.stats`: the swarm's counters and every actor's stats."""

    tasks: int
    successes: int
    success_rate: float
    batches: int
    retried_batches: int
    failed_tasks: int
    undispatched_tasks: int
    syncs: int
    sync_errors: int
    cost_usd: float
    acked_patterns: int
    warnings: list[str]
    error_kinds: dict[str, int]          # failed tasks by stage
    errors_by_kind: dict[str, int]       # every error result by kind
    infra_stop: str | None               # why infrastructure failures stopped the run
    merge_ms: float | None
    topology: dict[str, Any]
    agents: dict[str, dict[str, Any]]    # agent id -> its stats (``state``: alive, restarting, ...)
    coordinators: dict[str, dict[str, Any]]
    bank: dict[str, Any] | None
    checkpoint_dir: str | None
    params: dict[str, dict[str, Any]]    # with ``request_stats(params=True)``
