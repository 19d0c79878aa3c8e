"""Built-in hook actions: retrieve from and store into a ReasoningBank inside the agent, with no
process per task.

A shell hook that calls ``swarm-sona retrieve``/``store`` starts a Python process for every
task (about half a second each); these actions do the same work in the agent's own process.
By default (no ``bank``, or ``bank: run``) they act on the run's own bank: the one every agent
of the swarm retrieves from and stores into, reached through the swarm's bank actor (the agent's
pipeline offers it as a :class:`~swarm_sona.runtime.actors.run_bank.RunBank`), so what one agent's
``store`` writes, another agent's ``retrieve`` finds in the same run, and it stays in the run's
bank afterwards. ``bank: PATH`` uses an embedded bank directory of the action's own instead. In
an agent file::

    hooks:
      retrieve: {k: 3, minReward: 0.5}    # before each task, from the run's bank
      store: {}                           # after each task, into the run's bank
      # or a directory of their own: retrieve: {bank: ~/notes}, store: {bank: ~/findings}

``retrieve`` puts the patterns (as ``swarm-sona retrieve --json`` prints them; from the run's
bank: ``id, score, task, output, reward, success, agent_id, task_type``) in the task's
``metadata["hook_patterns"]``; a bank directory that does not exist yet gives none. ``store``
keeps the task with its output, reward and success (durably, before the next task). With the
run's bank, retrieval sees only the agent's own patterns when the swarm's bank is not shared
(``sharedReasoningBank: false``), as the pipeline's does. ``~``, ``$VAR`` and ``${VAR:-default}``
in ``bank`` expand where the agent runs (write ``./run`` for a directory named ``run``). Each
bank directory opens once per agent process, on first use, and an embedded bank allows one
process: give each agent's action a directory of its own. A failing action (also ``bank: run``
where there is no run's bank: outside a swarm, or a swarm without a bank) is reported like a
failing hook (``hook_errors``) and never stops the agent.

Example:
    >>> import tempfile
    >>> from swarm_sona.core.executor import Outcome, Task
    >>> d = tempfile.mkdtemp()
    >>> hooks = BuiltinHooks("coder-1", retrieve=RetrieveHook(bank=d, k=2), store=StoreHook(bank=d))
    >>> hooks.retrieve(Task("parse the config"))             # nothing stored yet
    []
    >>> hooks.store(Task("parse the config"), Outcome("use a tokenizer", 0.9, True))
    >>> [p["output"] for p in hooks.retrieve(Task("parse the config file"))]
    ['use a tokenizer']
    >>> hooks.close()
    >>> from swarm_sona.runtime.actors.bank import BankActor      # a run's bank, as a swarm's agent has it
    >>> from swarm_sona.runtime.actors.run_bank import RunBank
    >>> run = BuiltinHooks("coder-2", retrieve=RetrieveHook(), store=StoreHook())
    >>> run.use_run_bank(RunBank(BankActor({"persist_to_disk": False}, dim=64), agent_id="coder-2"))
    >>> run.store(Task("parse the config"), Outcome("use a tokenizer", 0.9, True))
    >>> [p["output"] for p in run.retrieve(Task("parse the config"))]
    ['use a tokenizer']
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from swarm_sona.bank import ReasoningBank
from swarm_sona.core.config import ConfigBase, ConfigError, field_doc
from swarm_sona.core.executor import Outcome, Task

__all__ = ["RetrieveHook", "StoreHook", "BuiltinHooks", "RUN_BANK"]

#: the ``bank`` value (and default) naming the run's own bank
RUN_BANK = "run"


@dataclass(frozen=True)
class RetrieveHook(ConfigBase):
    """``hooks.retrieve``: patterns for the task from a bank, before each task."""

    _section: ClassVar[str] = "hooks.retrieve"

    bank: str = field_doc("'run' = the run's bank (what the swarm's agents store), else an embedded bank directory "
                          "to read (~ and $VARS expand where the agent runs).", RUN_BANK)
    k: int = field_doc("Patterns per task.", 3)
    min_reward: float | None = field_doc("Only patterns with at least this reward.", None)
    success: bool | None = field_doc("Only successes (True) or only failures (False); None = both.", None)

    def __post_init__(self) -> None:
        if not _is_dir_name(self.bank):
            raise ConfigError(f"{self._where('bank')}: 'run' or a bank directory is needed, got {self.bank!r}")
        self._check_range("k", 1, 100)
        if self.min_reward is not None:
            self._check_range("min_reward", 0, 1)


@dataclass(frozen=True)
class StoreHook(ConfigBase):
    """``hooks.store``: the task and its outcome into a bank, after each task."""

    _section: ClassVar[str] = "hooks.store"

    bank: str = field_doc("'run' = the run's bank (what the swarm's agents retrieve), else an embedded bank directory "
                          "to write (created; ~ and $VARS expand where the agent runs).", RUN_BANK)
    min_reward: float = field_doc("Store only outcomes with at least this reward (0 = every outcome).", 0.0)

    def __post_init__(self) -> None:
        if not _is_dir_name(self.bank):
            raise ConfigError(f"{self._where('bank')}: 'run' or a bank directory is needed, got {self.bank!r}")
        self._check_range("min_reward", 0, 1)


class BuiltinHooks:
    """Runs an agent's built-in actions (see the module docs). Picklable: open banks stay behind.
    :meth:`use_run_bank` gives it the run's bank (for ``bank: run``)."""

    def __init__(self, agent_id: str, *, retrieve: RetrieveHook | None = None, store: StoreHook | None = None) -> None:
        self.agent_id = agent_id
        self.retrieve_cfg = retrieve
        self.store_cfg = store
        self._banks: dict[Path, Any] = {}
        self.run_bank: Any = None
        """The run's bank (a :class:`~swarm_sona.runtime.actors.run_bank.RunBank`), once offered."""

    @property
    def active(self) -> bool:
        """True when there is at least one action."""
        return self.retrieve_cfg is not None or self.store_cfg is not None

    def use_run_bank(self, bank: Any) -> None:
        """Act on ``bank`` (``retrieve(text, k, min_reward=, success=)``, ``store(items)``) for ``bank: run``."""
        self.run_bank = bank

    def retrieve(self, task: Task) -> list[dict[str, Any]]:
        """The ``retrieve`` action's patterns for ``task`` ([] without the action or a bank directory yet)."""
        cfg = self.retrieve_cfg
        if cfg is None:
            return []
        if cfg.bank == RUN_BANK:
            return list(self._run_bank("retrieve").retrieve(task.text, cfg.k, min_reward=cfg.min_reward,
                                                            success=cfg.success))
        path = _expand(cfg.bank)
        if path not in self._banks and not (path / "bank.json").exists():
            return []
        found = self._bank(path).retrieve_patterns(task.text, cfg.k, min_reward=cfg.min_reward, success=cfg.success)
        return [p.to_dict() for p in found]

    def store(self, task: Task, outcome: Outcome) -> None:
        """The ``store`` action: keep ``task`` with ``outcome`` (durably), unless its reward is too low."""
        cfg = self.store_cfg
        if cfg is None or float(outcome.reward) < cfg.min_reward:
            return
        item = {"task": task.text, "input": "", "output": outcome.output, "reward": float(outcome.reward),
                "success": bool(outcome.success), "agent_id": self.agent_id, "task_type": task.task_type}
        if cfg.bank == RUN_BANK:
            self._run_bank("store").store([item])
            return
        self._bank(_expand(cfg.bank)).store_many([item], durable=True)

    def close(self) -> None:
        """Close the banks this process opened."""
        banks, self._banks = self._banks, {}
        for bank in banks.values():
            bank.close()

    def _run_bank(self, action: str) -> Any:
        if self.run_bank is None:
            raise RuntimeError(f"{action} action: bank 'run' but there is no run's bank here (outside a swarm, or a "
                               "swarm without a bank); give the action a bank directory")
        return self.run_bank

    def _bank(self, path: Path) -> Any:
        bank = self._banks.get(path)
        if bank is None:   # opened where the agent runs, on first use
            bank = self._banks[path] = ReasoningBank({"backend": "edge", "path": str(path)})
        return bank

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_banks": {}}


def _is_dir_name(bank: object) -> bool:
    return isinstance(bank, str) and bool(bank.strip()) and "\0" not in bank


_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _expand(bank: str) -> Path:
    """``bank`` with ``${VAR:-default}``, ``$VAR`` and ``~`` expanded from this process's environment.

    Example:
        >>> str(_expand("${SWARM_SONA_NO_SUCH_VAR:-/srv}/notes"))
        '/srv/notes'
    """
    text = _DEFAULTED.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), bank)
    return Path(os.path.expanduser(os.path.expandvars(text)))
