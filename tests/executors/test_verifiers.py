"""Reward verifiers on text in the real formats (GSM8K worked solutions, chatty answers, MMLU prose)."""

from __future__ import annotations

import time

import pytest

from swarm_sona.core.executor import Task
from swarm_sona.executors.verifiers import (
    ChoiceVerifier,
    CommandVerifier,
    ExactVerifier,
    NumericVerifier,
    RegexVerifier,
    VerifierError,
    VerifierRegistry,
    extract_choice,
    extract_number,
    make_verifier,
)

GSM8K_SOLUTION = """Natalia sold 48/2 = <<48/2=24>>24 clips in May.
Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
#### 72"""

GSM8K_BIG = """Each of the 3 shelves holds 12 boxes, so there are 3 * 12 = <<3*12=36>>36 boxes.
Each box costs $30, so the total is 36 * 30 = $<<36*30=1080>>1,080.
#### 1,080"""

CHATTY = ("Great question! Let's think step by step. First, Janet's ducks lay 16 eggs per day. She eats 3 "
          "for breakfast and bakes muffins with 4, so 16 - 3 - 4 = 9 eggs are left. She sells each for $2, "
          "so she makes 9 * 2 = 18 dollars. So the answer is $18. Let me know if you need 2 more examples!")

CHATTY_NO_MARKER = "There were 5 bags with 8 apples each, 40 in all; after giving away 12 she kept 28"

MMLU_PROMPT = """Which of the following describes the cluster of blood capillaries found in each nephron in the kidney?
A. Afferent arteriole
B. Glomerulus
C. Loop of Henle
D. Renal pelvis
Answer:"""

PROSE = [
    ("The answer is (B).", "B"),
    ("B. Glomerulus", "B"),
    ("Answer: B", "B"),
    ("A good way to think about this: the afferent arteriole feeds it, but the capillary tuft itself is the "
     "glomerulus, so the correct answer is B.", "B"),
    ("Looking at the options, (C) Loop of Henle is a tubule, not capillaries; I'd go with option B.", "B"),
    ("**D**", "D"),
    ("Option A is correct because the afferent arteriole branches into capillaries.", "A"),
    ("It's the glomerulus.", "B"),
    ("I am not sure, maybe a different structure.", None),
]


def t(text: str, expected: object = None, task_type: str | None = None) -> Task:
    return Task(text, task_type=task_type, metadata={} if expected is None else {"expected": expected})


@pytest.mark.parametrize(("text", "number"), [
    (GSM8K_SOLUTION, "72"), (GSM8K_BIG, "1080"), (CHATTY, "18"), (CHATTY_NO_MARKER, "28"),
    ("The result is \\boxed{3/4}, not 4.", "3/4"), ("no digits here", None),
])
def test_extract_number_real_formats(text: str, number: str | None) -> None:
    assert extract_number(text) == number


def test_numeric_verifier() -> None:
    v = NumericVerifier()
    assert v(t("q", "72"), GSM8K_SOLUTION).success
    assert v(t("q", "#### 1,080"), GSM8K_BIG).reward == 1.0        # a GSM8K reference answer as expected
    assert v(t("q", 18), CHATTY).success                              # the last "answer is", not the last number (2)
    assert not v(t("q", "2"), CHATTY).success
    assert v(t("q", "72.0"), GSM8K_SOLUTION).success and not v(t("q", "72.5"), GSM8K_SOLUTION).success
    assert NumericVerifier(tolerance=0.01)(t("q", "72.5"), GSM8K_SOLUTION).success
    r = v(t("q", "5"), "I cannot tell.")
    assert (r.reward, r.extracted) == (0.0, None)
    with pytest.raises(VerifierError, match="no metadata\\['expected'\\]"):
        v(t("q"), "42")
    with pytest.raises(VerifierError, match="not a number"):
        v(t("q", "many"), "42")


@pytest.mark.parametrize(("answer", "letter"), PROSE)
def test_multiple_choice_in_prose(answer: str, letter: str | None) -> None:
    from swarm_sona.executors.verifiers import mc_options

    assert extract_choice(answer, "ABCD", mc_options(MMLU_PROMPT)) == letter
    r = ChoiceVerifier()(t(MMLU_PROMPT, "B"), answer)
    assert r.success == (letter == "B")


def test_choice_verifier_rejects_an_impossible_key() -> None:
    with pytest.raises(VerifierError, match="not one of"):
        ChoiceVerifier()(t(MMLU_PROMPT, "F"), "F")


def test_exact_and_regex() -> None:
    assert ExactVerifier()(t("capital?", "The Eiffel Tower"), "eiffel tower!").success
    assert ExactVerifier()(t("capital?", ["Paris", "Paris, France"]), "Paris, France.").success
    assert not ExactVerifier()(t("capital?", "Paris"), "It is Paris").success
    assert RegexVerifier(r"\bdef \w+\(")(t("code"), "Here:\ndef f(x):\n    return x").success
    assert RegexVerifier(r"\d+", fullmatch=True)(t("n"), " 42 ").success
    assert not RegexVerifier(r"\d+", fullmatch=True)(t("n"), "42 apples").success
    assert RegexVerifier()(Task("x", metadata={"regex": "^yes"}), "yes indeed").success
    with pytest.raises(VerifierError, match="invalid pattern"):
        RegexVerifier("(")


