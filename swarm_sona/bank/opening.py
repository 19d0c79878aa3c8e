"""What a ReasoningBank does when it opens: choose the embedder and compare what it found with the
last flush's manifest (partial recovery: missing patterns, a lost last write, rebuilt metadata),
warning loudly about any difference (:class:`BankRecoveryWarning`); points that are not patterns
(:class:`ForeignPoints`, found while the cache loads, see :mod:`.loading`) are reported too.

Example:
    >>> fp = ForeignPoints()
    >>> fp.note("id-1", "no reward"); fp.count, fp.examples[0]["problem"]
    (1, 'no reward')
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

from swarm_sona.bank.backend import StoredPoint
from swarm_sona.bank.errors import BankDimensionError, BankInputError
from swarm_sona.bank.pattern import payload_problem
from swarm_sona.embedding.embedders import Embedder, EmbedderError, get_embedder

__all__ = ["BankRecoveryWarning", "ForeignPoints", "OpenedStore", "open_store", "resolve_embedder", "check_recovery",
           "report_foreign", "usable_points"]

log = logging.getLogger("swarm_sona.bank")
_FOREIGN_EXAMPLES = 5
LOSS_HISTORY = 20   # opens that found problems, kept in the manifest so a later doctor still sees them


class BankRecoveryWarning(UserWarning):
    """The bank opened with less than its last flush recorded, rebuilt its metadata, or skipped
    points that are not patterns (see :meth:`ReasoningBank.stats` ``recovery``)."""


class ForeignPoints:
    """Stored points that are not patterns: their count and a few examples (id, problem)."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[dict[str, str]] = []

    def note(self, pid: str, problem: str) -> None:
        """Count one foreign point (its example kept while there are fewer than five)."""
        self.count += 1
        if len(self.examples) < _FOREIGN_EXAMPLES:
            self.examples.append({"id": pid, "problem": problem})


def usable_points(points: list[StoredPoint]) -> list[StoredPoint]:
    """The points whose payload is a pattern (foreign ones left out)."""
    return [pt for pt in points if payload_problem(pt.payload) is None]


def resolve_embedder(embedder: Embedder | str | None, meta: dict[str, Any] | None, cfg: Any,
                     where: str) -> Embedder:
    """The embedder to open a bank with: the one given (checked against the bank's metadata
    ``meta``), else the one the bank records, else ``cfg.embedder``. ``where`` names the bank in
    errors."""
    if embedder is None and meta and meta.get("embedder"):
        try:
            emb = get_embedder(meta["embedder"])
        except EmbedderError as exc:
            raise EmbedderError(f"the bank at {where} was made by embedder {meta['embedder']!r}, which cannot "
                                f"be loaded here: {exc}") from exc
    elif embedder is None:
        emb = get_embedder(cfg.embedder, cfg.dimensions)
    elif isinstance(embedder, str):
        emb = get_embedder(embedder)
    else:
        emb = embedder
        if not isinstance(getattr(emb, "dim", None), int) or not isinstance(getattr(emb, "name", None), str):
            raise BankInputError(f"embedder must have an int 'dim' and a str 'name', got {emb!r}")
    if cfg.dimensions is not None and cfg.dimensions != emb.dim:
        raise BankDimensionError(f"reasoning_bank.dimensions is {cfg.dimensions} but embedder {emb.name!r} "
                                 f"makes {emb.dim}-d vectors")
    if meta:
        if int(meta["dim"]) != emb.dim:
            raise BankDimensionError(
                f"the bank at {where} holds {meta['dim']}-d vectors made by embedder {meta['embedder']!r}; "
                f"embedder {emb.name!r} makes {emb.dim}-d vectors. Open it with embedder {meta['embedder']!r} "
                "(or no embedder argument) or use another bank")
        if meta.get("embedder") and meta["embedder"] != emb.name:
            raise BankDimensionError(
                f"the bank at {where} was made by embedder {meta['embedder']!r}, not {emb.name!r}: vectors of "
                f"different embedders are not comparable. Open it with embedder {meta['embedder']!r} "
                "or use another bank")
    return emb


@dataclass(frozen=True)
class OpenedStore:
    """What :func:`open_store` found: the bank's ``embedder`` and, when ``bank.json`` was missing,
    the metadata ``rebuilt`` from the manifest or the shard (None otherwise)."""

    embedder: Embedder
    rebuilt: dict[str, Any] | None


