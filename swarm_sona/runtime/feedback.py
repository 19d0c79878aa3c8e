"""Learning from a task that several agents executed and the swarm agreed on: each agent's
result becomes a trajectory for that agent, rewarded by agreement with the consensus answer
unless it states its own reward (``SwarmSONA.learn_from_swarm_execution``).

Example:
    >>> import numpy as np
    >>> from swarm_sona.core.executor import Task
    >>> per = consensus_trajectories(Task(text="2+2"), [{"agent_id": "a", "output": "4"},
    ...                              {"agent_id": "b", "output": "5"}], "4", np.zeros(4, np.float32), ["a", "b"])
    >>> [(a, trs[0]["reward"], trs[0]["success"]) for a, trs in per.items()]
    [('a', 1.0, True), ('b', 0.0, False)]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.core.executor import Task
from swarm_sona.core.trajectory import Trajectory

__all__ = ["consensus_trajectories", "parse_swarm_execution"]


def consensus_trajectories(task: Task, results: Sequence[Mapping[str, Any]], consensus: Any,
                           embedding: np.ndarray, agents: Collection[str]) -> dict[str, list[dict[str, Any]]]:
    """Agent id -> the trajectories (as dicts) of its results for ``task``.

    Each result (``agent_id``, ``output``, optional ``model``, ``reward``, ``success``) gives
    one trajectory; its reward is the given one, else 1.0 when its output equals ``consensus``
    (stripped) and 0.0 otherwise; ``success`` defaults to reward >= 0.5. A result naming an
    agent not in ``agents`` raises ``ValueError``.
    """
    per_agent: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(results):
        aid = r.get("agent_id")
        if not isinstance(aid, str) or aid not in agents:
            raise ValueError(f"result {i}: unknown agent_id {aid!r}; agents are {sorted(agents)}")
        out = str(r.get("output", ""))
        reward = r.get("reward")
        if reward is None:
            reward = 1.0 if consensus is not None and out.strip() == str(consensus).strip() else 0.0
        success = bool(r.get("success", reward >= 0.5))
        tr = Trajectory(task=task.text, embedding=embedding, model=r.get("model"), reward=float(reward),
                        success=success, agent_id=aid, task_type=task.task_type, output=out)
        per_agent.setdefault(aid, []).append(tr.to_dict())
    return per_agent


def parse_swarm_execution(request: Any, consensus: Any) -> tuple[Any, Sequence[Mapping[str, Any]], Any]:
    """``(task, results, consensus)`` of the guide's ``{task, results, consensus}`` mapping.

    Example:
        >>> parse_swarm_execution({"task": "t", "results": [{"agent_id": "a", "output": "x"}], "consensus": "x"}, None)
        ('t', [{'agent_id': 'a', 'output': 'x'}], 'x')
    """
    if not isinstance(request, Mapping) or "results" not in request:
        raise ValueError("learn_from_swarm_execution: give (task, results, consensus) or the guide's mapping "
                         "{task, results, consensus}; results are missing")
    unknown = set(request) - {"task", "results", "consensus"}
    if unknown:
        raise ValueError(f"learn_from_swarm_execution: unknown key(s) {sorted(unknown)}; known: task, results, "
                         "consensus")
    if "task" not in request:
        raise ValueError("learn_from_swarm_execution: the mapping needs a 'task'")
    results = request["results"]
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise ValueError(f"learn_from_swarm_execution: results must be a list of mappings, got {type(results).__name__}")
    return request["task"], results, request.get("consensus", consensus)