def test_command_verifier_pass_fail_timeout() -> None:
    test_py = ("import sys; ns = {}; exec(open('output.txt').read(), ns); "
               "sys.exit(0 if ns['add'](2, 3) == 5 else 1)")
    v = CommandVerifier(["python3", "-c", test_py], timeout_s=5)
    good = v(t("write add"), "def add(a, b):\n    return a + b\n")
    bad = v(t("write add"), "def add(a, b):\n    return a - b\n")
    assert (good.success, good.reward, good.extracted) == (True, 1.0, "0")
    assert (bad.success, bad.extracted) == (False, "1")
    slow = CommandVerifier("sleep 30", timeout_s=0.5)
    t0 = time.perf_counter()
    r = slow(t("x"), "")
    assert not r.success and "timeout" in r.detail and time.perf_counter() - t0 < 3
    # the caller's environment does not leak in; the output file is there
    env = CommandVerifier("test -z \"$SECRET_FOR_TEST\" && grep -q hello output.txt")
    import os

    os.environ["SECRET_FOR_TEST"] = "x"
    try:
        assert env(t("x"), "hello").success
    finally:
        del os.environ["SECRET_FOR_TEST"]


def test_command_verifier_network_isolation_option() -> None:
    probe = ("import socket,sys; s=socket.socket(); s.settimeout(0.5)\n"
             "try:\n s.connect(('127.0.0.1', 9)); sys.exit(0)\n"
             "except ConnectionRefusedError: sys.exit(0)\n"
             "except OSError: sys.exit(3)")
    iso = CommandVerifier(["python3", "-c", probe], network="auto")
    open_ = CommandVerifier(["python3", "-c", probe], network="allow")
    assert open_(t("x"), "").success                 # loopback reachable (refused = reachable)
    if iso.network_isolated:                         # root on Linux: a namespace with a down loopback
        assert iso(t("x"), "").extracted == "3"
    else:
        with pytest.raises(VerifierError, match="cannot isolate"):
            CommandVerifier("true", network="require")


def test_command_verifier_memory_limit() -> None:
    hog = CommandVerifier(["python3", "-c", "x = bytearray(400 * 1024 * 1024)"], memory_mb=200)
    assert not hog(t("x"), "").success
    assert CommandVerifier(["python3", "-c", "x = bytearray(50 * 1024 * 1024)"], memory_mb=400)(t("x"), "").success


def test_command_verifier_output_is_capped_and_background_processes_do_not_outlive_it() -> None:
    import os

    # output beyond max_output_bytes is read and dropped (memory and disk stay bounded); stdout+stderr merged
    chatty = CommandVerifier("echo to-stderr >&2; yes | head -c 5000000; exit 0", max_output_bytes=64, timeout_s=10)
    r = chatty(t("x"), "")
    assert r.success and r.detail.split(": ", 1)[1].startswith("to-stderr y y")
    assert len(r.detail) < 64 + 40
    # the exit status is the verdict: a background process keeping the output open neither costs the
    # timeout nor survives the verifier (its process group is killed)
    t0 = time.perf_counter()
    r = CommandVerifier("sleep 30 & echo $!; exit 0", timeout_s=10)(t("x"), "")
    took = time.perf_counter() - t0
    assert r.success and took < 2, (r, took)
    pid = int(r.detail.rsplit(" ", 1)[1])
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{pid}/stat") as fh:          # killed and awaiting its reaper counts as gone
            if fh.read().split(") ", 1)[1].startswith("Z"):
                break
        time.sleep(0.02)
    else:
        raise AssertionError(f"background process {pid} outlived the verifier")


def test_registry_per_task_type() -> None:
    reg = VerifierRegistry({"gsm8k": {"name": "numeric"}, "mmlu": {"name": "choice"}},
                           default=make_verifier("regex", pattern=r"\S"))
    assert reg(t("q", "72", "gsm8k"), GSM8K_SOLUTION).success
    assert not reg(t(MMLU_PROMPT, "C", "mmlu"), "The answer is (B).").success
    assert reg(t("hi", task_type="chat"), "hello").success
    fn = reg.reward_fn()
    assert fn(t(MMLU_PROMPT, "B", "mmlu"), "B. Glomerulus", {}) == (1.0, True)
    with pytest.raises(VerifierError, match="no verifier for task type 'code'"):
        VerifierRegistry({"gsm8k": NumericVerifier()})(t("x", task_type="code"), "")
    with pytest.raises(VerifierError, match="unknown verifier"):
        VerifierRegistry({"x": {"name": "nope"}})
    with pytest.raises(VerifierError, match="needs a 'name'"):
        VerifierRegistry({"x": {"pattern": "a"}})
