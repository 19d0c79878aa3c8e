"""``swarm-sona bench bank-faiss``: the bank cache's filtered top-k against FAISS, same run.

Per cell (data x dim x size x filter selectivity), every row answers the same queries with the
same filter and is scored against the exact filtered top-k (float64 numpy):

* ``cache-int8`` / ``cache-f32``: :class:`~swarm_sona.bank.cache.HotCache` ``search`` (the
  embedded bank's query path: reward filter, zone map, native kernels; int8 is the bank's
  default, with its default scan threads), filter ``min_reward = 1 - selectivity``.
* ``cache-ivf``: the same cache with ``index="ivf"`` (the bank's ``cache_index: ivf``): k-means
  lists as a bank trains them at open and in ``optimize()`` (``build_index(thorough=True)``),
  the rows stored in list order, the int8 scan reading only the probed lists' runs of rows plus
  the rows appended since; ``probe`` (share of the rows probed) tuned as FAISS's nprobe, the
  smallest of 0.001, 0.002, 0.004 ... 0.256, 0.5 reaching recall@k >= ``target``, at each of
  two re-rank depths (``rerank`` 4k and the bank's default 64): the faster one is the row.
* ``cache-hnsw`` (sizes <= ``hnsw_max``): the cache with ``index="hnsw"`` (the bank's
  ``cache_index: hnsw``): FAISS's HNSW32 graph behind the cache, built in the order the rows
  were written (graph ids mapped to rows, the filter as an ``IDSelectorBitmap`` over graph ids
  built per query from the build's snapshot of the filter columns, rows written since the build
  scanned exactly),
  ``ef`` tuned as FAISS's efSearch; below 20 % of the rows passing it answers by the flat scan.
* ``cache-int4`` / ``cache-ivf-int4`` (``--int4``): the flat and ivf caches with the int4 first
  stage on from the first row (``int4_from=1``; the bank's ``cache_int4_from``): half the bytes
  of int8 per row scanned, 4x the candidates re-ranked.
* ``bank-int8`` (sizes <= ``bank_max``): ``ReasoningBank.retrieve_patterns`` end to end on a
  RAM-disk embedded bank (validation, cache search, payloads, Pattern objects).
* ``faiss-flat``: ``IndexFlatIP`` (exact).
* ``faiss-ivf``: ``IndexIVFFlat`` with ``nlist ~ sqrt(n)`` lists, ``nprobe`` the smallest of
  1, 2, 3, 4, 6, 8, 12, ... (steps of 1.5x and 2x) reaching recall@k >= ``target`` on the queries (or
  the best reached).
* ``faiss-hnsw``: ``IndexHNSWFlat`` M=32 (efConstruction 40), ``efSearch`` tuned the same way.

FAISS filters through an ``IDSelectorBitmap`` built per query from the reward column (the
filter is a query argument, so building it is part of the query: ``sel_us`` in the row says
what that costs); at 100 % selectivity both sides run unfiltered. FAISS is timed on one OpenMP thread
(a single query does not parallelise in flat / IVF / HNSW search); it builds and tunes (batched)
on all of them. IVF / HNSW parameters are tuned on the timed queries themselves. Latency is per query, one at
a time; ``p50_us`` / ``p99_us`` in microseconds.

Data: ``random`` = :func:`swarm_sona.bench.bank.make_workload` (unit vectors around n/50
centres, queries = stored vectors plus noise); ``text`` = the RouteLLM MMLU prompts
(``--data``, default ``../shared/data/routellm_mmlu``) and their parts (the question, each
option, the question with each option), de-duplicated, through the default hashing embedder,
queried with 200 held-out whole prompts. Rewards are uniform in [0, 1] in both.

Example:
    >>> rows = run_faiss(sizes=[500], dims=[16], datasets=["random"], selectivities=[0.5],
    ...                  queries=10)  # doctest: +SKIP
    >>> sorted({r.backend for r in rows})  # doctest: +SKIP
    ['cache-f32', 'cache-hnsw', 'cache-int8', 'cache-ivf', 'faiss-flat', 'faiss-hnsw', 'faiss-ivf']
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from swarm_sona.bank import PatternFilter, ReasoningBank
from swarm_sona.bank.cache import HotCache
from swarm_sona.bank.edge_backend import ram_tmpdir
from swarm_sona.bench.bank import make_workload
from swarm_sona.bench.timing import emit, machine_info, summarize_us
from swarm_sona.core.progress import Progress
from swarm_sona.embedding.embedders import HashingEmbedder

T = TypeVar("T", int, float)

__all__ = ["FaissRow", "add_arguments", "run", "run_faiss", "recall_at_k", "exact_filtered_topk",
           "text_workload", "tune", "winners", "FaissIndexes"]

_DEFAULT_DATA = "../shared/data/routellm_mmlu"
_SWEEP = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
_PROBE_SWEEP = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.5)  # cache-ivf: share of rows probed


@dataclass
class FaissRow:
    """One backend in one cell; ``param`` is nprobe / efSearch / the cache's ivf probe share where tuned (else None).

    Example:
        >>> FaissRow("faiss-flat", "random", 256, 1000, 0.1, 40.0, 60.0, 1.0).recall_at_k
        1.0
    """

    backend: str
    data: str
    dim: int
    size: int
    selectivity: float
    p50_us: float
    p99_us: float
    recall_at_k: float
    param: float | None = None
    sel_us: float | None = None
    build_s: float | None = None
    note: str = ""


def recall_at_k(got: Sequence[Any] | np.ndarray, exact: Sequence[Any] | np.ndarray, k: int) -> float:
    """Mean over queries of |returned ∩ exact| / min(k, |exact|); ids < 0 (FAISS's "none") never hit.

    Example:
        >>> recall_at_k([[1, 2], [3, -1]], [[1, 2], [3, 4]], 2)
        0.75
    """
    if len(got) != len(exact):
        raise ValueError(f"recall_at_k: {len(got)} results for {len(exact)} queries")
    if k < 1:
        raise ValueError(f"recall_at_k: k must be >= 1, got {k}")
    hits = [len({int(i) for i in g[:k] if int(i) >= 0} & {int(i) for i in e[:k]}) / max(1, min(k, len(e)))
            for g, e in zip(got, exact, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def exact_filtered_topk(V: np.ndarray, keep: np.ndarray | None, Q: np.ndarray, k: int) -> list[np.ndarray]:
    """Exact top-k row numbers by inner product in float64 among rows where ``keep`` (None = all).

    Example:
        >>> V = np.eye(3, dtype=np.float32)
        >>> [r.tolist() for r in exact_filtered_topk(V, np.array([True, False, True]), V[:1], 2)]
        [[0, 2]]
    """
    rows = np.arange(len(V)) if keep is None else np.flatnonzero(keep)
    S = Q.astype(np.float64) @ V[rows].astype(np.float64).T
    return [rows[np.argsort(-s, kind="stable")[:k]] for s in S]


def _prompt_parts(prompt: str) -> list[str]:
    lines = [ln.strip() for ln in prompt.splitlines() if ln.strip()]
    opts = [ln for ln in lines if len(ln) > 2 and ln[1] == "." and ln[0] in "ABCD"]
    question = " ".join(ln for ln in lines if ln not in opts)
    return [prompt, question, *opts, *(f"{question} {o}" for o in opts)]


def text_workload(n: int, dim: int, queries: int, data: str | Path = _DEFAULT_DATA,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Real-text workload (see module docs): hashing-embedded prompt parts, held-out prompts as queries.

    Example:
        >>> W = text_workload(1000, 64, 20)  # doctest: +SKIP
        >>> W["V"].shape, W["Q"].shape  # doctest: +SKIP
        ((1000, 64), (20, 64))
    """
    files = sorted(Path(data).glob("mmlu_*.csv"))
    if not files:
        raise FileNotFoundError(f"text workload: no mmlu_*.csv under {data!s} (the RouteLLM MMLU data)")
    prompts: list[str] = []
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            prompts += [row[0] for row in csv.reader(fh)][1:]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(prompts))
    held = [prompts[i] for i in order[:queries]]
    seen: dict[str, None] = {}
    for i in order[queries:]:
        for t in _prompt_parts(prompts[i]):
            seen.setdefault(t, None)
    texts = list(seen)
    if len(texts) < n:
        raise ValueError(f"text workload: {len(texts)} distinct texts from {len(prompts)} prompts, asked for {n}")
    texts = [texts[i] for i in rng.permutation(len(texts))[:n]]
    emb = HashingEmbedder(dim)
    return {"V": np.ascontiguousarray(emb.embed(texts), np.float32),
            "Q": np.ascontiguousarray(emb.embed(held), np.float32), "reward": np.round(rng.random(n), 4)}


