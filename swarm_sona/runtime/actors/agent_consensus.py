"""An agent's push / merge bookkeeping: sequence numbers, the unconfirmed pushes, the merged
version installed last, the coordinators' epochs, and the install rule.

A push sends the adapter state + Fisher as a versioned ``delta`` message; its ``evidence`` (the
router's additive posterior, ``router/...`` names, see
:mod:`swarm_sona.consensus.parameter_space`) is ``current - reference``, where the reference is
what the agent pushed or installed last (the router's prior before either): exactly the
feedback not sent yet. An ack never discards anything: a push stays *unconfirmed* (kept, with
its state; at most 16) until a merged version lists it, so learning that an acknowledged push
carried is kept on the agent until the coordinator's merge of it arrives.

Installing a ``merged`` message gives ``merged + (current - base)``, where ``base`` is the
state the merged version already holds of this agent: its push with the sequence number the
message lists for it (``extra["seqs"]``), or, when its latest pushes are not in that version
yet, the state it installed last. The same shift moves the unconfirmed pushes, so every piece
of feedback is sent once, whatever the order of pushes and installs.

The coordinator's generation id (``epoch``) rides on acks and merged messages: when it changes
(a coordinator that lost its state), the agent warns, forgets its unconfirmed pushes, re-pushes
and accepts the new coordinator's versions even though they restart from 1.

Example:
    >>> import numpy as np
    >>> from swarm_sona.runtime.actors.agent_consensus import ConsensusLedger
    >>> led = ConsensusLedger("a")
    >>> led.seq += 1; led.record_ack({"accepted": True, "seq": 1, "epoch": "e1"}, {"w": np.ones(2)})
    True
    >>> plan = led.plan_install({"version": 1, "params": {"w": np.full(2, 3.0)}, "extra": {"seqs": {"a": 1}}},
    ...                         {"w": np.full(2, 1.5)}, prior=dict)
    >>> plan.state["w"].tolist()    # merged 3 + (current 1.5 - pushed 1)
    [3.5, 3.5]
    >>> led.commit(plan); led.installed_version, sorted(led.unconfirmed)
    (1, [])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm_sona.consensus.messages import decode_delta
from swarm_sona.consensus.parameter_space import is_pooled
from swarm_sona.consensus.rules import get_rule
from swarm_sona.runtime.actors.calls import WarningLog

__all__ = ["ConsensusLedger", "InstallPlan", "resolve", "NOT_READY", "gossip_mix", "MAX_UNCONFIRMED"]

log = logging.getLogger(__name__)
#: unconfirmed pushes kept (the oldest is durable upstream: the coordinator logs it before the ack)
MAX_UNCONFIRMED = 16
NOT_READY = object()   # what :func:`resolve` returns for an ObjectRef not ready yet
State = dict[str, np.ndarray]


def resolve(obj: Any, *, block: bool) -> Any:
    """An ObjectRef's value (:data:`NOT_READY` if not ready and not ``block``), or ``obj`` itself."""
    try:
        import ray  # lazily: the actor class is also used in-process, without Ray
    except ImportError:  # pragma: no cover
        return obj
    if isinstance(obj, ray.ObjectRef):
        if not block:
            ready, _ = ray.wait([obj], timeout=0)
            if not ready:
                return NOT_READY
        return ray.get(obj)
    return obj


@dataclass(frozen=True)
class InstallPlan:
    """A merged version to install: the agent's new ``state``, the ``shift`` applied to its own
    (``merged - base``), the ``merged`` state itself, the agent's push it contains (``mine``)
    and its ``version``."""

    state: State
    shift: State
    merged: State
    mine: int | None
    version: int


