"""Run specs: what `swarm-sona run SPEC` runs, validated completely before Ray starts.

A spec is YAML, TOML or JSON (camelCase or snake_case keys)::

    topology: hierarchical             # star | hierarchical | ring | mesh
    agents:                            # or  agents_dir: agents/  (Markdown agent files)
      - {id: queen-1, type: coordinator, loraRank: 16}
      - {id: coder-1, type: coder, hooks: {post: 'swarm-sona store ...'}}
    sharedBank: true
    consensus: true
    swarm: {mergeRule: median, syncEvery: 256, batchSize: 256}    # any other SwarmConfig key
    sona: {dim: 256, lora: {rank: 8}}                              # engine settings
    bank: {backend: qdrant, url: https://qdrant:6333}              # ReasoningBankConfig
    router: {strategy: cost-optimized, models: [...]}              # LLMRouterConfig (default: the executor's)
    workload: {executor: simulated, tasks: 2000, options: {reuse_boost: 0.5}}
    telemetry: {exporters: [prometheus]}                           # TelemetryConfig
    budgets: {runUsd: 20, taskUsd: 0.05, wallClockS: 3600}
    seed: 0

Secrets are referenced, not copied: ``bank.apiKeyEnv`` (default ``QDRANT_API_KEY``) and
``workload.options.api_key_env`` (openai; default ``OPENAI_API_KEY``) name environment
variables that each process reads itself where it builds its client (agent actors included; on
a cluster set them on the nodes or in the job's ``runtime_env`` ``env_vars``). A literal
``bank.apiKey``, ``workload.options.api_key`` or credential header in ``options.extra_headers``
is accepted but held as a :class:`~swarm_sona.core.config.Secret`: it never prints, and
:meth:`RunSpec.to_dict`/:meth:`RunSpec.to_plain` (what ``swarm-sona submit`` uploads) hold None
in its place.

Every error names the file, the field and the reason, e.g.
``spec.yaml: topology: must be one of ['star', 'hierarchical', 'ring', 'mesh'], got 'tree'``.
Without a file, :meth:`RunSpec.default` is the default swarm: hierarchical, one queen and four
workers (coder, reviewer, tester, researcher) over the simulated workload, with the embedded
bank in the user's data directory.

Example:
    >>> spec = RunSpec.default()
    >>> spec.topology, [a.id for a in spec.agents]
    ('hierarchical', ['queen-1', 'coder-1', 'reviewer-1', 'tester-1', 'researcher-1'])
    >>> spec.swarm_config().sona.llm_router.models[0].name
    'small'
    >>> RunSpec.from_dict({"budgets": {"runUsd": -1}})
    Traceback (most recent call last):
    ...
    swarm_sona.core.config.ConfigError: budgets.run_usd: must be >= 0, got -1.0
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from swarm_sona.app.agent_defs import AgentDef, load_agents_dir
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.location import BankLocationError, parse_bank_location, url_backend
from swarm_sona.core.config import (
    ConfigBase,
    ConfigError,
    Secret,
    camel_to_snake,
    field_doc,
    load_config_file,
)
from swarm_sona.core.executor import Task
from swarm_sona.core.telemetry import TelemetryConfig
from swarm_sona.engine.config import SONAConfig
from swarm_sona.routing.config import LLMRouterConfig
from swarm_sona.runtime.config import SwarmConfig, check_topology

__all__ = ["RunSpec", "WorkloadConfig", "BudgetsConfig", "DEFAULT_AGENTS", "load_tasks_file"]

EXECUTORS = ("simulated", "table", "openai")

DEFAULT_AGENTS: tuple[dict[str, Any], ...] = (
    {"id": "queen-1", "type": "coordinator", "lora_rank": 16,
     "description": "Merges the workers' adapters and consolidates them with EWC++."},
    {"id": "coder-1", "type": "coder", "lora_rank": 8, "description": "Writes and refactors code."},
    {"id": "reviewer-1", "type": "reviewer", "lora_rank": 8, "description": "Reviews changes."},
    {"id": "tester-1", "type": "tester", "lora_rank": 8, "description": "Writes and runs tests."},
    {"id": "researcher-1", "type": "researcher", "lora_rank": 8, "description": "Finds and reads sources."},
)

# section names used inside nested configs' own messages -> the spec field they come from
_SECTION_FIELDS = {"reasoning_bank": "bank", "llm_router": "router", "model": "router.models", "spec": ""}


@dataclass(frozen=True)
class WorkloadConfig(ConfigBase):
    """Which executor runs the tasks and how many tasks there are.

    Example:
        >>> WorkloadConfig.from_dict({"executor": "simulated", "tasks": 100}).tasks
        100
    """

    _section: ClassVar[str] = "workload"

    executor: Literal["simulated", "table", "openai"] = field_doc(
        "simulated (seeded synthetic workload), table (recorded outcomes, e.g. RouteLLM MMLU) or openai "
        "(an OpenAI-compatible endpoint).", "simulated")
    tasks: int = field_doc("Number of tasks to run.", 2000)
    tasks_file: str | None = field_doc("Tasks to run, one per line (.txt) or JSON objects with 'text' and optional "
                                  "'task_type' per line (.jsonl); required for openai.", None)
    options: dict[str, Any] = field_doc("Keyword arguments of the executor (e.g. simulated: n_families, reuse_boost; "
                                   "table: path; openai: base_url, api_key_env, prices). A literal api_key "
                                   "(and credential extra_headers) is held as a Secret.", factory=dict)
    seed: int | None = field_doc("Seed of the task stream (None = the spec's seed).", None)

    def __post_init__(self) -> None:
        self._check_choice("executor", EXECUTORS)
        self._check_range("tasks", 1)
        if self.executor == "openai":   # keyword arguments of OpenAIChatExecutor: camelCase accepted too
            opts = {camel_to_snake(k) if isinstance(k, str) else k: v for k, v in self.options.items()}
            if len(opts) != len(self.options):
                raise ConfigError(f"{self._where('options')}: a key is given twice (camelCase and snake_case)")
            object.__setattr__(self, "options", opts)
        object.__setattr__(self, "options", _hold_secrets(self.options))
        if self.executor == "openai" and not self.tasks_file:
            raise ConfigError(f"{self._where('tasks_file')}: the openai executor needs a tasks_file")
        if self.executor == "openai" and "base_url" not in self.options:
            raise ConfigError(f"{self._where('options')}: the openai executor needs options.base_url")


@dataclass(frozen=True)
class BudgetsConfig(ConfigBase):
    """Spending and time limits of a run.

    Example:
        >>> BudgetsConfig.from_dict({"runUsd": 5, "taskUsd": 0.1}).run_usd
        5.0
    """

    _section: ClassVar[str] = "budgets"

    run_usd: float | None = field_doc("Stop routing to paid models once the run has spent this much (USD).", None)
    task_usd: float | None = field_doc("Per-task limit in USD over all attempts (cascade included).", None)
    wall_clock_s: float | None = field_doc("Stop dispatching new tasks after this many seconds.", None)

    def __post_init__(self) -> None:
        for name in ("run_usd", "task_usd"):
            if getattr(self, name) is not None:
                self._check_range(name, 0)
        if self.wall_clock_s is not None:
            self._check_range("wall_clock_s", 0, lo_open=True)


@dataclass(frozen=True)
class RunSpec(ConfigBase):
    """A whole swarm job: topology, agents, bank, router, workload, telemetry, budgets (see module docs)."""

    _section: ClassVar[str] = "spec"

    topology: str = field_doc("star, hierarchical, ring or mesh.", "hierarchical")
    agents: tuple[Any, ...] = field_doc("Agent entries: id (or name), type, loraRank, capabilities, hooks "
                                   "(none given: the default queen + four workers).", factory=tuple)
    agents_dir: str | None = field_doc("Directory of Markdown agent files (relative to the spec file).", None)
    shared_bank: bool = field_doc("Agents share one ReasoningBank (False: each retrieves only its own patterns).",
                             True, alias=("sharedReasoningBank",))
    consensus: bool = field_doc("Merge the agents' adapters (consensus learning).", True, alias=("consensusLearning",))
    swarm: dict[str, Any] = field_doc("Further SwarmConfig settings (mergeRule, syncEvery, batchSize, ...).",
                                 factory=dict)
    sona: dict[str, Any] = field_doc("Engine settings (SONAConfig without reasoningBank/llmRouter).", factory=dict)
    bank: ReasoningBankConfig = field_doc("The ReasoningBank (default: embedded, in the user's data dir).",
                                     factory=ReasoningBankConfig)
    router: LLMRouterConfig = field_doc("Router models and strategy (models default to the executor's).",
                                   factory=LLMRouterConfig)
    workload: WorkloadConfig = field_doc("Executor and tasks.", factory=WorkloadConfig)
    telemetry: TelemetryConfig = field_doc("Telemetry exporters.", factory=TelemetryConfig)
    budgets: BudgetsConfig = field_doc("Spend and time limits.", factory=BudgetsConfig)
    window: int | None = field_doc("Tasks per window in the summary's first-vs-last comparison "
                              "(default: a tenth of the tasks, 20..500).", None)
    seed: int = field_doc("Seed for the swarm and (unless workload.seed) the task stream.", 0)
    source: str | None = field_doc("The spec file (set by the loader; relative paths resolve against it).", None)

    def __post_init__(self) -> None:
        check_topology(self)   # the registry (built-ins + register_topology) or "package.module:Class"
        if self.window is not None:
            self._check_range("window", 1)
        agents: list[AgentDef] = []
        for i, entry in enumerate(self.agents):
            try:
                agents.append(AgentDef.from_dict(entry))
            except ConfigError as exc:
                raise ConfigError(_rebase(str(exc), {"agent": f"agents[{i}]", "hooks": f"agents[{i}].hooks"},
                                          f"agents[{i}]")) from exc
        if self.agents_dir is not None:
            if agents:
                raise ConfigError(f"{self._where('agents_dir')}: give either agents or agents_dir, not both")
            base = Path(self.source).parent if self.source else Path.cwd()
            d = Path(os.path.expanduser(self.agents_dir))
            try:
                agents = load_agents_dir(d if d.is_absolute() else base / d)
            except ConfigError as exc:
                raise ConfigError(f"agents_dir: {exc}") from exc
            object.__setattr__(self, "agents_dir", None)   # loaded: the agents (with their source) stand in
        if not agents:   # no agents given: the default ones (no queen in gossip topologies)
            agents = [AgentDef.from_dict(a) for a in DEFAULT_AGENTS
                      if self.topology in ("star", "hierarchical") or a["type"] != "coordinator"]
        object.__setattr__(self, "agents", tuple(agents))
        for key in ("reasoning_bank", "reasoningBank", "llm_router", "llmRouter"):
            if key in self.sona:
                field = "bank" if "bank" in key.lower() else "router"
                raise ConfigError(f"{self._where('sona')}: set {key} with the top-level '{field}' key")
        for key in ("topology", "agents", "shared_reasoning_bank", "sharedReasoningBank", "consensus_learning",
                    "consensusLearning", "sona", "seed"):
            if key in self.swarm:
                raise ConfigError(f"{self._where('swarm')}: set {key!r} at the top level of the spec")
        self.swarm_config()   # validates the swarm part (agents, merge rule, engine) now, before Ray

    # ---- loading ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, path: str | None = None) -> RunSpec:
        """As :meth:`ConfigBase.from_dict`; a ``bank`` with a ``url`` and no ``backend`` is a Qdrant
        server (``swarm_sona.bank.location``), not the embedded bank.

        Example:
            >>> RunSpec.from_dict({"bank": {"url": "https://q:6333"}}).bank.backend
            'qdrant'
        """
        if isinstance(data, Mapping) and isinstance(data.get("bank"), Mapping):
            b = data["bank"]
            if b.get("url") and "backend" not in b:
                data = {**data, "bank": {**b, "backend": url_backend(str(b["url"]))}}
        return super().from_dict(data, path=path)  # type: ignore[return-value]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunSpec:
        """Load and validate a spec file; errors are ConfigError naming the file, the field and the reason."""
        p = Path(path)
        data = load_config_file(p)
        data.pop("source", None)
        try:
            return cls.from_dict({**data, "source": str(p)})
        except ConfigError as exc:
            msg = str(exc)
            if msg.startswith(str(p)):
                raise
            raise ConfigError(f"{p}: {_rebase(msg, _SECTION_FIELDS)}") from exc

    @classmethod
    def default(cls, **overrides: Any) -> RunSpec:
        """The default swarm: hierarchical, queen + coder, reviewer, tester, researcher, simulated workload."""
        data: dict[str, Any] = {"topology": "hierarchical", "agents": [dict(a) for a in DEFAULT_AGENTS]}
        data.update(overrides)
        return cls.from_dict(data)

    def with_overrides(self, *, tasks: int | None = None, seed: int | None = None, bank: str | None = None,
                       address: str | None = None, metrics_push: str | None = None) -> RunSpec:
        """A copy with the command-line overrides applied (``bank`` is a Qdrant URL or a directory,
        ``metrics_push`` a Pushgateway URL: ``telemetry.push_url``)."""
        spec = self
        if metrics_push is not None:
            try:
                tcfg = TelemetryConfig.from_dict({**spec.telemetry.to_dict(), "push_url": metrics_push})
            except ConfigError as exc:
                raise ConfigError(f"--metrics-push: {exc}") from exc
            spec = dataclasses.replace(spec, telemetry=tcfg)
        if tasks is not None:
            spec = dataclasses.replace(spec, workload=WorkloadConfig.from_dict(
                {**spec.workload.to_dict(keep_secrets=True), "tasks": tasks}))
        if seed is not None:
            spec = dataclasses.replace(spec, seed=seed)
        if bank is not None:
            try:
                loc = parse_bank_location(bank, what="--bank")
            except BankLocationError as exc:
                raise ConfigError(str(exc)) from exc
            b = {**spec.bank.to_dict(keep_secrets=True), **loc.settings()}
            spec = dataclasses.replace(spec, bank=ReasoningBankConfig.from_dict(b, path="--bank"))
        if address is not None:
            spec = dataclasses.replace(spec, swarm={**spec.swarm, "address": address})
        return spec

    def with_swarm(self, **settings: Any) -> RunSpec:
        """A copy with further SwarmConfig settings (e.g. ``batch_size=128``), validated."""
        return dataclasses.replace(self, swarm={**self.swarm, **settings})

    # ---- derived ----------------------------------------------------------------------
    @property
    def task_seed(self) -> int:
        """Seed of the task stream."""
        return self.seed if self.workload.seed is None else self.workload.seed

    @property
    def summary_window(self) -> int:
        """Tasks per window for the first-vs-last comparison."""
        if self.window is not None:
            return min(self.window, self.workload.tasks)
        return max(1, min(self.workload.tasks, max(20, min(500, self.workload.tasks // 10))))

    def router_config(self) -> LLMRouterConfig:
        """The router settings with the budgets applied and models defaulting to the executor's."""
        d = self.router.to_dict()
        if not d["models"]:
            d["models"] = self.executor_model_specs()
        if self.budgets.run_usd is not None:
            d["run_budget"] = self.budgets.run_usd
        if self.budgets.task_usd is not None:
            d["max_cost_per_task"] = self.budgets.task_usd
        return LLMRouterConfig.from_dict(d, path="router")

    def executor_model_specs(self) -> list[dict[str, Any]]:
        """The models the workload's executor knows (name, cost, quality, latency)."""
        ex = self.make_executor()
        specs = getattr(ex, "model_specs", None)
        if specs is None:
            raise ConfigError(f"{self._where('router')}.models: the {self.workload.executor} executor does not "
                              "list its models; give router.models")
        return list(specs() if callable(specs) else specs)

    def swarm_config(self) -> SwarmConfig:
        """The SwarmConfig this spec describes (agents, sharing, consensus, engine with bank and router)."""
        sona = dict(self.sona)
        sona["reasoning_bank"] = self.bank.to_dict(keep_secrets=True)   # in memory: a literal key stays a Secret
        sona["llm_router"] = self.router_config().to_dict()
        try:
            SONAConfig.from_dict(sona, path="sona")
        except ConfigError as exc:
            raise ConfigError(_rebase(str(exc), _SECTION_FIELDS)) from exc
        data = {"topology": self.topology, "agents": [a.to_swarm_agent() for a in self.agents],
                "shared_reasoning_bank": self.shared_bank, "consensus_learning": self.consensus,
                "sona": sona, "seed": self.seed, **self.swarm}
        try:
            return SwarmConfig.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(_rebase(str(exc), {"swarm.agents": "agents", "swarm.topology": "topology",
                                                 **_SECTION_FIELDS})) from exc

    def make_executor(self) -> Any:
        """A fresh executor for the workload (picklable; sent to the agent actors)."""
        w = self.workload
        opts = dict(w.options)
        try:
            if w.executor == "simulated":
                from swarm_sona.executors.simulated import SimulatedExecutor

                opts.setdefault("seed", self.seed)
                return SimulatedExecutor(**opts)
            if w.executor == "table":
                from swarm_sona.executors.table import TableExecutor  # type: ignore[import-not-found]

                return TableExecutor(**opts)
            from swarm_sona.executors.openai_chat import OpenAIChatExecutor

            # only the variable's name travels: each process (agent actors too) reads its own environment
            opts.setdefault("api_key_env", "OPENAI_API_KEY")
            return OpenAIChatExecutor(**opts)
        except ModuleNotFoundError as exc:
            raise ConfigError(f"workload.executor: {w.executor!r} is not available in this build ({exc.name})") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"workload.options: {exc}") from exc

    def make_tasks(self, executor: Any | None = None) -> list[Task]:
        """The task stream: from ``workload.tasks_file`` or generated by the executor (seeded)."""
        w = self.workload
        if w.tasks_file:
            base = Path(self.source).parent if self.source else Path.cwd()
            p = Path(os.path.expanduser(w.tasks_file))
            tasks = load_tasks_file(p if p.is_absolute() else base / p)
            # fewer lines than tasks: cycle through them (each repetition is a task of its own)
            return [tasks[i] if i < len(tasks) else
                    Task(tasks[i % len(tasks)].text, tasks[i % len(tasks)].task_type,
                         metadata=dict(tasks[i % len(tasks)].metadata)) for i in range(w.tasks)]
        ex = executor if executor is not None else self.make_executor()
        gen = getattr(ex, "tasks", None)
        if gen is None:
            raise ConfigError(f"workload.tasks_file: the {w.executor} executor does not generate tasks; "
                              "give a tasks_file")
        return list(gen(w.tasks, seed=self.task_seed))

    def withheld_secrets(self) -> list[str]:
        """The fields holding a literal secret, which :meth:`to_plain` (and so an uploaded spec) leaves out.

        Example:
            >>> RunSpec.default(bank={"backend": "qdrant", "url": "https://q:6333", "apiKey": "k-123"}).withheld_secrets()
            ['bank.api_key (the job reads $QDRANT_API_KEY instead)']
        """
        out = []
        if self.bank.api_key is not None:
            env = f"${self.bank.api_key_env}" if self.bank.api_key_env else "no environment variable"
            out.append(f"bank.api_key (the job reads {env} instead)")
        opts = self.workload.options
        if isinstance(opts.get("api_key"), Secret):
            env = opts.get("api_key_env", "OPENAI_API_KEY")
            out.append(f"workload.options.api_key (the job reads {'$' + env if env else 'no variable'} instead)")
        headers = opts.get("extra_headers")
        if isinstance(headers, Mapping):
            out += [f"workload.options.extra_headers.{k}" for k, v in headers.items() if isinstance(v, Secret)]
        return out

    def to_plain(self) -> dict[str, Any]:
        """Plain data (agents inlined, hooks included) that :meth:`from_dict` accepts back; literal
        secrets are None (see :meth:`withheld_secrets`)."""
        d = self.to_dict()
        d["agents"] = [{**a.to_swarm_agent(), "hooks": a.hooks.to_dict()} for a in self.agents]
        d["agents_dir"] = None
        d.pop("source", None)
        return d