def _time(fn: Callable[[np.ndarray], Any], Q: np.ndarray, warmup: int = 5) -> tuple[dict[str, float], list[Any]]:
    for q in Q[:warmup]:
        fn(q)
    samples = np.empty(len(Q))
    out = []
    clock = time.perf_counter_ns
    for i, q in enumerate(Q):
        t0 = clock()
        out.append(fn(q))
        samples[i] = clock() - t0
    return summarize_us(samples), out


def tune(recall_of: Callable[[T], float], sweep: Iterable[T], target: float) -> tuple[T, float]:
    """The first value of ``sweep`` whose ``recall_of`` reaches ``target``, else the best seen.

    Example:
        >>> tune(lambda p: min(1.0, p / 8), [1, 2, 4, 8, 16], 0.95)
        (8, 1.0)
    """
    best: tuple[T, float] | None = None
    for p in sweep:
        r = recall_of(p)
        if r >= target:
            return p, r
        if best is None or r > best[1]:
            best = (p, r)
    if best is None:
        raise ValueError("tune: empty sweep")
    return best


class FaissIndexes:
    """FAISS flat / IVF (nlist ~ sqrt(n)) / HNSW32 over one (V, reward), searched under a reward filter.

    Example:
        >>> import faiss  # doctest: +SKIP
        >>> W = make_workload(500, 16, 3)
        >>> fx = FaissIndexes(faiss, W["V"], W["reward"], hnsw=False)  # doctest: +SKIP
        >>> fx.search("flat", W["Q"], 5, 0.5, None).shape  # doctest: +SKIP
        (3, 5)
    """

    def __init__(self, faiss: Any, V: np.ndarray, reward: np.ndarray, *, hnsw: bool) -> None:
        self.faiss, self.reward, self.n = faiss, reward, len(V)
        d = V.shape[1]
        self.flat = faiss.IndexFlatIP(d)
        self.flat.add(V)
        self.nlist = max(1, int(round(np.sqrt(self.n))))
        t0 = time.perf_counter()
        self.ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self.ivf.train(V)
        self.ivf.add(V)
        self.ivf_build_s = time.perf_counter() - t0
        self.hnsw = None
        self.hnsw_build_s = None
        if hnsw:
            t0 = time.perf_counter()
            self.hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            self.hnsw.add(V)
            self.hnsw_build_s = time.perf_counter() - t0

    def selector(self, min_reward: float | None) -> Any:
        if min_reward is None:
            return None
        bits = np.packbits(self.reward >= min_reward, bitorder="little")
        sel = self.faiss.IDSelectorBitmap(self.n, self.faiss.swig_ptr(bits))
        sel.bits_ref = bits  # keep the bitmap alive as long as the selector
        return sel

    def params(self, kind: str, sel: Any, p: int | None) -> Any:
        f = self.faiss
        if kind == "ivf":
            return f.SearchParametersIVF(sel=sel, nprobe=p) if sel is not None else f.SearchParametersIVF(nprobe=p)
        if kind == "hnsw":
            return f.SearchParametersHNSW(sel=sel, efSearch=p) if sel is not None else f.SearchParametersHNSW(efSearch=p)
        return None if sel is None else f.SearchParameters(sel=sel)

    def search(self, kind: str, Q: np.ndarray, k: int, min_reward: float | None, p: int | None) -> np.ndarray:
        index = {"flat": self.flat, "ivf": self.ivf, "hnsw": self.hnsw}[kind]
        params = self.params(kind, self.selector(min_reward), p)
        _, idx = index.search(Q, k, params=params) if params is not None else index.search(Q, k)
        return idx


