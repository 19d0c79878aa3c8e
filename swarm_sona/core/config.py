"""Typed, validated configuration for swarm_sona.

Every config is a dataclass. Construct it directly with snake_case keywords, or from a
mapping with :meth:`ConfigBase.from_dict`, which also accepts the camelCase keys of the
integration guide (``targetModules``, ``similarityThreshold``, ``retryWithUpgrade``...).
Unknown keys are errors that name the key and suggest the closest valid one; out-of-range
values are errors that name the field.

Example:
    >>> from swarm_sona.core.config import SONAConfig
    >>> cfg = SONAConfig.from_dict({"lora": {"rank": 8, "targetModules": ["q", "v"]},
    ...                             "ewc": {"lambda": 500.0, "mode": "online"}})
    >>> cfg.lora.target_modules
    ('q', 'v')
    >>> cfg.ewc.lambda_
    500.0
    >>> LoRAConfig.from_dict({"rnak": 4})
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: lora: unknown key 'rnak' (did you mean 'rank'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

__all__ = [
    "ConfigError",
    "ConfigBase",
    "Secret",
    "scrub_secrets",
    "resolve_secret",
    "split_url_secret",
    "LoRAConfig",
    "EWCConfig",
    "ReasoningBankConfig",
    "RetentionConfig",
    "ModelSpec",
    "LLMRouterConfig",
    "ROUTER_STRATEGY_NAMES",
    "SONAConfig",
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
        >>> ReasoningBankConfig(backend="qdrant", url="https://q:6333", api_key="sk-example-123").to_dict()["api_key"]
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


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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


# =====================================================================================
# LoRA
# =====================================================================================
@dataclass(frozen=True)
class LoRAConfig(ConfigBase):
    """LoRA adapter settings (BaseLoRA on the target modules; MicroLoRA on the final hidden state).

    Example:
        >>> LoRAConfig(rank=8, alpha=16).scaling
        2.0
        >>> LoRAConfig(rank=4, alpha=8, use_rslora=True).scaling
        4.0
    """

    _section: ClassVar[str] = "lora"

    rank: int = field_doc("BaseLoRA rank r (4-32 typical); the update is s * B @ A with A (r, d_in).", 8)
    alpha: float = field_doc("Scaling numerator: s = alpha / r (or alpha / sqrt(r) with rsLoRA).", 16.0)
    dropout: float = field_doc("Dropout on the adapter input, applied in training only; in [0, 1).", 0.0)
    target_modules: tuple[str, ...] = field_doc(
        "Model modules that get a BaseLoRA: any of q, k, v, o, mlp_in, mlp_out.", ("q", "v"))
    quantization: str | None = field_doc("Quantise the merged copy: None or 'int8'.", None)
    use_rslora: bool = field_doc("Rank-stabilised scaling alpha / sqrt(r) instead of alpha / r.", False)
    shared_a_seed: int | None = field_doc(
        "If set, every agent derives the same A from this seed and trains B only (FFA-LoRA).", None)
    train_a: bool = field_doc("Train A as well as B (ignored, i.e. False, when shared_a_seed is set).", True)
    micro_rank: int = field_doc("MicroLoRA rank (1-2), updated on every trajectory.", 1)
    micro_alpha: float = field_doc("MicroLoRA scaling numerator.", 1.0)
    seed: int = field_doc("Seed for drawing A when shared_a_seed is not set.", 0)

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int):
            raise ConfigError(f"{self._where('rank')}: expected an integer, got {self.rank!r}")
        self._check_range("rank", 1, 256)
        self._check_range("alpha", 0, lo_open=True)
        self._check_range("dropout", 0, 1, hi_open=True)
        self._check_range("micro_rank", 1, 2)
        self._check_range("micro_alpha", 0, lo_open=True)
        valid = ("q", "k", "v", "o", "mlp_in", "mlp_out")
        tm = tuple(self.target_modules)
        object.__setattr__(self, "target_modules", tm)
        for m in tm:
            if m not in valid:
                close = difflib.get_close_matches(str(m), valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{self._where('target_modules')}: unknown module {m!r}{hint}; valid: {list(valid)}")
        if len(set(tm)) != len(tm):
            raise ConfigError(f"{self._where('target_modules')}: duplicate module in {list(tm)}")
        if self.quantization is not None:
            self._check_choice("quantization", (None, "int8"))

    @property
    def scaling(self) -> float:
        """s = alpha / r, or alpha / sqrt(r) with rsLoRA."""
        return float(self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank))

    @property
    def micro_scaling(self) -> float:
        """MicroLoRA scaling micro_alpha / micro_rank."""
        return float(self.micro_alpha / self.micro_rank)


# =====================================================================================
# EWC++
# =====================================================================================
@dataclass(frozen=True)
class EWCConfig(ConfigBase):
    """EWC++ settings: online EMA Fisher, penalty strength, task-boundary detection.

    ``mode='offline'`` is accepted as the integration guide's name for ``'separate'``
    (one Fisher and anchor per task, as in the original EWC paper).

    Example:
        >>> EWCConfig.from_dict({"lambda": 1000, "mode": "offline"}).mode
        'separate'
    """

    _section: ClassVar[str] = "ewc"

    lambda_: float = field_doc("Penalty strength lambda in (lambda/2) * sum F (theta - theta*)^2; >= 0.", 1000.0)
    fisher_samples: int = field_doc("n: Fisher EMA is updated with mean(g^2) over the last n steps.", 10)
    fisher_decay: float = field_doc("a: weight of the new estimate in F <- (1-a) F + a mean(g^2); in (0, 1].", 0.9)
    mode: Literal["online", "separate", "offline"] = field_doc(
        "online: one running Fisher; separate (alias offline): one Fisher + anchor per task.", "online")
    normalize: bool = field_doc("Min-max normalise the Fisher at consolidation.", True)
    checkpointing: bool = field_doc("Write the Fisher and anchors into engine checkpoints.", True)
    detect_boundaries: bool = field_doc("Detect task boundaries from a shift of the gradient statistics.", True)
    boundary_z: float = field_doc("z-score of the running gradient mean above which a boundary is declared.", 3.0)
    boundary_min_samples: int = field_doc("Minimum steps in the current task before a boundary may be detected.", 50)

    def __post_init__(self) -> None:
        self._check_range("lambda_", 0)
        self._check_range("fisher_samples", 1)
        self._check_range("fisher_decay", 0, 1, lo_open=True)
        self._check_choice("mode", ("online", "separate", "offline"))
        if self.mode == "offline":
            object.__setattr__(self, "mode", "separate")
        self._check_range("boundary_z", 0, lo_open=True)
        self._check_range("boundary_min_samples", 1)


# =====================================================================================
# ReasoningBank
# =====================================================================================
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*", re.I)
_DURATION_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class RetentionConfig(ConfigBase):
    """How long the ReasoningBank keeps patterns (``reasoning_bank.retention``; ``bank.retention`` in a run spec).

    ``max_age``: seconds, or a duration string (``"90s"``, ``"45m"``, ``"12h"``, ``"30d"``, ``"2w"``),
    normalised to seconds. A pattern older than that (by its ``created_at``, the time it was
    first stored; re-storing it does not renew it) is never retrieved or counted, and is deleted
    at the next prune. ``max_per_task_type``: at most that many patterns per task type (patterns
    without one form one group); a store that goes beyond it deletes the oldest first, the lowest
    reward first among equally old, then by id. Both apply to stored and distilled patterns.

    Example:
        >>> RetentionConfig.from_dict({"maxAge": "30d", "maxPerTaskType": 1000}).max_age
        2592000.0
        >>> RetentionConfig(max_age="soon")
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: reasoning_bank.retention.max_age: expected seconds or a duration such as '90m', '12h', '30d', '2w', got 'soon'
    """

    _section: ClassVar[str] = "reasoning_bank.retention"

    max_age: float | str | None = field_doc(
        "Patterns older than this (seconds, or '90m', '12h', '30d', '2w') are never retrieved and are deleted at the "
        "next prune; None = kept forever.", None)
    max_per_task_type: int | None = field_doc(
        "At most this many patterns per task type (no task type = one group); a store beyond it deletes the oldest "
        "(lowest reward first among equally old); None = no cap.", None)
    prune_every: int = field_doc("Delete expired patterns every this many stored patterns (also when the bank opens, "
                            "on flush() and prune()); 0 = only then.", 1000)

    def __post_init__(self) -> None:
        v = self.max_age
        if isinstance(v, str):
            m = _DURATION.fullmatch(v)
            if not m:
                raise ConfigError(f"{self._where('max_age')}: expected seconds or a duration such as '90m', '12h', "
                                  f"'30d', '2w', got {v!r}")
            v = float(m.group(1)) * _DURATION_S[m.group(2).lower()]
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{self._where('max_age')}: expected seconds or a duration string, got {v!r}")
            object.__setattr__(self, "max_age", float(v))
            self._check_range("max_age", 0, lo_open=True)
        if self.max_per_task_type is not None:
            if isinstance(self.max_per_task_type, bool) or not isinstance(self.max_per_task_type, int):
                raise ConfigError(f"{self._where('max_per_task_type')}: expected an integer, got "
                                  f"{self.max_per_task_type!r}")
            self._check_range("max_per_task_type", 1)
        self._check_range("prune_every", 0)

    @property
    def active(self) -> bool:
        """True when any limit is set."""
        return self.max_age is not None or self.max_per_task_type is not None


@dataclass(frozen=True)
class ReasoningBankConfig(ConfigBase):
    """Pattern store on Qdrant: embedded Qdrant Edge (``edge``) or a server (``qdrant``).

    The server's API key is referenced, not copied: ``api_key_env`` (default ``QDRANT_API_KEY``)
    names the environment variable read where the Qdrant client is built, in that process (an
    agent actor reads its own environment; a local Ray passes the driver's environment at start to
    its workers; on a cluster set the variable on the nodes or in the job's ``runtime_env``
    ``env_vars``). A literal ``api_key`` is still accepted and held as a :class:`Secret`: it never
    prints, ``to_dict()`` emits None for it, so checkpoints, reports and uploaded specs never hold
    it (and processes that get the config from such a dict fall back to ``api_key_env``).
    A ``url`` that carries a key (``https://user:KEY@host`` or ``?api-key=KEY``) is stripped: the
    key moves to ``api_key`` (a Secret) and ``url`` keeps only the location.

    Example:
        >>> ReasoningBankConfig.from_dict({"backend": "qdrant", "url": "https://q:6333"}).prefer_grpc
        True
        >>> cfg = ReasoningBankConfig.from_dict({"backend": "qdrant", "url": "https://q:6333?api-key=abc123"})
        >>> cfg.url, cfg.api_key, cfg.to_dict()["api_key"] is None
        ('https://q:6333', Secret('***'), True)
    """

    _section: ClassVar[str] = "reasoning_bank"

    enabled: bool = field_doc("Use a ReasoningBank at all.", True)
    backend: Literal["edge", "qdrant"] = field_doc("edge: embedded qdrant-edge-py at `path`; qdrant: a server at `url`.", "edge")
    dimensions: int | None = field_doc("Vector dimension; None = the engine's dim. Must equal the embedder's.", None)
    similarity_threshold: float = field_doc("Default minimum cosine similarity for retrieval, in [-1, 1].", 0.0)
    cache_size: int = field_doc("Max vectors kept in the in-memory hot-path cache (0 = no cache).", 1_000_000)
    persist_to_disk: bool = field_doc("edge: keep the bank on disk at `path` (False = temporary directory).", True)
    path: str | None = field_doc("edge: bank directory; None = the user's data dir (swarm_sona/bank).", None)
    url: str | None = field_doc("qdrant: server URL, e.g. https://qdrant.example:6333 (a key in it moves to api_key).",
                           None)
    api_key: Secret | None = field_doc("qdrant: literal API key, held as a Secret (never printed or written; "
                                  "prefer api_key_env).", None)
    api_key_env: str | None = field_doc("qdrant: environment variable holding the API key, read when the client is "
                                   "built, in that process (None = no key from the environment).", "QDRANT_API_KEY")
    prefer_grpc: bool = field_doc("qdrant: use gRPC when the server offers it.", True)
    https: bool | None = field_doc("qdrant: force https on/off (None = from the URL).", None)
    collection: str = field_doc("Collection name.", "reasoning_bank")
    embedder: str = field_doc("Embedder name: 'hashing' (default) or 'sentence-transformers:<model>'.", "hashing")
    default_k: int = field_doc("Default number of patterns retrieved.", 1)
    merge_threshold: float = field_doc("Distillation: a new pattern this cosine-close to an existing one merges into it.", 0.95)
    distill_clusters: int = field_doc("Distillation: k for k-means over buffered trajectories (capped by their count).", 8)
    seed: int = field_doc("Seed for k-means++ seeding.", 0)
    cache_int8: bool = field_doc("Also keep an int8 copy of the cached vectors and search it first (float32 re-score); "
                            "native kernels only (the numpy fallback searches float32).", True)
    cache_rerank: int = field_doc("int8 search: candidates re-scored exactly in float32 (at least 4k).", 64)
    cache_threads: int = field_doc("Threads one large cache scan (>= 65,536 rows) is split over; 0 = the CPUs, at most 2.", 0)
    cache_int4_from: int = field_doc("int8 search: from this many cached rows on, scan an int4 copy first (half the bytes, "
                                "4x the re-ranked candidates); 0 = never.", 262_144)
    cache_index: Literal["flat", "ivf"] = field_doc(
        "Hot-path cache search: flat (exact scan) or ivf (k-means lists, approximate, from 4,096 rows).", "flat")
    cache_probe: float = field_doc("ivf: share of the rows scanned per query, in (0, 1].", 0.1)
    payload_cache: int = field_doc("Payloads of recently retrieved patterns kept in memory (LRU; 0 = always read the store).",
                              10_000)
    retries: int = field_doc("qdrant: retries of a call that failed with a transient error (exponential backoff).", 3)
    retry_backoff_s: float = field_doc("qdrant: delay before the first retry in seconds (doubles per retry, jittered).", 0.2)
    batch_size: int = field_doc("qdrant: points per upsert request.", 256)
    timeout_s: float = field_doc("qdrant: request timeout in seconds.", 10.0)
    retention: RetentionConfig = field_doc("Retention: max_age, max_per_task_type, prune_every (see RetentionConfig).",
                                      factory=RetentionConfig)
    redact: str | Callable[[str], str] = field_doc(
        "Redactor applied to task, input, output, title, description and metadata strings before they are stored: "
        "none, secrets, email, names joined by '+', 'package.module:function', or (Python) a callable; "
        "see swarm_sona.core.redaction.", "none")
    embed_redacted: bool = field_doc("Embed the redacted task text instead of the original (no secret shapes the vector; "
                                "the default embeds the original for retrieval quality).", False)

    def __post_init__(self) -> None:
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            if not isinstance(self.api_key, str):
                raise ConfigError(f"{self._where('api_key')}: expected a string, got {type(self.api_key).__name__}")
            object.__setattr__(self, "api_key", Secret(self.api_key) if self.api_key else None)
        if self.api_key_env is not None and (not isinstance(self.api_key_env, str)
                                             or not _ENV_NAME.match(self.api_key_env)):
            raise ConfigError(f"{self._where('api_key_env')}: must name an environment variable "
                              f"(letters, digits, _), got {self.api_key_env!r}")
        if isinstance(self.url, str):
            clean, key = split_url_secret(self.url)
            if key is not None:
                if self.api_key is not None and self.api_key.reveal() != key:
                    raise ConfigError(f"{self._where('url')}: the url carries an API key that differs from "
                                      "api_key; give the key once (best: in the environment variable api_key_env)")
                object.__setattr__(self, "api_key", self.api_key or Secret(key))
            object.__setattr__(self, "url", clean)
        self._check_range("retries", 0, 100)
        self._check_choice("cache_index", ("flat", "ivf"))
        self._check_range("payload_cache", 0)
        self._check_range("cache_rerank", 1)
        self._check_range("cache_threads", 0, 64)
        self._check_range("cache_int4_from", 0)
        self._check_range("cache_probe", 0, 1, lo_open=True)
        self._check_range("retry_backoff_s", 0)
        self._check_range("batch_size", 1)
        self._check_range("timeout_s", 0, lo_open=True)
        self._check_choice("backend", ("edge", "qdrant"))
        if self.dimensions is not None:
            self._check_range("dimensions", 1, 65536)
        self._check_range("similarity_threshold", -1, 1)
        self._check_range("cache_size", 0)
        self._check_range("default_k", 1)
        self._check_range("merge_threshold", -1, 1)
        self._check_range("distill_clusters", 1)
        if self.backend == "qdrant" and self.enabled and not self.url:
            raise ConfigError(f"{self._where('url')}: backend 'qdrant' needs a server url")
        if isinstance(self.retention, Mapping):
            object.__setattr__(self, "retention", RetentionConfig.from_dict(self.retention,
                                                                            path=self._where("retention")))
        elif not isinstance(self.retention, RetentionConfig):
            raise ConfigError(f"{self._where('retention')}: expected a mapping, got {type(self.retention).__name__}")
        from swarm_sona.core.redaction import check_redactor

        check_redactor(self.redact, self._where("redact"))

    def to_dict(self, *, camel: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Plain data; a callable ``redact`` becomes its registered name or ``module:function``."""
        out = super().to_dict(camel=camel, **kwargs)
        if callable(self.redact):
            from swarm_sona.core.redaction import describe_redactor

            out["redact"] = describe_redactor(self.redact)
        return out

    def resolve_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key to connect with: the literal ``api_key``, else ``$api_key_env`` read now, in this process."""
        return resolve_secret(self.api_key, self.api_key_env, environ)


# =====================================================================================
# Router
# =====================================================================================
@dataclass(frozen=True)
class ModelSpec(ConfigBase):
    """One routable model.

    ``cost`` is USD per call when ``cost_unit='call'`` or USD per 1M tokens when
    ``cost_unit='1m_tokens'`` (then the router estimates tokens from the task text).

    Example:
        >>> ModelSpec(name="gpt-4", cost=20.0, quality=0.8, cost_unit="1m_tokens").name
        'gpt-4'
    """

    _section: ClassVar[str] = "model"

    name: str = field_doc("Model name as the executor knows it.", "")
    cost: float = field_doc("Cost in USD per call or per 1M tokens (see cost_unit); >= 0.", 0.0)
    quality: float = field_doc("Prior probability of success, in [0, 1].", 0.5)
    speed: float | None = field_doc("Relative speed in (0, 1] (1 = fastest); or give latency_s.", None)
    latency_s: float | None = field_doc("Typical latency in seconds (> 0).", None, alias=("latency",))
    cost_unit: Literal["call", "1m_tokens"] = field_doc("Unit of `cost`.", "call")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{self._where('name')}: a model needs a non-empty name")
        self._check_range("cost", 0)
        self._check_range("quality", 0, 1)
        if self.speed is not None:
            self._check_range("speed", 0, 1, lo_open=True)
        if self.latency_s is not None:
            self._check_range("latency_s", 0, lo_open=True)
        self._check_choice("cost_unit", ("call", "1m_tokens"))


#: Names of the LLM router strategies a config may name: the built-in four, plus those added
#: with ``swarm_sona.routing.register_strategy`` (which appends here; the functions live there).
ROUTER_STRATEGY_NAMES: list[str] = ["quality", "speed", "cost-optimized", "balanced"]


@dataclass(frozen=True)
class LLMRouterConfig(ConfigBase):
    """Learned LLM router settings.

    Example:
        >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "small", "cost": 0.001, "quality": 0.6},
        ...     {"name": "big", "cost": 0.03, "quality": 0.9}], "strategy": "balanced", "fallback": "small"})
        >>> [m.name for m in cfg.models]
        ['small', 'big']
    """

    _section: ClassVar[str] = "llm_router"

    models: tuple[ModelSpec, ...] = field_doc("The routable models.", factory=tuple)
    strategy: str = field_doc(
        "Objective: quality, speed, cost-optimized, balanced (weights below), a registered strategy "
        "or 'package.module:function' (imported where the router is built, e.g. in each Ray worker).", "balanced")
    fallback: str | None = field_doc("Model used when no model satisfies the constraints.", None)
    retry_with_upgrade: bool = field_doc("On failure retry on the next better model (cascade).", False)
    max_cost_per_task: float | None = field_doc("Per-task budget in USD over all attempts.", None)
    run_budget: float | None = field_doc("Budget in USD for the whole run.", None)
    on_no_model: Literal["fallback", "raise"] = field_doc("When constraints exclude every model: use fallback or raise.", "fallback")
    quality_weight: float = field_doc("balanced: weight on expected quality.", 1.0)
    cost_weight: float = field_doc("balanced: weight on normalised cost.", 0.5)
    speed_weight: float = field_doc("balanced: weight on speed.", 0.1)
    exploration: Literal["thompson", "linucb", "none"] = field_doc("Bandit exploration; none = deterministic serving.", "thompson")
    learning_rate: float = field_doc(
        "Multiplier of the per-model predictors' diagonal Newton step (1 = the Laplace update).", 1.0)
    prior_strength: float = field_doc("Pseudo-observations the quality prior is worth (warm start).", 10.0)
    seed: int = field_doc("Seed for exploration.", 0)
    regularization: float = field_doc("Prior precision (L2 strength) of each embedding-feature weight; > 0.", 1.0)
    exploration_scale: float = field_doc("thompson: posterior-std multiplier; linucb: the UCB alpha; >= 0.", 1.0)
    head_weight: float = field_doc(
        "Max weight of the engine's router-head probability in the quality estimate, in [0, 1].", 0.5)
    chars_per_token: float = field_doc("Token estimate for per-1M-token prices: ceil(len(text) / this) + output_tokens.", 4.0)
    output_tokens: int = field_doc("Expected output tokens per call, for per-1M-token prices.", 256)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        names = [m.name for m in self.models]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"{self._where('models')}: duplicate model name(s) {sorted(dup)}")
        if ":" not in self.strategy:   # "package.module:function" is imported by the router
            self._check_choice("strategy", tuple(ROUTER_STRATEGY_NAMES))
        if self.fallback is not None and self.models and self.fallback not in names:
            raise ConfigError(f"{self._where('fallback')}: unknown model {self.fallback!r}; models are {names}")
        for n in ("max_cost_per_task", "run_budget"):
            if getattr(self, n) is not None:
                self._check_range(n, 0)
        self._check_choice("on_no_model", ("fallback", "raise"))
        for n in ("quality_weight", "cost_weight", "speed_weight"):
            self._check_range(n, 0)
        self._check_choice("exploration", ("thompson", "linucb", "none"))
        self._check_range("learning_rate", 0, lo_open=True)
        self._check_range("prior_strength", 0)
        self._check_range("regularization", 0, lo_open=True)
        self._check_range("exploration_scale", 0)
        self._check_range("head_weight", 0, 1)
        self._check_range("chars_per_token", 0, lo_open=True)
        self._check_range("output_tokens", 0)


# =====================================================================================
# SONA engine
# =====================================================================================
_RUVECTOR_WARNED = False


def _guide_sona_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """The guide's SONA shorthands (see :meth:`SONAConfig.from_dict`) turned into plain keys."""
    global _RUVECTOR_WARNED
    out = dict(data)
    rb_key = next((k for k in ("reasoning_bank", "reasoningBank") if k in out), None)
    rb = out.get(rb_key) if rb_key else None
    if not isinstance(rb, Mapping):
        return out
    rb = dict(rb)
    if rb.get("backend") == "ruvector":
        rb["backend"] = "edge"
        if not _RUVECTOR_WARNED:
            _RUVECTOR_WARNED = True
            import warnings

            warnings.warn("reasoning_bank.backend 'ruvector' (the npm package's store) maps to the embedded "
                          "Qdrant Edge backend 'edge'; write backend: 'edge' to silence this", stacklevel=4)
    dims = rb.get("dimensions")
    if dims is not None and "dim" not in out and rb.get("enabled", True) is not False:
        out["dim"] = dims
    out[rb_key] = rb  # type: ignore[index]
    return out


