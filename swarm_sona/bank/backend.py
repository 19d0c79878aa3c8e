"""The storage interface every ReasoningBank backend implements, and the registry of backends.

A backend stores points (pattern id, unit-norm float32 vector, JSON payload) in one Qdrant
collection or shard (or any store a user registers), answers filtered nearest-neighbour queries,
and keeps the bank's metadata (embedder name and dimension). The bank does validation, ids,
caching, scoring and distillation on top; a backend only moves data.

Backends are registered (:func:`register_backend`): one module per backend plus one registry
entry. Each entry states whether the backend needs a single owner (an embedded store that one
process opens at a time: a swarm then runs one bank actor that owns it; otherwise every agent
opens it directly), which URL schemes name it (``swarm_sona.bank.location`` maps a location to
its backend) and whether it takes a directory path. Built in: ``edge`` (:mod:`.edge_backend`,
embedded Qdrant Edge, single owner, directory paths) and ``qdrant`` (:mod:`.qdrant_backend`,
qdrant-client, ``http(s)://`` URLs). A config may also name ``"package.module:Factory"``: every
process (Ray workers included) imports it and registers it under that name; the attribute is a
:class:`BackendSpec` or a factory ``(config, client) -> backend`` (its ``single_owner``
attribute, default True, says whether it needs one owner).

Example:
    >>> from swarm_sona.bank.backend import StoredPoint, backend_spec
    >>> StoredPoint("id-1", {"reward": 1.0}).score is None
    True
    >>> backend_spec("edge").single_owner, backend_spec("qdrant").schemes
    (True, ('http', 'https'))
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from swarm_sona.bank.errors import BankInputError
from swarm_sona.bank.filters import Condition
from swarm_sona.core.references import import_reference, is_reference

__all__ = ["StoredPoint", "BankBackend", "make_backend", "BackendSpec",
           "BackendFactory", "UnknownBackendError", "register_backend", "unregister_backend", "backend_spec",
           "registered_backends", "backend_for_scheme", "url_schemes", "path_backend"]

@dataclass
class StoredPoint:
    """A point as read back from a backend; ``score`` is the cosine similarity for searches."""

    id: str
    payload: dict[str, Any]
    vector: np.ndarray | None = None
    score: float | None = None


class BankBackend(Protocol):  # pragma: no cover - protocol
    """What the bank needs from a store (see module docs)."""

    kind: str
    location: str

    def read_meta(self) -> dict[str, Any] | None:
        """The bank metadata recorded at creation (embedder name, dimension), or None for a new bank."""

    def open(self, meta: dict[str, Any]) -> None:
        """Open the store, creating it with ``meta`` (and payload indexes) when it is new."""

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Insert or replace points."""

    def set_payload(self, ids: Sequence[str], fields: dict[str, Any]) -> None:
        """Set some payload fields of existing points."""

    def delete(self, ids: Sequence[str]) -> None:
        """Delete points (missing ids are ignored)."""

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        """Points by id (missing ids are left out)."""

    def search(self, vector: np.ndarray, limit: int, conditions: Sequence[Condition], *,
               with_vectors: bool = False, exact: bool = False) -> list[StoredPoint]:
        """Top ``limit`` points by cosine similarity among those meeting every condition."""

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True) -> Iterator[list[StoredPoint]]:
        """Every point, in batches."""

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        """Points meeting every condition."""

    def clear(self) -> None:
        """Delete every point (metadata stays)."""

    def optimize(self) -> bool:
        """Build indexes now (blocking); True if anything was done."""

    def flush(self) -> None:
        """Make writes durable."""

    def close(self) -> None:
        """Release the store (idempotent)."""


BackendFactory = Callable[[Any, Any], BankBackend]
"""``factory(config, client) -> backend``: ``config`` is the bank's ``ReasoningBankConfig``,
``client`` the ``client=`` given to the bank (None unless the backend accepts one)."""


class UnknownBackendError(BankInputError):
    """A backend name that is neither registered nor an importable ``package.module:Factory``;
    the message lists the registered ones."""


