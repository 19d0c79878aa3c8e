"""The judge verifier: a judge model on an OpenAI-compatible endpoint grades the output 0-1.

Example:
    >>> from swarm_sona.executors.verifiers.judge import JUDGE_SYSTEM
    >>> "Score: x" in JUDGE_SYSTEM
    True
"""

from __future__ import annotations

import re
from typing import Any

from swarm_sona.core.executor import Task
from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.verifiers.base import VerifierError, VerifierResult

__all__ = ["JudgeVerifier", "JUDGE_SYSTEM"]

_SCORE = re.compile(r"score\s*[:=]\s*([01](?:\.\d+)?|\.\d+)", re.IGNORECASE)
JUDGE_SYSTEM = ("You are a strict grader. Read the task and the candidate answer and reply with one line "
                "'Score: x' where x is between 0 and 1 (1 = fully correct).")


class JudgeVerifier:
    """Asks ``model`` on an OpenAI-compatible endpoint to grade the output; ``Score: x`` is the reward.

    ``executor_options`` go to :class:`~swarm_sona.executors.openai_chat.OpenAIChatExecutor`
    (``api_key_env``, ``timeout_s``, ``max_retries``...). Success = score >= ``threshold``.
    An endpoint failure gives reward 0, success False and the executor's ``error_kind``.

    Example:
        >>> j = JudgeVerifier("http://127.0.0.1:9/v1", "judge", api_key_env=None, timeout_s=0.2, max_retries=0)
        >>> r = j(Task("2+2?"), "4")
        >>> r.error_kind, r.reward
        ('network', 0.0)
    """

    def __init__(self, base_url: str, model: str, *, threshold: float = 0.5, reference_key: str = "expected",
                 **executor_options: Any) -> None:
        if not isinstance(model, str) or not model:
            raise VerifierError(f"judge verifier: model must be a non-empty name, got {model!r}")
        if not 0.0 <= threshold <= 1.0:
            raise VerifierError(f"judge verifier: threshold must be in [0, 1], got {threshold!r}")
        executor_options.setdefault("system_prompt", JUDGE_SYSTEM)
        executor_options.setdefault("max_tokens", 16)
        self.model = model
        self.threshold = float(threshold)
        self.reference_key = reference_key
        self.executor = OpenAIChatExecutor(base_url, **executor_options)

    def prompt(self, task: Task, output: str) -> str:
        """The grading request's user message."""
        ref = task.metadata.get(self.reference_key) if task.metadata else None
        ref_block = f"\n<reference>\n{ref}\n</reference>" if ref is not None else ""
        return (f"<task>\n{task.text}\n</task>\n<answer>\n{output}\n</answer>{ref_block}\n"
                "Grade the answer. Reply 'Score: x' with x in [0, 1].")

    def __call__(self, task: Task, output: str) -> VerifierResult:
        out = self.executor(Task(self.prompt(task, output), task_type="judge"), self.model, [])
        kind = getattr(out, "error_kind", None) or out.metadata.get("error_kind")
        if kind:
            return VerifierResult(0.0, False, None, str(out.metadata.get("error", "")), error_kind=str(kind))
        hits = _SCORE.findall(out.output)
        if not hits:
            return VerifierResult(0.0, False, None, f"judge reply has no 'Score: x': {out.output[:80]!r}",
                                  error_kind="response")
        score = min(1.0, max(0.0, float(hits[-1])))
        return VerifierResult(score, score >= self.threshold, hits[-1], f"judge {self.model}")