def _cache_ids(q: np.ndarray, *, cache: HotCache, k: int, filt: PatternFilter) -> list[str]:
    return cache.search(q, k, filt)[0]


def _faiss_one(q: np.ndarray, *, fx: FaissIndexes, kind: str, k: int, min_reward: float | None,
               p: int | None) -> np.ndarray:
    return fx.search(kind, q[None, :], k, min_reward, p)[0]


class _Ours:
    """The bank's caches (int8 and float32) over one workload and, optionally, an embedded bank."""

    def __init__(self, W: dict[str, np.ndarray], *, bank: bool, int4: bool = False, graph: bool = True) -> None:
        n, dim = W["V"].shape
        ids = [str(i) for i in range(n)]
        pay = [{"reward": float(r)} for r in W["reward"]]
        self.caches = {}
        kinds = [("cache-int8", True, "flat", 0), ("cache-f32", False, "flat", 0), ("cache-ivf", True, "ivf", 0)]
        if int4:   # the int4 first stage from the first row (the bank's cache_int4_from: 1)
            kinds += [("cache-int4", True, "flat", 1), ("cache-ivf-int4", True, "ivf", 1)]
        if graph:
            kinds.append(("cache-hnsw", True, "hnsw", 0))
        for name, int8, index, int4_from in kinds:
            c = HotCache(dim, n, int8=int8, index=index, threads=0, int4_from=int4_from)
            c.upsert(ids, W["V"], pay)
            if index == "ivf":  # the lists a bank trains at open and in optimize()
                c.build_index(thorough=True)
            elif index == "hnsw":   # the graph a bank builds at open and in optimize()
                c.build_graph()
            self.caches[name] = c
        self.workdir: str | None = None
        self.bank: ReasoningBank | None = None
        self.row_of: dict[str, int] = {}
        if bank:
            self.workdir = tempfile.mkdtemp(prefix="swarm_sona_bench_faiss_", dir=ram_tmpdir())
            self.bank = ReasoningBank({"path": f"{self.workdir}/bank", "similarity_threshold": -1.0},
                                      embedder=HashingEmbedder(dim))
            pids: list[str] = []
            for lo in range(0, n, 1000):
                pids += self.bank.store_many([{"task": f"task {i}", "output": f"approach {i}", "success": True,
                                               "reward": float(W["reward"][i]), "vector": W["V"][i]}
                                              for i in range(lo, min(n, lo + 1000))])
            self.row_of = {pid: i for i, pid in enumerate(pids)}

    def rows(self, Q: np.ndarray, cell: dict[str, Any], exact: list[np.ndarray], k: int,
             min_reward: float | None, target: float = 0.95) -> list[FaissRow]:
        filt = PatternFilter.build(min_reward=min_reward)
        out = []
        for name, cache in self.caches.items():
            note = f"HotCache.search, {cache.threads} thread(s)"
            if cache.graph is not None:   # efSearch tuned as FAISS's
                def ef_recall(v: int, cache: HotCache = cache) -> float:
                    cache.ef = v
                    return recall_at_k([[int(i) for i in _cache_ids(q, cache=cache, k=k, filt=filt)] for q in Q],
                                       exact, k)

                ef, r = tune(ef_recall, [v for v in _SWEEP if v >= k], target)
                cache.ef = ef
                stats, res = _time(partial(_cache_ids, cache=cache, k=k, filt=filt), Q)
                got = recall_at_k([[int(i) for i in row] for row in res], exact, k)
                out.append(FaissRow(name, **cell, p50_us=stats["p50"], p99_us=stats["p99"], recall_at_k=got,
                                    param=ef, note=note + f", FAISS HNSW32 graph, ef {ef}" +
                                    ("" if got >= target else f": recall {target} not reached")))
                continue
            if cache.centroids is None:
                stats, res = _time(partial(_cache_ids, cache=cache, k=k, filt=filt), Q)
                out.append(FaissRow(name, **cell, p50_us=stats["p50"], p99_us=stats["p99"],
                                    recall_at_k=recall_at_k([[int(i) for i in r] for r in res], exact, k),
                                    note=note))
                continue
            # tuned as FAISS's nprobe: the smallest probe reaching target, at each re-rank depth
            # (the bank's cache_rerank: 4k, or the default 64); the faster of the two is the row
            tried = []
            for rerank in sorted({4 * k, 64}):
                cache.rerank = rerank

                def recall_of(v: float, cache: HotCache = cache) -> float:
                    cache.probe = v
                    return recall_at_k([[int(i) for i in _cache_ids(q, cache=cache, k=k, filt=filt)] for q in Q],
                                       exact, k)

                param, r = tune(recall_of, _PROBE_SWEEP, target)
                cache.probe = param
                stats, res = _time(partial(_cache_ids, cache=cache, k=k, filt=filt), Q)
                got = recall_at_k([[int(i) for i in row] for row in res], exact, k)
                tried.append((got < target, stats["p50"], rerank, param, stats, got))
            _, _, rerank, param, stats, got = min(tried)
            note += f", {len(cache.centroids)} lists, probe {param}, rerank {rerank}" + \
                ("" if got >= target else f": recall {target} not reached")
            out.append(FaissRow(name, **cell, p50_us=stats["p50"], p99_us=stats["p99"], recall_at_k=got,
                                param=param, note=note))
        if self.bank is not None:
            bank = self.bank
            stats, res = _time(lambda q: bank.retrieve_patterns(vector=q, k=k, min_reward=min_reward), Q)
            out.append(FaissRow("bank-int8", **cell, p50_us=stats["p50"], p99_us=stats["p99"],
                                recall_at_k=recall_at_k([[self.row_of[p.id] for p in r] for r in res], exact, k),
                                note="ReasoningBank.retrieve_patterns end to end (RAM disk)"))
        return out

    def close(self) -> None:
        for c in self.caches.values():
            c.close()
        if self.bank is not None:
            self.bank.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _faiss_rows(fx: FaissIndexes, W: dict[str, np.ndarray], cell: dict[str, Any], exact: list[np.ndarray], k: int,
                min_reward: float | None, target: float) -> list[FaissRow]:
    Q = W["Q"]
    sel_stats, _ = _time(lambda q: fx.selector(min_reward), Q) if min_reward is not None else ({"p50": 0.0}, [])
    rows = []
    threads = fx.faiss.omp_get_max_threads()
    kinds = ["flat", "ivf"] + (["hnsw"] if fx.hnsw is not None else [])
    for kind in kinds:
        p: int | None = None
        note = "exact"
        if kind != "flat":
            fx.faiss.omp_set_num_threads(threads)  # tuning runs batched: all threads
            sweep = [s for s in _SWEEP if s <= fx.nlist] + [fx.nlist] if kind == "ivf" else list(_SWEEP[3:])
            def recall_of(v: int, kind: str = kind) -> float:
                return recall_at_k(fx.search(kind, Q, k, min_reward, v), exact, k)

            p, r = tune(recall_of, dict.fromkeys(sweep), target)
            note = (f"nlist {fx.nlist}, nprobe {p}" if kind == "ivf" else f"M 32, efSearch {p}") + \
                ("" if r >= target else f": recall {target} not reached")
        fx.faiss.omp_set_num_threads(1)  # timing: one query at a time, one thread
        stats, res = _time(partial(_faiss_one, fx=fx, kind=kind, k=k, min_reward=min_reward, p=p), Q)
        rows.append(FaissRow(f"faiss-{kind}", **cell, p50_us=stats["p50"], p99_us=stats["p99"],
                             recall_at_k=recall_at_k(res, exact, k), param=p, sel_us=sel_stats["p50"],
                             build_s={"ivf": fx.ivf_build_s, "hnsw": fx.hnsw_build_s}.get(kind), note=note))
        fx.faiss.omp_set_num_threads(threads)
    return rows


