"""Reward verifiers: score a model's output for a task, chosen per task type (one family per module).

A verifier is a callable ``(task, output) -> VerifierResult`` (reward in [0, 1], success,
what it extracted, a short detail). Shipped, by registry name (:data:`VERIFIERS`):

* ``numeric``: the final number (GSM8K's ``#### 42`` first, then "the answer is 42",
  ``\\boxed{42}``, else the last number in the text; ``1,234``, ``$5``, ``3/4``, ``-2.50``
  understood) against ``task.metadata["expected"]`` within a tolerance.
* ``choice``: a multiple-choice letter, also written in prose ("The correct answer is (B)",
  "I'd go with option C", "B. Glomerulus", or the text of exactly one option).
* ``exact``: normalised exact string (case, punctuation, articles and spacing ignored).
* ``regex``: the output matches a pattern (given, or ``task.metadata["regex"]``).
* ``command``: runs a user's test command on the output in a temporary directory (the output
  in ``output.txt``, the task in ``task.txt``), with a timeout, resource limits (CPU seconds,
  address space, file size, processes) and a minimal environment; exit status 0 = pass. No
  network where the platform allows it: when running as root on Linux the command runs under
  ``unshare -n`` (a fresh network namespace with only a down loopback);
  ``CommandVerifier.network_isolated`` says whether it did. ``network="require"`` refuses to
  run without isolation, ``"allow"`` never isolates.
* ``judge``: asks a judge model through an OpenAI-compatible endpoint (the same
  :class:`~swarm_sona.executors.openai_chat.OpenAIChatExecutor`) for a 0-1 score. The prompt
  holds the task in ``<task>`` tags, the candidate in ``<answer>`` tags (and a reference in
  ``<reference>`` tags when the task has one); the reply's ``Score: x`` is the reward. An
  endpoint failure gives reward 0 with ``error_kind`` set, so it is not mistaken for a verdict.

:class:`VerifierRegistry` maps task types to verifiers (with a default) and gives the
OpenAI executor's ``reward_fn`` through :meth:`VerifierRegistry.reward_fn`.

Example:
    >>> from swarm_sona.core.executor import Task
    >>> from swarm_sona.executors.verifiers import VerifierRegistry, make_verifier
    >>> reg = VerifierRegistry({"gsm8k": make_verifier("numeric"), "mmlu": make_verifier("choice")})
    >>> reg(Task("6*7?", task_type="gsm8k", metadata={"expected": "42"}), "6*7 = 42\\n#### 42").success
    True
    >>> reg(Task("Q\\nA. x\\nB. y", task_type="mmlu", metadata={"expected": "B"}), "I think (A) is right").reward
    0.0
"""

from __future__ import annotations

from swarm_sona.executors.verifiers.base import Verifier, VerifierError, VerifierResult, expected_value
from swarm_sona.executors.verifiers.choice import ChoiceVerifier, extract_choice, mc_options
from swarm_sona.executors.verifiers.command import CommandVerifier
from swarm_sona.executors.verifiers.judge import JudgeVerifier
from swarm_sona.executors.verifiers.numeric import NumericVerifier, extract_number
from swarm_sona.executors.verifiers.registry import VERIFIERS, VerifierRegistry, make_verifier
from swarm_sona.executors.verifiers.text import ExactVerifier, RegexVerifier, normalize_text

__all__ = ["VerifierResult", "Verifier", "VerifierError", "NumericVerifier", "ChoiceVerifier", "ExactVerifier",
           "RegexVerifier", "CommandVerifier", "JudgeVerifier", "VerifierRegistry", "VERIFIERS", "make_verifier",
           "extract_number", "extract_choice", "mc_options", "normalize_text", "expected_value"]
