"""String verifiers: normalised exact match and regular expressions.

Example:
    >>> from swarm_sona.executors.verifiers.text import normalize_text
    >>> normalize_text("The  Answer!")
    'answer'
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from swarm_sona.core.executor import Task
from swarm_sona.executors.verifiers.base import VerifierError, VerifierResult, expected_value

__all__ = ["ExactVerifier", "RegexVerifier", "normalize_text"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(s: str) -> str:
    """Lower case, punctuation and articles removed, whitespace folded (SQuAD's normalisation).

    Example:
        >>> normalize_text("  The  Eiffel Tower! ")
        'eiffel tower'
    """
    return " ".join(_ARTICLES.sub(" ", s.lower().translate(_PUNCT)).split())


@dataclass(frozen=True)
class ExactVerifier:
    """Normalised output equals the normalised ``metadata[expected_key]`` (any of a list).

    Example:
        >>> ExactVerifier()(Task("capital of France?", metadata={"expected": "Paris"}), "paris.").success
        True
    """

    expected_key: str = "expected"

    def __call__(self, task: Task, output: str) -> VerifierResult:
        raw = expected_value(task, self.expected_key)
        wants = [raw] if isinstance(raw, str) else list(raw)
        got = normalize_text(output)
        ok = any(normalize_text(str(w)) == got for w in wants)
        return VerifierResult(1.0 if ok else 0.0, ok, got, f"expected one of {wants!r}")


@dataclass(frozen=True)
class RegexVerifier:
    """The output matches ``pattern`` (else ``task.metadata["regex"]``); ``fullmatch`` or search.

    Example:
        >>> RegexVerifier(r"def \\w+\\(")(Task("write a function"), "def add(a, b): ...").success
        True
    """

    pattern: str | None = None
    fullmatch: bool = False
    flags: int = 0

    def __post_init__(self) -> None:
        if self.pattern is not None:
            try:
                re.compile(self.pattern, self.flags)
            except re.error as exc:
                raise VerifierError(f"regex verifier: invalid pattern {self.pattern!r}: {exc}") from exc

    def __call__(self, task: Task, output: str) -> VerifierResult:
        pattern = self.pattern or (task.metadata.get("regex") if task.metadata else None)
        if not pattern:
            raise VerifierError(f"regex verifier: no pattern given and task {task.id!r} has no metadata['regex']")
        try:
            rx = re.compile(pattern, self.flags)
        except re.error as exc:
            raise VerifierError(f"task {task.id!r}: invalid regex {pattern!r}: {exc}") from exc
        m = rx.fullmatch(output.strip()) if self.fullmatch else rx.search(output)
        return VerifierResult(1.0 if m else 0.0, bool(m), m.group(0) if m else None, f"pattern {pattern!r}")
