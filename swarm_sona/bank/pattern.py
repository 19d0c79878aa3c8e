"""The pattern record stored in a ReasoningBank, its content-derived id and payload checks.

A pattern is what an agent learned from one task (``source="stored"``) or from a cluster of
trajectories (``source="distilled"``): the task, what went in and came out, the reward and
success, who produced it, and bookkeeping (creation time, last use, use and outcome counts,
how many trajectories support it). Its id is a UUID derived from its content
(task, input, output), so storing the same pattern twice leaves one.

Example:
    >>> from swarm_sona.bank.pattern import Pattern, pattern_id
    >>> pid = pattern_id("sort a list", "[3,1,2]", "[1,2,3]")
    >>> pid == pattern_id("sort a list", "[3,1,2]", "[1,2,3]")
    True
    >>> p = Pattern(id=pid, task="sort a list", input="[3,1,2]", output="[1,2,3]", reward=0.9, success=True)
    >>> Pattern.from_payload(pid, p.to_payload()).reward
    0.9
    >>> p.reliability  # Laplace estimate with no reported outcomes yet
    0.5
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

import numpy as np

from swarm_sona.bank.errors import BankInputError
from swarm_sona.core.trajectory import check_number

__all__ = ["Pattern", "pattern_id", "plain_json", "check_reward", "payload_problem", "SOURCES"]

_TITLE_LEN = 120
SOURCES = ("stored", "distilled")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "swarm-sona/reasoning-bank/pattern")
_NAMESPACE_BYTES = _NAMESPACE.bytes
_INT64 = (-(2**63), 2**63 - 1)


def pattern_id(task: str, input: str = "", output: str = "", *, source: str = "stored",
               outcome: bool | None = None) -> str:
    """UUID (version 5) of a pattern's content: same task, input, output and source -> same id.

    ``outcome`` is part of the key when given (distilled patterns: a success cluster and a
    failure cluster around the same task are two patterns).

    Example:
        >>> pattern_id("a", "b", "c") != pattern_id("a", "b", "d")
        True
        >>> pattern_id("a", source="distilled", outcome=True) != pattern_id("a", source="distilled", outcome=False)
        True
    """
    # key: json.dumps([source, task, input, output(, outcome)], ensure_ascii=False, separators=(",", ":")),
    # written out (the same text); the id: uuid.uuid5(_NAMESPACE, key) without UUID objects
    enc = encode_basestring
    key = f"[{enc(source)},{enc(task)},{enc(input)},{enc(output)}" + (
        "]" if outcome is None else (",true]" if outcome else ",false]"))
    b = bytearray(hashlib.sha1(_NAMESPACE_BYTES + key.encode("utf-8")).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50   # version 5
    b[8] = (b[8] & 0x3F) | 0x80   # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def plain_json(value: Any, where: str = "metadata") -> Any:
    """A JSON- and msgpack-safe copy of ``value`` or :class:`BankInputError` naming the bad part.

    Accepts None, bool, int (64-bit), finite float, str, lists/tuples and mappings with string
    keys; numpy scalars are converted to Python numbers. Anything else (sets, bytes, objects,
    NaN) is refused with the path of the offending value.

    Example:
        >>> plain_json({"lang": "py", "tags": ("a", "b")})
        {'lang': 'py', 'tags': ['a', 'b']}
        >>> plain_json({"when": {1, 2}})
        Traceback (most recent call last):
        ...
        swarm_sona.bank.errors.BankInputError: metadata['when'] is a set, which is not JSON/msgpack serialisable
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise BankInputError(f"{where} = {value} does not fit a 64-bit integer")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BankInputError(f"{where} = {value} is not a finite number (JSON has no NaN/inf)")
        return value
    if isinstance(value, (list, tuple)):
        return [plain_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise BankInputError(f"{where} has a key {k!r} that is not a string")
            out[k] = plain_json(v, f"{where}[{k!r}]")
        return out
    raise BankInputError(f"{where} is a {type(value).__name__}, which is not JSON/msgpack serialisable")


def _copy_json(v: Any) -> Any:
    """A copy of plain JSON data (dicts and lists copied, scalars shared)."""
    if isinstance(v, dict):
        return {k: _copy_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy_json(x) for x in v]
    return v


def check_reward(reward: Any, what: str = "reward") -> float:
    """``reward`` as a float in [0, 1] or :class:`BankInputError` (the trajectory rule)."""
    return check_number(reward, what, upper=1.0, error=BankInputError)


def payload_problem(payload: Any) -> str | None:
    """Why a stored payload is not a pattern this bank can use (a foreign or damaged point), or
    None when it is one: reward a number in [0, 1], success a boolean, ``created_at`` and the
    counts numbers, ``metadata`` a mapping, the text fields strings.

    Example:
        >>> payload_problem({"task": "t", "reward": 0.5, "success": True}) is None
        True
        >>> payload_problem({"task": "t", "reward": "abc", "success": True})
        "reward is 'abc', not a number in [0, 1]"
    """
    if not isinstance(payload, Mapping):
        return f"payload is a {type(payload).__name__}, not a mapping"
    r = payload.get("reward")
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= float(r) <= 1.0:
        return f"reward is {r!r}, not a number in [0, 1]"
    if not isinstance(payload.get("success"), (bool, np.bool_)):
        return f"success is {payload.get('success')!r}, not a boolean"
    for key in ("task", "input", "output", "title", "description", "source"):
        v = payload.get(key)
        if v is not None and not isinstance(v, str):
            return f"{key} is a {type(v).__name__}, not a string"
    for key in ("created_at", "last_used_at", "use_count", "outcome_count", "success_count", "support"):
        v = payload.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            return f"{key} is {v!r}, not a finite number"
    md = payload.get("metadata")
    if md is not None and not isinstance(md, Mapping):
        return f"metadata is a {type(md).__name__}, not a mapping"
    return None


def _opt_str(v: Any, what: str) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise BankInputError(f"{what} must be a string or None, got {type(v).__name__}")
    return v


@dataclass
class Pattern:
    """One stored pattern (see module docs). ``similarity``/``score`` are set by retrieval.

    ``reliability`` = (successful uses + 1) / (uses with a reported outcome + 2).
    """

    id: str
    task: str
    input: str = ""
    output: str = ""
    reward: float = 0.0
    success: bool = False
    agent_id: str | None = None
    task_type: str | None = None
    source: str = "stored"
    title: str = ""
    description: str = ""
    created_at: float = field(default_factory=time.time)
    last_used_at: float | None = None
    use_count: int = 0
    outcome_count: int = 0
    success_count: int = 0
    support: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None
    similarity: float | None = None
    score: float | None = None

    @property
    def content(self) -> str:
        """The pattern's content: its output (what worked, or what failed)."""
        return self.output

    @property
    def reliability(self) -> float:
        """Laplace-smoothed share of successful uses among uses with a reported outcome."""
        return (self.success_count + 1.0) / (self.outcome_count + 2.0)

    def guidance(self) -> str:
        """Human-readable guidance for an agent about to run a similar task."""
        verdict = "worked" if self.success else "failed (avoid repeating it)"
        lines = [f"A similar task ({self.task!r}) {verdict} with reward {self.reward:.2f}."]
        if self.description:
            lines.append(self.description)
        if self.input:
            lines.append(f"Input was: {self.input}")
        if self.output:
            lines.append(f"{'Approach' if self.success else 'Failed approach'}: {self.output}")
        return "\n".join(lines)

    def to_payload(self) -> dict[str, Any]:
        """The Qdrant payload (plain JSON) of this pattern.

        ``task``, ``reward``, ``success``, ``outcome`` (its keyword form, which filters use),
        ``source`` and ``created_at`` are always present; every other field is left out while it
        has its default value (empty text, None, zero counts, support 1, no metadata, title = the
        task). That halves the engine's per-point conversion cost (~3-4 us per field in
        qdrant-edge-py 0.9) on writes and reads.
        """
        out: dict[str, Any] = {"task": self.task, "reward": float(self.reward), "success": bool(self.success),
                               "outcome": "success" if self.success else "failure", "source": self.source,
                               "created_at": float(self.created_at)}
        if self.title and self.title != self.task[:_TITLE_LEN]:
            out["title"] = self.title
        for key in ("description", "input", "output", "agent_id", "task_type", "metadata"):
            v = getattr(self, key)
            if v:
                out[key] = v
        if self.last_used_at is not None:
            out["last_used_at"] = float(self.last_used_at)
        for key in ("use_count", "outcome_count", "success_count"):
            if getattr(self, key):
                out[key] = int(getattr(self, key))
        if self.support != 1:
            out["support"] = int(self.support)
        return out

    @staticmethod
    def payload_fields(pid: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The stored fields of the pattern a payload describes (missing bookkeeping fields get
        defaults), ready for :meth:`from_fields`. ``metadata`` is shared with the payload, not copied.

        Example:
            >>> f = Pattern.payload_fields("p1", {"task": "t", "reward": 0.5, "success": True})
            >>> f["title"], f["use_count"], Pattern.from_fields(f, similarity=0.9).similarity
            ('t', 0, 0.9)
        """
        p = payload
        task = str(p.get("task", ""))
        return {
            "id": str(pid), "task": task, "input": str(p.get("input", "")), "output": str(p.get("output", "")),
            "reward": float(p.get("reward", 0.0)), "success": bool(p.get("success", False)),
            "agent_id": p.get("agent_id"), "task_type": p.get("task_type"), "source": str(p.get("source", "stored")),
            "title": str(p.get("title") or task[:_TITLE_LEN]), "description": str(p.get("description", "")),
            "created_at": float(p.get("created_at", 0.0)), "last_used_at": p.get("last_used_at"),
            "use_count": int(p.get("use_count", 0)), "outcome_count": int(p.get("outcome_count", 0)),
            "success_count": int(p.get("success_count", 0)), "support": int(p.get("support", 1)),
            "metadata": p.get("metadata") or {},
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], *, vector: np.ndarray | None = None,
                    similarity: float | None = None, score: float | None = None) -> Pattern:
        """A new pattern from :meth:`payload_fields` output, metadata copied (the caller may change
        the pattern freely). The retrieval hot path: it skips the per-field conversions of
        :meth:`from_payload` (~0.6 us instead of ~2.3 us), so ``fields`` must come from
        :meth:`payload_fields`."""
        p = cls.__new__(cls)
        d = p.__dict__  # a plain (non-slots) dataclass: setting every field is what __init__ does
        d.update(fields)
        md = fields["metadata"]
        d["metadata"] = _copy_json(md) if md else {}
        d["vector"] = vector
        d["similarity"] = similarity
        d["score"] = score
        return p

    @classmethod
    def from_payload(cls, pid: Any, payload: Mapping[str, Any], *, vector: np.ndarray | None = None,
                     similarity: float | None = None, score: float | None = None) -> Pattern:
        """Rebuild a pattern from a stored payload (missing bookkeeping fields get defaults)."""
        f = cls.payload_fields(pid, payload)
        f["metadata"] = _copy_json(f["metadata"])
        return cls(**f, vector=vector, similarity=similarity, score=score)

    def to_dict(self, *, with_vector: bool = False) -> dict[str, Any]:
        """JSON-friendly dict (for the CLI and logs); the vector only when asked."""
        d = {"id": self.id, "task": self.task, "title": self.title, "description": self.description,
             "input": self.input, "output": self.output, "reward": self.reward, "success": self.success,
             "agent_id": self.agent_id, "task_type": self.task_type, "source": self.source,
             "created_at": self.created_at, "last_used_at": self.last_used_at, "use_count": self.use_count,
             "outcome_count": self.outcome_count, "success_count": self.success_count, "support": self.support,
             "metadata": self.metadata}
        d["similarity"] = self.similarity
        d["score"] = self.score
        d["reliability"] = self.reliability
        if with_vector and self.vector is not None:
            d["vector"] = [float(x) for x in self.vector]
        return d

    @staticmethod
    def build(task: Any, input: Any, output: Any, reward: Any, success: Any, metadata: Any = None,
              agent_id: Any = None, *, task_type: Any = None, title: Any = None, description: Any = None,
              source: str = "stored", support: int = 1, now: float | None = None) -> Pattern:
        """Validate user input into a new Pattern (id from content) or raise :class:`BankInputError`."""
        for name, v in (("task", task), ("input", input), ("output", output)):
            if not isinstance(v, str):
                raise BankInputError(f"{name} must be a string, got {type(v).__name__}")
        if not task.strip():
            raise BankInputError("task must be a non-empty string")
        r = check_reward(reward)
        if not isinstance(success, (bool, np.bool_)):
            raise BankInputError(f"success must be true or false, got {success!r}")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise BankInputError(f"metadata must be a mapping, got {type(metadata).__name__}")
        md = plain_json(metadata, "metadata")
        if source not in SOURCES:
            raise BankInputError(f"source must be one of {list(SOURCES)}, got {source!r}")
        t = time.time() if now is None else now
        return Pattern(
            id=pattern_id(task, input, output, source=source,
                          outcome=bool(success) if source == "distilled" else None), task=task, input=input, output=output, reward=r,
            success=bool(success), agent_id=_opt_str(agent_id, "agent_id"), task_type=_opt_str(task_type, "task_type"),
            source=source, title=_opt_str(title, "title") or task[:_TITLE_LEN],
            description=_opt_str(description, "description") or "", created_at=t, support=int(support), metadata=md,
        )