@dataclass(frozen=True)
class BackendSpec:
    """One registry entry (see module docs).

    ``factory`` is a :data:`BackendFactory` or its import path ``"package.module:function"``
    (imported on first use, so a bank needs only its own engine's package). ``single_owner``:
    only one process may open the store (a swarm runs one bank actor for it). ``schemes``: URL
    schemes that name this backend (``mem://x`` with ``("mem",)``). ``takes_path``: a plain
    directory location names it (one backend at most; the built-in ``edge``). ``needs_url``:
    a config without ``url`` is refused. ``accepts_client``: the bank's ``client=`` is passed on.

    Example:
        >>> BackendSpec("x", lambda cfg, client: None, single_owner=False).schemes
        ()
    """

    name: str
    factory: BackendFactory | str = field(repr=False)
    single_owner: bool = True
    schemes: tuple[str, ...] = ()
    takes_path: bool = False
    needs_url: bool = False
    accepts_client: bool = False
    description: str = ""

    def build(self, config: Any, client: Any = None) -> BankBackend:
        """A new backend for ``config`` (see :data:`BackendFactory`)."""
        if client is not None and not self.accepts_client:
            raise BankInputError(f"client= is only for a backend that accepts one, not {self.name!r}")
        fn = self.factory
        if isinstance(fn, str):
            fn = import_reference(fn, f"backend {self.name!r}: factory", UnknownBackendError)
        return fn(config, client)


_BUILTIN = {
    "edge": BackendSpec("edge", "swarm_sona.bank.edge_backend:from_config", single_owner=True, takes_path=True,
                        description="embedded Qdrant Edge shard in a directory (one process opens it)"),
    "qdrant": BackendSpec("qdrant", "swarm_sona.bank.qdrant_backend:from_config", single_owner=False,
                          schemes=("http", "https"), needs_url=True, accepts_client=True,
                          description="a Qdrant server collection (qdrant-client; every process connects)"),
}
_REGISTRY: dict[str, BackendSpec] = dict(_BUILTIN)
_REGISTRY_LOCK = threading.Lock()


def register_backend(spec_or_name: BackendSpec | str, factory: BackendFactory | str | None = None, *,
                     single_owner: bool = True, schemes: Sequence[str] = (), takes_path: bool = False,
                     needs_url: bool = False, accepts_client: bool = False, description: str = "",
                     replace: bool = False) -> BackendSpec:
    """Register a backend: a :class:`BackendSpec`, or a name and a factory with the spec's fields.
    Built-ins cannot be replaced; a taken name, URL scheme or the directory-path role raises
    :class:`BankInputError` unless ``replace``. In a swarm, register it in a module every process
    imports, or name it as ``"package.module:Factory"`` in the config.

    Example:
        >>> spec = register_backend("doc-null", lambda cfg, client: None, single_owner=False, schemes=["null"])
        >>> backend_for_scheme("NULL").name
        'doc-null'
        >>> unregister_backend("doc-null")
    """
    if isinstance(spec_or_name, BackendSpec):
        spec = spec_or_name
    else:
        if factory is None:
            raise BankInputError(f"backend {spec_or_name!r}: give a factory (cfg, client) -> backend")
        spec = BackendSpec(spec_or_name, factory, single_owner=bool(single_owner),
                           schemes=tuple(s.lower() for s in schemes), takes_path=bool(takes_path),
                           needs_url=bool(needs_url), accepts_client=bool(accepts_client), description=description)
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise BankInputError(f"a backend name must be a non-empty string, got {spec.name!r}")
    if not (callable(spec.factory) or isinstance(spec.factory, str)):
        raise BankInputError(f"backend {spec.name!r}: factory must be callable or 'package.module:Factory', "
                             f"got {type(spec.factory).__name__}")
    with _REGISTRY_LOCK:
        if spec.name in _BUILTIN:
            raise BankInputError(f"backend {spec.name!r} is built in and cannot be replaced")
        others = [s for n, s in _REGISTRY.items() if n != spec.name]
        if not replace:
            if spec.name in _REGISTRY:
                raise BankInputError(f"backend {spec.name!r} is already registered (pass replace=True)")
            taken = sorted({sc for o in others for sc in o.schemes} & set(spec.schemes))
            if taken:
                raise BankInputError(f"backend {spec.name!r}: URL scheme(s) {taken} already name another backend")
        if spec.takes_path and any(o.takes_path for o in others):
            raise BankInputError(f"backend {spec.name!r}: directory paths already name backend "
                                 f"{path_backend().name!r}")
        _REGISTRY[spec.name] = spec
    return spec


