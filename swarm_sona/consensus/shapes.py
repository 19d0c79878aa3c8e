"""Merging agents whose adapters differ in shape (agents of different LoRA rank).

A swarm's agents may have different ``loraRank``: their adapter factors ``adapters/<m>/A``
(r x in) and ``adapters/<m>/B`` (out x r) then differ in shape, and no rule can average a rank-8
factor with a rank-16 one exactly. What can be merged exactly is: the same name with the same
shape. So when a round holds a *ranked* name (one under :data:`RANKED_PREFIX`) in more than one
shape, every shape of it is kept apart under a qualified name ``<name>@<shape>``
(``adapters/q/A@8x64``): agents of equal rank merge their adapters together, while names of one
shape everywhere (the heads, MicroLoRA, the LLM router's evidence) merge or pool across all
agents. :func:`holder_groups` splits a round into the groups of updates that hold the same names
(a rule merges each group), and an engine installing a merged state takes the qualified entries
of its own shapes (:func:`own_variants`). Names outside :data:`RANKED_PREFIX` must match in shape
as before.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.updates import AgentUpdate, MergeError
    >>> ups = [AgentUpdate(a, 1, {"adapters/q/A": np.zeros((r, 4)), "heads/v/w": np.ones(4)})
    ...        for a, r in (("w1", 2), ("w2", 2), ("q1", 4))]
    >>> mixed = mixed_names(ups)
    >>> sorted(qualify(ups[2], mixed).params)
    ['adapters/q/A@4x4', 'heads/v/w']
    >>> [(sorted(names), [u.agent_id for u in g]) for names, g in holder_groups([qualify(u, mixed) for u in ups])]
    [(['adapters/q/A@2x4'], ['w1', 'w2']), (['adapters/q/A@4x4'], ['q1']), (['heads/v/w'], ['w1', 'w2', 'q1'])]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.consensus.updates import AgentUpdate, MergeError

__all__ = ["RANKED_PREFIX", "qualified", "base_name", "mixed_names", "qualify", "qualify_state", "holder_groups",
           "own_variants", "apart_warning", "check_ranked"]

#: names whose shape follows the agent's LoRA rank (the only ones that may differ between agents)
RANKED_PREFIX = "adapters/"
_SEP = "@"


def qualified(name: str, shape: Sequence[int]) -> str:
    """``name`` qualified by a shape: ``adapters/q/A@8x64``.

    Example:
        >>> qualified("adapters/q/A", (8, 64))
        'adapters/q/A@8x64'
    """
    return f"{name}{_SEP}{'x'.join(str(int(d)) for d in shape)}"


def base_name(name: str) -> str:
    """The name without its shape qualifier.

    Example:
        >>> base_name("adapters/q/A@8x64"), base_name("heads/v/w")
        ('adapters/q/A', 'heads/v/w')
    """
    return name.split(_SEP, 1)[0]


def mixed_names(updates: Iterable[AgentUpdate], merged: Mapping[str, np.ndarray] | None = None) -> set[str]:
    """The ranked names held in more than one shape by ``updates`` and the last ``merged`` state
    (a name already qualified there stays mixed).

    Example:
        >>> u = [AgentUpdate(a, 0, {"adapters/q/B": np.zeros((4, r))}) for a, r in (("a", 2), ("b", 3))]
        >>> sorted(mixed_names(u)), mixed_names(u[:1])
        (['adapters/q/B'], set())
    """
    shapes: dict[str, set[tuple[int, ...]]] = {}
    mixed: set[str] = set()
    states = [u.params for u in updates] + ([merged] if merged else [])
    for st in states:
        for k, v in st.items():
            b = base_name(k)
            if b != k:
                mixed.add(b)
            if b.startswith(RANKED_PREFIX):
                shapes.setdefault(b, set()).add(tuple(np.shape(v)))
    return mixed | {k for k, s in shapes.items() if len(s) > 1}


def qualify_state(state: Mapping[str, Any] | None, mixed: set[str]) -> dict[str, Any] | None:
    """``state`` with every plain name of ``mixed`` qualified by its array's shape (None stays None).

    Example:
        >>> sorted(qualify_state({"adapters/q/A": np.zeros((2, 3)), "x": np.ones(1)}, {"adapters/q/A"}))
        ['adapters/q/A@2x3', 'x']
    """
    if state is None:
        return None
    return {(qualified(k, np.shape(v)) if k in mixed else k): v for k, v in state.items()}


def qualify(update: AgentUpdate, mixed: set[str]) -> AgentUpdate:
    """``update`` with the names of ``mixed`` qualified by shape (params, Fisher and evidence).

    Example:
        >>> sorted(qualify(AgentUpdate("a", 0, {"adapters/q/A": np.zeros((2, 3))}), {"adapters/q/A"}).params)
        ['adapters/q/A@2x3']
    """
    if not mixed or not any(k in mixed for k in update.params):
        return update
    out = update.with_params(qualify_state(update.params, mixed) or {})
    shapes = {k: np.shape(v) for k, v in update.params.items()}
    rename = {k: qualified(k, shapes[k]) if k in mixed else k for k in update.params}
    if update.fisher is not None:
        out.fisher = {rename.get(k, k): v for k, v in update.fisher.items()}
    if update.evidence is not None:
        out.evidence = {rename.get(k, k): v for k, v in update.evidence.items()}
    return out


def holder_groups(updates: Sequence[AgentUpdate], names: Iterable[str] | None = None
                  ) -> list[tuple[list[str], list[AgentUpdate]]]:
    """The round split by who holds what: ``(names, updates holding exactly those names)``, each
    group's names held by the same agents; ``names`` restricts the names considered. Groups are
    ordered by their first name.

    Example:
        >>> ups = [AgentUpdate("a", 0, {"x": np.ones(1), "y": np.ones(1)}), AgentUpdate("b", 0, {"x": np.ones(1)})]
        >>> [(n, [u.agent_id for u in g]) for n, g in holder_groups(ups)]
        [(['x'], ['a', 'b']), (['y'], ['a'])]
    """
    wanted = None if names is None else set(names)
    holders: dict[str, tuple[int, ...]] = {}
    for i, u in enumerate(updates):
        for k in u.params:
            if wanted is None or k in wanted:
                holders[k] = (*holders.get(k, ()), i)
    groups: dict[tuple[int, ...], list[str]] = {}
    for k in sorted(holders):
        groups.setdefault(holders[k], []).append(k)
    return sorted(((ks, [updates[i] for i in who]) for who, ks in groups.items()), key=lambda g: g[0][0])


def own_variants(params: Mapping[str, np.ndarray], own: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """What an engine with parameter shapes ``own`` (flat name -> shape) installs of a merged
    state: plain names as they are, and of each qualified name the variant of its own shape
    (under the plain name); variants of other shapes are left out.

    Example:
        >>> merged = {"adapters/q/A@2x3": np.zeros((2, 3)), "adapters/q/A@4x3": np.ones((4, 3)), "h": np.ones(1)}
        >>> {k: v.shape for k, v in own_variants(merged, {"adapters/q/A": (4, 3)}).items()}
        {'adapters/q/A': (4, 3), 'h': (1,)}
    """
    out: dict[str, np.ndarray] = {}
    for k, v in params.items():
        b = base_name(k)
        if b == k:
            out[k] = v
        elif b in own and tuple(own[b]) == tuple(np.shape(v)):
            out[b] = v
    return out


def apart_warning(groups: Sequence[tuple[list[str], list[AgentUpdate]]]) -> str | None:
    """The message saying whose adapters were merged apart (None when every holder of a ranked
    name merged with all the others).

    Example:
        >>> ups = [AgentUpdate(a, 0, {"adapters/q/A@" + s: np.zeros(1)}) for a, s in (("w1", "2x4"), ("q1", "4x4"))]
        >>> apart_warning(holder_groups(ups))
        "adapters of different shape (LoRA rank) are not merged together: ['w1'] (adapters/q/A@2x4) apart from ['q1'] (adapters/q/A@4x4); heads and router pooled across all"
    """
    ranked = [(ks, g) for ks, g in groups if any(base_name(k) != k for k in ks)]
    if len(ranked) < 2:
        return None
    parts = [f"{sorted(u.agent_id for u in g)} ({ks[0]})" for ks, g in ranked]
    return ("adapters of different shape (LoRA rank) are not merged together: " + " apart from ".join(parts)
            + "; heads and router pooled across all")


def check_ranked(update: AgentUpdate) -> None:
    """Refuse (:class:`~swarm_sona.consensus.updates.MergeError`, naming the entry) a push whose
    ranked entries are not LoRA factors: every ``adapters/...`` array must be 2-D, and a
    module's pair must agree on the rank (``adapters/<m>/A`` is (r, d_in), ``adapters/<m>/B`` is
    (d_out, r)). Only such entries may differ in shape between agents (merged apart).

    Example:
        >>> check_ranked(AgentUpdate("a", 0, {"adapters/q/A": np.zeros((2, 4)), "adapters/q/B": np.zeros((3, 2))}))
        >>> check_ranked(AgentUpdate("a", 0, {"adapters/q/A": np.zeros(8)}))
        Traceback (most recent call last):
        ...
        swarm_sona.consensus.updates.MergeError: update a: params['adapters/q/A'] has shape (8,): a LoRA adapter factor must be 2-D (A is (r, d_in), B is (d_out, r))
    """
    rank: dict[str, dict[str, tuple[int, ...]]] = {}
    for k, v in update.params.items():
        b = base_name(k)
        if not b.startswith(RANKED_PREFIX):
            continue
        shape = tuple(int(d) for d in np.shape(v))
        if len(shape) != 2:
            raise MergeError(f"update {update.agent_id}: params[{k!r}] has shape {shape}: a LoRA adapter factor "
                             "must be 2-D (A is (r, d_in), B is (d_out, r))")
        module, _, part = b.rpartition("/")
        if part in ("A", "B"):
            rank.setdefault(f"{module}{k[len(b):]}", {})[part] = shape
    for module, pair in rank.items():
        if "A" in pair and "B" in pair and pair["A"][0] != pair["B"][1]:
            raise MergeError(f"update {update.agent_id}: {module}: A has shape {pair['A']} (rank {pair['A'][0]}) but B "
                             f"has shape {pair['B']} (rank {pair['B'][1]}): A is (r, d_in), B is (d_out, r)")
