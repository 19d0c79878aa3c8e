"""CoordinatorActor: merges pushed adapter deltas, consolidates with EWC++, checkpoints, serves versions.

A plain class (wrapped with ``ray.remote`` at creation, see :func:`swarm_sona.actors.remote`),
so it can be unit-tested in-process. Workers (or lower-level queens) push ``delta``
messages (:mod:`swarm_sona.consensus.messages`) with :meth:`CoordinatorActor.submit`; a malformed or
wrong-version message raises :class:`~swarm_sona.consensus.messages.MessageError` and leaves the
merge state untouched; a retried push is acknowledged but not counted twice
(:class:`~swarm_sona.consensus.merge.MergeBook`). :meth:`CoordinatorActor.merge` merges the pending
pushes by the topology's rule (the LLM router's posterior, ``router/...``, is pooled from
the pushes' evidence instead: see :class:`~swarm_sona.consensus.merge.MergeBook`), then runs the
EWC++ consolidation on the merged adapter, with the maths of :mod:`swarm_sona.learning.ewc`:

* Fisher: EWC++ running estimate ``F <- (1 - a) F + a F_round`` of the pushers'
  (trajectory-weighted) Fisher diagonals (:func:`~swarm_sona.learning.ewc.fisher_ema`), min-max
  normalised to [0, 1] (:func:`~swarm_sona.learning.ewc.importance`; ``EWCConfig`` ``fisher_decay``
  = a, ``normalize``): a constant positive Fisher weighs every coordinate 1, an all-zero
  one anchors nothing;
* the consolidated state is the exact minimiser of
  ``1/(2 eta) ||theta - theta_merged||^2 + lambda/2 sum F (theta - theta*)^2``, i.e.
  ``theta = (theta_merged + eta lambda F theta*) / (1 + eta lambda F)`` per coordinate
  (:func:`~swarm_sona.learning.ewc.proximal_consolidate`), with eta the background learning rate
  and theta* the anchor of the previous consolidation: coordinates that mattered to
  earlier versions move less;
* the anchor becomes the consolidated state.

Then it bumps the version, writes a checkpoint atomically (merge book + Fisher + anchor),
pushes its merged state to its own parent if it has one (hierarchical topology) and
returns the ``merged`` message. A restarted coordinator reloads the checkpoint, so it
keeps its version, merged adapter and the per-agent push sequence numbers (retries of
acknowledged pushes are still recognised).

Example:
    >>> import numpy as np, tempfile
    >>> from swarm_sona.runtime.actors.coordinator import CoordinatorActor
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> from swarm_sona.consensus.messages import encode_delta, decode_merged
    >>> c = CoordinatorActor("coordinator", rule="median", checkpoint_dir=tempfile.mkdtemp())
    >>> for i, v in enumerate([1.0, 2.0, 50.0]):
    ...     _ = c.submit(encode_delta(AgentUpdate(f"w{i}", 1, {"B": np.full(2, v, np.float32)}, weight=5)))
    >>> decode_merged(c.merge())["params"]["B"].tolist()
    [2.0, 2.0]
    >>> c.version
    1
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.consensus.book import MergeBook
from swarm_sona.consensus.messages import decode_delta, decode_merged, encode_delta, encode_merged
from swarm_sona.consensus.updates import AgentUpdate
from swarm_sona.core import codec
from swarm_sona.core.codec import CheckpointError
from swarm_sona.core.config import EWCConfig
from swarm_sona.learning.ewc import fisher_ema, importance, proximal_consolidate
from swarm_sona.runtime.actors.calls import as_peer, call

__all__ = ["CoordinatorActor"]

log = logging.getLogger(__name__)
_CKPT_KIND = "coordinator"


class CoordinatorActor:
    """Consensus node: see the module docstring. ``parent`` is another coordinator to push
    merged states to: the object, its Ray handle, or its actor name (a string or a
    :class:`~swarm_sona.runtime.actors.calls.NamedActor`; a string is looked up in ``namespace``);
    ``rank`` is informational (the merged adapter has the workers' layout)."""

    def __init__(self, coordinator_id: str, *, rule: str | Mapping[str, Any] = "fedavg",
                 rule_options: Mapping[str, Any] | None = None, min_updates: int = 1, parent: Any = None,
                 checkpoint_dir: str | os.PathLike[str] | None = None, ewc: EWCConfig | Mapping[str, Any] | None = None,
                 consolidate_ewc: bool = True, eta: float = 5e-3, rank: int | None = None,
                 telemetry: Mapping[str, Any] | None = None, namespace: str | None = None) -> None:
        from swarm_sona.core import telemetry as telemetry_mod

        self.id = coordinator_id
        # telemetry: merge/consolidate/checkpoint spans, children of the pushes' trace; drained by the driver
        self.tel = telemetry_mod.configure(telemetry, relay=True, attributes={
            "swarm_sona.role": "coordinator", "swarm_sona.coordinator": coordinator_id}) \
            if telemetry else telemetry_mod.current()
        self._trace: Mapping[str, str] | None = None
        self.book = MergeBook(rule, min_updates=min_updates, **dict(rule_options or {}))
        self.parent = as_peer(parent, namespace)
        self.ewc = EWCConfig.from_dict(ewc) if not isinstance(ewc, EWCConfig) else ewc
        self.consolidate_ewc = bool(consolidate_ewc)
        self.eta = float(eta)
        self.rank = rank
        self.fisher: dict[str, np.ndarray] = {}
        self.anchor: dict[str, np.ndarray] | None = None
        self.rejected = 0
        self.duplicates = 0
        self.merge_ms: list[float] = []
        self.restored_from: str | None = None
        self._frame: bytes | None = None
        self.ckpt = Path(checkpoint_dir) / f"{coordinator_id}.coord.msgpack" if checkpoint_dir else None
        if self.ckpt is not None and (self.ckpt.exists() or self.ckpt.with_name(self.ckpt.name + ".prev").exists()):
            self._restore()

    # ---- state -------------------------------------------------------------------------
    @property
    def version(self) -> int:
        """Version of the current merged adapter (0 = nothing merged yet)."""
        return self.book.version

    def _restore(self) -> None:
        try:
            st = codec.read_checkpoint(self.ckpt, kind=_CKPT_KIND)
        except CheckpointError as exc:
            log.error("coordinator %s: no usable checkpoint, starting empty: %s", self.id, exc)
            return
        self.book.load_state_dict(st["book"])
        self.fisher = dict(st.get("fisher") or {})
        self.anchor = st.get("anchor")
        self.rejected = int(st.get("rejected", 0))
        self.duplicates = int(st.get("duplicates", 0))
        if self.book.merged is not None:
            self._frame = self._encode()
        self.restored_from = str(self.ckpt)

    def checkpoint(self) -> str | None:
        """Write the merge book, Fisher and anchor atomically; returns the path."""
        if self.ckpt is None:
            return None
        codec.write_checkpoint(self.ckpt, {"id": self.id, "book": self.book.state_dict(), "fisher": self.fisher,
                                           "anchor": self.anchor, "rejected": self.rejected,
                                           "duplicates": self.duplicates, "time": time.time()}, kind=_CKPT_KIND)
        return str(self.ckpt)

    def _encode(self) -> bytes:
        assert self.book.merged is not None
        last = self.book.history[-1] if self.book.history else {}
        return encode_merged(self.book.version, self.book.merged, fisher=self.fisher or None,
                             agents=list(last.get("agents", [])), rule=self.book.rule.name,
                             extra={"coordinator": self.id, "n_trajectories": last.get("n_trajectories", 0.0)})

    # ---- protocol ----------------------------------------------------------------------
    def submit(self, frame: bytes) -> dict[str, Any]:
        """Take one pushed ``delta`` message. Returns ``{"accepted", "version", "agent_id", "seq"}``;
        ``accepted`` is False for a retry of an already acknowledged push."""
        try:
            update = decode_delta(frame)
            accepted = self.book.submit(update)
        except ValueError:
            self.rejected += 1
            raise
        if not accepted:
            self.duplicates += 1
        elif self._trace is None and update.metadata.get("trace"):
            self._trace = update.metadata["trace"]   # the merge span continues the first push's trace
        return {"accepted": accepted, "version": self.book.version, "agent_id": update.agent_id, "seq": update.seq}

    def merge(self, *after: Any) -> bytes | None:
        """Merge the pending pushes (``after``: ignored, lets a caller order this call after
        others); consolidate, checkpoint, push to the parent; returns the merged message or
        None when nothing was pending."""
        t0 = time.perf_counter()
        if not self.book.pending_agents:   # nothing pushed since the last merge: no merge, no span
            return None
        trace, self._trace = self._trace, None
        with self.tel.span("merge", parent=trace, attributes={"coordinator": self.id}) as span:
            return self._merge(t0, span)

    def _merge(self, t0: float, span: Any) -> bytes | None:
        tel = self.tel
        result = self.book.merge()
        if result is None:
            return None
        span.set_attribute("version", result.version)
        params = result.params
        if result.fisher:
            fisher_ema(self.fisher, result.fisher, self.ewc.fisher_decay)
        if self.consolidate_ewc and self.anchor is not None and self.fisher:
            with tel.span("consolidate"):
                params = proximal_consolidate(params, self.anchor, importance(self.fisher, self.ewc.normalize),
                                              self.eta * self.ewc.lambda_)
                self.book.merged = params
        self.anchor = {k: v.copy() for k, v in params.items()}
        self._frame = self._encode()
        with tel.span("checkpoint"):
            self.checkpoint()
        if self.parent is not None:
            up = AgentUpdate(self.id, result.version, params, weight=result.n_trajectories,
                             fisher=self.fisher or None, base_version=result.version, evidence=result.evidence)
            call(self.parent, "submit", encode_delta(up, trace=tel.inject()))
        self.merge_ms.append((time.perf_counter() - t0) * 1e3)
        del self.merge_ms[:-1000]
        return self._frame

    def drain_spans(self) -> list[dict[str, Any]]:
        """Finished spans of this coordinator since the last call (for the driver's telemetry)."""
        return self.tel.relay_drain() if self.tel.tracing else []

    def latest(self) -> bytes | None:
        """The current merged message (None before the first merge)."""
        return self._frame

    def install(self, frame: bytes) -> int:
        """Adopt a merged state from above (a queen receiving the root's); returns the version."""
        msg = decode_merged(frame)
        self.book.merged = msg["params"]
        self.anchor = {k: v.copy() for k, v in msg["params"].items()}
        self._frame = frame
        self.checkpoint()
        return msg["version"]

    def install_if(self, frame: bytes | None) -> int:
        """:meth:`install` when a merge produced a message (``None``: nothing to install)."""
        return self.book.version if frame is None else self.install(frame)

    def stats(self) -> dict[str, Any]:
        """Version, rule, pushes rejected / deduplicated, merge latency, restore info."""
        ms = np.array(self.merge_ms) if self.merge_ms else np.array([np.nan])
        return {"id": self.id, "version": self.book.version, "rule": self.book.rule.name,
                "tolerates": self.book.rule.tolerates(max(1, len(self.book.last_seq))),
                "pending": self.book.pending_agents, "rejected": self.rejected, "duplicates": self.duplicates,
                "merges": len(self.merge_ms), "merge_ms_mean": float(np.mean(ms)),
                "merge_ms_p50": float(np.median(ms)), "restored_from": self.restored_from,
                "pid": os.getpid(), "cpu_s": time.process_time()}

    def ping(self) -> int:
        """Liveness probe; returns the process id."""
        return os.getpid()
