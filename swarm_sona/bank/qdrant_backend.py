"""Server backend: a Qdrant collection through ``qdrant-client``.

For swarms that outgrow one process: every agent may talk to the server directly. The
connection takes ``url``, ``api_key`` (a literal, str or :class:`~swarm_sona.core.config.Secret`) or
else the environment variable named by ``api_key_env`` (default ``QDRANT_API_KEY``, read when the
client is built, in this process), ``prefer_grpc`` and ``https``. A key inside the URL
(``https://user:KEY@host``, ``?api-key=KEY``) is taken out of it and used as the API key; the
backend's ``url``, ``location`` and every error message show the URL without it, and error
messages are scrubbed of the key and of anything that looks like a credential.
Writes go in batches (``batch_size`` points per upsert, ``wait=True``); every call is retried
with exponential backoff and jitter on transient errors (connection refused/reset, timeouts,
HTTP 429/502/503/504, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED), which is safe
because every operation is idempotent (ids are content-derived, payload sets are absolute).
When the server stays unreachable the error is :class:`BankUnavailableError` naming the URL.

The bank's metadata (embedder name and dimension) is the collection's ``metadata``.

``url=":memory:"`` and ``url="file:///some/dir"`` select qdrant-client's in-process *local
mode* (no server). That is what this project's tests run against, because no Qdrant server can
be installed on the development machines; it is slow (about 300 ms for a filtered top-5 over
10k points) and not a substitute for the embedded ``edge`` backend.

Example:
    >>> import numpy as np
    >>> from swarm_sona.bank.qdrant_backend import QdrantBackend
    >>> b = QdrantBackend(":memory:")
    >>> b.open({"embedder": "hashing-v1-2", "dim": 2})
    >>> b.upsert(["6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21"], np.array([[1.0, 0.0]], np.float32), [{"reward": 1.0}])
    >>> b.count(), b.read_meta()["dim"]
    (1, 2)
    >>> b.close()
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from swarm_sona.bank.backend import StoredPoint
from swarm_sona.bank.edge_backend import HNSW_EF_CONSTRUCT, HNSW_EF_SEARCH, HNSW_M, INDEXED_FIELDS
from swarm_sona.bank.errors import BankClosedError, BankError, BankUnavailableError
from swarm_sona.bank.filters import Condition
from swarm_sona.bank.metadata import META_FORMAT, META_KIND, META_SCHEMA, upgrade_document
from swarm_sona.core.config import Secret, resolve_secret, scrub_secrets, split_url_secret

__all__ = ["QdrantBackend", "from_config", "is_transient"]

T = TypeVar("T")
_TRANSIENT_HTTP = {429, 502, 503, 504}
_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: network failures, timeouts, overload responses.

    Example:
        >>> is_transient(ConnectionRefusedError()), is_transient(ValueError("bad filter"))
        (True, False)
    """
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
    except ImportError:  # pragma: no cover - qdrant-client is a core dependency
        return False
    if isinstance(exc, ResponseHandlingException):  # wraps httpx transport errors
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in _TRANSIENT_HTTP
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        import grpc

        if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
            return exc.code().name in _TRANSIENT_GRPC
    except ImportError:  # pragma: no cover
        pass
    return False


