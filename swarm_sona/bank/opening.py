"""What a ReasoningBank does when it opens: choose the embedder, load the hot-path cache from the
store (skipping and counting points that are not patterns), and compare what it found with the
last flush's manifest (partial recovery: missing patterns, a lost last write, rebuilt metadata),
warning loudly about any difference (:class:`BankRecoveryWarning`).

Example:
    >>> fp = ForeignPoints()
    >>> fp.note("id-1", "no reward"); fp.count, fp.examples[0]["problem"]
    (1, 'no reward')
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np

from swarm_sona.bank.backend import BankBackend, StoredPoint
from swarm_sona.bank.cache import CLUSTER_MIN_ROWS, IVF_MIN_ROWS, HotCache
from swarm_sona.bank.errors import BankDimensionError, BankInputError
from swarm_sona.bank.pattern import payload_problem
from swarm_sona.embedding.embedders import Embedder, EmbedderError, get_embedder

__all__ = ["BankRecoveryWarning", "ForeignPoints", "resolve_embedder", "fill_cache", "check_recovery",
           "usable_points"]

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


def fill_cache(backend: BankBackend, cache: HotCache, dim: int, cache_index: str) -> ForeignPoints:
    """Load every pattern of the store into ``cache`` (emptied first); returns the points skipped
    as not patterns. Clusters by reward once at the end and builds the ivf index when configured."""
    foreign = ForeignPoints()
    cache.clear()
    cache.drop_index()  # fill flat, then train the ivf lists once
    if not cache.active:
        return foreign
    cache.defer_cluster = True  # cluster once at the end, not at every growth step
    try:
        for batch in backend.scroll(batch=2048, with_vectors=True):
            good = []
            for pt in batch:
                why = payload_problem(pt.payload)
                if why is None and (pt.vector is None or pt.vector.shape != (dim,)):
                    why = "no vector of the bank's dimension"
                if why is None:
                    good.append(pt)
                else:
                    foreign.note(pt.id, why)
            if not good:
                continue
            V = np.stack([p.vector for p in good if p.vector is not None]).astype(np.float32)
            cache.upsert([p.id for p in good], V, [p.payload for p in good])
            if not cache.active:
                return foreign
    finally:
        cache.defer_cluster = False
    if cache.n >= CLUSTER_MIN_ROWS:
        cache.cluster()
    if cache_index == "ivf":
        cache.index = "ivf"
        if cache.n >= IVF_MIN_ROWS:
            cache.build_index()
    return foreign


def check_recovery(backend: Any, *, dim: int, embedder_name: str, rebuilt: dict[str, Any] | None,
                   foreign: ForeignPoints) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Compare what opened with the last flush's manifest: the ``recovery`` report (see
    :meth:`ReasoningBank.stats`) and the loss history to keep in the next manifests. Warns
    (log and :class:`BankRecoveryWarning`) when anything is missing, rebuilt or skipped."""
    problems: list[str] = []
    man = backend.read_manifest() if hasattr(backend, "read_manifest") else None
    found = backend.count()
    rec: dict[str, Any] = {"checked": True, "manifest": man is not None, "found": found,
                           "expected": None, "missing": 0, "last_write_present": None,
                           "metadata_rebuilt_from": None if rebuilt is None else rebuilt.get("recovered_from"),
                           "foreign_skipped": foreign.count, "foreign_examples": list(foreign.examples),
                           "problems": problems}
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
        problems.append(f"skipped {foreign.count} stored points that are not patterns "
                        f"(e.g. {foreign.examples[0]['problem']})")
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
