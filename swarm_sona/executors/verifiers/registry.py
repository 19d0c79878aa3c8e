"""The verifiers by name (:data:`VERIFIERS`) and per task type (:class:`VerifierRegistry`).

Example:
    >>> from swarm_sona.executors.verifiers.registry import VERIFIERS
    >>> sorted(VERIFIERS)
    ['choice', 'command', 'exact', 'judge', 'numeric', 'regex']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from swarm_sona.core.executor import Task
from swarm_sona.executors.verifiers.base import Verifier, VerifierError, VerifierResult
from swarm_sona.executors.verifiers.choice import ChoiceVerifier
from swarm_sona.executors.verifiers.command import CommandVerifier
from swarm_sona.executors.verifiers.judge import JudgeVerifier
from swarm_sona.executors.verifiers.numeric import NumericVerifier
from swarm_sona.executors.verifiers.text import ExactVerifier, RegexVerifier

__all__ = ["VERIFIERS", "make_verifier", "VerifierRegistry"]

VERIFIERS: dict[str, Callable[..., Verifier]] = {
    "numeric": NumericVerifier,
    "choice": ChoiceVerifier,
    "exact": ExactVerifier,
    "regex": RegexVerifier,
    "command": CommandVerifier,
    "judge": JudgeVerifier,
}


def make_verifier(name: str, **options: Any) -> Verifier:
    """A verifier by registry name (:data:`VERIFIERS`) with its options.

    Example:
        >>> make_verifier("regex", pattern="ok").__class__.__name__
        'RegexVerifier'
        >>> make_verifier("numeral")
        Traceback (most recent call last):
        ...
        swarm_sona.executors.verifiers.base.VerifierError: unknown verifier 'numeral'; known: choice, command, exact, judge, numeric, regex
    """
    factory = VERIFIERS.get(name)
    if factory is None:
        raise VerifierError(f"unknown verifier {name!r}; known: {', '.join(sorted(VERIFIERS))}")
    try:
        return factory(**options)
    except TypeError as exc:
        raise VerifierError(f"verifier {name!r}: {exc}") from exc


class VerifierRegistry:
    """Verifiers per task type, with a default for other types (None: a clear error).

    ``spec`` values are verifiers or ``{"name": ..., **options}`` mappings (as a run spec writes them).

    Example:
        >>> reg = VerifierRegistry({"qa": {"name": "exact"}}, default=RegexVerifier(r"\\S"))
        >>> reg(Task("?", task_type="qa", metadata={"expected": "yes"}), "Yes!").success
        True
        >>> reg.reward_fn()(Task("?", task_type="chat"), "hello", {})
        (1.0, True)
    """

    def __init__(self, spec: Mapping[str, Verifier | Mapping[str, Any]] | None = None, *,
                 default: Verifier | Mapping[str, Any] | None = None) -> None:
        self.by_type: dict[str, Verifier] = {k: self._build(v, k) for k, v in (spec or {}).items()}
        self.default = self._build(default, "default") if default is not None else None

    @staticmethod
    def _build(v: Verifier | Mapping[str, Any], where: str) -> Verifier:
        if isinstance(v, Mapping):
            opts = dict(v)
            name = opts.pop("name", None)
            if not isinstance(name, str):
                raise VerifierError(f"verifiers[{where!r}]: a mapping needs a 'name' (one of {sorted(VERIFIERS)})")
            return make_verifier(name, **opts)
        if not callable(v):
            raise VerifierError(f"verifiers[{where!r}]: expected a verifier or a mapping, got {type(v).__name__}")
        return v

    def for_task(self, task: Task) -> Verifier:
        """The verifier for ``task.task_type`` (else the default)."""
        v = self.by_type.get(task.task_type or "", self.default)
        if v is None:
            raise VerifierError(f"no verifier for task type {task.task_type!r}; have {sorted(self.by_type)} "
                                "and no default")
        return v

    def __call__(self, task: Task, output: str) -> VerifierResult:
        return self.for_task(task)(task, output)

    def reward_fn(self) -> Callable[[Task, str, Mapping[str, Any]], tuple[float, bool]]:
        """An ``OpenAIChatExecutor`` ``reward_fn`` scoring with these verifiers."""
        def score(task: Task, output: str, response: Mapping[str, Any]) -> tuple[float, bool]:
            r = self(task, output)
            return r.reward, r.success
        return score
