"""SimulatedExecutor: a seeded task generator with hidden per-model success rates.

Generative process (everything derives from ``seed``):

1. **Skills.** ``n_families`` task families (``code``, ``math``, ``search``, ``review``,
   ``translate``, ``data``, ``ops``, ``docs``, ... each with its own verbs and nouns) times
   ``subtopics`` subtopics each. A subtopic has a unique keyword (``parser``, ``matrix``...
   suffixed with its family), so a skill = (family, subtopic).
2. **Tasks.** ``tasks(n)`` draws, with its own seeded RNG, a skill (families uniform,
   subtopics Zipf-like so some recur often), a difficulty in {easy, medium, hard} (word
   ``quick`` / ``standard`` / ``complex``) and two filler words (the family's verbs and nouns), and writes the
   text ``"<difficulty> <verb> <subtopic keyword> <noun> <filler> <filler>"``. ``Task.task_type``
   is the family. The text alone determines the hidden truth (the executor parses it back),
   so the executor needs no side table and gives the same outcome in any process.
3. **Models.** ``models`` (default ``small``, ``medium``, ``large``) with a cost per call
   and a latency. The hidden success probability of model m on family f is
   ``p[m, f]``, drawn once: ``small`` U(0.15, 0.85), ``medium`` U(0.35, 0.9), ``large``
   U(0.7, 0.95), and on two families (chosen by the seed) ``small`` is the best model
   (0.9): the right model depends on the family. Difficulty adds +0.1 (easy), 0 (medium),
   -0.2 (hard); probabilities are clipped to [0.02, 0.98]. The router prior for every model
   is its mean over families, so per-family knowledge has to be learned.
4. **Pattern reuse.** If the retrieved ``patterns`` include a *successful* pattern (reward
   >= 0.5) of the same skill and difficulty (its task text carries the same subtopic keyword
   and difficulty word), the success probability becomes ``p + reuse_boost * (1 - p)``
   (default boost 0.5): remembering what worked on this kind of task genuinely helps.
5. **Outcome.** A uniform u is drawn from a hash of ``(seed, task.id, model, attempt)``
   (common random numbers: the same task on the same model gives the same draw in every
   run, so sharing on/off comparisons see the same luck). success = u < p; reward =
   ``0.7 + 0.3 v`` on success and ``0.3 v`` on failure (v a second hashed uniform);
   cost = the model's cost per call; latency = the model's latency (simulated, not slept).

Example:
    >>> from swarm_sona.executors.simulated import SimulatedExecutor
    >>> ex = SimulatedExecutor(seed=1)
    >>> t = ex.tasks(3, seed=5)[0]
    >>> t.task_type in ex.families
    True
    >>> out = ex(t, "large", [])
    >>> 0.0 <= out.reward <= 1.0, out.cost_usd == ex.model_costs["large"]
    (True, True)
    >>> ex(t, "large", []).success == out.success   # deterministic per (task, model)
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from swarm_sona.core.executor import Outcome, Task

__all__ = ["SimulatedExecutor", "FAMILY_WORDS", "DEFAULT_MODELS"]

FAMILY_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # family: (verbs, nouns, subtopic stems)
    "code": (("implement", "refactor", "debug"), ("function", "module", "class"),
             ("parser", "cache", "scheduler", "allocator", "lexer", "router", "queue", "socket")),
    "math": (("prove", "compute", "solve"), ("equation", "integral", "theorem"),
             ("matrix", "prime", "series", "limit", "vector", "graph", "lattice", "tensor")),
    "search": (("find", "lookup", "locate"), ("document", "source", "reference"),
               ("patent", "paper", "dataset", "statute", "manual", "archive", "thread", "wiki")),
    "review": (("review", "audit", "critique"), ("pullrequest", "diff", "design"),
               ("security", "style", "perf", "api", "schema", "naming", "tests", "license")),
    "translate": (("translate", "localize", "render"), ("sentence", "paragraph", "phrase"),
                  ("german", "french", "spanish", "japanese", "korean", "arabic", "hindi", "polish")),
    "data": (("clean", "aggregate", "transform"), ("table", "column", "csv"),
             ("sales", "sensor", "clicks", "ledger", "census", "weather", "traffic", "stock")),
    "ops": (("deploy", "monitor", "rollback"), ("service", "cluster", "pipeline"),
            ("kubernetes", "terraform", "nginx", "postgres", "kafka", "redis", "dns", "tls")),
    "docs": (("document", "summarize", "explain"), ("readme", "tutorial", "changelog"),
             ("install", "quickstart", "faq", "migration", "glossary", "cli", "config", "release")),
}

DEFAULT_MODELS: dict[str, dict[str, float]] = {
    "small": {"cost": 0.0005, "latency_s": 0.4},
    "medium": {"cost": 0.003, "latency_s": 1.0},
    "large": {"cost": 0.02, "latency_s": 2.5},
}
_RANGES = {"small": (0.15, 0.85), "medium": (0.35, 0.9), "large": (0.7, 0.95)}
_DIFFICULTY = (("quick", 0.1), ("standard", 0.0), ("complex", -0.2))


def _u(*parts: Any) -> float:
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return (int.from_bytes(h, "little") >> 11) / float(1 << 53)


class SimulatedExecutor:
    """Seeded simulated workload; see the module docstring for the generative process."""

    def __init__(self, seed: int = 0, *, n_families: int = 6, subtopics: int = 8,
                 models: Mapping[str, Mapping[str, float]] | None = None, reuse_boost: float = 0.5,
                 success_rates: Mapping[str, Mapping[str, float]] | None = None) -> None:
        if not 1 <= n_families <= len(FAMILY_WORDS):
            raise ValueError(f"n_families must be in [1, {len(FAMILY_WORDS)}], got {n_families}")
        if not 1 <= subtopics <= 8:
            raise ValueError(f"subtopics must be in [1, 8], got {subtopics}")
        if not 0.0 <= reuse_boost <= 1.0:
            raise ValueError(f"reuse_boost must be in [0, 1], got {reuse_boost}")
        self.seed = int(seed)
        self.reuse_boost = float(reuse_boost)
        self.families: tuple[str, ...] = tuple(list(FAMILY_WORDS)[:n_families])
        self.subtopics = subtopics
        spec = dict(models or DEFAULT_MODELS)
        if not spec:
            raise ValueError("models must name at least one model")
        self.model_costs = {m: float(v.get("cost", 0.0)) for m, v in spec.items()}
        self.model_latency = {m: float(v.get("latency_s", 1.0)) for m, v in spec.items()}
        rng = np.random.default_rng([self.seed, 7919])
        rates: dict[str, dict[str, float]] = {}
        small_best = set(rng.choice(len(self.families), size=min(2, len(self.families)), replace=False).tolist())
        for m in spec:
            lo, hi = _RANGES.get(m, (0.3, 0.9))
            rates[m] = {}
            for i, f in enumerate(self.families):
                p = float(rng.uniform(lo, hi))
                if m == "small" and i in small_best:
                    p = 0.9
                rates[m][f] = p
        if success_rates is not None:
            for m, row in success_rates.items():
                if m not in rates:
                    raise ValueError(f"success_rates names unknown model {m!r}")
                for f, p in row.items():
                    if f not in self.families or not 0 <= p <= 1:
                        raise ValueError(f"success_rates[{m!r}][{f!r}] invalid: {p!r}")
                    rates[m][f] = float(p)
        self.success_rates = rates
        # token -> (family, subtopic) and token -> difficulty offset: parse truth back from text
        self._skill_of: dict[str, tuple[str, str]] = {}
        for f in self.families:
            for s in FAMILY_WORDS[f][2][:subtopics]:
                self._skill_of[f"{s}-{f}"] = (f, s)
        self._difficulty = dict(_DIFFICULTY)

    # ---- generation --------------------------------------------------------------------
    def tasks(self, n: int, *, seed: int | None = None, start: int = 0) -> list[Task]:
        """``n`` tasks drawn by the generative process (ids ``sim-<seed>-<i>``)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        s = self.seed if seed is None else int(seed)
        rng = np.random.default_rng([s, 104729])
        fam = rng.integers(0, len(self.families), size=n)
        zipf = 1.0 / np.arange(1, self.subtopics + 1)
        sub = rng.choice(self.subtopics, size=n, p=zipf / zipf.sum())
        diff = rng.integers(0, 3, size=n)
        verb = rng.integers(0, 3, size=n)
        noun = rng.integers(0, 3, size=n)
        fill = rng.integers(0, 8, size=(n, 2))
        out = []
        for i in range(n):
            f = self.families[int(fam[i])]
            verbs, nouns, stems = FAMILY_WORDS[f]
            words = list(verbs) + list(nouns)
            text = (f"{_DIFFICULTY[int(diff[i])][0]} {verbs[int(verb[i])]} {stems[int(sub[i])]}-{f} "
                    f"{nouns[int(noun[i])]} {words[int(fill[i, 0]) % 6]} {words[int(fill[i, 1]) % 6]}")
            out.append(Task(text=text, task_type=f, id=f"sim-{s}-{start + i}"))
        return out

    def model_specs(self) -> list[dict[str, Any]]:
        """Router model specs: name, cost (USD per call, as its outcomes report), latency and the
        prior quality (mean over families)."""
        return [{"name": m, "cost": self.model_costs[m], "cost_unit": "call", "latency_s": self.model_latency[m],
                 "quality": round(float(np.mean(list(self.success_rates[m].values()))), 4)}
                for m in self.success_rates]

    # ---- truth ---------------------------------------------------------------------------
    def truth(self, text: str) -> tuple[str, str, float] | None:
        """(family, subtopic, difficulty offset) parsed from a generated text, or None."""
        skill = None
        diff = 0.0
        for tok in text.split():
            if skill is None and tok in self._skill_of:
                skill = self._skill_of[tok]
            d = self._difficulty.get(tok)
            if d is not None:
                diff = d
        return None if skill is None else (skill[0], skill[1], diff)

    def success_probability(self, task: Task, model: str, patterns: Sequence[Mapping[str, Any]] = ()) -> float:
        """The hidden success probability of ``model`` on ``task`` given the retrieved patterns."""
        if model not in self.success_rates:
            raise ValueError(f"unknown model {model!r}; this executor knows {sorted(self.success_rates)}")
        t = self.truth(task.text)
        if t is None:
            return 0.05
        fam, sub, diff = t
        p = min(0.98, max(0.02, self.success_rates[model][fam] + diff))
        if self.reuse_boost and patterns and self._helpful(fam, sub, task.text.split(" ", 1)[0], patterns):
            p = p + self.reuse_boost * (1.0 - p)
        return p

    def _helpful(self, fam: str, sub: str, level: str, patterns: Sequence[Mapping[str, Any]]) -> bool:
        key = f"{sub}-{fam}"
        for pat in patterns or ():
            payload = pat.get("payload", pat) if isinstance(pat, Mapping) else {}
            reward = payload.get("reward", pat.get("reward", 0.0) if isinstance(pat, Mapping) else 0.0)
            text = payload.get("task") or payload.get("input") or payload.get("content") or ""
            if isinstance(reward, (int, float)) and reward >= 0.5 and isinstance(text, str) and key in text \
                    and text.split(" ", 1)[0] == level:
                return True
        return False

    def __call__(self, task: Task, model: str, patterns: list[dict[str, Any]]) -> Outcome:
        attempt = int(task.metadata.get("attempt", 0)) if task.metadata else 0
        p = self.success_probability(task, model, patterns)
        u = _u(self.seed, task.id, model, attempt)
        success = u < p
        v = _u(self.seed, task.id, model, attempt, "r")
        reward = 0.7 + 0.3 * v if success else 0.3 * v
        return Outcome(output=f"{model}:{'ok' if success else 'fail'}", reward=reward, success=success,
                       cost_usd=self.model_costs[model], latency_s=self.model_latency[model],
                       metadata={"p": p})

    def oracle_success_rate(self, tasks: Sequence[Task], *, with_patterns: bool = False) -> float:
        """Expected success of always choosing the best model per task (an upper bound)."""
        if not tasks:
            return 0.0
        tot = 0.0
        for t in tasks:
            best = max(self.success_probability(t, m) for m in self.success_rates)
            tot += best + (self.reuse_boost * (1 - best) if with_patterns else 0.0)
        return tot / len(tasks)

    def __repr__(self) -> str:
        return f"SimulatedExecutor(seed={self.seed}, families={list(self.families)}, models={list(self.model_costs)})"
