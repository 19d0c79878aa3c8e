"""Replay recorded outcomes: "did model M solve prompt P", from a RouteLLM-style table.

A routing table is a folder of CSV files (one per subject, e.g. ``mmlu_anatomy.csv``), each
with a ``prompt`` column followed by one column per model holding ``True``/``False`` (also
accepted: ``1``/``0``, ``yes``/``no``): whether that model answered the prompt correctly. Every
file must name the same models in the same order. The RouteLLM MMLU data
(``../shared/data/routellm_mmlu``: Mixtral-8x7B-Instruct as the weak model, GPT-4-1106 as the
strong one) has exactly this shape. A column named ``<model>::response`` (optional, in any
file) holds that model's recorded response text (``RoutingTable.responses``).

Cost model (documented, as RouteLLM estimates it): each model has a price in USD per 1M
tokens, the same for input and output tokens; a call costs ``price * tokens / 1e6`` with
``tokens = ceil(len(prompt) / chars_per_token) + output_tokens`` (defaults 4 characters per
token and 1 output token: an MMLU answer is one letter). The RouteLLM models' prices when the
data was made are in :data:`ROUTELLM_PRICES`; other tables pass ``prices``.

Example:
    >>> import tempfile, pathlib
    >>> from swarm_sona.core.executor import Task
    >>> from swarm_sona.executors.table import TableExecutor, load_routing_table
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "mmlu_demo.csv").write_text('prompt,weak,strong\\n"What is 2+2?",True,True\\n"Hard?",False,True\\n')
    >>> ex = TableExecutor(load_routing_table(d), prices={"weak": 1.0, "strong": 10.0})
    >>> out = ex(Task("Hard?"), "strong", [])
    >>> out.success, out.cost_usd
    (True, 3e-05)
    >>> ex.solved("Hard?", "weak")
    False
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swarm_sona.core.executor import Outcome, Task
from swarm_sona.routing.router import estimate_tokens

__all__ = ["ROUTELLM_PRICES", "ROUTELLM_WEAK", "ROUTELLM_STRONG", "TableError", "RoutingTable",
           "load_routing_table", "TableExecutor", "RESPONSE_SUFFIX"]

ROUTELLM_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
ROUTELLM_STRONG = "gpt-4-1106-preview"
#: USD per 1M tokens (input = output) of the RouteLLM MMLU models when the data was made.
ROUTELLM_PRICES: dict[str, float] = {ROUTELLM_WEAK: 0.6, ROUTELLM_STRONG: 20.0}

#: header suffix of a column holding a model's recorded response text (``<model>::response``).
RESPONSE_SUFFIX = "::response"
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


class TableError(ValueError):
    """A routing table is missing, malformed, or was asked about an unknown prompt or model."""


@dataclass(frozen=True)
class RoutingTable:
    """Recorded outcomes: ``correct[i, j]`` is True when ``models[j]`` solved ``prompts[i]``.

    ``subjects[i]`` is the file the prompt came from (``mmlu_`` prefix and ``.csv`` removed).
    ``responses[m][i]``: the recorded response text of model ``m`` where the files have a
    ``<m>::response`` column (``""`` where a row has none).
    """

    prompts: tuple[str, ...]
    models: tuple[str, ...]
    correct: np.ndarray
    subjects: tuple[str, ...]
    source: str = ""
    responses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def subject_names(self) -> list[str]:
        """The distinct subjects, sorted."""
        return sorted(set(self.subjects))

    def accuracy(self) -> dict[str, float]:
        """Fraction of prompts each model solved."""
        return {m: float(self.correct[:, j].mean()) for j, m in enumerate(self.models)}

    def tasks(self) -> Iterator[Task]:
        """One :class:`Task` per row (``task_type`` = subject, ``metadata["row"]`` = row index)."""
        for i, (p, s) in enumerate(zip(self.prompts, self.subjects, strict=True)):
            yield Task(text=p, task_type=s, id=f"{s}/{i}", metadata={"row": i})


def _parse_bool(value: str, where: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise TableError(f"{where}: expected True or False, got {value!r}")


def load_routing_table(path: str | os.PathLike[str]) -> RoutingTable:
    """Load every ``*.csv`` in the folder ``path`` (sorted by name) into a :class:`RoutingTable`.

    Raises :class:`TableError` when the folder is missing or holds no CSV file, when a file's
    header differs from the first file's, or when a cell is not a boolean (naming file and line).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise TableError(
            f"routing data folder {str(folder)!r} does not exist (expected a folder of RouteLLM-style CSV files, "
            "e.g. ../shared/data/routellm_mmlu, or RouteLLM's routellm/evals/mmlu/responses/); pass --data DIR")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise TableError(f"routing data folder {str(folder)!r} holds no .csv file")
    prompts: list[str] = []
    rows: list[list[bool]] = []
    subjects: list[str] = []
    models: tuple[str, ...] | None = None
    texts: dict[str, dict[int, str]] = {}
    for f in files:
        subject = f.stem[len("mmlu_"):] if f.stem.startswith("mmlu_") else f.stem
        with open(f, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise TableError(f"{f}: empty file (expected a header: prompt,<model>,<model>...)") from None
            if len(header) < 2 or header[0].strip() != "prompt":
                raise TableError(f"{f}: header must be prompt,<model>,... got {header!r}")
            cols = tuple(h.strip() for h in header[1:])
            names = tuple(c for c in cols if not c.endswith(RESPONSE_SUFFIX))
            text_cols = {k: c[: -len(RESPONSE_SUFFIX)] for k, c in enumerate(cols) if c.endswith(RESPONSE_SUFFIX)}
            stray = sorted(set(text_cols.values()) - set(names))
            if stray:
                raise TableError(f"{f}: response column(s) for unknown model(s) {stray}; models are {list(names)}")
            if len(set(cols)) != len(cols) or not all(names) or not names:
                raise TableError(f"{f}: model columns must be distinct and non-empty, got {list(names)}")
            if models is None:
                models = names
            elif names != models:
                raise TableError(f"{f}: model columns {list(names)} differ from {list(models)} in {files[0].name}")
            for row in reader:
                where = f"{f}:{reader.line_num}"
                if len(row) != len(header):
                    raise TableError(f"{where}: expected {len(header)} columns, got {len(row)}")
                prompts.append(row[0])
                rows.append([_parse_bool(v, where) for k, v in enumerate(row[1:]) if k not in text_cols])
                for k, m in text_cols.items():
                    texts.setdefault(m, {})[len(prompts) - 1] = row[1 + k]
                subjects.append(subject)
    assert models is not None
    if not prompts:
        raise TableError(f"routing data folder {str(folder)!r} holds no rows")
    correct = np.array(rows, dtype=bool)
    correct.setflags(write=False)
    responses = {m: tuple(by_row.get(i, "") for i in range(len(prompts))) for m, by_row in texts.items()}
    return RoutingTable(tuple(prompts), models, correct, tuple(subjects), str(folder), responses)


class TableExecutor:
    """Executor over a :class:`RoutingTable`: reward 1 when the table says the model solved it.

    A task is looked up by ``task.metadata["row"]`` when present (exact, also for prompts that
    appear twice), else by its text (the first row with that prompt). ``prices``: USD per 1M
    tokens per model (default :data:`ROUTELLM_PRICES`); ``latency_s``: a fixed latency per
    model reported in the outcome (default 0). Unknown prompts or models raise
    :class:`TableError`.

    Example:
        >>> import numpy as np
        >>> t = RoutingTable(("q1",), ("a", "b"), np.array([[True, False]]), ("demo",))
        >>> TableExecutor(t, prices={"a": 0.0, "b": 1.0}).solved("q1", "b")
        False
    """

    def __init__(self, table: RoutingTable | str | os.PathLike[str], *, prices: Mapping[str, float] | None = None,
                 chars_per_token: float = 4.0, output_tokens: int = 1,
                 latency_s: Mapping[str, float] | None = None) -> None:
        if not isinstance(table, RoutingTable):
            table = load_routing_table(table)
        self.table = table
        prices = dict(ROUTELLM_PRICES if prices is None else prices)
        missing = [m for m in table.models if m not in prices]
        if missing:
            raise TableError(f"no price (USD per 1M tokens) for model(s) {missing}; pass prices={{...}}")
        for m, p in prices.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 0:
                raise TableError(f"price of {m!r} must be a finite number >= 0, got {p!r}")
        if not (isinstance(chars_per_token, (int, float)) and chars_per_token > 0):
            raise TableError(f"chars_per_token must be > 0, got {chars_per_token!r}")
        if isinstance(output_tokens, bool) or not isinstance(output_tokens, int) or output_tokens < 0:
            raise TableError(f"output_tokens must be an integer >= 0, got {output_tokens!r}")
        self.prices = {m: float(prices[m]) for m in table.models}
        self.chars_per_token = float(chars_per_token)
        self.output_tokens = output_tokens
        self.latency_s = {m: 0.0 for m in table.models}
        for m, v in (latency_s or {}).items():
            if m not in self.latency_s:
                raise TableError(f"latency_s: unknown model {m!r}; models are {list(table.models)}")
            self.latency_s[m] = float(v)
        self._col = {m: j for j, m in enumerate(table.models)}
        self._row: dict[str, int] = {}
        for i, prompt in enumerate(table.prompts):
            self._row.setdefault(prompt, i)

    @property
    def models(self) -> tuple[str, ...]:
        return self.table.models

    def _lookup(self, prompt: str | Task, model: str) -> tuple[int, int, str]:
        j = self._col.get(model)
        if j is None:
            raise TableError(f"unknown model {model!r}; the table has {list(self.table.models)}")
        if isinstance(prompt, Task):
            row = prompt.metadata.get("row") if prompt.metadata else None
            text = prompt.text
            if row is not None:
                if not isinstance(row, int) or not 0 <= row < len(self.table) or self.table.prompts[row] != text:
                    raise TableError(f"task row {row!r} does not hold this task's prompt")
                return row, j, text
        else:
            text = prompt
        i = self._row.get(text)
        if i is None:
            short = text if len(text) <= 60 else text[:57] + "..."
            raise TableError(f"prompt not in the table: {short!r}")
        return i, j, text

    def solved(self, prompt: str | Task, model: str) -> bool:
        """Whether ``model`` solved ``prompt`` according to the table."""
        i, j, _ = self._lookup(prompt, model)
        return bool(self.table.correct[i, j])

    def cost(self, prompt: str | Task, model: str) -> float:
        """USD cost of one call: ``price * tokens / 1e6`` (see the module documentation)."""
        _, _, text = self._lookup(prompt, model)
        return self._cost(text, model)

    def _cost(self, text: str, model: str) -> float:
        tokens = estimate_tokens(text, chars_per_token=self.chars_per_token, output_tokens=self.output_tokens)
        return self.prices[model] * tokens / 1e6

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        i, j, text = self._lookup(task, model)
        ok = bool(self.table.correct[i, j])
        return Outcome(output="correct" if ok else "incorrect", reward=1.0 if ok else 0.0, success=ok,
                       cost_usd=self._cost(text, model), latency_s=self.latency_s[model],
                       metadata={"row": i})

    def model_specs(self, quality: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        """Router model specs (``LLMRouterConfig.models``) with this table's prices per 1M tokens.

        ``quality``: prior success probability per model (default 0.5 each).
        """
        quality = dict(quality or {})
        unknown = set(quality) - set(self.table.models)
        if unknown:
            raise TableError(f"quality: unknown model(s) {sorted(unknown)}; models are {list(self.table.models)}")
        return [{"name": m, "cost": self.prices[m], "cost_unit": "1m_tokens", "quality": quality.get(m, 0.5)}
                for m in self.table.models]