_SECRET_HEADERS = {"authorization", "proxy-authorization", "api-key", "x-api-key", "x-goog-api-key", "cookie"}


def _hold_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """Executor options with a literal ``api_key`` and credential ``extra_headers`` as Secrets."""
    opts = dict(options)
    key = opts.get("api_key")
    if isinstance(key, str):
        opts["api_key"] = Secret(key) if key else None
    headers = opts.get("extra_headers")
    if isinstance(headers, Mapping):
        opts["extra_headers"] = {k: Secret(v) if isinstance(k, str) and k.lower() in _SECRET_HEADERS
                                 and isinstance(v, str) and v else v for k, v in headers.items()}
    return opts


def _rebase(msg: str, prefixes: Mapping[str, str], fallback: str | None = None) -> str:
    """Rewrite a nested config's own section prefix into the spec field it came from."""
    for old, new in sorted(prefixes.items(), key=lambda kv: -len(kv[0])):
        for sep in (".", ":"):
            if msg.startswith(old + sep):
                rest = msg[len(old):]
                if not new:
                    return rest.lstrip(".:").lstrip()
                return new + rest
    return f"{fallback}: {msg}" if fallback else msg


def load_tasks_file(path: str | os.PathLike[str]) -> list[Task]:
    """Tasks from a ``.txt`` (one per line) or ``.jsonl`` file (``{"text": ..., "task_type": ...}`` per line).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "t.jsonl")
        >>> _ = open(p, "w").write('{"text": "sum 2+2", "task_type": "math"}\\n')
        >>> [(t.text, t.task_type) for t in load_tasks_file(p)]
        [('sum 2+2', 'math')]
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read tasks file: {exc.strerror or exc}") from exc
    tasks: list[Task] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if p.suffix.lower() == ".jsonl":
            try:
                obj = json.loads(line)
                tasks.append(Task(text=str(obj["text"]), task_type=obj.get("task_type"),
                                  metadata=dict(obj.get("metadata") or {})))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{p}:{n}: not a task object with 'text': {exc}") from exc
        else:
            tasks.append(Task(text=line.strip()))
    if not tasks:
        raise ConfigError(f"{p}: no tasks in the file")
    return tasks