class ConsensusLedger:
    """The agent's push / merge bookkeeping (module docs); persisted by the agent's checkpoint.

    ``seq`` (the push sequence number, monotone across restarts), ``installed_version``,
    ``installed_ref`` (the merged state installed last), ``included_seq`` (this agent's last
    push contained in it), ``unconfirmed`` (acked pushes not yet in a merged version),
    ``coord_epoch`` (the parent's, from acks), ``merged_epoch`` (of whoever merges the versions
    that arrive), ``pending_merged`` (merged frames or refs not installed yet)."""

    def __init__(self, agent_id: str, warnings: WarningLog | None = None) -> None:
        self.agent_id = agent_id
        self.warnings = warnings if warnings is not None else WarningLog(log, f"agent {agent_id}")
        self.seq = 0
        self.installed_version = 0
        self.installed_ref: State | None = None
        self.included_seq = -1
        self.unconfirmed: dict[int, State] = {}
        self.coord_epoch: str | None = None
        self.merged_epoch: str | None = None
        self.push_persist_ms: list[float] = []
        self.pending_merged: list[Any] = []

    # ---- pushes ---------------------------------------------------------------------------------
    def reference(self, current: Mapping[str, np.ndarray], prior: Callable[[], Mapping[str, np.ndarray]]) -> State:
        """What the agent last sent (its latest unconfirmed push) or installed (``current``
        minus it: the evidence not sent yet), by name; before any push or install, the
        router's ``prior()`` for the names of ``current``."""
        if self.unconfirmed:
            last = self.unconfirmed[max(self.unconfirmed)]
            if set(last) == set(current):
                return last
        if self.installed_ref is not None and set(self.installed_ref) == set(current):
            return self.installed_ref
        return {k: v for k, v in prior().items() if k in current}

    def evidence(self, params: Mapping[str, np.ndarray],
                 prior: Callable[[], Mapping[str, np.ndarray]]) -> State | None:
        """The router evidence a push of ``params`` carries (None: no pooled names)."""
        ref = self.reference(params, prior)
        return {k: params[k] - ref[k] for k in params if is_pooled(k) and k in ref} or None

    def new_epoch(self, epoch: str | None) -> None:
        """The parent lost its state (an ack with reason ``epoch``): what it had acknowledged is
        gone; forget the unconfirmed pushes, accept its versions from the start."""
        self.warnings.warn(f"coordinator epoch changed {self.coord_epoch} -> {epoch} "
                           f"(it lost its state); dropping {len(self.unconfirmed)} unconfirmed "
                           f"push(es) and re-pushing")
        self.coord_epoch = epoch
        self.unconfirmed.clear()
        self.installed_version = 0   # the new coordinator's versions start over

    def record_ack(self, ack: Any, params: State) -> bool:
        """Keep the pushed state until a merged version has it; True when the push counted (the
        agent's trajectories since its last push are then sent). An ignored push (a duplicate
        seq) did not count: its evidence is sent again next time."""
        if isinstance(ack, Mapping) and ack.get("accepted"):
            self.unconfirmed[int(ack.get("seq", self.seq))] = params
            while len(self.unconfirmed) > MAX_UNCONFIRMED:   # bounded: the oldest is durable upstream
                del self.unconfirmed[min(self.unconfirmed)]
            if self.coord_epoch is None:
                self.coord_epoch = ack.get("epoch")
            return True
        if not isinstance(ack, Mapping):
            self.unconfirmed[self.seq] = params
            return True
        return False

    # ---- installs -------------------------------------------------------------------------------
    def plan_install(self, msg: Mapping[str, Any], current: State,
                     prior: Callable[[], Mapping[str, np.ndarray]]) -> InstallPlan | None:
        """The install of a decoded ``merged`` message onto ``current`` (None: not newer)."""
        extra = msg["extra"]
        # the epoch of whoever merged this version (the root, in a hierarchy): not always the parent's
        epoch = extra.get("epoch")
        new_epoch = epoch is not None and self.merged_epoch is not None and epoch != self.merged_epoch
        if new_epoch:
            if epoch != self.coord_epoch:   # (a change of the parent's own epoch was reported at the push)
                self.warnings.warn(f"merging coordinator's epoch changed {self.merged_epoch} -> {epoch} (it lost "
                                   f"its state); installing its version {msg['version']} "
                                   f"(had {self.installed_version})")
        elif msg["version"] <= self.installed_version:
            return None
        if epoch is not None:
            self.merged_epoch = epoch
        merged = msg["params"]
        if set(merged) != set(current):
            raise ValueError(f"agent {self.agent_id}: merged state names differ from this agent's "
                             f"({sorted(set(merged) ^ set(current))[:4]}...)")
        wrong = [k for k in sorted(current) if np.shape(merged[k]) != np.shape(current[k])]
        if wrong:   # refused before anything changes (a broadcast would otherwise install a (1,) array)
            raise ValueError(f"agent {self.agent_id}: merged version {msg['version']} refused: shapes differ "
                             f"from this agent's: " + ", ".join(f"{k} {np.shape(merged[k])} != {np.shape(current[k])}"
                                                              for k in wrong[:4]))
        mine = self._mine(extra.get("seqs"))
        base: Mapping[str, np.ndarray]
        if mine is not None and mine in self.unconfirmed:
            base = self.unconfirmed[mine]
        elif mine is None or mine <= self.included_seq or mine < min(self.unconfirmed, default=mine + 1):
            base = self.installed_ref if self.installed_ref is not None and \
                set(self.installed_ref) == set(current) else prior()
        else:   # a push this agent no longer remembers (it restarted from an older checkpoint)
            base = current
        shift = {k: merged[k] - base[k] for k in current if k in base}
        new = {k: current[k] + shift[k] if k in shift else merged[k] for k in current}
        return InstallPlan(new, shift, merged, mine, int(msg["version"]))

    def _mine(self, seqs: Any) -> int | None:
        if isinstance(seqs, Mapping):
            mine = seqs.get(self.agent_id)
            return int(mine) if isinstance(mine, int) and not isinstance(mine, bool) else None
        return max(self.unconfirmed, default=None)   # a coordinator that does not list seqs: the latest push

    def commit(self, plan: InstallPlan) -> None:
        """Record an installed plan (after its state was imported into the engine)."""
        shift, merged = plan.shift, plan.merged
        if plan.mine is not None:
            self.included_seq = max(self.included_seq, plan.mine)
        self.unconfirmed = {j: {k: v + shift[k] if k in shift else merged[k] for k, v in st.items()}
                            for j, st in self.unconfirmed.items() if j > self.included_seq}
        self.installed_ref = {k: v.copy() for k, v in merged.items()}
        self.installed_version = plan.version

    def drain(self, install: Callable[[bytes], Any], *, block: bool) -> int:
        """Install the pending merged frames that have arrived (all of them with ``block``);
        a merge that failed or had nothing to merge (None) is dropped, and so is a frame that is
        refused (malformed, corrupt, of other shapes: a warning says why), so one bad frame does
        not fail every batch after it. Returns the version."""
        keep = []
        for ref in self.pending_merged:
            try:
                frame = resolve(ref, block=block)
            except Exception as exc:  # a merge that failed (e.g. a peer died): skip it
                log.warning("agent %s: merged version unavailable: %s", self.agent_id, exc)
                continue
            if frame is NOT_READY:
                keep.append(ref)
            elif isinstance(frame, (bytes, bytearray)):
                try:
                    install(bytes(frame))
                except ValueError as exc:   # MessageError, shapes, engine/router refusals: all ValueErrors
                    self.warnings.warn(f"merged frame refused, not installed: {exc}")
        self.pending_merged = keep
        return self.installed_version


def gossip_mix(weights: Sequence[float] | None, frames: Sequence[Any], rule: str | None = None,
               rule_options: Mapping[str, Any] | None = None) -> State:
    """A gossip step's state: the weighted mean (default: equal weights) of the ``delta`` frames,
    or with ``rule`` that merge rule for the adapters; the router's evidence is always averaged
    (a rule such as ties/dare would zero precisions)."""
    ups = [decode_delta(resolve(f, block=True)) for f in frames]
    ws = list(weights) if weights is not None else [1.0 / len(ups)] * len(ups)
    names = sorted(ups[0].params)

    def mean(k: str) -> np.ndarray:
        return np.asarray(sum(w * u.params[k].astype(np.float64) for w, u in zip(ws, ups, strict=True)))

    merged = {k: mean(k) for k in names if is_pooled(k)}
    if rule is None:
        merged.update({k: mean(k).astype(np.float32) for k in names if not is_pooled(k)})
    else:
        rest = [k for k in names if not is_pooled(k)]
        if rest:
            merged.update(get_rule(rule, **dict(rule_options or {}))([u.only(rest) for u in ups]))
    return merged
