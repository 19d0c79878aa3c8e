"""Health of a ReasoningBank: what :meth:`ReasoningBank.stats` reports (:func:`bank_stats`) and what
``swarm-sona doctor BANK`` reports about an embedded bank on disk (:func:`check_bank`).

:func:`check_bank` opens the bank at a directory the way a swarm would (which also rebuilds a
missing ``bank.json`` from the manifest or the shard) and reports what the open found against the
last flush's manifest (:meth:`ReasoningBank.stats` ``recovery``): patterns missing since the last
flush, the last write missing, metadata rebuilt, foreign payloads skipped.

Example:
    >>> import tempfile
    >>> from swarm_sona.bank import ReasoningBank
    >>> d = tempfile.mkdtemp()
    >>> with ReasoningBank(path=d, embedder="hashing-v1-16") as b:
    ...     _ = b.store_pattern("sort a list", "", "sorted()", 1.0, True)
    >>> h = check_bank(d)
    >>> h.healthy, h.count, h.expected
    (True, 1, 1)
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarm_sona.bank.errors import BankError
from swarm_sona.bank.retention import count_created_before
from swarm_sona.core import redaction

__all__ = ["BankHealth", "BankPathError", "check_bank", "bank_stats"]


def bank_stats(bank: Any) -> dict[str, Any]:
    """The report of :meth:`ReasoningBank.stats` (see there) for an open ``bank``, under its lock.
    While the cache loads, the store counts."""
    cache = bank.cache
    n = cache.n if cache.serving else bank.backend.count()
    cutoff = bank.keeper.cutoff()
    pending: int | None = 0
    if cutoff is not None:
        pending = count_created_before(cache, cutoff) if cache.serving else None
    foreign = bank.loading.foreign
    return {"backend": bank.backend.kind, "location": bank.backend.location, "embedder": bank.embedder_name,
            "dim": bank.dim, "count": n, "cache": cache.stats(), "redact": redaction.describe_redactor(bank.config.redact),
            "commits": asdict(bank.commits.stats()), "durability": bank.durability.stats(),
            "cache_load": asdict(bank.load_status()),
            "recovery": {**bank.recovery, "foreign_skipped": foreign.count, "foreign_examples": list(foreign.examples)},
            "retention": bank.keeper.stats(pending)}


class BankPathError(BankError):
    """The path is not an embedded bank (missing, a file, or a directory without a bank in it)."""


@dataclass
class BankHealth:
    """What :func:`check_bank` found; ``healthy`` is True when ``problems`` is empty.

    Example:
        >>> BankHealth(path="/b", healthy=True, count=3).to_dict()["count"]
        3
    """

    path: str
    healthy: bool
    count: int = 0
    expected: int | None = None
    missing: int = 0
    last_write_present: bool | None = None
    metadata_rebuilt_from: str | None = None
    foreign_skipped: int = 0
    foreign_examples: list[dict[str, Any]] = field(default_factory=list)
    embedder: str | None = None
    dim: int | None = None
    problems: list[str] = field(default_factory=list)
    past_losses: list[dict[str, Any]] = field(default_factory=list)
    wal_replayed: int = 0
    wal_torn_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``)."""
        return asdict(self)


def check_bank(path: str | os.PathLike[str], *, embedder: str | None = None) -> BankHealth:
    """Open the embedded bank at ``path`` and report its health (see module docs).

    Raises :class:`BankPathError` when ``path`` holds no bank; other open failures (a locked
    bank, an unusable shard) come back as an unhealthy report naming the error.
    """
    from swarm_sona.bank.bank import ReasoningBank

    p = Path(path).expanduser()
    if not p.exists():
        raise BankPathError(f"{p}: no such directory")
    if not p.is_dir():
        raise BankPathError(f"{p} is a file, not a bank directory")
    if not (p / "bank.json").exists() and not (p / "shard").is_dir():
        raise BankPathError(f"{p} holds no ReasoningBank (neither bank.json nor shard/)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the report says it; no duplicate warning
            bank = ReasoningBank({"backend": "edge", "path": str(p), "persist_to_disk": True}, embedder=embedder)
    except BankError as exc:
        return BankHealth(path=str(p), healthy=False, problems=[f"cannot open: {exc}"])
    try:
        bank.wait_loaded()   # a large bank's cache loads in the background: the foreign points it finds count
        st = bank.stats()
        rec = st["recovery"]
        past = list(rec.get("past_losses") or [])
        if rec["problems"]:
            past = past[:-1]   # the last entry is this open's own finding
        problems = list(rec["problems"]) + [
            f"an earlier open ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(x['at']))}) found: "
            + "; ".join(x["problems"]) for x in past]
        return BankHealth(path=str(p), healthy=not problems, count=int(bank.backend.count()),
                          expected=rec.get("expected"), missing=int(rec.get("missing") or 0),
                          last_write_present=rec.get("last_write_present"),
                          metadata_rebuilt_from=rec.get("metadata_rebuilt_from"),
                          foreign_skipped=int(rec.get("foreign_skipped") or 0),
                          foreign_examples=list(rec.get("foreign_examples") or []), embedder=st["embedder"],
                          dim=st["dim"], problems=problems, past_losses=list(rec.get("past_losses") or []),
                          wal_replayed=int((rec.get("wal") or {}).get("records", 0)),
                          wal_torn_bytes=int((rec.get("wal") or {}).get("torn_bytes", 0)))
    finally:
        bank.close()