class QdrantBackend:
    """A Qdrant collection via qdrant-client (see module docs).

    ``client`` injects an already built ``QdrantClient`` (the backend then does not close it).
    """

    kind = "qdrant"

    def __init__(self, url: str | None, *, api_key: str | Secret | None = None,
                 api_key_env: str | None = "QDRANT_API_KEY", prefer_grpc: bool = True,
                 https: bool | None = None, collection: str = "reasoning_bank", retries: int = 3,
                 backoff_s: float = 0.2, batch_size: int = 256, timeout_s: float = 10.0, client: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from qdrant_client import QdrantClient

        self.collection = collection
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.batch_size = int(batch_size)
        self._sleep = sleep
        self._owns_client = client is None
        self._key: Secret | None = None   # only to scrub error messages
        if isinstance(url, str):
            url, url_key = split_url_secret(url)
            if api_key is None and url_key:
                api_key = url_key
        if client is not None:
            self.client = client
            self.location = f"injected qdrant client, collection {collection!r}"
        elif url == ":memory:":
            self.client = QdrantClient(location=":memory:")
            self.location = f"qdrant-client local mode (:memory:), collection {collection!r}"
        elif url is not None and url.startswith("file://"):
            path = url[len("file://"):]
            self.client = QdrantClient(path=path)
            self.location = f"qdrant-client local mode at {path}, collection {collection!r}"
        elif url:
            key = resolve_secret(api_key, api_key_env, os.environ)
            self._key = Secret(key) if key else None
            try:
                self.client = QdrantClient(url=url, api_key=key, prefer_grpc=prefer_grpc, https=https,
                                           timeout=int(max(1, timeout_s)), check_compatibility=False)
            except Exception as exc:
                raise BankError(f"cannot configure a Qdrant client for {url}: {self._scrub(exc)}") from None
            self.location = f"{url}, collection {collection!r}"
        else:
            raise BankError("the 'qdrant' backend needs a url (or ':memory:' for qdrant-client's local mode)")
        self.url = url
        self._closed = False

    def _scrub(self, exc: BaseException, limit: int | None = None) -> str:
        return scrub_secrets(str(exc), self._key, limit=limit)

    def __repr__(self) -> str:
        return f"QdrantBackend({self.location})"

    # ---- retries -------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise BankClosedError(f"the bank at {self.location} is closed")
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    # "from None": the original's text (a server's response body) may echo credentials
                    raise BankError(f"Qdrant {what} failed at {self.location}: {type(exc).__name__}: "
                                    f"{self._scrub(exc, 500)}") from None
                if attempt >= self.retries:
                    raise BankUnavailableError(
                        f"Qdrant server at {self.url} is unreachable: {what} failed {attempt + 1} times "
                        f"({type(exc).__name__}: {self._scrub(exc).splitlines()[0][:200] if str(exc) else ''}). "
                        "Check that the server runs and the url/https/api_key settings, or use backend 'edge'"
                    ) from None
                self._sleep(self.backoff_s * (2 ** attempt) * (0.5 + random.random()))
                attempt += 1

    # ---- lifecycle -----------------------------------------------------------------
    def read_meta(self) -> dict[str, Any] | None:
        if not self._call("collection_exists", self.client.collection_exists, self.collection):
            return None
        info = self._call("get_collection", self.client.get_collection, self.collection)
        meta = dict(info.config.metadata or {})
        try:   # an older schema is upgraded in memory (see swarm_sona.bank.metadata)
            return upgrade_document(META_KIND, meta, f"collection {self.collection!r} at {self.location}")[0]
        except BankError as exc:
            if "is not a swarm_sona" in str(exc):
                raise BankError(f"collection {self.collection!r} at {self.location} exists but is not a swarm_sona "
                                "ReasoningBank; choose another collection name") from None
            raise

    def open(self, meta: dict[str, Any]) -> None:
        from qdrant_client import models

        if self.read_meta() is not None:
            return
        self._call("create_collection", self.client.create_collection, self.collection,
                   vectors_config=models.VectorParams(size=int(meta["dim"]), distance=models.Distance.COSINE),
                   hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT),
                   metadata={"format": META_FORMAT, "schema": META_SCHEMA, **meta})
        kinds = {"Float": models.PayloadSchemaType.FLOAT, "Bool": models.PayloadSchemaType.BOOL,
                 "Keyword": models.PayloadSchemaType.KEYWORD}
        with warnings.catch_warnings():  # local mode warns that payload indexes have no effect there
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for name, schema in INDEXED_FIELDS.items():
                self._call("create_payload_index", self.client.create_payload_index, self.collection, name,
                           kinds[schema], wait=True)

    def flush(self) -> None:
        """Writes use ``wait=True``: nothing to flush."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns_client:
                self.client.close()

    def optimize(self) -> bool:
        """A Qdrant server builds its indexes in the background: nothing to do here."""
        return False

    # ---- data ----------------------------------------------------------------------
    @staticmethod
    def _filter(conditions: Sequence[Condition]) -> Any:
        if not conditions:
            return None
        from qdrant_client import models

        must: list[Any] = []
        for c in conditions:
            if c.kind == "match":
                must.append(models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value)))
            elif c.kind == "any":
                must.append(models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.value))))
            else:
                must.append(models.FieldCondition(key=c.key, range=models.Range(**c.value)))
        return models.Filter(must=must)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        from qdrant_client import models

        vecs = np.asarray(vectors, np.float32)
        for start in range(0, len(ids), self.batch_size):
            stop = min(len(ids), start + self.batch_size)
            pts = [models.PointStruct(id=ids[i], vector=vecs[i].tolist(), payload=payloads[i])
                   for i in range(start, stop)]
            self._call("upsert", self.client.upsert, self.collection, pts, wait=True)

    def set_payload(self, ids: Sequence[str], fields: dict[str, Any]) -> None:
        if ids:
            self._call("set_payload", self.client.set_payload, self.collection, payload=fields, points=list(ids),
                       wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if ids:
            self._call("delete", self.client.delete, self.collection,
                       points_selector=models.PointIdsList(points=list(ids)), wait=True)

    @staticmethod
    def _point(rec: Any, with_vectors: bool, score: float | None = None) -> StoredPoint:
        vec = None
        if with_vectors and rec.vector is not None:
            v = rec.vector[""] if isinstance(rec.vector, dict) else rec.vector
            vec = np.asarray(v, np.float32)
        return StoredPoint(str(rec.id), dict(rec.payload or {}), vec, score)

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        if not ids:
            return []
        recs = self._call("retrieve", self.client.retrieve, self.collection, list(ids), with_payload=True,
                          with_vectors=with_vectors)
        return [self._point(r, with_vectors) for r in recs]

    def search(self, vector: np.ndarray, limit: int, conditions: Sequence[Condition], *,
               with_vectors: bool = False, exact: bool = False) -> list[StoredPoint]:
        from qdrant_client import models

        with warnings.catch_warnings():  # local mode: "search_params has no effect" (it is always exact)
            warnings.filterwarnings("ignore", message="Local mode performs exact")
            res = self._call("query_points", self.client.query_points, self.collection,
                             query=np.asarray(vector, np.float32).tolist(), query_filter=self._filter(conditions),
                             limit=int(limit), with_payload=True, with_vectors=with_vectors,
                             search_params=models.SearchParams(hnsw_ef=max(HNSW_EF_SEARCH, 4 * int(limit)),
                                                               exact=exact))
        return [self._point(r, with_vectors, float(r.score)) for r in res.points]

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True,
               conditions: Sequence[Condition] = ()) -> Iterator[list[StoredPoint]]:
        offset = None
        filt = self._filter(conditions)
        while True:
            recs, offset = self._call("scroll", self.client.scroll, self.collection, limit=batch, offset=offset,
                                      with_payload=True, with_vectors=with_vectors, scroll_filter=filt)
            if recs:
                yield [self._point(r, with_vectors) for r in recs]
            if offset is None or not recs:
                return

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        res = self._call("count", self.client.count, self.collection, count_filter=self._filter(conditions),
                         exact=True)
        return int(res.count)

    def clear(self) -> None:
        from qdrant_client import models

        self._call("delete", self.client.delete, self.collection,
                   points_selector=models.FilterSelector(filter=models.Filter(must=[])), wait=True)


def from_config(cfg: Any, client: Any = None) -> QdrantBackend:
    """The registry's factory of backend ``qdrant``: the collection at ``cfg.url`` (``client``: an
    existing ``QdrantClient``, e.g. local mode). The API key is resolved here, in this process."""
    return QdrantBackend(cfg.url, api_key=cfg.api_key, api_key_env=cfg.api_key_env, prefer_grpc=cfg.prefer_grpc,
                         https=cfg.https, collection=cfg.collection, retries=cfg.retries,
                         backoff_s=cfg.retry_backoff_s, batch_size=cfg.batch_size, timeout_s=cfg.timeout_s,
                         client=client)