def open_store(backend: Any, embedder: Embedder | str | None, cfg: Any) -> OpenedStore:
    """Read (or rebuild) the bank's metadata, choose its embedder (:func:`resolve_embedder`) and
    open ``backend`` with them (creating the store when it is new).

    Example:
        >>> from swarm_sona.bank.edge_backend import EdgeBackend
        >>> from swarm_sona.bank.config import ReasoningBankConfig
        >>> b = EdgeBackend(None, persist=False)
        >>> open_store(b, "hashing-v1-8", ReasoningBankConfig()).embedder.dim, b.read_meta()["dim"]
        (8, 8)
        >>> b.close()
    """
    meta = backend.read_meta()
    rebuilt = None
    if meta is None and hasattr(backend, "recover_meta"):
        meta = rebuilt = backend.recover_meta()
    emb = resolve_embedder(embedder, meta, cfg, backend.location)
    backend.open({"embedder": str(emb.name), "dim": int(emb.dim),
                  "created_at": time.time() if meta is None else meta.get("created_at")})
    return OpenedStore(emb, rebuilt)


def check_recovery(backend: Any, *, dim: int, embedder_name: str, rebuilt: dict[str, Any] | None,
                   foreign: ForeignPoints, replayed: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compare what opened (after the bank's log was replayed: ``replayed``, a
    :class:`~swarm_sona.bank.logged_backend.LogRecovery`, or None without a log) with the last
    flush's manifest: the ``recovery`` report (see :meth:`ReasoningBank.stats`) and the loss
    history to keep in the next manifests. Warns (log and :class:`BankRecoveryWarning`) when
    anything is missing, rebuilt, skipped or damaged; a torn log tail (a write never
    acknowledged) is counted in ``wal`` but is no problem."""
    problems: list[str] = list(replayed.damage) if replayed is not None else []
    man = backend.read_manifest() if hasattr(backend, "read_manifest") else None
    found = backend.count()
    rec: dict[str, Any] = {"checked": True, "manifest": man is not None, "found": found,
                           "expected": None, "missing": 0, "last_write_present": None,
                           "metadata_rebuilt_from": None if rebuilt is None else rebuilt.get("recovered_from"),
                           "foreign_skipped": foreign.count, "foreign_examples": list(foreign.examples),
                           "problems": problems, "wal": None if replayed is None else replayed.to_dict()}
    if rebuilt is not None:
        problems.append(f"bank.json was missing; rebuilt from {rebuilt.get('recovered_from')} "
                        f"({dim}-d, embedder {embedder_name!r})")
    if man is not None:
        rec["expected"] = int(man["count"])
        rec["flushed_at"] = man.get("flushed_at")
        if found < rec["expected"]:
            rec["missing"] = rec["expected"] - found
            problems.append(f"{rec['missing']} of {rec['expected']} patterns recorded at the last flush are "
                            f"missing (found {found}): the shard's WAL or segments were damaged or lost")
        last = man.get("last_write")
        if isinstance(last, dict) and isinstance(last.get("id"), str):
            present = bool(backend.retrieve([last["id"]]))
            rec["last_write_present"] = present
            if not present:
                problems.append(f"the last write before the last flush ({last['id']}) is missing")
    if foreign.count:
        problems.append(_foreign_problem(foreign))
    past = list(man.get("losses") or []) if man is not None else []
    if problems:
        past.append({"at": time.time(), "problems": list(problems)})
    losses = past[-LOSS_HISTORY:]
    rec["past_losses"] = list(losses)
    if problems:
        msg = f"ReasoningBank at {backend.location}: " + "; ".join(problems)
        log.warning(msg)
        warnings.warn(msg, BankRecoveryWarning, stacklevel=4)
    return rec, losses


def _foreign_problem(foreign: ForeignPoints) -> str:
    return f"skipped {foreign.count} stored points that are not patterns (e.g. {foreign.examples[0]['problem']})"


def report_foreign(rec: dict[str, Any], losses: list[dict[str, Any]], foreign: ForeignPoints,
                   location: str) -> list[dict[str, Any]]:
    """After a background cache load found ``foreign`` points: add the problem to the recovery
    report ``rec`` (in place) and to this open's entry of the loss history ``losses`` (returned),
    and warn. Nothing changes when there are none.

    Example:
        >>> rec = {"problems": []}
        >>> fp = ForeignPoints(); fp.note("id-1", "no reward")
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     losses = report_foreign(rec, [], fp, "/b")
        >>> rec["problems"], len(losses)
        (['skipped 1 stored points that are not patterns (e.g. no reward)'], 1)
    """
    if not foreign.count:
        return losses
    problem = _foreign_problem(foreign)
    had = bool(rec.get("problems"))
    rec.setdefault("problems", []).append(problem)
    losses = list(losses)
    if had and losses:   # this open already recorded its problems: add to that entry
        losses[-1] = {**losses[-1], "problems": [*losses[-1]["problems"], problem]}
    else:
        losses = [*losses, {"at": time.time(), "problems": [problem]}][-LOSS_HISTORY:]
    rec["past_losses"] = list(losses)
    msg = f"ReasoningBank at {location}: {problem}"
    log.warning(msg)
    warnings.warn(msg, BankRecoveryWarning, stacklevel=2)
    return losses
