"""One parser for where a ReasoningBank lives: a URL or a directory -> a registered backend + config.

A URL names the registered backend that claims its scheme (:mod:`.backend`: ``http://`` and
``https://`` are Qdrant servers, backend ``qdrant``; a user's backend may claim ``mem://``...);
anything else is a directory of an embedded bank (the backend that takes paths, ``edge``, with
``persist_to_disk`` on). A mapping that gives a ``url`` but no ``backend`` is a server too, so
``bank: {url: https://q:6333}`` in a run spec no longer silently opens the embedded bank. Bad
locations raise :class:`BankLocationError` naming the value and what is wrong with it (an
empty string, a URL scheme no backend claims, a path that is a file, a NUL byte).

Example:
    >>> from swarm_sona.bank.location import parse_bank_location, bank_config
    >>> parse_bank_location("https://qdrant.example:6333").backend
    'qdrant'
    >>> loc = parse_bank_location("/var/lib/bank")
    >>> loc.backend, loc.path
    ('edge', '/var/lib/bank')
    >>> bank_config({"url": "http://localhost:6333"}).backend
    'qdrant'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm_sona.bank.backend import backend_for_scheme, backend_spec, path_backend, url_schemes
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.errors import BankInputError

__all__ = ["BankLocation", "BankLocationError", "parse_bank_location", "bank_config", "url_backend"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class BankLocationError(BankInputError):
    """A bank location (URL or path) that cannot name a bank; the message says why."""


@dataclass(frozen=True)
class BankLocation:
    """Where a bank lives: a URL backend (``qdrant``...) with a ``url``, or ``edge`` with a ``path``.

    Example:
        >>> BankLocation("edge", path="/tmp/b").settings()
        {'backend': 'edge', 'path': '/tmp/b', 'url': None, 'persist_to_disk': True}
    """

    backend: str
    url: str | None = None
    path: str | None = None

    def settings(self) -> dict[str, Any]:
        """The ``ReasoningBankConfig`` fields this location sets (the other location field cleared)."""
        if self.url is not None:
            return {"backend": self.backend, "url": self.url, "path": None}
        return {"backend": self.backend, "path": self.path, "url": None, "persist_to_disk": True}

    def config(self, base: ReasoningBankConfig | None = None) -> ReasoningBankConfig:
        """``base`` (default: a default config) with this location applied."""
        b = (base or ReasoningBankConfig()).to_dict(keep_secrets=True)
        return ReasoningBankConfig.from_dict({**b, **self.settings()})


def parse_bank_location(value: str | os.PathLike[str], *, what: str = "bank location") -> BankLocation:
    """A URL whose scheme a registered backend claims (``http(s)://``: Qdrant) or a bank directory
    -> :class:`BankLocation`.

    A path is expanded (``~``) and made absolute; it must not be an existing file. Raises
    :class:`BankLocationError` naming ``what`` and the value otherwise.

    Example:
        >>> parse_bank_location("ftp://host/bank")
        Traceback (most recent call last):
        ...
        swarm_sona.bank.location.BankLocationError: bank location 'ftp://host/bank': scheme 'ftp' names no \
registered bank backend (use http:// or https:// for a Qdrant server, another scheme a registered backend \
claims, or a directory path)
    """
    if not isinstance(value, (str, os.PathLike)):
        raise BankLocationError(f"{what} must be a URL or a directory path, got {type(value).__name__}")
    s = os.fspath(value)
    if not isinstance(s, str):
        raise BankLocationError(f"{what} must be a text path, got bytes {s!r}")
    if not s.strip():
        raise BankLocationError(f"{what} is empty: give a Qdrant URL (https://host:6333) or a directory path")
    if "\x00" in s:
        raise BankLocationError(f"{what} {s!r} contains a NUL byte")
    m = _SCHEME.match(s)
    if m:
        scheme = m.group(1).lower()
        spec = backend_for_scheme(scheme)
        if spec is None:
            others = [f"{sc}://" for sc in url_schemes() if sc not in ("http", "https")]
            extra = f" ({', '.join(others)})" if others else ""
            raise BankLocationError(f"{what} {s!r}: scheme {scheme!r} names no registered bank backend (use "
                                    f"http:// or https:// for a Qdrant server, another scheme a registered backend "
                                    f"claims{extra}, or a directory path)")
        if not s[m.end():].split("/", 1)[0]:
            raise BankLocationError(f"{what} {s!r} has no host")
        return BankLocation(spec.name, url=s)
    p = Path(s).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise BankLocationError(f"{what} {s!r} is an existing file, not a bank directory")
    for parent in p.parents:   # a file on the way makes the directory impossible to create
        if parent.exists():
            if not parent.is_dir():
                raise BankLocationError(f"{what} {s!r}: {parent} is a file, so the bank directory cannot exist")
            break
    return BankLocation(path_backend().name, path=str(p))


def bank_config(value: ReasoningBankConfig | Mapping[str, Any] | str | os.PathLike[str] | None,
                base: ReasoningBankConfig | None = None, *, what: str = "bank") -> ReasoningBankConfig:
    """Any way of naming a bank -> a validated :class:`ReasoningBankConfig`.

    A config is returned as is; a URL or a path is applied to ``base`` (see
    :func:`parse_bank_location`); a mapping is merged over ``base``, and a mapping with a
    ``url`` but no ``backend`` gets the backend its scheme names (else ``qdrant``). None gives
    ``base`` (or the defaults).

    Example:
        >>> bank_config("https://q:6333", ReasoningBankConfig(cache_size=5)).cache_size
        5
    """
    if isinstance(value, ReasoningBankConfig):
        return value
    if value is None:
        return base or ReasoningBankConfig()
    if isinstance(value, (str, os.PathLike)):
        return parse_bank_location(value, what=what).config(base)
    if not isinstance(value, Mapping):
        raise BankLocationError(f"{what} must be a ReasoningBankConfig, a mapping, a URL or a path, "
                                f"got {type(value).__name__}")
    d = dict(value)
    given_backend = "backend" in d
    if not given_backend and d.get("url"):
        d["backend"] = url_backend(str(d["url"]))
    merged = {**(base.to_dict(keep_secrets=True) if base is not None else {}), **d}
    if not given_backend and d.get("url"):
        merged["path"] = None
    return ReasoningBankConfig.from_dict(merged)


def url_backend(url: str) -> str:
    """The backend a server URL names: the one claiming its scheme, else ``qdrant`` (which also
    takes ``:memory:`` and bare ``host:port`` URLs).

    Example:
        >>> url_backend("https://q:6333"), url_backend(":memory:")
        ('qdrant', 'qdrant')
    """
    m = _SCHEME.match(url)
    spec = backend_for_scheme(m.group(1)) if m else None
    return spec.name if spec is not None else backend_spec("qdrant").name
