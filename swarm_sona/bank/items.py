"""Store items of a ReasoningBank: the keys a store call takes, their validation into
:class:`~.pattern.Pattern` records, and redaction of their text before any id is derived.

Redaction (``config.redact``, see :mod:`swarm_sona.core.redaction`): the redactor runs on the
task, input, output, title, description and metadata strings of every pattern before its id
is derived and before anything is written (stored and distilled patterns, and payloads a
snapshot restores), so neither the payload nor the content-derived id carries the original
text. The vector is the embedding of the *original* task text unless ``embed_redacted`` is
set: a secret then shapes the vector only as a few of its hashed features, which cannot be
read back but can confirm a guessed text; ``embed_redacted=True`` closes that at the price of
slightly different similarities for texts that contained secrets.


Example:
    >>> batch = parse_items([{"task": "sort a list", "reward": 0.9, "success": True}], None, now=0.0)
    >>> batch.patterns[0].task, batch.vectors, batch.originals
    ('sort a list', [None], ['sort a list'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarm_sona.bank.errors import BankInputError
from swarm_sona.bank.pattern import Pattern
from swarm_sona.core import redaction

__all__ = ["ITEM_KEYS", "BOOKKEEPING", "REDACTED_KEYS", "ItemBatch", "parse_items", "redact_item"]

ITEM_KEYS = ("task", "input", "output", "reward", "success", "metadata", "agent_id", "task_type", "vector",
             "title", "description")
# payload fields a re-store keeps from the stored pattern
BOOKKEEPING = ("created_at", "last_used_at", "use_count", "outcome_count", "success_count", "support")
REDACTED_KEYS = ("task", "input", "output", "title", "description", "metadata")


@dataclass
class ItemBatch:
    """Validated store items: the patterns, the vector each item gave (None: embed its task) and
    each item's original task text (before redaction).

    Example:
        >>> ItemBatch([], [], []).patterns
        []
    """

    patterns: list[Pattern]
    vectors: list[Any]
    originals: list[str]


def redact_item(fn: Callable[..., Any] | None, it: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A copy of a store item (or payload) with the redactor ``fn`` applied to its text fields
    (non-strings are left for validation to refuse); a redactor failure is a
    :class:`BankInputError` prefixed by ``where``.

    Example:
        >>> redact_item(lambda s: s.replace("secret", "***"), {"task": "a secret", "reward": 1}, "")["task"]
        'a ***'
    """
    out = dict(it)
    if fn is None:
        return out
    for key in REDACTED_KEYS:
        v = out.get(key)
        if v is not None:
            try:
                out[key] = redaction.redact_value(fn, v, key)
            except redaction.RedactionError as exc:
                raise BankInputError(f"{where}{exc}") from exc
    return out


def parse_items(items: Sequence[Any], redactor: Callable[..., Any] | None, *, now: float,
                single: bool = False) -> ItemBatch:
    """Validate every item (a mapping with :data:`ITEM_KEYS`; ``task``, ``reward`` and ``success``
    required) into a pattern, redacted by ``redactor`` when given. Errors name the item (``item
    i:``) unless ``single``; nothing is returned unless every item is valid."""
    patterns: list[Pattern] = []
    given: list[Any] = []
    originals: list[str] = []
    for i, it in enumerate(items):
        where = "" if single else f"item {i}: "
        if not isinstance(it, Mapping):
            raise BankInputError(f"{where}expected a mapping, got {type(it).__name__}")
        unknown = [k for k in it if k not in ITEM_KEYS]
        if unknown:
            raise BankInputError(f"{where}unknown key {unknown[0]!r} (valid: {', '.join(ITEM_KEYS)})")
        missing = [k for k in ("task", "reward", "success") if k not in it]
        if missing:
            raise BankInputError(f"{where}missing {missing[0]!r}")
        originals.append(it["task"])
        if redactor is not None:
            it = redact_item(redactor, it, where)
        try:
            p = Pattern.build(it["task"], it.get("input", ""), it.get("output", ""), it["reward"], it["success"],
                              it.get("metadata"), it.get("agent_id"), task_type=it.get("task_type"),
                              title=it.get("title"), description=it.get("description"), now=now)
        except BankInputError as exc:
            raise type(exc)(f"{where}{exc}") from exc
        patterns.append(p)
        given.append(it.get("vector"))
    return ItemBatch(patterns, given, originals)
