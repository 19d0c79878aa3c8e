"""Redaction of text before it is stored (ReasoningBank) or exported (telemetry spans).

A *redactor* is a function ``str -> str``. Redactors are chosen by name in the config
(``reasoning_bank.redact``, ``telemetry.redact``), from a registry anyone may add to:

- ``none`` (the default): no redaction at all (the bank and telemetry skip the call);
- ``secrets``: credentials, see :func:`redact_secrets` for exactly what it catches;
- ``email``: e-mail addresses (``[REDACTED:email]``);
- ``"secrets+email"``: names joined by ``+`` run one after the other, left to right;
- ``"package.module:function"``: a function imported by path (useful on Ray workers, which
  import it themselves, whereas a name registered in the driver process is not known there);
- in Python, the callable itself (``ReasoningBankConfig(redact=my_fn)``).

Add one from outside the package with :func:`register_redactor`. An unknown name is a
:class:`~swarm_sona.core.config.ConfigError` naming it when the config is built.

Redaction is a best-effort safety net for credentials that slip into prompts and outputs,
not a guarantee: a pattern list cannot recognise every secret format, nor personal data in
general. Text that must never leave the process should not be given to the swarm.

Example:
    >>> from swarm_sona.core.redaction import redact_secrets, register_redactor, resolve_redactor
    >>> redact_secrets("call it with Authorization: Bearer abcdefghijklmnop0123 and password=hunter2")
    'call it with Authorization: [REDACTED:credential] and password=[REDACTED:credential]'
    >>> redact_secrets("key AKIAABCDEFGHIJKLMNOP, key sk-proj-4f9aXb2c9Qe7Lm0pZs8T")
    'key [REDACTED:aws-access-key-id], key [REDACTED:api-key]'
    >>> _ = register_redactor("shout", str.upper)
    >>> resolve_redactor("secrets+shout")("token=abc")
    'TOKEN=[REDACTED:CREDENTIAL]'
    >>> resolve_redactor("none") is None
    True
    >>> resolve_redactor("secrest")
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: redact: unknown redactor 'secrest' (did you mean 'secrets'?); registered: email, none, secrets, shout. Add one with swarm_sona.core.redaction.register_redactor(name, fn), or name a function as 'package.module:function'
    >>> unregister_redactor("shout")
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from swarm_sona.core.config import ConfigError
from swarm_sona.core.references import import_reference, is_reference

__all__ = [
    "Redactor",
    "RedactionError",
    "register_redactor",
    "unregister_redactor",
    "redactors",
    "resolve_redactor",
    "check_redactor",
    "describe_redactor",
    "redact_secrets",
    "redact_email",
    "redact_value",
    "SECRET_KINDS",
]

Redactor = Callable[[str], str]


class RedactionError(ValueError):
    """A redactor failed or returned something that is not a string."""


def _marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


_A = re.ASCII
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# key=value credentials: found on an ASCII-lowercased copy (same length, so the spans carry over)
# with a case-sensitive pattern, ~15x cheaper than re.IGNORECASE in CPython's engine.
_KEY_WORDS = (r"password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|"
              r"private[_-]?key|credentials?")
_CREDENTIAL = re.compile(r"(?:" + _KEY_WORDS + r")[\"']?\s*[:=]\s*(?:(\")[^\"\n]*\"|(')[^'\n]*'|[^\s\"',;&]+)", _A)
_CREDENTIAL_VALUE = re.compile(r"[:=]\s*", _A)


def _credentials(text: str, low: str) -> str:
    out, last = [], 0
    for m in _CREDENTIAL.finditer(low):
        sep = _CREDENTIAL_VALUE.search(low, m.start(), m.end())
        v0 = sep.end() if sep else m.start()
        q = m.group(1) or m.group(2) or ""  # a quoted value keeps its quotes (JSON stays JSON)
        out += [text[last:v0], q, _marker("credential"), q]
        last = m.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# (kind, triggers, pattern, replacement), run in this order; a rule runs only when one of its
# triggers occurs in the ASCII-lowercased text (clean text then costs a few substring tests).
# Replacements keep what identifies the secret (key name, URL user) and replace the secret.
_SECRET_RULES: tuple[tuple[str, tuple[str, ...], Any, Any], ...] = (
    ("private-key", ("private key",),
     re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S | _A),
     _marker("private-key")),
    ("url-password", ("://",), re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@]+):[^\s/?#@]+@", _A),
     r"\1:" + _marker("password") + "@"),
    ("authorization", ("authorization",),
     re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:basic|bearer|digest|token)\s+)?"
                r"[^\s\"',;]+", _A), r"\1" + _marker("credential")),
    ("bearer", ("bearer",), re.compile(r"\b([Bb]earer\s+)[A-Za-z0-9\-._~+/]{16,}=*", _A), r"\1" + _marker("token")),
    ("jwt", ("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", _A), _marker("jwt")),
    ("api-key", ("sk-",), re.compile(r"\bsk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{16,}", _A), _marker("api-key")),
    ("stripe-key", ("k_live_", "k_test_"), re.compile(r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}", _A),
     _marker("api-key")),
    ("aws-access-key-id", ("akia", "asia", "abia", "acca"),
     re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b", _A), _marker("aws-access-key-id")),
    ("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})", _A), _marker("github-token")),
    ("slack-token", ("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}", _A), _marker("slack-token")),
    ("google-api-key", ("aiza",), re.compile(r"\bAIza[0-9A-Za-z_-]{35}", _A), _marker("google-api-key")),
    ("huggingface-token", ("hf_",), re.compile(r"\bhf_[A-Za-z0-9]{30,}", _A), _marker("huggingface-token")),
    ("credential", ("pass", "secret", "token", "key", "credential"), None, _credentials),
)
SECRET_KINDS: tuple[str, ...] = tuple(k for k, _, _, _ in _SECRET_RULES)
"""What :func:`redact_secrets` recognises, in the order it runs its rules."""

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", _A)


def redact_secrets(text: str) -> str:
    """``text`` with credentials replaced by ``[REDACTED:<kind>]`` (the built-in ``secrets``).

    What it catches (ASCII patterns, run in this order):

    - PEM private-key blocks (``-----BEGIN ... PRIVATE KEY-----`` to the matching END line);
    - passwords in URLs: ``scheme://user:password@host`` keeps the user;
    - ``Authorization:``/``Proxy-Authorization:`` header values (any scheme);
    - ``Bearer <token>`` with a token of 16 or more characters;
    - JSON Web Tokens (``eyJ...``.``...``.``...``);
    - ``sk-...`` API keys (OpenAI, Anthropic and compatible: 16+ characters with a digit),
      Stripe ``sk_live_``/``rk_test_`` keys, AWS access key ids (``AKIA``/``ASIA``/``ABIA``/``ACCA``
      + 16), GitHub (``ghp_``... , ``github_pat_``), Slack (``xoxb-``...), Google (``AIza``...)
      and Hugging Face (``hf_``...) tokens;
    - ``key=value`` / ``key: value`` / ``"key": "value"`` where the key name ends in password,
      passwd, passphrase, secret, token, api_key/apikey, access_key, secret_key, private_key
      or credential(s) (so ``AWS_SECRET_ACCESS_KEY=...``, ``db_password: ...``, ``token=...``):
      the value (quoted, or up to the next space, quote, comma, semicolon or ``&``) is replaced.

    Not caught: secrets without a recognisable prefix or key name (a bare password, a random hex
    string), personal data (use ``email`` for addresses), non-ASCII lookalikes. False positives
    are possible for key names such as ``max_token: 5``.

    Example:
        >>> redact_secrets('{"api_key": "abc123", "user": "ann"} via https://ann:pw@db.local/x')
        '{"api_key": "[REDACTED:credential]", "user": "ann"} via https://ann:[REDACTED:password]@db.local/x'
        >>> redact_secrets("the bearer of news; sk-learn-style names stay")
        'the bearer of news; sk-learn-style names stay'
    """
    low = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
    for _, triggers, rx, repl in _SECRET_RULES:
        for t in triggers:
            if t in low:
                break
        else:
            continue
        out = repl(text, low) if rx is None else rx.sub(repl, text)
        if out is not text and out != text:
            text = out
            low = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
    return text


def redact_email(text: str) -> str:
    """``text`` with e-mail addresses replaced by ``[REDACTED:email]`` (the built-in ``email``).

    Example:
        >>> redact_email("write to ann.lee+ops@example.co.uk")
        'write to [REDACTED:email]'
    """
    return _EMAIL.sub(_marker("email"), text)


def _identity(text: str) -> str:
    return text


_lock = threading.Lock()
_REGISTRY: dict[str, Redactor] = {"none": _identity, "secrets": redact_secrets, "email": redact_email}
_BUILTIN = frozenset(_REGISTRY)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"a redactor name must be a non-empty string of letters, digits, '_', '.' or '-' "
                         f"(no '+' or ':'), got {name!r}")
    return name


def register_redactor(name: str, fn: Redactor | None = None, *, replace: bool = False) -> Any:
    """Register ``fn`` (``str -> str``) under ``name``; returns ``fn``. Without ``fn``, a decorator.

    Registering a name that exists is an error unless ``replace=True``; the built-ins
    (``none``, ``secrets``, ``email``) cannot be replaced. The registry is per process: on Ray
    workers, register it in a module they import, or configure ``'package.module:function'``.

    Example:
        >>> @register_redactor("no-digits")
        ... def no_digits(text):
        ...     return "".join("#" if c.isdigit() else c for c in text)
        >>> resolve_redactor("no-digits")("pin 1234")
        'pin ####'
        >>> unregister_redactor("no-digits")
    """
    _check_name(name)
    if fn is None:
        return lambda f: register_redactor(name, f, replace=replace)
    if not callable(fn):
        raise TypeError(f"redactor {name!r} must be callable (str -> str), got {type(fn).__name__}")
    with _lock:
        if name in _BUILTIN:
            raise ValueError(f"redactor {name!r} is built in and cannot be replaced; register another name")
        if name in _REGISTRY and _REGISTRY[name] is not fn and not replace:
            raise ValueError(f"redactor {name!r} is already registered (pass replace=True to replace it)")
        _REGISTRY[name] = fn
    return fn


def unregister_redactor(name: str) -> None:
    """Remove a registered redactor (built-ins stay); unknown names are ignored."""
    with _lock:
        if name not in _BUILTIN:
            _REGISTRY.pop(name, None)


def redactors() -> list[str]:
    """Registered redactor names, sorted."""
    with _lock:
        return sorted(_REGISTRY)


def _unknown(name: str, where: str) -> ConfigError:
    names = redactors()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown redactor {name!r}{hint}; registered: {', '.join(names)}. Add one with "
                       "swarm_sona.core.redaction.register_redactor(name, fn), or name a function as "
                       "'package.module:function'")


def _lookup(name: str, where: str) -> Redactor:
    if is_reference(name):
        obj = import_reference(name, f"{where}: redactor", ConfigError)
        if not callable(obj):
            raise ConfigError(f"{where}: {name!r} is not callable")
        return obj
    with _lock:
        fn = _REGISTRY.get(name)
    if fn is None:
        raise _unknown(name, where)
    return fn


def _chain(fns: list[Redactor]) -> Redactor:
    def chained(text: str) -> str:
        for f in fns:
            text = f(text)
        return text

    return chained


def resolve_redactor(spec: Any, where: str = "redact") -> Redactor | None:
    """The function a config value names, or None when it redacts nothing (``none``/None).

    ``spec``: a registered name, names joined by ``+``, ``'package.module:function'``, or a
    callable. Anything else, or an unknown name, is a :class:`ConfigError` naming ``where``.
    """
    if spec is None:
        return None
    if callable(spec) and not isinstance(spec, str):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"{where}: expected a redactor name or a callable (str -> str), got {spec!r}")
    parts = [p.strip() for p in spec.split("+")]
    if not spec.strip() or any(not p for p in parts):
        raise ConfigError(f"{where}: empty redactor name in {spec!r}")
    fns = [_lookup(p, where) for p in parts if p != "none"]
    if not fns:
        return None
    return fns[0] if len(fns) == 1 else _chain(fns)


def check_redactor(spec: Any, where: str = "redact") -> None:
    """Raise :class:`ConfigError` unless ``spec`` is a usable redactor setting (see :func:`resolve_redactor`)."""
    resolve_redactor(spec, where)


def describe_redactor(spec: Any) -> str:
    """A config string for ``spec``: the name it is registered under, else ``module:qualname``
    (importable functions), else ``<callable ...>`` (which does not load back).

    Example:
        >>> describe_redactor(redact_secrets), describe_redactor("secrets+email")
        ('secrets', 'secrets+email')
    """
    if spec is None or isinstance(spec, str):
        return "none" if spec is None else spec
    with _lock:
        for name, fn in _REGISTRY.items():
            if fn is spec:
                return name
    mod, qual = getattr(spec, "__module__", None), getattr(spec, "__qualname__", None)
    if mod and qual and "<" not in qual:
        return f"{mod}:{qual}"
    return f"<callable {qual or type(spec).__name__}>"


def redact_value(fn: Redactor, value: Any, what: str = "text") -> Any:
    """``value`` with ``fn`` applied to every string in it (lists, tuples and mapping values;
    keys and other types unchanged). Raises :class:`RedactionError` when ``fn`` fails or does not
    return a string (the message names ``what`` but never quotes the text).

    Example:
        >>> redact_value(str.upper, {"a": ["x", 1], "b": "y"})
        {'a': ['X', 1], 'b': 'Y'}
    """
    if isinstance(value, str):
        try:
            out = fn(value)
        except Exception as exc:
            raise RedactionError(f"the redactor {describe_redactor(fn)!r} raised {type(exc).__name__} on {what}") from exc
        if not isinstance(out, str):
            raise RedactionError(f"the redactor {describe_redactor(fn)!r} returned a {type(out).__name__} for {what}, "
                                 "not a string")
        return out
    if isinstance(value, list):
        return [redact_value(fn, v, what) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(fn, v, what) for v in value)
    if isinstance(value, Mapping):
        return {k: redact_value(fn, v, f"{what}[{k!r}]") for k, v in value.items()}
    return value
