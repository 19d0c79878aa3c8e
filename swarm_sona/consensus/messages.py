"""Delta and merged-state messages between actors: msgpack codec frames, strictly checked.

A ``delta`` message carries one agent's adapter state (flat ``name -> array``), its Fisher
diagonal, the number of trajectories behind it, the agent's push sequence number, the
merged version it started from and, optionally, its ``evidence`` (additive statistics since
its previous push, pooled instead of merged: see :mod:`swarm_sona.consensus.book`). A ``merged`` message carries a merged state and its
version. Both travel as :func:`swarm_sona.core.codec.pack_frame` frames (magic, schema version,
CRC-32); decoding checks every field, so a malformed, corrupt or wrong-version message
raises :class:`MessageError` (a :class:`~swarm_sona.core.codec.CodecError`) naming the problem,
before anything touches a merged adapter. An optional ``trace`` dict carries W3C trace
context (``traceparent``) between actors.

Example:
    >>> import numpy as np
    >>> from swarm_sona.consensus.updates import AgentUpdate
    >>> from swarm_sona.consensus.messages import encode_delta, decode_delta
    >>> blob = encode_delta(AgentUpdate("w1", 4, {"B": np.ones((2, 1), np.float32)}, weight=12))
    >>> u = decode_delta(blob)
    >>> u.agent_id, u.seq, u.weight, u.params["B"].shape
    ('w1', 4, 12.0, (2, 1))
    >>> decode_delta(blob[:-1])
    Traceback (most recent call last):
    ...
    swarm_sona.consensus.messages.MessageError: delta message rejected: truncated frame: expected ... payload bytes, got ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from swarm_sona.consensus.updates import AgentUpdate, MergeError
from swarm_sona.core import codec
from swarm_sona.core.codec import CodecError

__all__ = ["MessageError", "DELTA_KIND", "MERGED_KIND", "MESSAGE_SCHEMA", "encode_delta", "decode_delta",
           "encode_merged", "decode_merged"]

DELTA_KIND = "delta"
MERGED_KIND = "merged"
MESSAGE_SCHEMA = codec.SCHEMA_VERSION


class MessageError(CodecError):
    """A delta or merged message is malformed, corrupt, of the wrong kind or schema version."""


def _arrays(d: Any, what: str) -> dict[str, np.ndarray]:
    if not isinstance(d, Mapping):
        raise MessageError(f"{what} must be a mapping of name -> array, got {type(d).__name__}")
    out = {}
    for k, v in d.items():
        if not isinstance(k, str) or not k:
            raise MessageError(f"{what}: names must be non-empty strings, got {k!r}")
        if not isinstance(v, np.ndarray):
            raise MessageError(f"{what}[{k!r}] must be an array, got {type(v).__name__}")
        if v.dtype.kind != "f":
            raise MessageError(f"{what}[{k!r}] must be a float array, got dtype {v.dtype}")
        if not np.all(np.isfinite(v)):
            raise MessageError(f"{what}[{k!r}] contains NaN or inf")
        out[k] = v
    return out


def _int(body: Mapping[str, Any], key: str, what: str) -> int:
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise MessageError(f"{what}: field {key!r} must be an integer >= 0, got {v!r}")
    return v


def _open(blob: bytes, kind: str) -> dict[str, Any]:
    try:
        _, body = codec.unpack_frame(blob, expect_kind=kind, versions=(MESSAGE_SCHEMA,))
    except CodecError as exc:
        raise MessageError(f"{kind} message rejected: {exc}") from exc
    if not isinstance(body, dict):
        raise MessageError(f"{kind} message rejected: body must be a mapping, got {type(body).__name__}")
    return body


def encode_delta(update: AgentUpdate, *, trace: Mapping[str, str] | None = None) -> bytes:
    """Frame an :class:`~swarm_sona.consensus.updates.AgentUpdate` as a ``delta`` message."""
    body = {"agent_id": update.agent_id, "seq": update.seq, "base_version": update.base_version,
            "n_trajectories": update.weight, "params": update.params, "fisher": update.fisher,
            "metadata": update.metadata, "trace": dict(trace or {})}
    if update.evidence:
        body["evidence"] = update.evidence
    return codec.pack_frame(DELTA_KIND, body, version=MESSAGE_SCHEMA)


def decode_delta(blob: bytes) -> AgentUpdate:
    """Open and validate a ``delta`` message; raises :class:`MessageError` on any defect."""
    body = _open(blob, DELTA_KIND)
    what = "delta message rejected"
    missing = sorted({"agent_id", "seq", "base_version", "n_trajectories", "params"} - body.keys())
    if missing:
        raise MessageError(f"{what}: missing fields {missing}")
    agent = body["agent_id"]
    if not isinstance(agent, str) or not agent:
        raise MessageError(f"{what}: agent_id must be a non-empty string, got {agent!r}")
    seq = _int(body, "seq", what)
    base = _int(body, "base_version", what)
    n = body["n_trajectories"]
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not np.isfinite(n) or n < 0:
        raise MessageError(f"{what}: n_trajectories must be a finite number >= 0, got {n!r}")
    params = _arrays(body["params"], f"{what}: params")
    if not params:
        raise MessageError(f"{what}: params is empty")
    fisher = body.get("fisher")
    fisher = None if fisher is None else _arrays(fisher, f"{what}: fisher")
    evidence = body.get("evidence")
    evidence = None if evidence is None else _arrays(evidence, f"{what}: evidence")
    meta = body.get("metadata") or {}
    if not isinstance(meta, dict):
        raise MessageError(f"{what}: metadata must be a mapping")
    trace = body.get("trace") or {}
    if trace:
        meta = {**meta, "trace": trace}
    try:
        return AgentUpdate(agent, seq, params, weight=float(n), fisher=fisher, base_version=base, metadata=meta,
                           evidence=evidence)
    except MergeError as exc:
        raise MessageError(f"{what}: {exc}") from exc


def encode_merged(version: int, params: Mapping[str, np.ndarray], *, fisher: Mapping[str, np.ndarray] | None = None,
                  agents: list[str] | None = None, rule: str = "", extra: Mapping[str, Any] | None = None) -> bytes:
    """Frame a merged state and its version as a ``merged`` message.

    Example:
        >>> import numpy as np
        >>> decode_merged(encode_merged(3, {"B": np.zeros(2)}))["version"]
        3
    """
    body = {"version": int(version), "params": dict(params), "fisher": None if fisher is None else dict(fisher),
            "agents": list(agents or []), "rule": rule, "extra": dict(extra or {})}
    return codec.pack_frame(MERGED_KIND, body, version=MESSAGE_SCHEMA)


def decode_merged(blob: bytes) -> dict[str, Any]:
    """Open and validate a ``merged`` message: ``{"version", "params", "fisher", "agents", "rule", "extra"}``."""
    body = _open(blob, MERGED_KIND)
    what = "merged message rejected"
    version = _int(body, "version", what)
    params = _arrays(body.get("params"), f"{what}: params")
    fisher = body.get("fisher")
    fisher = None if fisher is None else _arrays(fisher, f"{what}: fisher")
    agents = body.get("agents") or []
    if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
        raise MessageError(f"{what}: agents must be a list of ids")
    extra = body.get("extra") or {}
    if not isinstance(extra, dict):
        raise MessageError(f"{what}: extra must be a mapping")
    return {"version": version, "params": params, "fisher": fisher, "agents": agents,
            "rule": str(body.get("rule", "")), "extra": extra}
