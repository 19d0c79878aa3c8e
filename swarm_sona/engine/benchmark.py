"""``sona.benchmark({learningIterations, retrievalQueries, routingDecisions})``: the guide's
overhead benchmark, measured call by call on the engine.

Three timed phases, each call timed alone with ``perf_counter_ns``:

* **learning**: ``learn(trajectory)`` per iteration (instant loop; every ``background_every``-th
  call also runs a background cycle, Adam + EWC++, and that call's time is part of the
  learning figures). The tasks are embedded before the phase (``avg_embed_ms`` says what
  embedding costs); iterations that ran a background cycle are also reported apart
  (``background_cycles``, ``avg_background_ms``) from those that did not (``avg_instant_ms``).
* **retrieval**: ``retrieve_patterns({task, k})`` per query (embedding the query text, as the
  guide's call does) against the engine's bank. No bank: the retrieval figures are None.
* **routing**: ``route(task)`` per decision (embedding, forward, the LLM router or the router
  head). No routable models (``llmRouter.models`` empty): the routing figures are None.

``isolated`` (default True) leaves the engine as it was: learning and routing run on a copy
(same config, state, router posterior, embedder and kernels; no hooks, no periodic
checkpoints, learning detached from the bank), and retrieval reads the engine's bank. With
``isolated=False`` every phase runs on the engine itself: what it learned stays, its hooks
run, and background cycles distil the synthetic trajectories into its bank.

The result is a :class:`BenchmarkResult`: attributes in snake_case or as the guide writes them
(``r.avgLearningMs``), and a mapping with both spellings (``r["avgLearningMs"]``,
``r["avg_learning_ms"]``); :meth:`BenchmarkResult.as_guide` gives the camelCase dict.

Example:
    >>> from swarm_sona.engine.sona import SONA
    >>> sona = SONA({"dim": 32, "mlp_hidden": 32, "backgroundEvery": 8,
    ...              "llmRouter": {"models": [{"name": "claude-haiku-3-5"}, {"name": "claude-sonnet-4-5"}]}})
    >>> r = sona.benchmark({"learningIterations": 16, "retrievalQueries": 0, "routingDecisions": 5})
    >>> r.learning_iterations, r.background_cycles, r["avgRetrievalMs"], r.avg_routing_ms > 0
    (16, 2, None, True)
    >>> sona.n_learned                  # isolated: the engine learned nothing
    0
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from swarm_sona.core.config import camel_to_snake, snake_to_camel
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.engine.errors import EngineError
from swarm_sona.engine.inputs import guide_args

if TYPE_CHECKING:
    from swarm_sona.engine.sona import SONA

__all__ = ["BenchmarkRequest", "BenchmarkResult", "LatencyStats", "run_benchmark", "latency_stats"]

_VERBS = ("implement", "review", "test", "refactor", "document", "optimize", "debug", "deploy")
_NOUNS = ("auth", "database index", "rest endpoint", "cache", "parser", "scheduler", "payment flow", "cli")
_MAX_CALLS = 10_000_000


@dataclass(frozen=True)
class BenchmarkRequest:
    """What :func:`run_benchmark` runs (the guide's keys in camelCase or snake_case).

    Example:
        >>> BenchmarkRequest.parse(({"learningIterations": 10},), {}).learning_iterations
        10
    """

    learning_iterations: int = 1000
    retrieval_queries: int = 10000
    routing_decisions: int = 5000
    k: int = 5
    seed: int = 0
    isolated: bool = True

    def __post_init__(self) -> None:
        for f in ("learning_iterations", "retrieval_queries", "routing_decisions", "k", "seed"):
            v = getattr(self, f)
            lo = 1 if f == "k" else 0
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= _MAX_CALLS:
                raise EngineError(f"benchmark: {snake_to_camel(f)} must be an integer in [{lo}, {_MAX_CALLS}], "
                                  f"got {v!r}")
        if not isinstance(self.isolated, bool):
            raise EngineError(f"benchmark: isolated must be true or false, got {self.isolated!r}")

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> BenchmarkRequest:
        """One mapping in the guide's shape and/or keyword arguments (unknown keys are errors)."""
        names = tuple(f.name for f in dataclasses.fields(cls))
        return cls(**guide_args("benchmark", args, kwargs, names))


@dataclass(frozen=True)
class LatencyStats:
    """Mean, median and 99th percentile of per-call times in milliseconds (None: no calls).

    Example:
        >>> latency_stats([1_000_000, 3_000_000]).avg_ms
        2.0
    """

    avg_ms: float | None
    median_ms: float | None
    p99_ms: float | None


def latency_stats(ns: Sequence[int] | np.ndarray) -> LatencyStats:
    """:class:`LatencyStats` of per-call times given in nanoseconds.

    Example:
        >>> s = latency_stats(list(range(1, 101)))
        >>> round(s.median_ms * 1e6, 1), round(s.p99_ms * 1e6, 2)
        (50.5, 99.01)
    """
    a = np.asarray(ns, np.float64) / 1e6
    if a.size == 0:
        return LatencyStats(None, None, None)
    return LatencyStats(float(a.mean()), float(np.median(a)), float(np.percentile(a, 99)))


@dataclass(frozen=True)
class BenchmarkResult(Mapping[str, Any]):
    """The benchmark's figures (milliseconds per call); also a mapping with the guide's keys.

    ``avg_learning_ms`` / ``p99_learning_ms`` cover every learning iteration, background cycles
    included; ``avg_instant_ms`` the iterations without one, ``avg_background_ms`` those with one.
    Retrieval figures are None without a bank (``bank_patterns`` None too).

    Example:
        >>> r = BenchmarkResult(**{f.name: 0 for f in dataclasses.fields(BenchmarkResult)})
        >>> r["avgLearningMs"], r.avgLearningMs, sorted(r.as_guide())[:2]
        (0, 0, ['avgBackgroundMs', 'avgEmbedMs'])
    """

    avg_learning_ms: float | None
    median_learning_ms: float | None
    p99_learning_ms: float | None
    avg_instant_ms: float | None
    avg_background_ms: float | None
    background_cycles: int
    avg_embed_ms: float | None
    avg_retrieval_ms: float | None
    median_retrieval_ms: float | None
    p99_retrieval_ms: float | None
    avg_routing_ms: float | None
    median_routing_ms: float | None
    p99_routing_ms: float | None
    learning_iterations: int
    retrieval_queries: int
    routing_decisions: int
    bank_patterns: int | None
    router: str
    dim: int
    isolated: bool
    total_s: float
    load_avg: float

    def __getattr__(self, name: str) -> Any:
        """The guide's camelCase attribute (``benchmark.avgLearningMs``) for its snake_case field."""
        snake = camel_to_snake(name)
        if snake != name and snake in self._names():
            return getattr(self, snake)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __getitem__(self, key: str) -> Any:
        name = camel_to_snake(key) if isinstance(key, str) else key
        if name not in self._names():
            raise KeyError(key)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_guide(self) -> dict[str, Any]:
        """Every figure under the guide's camelCase key (``avgLearningMs``, ``avgRetrievalMs``...)."""
        return {snake_to_camel(n): getattr(self, n) for n in self._names()}


def _texts(n: int, rng: np.random.Generator) -> list[str]:
    return [f"{_VERBS[i % 8]} the {_NOUNS[(i // 8) % 8]} {int(rng.integers(1 << 30))}" for i in range(n)]


def _timed(calls: int, fn: Callable[[int], Any]) -> np.ndarray:
    out = np.empty(calls, np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out


def _isolated_copy(sona: SONA) -> SONA:
    """An engine with the same config, state, router posterior, embedder and kernels; no bank,
    no hooks, no periodic checkpoints."""
    cfg = dataclasses.replace(sona.config, checkpoint_path=None)
    router = None if sona.router is None else copy.deepcopy(sona.router, {id(sona.embedder): sona.embedder})
    twin = type(sona)(cfg, embedder=sona.embedder, bank=None, router=router, kernels=sona.kernels)
    st = sona.state_dict()
    st.pop("router", None)  # the router is already a copy of the live one
    twin.load_state_dict(st)
    if "ewc" not in st:
        twin.ewc.load_state_dict(sona.ewc.state_dict())
    return twin


def _learning(eng: SONA, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-iteration ns, whether each ran a background cycle, and embedding ns per task."""
    texts = _texts(n, rng)
    embed_ns = _timed(n, lambda i: eng.embed(texts[i]))
    E = eng.embedder.embed(texts) if n else np.zeros((0, eng.dim), np.float32)
    models: list[str | None] = [*eng.model_names] or [None]
    rewards = rng.random(n)
    arms = rng.integers(len(models), size=n)
    trajs = [Trajectory(task=texts[i], embedding=np.asarray(E[i], np.float32), model=models[int(arms[i])],
                        reward=float(rewards[i]), success=bool(rewards[i] >= 0.5)) for i in range(n)]
    background = np.zeros(n, bool)

    def learn(i: int) -> None:
        background[i] = bool(eng.learn(trajs[i]).get("background"))

    return _timed(n, learn), background, embed_ns


def run_benchmark(sona: SONA, request: BenchmarkRequest) -> BenchmarkResult:
    """Run the three phases of ``request`` on ``sona`` (see the module docs).

    Example:
        >>> from swarm_sona.engine.sona import SONA
        >>> r = run_benchmark(SONA({"dim": 16, "mlp_hidden": 16}), BenchmarkRequest(4, 0, 2))
        >>> r.learning_iterations, r.routing_decisions, r.router, r.avg_routing_ms
        (4, 0, 'none', None)
    """
    t_start = time.perf_counter()
    rng = np.random.default_rng(request.seed)
    eng = _isolated_copy(sona) if request.isolated else sona
    learn_ns, background, embed_ns = _learning(eng, request.learning_iterations, rng)
    queries = _texts(min(request.retrieval_queries, 1000), rng)
    retrieval_ns: np.ndarray = np.zeros(0, np.int64)
    if sona.bank is not None and request.retrieval_queries:
        retrieval_ns = _timed(request.retrieval_queries, lambda i: sona.retrieve_patterns(
            {"task": queries[i % len(queries)], "k": request.k}))
    tasks = _texts(min(request.routing_decisions, 1000), rng)
    routing_ns: np.ndarray = np.zeros(0, np.int64)
    if (eng.router is not None or eng.model_names) and request.routing_decisions:
        routing_ns = _timed(request.routing_decisions, lambda i: eng.route(tasks[i % len(tasks)]))
    learning, retrieval, routing = latency_stats(learn_ns), latency_stats(retrieval_ns), latency_stats(routing_ns)
    return BenchmarkResult(
        avg_learning_ms=learning.avg_ms, median_learning_ms=learning.median_ms, p99_learning_ms=learning.p99_ms,
        avg_instant_ms=latency_stats(learn_ns[~background]).avg_ms,
        avg_background_ms=latency_stats(learn_ns[background]).avg_ms, background_cycles=int(background.sum()),
        avg_embed_ms=latency_stats(embed_ns).avg_ms,
        avg_retrieval_ms=retrieval.avg_ms, median_retrieval_ms=retrieval.median_ms, p99_retrieval_ms=retrieval.p99_ms,
        avg_routing_ms=routing.avg_ms, median_routing_ms=routing.median_ms, p99_routing_ms=routing.p99_ms,
        learning_iterations=request.learning_iterations, retrieval_queries=int(retrieval_ns.size),
        routing_decisions=int(routing_ns.size),
        bank_patterns=None if sona.bank is None else int(sona.bank.count()),
        router=_router_kind(eng), dim=sona.dim,
        isolated=request.isolated, total_s=time.perf_counter() - t_start, load_avg=_load_avg())


def _router_kind(eng: SONA) -> str:
    if eng.router is not None:
        return type(eng.router).__name__
    return "head" if eng.model_names else "none"


def _load_avg() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:  # not available on this platform
        return math.nan
