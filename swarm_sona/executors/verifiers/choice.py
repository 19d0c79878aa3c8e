"""The multiple-choice verifier: the option letter an answer commits to, also in prose.

Example:
    >>> from swarm_sona.executors.verifiers.choice import extract_choice
    >>> extract_choice("I'd go with option C")
    'C'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarm_sona.core.executor import Task
from swarm_sona.executors.verifiers.base import VerifierError, VerifierResult, expected_value
from swarm_sona.executors.verifiers.text import normalize_text

__all__ = ["ChoiceVerifier", "extract_choice", "mc_options"]

_OPTION = re.compile(r"^\s*\(?([A-J])[.)]\s+(.+?)\s*$", re.MULTILINE)


def mc_options(prompt: str) -> dict[str, str]:
    """The options of a multiple-choice prompt (lines ``A. text`` or ``(A) text``, from A on), else {}.

    Example:
        >>> mc_options("Which organ?\\nA. Bladder\\nB. Kidney\\nAnswer:")
        {'A': 'Bladder', 'B': 'Kidney'}
    """
    found: dict[str, str] = {}
    for letter, text in _OPTION.findall(prompt):
        if letter not in found:
            found[letter] = text
    letters = "".join(sorted(found))
    if len(letters) < 2 or not "ABCDEFGHIJ".startswith(letters):
        return {}
    return found


def extract_choice(text: str, letters: Sequence[str] = "ABCD", options: Mapping[str, str] | None = None) -> str | None:
    """The option letter ``text`` commits to, also in prose, else None.

    Explicit statements win ("answer is (C)", "Answer: C", "option C is correct", "I'd go with
    C"); then a letter opening the reply ("C." / "(C)"); then a single letter in parentheses;
    then, with ``options``, the text of exactly one option. A lone "A" used as an article is
    not taken for option A.

    Example:
        >>> extract_choice("A good question! Considering each option, the correct answer is (C).")
        'C'
        >>> extract_choice("B. paralysis of the facial muscles")
        'B'
        >>> extract_choice("It must be the glomerulus.", options={"A": "Afferent arteriole", "B": "Glomerulus"})
        'B'
    """
    ls = "".join(sorted({str(x).upper() for x in letters}))
    if not ls:
        return None
    L = f"[{ls}]"
    explicit = [
        rf"(?:correct |right |best |final )?(?:answer|option|choice)\s*(?:is|would be|should be|:|=)\s*(?:option\s*)?\(?\**({L})\b",
        rf"(?:option|choice|answer)\s*\(?({L})\)?\s*(?:is|would be|seems)\s*(?:the\s*)?(?:correct|right|best)",
        rf"(?:go with|choose|pick|select|opt for)\s*(?:option\s*|answer\s*)?\(?({L})\b",
        rf"\(?({L})\)?\s*is\s*(?:the\s*)?(?:correct|right|best)\b",
    ]
    for pat in explicit:
        hits = re.findall(pat, text, re.IGNORECASE if pat is not explicit[3] else 0)
        hits = [h.upper() for h in hits if h.upper() in ls]
        if hits:
            return hits[-1]
    m = re.match(rf"\s*\**\s*(?:\(({L})\)|({L})[.):])(?:\s|\*|$)", text) or re.fullmatch(rf"[\s*]*\(?({L})\)?[.\s*]*", text)
    if m:
        return next(g for g in m.groups() if g)
    paren = set(re.findall(rf"\(({L})\)", text))
    if len(paren) == 1:
        return paren.pop()
    if options:
        norm = normalize_text(text)
        named = [k for k, v in options.items() if k in ls and normalize_text(v) and normalize_text(v) in norm]
        if len(named) == 1:
            return named[0]
    return None


@dataclass(frozen=True)
class ChoiceVerifier:
    """The letter :func:`extract_choice` finds equals ``metadata[expected_key]``.

    The options (for answers naming an option's text) come from the task text (:func:`mc_options`).

    Example:
        >>> ChoiceVerifier()(Task("Q\\nA. x\\nB. y\\nC. z\\nD. w", metadata={"expected": "D"}), "Answer: D").success
        True
    """

    expected_key: str = "expected"

    def __call__(self, task: Task, output: str) -> VerifierResult:
        want = str(expected_value(task, self.expected_key)).strip().strip("().").upper()
        opts = mc_options(task.text)
        letters = sorted(opts) if opts else list("ABCD")
        if want not in letters:
            raise VerifierError(f"task {task.id!r}: expected letter {want!r} is not one of {letters}")
        got = extract_choice(output, letters, opts or None)
        if got is None:
            return VerifierResult(0.0, False, None, "no option letter in the output")
        ok = got == want
        return VerifierResult(1.0 if ok else 0.0, ok, got, f"expected {want}, got {got}")
