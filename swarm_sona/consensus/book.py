"""The merge book: versioned, idempotent merge rounds of agents' pushes.

:class:`MergeBook` keeps the merged state, its version, and for every agent the highest
push sequence number it has accepted: a retried push (same ``agent_id`` and ``seq``) or an
older one is ignored, so nothing is counted twice; a newer push from the same agent in the
same round replaces its pending one (one vote per agent per round). Each round it merges
everything an agent sent by the book's rule (:mod:`swarm_sona.consensus.rules`): the
parameters (update norms clipped around the last merged state when the rule clips), the
Fisher (:meth:`~swarm_sona.consensus.rules.MergeRule.merge_fisher`: robust rules aggregate it
with themselves) and the trajectory count handed upstream
(:meth:`~swarm_sona.consensus.rules.MergeRule.count`: robust rules report ``n x median``).

Pooled evidence. Names for which an update carries ``evidence`` (additive sufficient
statistics gathered since the sender's previous push or install, e.g. the LLM router's
natural parameters: precision, precision-weighted mean and counts) are not merged by the
rule: the merged value is the last merged value plus the sum of every update's evidence
(:func:`~swarm_sona.consensus.updates.pool_evidence`; a product of Gaussian posteriors when
the statistics are natural parameters), so N agents' new data all count, and nothing counts
twice (a state pushed again with no new data has zero evidence; a newer push replacing a
pending one adds its evidence to the pending one's). An update without evidence for such a
name contributes its value minus the last merged value. A plain sum tolerates no bad agent
(a forged huge precision wins), so when the rule clips (robust rules by default) each
agent's evidence is first scaled to at most ``clip`` x the median agent's evidence norm
(:func:`~swarm_sona.consensus.updates.clip_evidence`): with ``f < n / 2`` bad agents the
pooled evidence is within ``f * clip * (largest honest evidence norm)`` of the honest sum.

Ranks. Agents of different LoRA rank push adapter factors of different shapes: a round that
holds an ``adapters/...`` name in more than one shape merges each shape apart under a qualified
name (:mod:`swarm_sona.consensus.shapes`): equal ranks merge their adapters together, everything
of one shape everywhere (heads, MicroLoRA, the router's evidence) across all agents, the last
merged variants of a rank that did not push this round are kept, and
:attr:`MergeResult.warnings` names the agents merged apart.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.book import MergeBook
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> book = MergeBook("median")
    >>> for i, v in enumerate([1.0, 2.0, 3.0, 1000.0, 2.5]):
    ...     _ = book.submit(AgentUpdate(f"a{i}", seq=1, params={"B": np.full(2, v)}, weight=10))
    >>> book.submit(AgentUpdate("a0", seq=1, params={"B": np.full(2, 1.0)}, weight=10))  # retried push
    False
    >>> r = book.merge()
    >>> r.version, r.params["B"].tolist(), r.n_trajectories
    (1, [2.5, 2.5], 50.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from swarm_sona.consensus.rules import MergeRule, get_rule
from swarm_sona.consensus.shapes import (
    RANKED_PREFIX,
    apart_warning,
    base_name,
    check_ranked,
    holder_groups,
    mixed_names,
    qualify,
    qualify_state,
)
from swarm_sona.consensus.updates import AgentUpdate, MergeError, clip_evidence, pool_evidence

__all__ = ["MergeBook", "MergeResult"]


@dataclass
class MergeResult:
    """The outcome of one merge round.

    ``n_trajectories``: the count the merged state stands for (see ``MergeRule.count``);
    ``fisher``: the merged Fisher (None unless every update had one); ``evidence``: the round's
    pooled evidence (sum of the updates', after clipping); ``warnings``: what could not be merged
    together (adapters of different LoRA rank, see the module docs).

    Example:
        >>> MergeResult(1, {}, ["a"], "fedavg", 3.0).n_trajectories
        3.0
    """

    version: int
    params: dict[str, np.ndarray]
    agents: list[str]
    rule: str
    n_trajectories: float
    fisher: dict[str, np.ndarray] | None = None
    evidence: dict[str, np.ndarray] | None = None
    warnings: list[str] = field(default_factory=list)


class MergeBook:
    """Collects pushes, merges them by a rule, and keeps the version and dedup record.

    ``submit`` returns True when the update was taken, False when it was a retry or older
    than one already accepted from that agent (it is then ignored). ``merge`` applies the
    rule to the pending updates (at least ``min_updates``; names carrying evidence are pooled
    instead, see the module docs), bumps the version and clears the round.
    ``state_dict``/``load_state_dict`` make it checkpointable (merged params, version,
    per-agent last sequence numbers), so a restarted coordinator still rejects retries of
    pushes it had acknowledged.

    Example:
        >>> import numpy as np
        >>> b = MergeBook("fedavg")
        >>> b.submit(AgentUpdate("x", 3, {"w": np.ones(2)}))
        True
        >>> b.submit(AgentUpdate("x", 2, {"w": np.zeros(2)}))   # older than seq 3: ignored
        False
        >>> b.merge().params["w"].tolist(), b.version
        ([1.0, 1.0], 1)
    """

    def __init__(self, rule: str | MergeRule | Mapping[str, Any] = "fedavg", *, min_updates: int = 1,
                 **rule_kwargs: Any) -> None:
        self.rule = get_rule(rule, **rule_kwargs)
        if isinstance(min_updates, bool) or not isinstance(min_updates, int) or min_updates < 1:
            raise MergeError(f"min_updates must be an integer >= 1, got {min_updates!r}")
        self.min_updates = min_updates
        self.version = 0
        self.merged: dict[str, np.ndarray] | None = None
        self.merged_fisher: dict[str, np.ndarray] | None = None
        self.last_seq: dict[str, int] = {}
        self.pending: dict[str, AgentUpdate] = {}
        self.history: list[dict[str, Any]] = []

    def submit(self, update: AgentUpdate) -> bool:
        """Take one push; False if it was already seen (same or older seq from that agent)."""
        if not isinstance(update, AgentUpdate):
            raise MergeError(f"submit() takes an AgentUpdate, got {type(update).__name__}")
        last = self.last_seq.get(update.agent_id)
        if last is not None and update.seq <= last:
            return False
        check_ranked(update)   # ranked entries are 2-D LoRA factors of one rank, or refused
        ref = self.merged if self.merged is not None else (
            next(iter(self.pending.values())).params if self.pending else None)
        if ref is not None:
            names, got = {base_name(k) for k in ref}, {base_name(k) for k in update.params}
            if names != got:
                raise MergeError(f"update {update.agent_id} does not match the merged state's names: "
                                 f"{sorted(names ^ got)}")
            for k, v in update.params.items():   # a ranked name may differ: another LoRA rank, merged apart
                if not k.startswith(RANKED_PREFIX) and k in ref and v.shape != ref[k].shape:
                    raise MergeError(f"update {update.agent_id}: params[{k!r}] has shape {v.shape}, "
                                     f"merged state has {ref[k].shape}")
        prev = self.pending.get(update.agent_id)
        if prev is not None and prev.evidence and update.evidence:
            # a newer push replaces the pending one as the agent's vote, but its evidence only
            # covers the time since that push: both count
            ev = {k: v + prev.evidence[k] if k in prev.evidence else v for k, v in update.evidence.items()}
            update = replace(update, evidence=ev)
        self.last_seq[update.agent_id] = update.seq
        self.pending[update.agent_id] = update
        return True

    @property
    def pending_agents(self) -> list[str]:
        """Agent ids with an update waiting for the next merge, sorted."""
        return sorted(self.pending)

    def merge(self) -> MergeResult | None:
        """Merge the pending updates; None if fewer than ``min_updates`` are waiting."""
        if len(self.pending) < self.min_updates:
            return None
        ups = [self.pending[a] for a in sorted(self.pending)]
        mixed = mixed_names(ups, self.merged)
        warnings: list[str] = []
        if mixed:
            ups = [qualify(u, mixed) for u in ups]
            params, evidence, fisher, warnings = self._merge_apart(ups, mixed)
        else:
            params, evidence = self._pool(ups)
            rest = [k for k in ups[0].params if k not in params]
            if rest:
                base = None if self.merged is None else {k: self.merged[k] for k in rest if k in self.merged}
                params.update(self.rule([u.only(rest) for u in ups] if evidence else ups, base=base or None))
            fisher = self.rule.merge_fisher([u.only(rest) for u in ups] if evidence else ups)
        params = {k: params[k] for k in sorted(params)}
        self.version += 1
        self.merged = params
        self.merged_fisher = fisher
        self.pending = {}
        total = self.rule.count(ups)
        self.history.append({"version": self.version, "agents": [u.agent_id for u in ups], "rule": self.rule.name,
                             "n_trajectories": total})
        del self.history[:-100]
        return MergeResult(self.version, params, [u.agent_id for u in ups], self.rule.name, total, fisher,
                           evidence, warnings)

    def _merge_apart(self, ups: Sequence[AgentUpdate], mixed: set[str]) -> tuple[
            dict[str, np.ndarray], dict[str, np.ndarray] | None, dict[str, np.ndarray] | None, list[str]]:
        """A round whose ranked names differ in shape (module docs): each group of updates holding
        the same (qualified) names is merged by the rule; the pooled names as always; the last
        merged variants nobody pushed are kept. Returns params, evidence, Fisher, warnings."""
        merged = qualify_state(self.merged, mixed)
        self.merged = merged
        params, evidence = self._pool(ups)
        groups = holder_groups(ups, [k for u in ups for k in u.params if k not in params])
        fisher: dict[str, np.ndarray] = {}
        for names, group in groups:
            part = [u.only(names) for u in group]
            base = None if merged is None else {k: merged[k] for k in names if k in merged}
            params.update(self.rule(part, base=base or None))
            fisher.update(self.rule.merge_fisher(part) or {})
        for k, v in (merged or {}).items():
            params.setdefault(k, v)
        warning = apart_warning(groups)
        return params, evidence, fisher or None, [warning] if warning else []

    def _pool(self, ups: Sequence[AgentUpdate]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
        """The pooled names' merged values (last merged + every update's evidence, clipped when
        the rule clips) and the round's evidence; ``({}, None)`` when no update carries evidence."""
        names = sorted({k for u in ups for k in (u.evidence or ())})
        if not names:
            return {}, None
        base = {}
        for k in names:
            if self.merged is not None and k in self.merged:
                base[k] = self.merged[k]
            else:   # first merge: the state the evidence was gathered on (the prior, for fresh agents)
                u = next(u for u in ups if u.evidence and k in u.evidence)
                base[k] = np.asarray(u.params[k], np.float64) - u.evidence[k]  # type: ignore[index]
        deltas = [{k: u.evidence[k] if u.evidence and k in u.evidence
                   else np.asarray(u.params[k], np.float64) - np.asarray(base[k], np.float64) for k in names}
                  for u in ups]
        if self.rule.clip is not None and len(deltas) > 1:
            deltas = clip_evidence(deltas, self.rule.clip)
        pooled = pool_evidence(base, deltas)
        evidence = pool_evidence({k: np.zeros(np.shape(base[k])) for k in names}, deltas)
        ref = ups[0].params
        return {k: v.astype(ref[k].dtype if ref[k].dtype.kind == "f" else np.float64) for k, v in pooled.items()}, \
            evidence

    def state_dict(self) -> dict[str, Any]:
        """Plain data for the msgpack codec (arrays kept)."""
        return {"rule": self.rule.to_dict(), "min_updates": self.min_updates, "version": self.version,
                "merged": self.merged, "merged_fisher": self.merged_fisher, "last_seq": dict(self.last_seq),
                "history": list(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (pending updates are not part of it)."""
        try:
            version = int(state["version"])
            last_seq = {str(k): int(v) for k, v in dict(state["last_seq"]).items()}
            merged = state.get("merged")
            merged = None if merged is None else {str(k): np.asarray(v) for k, v in merged.items()}
            mf = state.get("merged_fisher")
            mf = None if mf is None else {str(k): np.asarray(v) for k, v in mf.items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MergeError(f"malformed merge book state: {exc}") from exc
        self.version, self.last_seq, self.merged, self.merged_fisher = version, last_seq, merged, mf
        self.history = list(state.get("history", []))
        self.pending = {}
