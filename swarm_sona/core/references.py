"""Import references: ``"package.module:attribute"`` names an object in a module, so a config
can name a user's merge rule or topology and every process that reads the config (the Ray
workers of a swarm included) imports the module that defines it.

Example:
    >>> from swarm_sona.core.references import import_reference, is_reference
    >>> is_reference("collections:OrderedDict"), import_reference("collections:OrderedDict", "thing").__name__
    (True, 'OrderedDict')
    >>> import_reference("no_such_module_xyz:f", "merge rule")
    Traceback (most recent call last):
    ...
    ValueError: merge rule 'no_such_module_xyz:f': cannot import module 'no_such_module_xyz' (No module named 'no_such_module_xyz')
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["is_reference", "import_reference"]


def is_reference(name: object) -> bool:
    """True for a string written as an import reference (it contains ``:``).

    Example:
        >>> is_reference("median"), is_reference("pkg.mod:rule")
        (False, True)
    """
    return isinstance(name, str) and ":" in name


def import_reference(ref: str, what: str, error: type[Exception] = ValueError) -> Any:
    """The object ``"package.module:attribute"`` names (the attribute may be dotted), importing
    the module; raises ``error`` naming ``what``, the reference and what went wrong.

    Example:
        >>> import_reference("os.path:join", "function")("a", "b")
        'a/b'
        >>> import_reference("os.path", "function")
        Traceback (most recent call last):
        ...
        ValueError: function 'os.path': write it as 'package.module:attribute'
    """
    mod, _, attr = str(ref).partition(":")
    if not mod.strip() or not attr.strip():
        raise error(f"{what} {ref!r}: write it as 'package.module:attribute'")
    try:
        obj: Any = importlib.import_module(mod.strip())
    except ImportError as exc:
        raise error(f"{what} {ref!r}: cannot import module {mod.strip()!r} ({exc})") from exc
    for part in attr.strip().split("."):
        if not hasattr(obj, part):
            raise error(f"{what} {ref!r}: module {mod.strip()!r} has no attribute {attr.strip()!r}")
        obj = getattr(obj, part)
    return obj
