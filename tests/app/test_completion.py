"""``swarm-sona completion bash|zsh``: scripts that complete this installation's commands and options."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from swarm_sona.app.commands.completion import bash_script, command_words, zsh_script

BASH = shutil.which("bash")


@pytest.fixture(scope="module")
def words():
    return command_words()


def _complete(script: str, *line: str, shell: str = "bash") -> list[str]:
    """What the script offers for the command line ``line`` (its last word being completed)."""
    words = " ".join(f"'{w}'" for w in line)
    driver = (f"{script}\nCOMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); _swarm_sona; "
              'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run([shell, "-c", driver], capture_output=True, text=True, timeout=30, check=True)
    return [w for w in out.stdout.splitlines() if w]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completes_commands_options_and_subcommands(words):
    script = bash_script(words)
    assert set(_complete(script, "swarm-sona", "r")) == {"run", "retrieve", "replay-server"}
    assert _complete(script, "swarm-sona", "run", "--ta") == ["--tasks"]
    assert _complete(script, "swarm-sona", "-v", "run", "--metrics-") == ["--metrics-push"]
    assert _complete(script, "swarm-sona", "bench", "ro") == ["routing"]
    assert "--holdout-subjects" in _complete(script, "swarm-sona", "bench", "routing", "--")
    assert _complete(script, "swarm-sona", "config", "") == ["show"]
    assert _complete(script, "swarm-sona", "config", "show", "--j") == ["--json"]
    assert _complete(script, "swarm-sona", "completion", "") == ["bash", "zsh"]
    assert "--quiet" in _complete(script, "swarm-sona", "-")
    assert _complete(script, "swarm-sona", "run", "") == []   # a spec file: the shell's file names


def test_the_words_follow_the_command_modules(words):
    from swarm_sona.app.cli import BENCHMARKS, COMMANDS

    assert set(words.commands) == {*COMMANDS, "bench"}
    assert set(words.subcommands["bench"]) == set(BENCHMARKS)
    assert {"--tasks", "--check", "--report", "--json", "-h"} <= set(words.options["run"])


def test_the_cli_prints_each_script(capsys):
    from swarm_sona.app.cli import main

    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# bash completion for swarm-sona") and "complete -o default -F _swarm_sona swarm-sona" in out
    assert main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out.startswith("#compdef swarm-sona")
    with pytest.raises(SystemExit) as exc:
        main(["completion", "fish"])
    assert exc.value.code == 2


def test_zsh_loads_the_script_and_gets_the_same_candidates(words):
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (apt-get install zsh)")
    script = zsh_script(words)
    registered = subprocess.run([zsh, "-c", f"{script}\nprint -r -- ${{_comps[swarm-sona]}}"], capture_output=True,
                                text=True, timeout=30, check=True)
    assert "_swarm_sona" in registered.stdout, registered
    # zsh's compadd filters by the typed prefix itself: the function hands it the command's words
    # (bashcompinit runs completion functions with ksharrays on)
    script += "\nsetopt ksharrays"
    assert _complete(script, "swarm-sona", "run", "--ta", shell=zsh) == list(words.options["run"])
    assert _complete(script, "swarm-sona", "bench", "sh", shell=zsh) == list(words.subcommands["bench"])
