"""Per-kind schema versions and the migrations that upgrade an older body, step by step.

:func:`register_schema` sets the version a kind is written at (a kind nobody registered is at
:data:`SCHEMA_VERSION`, 1, which is what every file written before the registry existed holds).
:func:`register_migration` registers the step that upgrades a body from version N to N+1;
:func:`upgrade_body` runs the chain up to the current version. The module that writes a kind
registers its schema and migrations at import time; :data:`KIND_OWNERS` names those modules so
that a reader which never imported them (``swarm-sona migrate``) still sees their registrations.

Example:
    >>> with schema_registry():
    ...     register_schema("demo", 2)
    ...     _ = register_migration("demo", 1)(lambda body: {**body, "new": 0})
    ...     upgrade_body("demo", 1, {"old": 1})
    ({'old': 1, 'new': 0}, 2)
    >>> schema_version("demo"), migration("demo", 1) is None
    (1, True)
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from swarm_sona.core.codec.errors import SchemaError

__all__ = ["SCHEMA_VERSION", "KIND_OWNERS", "Migration", "register_schema", "schema_version", "register_migration",
           "migration", "schema_registry", "upgrade_body", "newer_schema_message", "check_kind", "check_version"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Schema version of a kind nobody registered (every frame written before per-kind versions)."""


Migration = Callable[[Any], Any]

# kind -> module that writes it (and registers its schema version and migrations on import).
KIND_OWNERS: dict[str, str] = {
    "sona-engine": "swarm_sona.engine.sona",
    "agent-meta": "swarm_sona.runtime.actors.schema",
    "coordinator": "swarm_sona.runtime.actors.schema",
    "swarm": "swarm_sona.runtime.swarm",
    "reasoning_bank": "swarm_sona.bank.bank",
    "bank-meta": "swarm_sona.bank.metadata",
    "bank-manifest": "swarm_sona.bank.metadata",
    "bank-wal": "swarm_sona.bank.wal",
    "delta": "swarm_sona.consensus.messages",
    "merged": "swarm_sona.consensus.messages",
}

_registry_lock = threading.RLock()
_schemas: dict[str, int] = {}
_migrations: dict[tuple[str, int], Migration] = {}
_owners_loaded: set[str] = set()


def check_kind(kind: Any) -> str:
    """``kind`` if it is a non-empty string; ValueError otherwise."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a frame kind must be a non-empty string, got {kind!r}")
    return kind


def check_version(version: Any, what: str = "schema version") -> int:
    """``version`` if it is an integer >= 1 (not a bool); ValueError naming ``what`` otherwise."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {version!r}")
    return version


def _load_owner(kind: str) -> None:
    """Import the module that registers ``kind``'s schema (once; failures are only logged).

    Not under the registry lock: the import system serialises concurrent imports of a module
    (a second thread waits until it is initialised) and lets its own thread re-enter one."""
    if kind in _owners_loaded:
        return
    module = KIND_OWNERS.get(kind)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except Exception as exc:  # an optional dependency missing: the kind stays at what is registered
        log.debug("cannot import %s for the schema of %r: %s", module, kind, exc)
    _owners_loaded.add(kind)


def register_schema(kind: str, version: int) -> None:
    """Set the current schema version of ``kind``: what :func:`pack_frame` writes and readers
    upgrade older bodies to (through :func:`register_migration` steps)."""
    check_kind(kind)
    check_version(version)
    with _registry_lock:
        _schemas[kind] = version


def schema_version(kind: str) -> int:
    """The current schema version of ``kind`` (:data:`SCHEMA_VERSION` when nobody registered one).

    >>> schema_version("a-kind-nobody-registered")
    1
    """
    _load_owner(kind)
    return _schemas.get(kind, SCHEMA_VERSION)


def register_migration(kind: str, from_version: int) -> Callable[[Migration], Migration]:
    """Decorator registering ``fn(body) -> body`` that upgrades a ``kind`` body from schema
    ``from_version`` to ``from_version + 1``. The body passed in is freshly decoded (the
    function may change it in place) and the one returned must not be None. Registering a
    different function for the same step raises ValueError."""
    check_kind(kind)
    check_version(from_version, "from_version")

    def decorator(fn: Migration) -> Migration:
        if not callable(fn):
            raise TypeError(f"a migration must be callable, got {type(fn).__name__}")
        with _registry_lock:
            old = _migrations.get((kind, from_version))
            if old is not None and old is not fn:
                raise ValueError(f"a migration of {kind!r} from schema {from_version} to {from_version + 1} "
                                 f"is already registered ({getattr(old, '__qualname__', old)!r})")
            _migrations[(kind, from_version)] = fn
        return fn

    return decorator


def migration(kind: str, from_version: int) -> Migration | None:
    """The step registered to upgrade ``kind`` from ``from_version`` to the next version, or None."""
    with _registry_lock:
        return _migrations.get((kind, from_version))


@contextlib.contextmanager
def schema_registry() -> Iterator[None]:
    """Snapshot the schema and migration registry and restore it on exit (for tests).

    The modules of the built-in kinds are imported first so that their registrations are part
    of the snapshot and survive the restore.
    """
    for kind in KIND_OWNERS:
        _load_owner(kind)
    with _registry_lock:
        schemas, migrations = dict(_schemas), dict(_migrations)
    try:
        yield
    finally:
        with _registry_lock:
            _schemas.clear()
            _schemas.update(schemas)
            _migrations.clear()
            _migrations.update(migrations)


def newer_schema_message(kind: str, version: int, current: int) -> str:
    """The error text for a ``kind`` frame of a schema ``version`` newer than ``current``."""
    return (f"unsupported schema version {version} of a {kind!r} frame: written by a newer swarm_sona: "
            f"schema {version}, this one reads up to {current}")


def upgrade_body(kind: str, version: int, body: Any) -> tuple[Any, int]:
    """Upgrade ``body`` of ``kind`` from ``version`` to the current version; ``(body, current)``."""
    current = schema_version(kind)
    if version > current:
        raise SchemaError(newer_schema_message(kind, version, current))
    steps = []
    for v in range(version, current):
        fn = _migrations.get((kind, v))
        if fn is None:
            raise SchemaError(f"unsupported schema version {version} of a {kind!r} frame: no migration from "
                              f"schema {v} to {v + 1} registered (register_migration({kind!r}, {v})); "
                              f"this one reads schema {current}")
        steps.append((v, fn))
    for v, fn in steps:
        try:
            out = fn(body)
        except Exception as exc:
            raise SchemaError(f"migration of a {kind!r} frame from schema {v} to {v + 1} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        if out is None:
            raise SchemaError(f"migration of a {kind!r} frame from schema {v} to {v + 1} returned None")
        body = out
    return body, current
