"""The codec's exceptions: every malformed, corrupt, foreign or unreadable frame raises one of these.

Example:
    >>> issubclass(CheckpointSchemaError, CheckpointError) and issubclass(SchemaError, CodecError)
    True
"""

from __future__ import annotations

__all__ = ["CodecError", "CheckpointError", "SchemaError", "CheckpointSchemaError"]


class CodecError(ValueError):
    """A message or file is malformed, corrupt, of the wrong kind or schema version."""


class CheckpointError(CodecError):
    """A checkpoint cannot be written or read (and no usable previous one exists)."""


class SchemaError(CodecError):
    """A frame is intact but of a schema version this code cannot read: newer than the current
    version of its kind, older without a registered migration chain, or a migration failed."""


class CheckpointSchemaError(CheckpointError, SchemaError):
    """A checkpoint is refused because of its schema version (no ``.prev`` fallback is tried)."""
