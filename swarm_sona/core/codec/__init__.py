"""msgpack wire and checkpoint format, with per-kind schema versions and migrations.

Messages and checkpoints are msgpack. numpy arrays travel as a msgpack ext type (code 1)
holding ``(dtype string, shape, raw bytes)``; nothing is ever unpickled (object arrays are
refused). A *frame* wraps a payload with a magic, a CRC-32 checksum and an envelope
``{"kind", "schema", "body"}``, so a truncated, corrupt or foreign file is detected and refused.

Schema versions are per kind: :func:`register_schema` sets the version a kind is written at
(a kind nobody registered is at :data:`SCHEMA_VERSION`, 1, which is what every file written
before the registry existed holds). :func:`register_migration` registers the step that
upgrades a body from version N to N+1. Readers (:func:`unpack_frame`, :func:`open_frame`,
:func:`read_checkpoint`, :func:`open_checkpoint`) accept an older version when a chain of
steps up to the current one exists and return the upgraded body; a newer version, or an older
one with a missing step, is refused with :class:`SchemaError` saying which. The module that
writes a kind registers its schema and migrations at import time; :data:`~swarm_sona.core.codec.schemas.KIND_OWNERS` names
those modules so that a reader which never imported them (``swarm-sona migrate``) still sees
their registrations. :func:`migrate_path` upgrades files on disk in place.

Checkpoints are written atomically (temp file in the same directory, fsync, rename) and the
previous checkpoint is kept as ``<name>.prev``; :func:`open_checkpoint` falls back to it when
the newest one is missing or corrupt (never when it is merely of another schema version: that
is refused, so a newer checkpoint is not silently replaced by an older state) and says so in
:attr:`CheckpointRead.path`.

The package, one concept a module: :mod:`.errors` (the exceptions), :mod:`.encoding`
(msgpack + numpy arrays), :mod:`.schemas` (per-kind versions and migrations), :mod:`.frames`
(magic, checksum, envelope), :mod:`.checkpoints` (atomic files with ``.prev``) and
:mod:`.migrate` (upgrading files on disk).

Example:
    >>> import numpy as np, tempfile, os
    >>> from swarm_sona.core import codec
    >>> blob = codec.pack_frame("delta", {"B": np.ones((2, 3), np.float32), "n": 5})
    >>> kind, body = codec.unpack_frame(blob, expect_kind="delta")
    >>> body["B"].shape, body["n"]
    ((2, 3), 5)
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "ckpt.msgpack")
    >>> codec.write_checkpoint(p, {"w": np.arange(3.0)})
    >>> codec.read_checkpoint(p)["w"].tolist()
    [0.0, 1.0, 2.0]

    A kind moves to schema 2; files of schema 1 are upgraded when read:

    >>> with codec.schema_registry():   # restores the registry afterwards (tests, doctests)
    ...     codec.register_schema("checkpoint", 2)
    ...     @codec.register_migration("checkpoint", 1)
    ...     def _w_to_weights(body):
    ...         return {"weights": body.pop("w"), **body}
    ...     r = codec.open_checkpoint(p)
    ...     sorted(r.body), r.schema, r.version, r.migrated, r.fallback
    (['weights'], 1, 2, True, False)
"""

from swarm_sona.core.codec.checkpoints import CheckpointRead, open_checkpoint, read_checkpoint, write_checkpoint
from swarm_sona.core.codec.encoding import packb, unpackb
from swarm_sona.core.codec.errors import CheckpointError, CheckpointSchemaError, CodecError, SchemaError
from swarm_sona.core.codec.frames import Frame, open_frame, pack_frame, unpack_frame
from swarm_sona.core.codec.migrate import MigrationResult, migrate_path
from swarm_sona.core.codec.schemas import (
    SCHEMA_VERSION,
    migration,
    register_migration,
    register_schema,
    schema_registry,
    schema_version,
)

__all__ = [
    "SCHEMA_VERSION",
    "CodecError",
    "CheckpointError",
    "SchemaError",
    "CheckpointSchemaError",
    "packb",
    "unpackb",
    "register_schema",
    "schema_version",
    "register_migration",
    "migration",
    "schema_registry",
    "Frame",
    "pack_frame",
    "open_frame",
    "unpack_frame",
    "write_checkpoint",
    "CheckpointRead",
    "open_checkpoint",
    "read_checkpoint",
    "MigrationResult",
    "migrate_path",
]
