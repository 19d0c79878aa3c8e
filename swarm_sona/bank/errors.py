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
           "BankClosedError"]


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
