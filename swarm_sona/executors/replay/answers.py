"""The replay's outcome table: what a model answers to a prompt, as RouteLLM recorded it.

The last user message is looked up in a RouteLLM-style table
(:func:`~swarm_sona.executors.table.load_routing_table`): "did model M solve prompt P".

* Where the table records the response text (a ``<model>::response`` column), that text.
* Else, for a multiple-choice prompt (option lines ``A. ...``): RouteLLM's files record only
  whether the model was right, not the answer key, so the replay's key is a letter picked by a
  hash of the prompt (:func:`answer_key`; tasks built by :func:`replay_tasks` carry it as
  ``metadata["expected"]``). A model recorded right answers with the key letter, one recorded
  wrong with another letter, in one of a few prose forms ("The answer is (B) Glomerulus.").
* Else ``"Recorded outcome: correct."`` / ``"...incorrect."``.
* A prompt not in the table gets a hashed letter when it has options, else a fixed sentence.
* A judge request (the prompt holds ``<task>...</task>`` and ``<answer>...</answer>``, the form
  :class:`~swarm_sona.executors.verifiers.JudgeVerifier` sends) is scored ``Score: 1`` when the
  candidate's letter is the key, else ``Score: 0``; flipped where the judge model is recorded
  wrong on that task.

Example:
    >>> from swarm_sona.executors.table import load_routing_table
    >>> answers = ReplayAnswers(load_routing_table("tests/data/routellm_slice"))
    >>> answers.answer("not a recorded prompt", answers.models[0])
    ('No recorded answer for this prompt.', False)
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from swarm_sona.core.executor import Task
from swarm_sona.executors.table import RoutingTable
from swarm_sona.executors.verifiers import extract_choice, mc_options

__all__ = ["ReplayAnswers", "answer_key", "replay_tasks", "stable_hash"]

_JUDGE = re.compile(r"<task>\s*(.*?)\s*</task>.*?<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_FORMS_RIGHT = ("The answer is {L}.", "{L}. {T}", "Looking at the options, ({L}) {T} is correct.", "Answer: {L}")


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of ``parts`` that is the same in every process and run.

    Example:
        >>> stable_hash("a", 1) == stable_hash("a", 1) != stable_hash("a", 2)
        True
    """
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "little")


def answer_key(prompt: str) -> str | None:
    """The replay's answer key of a multiple-choice ``prompt`` (a letter picked by a hash), else None.

    Example:
        >>> answer_key("Which?\\nA. x\\nB. y\\nC. z\\nD. w\\nAnswer:") in "ABCD", answer_key("no options")
        (True, None)
    """
    opts = mc_options(prompt)
    if not opts:
        return None
    letters = sorted(opts)
    return letters[stable_hash("key", prompt) % len(letters)]


def replay_tasks(table: RoutingTable) -> list[Task]:
    """The table's tasks, each with ``metadata["expected"]`` = :func:`answer_key` where it has one.

    Example:
        >>> from swarm_sona.executors.table import load_routing_table
        >>> t = load_routing_table("tests/data/routellm_slice")
        >>> tasks = replay_tasks(t)
        >>> len(tasks) == len(t), tasks[0].metadata["expected"] in "ABCD"
        (True, True)
    """
    out = []
    for t in table.tasks():
        key = answer_key(t.text)
        if key is not None:
            t.metadata["expected"] = key
        out.append(t)
    return out


class ReplayAnswers:
    """The answers of a recorded outcomes table (module docs).

    Example:
        >>> from swarm_sona.executors.table import load_routing_table
        >>> ReplayAnswers(load_routing_table("tests/data/routellm_slice")).judge("no options", "A", "m")
        'Score: 0.5'
    """

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self.models = list(table.models)
        self.column = {m: j for j, m in enumerate(self.models)}
        self._row: dict[str, int] = {}
        for i, p in enumerate(table.prompts):
            self._row.setdefault(p.strip(), i)

    def answer(self, prompt: str, model: str) -> tuple[str, bool]:
        """The reply to ``prompt`` from ``model`` and whether the prompt is in the table."""
        judged = _JUDGE.search(prompt)
        if judged:
            return self.judge(judged.group(1), judged.group(2), model), True
        i = self._row.get(prompt.strip())
        opts = mc_options(prompt)
        if i is None:
            if opts:
                letters = sorted(opts)
                return "The answer is " + letters[stable_hash("unknown", prompt, model) % len(letters)] + ".", False
            return "No recorded answer for this prompt.", False
        j = self.column[model]
        responses = self.table.responses.get(model) if self.table.responses else None
        if responses is not None and responses[i]:
            return responses[i], True
        right = bool(self.table.correct[i, j])
        if not opts:
            return f"Recorded outcome: {'correct' if right else 'incorrect'}.", True
        key = answer_key(prompt)
        assert key is not None
        others = sorted(set(opts) - {key})
        letter = key if right or not others else others[stable_hash("wrong", prompt, model) % len(others)]
        form = _FORMS_RIGHT[stable_hash("form", prompt, model) % len(_FORMS_RIGHT)]
        return form.format(L=letter, T=opts[letter]), True

    def judge(self, task_text: str, candidate: str, model: str) -> str:
        """The judge model's grade of ``candidate`` for ``task_text`` (``Score: x``)."""
        key = answer_key(task_text)
        i = self._row.get(task_text.strip())
        if key is None:
            return "Score: 0.5"
        score = 1 if extract_choice(candidate, sorted(mc_options(task_text))) == key else 0
        if i is not None and model in self.column and not bool(self.table.correct[i, self.column[model]]):
            score = 1 - score
        return f"Score: {score}"