def unregister_backend(name: str) -> None:
    """Remove a registered backend (built-ins stay; an unknown name raises :class:`UnknownBackendError`)."""
    with _REGISTRY_LOCK:
        if name in _BUILTIN:
            raise BankInputError(f"backend {name!r} is built in and cannot be removed")
        if name not in _REGISTRY:
            raise UnknownBackendError(f"no backend {name!r} is registered")
        del _REGISTRY[name]


def registered_backends() -> list[str]:
    """Names of the registered backends, built-ins first.

    Example:
        >>> registered_backends()[:2]
        ['edge', 'qdrant']
    """
    return list(_REGISTRY)


def backend_spec(name: str) -> BackendSpec:
    """The registry entry of ``name``; ``"package.module:Factory"`` is imported and registered
    under that name (a :class:`BackendSpec` attribute as is, else a factory whose
    ``single_owner`` attribute, default True, says whether it needs one owner). Raises
    :class:`UnknownBackendError` listing the registered backends.

    Example:
        >>> backend_spec("edgy")
        Traceback (most recent call last):
        ...
        swarm_sona.bank.backend.UnknownBackendError: unknown bank backend 'edgy' (did you mean 'edge'?); \
registered: edge, qdrant. Register one with swarm_sona.bank.backend.register_backend(name, factory, \
single_owner=...), or name a factory as 'package.module:Factory'
    """
    if not isinstance(name, str):
        raise UnknownBackendError(f"a bank backend is named by a string, got {type(name).__name__}")
    spec = _REGISTRY.get(name)
    if spec is not None:
        return spec
    if is_reference(name):
        obj = import_reference(name, "bank backend", UnknownBackendError)
        spec = _REGISTRY.get(name)   # the module may have registered the name itself
        if spec is None:
            if isinstance(obj, BackendSpec):
                spec = BackendSpec(name, obj.factory, single_owner=obj.single_owner, schemes=obj.schemes,
                                   takes_path=False, needs_url=obj.needs_url, accepts_client=obj.accepts_client,
                                   description=obj.description)
            elif callable(obj):
                spec = BackendSpec(name, obj, single_owner=bool(getattr(obj, "single_owner", True)),
                                   accepts_client=bool(getattr(obj, "accepts_client", False)))
            else:
                raise UnknownBackendError(f"bank backend {name!r}: {type(obj).__name__} is neither a BackendSpec "
                                          "nor a factory")
            with _REGISTRY_LOCK:
                spec = _REGISTRY.setdefault(name, spec)
        return spec
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownBackendError(f"unknown bank backend {name!r}{hint}; registered: {', '.join(_REGISTRY)}. Register "
                              "one with swarm_sona.bank.backend.register_backend(name, factory, single_owner=...), "
                              "or name a factory as 'package.module:Factory'")


def backend_for_scheme(scheme: str) -> BackendSpec | None:
    """The backend a URL scheme names (case-insensitive), None when none does."""
    s = scheme.lower()
    return next((b for b in _REGISTRY.values() if s in b.schemes), None)


def url_schemes() -> list[str]:
    """Every URL scheme a registered backend claims."""
    return [s for b in _REGISTRY.values() for s in b.schemes]


def path_backend() -> BackendSpec:
    """The backend a plain directory location names (``edge``)."""
    return next(b for b in _REGISTRY.values() if b.takes_path)


def make_backend(cfg: Any, client: Any = None) -> BankBackend:
    """The backend ``cfg`` (a :class:`~swarm_sona.bank.config.ReasoningBankConfig`) names, built by
    its registry entry (``client``: an existing client, for a backend that accepts one).

    Example:
        >>> from types import SimpleNamespace
        >>> make_backend(SimpleNamespace(backend="edge", path=None, persist_to_disk=False)).kind
        'edge'
    """
    return backend_spec(cfg.backend).build(cfg, client)
