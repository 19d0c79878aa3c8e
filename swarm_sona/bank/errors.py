"""Errors raised by the ReasoningBank.

Bad input (wrong dimension, NaN, reward outside [0, 1], a payload that is not JSON/msgpack
serialisable, an unknown filter key) raises :class:`BankInputError`, a ``ValueError``; nothing is
written when it is raised. Operational failures have their own types so that callers can react:
:class:`BankLockedError` (an embedded bank path is open elsewhere) and
:class:`BankUnavailableError` (a Qdrant server cannot be reached).

Example:
    >>> from swarm_sona.bank.errors import BankInputError, BankError
    >>> issubclass(BankInputError, ValueError) and issubclass(BankInputError, BankError)
    True
"""

from __future__ import annotations

__all__ = ["BankError", "BankInputError", "BankDimensionError", "BankLockedError", "BankUnavailableError",
           "BankClosedError", "BankFullError", "disk_error"]

import errno as _errno


class BankError(Exception):
    """Base class of every ReasoningBank error."""


class BankInputError(BankError, ValueError):
    """Invalid input to a bank operation; the bank is unchanged."""


class BankDimensionError(BankInputError):
    """A vector or an embedder that does not match the bank's (the message names the bank's embedder)."""


class BankLockedError(BankError, RuntimeError):
    """The embedded bank path is already open in another process or handle."""


class BankUnavailableError(BankError, ConnectionError):
    """The Qdrant server cannot be reached (after retries)."""


class BankClosedError(BankError, RuntimeError):
    """An operation on a bank that was closed."""


class BankFullError(BankError, OSError):
    """A write of the bank was refused or failed because its filesystem is full (ENOSPC, or less
    free space than ``min_free_mb``); the message names the bank's path. Nothing acknowledged
    before is lost; the bank takes writes again once space is freed."""


def disk_error(where: object, exc: BaseException, what: str = "write") -> BankError:
    """The bank's error for an ``OSError`` (or the engine's plain ``Exception``) ``exc`` raised
    while ``what`` at path ``where``: :class:`BankFullError` for ENOSPC, else :class:`BankError`.

    Example:
        >>> e = disk_error("/b", OSError(28, "No space left on device"))
        >>> isinstance(e, BankFullError), "no space left on device" in str(e) and "/b" in str(e)
        (True, True)
    """
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if getattr(exc, "errno", None) == _errno.ENOSPC or "no space left" in str(exc).lower():
        return BankFullError(_errno.ENOSPC, f"the ReasoningBank at {where}: {what} failed: no space left on device "
                             f"({text}); nothing acknowledged is lost, free space and retry")
    return BankError(f"the ReasoningBank at {where}: {what} failed: {text}")