@dataclass(frozen=True)
class SONAConfig(ConfigBase):
    """Settings of the in-process SONA engine and its parts.

    Example:
        >>> SONAConfig(dim=128).lora.rank
        8
    """

    _section: ClassVar[str] = "sona"

    dim: int = field_doc("Embedding / hidden dimension d of the model.", 256)
    mlp_hidden: int = field_doc("Width of the MLP inside the block.", 256)
    max_steps: int = field_doc("Max step embeddings per trajectory fed to the attention block.", 8)
    model_seed: int = field_doc("Seed of the frozen base weights.", 0)
    lora: LoRAConfig = field_doc("LoRA adapters.", factory=LoRAConfig)
    ewc: EWCConfig = field_doc("EWC++.", factory=EWCConfig)
    reasoning_bank: ReasoningBankConfig = field_doc("ReasoningBank.", factory=ReasoningBankConfig)
    llm_router: LLMRouterConfig = field_doc("LLM router.", factory=LLMRouterConfig)
    instant_lr: float = field_doc("SGD step size of the instant loop (MicroLoRA + heads).", 0.05)
    background_lr: float = field_doc("Adam step size of the background loop (BaseLoRA + heads).", 5e-3)
    background_every: int = field_doc("Run the background loop every N learned trajectories (0 = on demand only).", 100)
    background_steps: int = field_doc("Mini-batch steps per background cycle.", 4)
    batch_size: int = field_doc("Background mini-batch size.", 64)
    replay_size: int = field_doc("Replay buffer capacity in trajectories.", 4096)
    grad_clip: float = field_doc("Clip gradient norms to this value (0 = off).", 5.0)
    agent_id: str | None = field_doc("The engine's identity: stamped on the patterns it stores and the trajectories "
                                     "it learns (retrieval by source_agents).", None)
    checkpoint_every: int = field_doc("With ewc.checkpointing and checkpoint_path: write a checkpoint every N "
                                      "learning steps (learned trajectories + finetune steps); 0 = never.", 1000)
    checkpoint_path: str | None = field_doc("File of the periodic checkpoints (atomic, previous kept as .prev); "
                                            "None = no periodic checkpoints.", None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, path: str | None = None) -> SONAConfig:
        """As :meth:`ConfigBase.from_dict`, plus the guide's shorthands: ``reasoningBank.dimensions``
        sets ``dim`` when ``dim`` is not given, and ``reasoningBank.backend: 'ruvector'`` (the npm
        package's store) maps to the embedded ``edge`` backend, with a warning saying so.

        Example:
            >>> SONAConfig.from_dict({"reasoningBank": {"dimensions": 64}}).dim
            64
        """
        if isinstance(data, Mapping) and not isinstance(data, SONAConfig):
            data = _guide_sona_keys(data)
        return super().from_dict(data, path=path)  # type: ignore[return-value]

    def __post_init__(self) -> None:
        self._check_range("dim", 2, 8192)
        self._check_range("mlp_hidden", 1, 65536)
        self._check_range("max_steps", 0, 1024)
        self._check_range("instant_lr", 0)
        self._check_range("background_lr", 0)
        self._check_range("background_every", 0)
        self._check_range("background_steps", 0)
        self._check_range("batch_size", 1)
        self._check_range("replay_size", 1)
        self._check_range("grad_clip", 0)
        self._check_range("checkpoint_every", 0)
        if self.agent_id is not None and (not isinstance(self.agent_id, str) or not self.agent_id):
            raise ConfigError(f"{self._where('agent_id')}: must be a non-empty string or None, got {self.agent_id!r}")
        rb_dim = self.reasoning_bank.dimensions
        if self.reasoning_bank.enabled and rb_dim is not None and rb_dim != self.dim:
            raise ConfigError(
                f"reasoning_bank.dimensions: {self.reasoning_bank.dimensions} differs from sona.dim {self.dim}")
