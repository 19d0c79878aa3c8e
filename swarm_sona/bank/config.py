"""Configs of the ReasoningBank: :class:`ReasoningBankConfig` (backend, location, cache, the
server's API key as a reference or a :class:`~swarm_sona.core.config.Secret`, redaction) and its
:class:`RetentionConfig` (max age, max patterns per task type).

Example:
    >>> from swarm_sona.bank.config import ReasoningBankConfig
    >>> cfg = ReasoningBankConfig.from_dict({"similarityThreshold": 0.5, "retention": {"maxAge": "12h"}})
    >>> cfg.similarity_threshold, cfg.retention.max_age
    (0.5, 43200.0)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from swarm_sona.bank.backend import UnknownBackendError, backend_spec
from swarm_sona.core.config import (
    ConfigBase,
    ConfigError,
    Secret,
    field_doc,
    is_env_name,
    resolve_secret,
    split_url_secret,
)
from swarm_sona.core.redaction import check_redactor, describe_redactor

__all__ = ["ReasoningBankConfig", "RetentionConfig"]

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*", re.I)
_DURATION_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class RetentionConfig(ConfigBase):
    """How long the ReasoningBank keeps patterns (``reasoning_bank.retention``; ``bank.retention`` in a run spec).

    ``max_age``: seconds, or a duration string (``"90s"``, ``"45m"``, ``"12h"``, ``"30d"``, ``"2w"``),
    normalised to seconds. A pattern older than that (by its ``created_at``, the time it was
    first stored; re-storing it does not renew it) is never retrieved or counted, and is deleted
    at the next prune. ``max_per_task_type``: at most that many patterns per task type (patterns
    without one form one group); a store that goes beyond it deletes the oldest first, the lowest
    reward first among equally old, then by id. Both apply to stored and distilled patterns.

    Example:
        >>> RetentionConfig.from_dict({"maxAge": "30d", "maxPerTaskType": 1000}).max_age
        2592000.0
        >>> RetentionConfig(max_age="soon")
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: reasoning_bank.retention.max_age: expected seconds or a duration such as '90m', '12h', '30d', '2w', got 'soon'
    """

    _section: ClassVar[str] = "reasoning_bank.retention"

    max_age: float | str | None = field_doc(
        "Patterns older than this (seconds, or '90m', '12h', '30d', '2w') are never retrieved and are deleted at the "
        "next prune; None = kept forever.", None)
    max_per_task_type: int | None = field_doc(
        "At most this many patterns per task type (no task type = one group); a store beyond it deletes the oldest "
        "(lowest reward first among equally old); None = no cap.", None)
    prune_every: int = field_doc("Delete expired patterns every this many stored patterns (also when the bank opens, "
                            "on flush() and prune()); 0 = only then.", 1000)

    def __post_init__(self) -> None:
        v = self.max_age
        if isinstance(v, str):
            m = _DURATION.fullmatch(v)
            if not m:
                raise ConfigError(f"{self._where('max_age')}: expected seconds or a duration such as '90m', '12h', "
                                  f"'30d', '2w', got {v!r}")
            v = float(m.group(1)) * _DURATION_S[m.group(2).lower()]
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{self._where('max_age')}: expected seconds or a duration string, got {v!r}")
            object.__setattr__(self, "max_age", float(v))
            self._check_range("max_age", 0, lo_open=True)
        if self.max_per_task_type is not None:
            if isinstance(self.max_per_task_type, bool) or not isinstance(self.max_per_task_type, int):
                raise ConfigError(f"{self._where('max_per_task_type')}: expected an integer, got "
                                  f"{self.max_per_task_type!r}")
            self._check_range("max_per_task_type", 1)
        self._check_range("prune_every", 0)

    @property
    def active(self) -> bool:
        """True when any limit is set."""
        return self.max_age is not None or self.max_per_task_type is not None


@dataclass(frozen=True)
class ReasoningBankConfig(ConfigBase):
    """Pattern store on Qdrant: embedded Qdrant Edge (``edge``) or a server (``qdrant``).

    The server's API key is referenced, not copied: ``api_key_env`` (default ``QDRANT_API_KEY``)
    names the environment variable read where the Qdrant client is built, in that process (an
    agent actor reads its own environment; a local Ray passes the driver's environment at start to
    its workers; on a cluster set the variable on the nodes or in the job's ``runtime_env``
    ``env_vars``). A literal ``api_key`` is still accepted and held as a :class:`Secret`: it never
    prints, ``to_dict()`` emits None for it, so checkpoints, reports and uploaded specs never hold
    it (and processes that get the config from such a dict fall back to ``api_key_env``).
    A ``url`` that carries a key (``https://user:KEY@host`` or ``?api-key=KEY``) is stripped: the
    key moves to ``api_key`` (a Secret) and ``url`` keeps only the location.

    Example:
        >>> ReasoningBankConfig.from_dict({"backend": "qdrant", "url": "https://q:6333"}).prefer_grpc
        True
        >>> cfg = ReasoningBankConfig.from_dict({"backend": "qdrant", "url": "https://q:6333?api-key=abc123"})
        >>> cfg.url, cfg.api_key, cfg.to_dict()["api_key"] is None
        ('https://q:6333', Secret('***'), True)
    """

    _section: ClassVar[str] = "reasoning_bank"

    enabled: bool = field_doc("Use a ReasoningBank at all.", True)
    backend: str = field_doc("A registered bank backend (swarm_sona.bank.backend): edge (embedded qdrant-edge-py at "
                             "`path`), qdrant (a server at `url`), a user's, or 'package.module:Factory'.", "edge")
    dimensions: int | None = field_doc("Vector dimension; None = the engine's dim. Must equal the embedder's.", None)
    similarity_threshold: float = field_doc("Default minimum cosine similarity for retrieval, in [-1, 1].", 0.0)
    cache_size: int = field_doc("Max vectors kept in the in-memory hot-path cache (0 = no cache).", 1_000_000)
    persist_to_disk: bool = field_doc("edge: keep the bank on disk at `path` (False = temporary directory).", True)
    path: str | None = field_doc("edge: bank directory; None = the user's data dir (swarm_sona/bank).", None)
    url: str | None = field_doc("qdrant: server URL, e.g. https://qdrant.example:6333 (a key in it moves to api_key).",
                           None)
    api_key: Secret | None = field_doc("qdrant: literal API key, held as a Secret (never printed or written; "
                                  "prefer api_key_env).", None)
    api_key_env: str | None = field_doc("qdrant: environment variable holding the API key, read when the client is "
                                   "built, in that process (None = no key from the environment).", "QDRANT_API_KEY")
    prefer_grpc: bool = field_doc("qdrant: use gRPC when the server offers it.", True)
    https: bool | None = field_doc("qdrant: force https on/off (None = from the URL).", None)
    collection: str = field_doc("Collection name.", "reasoning_bank")
    embedder: str = field_doc("Embedder name: 'hashing' (default) or 'sentence-transformers:<model>'.", "hashing")
    default_k: int = field_doc("Default number of patterns retrieved.", 1)
    merge_threshold: float = field_doc("Distillation: a new pattern this cosine-close to an existing one merges into it.", 0.95)
    distill_clusters: int = field_doc("Distillation: k for k-means over buffered trajectories (capped by their count).", 8)
    seed: int = field_doc("Seed for k-means++ seeding.", 0)
    cache_int8: bool = field_doc("Also keep an int8 copy of the cached vectors and search it first (float32 re-score); "
                            "native kernels only (the numpy fallback searches float32).", True)
    cache_rerank: int = field_doc("int8 search: candidates re-scored exactly in float32 (at least 4k).", 64)
    cache_threads: int = field_doc("Threads one large cache scan (>= 65,536 rows) is split over; 0 = the CPUs, at most 2.", 0)
    cache_int4_from: int = field_doc("int8 search: from this many cached rows on, scan an int4 copy first (half the bytes, "
                                "4x the re-ranked candidates); 0 = never.", 262_144)
    cache_index: Literal["flat", "ivf", "hnsw"] = field_doc(
        "Hot-path cache search: flat (exact scan), ivf (k-means lists, approximate, from 8,192 rows) or hnsw "
        "(FAISS's HNSW graph, approximate, built at open and by optimize(); needs faiss-cpu).", "flat")
    cache_probe: float = field_doc("ivf: share of the rows scanned per query, in (0, 1].", 0.1)
    cache_ef: int = field_doc("hnsw: candidates the graph search keeps (FAISS efSearch), >= 1.", 64)
    cache_load: Literal["auto", "open", "background"] = field_doc(
        "How an existing bank's cache loads: open (all of it before the bank opens), background (the bank opens at "
        "once; the store answers until the cache is loaded), auto (open up to 8,192 stored points, else background).",
        "auto")
    payload_cache: int = field_doc("Payloads of recently retrieved patterns kept in memory (LRU; 0 = always read the store).",
                              10_000)
    retries: int = field_doc("qdrant: retries of a call that failed with a transient error (exponential backoff).", 3)
    retry_backoff_s: float = field_doc("qdrant: delay before the first retry in seconds (doubles per retry, jittered).", 0.2)
    batch_size: int = field_doc("qdrant: points per upsert request.", 256)
    timeout_s: float = field_doc("qdrant: request timeout in seconds.", 10.0)
    durability: Literal["wal", "engine", "none"] = field_doc(
        "When a durable store is acknowledged: wal (embedded bank: after one fsync of the bank's own write-ahead log; "
        "the engine applies the log in the background), engine (after the engine's flush), none (at once; durable at "
        "the next flush()). A server backend acknowledges after its own write whatever this says.", "wal")
    min_free_mb: float = field_doc("edge: refuse engine writes, flushes and opens (BankFullError) when the bank's "
                                   "filesystem has less free space than this many MB (Qdrant Edge's mmap writes turn "
                                   "a full disk into SIGBUS); 0 disables the check.", 64.0)
    group_commit: bool = field_doc("Concurrent durable stores share one fsync/flush; False: each pays its own.", True)
    wal_idle_ms: float = field_doc("wal: the engine applies the log after this many ms without writes.", 100.0)
    wal_apply_points: int = field_doc("wal: ... or as soon as this many points wait for the engine.", 16_384)
    wal_checkpoint_mb: float = field_doc("wal: flush the engine and drop the log once it holds this many MB (bounds "
                                         "the replay at open: ~1 s per 16 MB).", 32.0)
    retention: RetentionConfig = field_doc("Retention: max_age, max_per_task_type, prune_every (see RetentionConfig).",
                                      factory=RetentionConfig)
    redact: str | Callable[[str], str] = field_doc(
        "Redactor applied to task, input, output, title, description and metadata strings before they are stored: "
        "none, secrets, email, names joined by '+', 'package.module:function', or (Python) a callable; "
        "see swarm_sona.core.redaction.", "none")
    embed_redacted: bool = field_doc("Embed the redacted task text instead of the original (no secret shapes the vector; "
                                "the default embeds the original for retrieval quality).", False)

    def __post_init__(self) -> None:
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            if not isinstance(self.api_key, str):
                raise ConfigError(f"{self._where('api_key')}: expected a string, got {type(self.api_key).__name__}")
            object.__setattr__(self, "api_key", Secret(self.api_key) if self.api_key else None)
        if self.api_key_env is not None and not is_env_name(self.api_key_env):
            raise ConfigError(f"{self._where('api_key_env')}: must name an environment variable "
                              f"(letters, digits, _), got {self.api_key_env!r}")
        if isinstance(self.url, str):
            clean, key = split_url_secret(self.url)
            if key is not None:
                if self.api_key is not None and self.api_key.reveal() != key:
                    raise ConfigError(f"{self._where('url')}: the url carries an API key that differs from "
                                      "api_key; give the key once (best: in the environment variable api_key_env)")
                object.__setattr__(self, "api_key", self.api_key or Secret(key))
            object.__setattr__(self, "url", clean)
        self._check_range("retries", 0, 100)
        self._check_choice("cache_index", ("flat", "ivf", "hnsw"))
        self._check_choice("cache_load", ("auto", "open", "background"))
        self._check_choice("durability", ("wal", "engine", "none"))
        self._check_range("min_free_mb", 0)
        self._check_range("wal_idle_ms", 0)
        self._check_range("wal_apply_points", 1)
        self._check_range("wal_checkpoint_mb", 0, lo_open=True)
        self._check_range("payload_cache", 0)
        self._check_range("cache_rerank", 1)
        self._check_range("cache_threads", 0, 64)
        self._check_range("cache_int4_from", 0)
        self._check_range("cache_probe", 0, 1, lo_open=True)
        self._check_range("cache_ef", 1)
        self._check_range("retry_backoff_s", 0)
        self._check_range("batch_size", 1)
        self._check_range("timeout_s", 0, lo_open=True)
        try:
            spec = backend_spec(self.backend)
        except UnknownBackendError as exc:
            raise ConfigError(f"{self._where('backend')}: {exc}") from exc
        if self.dimensions is not None:
            self._check_range("dimensions", 1, 65536)
        self._check_range("similarity_threshold", -1, 1)
        self._check_range("cache_size", 0)
        self._check_range("default_k", 1)
        self._check_range("merge_threshold", -1, 1)
        self._check_range("distill_clusters", 1)
        if spec.needs_url and self.enabled and not self.url:
            raise ConfigError(f"{self._where('url')}: backend {self.backend!r} needs a server url")
        if isinstance(self.retention, Mapping):
            object.__setattr__(self, "retention", RetentionConfig.from_dict(self.retention,
                                                                            path=self._where("retention")))
        elif not isinstance(self.retention, RetentionConfig):
            raise ConfigError(f"{self._where('retention')}: expected a mapping, got {type(self.retention).__name__}")
        check_redactor(self.redact, self._where("redact"))

    def to_dict(self, *, camel: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Plain data; a callable ``redact`` becomes its registered name or ``module:function``."""
        out = super().to_dict(camel=camel, **kwargs)
        if callable(self.redact):
            out["redact"] = describe_redactor(self.redact)
        return out

    def resolve_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key to connect with: the literal ``api_key``, else ``$api_key_env`` read now, in this process."""
        return resolve_secret(self.api_key, self.api_key_env, environ)

