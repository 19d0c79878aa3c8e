"""The numeric verifier: the final number of a worked solution (GSM8K's ``#### N`` first).

Example:
    >>> from swarm_sona.executors.verifiers.numeric import extract_number
    >>> extract_number("3 + 4 = 7\\n#### 7")
    '7'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from swarm_sona.core.executor import Task
from swarm_sona.executors.verifiers.base import VerifierError, VerifierResult, expected_value

__all__ = ["NumericVerifier", "extract_number"]

_NUM = r"-?\$?\s?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\$?\.\d+"
_FINAL = [re.compile(p, re.IGNORECASE) for p in (
    r"####\s*(" + _NUM + ")",
    r"\\boxed\{\s*(" + _NUM + r")\s*\}",
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)?\s*(?:about|approximately|=)?\s*\**\s*(" + _NUM + ")",
)]
_ANY_NUM = re.compile(_NUM)


def _to_number(s: str) -> Fraction | None:
    s = s.replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def extract_number(text: str) -> str | None:
    """The final numeric answer of ``text`` as written (commas and ``$`` removed), else None.

    Priority: GSM8K's ``#### N``, ``\\boxed{N}``, the last "answer is N", else the last number.

    Example:
        >>> extract_number("She has 3 + 4 = 7 apples, so 7 * 2 = 14.\\n#### 14")
        '14'
        >>> extract_number("Step 1: 12 eggs. Step 2: 3 eaten. So the answer is $1,080. (Checked 2 times.)")
        '1080'
        >>> extract_number("It costs 18 dollars in total, up from 10.")
        '10'
    """
    for pat in _FINAL:
        hits = pat.findall(text)
        if hits:
            return hits[-1].replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    hits = _ANY_NUM.findall(text)
    return hits[-1].replace("$", "").replace(",", "").replace(" ", "").rstrip(".") if hits else None


@dataclass(frozen=True)
class NumericVerifier:
    """Final number (:func:`extract_number`) equal to ``metadata[expected_key]`` within ``tolerance``.

    ``tolerance`` is relative to the expected value's magnitude (at least 1), so 1e-6 accepts
    ``14.0`` for ``14`` and rejects ``14.1``.

    Example:
        >>> v = NumericVerifier()
        >>> v(Task("q", metadata={"expected": "1,080"}), "... so $1080 in all.\\n#### 1080").reward
        1.0
    """

    tolerance: float = 1e-6
    expected_key: str = "expected"

    def __call__(self, task: Task, output: str) -> VerifierResult:
        raw = str(expected_value(task, self.expected_key))
        want = _to_number(extract_number(raw) or raw)
        if want is None:
            raise VerifierError(f"task {task.id!r}: expected answer {raw!r} is not a number")
        got_s = extract_number(output)
        got = _to_number(got_s) if got_s else None
        if got is None:
            return VerifierResult(0.0, False, None, "no number in the output")
        ok = abs(float(got - want)) <= self.tolerance * max(1.0, abs(float(want)))
        return VerifierResult(1.0 if ok else 0.0, ok, got_s, f"expected {raw}, got {got_s}")
