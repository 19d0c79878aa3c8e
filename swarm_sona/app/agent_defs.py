"""Agent definitions: Markdown files with YAML front matter, and the hooks run around each task.

An agent file looks like this (``name`` is the agent id; ``id`` is accepted too)::

    ---
    name: coder-1
    type: coder
    capabilities: [python, refactoring]
    loraRank: 8
    hooks:
      pre: swarm-sona retrieve --bank "$BANK" --k 3 "$TASK"
      post: swarm-sona store --bank "$BANK" --task "$TASK" --output "$OUTPUT" --reward "$REWARD"
      timeout: 30
      env: [BANK]          # passed through from the process environment (see below)
    ---
    Writes and refactors code. (The Markdown body is the agent's description.)

A directory of such files is loaded with :func:`load_agents_dir` (a run spec's
``agents_dir:``). Hooks are shell commands (``/bin/sh -c``) run in their own process group.

Environment. Hooks do *not* inherit the process environment (it may hold secrets such as
``OPENAI_API_KEY``). A hook gets, in this order (later entries win):

* a minimal base copied from the process environment when set: ``PATH`` (with this
  installation's scripts directory first, so ``swarm-sona`` is the running one), ``HOME``,
  ``USER``, ``LOGNAME``, ``SHELL``, ``LANG``, ``LC_ALL``, ``LC_CTYPE``, ``TZ``, ``TMPDIR`` and
  ``XDG_DATA_HOME``/``XDG_CONFIG_HOME``/``XDG_CACHE_HOME`` (``swarm-sona``'s default bank path);
* every ``SWARM_SONA_*`` variable (the project's own settings, e.g. ``SWARM_SONA_BANK_PATH``,
  read by ``swarm-sona`` in a hook; do not keep secrets under that prefix);
* the variables the agent file names in ``hooks.env`` (e.g. ``env: [BANK, MY_TOKEN]``; a
  named variable that is not set is left out);
* the runner's ``extra_env``;
* the task: ``TASK``, ``TASK_ID``, ``TASK_TYPE``, ``AGENT_ID``, ``AGENT_TYPE`` and, for ``post``,
  ``OUTPUT``, ``REWARD``, ``SUCCESS`` (``true``/``false``), ``MODEL`` and ``COST_USD``.

Values are UTF-8; one longer than 64 KiB *bytes* is cut to at most 64 KiB on a character
boundary (the kernel limits one variable to 128 KiB). A NUL byte (which no environment can
hold) is removed and a lone surrogate (which UTF-8 cannot encode) becomes U+FFFD; the hook
still runs and each such change is listed in :attr:`HookResult.notes`.

Bounds. A hook runs at most ``hooks.timeout`` seconds; then its whole process group is
killed (SIGKILL) and the runner waits at most 1 s more for it to exit and its pipes to
close, so a hook costs at most timeout + ~1 s of wall time even when a detached (``setsid``)
grandchild keeps its output open (the runner then closes its ends of the pipes and returns).
stdout and stderr are read as they come; the first 4 KiB of each are kept and the rest is
read and discarded (the hook is not killed for talking too much: only the timeout stops it),
so memory stays bounded whatever the hook prints; ``stdout_truncated``/``stderr_truncated``
say when output was dropped. A hook that fails (non-zero exit, timeout, command not found,
cannot start) is reported (logged, counted, and listed in the outcome's
``metadata["hook_errors"]``) and never stops the agent: the runner does not raise.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "coder.md").write_text("---\\nname: coder-1\\ntype: coder\\n"
    ...                                 "hooks: {post: 'test \\"$SUCCESS\\" = true'}\\n---\\nWrites code.\\n")
    >>> [a] = load_agents_dir(d)
    >>> a.id, a.type, a.description
    ('coder-1', 'coder', 'Writes code.')
    >>> from swarm_sona.core.executor import Task, Outcome
    >>> r = HookRunner(a).post(Task("fix bug"), Outcome("done", 1.0, True), model="small")
    >>> r.ok, r.returncode
    (True, 0)
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from swarm_sona.app.hook_actions import BuiltinHooks, RetrieveHook, StoreHook
from swarm_sona.core.bounded_process import DEFAULT_OUTPUT_CAP, ProcessEnv, run_bounded
from swarm_sona.core.config import ConfigBase, ConfigError, field_doc, is_env_name
from swarm_sona.core.executor import Executor, Outcome, Task
from swarm_sona.runtime.config import AgentSpec

__all__ = [
    "AgentDef",
    "HooksConfig",
    "HookResult",
    "HookRunner",
    "HookedExecutor",
    "load_agent_file",
    "load_agents_dir",
    "parse_agent_markdown",
]

log = logging.getLogger(__name__)

# copied from the process environment when set (everything else must be named in hooks.env)
_BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
             "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")
_PASS_PREFIX = "SWARM_SONA_"  # the project's own settings pass through too


@dataclass(frozen=True)
class HooksConfig(ConfigBase):
    """Shell commands run before (``pre``) and after (``post``) each task.

    Example:
        >>> HooksConfig.from_dict({"pre": "echo $TASK", "timeout": 5}).timeout_s
        5.0
        >>> HooksConfig.from_dict({"post": "echo $BANK", "env": ["BANK"]}).env
        ('BANK',)
        >>> HooksConfig.from_dict({"env": ["MY-TOKEN"]})
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: hooks.env[0]: invalid environment variable name 'MY-TOKEN' (letters, digits and _, not starting with a digit)
    """

    _section: ClassVar[str] = "hooks"

    pre: str | None = field_doc("Shell command run before each task (env: TASK, TASK_ID, AGENT_ID, ...).", None)
    post: str | None = field_doc("Shell command run after each task (env adds OUTPUT, REWARD, SUCCESS, MODEL, COST_USD).",
                            None)
    timeout_s: float = field_doc("Seconds a hook may run before it is killed (and reported as failed).", 30.0,
                            alias=("timeout",))
    cwd: str | None = field_doc("Working directory of the hooks (default: the agent's).", None)
    env: tuple[str, ...] = field_doc("Names of process environment variables passed to the hooks (the rest is not; "
                                "see the module docs), e.g. [BANK, MY_TOKEN].", factory=tuple)
    retrieve: RetrieveHook | None = field_doc("Built-in action before each task, in the agent (no process): "
                                              "patterns from the run's bank or a directory (swarm_sona.app.hook_actions).", None)
    store: StoreHook | None = field_doc("Built-in action after each task, in the agent (no process): the outcome "
                                        "into the run's bank or a directory (swarm_sona.app.hook_actions).", None)

    def __post_init__(self) -> None:
        for name in ("pre", "post"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise ConfigError(f"{self._where(name)}: a hook must be a non-empty shell command, got {v!r}")
            if isinstance(v, str) and "\0" in v:
                raise ConfigError(f"{self._where(name)}: a hook command cannot contain a NUL byte")
        if self.cwd is not None and (not isinstance(self.cwd, str) or "\0" in self.cwd):
            raise ConfigError(f"{self._where('cwd')}: expected a path without NUL bytes, got {self.cwd!r}")
        self._check_range("timeout_s", 0, 86400, lo_open=True)
        if isinstance(self.env, str) or not isinstance(self.env, (tuple, list)):
            raise ConfigError(f"{self._where('env')}: expected a list of variable names, got {self.env!r}")
        for i, n in enumerate(self.env):
            if not is_env_name(n):
                raise ConfigError(f"{self._where('env')}[{i}]: invalid environment variable name {n!r} "
                                  "(letters, digits and _, not starting with a digit)")
        object.__setattr__(self, "env", tuple(self.env))

    @property
    def active(self) -> bool:
        """True when there is a shell hook or a built-in action."""
        return bool(self.pre or self.post or self.retrieve or self.store)


@dataclass(frozen=True)
class AgentDef:
    """One agent of a swarm: its :class:`~swarm_sona.runtime.config.AgentSpec` plus hooks and source file.

    Example:
        >>> a = AgentDef.from_dict({"name": "tester-1", "type": "tester", "loraRank": 4,
        ...                         "hooks": {"post": "echo $REWARD"}})
        >>> a.id, a.spec.lora_rank, a.hooks.post
        ('tester-1', 4, 'echo $REWARD')
        >>> a.to_swarm_agent()
        {'id': 'tester-1', 'type': 'tester', 'lora_rank': 4, 'capabilities': [], 'description': ''}
        >>> AgentDef.from_dict({"type": "coder"})
        Traceback (most recent call last):
        ...
        swarm_sona.core.config.ConfigError: agent.id: invalid agent id '' (letters, digits, _ . : -; 1-64 characters)
    """

    spec: AgentSpec
    hooks: HooksConfig = field(default_factory=HooksConfig)
    source: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | AgentDef, *, path: str | None = None) -> AgentDef:
        """Build from a mapping: AgentSpec keys (name/id, type, loraRank, capabilities, description) + hooks."""
        if isinstance(data, AgentDef):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'agent'}: expected a mapping, got {type(data).__name__}")
        rest = dict(data)
        hooks = rest.pop("hooks", None)
        source = rest.pop("source", None)
        return cls(spec=AgentSpec.from_dict(rest, path=path),
                   hooks=HooksConfig.from_dict(hooks, path=f"{path}: hooks" if path else "hooks"), source=source)

    @property
    def id(self) -> str:
        """The agent id."""
        return self.spec.id

    @property
    def type(self) -> str:
        """The agent type (coder, reviewer, ..., coordinator/queen)."""
        return self.spec.type

    @property
    def description(self) -> str:
        """The agent description (the Markdown body of an agent file)."""
        return self.spec.description

    @property
    def is_coordinator(self) -> bool:
        """True for the queen / coordinator of a hierarchical swarm."""
        return self.spec.is_coordinator

    def to_swarm_agent(self) -> dict[str, Any]:
        """The agent entry SwarmSONA / SwarmConfig takes (no hooks: those wrap the executor)."""
        return {"id": self.spec.id, "type": self.spec.type, "lora_rank": self.spec.lora_rank,
                "capabilities": list(self.spec.capabilities), "description": self.spec.description}


# =====================================================================================
# Loading
# =====================================================================================
def parse_agent_markdown(text: str, *, source: str = "<agent>") -> AgentDef:
    """Parse one agent file's text (front matter between ``---`` lines, then the body).

    Errors are :class:`ConfigError` naming ``source``, the field and the reason.
    """
    import yaml

    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise ConfigError(f"{source}: no YAML front matter (the file must start with a '---' line)")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise ConfigError(f"{source}: front matter is not closed (no second '---' line)") from None
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: cannot parse the front matter: {exc}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{source}: front matter must be a mapping, got {type(meta).__name__}")
    body = "\n".join(lines[end + 1:]).strip()
    data = dict(meta)
    if body and "description" not in data:
        data["description"] = body
    data["source"] = source
    try:
        return AgentDef.from_dict(data)
    except ConfigError as exc:  # checks in __post_init__ name the field but not the file
        if str(exc).startswith(source):
            raise
        raise ConfigError(f"{source}: {exc}") from exc


def load_agent_file(path: str | os.PathLike[str]) -> AgentDef:
    """Load one Markdown agent file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read agent file: {exc.strerror or exc}") from exc
    return parse_agent_markdown(text, source=str(p))


