"""Reward verifiers: score a model's output for a task, chosen per task type.

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

import math
import os
import re
import resource
import shutil
import string
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from swarm_sona.core.bounded_process import ProcessEnv, run_bounded
from swarm_sona.core.config import scrub_secrets
from swarm_sona.core.executor import Task

__all__ = ["VerifierResult", "Verifier", "VerifierError", "NumericVerifier", "ChoiceVerifier", "ExactVerifier",
           "RegexVerifier", "CommandVerifier", "JudgeVerifier", "VerifierRegistry", "VERIFIERS", "make_verifier",
           "extract_number", "extract_choice", "mc_options", "normalize_text"]


class VerifierError(ValueError):
    """A verifier was configured wrongly or the task lacks what it needs (e.g. no expected answer)."""


@dataclass(frozen=True)
class VerifierResult:
    """A verdict: reward in [0, 1], success, what was extracted, a short detail, an infra error kind."""

    reward: float
    success: bool
    extracted: str | None = None
    detail: str = ""
    error_kind: str | None = None


class Verifier(Protocol):
    """``(task, output) -> VerifierResult``."""

    def __call__(self, task: Task, output: str) -> VerifierResult:  # pragma: no cover
        ...


def _expected(task: Task, key: str) -> Any:
    value = task.metadata.get(key) if task.metadata else None
    if value is None:
        raise VerifierError(f"task {task.id!r} has no metadata[{key!r}] (the expected answer) to verify against")
    return value


# ---- numbers --------------------------------------------------------------------------------
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
        raw = str(_expected(task, self.expected_key))
        want = _to_number(extract_number(raw) or raw)
        if want is None:
            raise VerifierError(f"task {task.id!r}: expected answer {raw!r} is not a number")
        got_s = extract_number(output)
        got = _to_number(got_s) if got_s else None
        if got is None:
            return VerifierResult(0.0, False, None, "no number in the output")
        ok = abs(float(got - want)) <= self.tolerance * max(1.0, abs(float(want)))
        return VerifierResult(1.0 if ok else 0.0, ok, got_s, f"expected {raw}, got {got_s}")


# ---- multiple choice -------------------------------------------------------------------------
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
        want = str(_expected(task, self.expected_key)).strip().strip("().").upper()
        opts = mc_options(task.text)
        letters = sorted(opts) if opts else list("ABCD")
        if want not in letters:
            raise VerifierError(f"task {task.id!r}: expected letter {want!r} is not one of {letters}")
        got = extract_choice(output, letters, opts or None)
        if got is None:
            return VerifierResult(0.0, False, None, "no option letter in the output")
        ok = got == want
        return VerifierResult(1.0 if ok else 0.0, ok, got, f"expected {want}, got {got}")


# ---- strings ---------------------------------------------------------------------------------
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
        raw = _expected(task, self.expected_key)
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


# ---- command -----------------------------------------------------------------------------------
def _can_unshare_net() -> bool:
    return sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("unshare") is not None


@dataclass(frozen=True)
class CommandVerifier:
    """Runs ``command`` in a fresh temporary directory holding ``output.txt`` and ``task.txt``.

    Exit status 0 = pass (reward 1). ``command``: an argv list, or a string run by ``/bin/sh -c``.
    Bounds: ``timeout_s`` wall clock (the process group is killed), ``cpu_s``, ``memory_mb``
    (address space), ``max_file_mb`` per file written, ``max_procs`` (RLIMIT_NPROC, when not
    root), ``max_output_bytes`` of stdout+stderr kept in the detail (read as it comes, the rest dropped;
    :func:`~swarm_sona.core.bounded_process.run_bounded`); the exit status is the verdict, and what
    the command leaves running in its process group is killed when it exits. Environment: ``PATH``,
    ``LANG``, ``HOME`` = the directory, and ``env`` (nothing else of the caller's). Network:
    ``"auto"`` isolates when possible (root on Linux: ``unshare -n``), ``"require"`` raises
    :class:`VerifierError` where it cannot, ``"allow"`` never isolates.

    Example:
        >>> v = CommandVerifier(["grep", "-q", "42", "output.txt"])
        >>> v(Task("q"), "the answer is 42").success, v(Task("q"), "no idea").success
        (True, False)
    """

    command: Sequence[str] | str
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    max_file_mb: int = 16
    max_procs: int = 64
    max_output_bytes: int = 4096
    network: str = "auto"
    env: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.command or (not isinstance(self.command, str) and not all(isinstance(c, str) for c in self.command)):
            raise VerifierError(f"command verifier: command must be a non-empty string or argv list, got {self.command!r}")
        if not (isinstance(self.timeout_s, (int, float)) and 0 < self.timeout_s < math.inf):
            raise VerifierError(f"command verifier: timeout_s must be a positive number, got {self.timeout_s!r}")
        for name in ("cpu_s", "memory_mb", "max_file_mb", "max_procs", "max_output_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise VerifierError(f"command verifier: {name} must be an integer >= 1, got {v!r}")
        if self.network not in ("auto", "require", "allow"):
            raise VerifierError(f"command verifier: network must be 'auto', 'require' or 'allow', got {self.network!r}")
        if self.network == "require" and not _can_unshare_net():
            raise VerifierError("command verifier: network='require' but this platform cannot isolate the network "
                                "(needs root and unshare on Linux); use network='auto' to run without isolation")

    @property
    def network_isolated(self) -> bool:
        """Whether commands run without network (``unshare -n``)."""
        return self.network != "allow" and _can_unshare_net()

    def _limits(self) -> None:   # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 1))
        mem = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        f = self.max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (f, f))
        if os.geteuid() != 0:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.max_procs, self.max_procs))

    def __call__(self, task: Task, output: str) -> VerifierResult:
        argv = ["/bin/sh", "-c", self.command] if isinstance(self.command, str) else list(self.command)
        if self.network_isolated:
            argv = ["unshare", "-n", "--", *argv]
        with tempfile.TemporaryDirectory(prefix="swarm-verify-") as d:
            with open(os.path.join(d, "output.txt"), "w", encoding="utf-8") as fh:
                fh.write(output)
            with open(os.path.join(d, "task.txt"), "w", encoding="utf-8") as fh:
                fh.write(task.text)
            env = ProcessEnv()
            for name, value in {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": d,
                                **(self.env or {})}.items():
                env.put(name, value)
            try:   # the exit status is the verdict: stop reading shortly after it, ending leftover background processes
                r = run_bounded(argv, env=env.env, cwd=d, timeout_s=self.timeout_s, output_cap=self.max_output_bytes,
                                merge_stderr=True, after_exit_s=0.05, preexec_fn=self._limits, label="command")
            except OSError as exc:
                raise VerifierError(f"command verifier: cannot run {argv[0]!r}: {exc}") from exc
        text, timed_out, rc = r.stdout, r.timed_out, r.returncode
        took = r.duration_s
        tail = scrub_secrets(" ".join(text.split()), limit=300)
        if timed_out:
            return VerifierResult(0.0, False, None, f"timeout after {self.timeout_s:g} s: {tail}".strip())
        ok = rc == 0
        return VerifierResult(1.0 if ok else 0.0, ok, str(rc), f"exit {rc} in {took:.2f} s: {tail}".strip())


# ---- judge ---------------------------------------------------------------------------------------
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
        from swarm_sona.executors.openai_chat import OpenAIChatExecutor

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


# ---- registry --------------------------------------------------------------------------------------
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
        swarm_sona.executors.verifiers.VerifierError: unknown verifier 'numeral'; known: choice, command, exact, judge, numeric, regex
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
