"""``swarm-sona completion bash|zsh``: a shell completion script for the ``swarm-sona`` command.

The script is generated from the commands' own argument definitions (every command module's
``add_arguments``), so it completes exactly the commands, subcommands (``bench``,
``config``) and options this installation has; it runs no Python at completion time. Where
no word fits (a spec file, a directory) the shell completes file names.

Install (bash)::

    swarm-sona completion bash > ~/.local/share/bash-completion/completions/swarm-sona

or for zsh, into a directory of ``$fpath``::

    swarm-sona completion zsh > ~/.zfunc/_swarm-sona

Example:
    >>> spec = command_words()
    >>> "--tasks" in spec.options["run"], "routing" in spec.subcommands["bench"], spec.choices["completion"]
    (True, True, ('bash', 'zsh'))
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shlex
import sys
from typing import Any

__all__ = ["add_arguments", "run", "CommandWords", "command_words", "bash_script", "zsh_script"]

SHELLS = ("bash", "zsh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``swarm-sona completion SHELL``."""
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete for")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarm-sona completion``: the script on stdout."""
    words = command_words()
    sys.stdout.write(bash_script(words) if args.shell == "bash" else zsh_script(words))
    return 0


@dataclasses.dataclass(frozen=True)
class CommandWords:
    """What can be completed: ``commands`` (top level), ``global_options``, ``options`` per
    command (``"bench routing"``-style keys for subcommands), ``subcommands`` of a command and
    ``choices`` of a command's positional argument."""

    commands: tuple[str, ...]
    global_options: tuple[str, ...]
    options: dict[str, tuple[str, ...]]
    subcommands: dict[str, tuple[str, ...]]
    choices: dict[str, tuple[str, ...]]


class _Recorder(argparse.ArgumentParser):
    """An ArgumentParser that keeps what its command defines (subparsers are Recorders too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.option_words: list[str] = []   # before argparse adds -h/--help through add_argument
        self.choice_words: list[str] = []
        self.children: dict[str, _Recorder] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.option_words += list(action.option_strings)
        elif action.choices:
            self.choice_words += [str(c) for c in action.choices]
        return action

    def add_subparsers(self, **kwargs: Any) -> Any:
        sub = super().add_subparsers(**kwargs)
        add_parser = sub.add_parser

        def record(name: str, **kw: Any) -> Any:
            child = add_parser(name, **kw)
            self.children[name] = child
            return child

        sub.add_parser = record   # type: ignore[method-assign]
        return sub


def command_words() -> CommandWords:
    """Every command's words, read from the command modules' ``add_arguments``."""
    from swarm_sona.app.cli import BENCHMARKS, COMMANDS

    options: dict[str, tuple[str, ...]] = {}
    subcommands: dict[str, tuple[str, ...]] = {}
    choices: dict[str, tuple[str, ...]] = {}
    for name, (module, _) in COMMANDS.items():
        p = _Recorder(prog=name)
        importlib.import_module(module).add_arguments(p)
        options[name] = tuple(p.option_words)
        if p.choice_words:
            choices[name] = tuple(p.choice_words)
        if p.children:
            subcommands[name] = tuple(p.children)
            for sub, child in p.children.items():
                options[f"{name} {sub}"] = tuple(child.option_words)
    subcommands["bench"] = tuple(BENCHMARKS)
    options["bench"] = ("-h", "--help")
    for name, (module, _) in BENCHMARKS.items():
        p = _Recorder(prog=name)
        importlib.import_module(module).add_arguments(p)
        options[f"bench {name}"] = tuple(p.option_words)
    commands = (*COMMANDS, "bench")
    return CommandWords(commands=commands, global_options=("-h", "--help", "--version", "-v", "--verbose", "-q",
                                                           "--quiet"),
                        options=options, subcommands=subcommands, choices=choices)


def bash_script(w: CommandWords) -> str:
    """The bash completion script (``complete -F _swarm_sona swarm-sona``)."""
    def words(xs: tuple[str, ...]) -> str:
        return shlex.quote(" ".join(xs))

    opt_cases = "\n".join(f"        {shlex.quote(k)}) opts={words(v)} ;;" for k, v in sorted(w.options.items()))
    sub_cases = "\n".join(f"        {shlex.quote(k)}) subs={words(v)} ;;" for k, v in sorted(w.subcommands.items()))
    choice_cases = "\n".join(f"        {shlex.quote(k)}) subs={words(v)} ;;" for k, v in sorted(w.choices.items()))
    return f"""# bash completion for swarm-sona (generated by `swarm-sona completion bash`)
_swarm_sona() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" sub="" opts="" subs="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -*) ;;
            *) if [[ -z "$cmd" ]]; then cmd="${{COMP_WORDS[i]}}"; elif [[ -z "$sub" ]]; then sub="${{COMP_WORDS[i]}}"; fi ;;
        esac
    done
    COMPREPLY=()
    if [[ -z "$cmd" ]]; then
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W {words(w.global_options)} -- "$cur"))
        else
            COMPREPLY=($(compgen -W {words(w.commands)} -- "$cur"))
        fi
        return 0
    fi
    case "$cmd" in
{sub_cases}
{choice_cases}
    esac
    if [[ "$cur" == -* ]]; then
        case "$cmd${{sub:+ $sub}}" in
{opt_cases}
        esac
        if [[ -z "$opts" ]]; then
            case "$cmd" in
{opt_cases}
            esac
        fi
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n "$subs" && -z "$sub" ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    fi
    return 0
}}
complete -o default -F _swarm_sona swarm-sona
"""


def zsh_script(w: CommandWords) -> str:
    """The zsh completion script: the bash one through zsh's ``bashcompinit``."""
    return ("#compdef swarm-sona\n# zsh completion for swarm-sona (generated by `swarm-sona completion zsh`)\n"
            "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n"
            + bash_script(w))