def load_agents_dir(path: str | os.PathLike[str]) -> list[AgentDef]:
    """Load every ``*.md`` file of a directory (sorted by file name) as agent definitions.

    Files named ``README.md`` are skipped. Duplicate ids are an error naming both files.
    """
    d = Path(path)
    if not d.is_dir():
        raise ConfigError(f"{d}: not a directory")
    files = sorted(f for f in d.glob("*.md") if f.name.lower() != "readme.md")
    if not files:
        raise ConfigError(f"{d}: no agent files (*.md) in the directory")
    agents: list[AgentDef] = []
    seen: dict[str, str] = {}
    for f in files:
        a = load_agent_file(f)
        if a.id in seen:
            raise ConfigError(f"{f}: id: duplicate agent id {a.id!r} (also in {seen[a.id]})")
        seen[a.id] = str(f)
        agents.append(a)
    return agents


# =====================================================================================
# Hooks
# =====================================================================================
@dataclass
class HookResult:
    """What one hook run did. ``ok`` is False on a non-zero exit, a timeout or a launch error.

    ``stdout``/``stderr`` hold at most the first 4 KiB of each (decoded as UTF-8, bad bytes
    replaced); ``stdout_truncated``/``stderr_truncated`` say that more was printed and dropped.
    ``notes`` lists what the runner changed or noticed (an environment value cut or cleaned,
    output dropped, a pipe held open after the kill); it does not make a run fail.
    """

    phase: str
    command: str
    ok: bool
    returncode: int | None
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs and reports."""
        if self.ok:
            return f"{self.phase} hook ok ({self.duration_s * 1000:.0f} ms)"
        why = self.error or f"exit {self.returncode}"
        tail = self.stderr.strip().splitlines()[-1:] if self.stderr.strip() else []
        return f"{self.phase} hook failed: {why}" + (f": {tail[0]}" if tail else "")


@dataclass
class HookRunner:
    """Runs an agent's ``pre``/``post`` hooks with the task in the environment.

    Never raises for a failing hook (or for a task it cannot pass on as is): it returns a
    :class:`HookResult`, logs a warning and counts it in ``failures``. See the module docs
    for the environment and the time and output bounds.

    Example:
        >>> r = HookRunner(AgentDef(AgentSpec(id="a"), HooksConfig(pre="exit 3")))
        >>> from swarm_sona.core.executor import Task
        >>> res = r.pre(Task("t"))
        >>> res.ok, res.returncode, r.failures
        (False, 3, 1)
        >>> res = HookRunner(AgentDef(AgentSpec(id="a"), HooksConfig(pre='printf %s "$TASK"'))).pre(Task("a\\0b"))
        >>> res.ok, res.stdout, res.notes
        (True, 'ab', ['TASK: removed 1 NUL byte(s)'])
    """

    agent: AgentDef
    extra_env: Mapping[str, str] = field(default_factory=dict)
    runs: int = 0
    failures: int = 0

    @property
    def active(self) -> bool:
        """True when the agent has at least one hook."""
        return bool(self.agent.hooks.pre or self.agent.hooks.post)

    def _env(self, task: Task, notes: list[str], more: Mapping[str, Any] | None = None) -> dict[bytes, bytes]:
        env = ProcessEnv(notes=notes)
        # a small base, the project's own settings and what the agent file names (raw process bytes)
        env.inherit(set(_BASE_ENV) | set(self.agent.hooks.env), prefixes=(_PASS_PREFIX,))
        # `swarm-sona` in a hook is this installation's, even when its bin dir is not on PATH
        env.prepend_path(Path(sys.executable).parent)
        for extra_name, extra_value in self.extra_env.items():
            env.put(extra_name, extra_value)
        for name, v in (("TASK", task.text), ("TASK_ID", str(task.id)), ("TASK_TYPE", task.task_type or ""),
                        ("AGENT_ID", self.agent.id), ("AGENT_TYPE", self.agent.type), *(more or {}).items()):
            env.put(name, v)
        return env.env

    def pre(self, task: Task) -> HookResult | None:
        """Run the ``pre`` hook (None when there is none)."""
        cmd = self.agent.hooks.pre
        return self._guarded("pre", cmd, task, None) if cmd else None

    def post(self, task: Task, outcome: Outcome, *, model: str = "") -> HookResult | None:
        """Run the ``post`` hook with the outcome in the environment (None when there is none)."""
        cmd = self.agent.hooks.post
        if not cmd:
            return None
        return self._guarded("post", cmd, task, lambda: {
            "OUTPUT": outcome.output, "REWARD": repr(float(outcome.reward)),
            "SUCCESS": "true" if outcome.success else "false", "MODEL": model,
            "COST_USD": repr(float(outcome.cost_usd))})

    def _guarded(self, phase: str, cmd: str, task: Task, more: Any) -> HookResult:
        t0 = time.perf_counter()
        notes: list[str] = []
        try:
            env = self._env(task, notes, more() if more else None)
        except Exception as exc:   # e.g. an outcome whose reward is not a number: report, do not stop the agent
            self.runs += 1
            return self._report(HookResult(phase, cmd, False, None, time.perf_counter() - t0, notes=notes,
                                           error=f"cannot build the environment: {type(exc).__name__}: {exc}"))
        if notes:
            log.info("agent %s: %s hook environment: %s", self.agent.id, phase, "; ".join(notes))
        return self._run(phase, cmd, env, notes)

    def _run(self, phase: str, cmd: str, env: Mapping[bytes, bytes], notes: list[str] | None = None) -> HookResult:
        hooks = self.agent.hooks
        notes = [] if notes is None else notes
        self.runs += 1
        t0 = time.perf_counter()
        try:
            r = run_bounded(["/bin/sh", "-c", cmd], env=env, cwd=hooks.cwd, timeout_s=hooks.timeout_s,
                            output_cap=DEFAULT_OUTPUT_CAP, label="hook", notes=notes)
        except (OSError, ValueError) as exc:   # missing cwd, E2BIG, ...
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            return self._report(HookResult(phase, cmd, False, None, time.perf_counter() - t0, notes=notes,
                                           error=f"cannot start: {why}"))
        res = HookResult(phase, cmd, not r.timed_out and r.returncode == 0, r.returncode, r.duration_s, r.stdout,
                         r.stderr, timed_out=r.timed_out, stdout_truncated=r.stdout_truncated,
                         stderr_truncated=r.stderr_truncated, notes=r.notes)
        if r.timed_out:
            res.error = f"timed out after {hooks.timeout_s:g} s"
            if r.exited_before_kill is not None:
                res.error += f" (the hook exited {r.exited_before_kill} but a background process kept its output open)"
        elif r.returncode == 127:
            res.error = "command not found (exit 127)"
        return self._report(res) if not res.ok else res

    def _report(self, res: HookResult) -> HookResult:
        self.failures += 1
        log.warning("agent %s: %s", self.agent.id, res.summary())
        return res


class HookedExecutor:
    """An executor that runs an agent's hooks around an inner executor.

    The ``pre`` hook's stdout is passed to the inner executor in ``task.metadata["pre_hook"]``,
    the built-in ``retrieve`` action's patterns in ``task.metadata["hook_patterns"]`` (the
    built-in ``store`` action runs after the ``post`` hook); failures of any of them are listed
    in ``outcome.metadata["hook_errors"]`` (the task itself still runs and its outcome stands). Picklable when the inner executor is (Ray ships it to
    the agent actor).

    Example:
        >>> from swarm_sona.core.executor import Task, Outcome
        >>> inner = lambda task, model, patterns: Outcome(task.metadata.get("pre_hook", ""), 1.0, True)
        >>> ex = HookedExecutor(inner, AgentDef.from_dict({"id": "a", "hooks": {"pre": "echo ctx", "post": "false"}}))
        >>> out = ex(Task("t"), "small", [])
        >>> out.output.strip(), out.metadata["hook_errors"]
        ('ctx', ['post hook failed: exit 1'])
    """

    def __init__(self, inner: Executor, agent: AgentDef, *, extra_env: Mapping[str, str] | None = None) -> None:
        self.inner = inner
        self.runner = HookRunner(agent, dict(extra_env or {}))
        self.builtin = BuiltinHooks(agent.id, retrieve=agent.hooks.retrieve, store=agent.hooks.store)

    def use_run_bank(self, bank: Any) -> None:
        """The run's bank, offered by the agent's pipeline: the built-in actions' ``bank: run``."""
        self.builtin.use_run_bank(bank)

    def __call__(self, task: Task, model: str, patterns: Sequence[dict[str, Any]]) -> Outcome:
        errors: list[str] = []
        if self.builtin.retrieve_cfg is not None:
            try:
                task.metadata["hook_patterns"] = self.builtin.retrieve(task)
            except Exception as exc:   # reported like a failing hook; the task still runs
                errors.append(self._action_failed("retrieve", exc))
        pre = self.runner.pre(task)
        if pre is not None:
            if pre.ok:
                task.metadata["pre_hook"] = pre.stdout
            else:
                errors.append(pre.summary())
        outcome = self.inner(task, model, list(patterns))
        post = self.runner.post(task, outcome, model=model)
        if post is not None and not post.ok:
            errors.append(post.summary())
        if self.builtin.store_cfg is not None:
            try:
                self.builtin.store(task, outcome)
            except Exception as exc:
                errors.append(self._action_failed("store", exc))
        if errors:
            outcome.metadata.setdefault("hook_errors", []).extend(errors)
        return outcome

    def close(self) -> None:
        """Close the banks the built-in actions opened, then the inner executor (when it has
        ``close``); the inner one is closed even when a bank fails to."""
        try:
            self.builtin.close()
        finally:
            fn = getattr(type(self.inner), "close", None)
            if callable(fn):
                fn(self.inner)

    def _action_failed(self, action: str, exc: Exception) -> str:
        msg = f"{action} action failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.runner.failures += 1
        log.warning("agent %s: %s", self.runner.agent.id, msg)
        return msg

    def __getattr__(self, name: str) -> Any:
        # delegate executor extras (e.g. a simulated workload's task generator) to the inner executor
        if name in ("inner", "runner", "builtin"):
            raise AttributeError(name)
        return getattr(self.inner, name)