def winners(rows: Sequence[FaissRow], target: float = 0.95) -> dict[tuple[str, int, int, float], str]:
    """Per cell (data, dim, size, selectivity): the fastest backend by p50 among those at recall >= ``target``.

    Example:
        >>> a = FaissRow("x", "random", 8, 10, 1.0, 5.0, 6.0, 1.0)
        >>> b = FaissRow("y", "random", 8, 10, 1.0, 2.0, 3.0, 0.5)
        >>> winners([a, b])
        {('random', 8, 10, 1.0): 'x'}
    """
    best: dict[tuple[str, int, int, float], FaissRow] = {}
    for r in rows:
        if r.recall_at_k < target or r.backend.startswith("bank-"):
            continue
        key = (r.data, r.dim, r.size, r.selectivity)
        if key not in best or r.p50_us < best[key].p50_us:
            best[key] = r
    return {key: r.backend for key, r in best.items()}


def run_faiss(*, sizes: Sequence[int] = (10_000, 100_000), dims: Sequence[int] = (256,),
              datasets: Sequence[str] = ("random", "text"), selectivities: Sequence[float] = (0.01, 0.1, 0.5, 1.0),
              k: int = 5, queries: int = 200, target: float = 0.95, hnsw_max: int = 100_000, bank_max: int = 10_000,
              data: str | Path = _DEFAULT_DATA, seed: int = 0, progress: bool = False,
              int4: bool = False) -> list[FaissRow]:
    """Run the benchmark (see module docs; ``int4`` adds the ``cache-int4`` rows); raises
    ImportError naming faiss-cpu when it is missing."""
    try:
        import faiss  # optional dependency: the 'faiss' extra
    except ImportError as exc:
        raise ImportError("bench bank-faiss needs faiss-cpu (pip install faiss-cpu)") from exc
    bad = [s for s in selectivities if not 0.0 < s <= 1.0]
    if bad or not sizes or min(sizes) < k or k < 1 or queries < 1 or not dims or min(dims) < 2:
        raise ValueError(f"need selectivities in (0, 1] (got {list(selectivities)}), sizes >= k >= 1, "
                         f"queries >= 1, dims >= 2")
    unknown = set(datasets) - {"random", "text"}
    if unknown:
        raise ValueError(f"unknown dataset(s) {sorted(unknown)}: use 'random' and/or 'text'")
    rows: list[FaissRow] = []
    with Progress(len(sizes) * len(dims) * len(datasets), "bench bank-faiss", enabled=progress) as bar:
        for name in datasets:
            for dim in dims:
                for n in sizes:
                    W = make_workload(n, dim, queries, seed) if name == "random" else \
                        text_workload(n, dim, queries, data, seed)
                    fx = FaissIndexes(faiss, W["V"], W["reward"], hnsw=n <= hnsw_max)
                    ours = _Ours(W, bank=n <= bank_max, int4=int4, graph=n <= hnsw_max)
                    try:
                        for s in selectivities:
                            min_reward = None if s >= 1.0 else round(1.0 - s, 4)
                            cell = {"data": name, "dim": dim, "size": n, "selectivity": s}
                            keep = None if min_reward is None else W["reward"] >= min_reward
                            exact = exact_filtered_topk(W["V"], keep, W["Q"], k)
                            rows += ours.rows(W["Q"], cell, exact, k, min_reward, target)
                            rows += _faiss_rows(fx, W, cell, exact, k, min_reward, target)
                    finally:
                        ours.close()
                    bar.advance(1, size=n)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona bench bank-faiss``."""
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated bank sizes")
    parser.add_argument("--dims", default="256", help="comma-separated dimensions")
    parser.add_argument("--datasets", default="random,text", help="'random' and/or 'text' (RouteLLM prompts)")
    parser.add_argument("--selectivities", default="0.01,0.1,0.5,1", help="shares of rows the filter keeps")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--target", type=float, default=0.95, help="recall@k the IVF / HNSW parameters are tuned to")
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="build HNSW only up to this size")
    parser.add_argument("--bank-max", type=int, default=10_000, help="bank end-to-end row only up to this size")
    parser.add_argument("--data", default=_DEFAULT_DATA, help="the RouteLLM MMLU directory (text dataset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--int4", action="store_true",
                        help="add cache-int4 / cache-ivf-int4 rows (the int4 first stage from the first row)")


def _ints(s: str, what: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--{what} must be comma-separated integers, got {s!r}") from exc


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON rows with ``--json``)."""
    try:
        sels = [float(x) for x in args.selectivities.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--selectivities must be comma-separated numbers, got {args.selectivities!r}") from exc
    rows = run_faiss(sizes=_ints(args.sizes, "sizes"), dims=_ints(args.dims, "dims"),
                     datasets=[d.strip() for d in args.datasets.split(",") if d.strip()], selectivities=sels,
                     k=args.k, queries=args.queries, target=args.target, hnsw_max=args.hnsw_max,
                     bank_max=args.bank_max, data=args.data, seed=args.seed, progress=not args.json,
                     int4=args.int4)
    win = winners(rows, args.target)
    table = [[r.data, r.dim, r.size, f"{r.selectivity:g}", r.backend, "-" if r.param is None else r.param,
              round(r.p50_us, 1), round(r.p99_us, 1), round(r.recall_at_k, 3),
              "*" if win.get((r.data, r.dim, r.size, r.selectivity)) == r.backend else ""] for r in rows]
    m = machine_info()
    emit([asdict(r) for r in rows], as_json=args.json,
         title=f"bench bank-faiss: filtered top-{args.k}, {args.queries} queries per cell, us per query; "
               f"* = fastest at recall >= {args.target}; {m['cpu']}, {m['cores']} cores",
         header=["data", "dim", "size", "sel", "backend", "param", "p50_us", "p99_us", f"recall@{args.k}", "win"],
         rows=table)
    return 0
