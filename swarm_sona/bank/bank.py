"""The ReasoningBank: patterns on Qdrant (embedded Qdrant Edge by default, a server at scale).

A bank stores patterns (see :mod:`.pattern`) as points of one Qdrant shard/collection: a
unit-norm vector of the task text (or a vector given by the caller) and a JSON payload. It
records the name and dimension of the embedder that made its vectors and refuses any other.
Retrieval is top-k by cosine similarity under payload filters, with a similarity threshold,
an optional recency/reliability score and optional MMR diversification (:mod:`.scoring`).
Reads on the hot path go to an in-memory cache searched by native kernels (:mod:`.cache`: by
default an int8 scan with an exact float32 re-rank, ``cache_int8=False`` for the exact float32
scan, ``cache_index="ivf"`` for an approximate k-means index at large sizes) plus an LRU of
recently written or retrieved patterns; queries with metadata filters go to the store. Every write goes to the store first, then to
the cache, after all input was validated: bad input raises :class:`BankInputError` and
nothing is written.

Backends (``ReasoningBankConfig.backend``): ``edge`` (embedded Qdrant Edge at ``path``, default
under the user's data dir; ``persist_to_disk=False`` for a temporary bank) and ``qdrant``
(qdrant-client against ``url``). With ``qdrant`` several processes may write one collection:
the cache then holds this process's writes plus the state at open or at :meth:`ReasoningBank.refresh`
(set ``cache_size=0`` to always ask the server).

A bank object is thread-safe (one lock around every operation).

Retention (``config.retention``, see :class:`~swarm_sona.core.config.RetentionConfig`): with
``max_age`` set, a pattern whose ``created_at`` is older than ``clock() - max_age`` is never
returned or counted (the cache masks it; store queries get a ``created_at`` range condition)
and is deleted at the next prune: when the bank opens, every ``prune_every`` stored patterns,
on :meth:`ReasoningBank.flush` and on :meth:`ReasoningBank.prune`. With
``max_per_task_type`` set, every store deletes, per task type it wrote, the patterns beyond the
cap (oldest first, lowest reward first among equally old, then by id); the ids a store returns
may thus already be gone when one call writes more than the cap. :meth:`ReasoningBank.stats`
reports what was pruned. With a server collection that several processes write, the cap at
store time counts this process's view (its cache); :meth:`ReasoningBank.prune` counts the store.

Redaction (``config.redact``, see :mod:`swarm_sona.core.redaction`): the redactor runs on the
task, input, output, title, description and metadata strings of every pattern before its id
is derived and before anything is written (stored and distilled patterns, and payloads a
snapshot restores), so neither the payload nor the content-derived id carries the original
text. The vector is the embedding of the *original* task text unless ``embed_redacted`` is
set: a secret then shapes the vector only as a few of its hashed features, which cannot be
read back but can confirm a guessed text; ``embed_redacted=True`` closes that at the price of
slightly different similarities for texts that contained secrets.

Example:
    >>> from swarm_sona.bank import ReasoningBank
    >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-64")
    >>> pid = bank.store_pattern("parse a csv file", "data.csv", "used csv.DictReader", 0.9, True)
    >>> _ = bank.store_pattern("bake bread", "flour", "oven at 220C", 1.0, True)
    >>> [p.task for p in bank.retrieve_patterns("parse the csv data", k=1, min_reward=0.5)]
    ['parse a csv file']
    >>> bank.store_pattern("parse a csv file", "data.csv", "used csv.DictReader", 0.9, True) == pid
    True
    >>> bank.count()
    2
    >>> bank.close()
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.bank.backend import BankBackend, StoredPoint
from swarm_sona.bank.cache import CLUSTER_MIN_ROWS, IVF_MIN_ROWS, HotCache, PayloadLRU
from swarm_sona.bank.commit import GroupCommit
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.distill import summarize_clusters
from swarm_sona.bank.errors import BankClosedError, BankDimensionError, BankInputError
from swarm_sona.bank.filters import Condition, PatternFilter
from swarm_sona.bank.pattern import Pattern, check_reward, payload_problem
from swarm_sona.bank.scoring import ScoreWeights, check_mmr, combined_scores, mmr_order
from swarm_sona.core import redaction
from swarm_sona.core.trajectory import Trajectory, TrajectoryError
from swarm_sona.embedding.embedders import Embedder, EmbedderError, get_embedder

__all__ = ["ReasoningBank", "BankRecoveryWarning", "StoreReceipt"]

log = logging.getLogger("swarm_sona.bank")
_FOREIGN_EXAMPLES = 5
_LOSS_HISTORY = 20   # opens that found problems, kept in the manifest so a later doctor still sees them


@dataclass(frozen=True)
class StoreReceipt:
    """What :meth:`ReasoningBank.write_many` wrote: the pattern ids (in input order) and the write
    number to pass to :meth:`ReasoningBank.wait_durable` before acknowledging them.

    Example:
        >>> StoreReceipt(["id"], 3).seq
        3
    """

    ids: list[str]
    seq: int


class BankRecoveryWarning(UserWarning):
    """The bank opened with less than its last flush recorded, rebuilt its metadata, or skipped
    points that are not patterns (see :meth:`ReasoningBank.stats` ``recovery``)."""

_ITEM_KEYS = ("task", "input", "output", "reward", "success", "metadata", "agent_id", "task_type", "vector",
              "title", "description")
_BOOKKEEPING = ("created_at", "last_used_at", "use_count", "outcome_count", "success_count", "support")
_SNAPSHOT_KIND = "reasoning_bank"
_REDACTED_KEYS = ("task", "input", "output", "title", "description", "metadata")
_DELETE_BATCH = 4096


_TIE_EXTRA = 7   # candidates fetched beyond k so that equal similarities can be ordered


def _break_ties(pats: list[Pattern]) -> list[Pattern]:
    """Patterns best first: by similarity, equal similarities by reward, then by recency (the
    newest first), so that with k=1 a success beats an equally similar failure."""
    return sorted(pats, key=lambda p: (-(p.similarity or 0.0), -p.reward, -p.created_at))


def _make_backend(cfg: ReasoningBankConfig, client: Any) -> BankBackend:
    if cfg.backend == "edge":
        from swarm_sona.bank.edge_backend import EdgeBackend

        return EdgeBackend(cfg.path, persist=cfg.persist_to_disk)
    from swarm_sona.bank.qdrant_backend import QdrantBackend

    return QdrantBackend(cfg.url, api_key=cfg.api_key, api_key_env=cfg.api_key_env, prefer_grpc=cfg.prefer_grpc,
                         https=cfg.https,
                         collection=cfg.collection, retries=cfg.retries, backoff_s=cfg.retry_backoff_s,
                         batch_size=cfg.batch_size, timeout_s=cfg.timeout_s, client=client)


class ReasoningBank:
    """Pattern store with filtered similarity retrieval and distillation (see module docs).

    Args:
        config: a :class:`ReasoningBankConfig`, a mapping for it, or None for defaults.
        embedder: an :class:`Embedder`, an embedder name, or None: the embedder recorded in an
            existing bank, else ``config.embedder``.
        path: shortcut for an embedded bank at this directory (sets ``backend='edge'``,
            ``persist_to_disk=True``).
        client: an existing ``QdrantClient`` for the ``qdrant`` backend (e.g. local mode).
        clock: the time source for creation times, ``mark_used`` and retention (default
            ``time.time``; tests pass a fake clock).
    """

    def __init__(self, config: ReasoningBankConfig | Mapping[str, Any] | None = None, *,
                 embedder: Embedder | str | None = None, path: str | Path | None = None, client: Any = None,
                 clock: Callable[[], float] | None = None) -> None:
        cfg = config if isinstance(config, ReasoningBankConfig) else ReasoningBankConfig.from_dict(config)
        if path is not None:
            cfg = cfg.replace(backend="edge", path=str(path), persist_to_disk=True)
        if client is not None and cfg.backend != "qdrant":
            raise BankInputError("client= is only for backend 'qdrant'")
        self.config = cfg
        self._lock = threading.RLock()
        self._manifest_lock = threading.Lock()   # one manifest writer at a time (group-commit leader, close)
        self._closed = False
        # durable acknowledgements: writes are numbered, a shared flush covers many (see .commit)
        self.commits = GroupCommit(self._commit)
        self.clock: Callable[[], float] = clock or time.time
        self.redactor = redaction.resolve_redactor(cfg.redact, "reasoning_bank.redact")
        self.retention = cfg.retention
        self._pruned = {"expired": 0, "over_cap": 0, "runs": 0, "last_at": None}
        self._since_prune = 0
        # called with the ids of every delete (delete() and retention), e.g. to drop them from an
        # index kept next to the bank; a listener must not call back into the bank
        self.delete_listeners: list[Callable[[list[str]], None]] = []
        self.backend = _make_backend(cfg, client)
        self._last_write: dict[str, Any] | None = None
        self._flushes = 0
        self._losses: list[dict[str, Any]] = []
        self._foreign: dict[str, Any] = {"count": 0, "examples": []}
        self.recovery: dict[str, Any] = {"checked": False, "problems": []}
        try:
            meta = self.backend.read_meta()
            rebuilt = None
            if meta is None and hasattr(self.backend, "recover_meta"):
                meta = rebuilt = self.backend.recover_meta()
            self.embedder = self._resolve_embedder(embedder, meta)
            self.dim = int(self.embedder.dim)
            self.embedder_name = str(self.embedder.name)
            self.backend.open({"embedder": self.embedder_name, "dim": self.dim,
                               "created_at": time.time() if meta is None else meta.get("created_at")})
            self.cache = HotCache(self.dim, cfg.cache_size, int8=cfg.cache_int8, index=cfg.cache_index,
                                  probe=cfg.cache_probe, rerank=int(cfg.cache_rerank),
                                  threads=int(cfg.cache_threads), int4_from=int(cfg.cache_int4_from))
            self.cache.max_age = self.retention.max_age
            self.cache.clock = self.clock
            self.payloads = PayloadLRU(cfg.payload_cache)
            self._fill_cache()
            self._check_recovery(rebuilt)
            if self.retention.active:
                self._prune(store=not self.cache.active)
        except BaseException:
            self.backend.close()
            raise

    def _check_recovery(self, rebuilt: dict[str, Any] | None) -> None:
        """Compare what opened with the last flush's manifest; warn loudly about any difference."""
        problems: list[str] = []
        man = self.backend.read_manifest() if hasattr(self.backend, "read_manifest") else None
        found = self.backend.count()
        rec: dict[str, Any] = {"checked": True, "manifest": man is not None, "found": found,
                               "expected": None, "missing": 0, "last_write_present": None,
                               "metadata_rebuilt_from": None if rebuilt is None else rebuilt.get("recovered_from"),
                               "foreign_skipped": self._foreign["count"],
                               "foreign_examples": list(self._foreign["examples"]), "problems": problems}
        if rebuilt is not None:
            problems.append(f"bank.json was missing; rebuilt from {rebuilt.get('recovered_from')} "
                            f"({self.dim}-d, embedder {self.embedder_name!r})")
        if man is not None:
            rec["expected"] = int(man["count"])
            rec["flushed_at"] = man.get("flushed_at")
            if found < rec["expected"]:
                rec["missing"] = rec["expected"] - found
                problems.append(f"{rec['missing']} of {rec['expected']} patterns recorded at the last flush are "
                                f"missing (found {found}): the shard's WAL or segments were damaged or lost")
            last = man.get("last_write")
            if isinstance(last, dict) and isinstance(last.get("id"), str):
                present = bool(self.backend.retrieve([last["id"]]))
                rec["last_write_present"] = present
                if not present:
                    problems.append(f"the last write before the last flush ({last['id']}) is missing")
        if self._foreign["count"]:
            problems.append(f"skipped {self._foreign['count']} stored points that are not patterns "
                            f"(e.g. {self._foreign['examples'][0]['problem']})")
        past = list(man.get("losses") or []) if man is not None else []
        if problems:
            past.append({"at": time.time(), "problems": list(problems)})
        self._losses = past[-_LOSS_HISTORY:]
        rec["past_losses"] = list(self._losses)
        self.recovery = rec
        if problems:
            msg = f"ReasoningBank at {self.backend.location}: " + "; ".join(problems)
            log.warning(msg)
            warnings.warn(msg, BankRecoveryWarning, stacklevel=3)

    def _note_foreign(self, pid: str, problem: str) -> None:
        f = self._foreign
        f["count"] += 1
        if len(f["examples"]) < _FOREIGN_EXAMPLES:
            f["examples"].append({"id": pid, "problem": problem})

    def _usable(self, points: list[StoredPoint]) -> list[StoredPoint]:
        """The points whose payload is a pattern (foreign ones counted, not returned)."""
        out = []
        for pt in points:
            why = payload_problem(pt.payload)
            if why is None:
                out.append(pt)
        return out

    # ---- construction helpers --------------------------------------------------------
    def _resolve_embedder(self, embedder: Embedder | str | None, meta: dict[str, Any] | None) -> Embedder:
        cfg = self.config
        where = self.backend.location
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

    def _fill_cache(self) -> None:
        cache = self.cache
        self._foreign = {"count": 0, "examples": []}
        self.payloads.clear()
        cache.clear()
        cache.drop_index()  # fill flat, then train the ivf lists once
        if not cache.active:
            return
        cache.defer_cluster = True  # cluster once at the end, not at every growth step
        try:
            for batch in self.backend.scroll(batch=2048, with_vectors=True):
                good = []
                for pt in batch:
                    why = payload_problem(pt.payload)
                    if why is None and (pt.vector is None or pt.vector.shape != (self.dim,)):
                        why = "no vector of the bank's dimension"
                    if why is None:
                        good.append(pt)
                    else:
                        self._note_foreign(pt.id, why)
                if not good:
                    continue
                ids = [p.id for p in good]
                V = np.stack([p.vector for p in good]).astype(np.float32)
                cache.upsert(ids, V, [p.payload for p in good])
                if not cache.active:
                    return
        finally:
            cache.defer_cluster = False
        if cache.n >= CLUSTER_MIN_ROWS:
            cache.cluster()
        if self.config.cache_index == "ivf":
            cache.index = "ivf"
            if cache.n >= IVF_MIN_ROWS:
                cache.build_index()

    def refresh(self) -> None:
        """Rebuild the hot-path cache from the store (for a server collection others write to too)."""
        with self._lock:
            self._check_open()
            self._fill_cache()

    # ---- validation ----------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise BankClosedError(f"the bank at {self.backend.location} is closed")

    def _unit(self, v: Any, what: str) -> np.ndarray:
        if isinstance(v, np.ndarray) and v.dtype == np.float32:
            arr = v
        else:
            try:
                arr = np.asarray(v, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise BankInputError(f"{what} is not numeric: {exc}") from exc
        if arr.ndim != 1:
            raise BankInputError(f"{what} must be 1-D, got shape {arr.shape}")
        if arr.shape[0] != self.dim:
            raise BankDimensionError(f"{what} has dimension {arr.shape[0]}, but this bank holds {self.dim}-d "
                                     f"vectors made by embedder {self.embedder_name!r}")
        with np.errstate(over="ignore", invalid="ignore"):
            ss = float(arr @ arr)  # one pass: NaN/inf show up here (or an overflow of huge values)
        if not math.isfinite(ss):
            if not np.all(np.isfinite(arr)):
                raise BankInputError(f"{what} contains NaN or inf")
            a64 = arr.astype(np.float64)
            return (a64 / math.sqrt(float(a64 @ a64))).astype(np.float32)
        if ss == 0.0:
            raise BankInputError(f"{what} is all zeros (an empty text, or no word characters?)")
        return (arr / np.float32(math.sqrt(ss))).astype(np.float32, copy=False)

    def _query_vector(self, query: Any, vector: Any) -> np.ndarray:
        if vector is not None and query is not None:
            raise BankInputError("give a task text or a vector, not both")
        if vector is None and isinstance(query, (np.ndarray, list, tuple)):
            query, vector = None, query
        if vector is not None:
            return self._unit(vector, "query vector")
        if not isinstance(query, str):
            raise BankInputError(f"query must be a task text or a vector, got {type(query).__name__}")
        return self._unit(self.embedder.embed([query])[0], f"embedding of query {query[:60]!r}")

    # ---- writes --------------------------------------------------------------------
    def store_pattern(self, task: str, input: str, output: str, reward: float, success: bool,
                      metadata: Mapping[str, Any] | None = None, agent_id: str | None = None, *,
                      task_type: str | None = None, vector: Any = None, title: str | None = None,
                      description: str | None = None) -> str:
        """Store one pattern; returns its content-derived id (storing it again updates it in place).

        The vector is the embedding of ``task`` unless ``vector`` is given. Re-storing keeps the
        creation time and use counts and takes the new reward, success and metadata.
        """
        item = {"task": task, "input": input, "output": output, "reward": reward, "success": success,
                "metadata": metadata, "agent_id": agent_id, "task_type": task_type, "vector": vector,
                "title": title, "description": description}
        return self._store([item], single=True).ids[0]

    def store_many(self, items: Iterable[Mapping[str, Any]], *, durable: bool = False) -> list[str]:
        """Store many patterns in one batch (keys as :meth:`store_pattern`'s arguments); returns ids.

        Every item is validated before anything is written. With ``durable`` the call returns only
        once a flush of the store covers the write (group commit: concurrent durable calls from
        several threads share one flush, see :mod:`.commit`); without it the write is durable at
        the next :meth:`flush`.

        Example:
            >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-32")
            >>> ids = bank.store_many([{"task": "t", "reward": 1.0, "success": True}], durable=True)
            >>> bank.stats()["commits"]["flushes"]
            1
            >>> bank.close()
        """
        receipt = self._store(list(items), single=False)
        if durable:
            self.commits.wait_durable(receipt.seq)
        return receipt.ids

    def write_many(self, items: Iterable[Mapping[str, Any]]) -> StoreReceipt:
        """:meth:`store_many` without waiting: the ids and the write number to pass to
        :meth:`wait_durable` before acknowledging them (so that a caller can update its own index
        under its own lock and wait for durability outside it).

        Example:
            >>> bank = ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-32")
            >>> r = bank.write_many([{"task": "t", "reward": 1.0, "success": True}])
            >>> bank.wait_durable(r.seq); bank.close()
        """
        return self._store(list(items), single=False)

    def wait_durable(self, seq: int | None = None) -> None:
        """Return once a flush covers write number ``seq`` (a :class:`StoreReceipt`'s; default:
        every write so far), running the flush when none is running (group commit). Raises
        :class:`~swarm_sona.bank.commit.CommitError` when that flush fails."""
        self.commits.wait_durable(seq)

    def _redact_item(self, it: Mapping[str, Any], where: str) -> dict[str, Any]:
        """A copy of a store item with the redactor applied to its text fields (non-strings are left
        for validation to refuse)."""
        fn = self.redactor
        out = dict(it)
        for key in _REDACTED_KEYS:
            v = out.get(key)
            if v is not None:
                try:
                    out[key] = redaction.redact_value(fn, v, key)
                except redaction.RedactionError as exc:
                    raise BankInputError(f"{where}{exc}") from exc
        return out

    def _redact_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return self._redact_item(payload, "") if self.redactor is not None else dict(payload)

    def _store(self, items: list[Mapping[str, Any]], *, single: bool) -> StoreReceipt:
        now = self.clock()
        patterns: list[Pattern] = []
        given: list[Any] = []
        originals: list[str] = []
        redact = self.redactor is not None
        for i, it in enumerate(items):
            where = "" if single else f"item {i}: "
            if not isinstance(it, Mapping):
                raise BankInputError(f"{where}expected a mapping, got {type(it).__name__}")
            unknown = [k for k in it if k not in _ITEM_KEYS]
            if unknown:
                raise BankInputError(f"{where}unknown key {unknown[0]!r} (valid: {', '.join(_ITEM_KEYS)})")
            missing = [k for k in ("task", "reward", "success") if k not in it]
            if missing:
                raise BankInputError(f"{where}missing {missing[0]!r}")
            originals.append(it["task"])
            if redact:
                it = self._redact_item(it, where)
            try:
                p = Pattern.build(it["task"], it.get("input", ""), it.get("output", ""), it["reward"], it["success"],
                                  it.get("metadata"), it.get("agent_id"), task_type=it.get("task_type"),
                                  title=it.get("title"), description=it.get("description"), now=now)
            except BankInputError as exc:
                raise type(exc)(f"{where}{exc}") from exc
            patterns.append(p)
            given.append(it.get("vector"))
        with self._lock:
            self._check_open()
            V = np.empty((len(patterns), self.dim), np.float32)
            to_embed = [i for i, v in enumerate(given) if v is None]
            if to_embed:
                original = redact and not self.config.embed_redacted  # see the module docs
                E = self.embedder.embed([originals[i] if original else patterns[i].task for i in to_embed])
                for j, i in enumerate(to_embed):
                    V[i] = self._unit(E[j], f"{'' if single else f'item {i}: '}embedding of task "
                                            f"{patterns[i].task[:60]!r}")
            for i, v in enumerate(given):
                if v is not None:
                    V[i] = self._unit(v, f"{'' if single else f'item {i}: '}vector")
            ids = self._write(patterns, V)
            self._after_store({p.task_type for p in patterns}, len(patterns))
            return StoreReceipt(ids, self.commits.note_write())

    def _existing_payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if self.cache.active:
            ids = [i for i in ids if i in self.cache]
        return {p.id: p.payload for p in self.backend.retrieve(list(ids))} if ids else {}

    def _write(self, patterns: list[Pattern], V: np.ndarray, *, keep_bookkeeping: bool = True) -> list[str]:
        order: dict[str, int] = {}
        for i, p in enumerate(patterns):
            order[p.id] = i  # the last occurrence of a duplicate wins
        rows = list(order.values())
        ids = [patterns[i].id for i in rows]
        payloads = [patterns[i].to_payload() for i in rows]
        if keep_bookkeeping:
            old = self._existing_payloads(ids)
            cutoff = self._cutoff()
            for pid, pl in zip(ids, payloads, strict=True):
                if pid in old and (cutoff is None or float(old[pid].get("created_at", 0.0)) >= cutoff):
                    # (an expired pattern stored again starts afresh instead of staying expired)
                    for key in _BOOKKEEPING:
                        if key in old[pid]:
                            pl[key] = old[pid][key]
        Vw = V[rows]
        self.backend.upsert(ids, Vw, payloads)
        self._last_write = {"id": ids[-1], "at": self.clock()}
        self._remember(ids, payloads)
        self.cache.upsert(ids, Vw, payloads)
        return [p.id for p in patterns]

    def _remember(self, ids: Sequence[str], payloads: Sequence[Mapping[str, Any]]) -> None:
        """Put just-written patterns into the pattern LRU (write-through: a pattern stored now is
        likely retrieved soon, and its payload is in hand)."""
        lru = self.payloads
        if lru.size <= 0:
            return
        for pid, pl in zip(ids[-lru.size:], payloads[-lru.size:], strict=True):
            lru.put(pid, Pattern.payload_fields(pid, pl))

    @staticmethod
    def _check_ids(ids: str | Iterable[str]) -> list[str]:
        lst = [ids] if isinstance(ids, str) else list(ids)
        out = []
        for i in lst:
            try:
                out.append(str(uuid.UUID(str(i))))
            except ValueError as exc:
                raise BankInputError(f"{i!r} is not a pattern id (a UUID)") from exc
        return out

    def delete(self, ids: str | Iterable[str]) -> int:
        """Delete patterns by id; returns how many existed."""
        lst = self._check_ids(ids)
        with self._lock:
            self._check_open()
            present = [p.id for p in self.backend.retrieve(lst)]
            self._delete_ids(present)
            return len(present)

    def mark_used(self, ids: str | Iterable[str], *, success: bool | None = None, now: float | None = None) -> int:
        """Record that patterns were used (use count, last-used time) and, if known, whether the
        task they guided succeeded (feeds :attr:`Pattern.reliability`). Returns how many existed."""
        lst = self._check_ids(ids)
        if success is not None and not isinstance(success, (bool, np.bool_)):
            raise BankInputError(f"success must be true, false or None, got {success!r}")
        t = self.clock() if now is None else float(now)
        with self._lock:
            self._check_open()
            found = self.backend.retrieve(lst)
            for p in found:
                fields: dict[str, Any] = {"use_count": int(p.payload.get("use_count", 0)) + 1, "last_used_at": t}
                if success is not None:
                    fields["outcome_count"] = int(p.payload.get("outcome_count", 0)) + 1
                    fields["success_count"] = int(p.payload.get("success_count", 0)) + int(bool(success))
                self.backend.set_payload([p.id], fields)
                self.payloads.discard([p.id])
            return len(found)

    # ---- reads ---------------------------------------------------------------------
    def get(self, pattern_id: str) -> Pattern | None:
        """The pattern with this id (vector included), or None."""
        (pid,) = self._check_ids(pattern_id)
        with self._lock:
            self._check_open()
            pts = self.backend.retrieve([pid], with_vectors=True)
            cutoff = self._cutoff()
        if not pts or (cutoff is not None and not float(pts[0].payload.get("created_at", 0.0)) >= cutoff):
            return None  # an expired pattern is gone, even before a prune deletes it
        return Pattern.from_payload(pts[0].id, pts[0].payload, vector=pts[0].vector)

    def count(self, *, min_reward: float | None = None, success: bool | None = None,
              source_agents: str | Sequence[str] | None = None, task_type: str | Sequence[str] | None = None,
              metadata: Mapping[str, Any] | None = None, source: str | None = None) -> int:
        """Number of patterns (meeting the filters, same meaning as in :meth:`retrieve_patterns`)."""
        filt = PatternFilter.build(min_reward=min_reward, success=success, agents=source_agents,
                                   task_type=task_type, source=source, metadata=metadata)
        with self._lock:
            self._check_open()
            if self.cache.active and filt.cache_filterable:
                return self.cache.count(filt)
            return self.backend.count(self._conditions(filt))

    def _cached_hits(self, q: np.ndarray, n: int, filt: PatternFilter, thr: float,
                     need_vectors: bool) -> list[tuple[dict[str, Any], float, np.ndarray | None]]:
        """The hot path: (pattern fields, similarity, vector) of the cache's top ``n`` with
        similarity >= ``thr``, best first; fields from the pattern LRU, else one store read."""
        cache = self.cache
        rows, sims = cache.search_rows(q, n, filt)
        ids, lru = cache.ids, self.payloads
        hits: list[list[Any]] = []
        missing: list[str] = []
        for r, s in zip(rows.tolist(), sims.tolist(), strict=True):
            if not s >= thr:  # best first: the rest are below the threshold too
                break
            pid = ids[r]
            f = lru.get(pid)
            if f is None:
                missing.append(pid)
            hits.append([pid, f, s, r])
        if missing:
            got = {}
            for p in self.backend.retrieve(missing):
                got[p.id] = f = Pattern.payload_fields(p.id, p.payload)
                lru.put(p.id, f)
            for h in hits:
                if h[1] is None:
                    h[1] = got.get(h[0])
        vecs = cache.vectors
        return [(f, s, vecs[r].copy() if need_vectors else None) for _, f, s, r in hits if f is not None]

    def _candidates(self, q: np.ndarray, n: int, filt: PatternFilter, *, need_vectors: bool,
                    exact: bool) -> list[StoredPoint]:
        if self.cache.active and filt.cache_filterable:
            ids, sims = self.cache.search(q, n, filt)
            got = {p.id: p for p in self.backend.retrieve(ids)} if ids else {}
            return [StoredPoint(pid, got[pid].payload, self.cache.vectors_of([pid])[0] if need_vectors else None, s)
                    for pid, s in zip(ids, sims.tolist(), strict=True) if pid in got]
        return self._usable(self.backend.search(q, n, self._conditions(filt), with_vectors=need_vectors,
                                                exact=exact))

    def retrieve_patterns(self, query: str | np.ndarray | None = None, k: int | None = None, *,
                          vector: Any = None, min_reward: float | None = None, success: bool | None = None,
                          source_agents: str | Sequence[str] | None = None,
                          task_type: str | Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None,
                          source: str | None = None, similarity_threshold: float | None = None,
                          mmr: float | None = None, score_weights: ScoreWeights | None = None,
                          with_vectors: bool = False, exact: bool = False) -> list[Pattern]:
        """The ``k`` best patterns for a task text (or a vector), best first.

        Filters (all optional, combined with AND): ``min_reward`` (reward >= it), ``success``,
        ``source_agents`` (agent id in the list), ``task_type`` (one or several), ``source``
        (``stored``/``distilled``), ``metadata`` (see :mod:`.filters`). ``similarity_threshold``
        (default ``config.similarity_threshold``) drops patterns with a lower cosine similarity.
        ``score_weights`` adds recency/reliability terms to the ranking score; ``mmr`` (lambda in
        [0, 1]) diversifies the result. ``k`` defaults to ``config.default_k``. ``exact`` asks the
        store for exact search when the query goes to the store (metadata filters, no cache).
        Each returned pattern carries ``similarity`` (cosine) and ``score`` (the ranking score).
        """
        if k is None:
            k = self.config.default_k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise BankInputError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        filt = PatternFilter.build(min_reward=min_reward, success=success, agents=source_agents,
                                   task_type=task_type, source=source, metadata=metadata)
        thr = self.config.similarity_threshold if similarity_threshold is None else similarity_threshold
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not -1.0 <= float(thr) <= 1.0 \
                or math.isnan(float(thr)):
            raise BankInputError(f"similarity_threshold must be a number in [-1, 1], got {thr!r}")
        lam = check_mmr(mmr)
        if score_weights is not None and not isinstance(score_weights, ScoreWeights):
            raise BankInputError(f"score_weights must be a ScoreWeights, got {type(score_weights).__name__}")
        sw = score_weights if score_weights is not None and not score_weights.is_plain else None
        rerank = lam is not None or sw is not None
        n_cand = max(4 * k, k + 16) if rerank else k + _TIE_EXTRA
        q = self._query_vector(query, vector)
        need_vectors = rerank or with_vectors
        with self._lock:
            self._check_open()
            if self.cache.active and filt.cache_filterable:
                hits = self._cached_hits(q, n_cand, filt, thr, need_vectors)
                cands = None
            else:
                cands = self._usable(self.backend.search(q, n_cand, self._conditions(filt),
                                                         with_vectors=need_vectors, exact=exact))
        if cands is None:
            from_fields = Pattern.from_fields
            pats = [from_fields(f, vector=v, similarity=s, score=s) for f, s, v in hits]
        else:
            pats = [Pattern.from_payload(c.id, c.payload, vector=c.vector, similarity=c.score, score=c.score)
                    for c in cands if c.score is not None and c.score >= thr]
        if not rerank:
            out = _break_ties(pats)[:k]
        else:
            sims = np.array([p.similarity for p in pats], np.float64)
            scores = combined_scores(pats, sims, sw) if sw is not None else sims
            for p, s in zip(pats, scores, strict=True):
                p.score = float(s)
            if lam is not None and pats:
                order = mmr_order(scores, np.stack([p.vector for p in pats]), k, lam)
            else:
                rew = np.array([p.reward for p in pats], np.float64)
                rec = np.array([p.created_at for p in pats], np.float64)
                order = list(np.lexsort((-rec, -rew, -scores))[:k]) if pats else []
            out = [pats[i] for i in order]
        if not with_vectors:
            for p in out:
                p.vector = None
        return out

    # ---- distillation --------------------------------------------------------------
    def distill(self, trajectories: Iterable[Trajectory | Mapping[str, Any]], *, k: int | None = None,
                merge_threshold: float | None = None) -> dict[str, Any]:
        """Distil trajectories into patterns (seeded k-means++; see :mod:`.distill`).

        A cluster whose centroid is within ``merge_threshold`` (cosine, default
        ``config.merge_threshold``) of an existing pattern with the same outcome merges into it:
        the support-weighted mean of vectors and rewards, support added up. Otherwise it becomes
        a new pattern with ``source='distilled'``. Returns ``{"trajectories", "clusters",
        "created": [ids], "merged": [ids]}``.
        """
        trajs: list[Trajectory] = []
        for i, t in enumerate(trajectories):
            if not isinstance(t, Trajectory):
                try:
                    t = Trajectory.from_dict(dict(t))
                except (TrajectoryError, TypeError, ValueError) as exc:
                    raise BankInputError(f"trajectory {i}: {exc}") from exc
            if t.dim != self.dim:
                raise BankDimensionError(f"trajectory {i} embedding has dimension {t.dim}, but this bank holds "
                                         f"{self.dim}-d vectors made by embedder {self.embedder_name!r}")
            trajs.append(t)
        thr = self.config.merge_threshold if merge_threshold is None else merge_threshold
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not -1.0 <= float(thr) <= 1.0:
            raise BankInputError(f"merge_threshold must be a number in [-1, 1], got {thr!r}")
        kk = self.config.distill_clusters if k is None else k
        if isinstance(kk, bool) or not isinstance(kk, int) or kk < 1:
            raise BankInputError(f"k must be a positive integer, got {kk!r}")
        summaries = summarize_clusters(trajs, kk, seed=self.config.seed)
        created: list[str] = []
        merged: list[str] = []
        with self._lock:
            self._check_open()
            for s in summaries:
                c = self._unit(s.centroid, "cluster centroid")
                hits = self._candidates(c, 1, PatternFilter(success=s.success), need_vectors=True, exact=True)
                if hits and hits[0].score is not None and hits[0].score >= thr:
                    merged.append(self._merge_into(hits[0], s, c))
                else:
                    created.append(self._create_distilled(s, c))
            if created:
                self._after_store({s.task_type for s in summaries}, len(created))
            self.commits.note_write()
        return {"trajectories": len(trajs), "clusters": len(summaries), "created": created, "merged": merged}

    def _create_distilled(self, s: Any, c: np.ndarray) -> str:
        rep, best = s.representative, s.best
        it = {"task": rep.task, "output": best.output, "description": s.description()}
        if self.redactor is not None:
            it = self._redact_item(it, "distilled pattern: ")
        p = Pattern.build(it["task"], "", it["output"], check_reward(s.mean_reward), s.success,
                          {"models": s.models, "success_rate": s.success_rate}, s.agent_id, task_type=s.task_type,
                          description=it["description"], source="distilled", support=s.size, now=self.clock())
        return self._write([p], c[None, :])[0]

    def _merge_into(self, hit: StoredPoint, s: Any, c: np.ndarray) -> str:
        old = Pattern.from_payload(hit.id, hit.payload)
        w_old, w_new = max(1, old.support), s.size
        v = w_old * hit.vector.astype(np.float64) + w_new * c.astype(np.float64)
        v = self._unit(v, "merged vector")
        old.reward = float(min(1.0, max(0.0, (w_old * old.reward + w_new * s.mean_reward) / (w_old + w_new))))
        old.support = w_old + w_new
        old.metadata = {**old.metadata, "distilled_merges": int(old.metadata.get("distilled_merges", 0)) + 1}
        payload = old.to_payload()
        self.backend.upsert([old.id], v[None, :], [payload])
        self._remember([old.id], [payload])
        self.cache.upsert([old.id], v[None, :], [payload])
        return old.id

    # ---- snapshots -----------------------------------------------------------------
    def snapshot(self, path: str | Path) -> int:
        """Write every pattern (ids, vectors, payloads) and the bank metadata to one checkpoint file
        (msgpack, CRC-checked, atomic). Works for both backends, so it also migrates a bank
        between them. Expired patterns (``retention.max_age``) are left out. Returns the number of
        patterns written."""
        from swarm_sona.core import codec

        with self._lock:
            self._check_open()
            ids: list[str] = []
            vecs: list[np.ndarray] = []
            payloads: list[dict[str, Any]] = []
            cutoff = self._cutoff()
            for batch in self.backend.scroll(batch=2048, with_vectors=True):
                for p in batch:
                    if cutoff is not None and not float(p.payload.get("created_at", 0.0)) >= cutoff:
                        continue  # expired: not exported, even before a prune deletes it
                    ids.append(p.id)
                    vecs.append(p.vector)
                    payloads.append(p.payload)
            V = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, self.dim), np.float32)
            codec.write_checkpoint(path, {"embedder": self.embedder_name, "dim": self.dim, "ids": ids,
                                          "vectors": V, "payloads": payloads}, kind=_SNAPSHOT_KIND)
            return len(ids)

    def restore(self, path: str | Path) -> int:
        """Replace the bank's content with a snapshot's (same embedder required). Returns the count."""
        from swarm_sona.core import codec

        try:
            body = codec.read_checkpoint(path, kind=_SNAPSHOT_KIND, fallback=False)
        except codec.CodecError as exc:
            raise BankInputError(f"{path}: not a usable ReasoningBank snapshot: {exc}") from exc
        try:
            ids, V, payloads = list(body["ids"]), np.asarray(body["vectors"], np.float32), list(body["payloads"])
            emb, dim = str(body["embedder"]), int(body["dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BankInputError(f"{path}: malformed ReasoningBank snapshot ({exc})") from exc
        if dim != self.dim or emb != self.embedder_name:
            raise BankDimensionError(f"{path} holds {dim}-d vectors of embedder {emb!r}; this bank uses "
                                     f"{self.dim}-d vectors of {self.embedder_name!r}")
        if V.shape != (len(ids), dim) or len(payloads) != len(ids) or not np.all(np.isfinite(V)):
            raise BankInputError(f"{path}: inconsistent snapshot (ids, vectors and payloads disagree)")
        ids = self._check_ids(ids)
        if self.redactor is not None:
            payloads = [self._redact_payload(pl) if isinstance(pl, Mapping) else pl for pl in payloads]
        with self._lock:
            self._check_open()
            self.backend.clear()
            self.cache.clear()
            if ids:
                self.backend.upsert(ids, V, payloads)
            self._fill_cache()
            if self.retention.active:
                self._prune(store=not self.cache.active)
            return len(ids)

    # ---- maintenance ---------------------------------------------------------------
    def optimize(self) -> bool:
        """Build the store's HNSW index now (and re-cluster the hot-path cache by reward, see
        :meth:`HotCache.cluster`). Blocking (seconds at 10k patterns, minutes at 100k for the embedded
        engine): call it from a maintenance step, never on the hot path. True if the store did work."""
        with self._lock:
            self._check_open()
            if self.cache.active and self.cache.n >= CLUSTER_MIN_ROWS:
                self.cache.cluster()
            return self.backend.optimize()

    def stats(self) -> dict[str, Any]:
        """Backend, location, embedder, dimension, pattern count (stored, including expired ones not
        yet pruned), cache state, the redactor, and retention: the limits, ``pruned_expired`` and
        ``pruned_over_cap`` (patterns this bank object deleted), ``prune_runs``, ``last_prune_at``
        and ``expired_pending`` (expired, not yet deleted; None when only the store could tell).

        ``recovery`` says what the open found against the last flush's manifest (embedded bank):
        ``expected`` and ``found`` counts, ``missing``, ``last_write_present``,
        ``metadata_rebuilt_from`` (bank.json was missing), ``foreign_skipped`` (stored points that
        are not patterns, left out of the cache and of results) with a few ``foreign_examples``,
        and ``problems``, one sentence each (empty when the bank opened whole)."""
        with self._lock:
            self._check_open()
            n = self.cache.n if self.cache.active else self.backend.count()
            cutoff = self._cutoff()
            pending: int | None = 0
            if cutoff is not None:
                pending = self.cache.count_created_before(cutoff) if self.cache.active else None
            ret = self.retention
            return {"backend": self.backend.kind, "location": self.backend.location, "embedder": self.embedder_name,
                    "dim": self.dim, "count": n, "cache": self.cache.stats(),
                    "redact": redaction.describe_redactor(self.config.redact),
                    "commits": asdict(self.commits.stats()),
                    "recovery": {**self.recovery, "foreign_skipped": self._foreign["count"],
                                 "foreign_examples": list(self._foreign["examples"])},
                    "retention": {"max_age_s": ret.max_age, "max_per_task_type": ret.max_per_task_type,
                                  "prune_every": ret.prune_every, "pruned_expired": self._pruned["expired"],
                                  "pruned_over_cap": self._pruned["over_cap"], "prune_runs": self._pruned["runs"],
                                  "last_prune_at": self._pruned["last_at"], "expired_pending": pending}}

    # ---- retention -----------------------------------------------------------------
    def _cutoff(self) -> float | None:
        """Creation time before which patterns are expired (None: no max_age)."""
        age = self.retention.max_age
        return None if age is None else self.clock() - age

    def _conditions(self, filt: PatternFilter) -> list[Condition]:
        """The store conditions of ``filt`` plus, with a max_age, ``created_at >= cutoff``."""
        conds = filt.conditions()
        cutoff = self._cutoff()
        if cutoff is not None:
            conds.append(Condition("range", "created_at", {"gte": cutoff}))
        return conds

    def _delete_ids(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), _DELETE_BATCH):
            part = list(ids[start:start + _DELETE_BATCH])
            self.backend.delete(part)
            self.payloads.discard(part)
            self.cache.delete(part)
            if self._last_write is not None and self._last_write["id"] in part:
                self._last_write = None   # deleted on purpose: not a write the next open must find
            for fn in self.delete_listeners:
                fn(part)

    def _after_store(self, task_types: set[str | None], n: int) -> None:
        """Retention after a write: the per-task-type cap for the types written, and every
        ``prune_every`` stored patterns the expired ones."""
        ret = self.retention
        if not ret.active:
            return
        if ret.max_per_task_type is not None:
            self._pruned["over_cap"] += self._enforce_caps(task_types, store=not self.cache.active)
        if ret.max_age is not None and ret.prune_every:
            self._since_prune += n
            if self._since_prune >= ret.prune_every:
                self._since_prune = 0
                self._pruned["expired"] += self._prune_expired(store=not self.cache.active)
                self._pruned["runs"] += 1
                self._pruned["last_at"] = self.clock()

    def _prune_expired(self, *, store: bool) -> int:
        cutoff = self._cutoff()
        if cutoff is None:
            return 0
        if not store:
            ids = self.cache.ids_created_before(cutoff)
        else:
            cond = [Condition("range", "created_at", {"lt": cutoff})]
            ids = [p.id for batch in self.backend.scroll(batch=2048, with_vectors=False, conditions=cond)
                   for p in batch]
        self._delete_ids(ids)
        return len(ids)

    def _enforce_caps(self, task_types: set[str | None] | None, *, store: bool) -> int:
        """Delete the patterns beyond ``max_per_task_type`` in the given task types (None = all)."""
        cap = self.retention.max_per_task_type
        if cap is None:
            return 0
        if not store:
            ids = self.cache.over_cap_ids(cap, task_types)
        else:
            ids = self._store_over_cap(cap, task_types)
        self._delete_ids(ids)
        return len(ids)

    def _store_over_cap(self, cap: int, task_types: set[str | None] | None) -> list[str]:
        """:meth:`HotCache.over_cap_ids` computed from the store (scrolls the affected groups)."""
        groups: dict[Any, list[tuple[float, float, str]]] = {}
        typed = None if task_types is None or None in task_types else sorted(task_types)
        if typed is not None:  # only typed groups: count first, scroll only the groups over the cap
            typed = [t for t in typed if self.backend.count([Condition("any", "task_type", [t])]) > cap]
            if not typed:
                return []
            cond = [Condition("any", "task_type", typed)]
        else:
            cond = []
        for batch in self.backend.scroll(batch=2048, with_vectors=False, conditions=cond):
            for p in batch:
                t = p.payload.get("task_type")
                if task_types is None or t in task_types:
                    groups.setdefault(t, []).append((float(p.payload.get("created_at", 0.0)),
                                                     float(p.payload.get("reward", 0.0)), p.id))
        out: list[str] = []
        for rows in groups.values():
            if len(rows) > cap:
                rows.sort()
                out += [pid for _, _, pid in rows[: len(rows) - cap]]
        return out

    def _prune(self, *, store: bool) -> dict[str, int]:
        expired = self._prune_expired(store=store)
        over = self._enforce_caps(None, store=store)
        self._pruned["expired"] += expired
        self._pruned["over_cap"] += over
        self._pruned["runs"] += 1
        self._pruned["last_at"] = self.clock()
        self._since_prune = 0
        return {"expired": expired, "over_cap": over}

    def prune(self) -> dict[str, int]:
        """Enforce the retention limits now: delete every expired pattern and every pattern beyond
        ``max_per_task_type`` in any task type. Returns ``{"expired": n, "over_cap": m}`` (deleted
        now; :meth:`stats` keeps the totals). For the ``edge`` backend the cache (which sees every
        write) selects them; for a server collection the store does, so the writes of other
        processes count too.

        Example:
            >>> t = [0.0]                                      # a fake clock
            >>> bank = ReasoningBank({"persist_to_disk": False, "retention": {"maxAge": "10m"}},
            ...                      embedder="hashing-v1-64", clock=lambda: t[0])
            >>> _ = bank.store_pattern("old task", "", "x", 1.0, True)
            >>> t[0] = 3600.0                                  # an hour later
            >>> bank.retrieve_patterns("old task"), bank.count()
            ([], 0)
            >>> bank.prune(), bank.stats()["retention"]["pruned_expired"]
            ({'expired': 1, 'over_cap': 0}, 1)
            >>> bank.close()
        """
        with self._lock:
            self._check_open()
            return self._prune(store=not self.cache.active or self.backend.kind != "edge")

    enforce_retention = prune

    def flush(self) -> None:
        """Delete expired patterns (with a ``retention.max_age``), then make every write durable now
        (a flush that starts after this call did, shared with concurrent durable stores)."""
        with self._lock:
            self._check_open()
            if self.retention.max_age is not None:
                self._pruned["expired"] += self._prune_expired(store=not self.cache.active)
                self._pruned["runs"] += 1
                self._pruned["last_at"] = self.clock()
                self._since_prune = 0
            seq = self.commits.note_write()   # deletes and payload updates are writes too
        self.commits.wait_durable(seq)

    def _durable_state(self) -> dict[str, Any]:
        """What the manifest will record; taken before the flush so that it claims no write the
        flush may miss."""
        return {"count": self.backend.count(), "last_write": self._last_write}

    def _commit(self) -> None:
        """The group commit's flush: the state now, the engine's flush, then that state's manifest.
        The engine flush runs without the bank's lock, so writers keep writing (and join the next
        flush) meanwhile."""
        with self._lock:
            self._check_open()
            state = self._durable_state() if hasattr(self.backend, "write_manifest") else None
        self.backend.flush()
        if state is not None:
            self._write_manifest(state)

    def _write_manifest(self, state: dict[str, Any] | None = None) -> None:
        """Record the durable state (count, last write) after a flush (embedded backend only)."""
        if not hasattr(self.backend, "write_manifest"):
            return
        with self._manifest_lock:
            if state is None:
                state = self._durable_state()
            self.backend.write_manifest({**state, "embedder": self.embedder_name, "dim": self.dim,
                                         "flushed_at": time.time(), "flushes": self._flushes + 1,
                                         "losses": self._losses})
            self._flushes += 1

    def close(self) -> None:
        """Flush and release the store (an embedded bank's path becomes free). Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if getattr(self, "cache", None) is not None:
                    self.cache.close()
                    if self.config.persist_to_disk and self.recovery.get("checked"):
                        try:
                            self.backend.flush()
                            self._write_manifest()
                        except Exception as exc:  # the close still releases the store
                            log.warning("ReasoningBank at %s: final flush failed: %s", self.backend.location, exc)
                self.backend.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __enter__(self) -> ReasoningBank:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ReasoningBank(backend={self.backend.kind!r}, location={self.backend.location!r}, "
                f"embedder={getattr(self, 'embedder_name', None)!r}, closed={self._closed})")

