"""The base of every swarm_sona config: :class:`ConfigBase`, :func:`field_doc`, the validators,
:class:`ConfigError`, secrets (:class:`Secret`, :func:`scrub_secrets`), :func:`load_config_file`.

Every config is a dataclass beside the code it configures (``learning/config.py``,
``routing/config.py``, ``bank/config.py``, ``engine/config.py``, ``runtime/config.py``...).
Construct it directly with snake_case keywords, or from a mapping with
:meth:`ConfigBase.from_dict`, which also accepts the camelCase keys of the integration guide
(``targetModules``, ``similarityThreshold``, ``retryWithUpgrade``...). Unknown keys are errors
that name the key and suggest the closest valid one; out-of-range values are errors that name
the field.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class PoolConfig(ConfigBase):
    ...     _section = "pool"
    ...     max_workers: int = field_doc("Worker processes, 1-64.", 4)
    ...     def __post_init__(self) -> None:
    ...         self._check_range("max_workers", 1, 64)
    >>> PoolConfig.from_dict({"maxWorkers": 8}).max_workers
    8
    >>> PoolConfig.from_dict({"maxWorkrs": 8})
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: pool: unknown key 'maxWorkrs' (did you mean 'max_workers'?)
    >>> PoolConfig(max_workers=0)
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: pool.max_workers: must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

__all__ = [
    "ConfigError",
    "ConfigBase",
    "Secret",
    "scrub_secrets",
    "resolve_secret",
    "split_url_secret",
    "field_doc",
    "is_env_name",
    "load_config_file",
    "camel_to_snake",
    "snake_to_camel",
]

C = TypeVar("C", bound="ConfigBase")


class ConfigError(ValueError):
    """A configuration value or key is invalid. The message names the field (dotted path)."""


# =====================================================================================
# Secrets: referenced (an environment variable's name), or held so they never print
# =====================================================================================
class Secret:
    """A credential given literally (e.g. ``api_key: ...`` in a config), held so it never prints
    or serialises by accident.

    * ``repr()``/``str()``/f-strings show ``***``; :meth:`reveal` is the only way to the value
      (called where the client is built, in the process that uses it).
    * :meth:`ConfigBase.to_dict` emits ``None`` in its place, so checkpoints, run reports and
      uploaded specs never hold it (``to_dict(keep_secrets=True)`` keeps the *object*, for an
      in-memory hand-over only); json, YAML and msgpack refuse the object itself.
    * Pickling keeps the value: that is how Ray hands it to an actor, in memory. Do not pickle a
      Secret to a file. The preferred way is no literal at all: ``api_key_env`` names an
      environment variable that each process reads itself (see the configs' ``api_key_env``).

    Example:
        >>> s = Secret("sk-example-123")
        >>> s, str(s), f"{s}", s.reveal()
        (Secret('***'), '***', '***', 'sk-example-123')
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class ServerConfig(ConfigBase):
        ...     api_key: Secret | None = field_doc("Literal API key.", None)
        >>> ServerConfig.from_dict({"api_key": "sk-example-123"}).to_dict()["api_key"] is None
        True
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str) or not value:
            raise TypeError("a Secret holds a non-empty string")
        self._value = value

    def reveal(self) -> str:
        """The plaintext (use it only to authenticate, never to print or store)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return format("***", spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac

        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
def is_env_name(name: object) -> bool:
    """True when ``name`` is a valid environment variable name (letters, digits, ``_``, not starting
    with a digit).

    Example:
        >>> is_env_name("QDRANT_API_KEY"), is_env_name("MY-TOKEN"), is_env_name("1X"), is_env_name(None)
        (True, False, False, False)
    """
    return isinstance(name, str) and _ENV_NAME.fullmatch(name) is not None


_URL_KEY_PARAMS = {"api-key", "apikey", "key", "token", "access-token", "auth", "password"}


def resolve_secret(literal: Secret | str | None, env: str | None,
                   environ: Mapping[str, str] | None = None) -> str | None:
    """The literal key if there is one, else the value of environment variable ``env`` (read now,
    in this process), else None.

    Example:
        >>> resolve_secret(None, "SOME_KEY", {"SOME_KEY": "k1"}), resolve_secret(Secret("k2"), "SOME_KEY", {})
        ('k1', 'k2')
    """
    if isinstance(literal, Secret):
        return literal.reveal()
    if literal:
        return literal
    if env:
        import os

        return (os.environ if environ is None else environ).get(env) or None
    return None


def split_url_secret(url: str) -> tuple[str, str | None]:
    """``(url without credentials, the credential or None)``: userinfo (``https://user:KEY@host``:
    the password, or the user when there is no password) and ``api-key``/``api_key``/``key``/
    ``token`` query parameters are taken out. Non-http(s) URLs pass through.

    Example:
        >>> split_url_secret("https://me:s3cr3t@q.example:6333/x?api_key=zz&timeout=5")
        ('https://q.example:6333/x?timeout=5', 's3cr3t')
        >>> split_url_secret("https://q.example:6333")
        ('https://q.example:6333', None)
    """
    from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        return url, None
    parts = urlsplit(url)
    key: str | None = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, sep, password = userinfo.partition(":")
        key = unquote(password if sep and password else user) or None
    kept = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k.lower().replace("_", "-") in _URL_KEY_PARAMS:
            key = key or v or None
        else:
            kept.append((k, v))
    if netloc == parts.netloc and len(kept) == len(parse_qsl(parts.query, keep_blank_values=True)):
        return url, None
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept), parts.fragment)), key


_SCRUB = (
    # scheme://user:password@host -> scheme://***@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@"), r"\1***@"),
    # Authorization / api-key style headers, Bearer/Basic tokens
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=*-]{4,}"), r"\1\2***"),
    # Basic/Token + something credential-shaped (past its first character: a digit, a capital or
    # a symbol), so that "the token expired" or "Basic authentication" stay readable
    (re.compile(r"\b([Bb]asic|BASIC|[Tt]oken|TOKEN)(\s+)(?=[\w.~+/=*-][\w.~+/=*-]*[0-9A-Z_./+=-])[\w.~+/=*-]{6,}"),
     r"\1\2***"),
    (re.compile(r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key)(\s*[:=]\s*)(?!\*\*\*)(?:(?:bearer|basic)\s+)?[^\s,;\"']+"),
     r"\1\2***"),
    # OpenAI-style keys (sk-..., sk-proj-...), also when partly masked by the server
    (re.compile(r"\bsk-[A-Za-z0-9_*.-]{4,}"), "sk-***"),
    # name=value where the name says key/token/secret/password (query strings, forms, logs)
    (re.compile(r"(?i)\b([\w.-]*(?:key|token|secret|password|passwd|pwd|auth)[\w.-]*)=(?!\*\*\*)[^&\s\"'#,;<>]+"),
     r"\1=***"),
    # "api_key": "value" in JSON bodies
    (re.compile(r"(?i)(\"[\w.-]*(?:key|token|secret|password|authorization)[\w.-]*\"\s*:\s*\")(?:[^\"\\]|\\.)*(\")"),
     r"\1***\2"),
)


def scrub_secrets(text: str, *known: Secret | str | None, limit: int | None = None) -> str:
    """``text`` with every known secret and anything that looks like a credential (``Bearer ...``,
    ``sk-...``, ``api_key=...``/``key=...``, URL userinfo, ``"api_key": "..."``) replaced by
    ``***``; then cut to ``limit`` characters (scrubbed first, so a cut never leaves half a key).

    Example:
        >>> scrub_secrets("GET https://u:pw@h/x?key=abc failed: Bearer sk-abcdef123 rejected")
        'GET https://***@h/x?key=*** failed: Bearer *** rejected'
        >>> scrub_secrets("token s3cret-value-1 was refused", "s3cret-value-1")
        'token *** was refused'
        >>> scrub_secrets("the token expired; Basic dXNlcjpwYXNz rejected; Basic authentication failed")
        'the token expired; Basic *** rejected; Basic authentication failed'
    """
    out = str(text)
    for k in known:
        v = k.reveal() if isinstance(k, Secret) else k
        if v and len(v) >= 4:
            out = out.replace(v, "***")
    for pattern, repl in _SCRUB:
        out = pattern.sub(repl, out)
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 1)] + "\u2026"
    return out


def camel_to_snake(name: str) -> str:
    """``targetModules`` -> ``target_modules``; snake_case passes through unchanged."""
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    return s.replace("-", "_").lower()


def snake_to_camel(name: str) -> str:
    """``target_modules`` -> ``targetModules``."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml), TOML (.toml) or JSON (.json) file into a dict.

    Raises ConfigError naming the file when it cannot be read or parsed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{p}: unsupported config format {suffix!r} (use .yaml, .toml or .json)")
    except ConfigError:
        raise
    except Exception as exc:  # parser errors of three libraries
        raise ConfigError(f"{p}: cannot parse: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def field_doc(text: str, default: Any = dataclasses.MISSING, *, factory: Any = None, alias: tuple[str, ...] = ()) -> Any:
    """A dataclass field carrying its one-line doc (and extra accepted key aliases)."""
    md = {"doc": text, "aliases": alias}
    if factory is not None:
        return field(default_factory=factory, metadata=md)
    return field(default=default, metadata=md)


class ConfigBase:
    """Mixin for config dataclasses: dict loading, key normalisation, validation helpers."""

    _section: ClassVar[str] = ""

    # ---- loading -------------------------------------------------------------------
    @classmethod
    def _key_map(cls) -> dict[str, str]:
        keys: dict[str, str] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not f.init:
                continue
            names = {f.name, f.name.rstrip("_"), snake_to_camel(f.name)}
            names.update(f.metadata.get("aliases", ()))
            for n in names:
                keys[n] = f.name
        return keys

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, *, path: str | None = None) -> C:
        """Build from a mapping with snake_case or camelCase keys, validating everything."""
        where = path or cls._section or cls.__name__
        if data is None:
            data = {}
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        keys = cls._key_map()
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for raw_key, value in data.items():
            if not isinstance(raw_key, str):
                raise ConfigError(f"{where}: keys must be strings, got {raw_key!r}")
            name = keys.get(raw_key) or keys.get(camel_to_snake(raw_key))
            if name is None:
                valid = sorted({f.name.rstrip("_") for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
                close = difflib.get_close_matches(camel_to_snake(raw_key), valid, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(valid)})"
                raise ConfigError(f"{where}: unknown key {raw_key!r}{hint}")
            if name in kwargs:
                raise ConfigError(f"{where}: key {raw_key!r} given twice (as {name!r})")
            kwargs[name] = _coerce(hints[name], value, f"{where}.{name.rstrip('_')}")
        try:
            return cls(**kwargs)
        except ConfigError:
            raise
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    @classmethod
    def from_file(cls: type[C], path: str | Path) -> C:
        """Load from a YAML, TOML or JSON file (see :func:`load_config_file`)."""
        return cls.from_dict(load_config_file(path), path=str(path))

    def to_dict(self, *, camel: bool = False, keep_secrets: bool = False) -> dict[str, Any]:
        """Plain-data form (lists, dicts, scalars) that ``from_dict`` accepts back.

        A :class:`Secret` (a literal API key) becomes ``None``: what this returns may be printed,
        checkpointed or uploaded. ``keep_secrets=True`` keeps the Secret objects (never their
        plaintext) for handing a config to another object or Ray actor in memory; json, YAML and
        msgpack refuse such a dict.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            key = snake_to_camel(f.name) if camel else f.name.rstrip("_")
            out[key] = _plain(v, camel, keep_secrets)
        return out

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """Field name -> its one-line doc."""
        return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    # ---- validation helpers ----------------------------------------------------------
    def _where(self, name: str) -> str:
        return f"{self._section or type(self).__name__}.{name.rstrip('_')}"

    def _check_range(self, name: str, lo: float | None = None, hi: float | None = None,
                     *, lo_open: bool = False, hi_open: bool = False) -> None:
        v = getattr(self, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{self._where(name)}: expected a number, got {v!r}")
        if not math.isfinite(v):
            raise ConfigError(f"{self._where(name)}: must be finite, got {v!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            rel = ">" if lo_open else ">="
            raise ConfigError(f"{self._where(name)}: must be {rel} {lo}, got {v!r}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            rel = "<" if hi_open else "<="
            raise ConfigError(f"{self._where(name)}: must be {rel} {hi}, got {v!r}")

    def _check_choice(self, name: str, choices: Sequence[Any]) -> None:
        v = getattr(self, name)
        if v not in choices:
            close = difflib.get_close_matches(str(v), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{self._where(name)}: must be one of {list(choices)}, got {v!r}{hint}")


def _plain(v: Any, camel: bool, keep_secrets: bool = False) -> Any:
    if isinstance(v, Secret):
        return v if keep_secrets else None
    if isinstance(v, ConfigBase):
        return v.to_dict(camel=camel, keep_secrets=keep_secrets)
    if isinstance(v, (list, tuple)):
        return [_plain(x, camel, keep_secrets) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x, camel, keep_secrets) for k, x in v.items()}
    return v


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert plain data into the annotated type (nested configs, tuples, numbers)."""
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _coerce(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if tp is Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
        return Secret(value) if value else None
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        return tp.from_dict(value, path=where)
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}{hint}")
        return value
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item_t = args[0] if args else Any
        items = [_coerce(item_t, x, f"{where}[{i}]") for i, x in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
