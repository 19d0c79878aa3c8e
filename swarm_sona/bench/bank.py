"""``swarm-sona bench bank``: ReasoningBank filtered top-k latency, insert rate and recall.

Workload per size n (dim d, default 256): n unit vectors drawn around n/50 cluster centres
(tasks come in families; cosine ~0.86 to their centre), rewards uniform in [0, 1], 8 agent ids;
queries are stored vectors plus noise (cosine ~0.9 to that vector: a new task similar to a known
one). Every query carries a ``min_reward``
filter (default 0.5, keeping about half the bank) and asks for the top k (default 5).
``recall_at_k`` = |returned ∩ exact| / k averaged over queries, where "exact" is the filtered
top-k by float64 numpy over the same data.

Rows (backend):

* ``numpy-bruteforce``: ``V @ q`` over all rows, reward mask, ``argpartition``: the plain-numpy
  baseline (one BLAS thread), measured in the same run; ``speedup_vs_numpy`` of every row is
  its p50 against this one.
* ``bank-cache-int8`` (the default configuration) / ``bank-cache-f32`` (``cache_int8=False``):
  ``ReasoningBank.retrieve_patterns(vector=q, k, min_reward=...)`` end to end (validation,
  hot-path cache search through the native kernels, payloads, Pattern objects). The int8 row
  scans the int8 copy with integer dot products (``topk_int8_rerank``: reward filter in the
  kernel, zone map over reward-clustered rows from 65,536 rows on, split over
  ``--cache-threads`` threads from 65,536 scanned rows on) and re-scores the best
  ``max(64, 4k)`` exactly in float32 (from 262,144 rows on it scans the int4 copy instead,
  ``topk_int4_rerank``, and re-scores 256); the f32 row is the exact float32 scan. Payloads come from
  the bank's pattern LRU (write-through, 10,000 entries by default): at sizes above that most
  are read from the store (~6-10 us each). Insert rate = ``store_many`` in batches of 1000
  into the embedded bank on disk, cache updated (the int8 row includes quantisation).
* ``cache-f32-kernel`` / ``cache-int8-kernel``: the cache's search alone (filter + kernel),
  i.e. what the hot path costs without building result objects.
* ``bank-cache-ivf`` / ``cache-ivf-kernel`` (sizes >= 8,192): the same bank with the optional
  approximate cache index (``cache_index="ivf"``: ~sqrt(n) k-means lists, the nearest lists
  covering 10% of the rows, at least 2,048, are scanned); ``build_s`` is the training time.
* ``edge-exact``: the embedded Qdrant Edge engine's own filtered query (payload index on
  reward, exact search), what a query costs without the cache.
* ``edge-hnsw``: the same after ``optimize()`` built the HNSW index (m=32, ef_construct=200,
  hnsw_ef=128), only for sizes <= ``--hnsw-max`` (default 10,000): the build blocks for
  ~4.5 s at 10k and ~170 s at 100k on a 2-core machine. ``build_s`` says how long it took;
  below the engine's indexing threshold (~10 MB of vectors) nothing is built and the row is
  marked so.
* ``qdrant-client-local``: the ``qdrant`` backend against qdrant-client's in-process local mode
  (``:memory:``; no server here), only for sizes <= ``--local-max`` (default 1,000) and with
  at most 50 queries: it scans in Python (~300 ms per query at 10k).

Insert rows (``--insert-batches``, ``--insert-writers``; ``--insert-total`` patterns per row):
``W`` threads (the threaded bank actor's concurrent calls, one per agent; Ray's call overhead is
not included) each call ``PatternStore.store_batch`` with batches of ``B`` patterns (what one
agent's batch stores: 64, 256, 1024 by default), ``B`` x ``W`` swept, on disk unless said:

* ``insert-durable``: the swarm's bank actor as it runs (``durability: wal``, the default): each
  call acknowledged once an fsync of the bank's write-ahead log covers it, concurrent calls
  sharing the fsync (group commit); the engine applies the log later (in the background, or
  before a store read). ``flushes`` counts the fsyncs the row ran (fewer than calls = grouped).
* ``insert-durable-nogroup``: the same with ``group_commit: false``: every call its own fsync.
* ``insert-engine``: ``durability: engine``, the path before the log: acknowledged once an engine
  flush (its WAL and segments msync'd) covers the call, concurrent calls sharing the flush.
* ``insert-engine-nogroup``: the same, every call its own engine flush.
* ``insert-buffered``: acknowledged without any fsync or flush (durable only at the next flush).
* ``insert-memory``: the same on a RAM disk (``persist_to_disk=False``): what the bank costs alone.

``p50_ms``/``p99_ms`` are per ``store_batch`` call (the acknowledgement latency an agent sees);
``rate_p50``/``rate_p99`` the patterns per second of one call at those latencies (B / latency);
``insert_per_s`` is patterns acknowledged per wall second over the row; ``drained_per_s`` counts
the ``flush()`` after the row too (the engine has applied and flushed every pattern: the rate the
engine sustains, which the log lets a burst exceed).

JSON (``--json``): a list of rows ``{"backend", "size", "p50_ms", "p99_ms", "insert_per_s",
"recall_at_k", "speedup_vs_numpy", "dim", "k", "min_reward", "queries", "note"}``
(``insert_per_s`` is null where inserting is not what the row measures); insert rows add
``batch``, ``writers``, ``calls``, ``flushes``, ``rate_p50``, ``rate_p99``, ``drained_per_s``
(``recall_at_k`` null).

Example:
    >>> rows = run_bank(sizes=[300], dim=32, k=5, queries=20, hnsw_max=0, local_max=300)  # doctest: +SKIP
    >>> sorted({r["backend"] for r in rows})[:2]  # doctest: +SKIP
    ['bank-cache-f32', 'bank-cache-int8']
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from swarm_sona import kernels as nk
from swarm_sona.bank import PatternFilter, ReasoningBank
from swarm_sona.bank.cache import IVF_MIN_ROWS
from swarm_sona.bank.edge_backend import ram_tmpdir
from swarm_sona.bench.timing import emit, print_table, summarize_us
from swarm_sona.core.progress import Progress
from swarm_sona.embedding.embedders import HashingEmbedder
from swarm_sona.runtime.actors.bank import PatternStore  # the bank actor's engine (no Ray import)

__all__ = ["add_arguments", "run", "run_bank", "make_workload", "run_inserts"]

_INSERT_BATCH = 1000


def make_workload(n: int, dim: int, queries: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Clustered unit vectors, rewards, agents, and perturbed-copy queries (see module docs)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
    V = centres[rng.integers(len(centres), size=n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    # a query is a stored vector plus noise of norm ~0.5 (cosine ~0.9 to it): a new, similar task
    Q = V[rng.integers(n, size=queries)] + (0.5 / np.sqrt(dim)) * rng.standard_normal((queries, dim)).astype(np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return {"V": V, "Q": Q.astype(np.float32), "reward": np.round(rng.random(n), 4),
            "agent": rng.integers(8, size=n), "success": rng.random(n) < 0.7}


def _exact(V: np.ndarray, reward: np.ndarray, Q: np.ndarray, k: int, min_reward: float) -> list[np.ndarray]:
    keep = np.flatnonzero(reward >= min_reward)
    S = Q.astype(np.float64) @ V[keep].astype(np.float64).T
    return [keep[np.argsort(-s, kind="stable")[:k]] for s in S]


def _time_queries(fn: Callable[[np.ndarray], Any], Q: np.ndarray, warmup: int = 10) -> tuple[dict[str, float], list]:
    for q in Q[:warmup]:
        fn(q)
    out, samples = [], np.empty(len(Q))
    clock = time.perf_counter_ns
    for i, q in enumerate(Q):
        t0 = clock()
        res = fn(q)
        samples[i] = clock() - t0
        out.append(res)
    return summarize_us(samples), out


def _recall(got: Sequence[Sequence[int]], exact: Sequence[np.ndarray], k: int) -> float:
    hits = [len(set(map(int, g)) & set(map(int, e))) / max(1, min(k, len(e))) for g, e in zip(got, exact, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")


def _row(backend: str, n: int, stats: dict[str, float], insert: float | None, recall: float, ctx: dict[str, Any],
         note: str = "", **extra: Any) -> dict[str, Any]:
    return {"backend": backend, "size": n, "p50_ms": stats["p50"] / 1e3, "p99_ms": stats["p99"] / 1e3,
            "insert_per_s": insert, "recall_at_k": recall, "speedup_vs_numpy": None, **ctx, "note": note, **extra}


def _items(W: dict[str, np.ndarray], lo: int, hi: int) -> list[dict[str, Any]]:
    return [{"task": f"task {i}", "input": "", "output": f"approach {i}", "reward": float(W["reward"][i]),
             "success": bool(W["success"][i]), "agent_id": f"agent-{W['agent'][i]}", "vector": W["V"][i]}
            for i in range(lo, hi)]


def _fill(bank: ReasoningBank, W: dict[str, np.ndarray]) -> tuple[float, dict[str, int]]:
    n = len(W["V"])
    t0 = time.perf_counter()
    ids: list[str] = []
    for lo in range(0, n, _INSERT_BATCH):
        ids += bank.store_many(_items(W, lo, min(n, lo + _INSERT_BATCH)))
    bank.flush()
    rate = n / (time.perf_counter() - t0)
    return rate, {pid: i for i, pid in enumerate(ids)}


def _store_rows(bank: ReasoningBank, W: dict[str, np.ndarray], exact: list[np.ndarray], row_of: dict[str, int],
                rate: float, k: int, min_reward: float, ctx: dict[str, Any], hnsw_max: int) -> list[dict[str, Any]]:
    """The float32 bank's ivf-cache rows (sizes >= IVF_MIN_ROWS) and the engine's own query rows."""
    n = len(W["V"])
    Q = W["Q"]
    cache = bank.cache
    filt = PatternFilter.build(min_reward=min_reward)
    rows = []
    if n >= IVF_MIN_ROWS:
        t0 = time.perf_counter()
        cache.build_index()
        build_s = time.perf_counter() - t0
        stats, res = _time_queries(lambda q: bank.retrieve_patterns(vector=q, k=k, min_reward=min_reward),
                                   Q)
        rows.append(_row("bank-cache-ivf", n, stats, None,
                         _recall([[row_of[p.id] for p in r] for r in res], exact, k), ctx,
                         f"retrieve_patterns with cache_index=ivf ({0 if cache.centroids is None else len(cache.centroids)} lists, probe "
                         f"{cache.probe}): approximate", build_s=build_s))
        stats, res = _time_queries(partial(cache.search, k=k, filt=filt), Q)
        rows.append(_row("cache-ivf-kernel", n, stats, None,
                         _recall([[row_of[i] for i in r[0]] for r in res], exact, k), ctx,
                         "HotCache.search alone, ivf lists"))
        cache.drop_index()
    cond = filt.conditions()
    Qe = Q[: min(len(Q), 100)]
    ex = exact[: len(Qe)]
    stats, res = _time_queries(partial(bank.backend.search, limit=k, conditions=cond, exact=True), Qe)
    rows.append(_row("edge-exact", n, stats, rate, _recall([[row_of[p.id] for p in r] for r in res], ex, k),
                     ctx, "Qdrant Edge filtered query, exact (plain segments)", queries=len(Qe)))
    if n <= hnsw_max:
        t0 = time.perf_counter()
        built = bank.optimize()
        build_s = time.perf_counter() - t0
        stats, res = _time_queries(partial(bank.backend.search, limit=k, conditions=cond), Qe)
        rows.append(_row("edge-hnsw", n, stats, rate,
                         _recall([[row_of[p.id] for p in r] for r in res], ex, k), ctx,
                         "after optimize(): HNSW m=32 ef_construct=200, hnsw_ef=128" if built else
                         "optimize() built nothing (below the indexing threshold): plain segment",
                         queries=len(Qe), build_s=build_s))
    return rows


def _bank_rows(W: dict[str, np.ndarray], exact: list[np.ndarray], k: int, min_reward: float, ctx: dict[str, Any],
               hnsw_max: int, ram: bool, cache_threads: int = 0) -> list[dict[str, Any]]:
    n, dim = W["V"].shape
    Q = W["Q"]
    rows = []
    workdir = tempfile.mkdtemp(prefix="swarm_sona_bench_bank_", dir=ram_tmpdir() if ram else None)
    try:
        for int8 in (False, True):
            tag = "int8" if int8 else "f32"
            cfg = {"path": f"{workdir}/{tag}", "cache_int8": int8, "similarity_threshold": -1.0,
                   "cache_threads": cache_threads}
            with ReasoningBank(cfg, embedder=HashingEmbedder(dim)) as bank:
                rate, row_of = _fill(bank, W)
                stats, res = _time_queries(lambda q: bank.retrieve_patterns(vector=q, k=k, min_reward=min_reward), Q)
                rows.append(_row(f"bank-cache-{tag}", n, stats, rate,
                                 _recall([[row_of[p.id] for p in r] for r in res], exact, k), ctx,
                                 "retrieve_patterns end to end; insert = store_many into the embedded bank on "
                                 + ("RAM disk" if ram else "disk")))
                filt = PatternFilter.build(min_reward=min_reward)
                cache = bank.cache
                stats, res = _time_queries(partial(cache.search, k=k, filt=filt), Q)
                t0 = time.perf_counter()
                probe = type(cache)(dim, n, int8=int8)
                for lo in range(0, n, _INSERT_BATCH):
                    hi = min(n, lo + _INSERT_BATCH)
                    probe.upsert([str(i) for i in range(lo, hi)], W["V"][lo:hi],
                                 [{"reward": float(r)} for r in W["reward"][lo:hi]])
                cache_rate = n / (time.perf_counter() - t0)
                del probe
                rows.append(_row(f"cache-{tag}-kernel", n, stats, cache_rate,
                                 _recall([[row_of[i] for i in r[0]] for r in res], exact, k), ctx,
                                 f"HotCache.search alone ({'nk.topk_int8_rerank' if int8 else 'mask + nk.topk'}, "
                                 f"{cache.threads} thread(s)); insert = HotCache.upsert"))
                if int8:
                    continue
                rows += _store_rows(bank, W, exact, row_of, rate, k, min_reward, ctx, hnsw_max)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _local_mode_row(W: dict[str, np.ndarray], exact: list[np.ndarray], k: int, min_reward: float,
                    ctx: dict[str, Any]) -> dict[str, Any]:
    n, dim = W["V"].shape
    Qs = W["Q"][:50]
    with ReasoningBank({"backend": "qdrant", "url": ":memory:", "cache_size": 0, "similarity_threshold": -1.0},
                       embedder=HashingEmbedder(dim)) as bank:
        rate, row_of = _fill(bank, W)
        stats, res = _time_queries(lambda q: bank.retrieve_patterns(vector=q, k=k, min_reward=min_reward), Qs,
                                   warmup=2)
        return _row("qdrant-client-local", n, stats, rate,
                    _recall([[row_of[p.id] for p in r] for r in res], exact[: len(Qs)], k), ctx,
                    "qdrant backend, qdrant-client in-process local mode (:memory:), no cache; no server here",
                    queries=len(Qs))


# mode -> (bank config, durable acknowledgements, note)
INSERT_MODES: dict[str, tuple[dict[str, Any], bool, str]] = {
    "durable": ({"durability": "wal"}, True, "acked after the group-committed fsync of the bank's log; engine later"),
    "durable-nogroup": ({"durability": "wal", "group_commit": False}, True, "acked after its own fsync of the log"),
    "engine": ({"durability": "engine"}, True, "acked after the group-committed engine flush covering it"),
    "engine-nogroup": ({"durability": "engine", "group_commit": False}, True, "acked after its own engine flush"),
    "buffered": ({}, False, "acked before any fsync (durable at the next flush)"),
    "memory": ({"persist_to_disk": False}, False, "RAM disk, no fsync"),
}


def _insert_row(mode: str, W: dict[str, np.ndarray], batch: int, writers: int, workdir: str) -> dict[str, Any]:
    """One insert row (see module docs): ``writers`` threads storing ``batch``-pattern calls."""
    n, dim = W["V"].shape
    extra, durable, note = INSERT_MODES[mode]
    cfg: dict[str, Any] = {"path": f"{workdir}/{mode}-{batch}-{writers}", **extra}
    calls = [(lo, min(n, lo + batch)) for lo in range(0, n, batch)]
    lat = np.empty(len(calls))
    with ReasoningBank(cfg, embedder=HashingEmbedder(dim)) as bank:
        store = PatternStore(bank, durable=durable)
        recs = _items(W, 0, n)
        nxt = iter(range(len(calls)))
        take = threading.Lock()

        def writer() -> None:
            clock = time.perf_counter_ns
            while True:
                with take:
                    c = next(nxt, None)
                if c is None:
                    return
                lo, hi = calls[c]
                t0 = clock()
                store.store_batch(recs[lo:hi])
                lat[c] = clock() - t0

        f0 = bank.commits.stats().flushes
        t0 = time.perf_counter()
        ts = [threading.Thread(target=writer) for _ in range(writers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        flushes = bank.commits.stats().flushes - f0
        t1 = time.perf_counter()
        bank.flush()   # the engine applies and flushes everything: what it sustains
        drain = time.perf_counter() - t1
        assert bank.count() == n, f"{mode}: {bank.count()} of {n} patterns stored"
    stats = summarize_us(lat)
    return {"backend": f"insert-{mode}", "size": n, "p50_ms": stats["p50"] / 1e3, "p99_ms": stats["p99"] / 1e3,
            "insert_per_s": n / wall, "recall_at_k": None, "speedup_vs_numpy": None, "dim": dim, "k": None,
            "min_reward": None, "queries": None, "note": note, "batch": batch, "writers": writers,
            "calls": len(calls), "flushes": flushes, "rate_p50": batch / (stats["p50"] / 1e6),
            "rate_p99": batch / (stats["p99"] / 1e6), "drained_per_s": n / (wall + drain)}


def run_inserts(*, total: int = 8192, batches: Sequence[int] = (64, 256, 1024), writers: Sequence[int] = (1, 4),
                dim: int = 256, seed: int = 0, progress: bool = False,
                modes: Sequence[str] = ("durable", "buffered", "memory")) -> list[dict[str, Any]]:
    """The insert rows (see module docs): the ``modes`` of :data:`INSERT_MODES` (the CLI runs
    them all) for every batch size x writer count; ``total`` patterns per row.

    Example:
        >>> rows = run_inserts(total=64, batches=[16], writers=[2], dim=16, modes=["engine", "memory"])
        >>> sorted(r["backend"] for r in rows)
        ['insert-engine', 'insert-memory']
    """
    if total < 1 or not batches or not writers or min(batches) < 1 or min(writers) < 1:
        raise ValueError(f"insert total, batch sizes and writer counts must be >= 1, got {total}, "
                         f"{list(batches)}, {list(writers)}")
    unknown = [m for m in modes if m not in INSERT_MODES]
    if unknown or not modes:
        raise ValueError(f"insert modes must be some of {list(INSERT_MODES)}, got {list(modes)}")
    W = make_workload(total, dim, 1, seed)
    rows: list[dict[str, Any]] = []
    workdir = tempfile.mkdtemp(prefix="swarm_sona_bench_insert_")
    try:
        with Progress(len(batches) * len(writers) * len(modes), "bench bank inserts", enabled=progress) as bar:
            for b in batches:
                for w in writers:
                    for mode in modes:
                        rows.append(_insert_row(mode, W, b, w, workdir))
                        bar.advance(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def run_bank(*, sizes: Sequence[int] = (1000, 10_000, 100_000), dim: int = 256, k: int = 5, queries: int = 200,
             min_reward: float = 0.5, hnsw_max: int = 10_000, local_max: int = 1000, ram: bool = False,
             seed: int = 0, progress: bool = False, cache_threads: int = 0) -> list[dict[str, Any]]:
    """Run the benchmark (see module docs); returns the rows."""
    rows: list[dict[str, Any]] = []
    limit: Any = contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
    with limit, Progress(len(sizes), "bench bank", enabled=progress) as bar:
        for n in sizes:
            W = make_workload(n, dim, queries, seed)
            ctx = {"dim": dim, "k": k, "min_reward": min_reward, "queries": queries}
            exact = _exact(W["V"], W["reward"], W["Q"], k, min_reward)
            V, reward = W["V"], W["reward"]

            def brute(q: np.ndarray, V: np.ndarray = V, reward: np.ndarray = reward) -> np.ndarray:
                s = np.where(reward >= min_reward, V @ q, -np.inf)
                top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
                return top[np.argsort(-s[top], kind="stable")]

            stats, res = _time_queries(brute, W["Q"])
            base = _row("numpy-bruteforce", n, stats, None, _recall(res, exact, k), ctx,
                        "V @ q, reward mask, argpartition (1 BLAS thread)")
            size_rows = [base] + _bank_rows(W, exact, k, min_reward, ctx, hnsw_max, ram, cache_threads)
            if n <= local_max:
                size_rows.append(_local_mode_row(W, exact, k, min_reward, ctx))
            for r in size_rows:
                r["speedup_vs_numpy"] = base["p50_ms"] / r["p50_ms"] if r["p50_ms"] > 0 else None
            rows += size_rows
            bar.advance(1, size=n)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona bench bank``."""
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows instead of a table")
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated bank sizes")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200, help="queries per size (timed one by one)")
    parser.add_argument("--min-reward", type=float, default=0.5, help="the filter every query carries")
    parser.add_argument("--hnsw-max", type=int, default=10_000,
                        help="build the engine's HNSW (blocking; ~170 s at 100k) only up to this size")
    parser.add_argument("--local-max", type=int, default=1000,
                        help="run qdrant-client local mode (slow) only up to this size")
    parser.add_argument("--ram", action="store_true",
                        help="put the embedded banks on a RAM disk (/dev/shm) when there is one, instead of disk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-threads", type=int, default=0,
                        help="threads a large cache scan is split over (0 = the default: the CPUs, at most 2)")
    parser.add_argument("--insert-batches", default="64,256,1024",
                        help="patterns per store call in the insert rows (comma-separated; '' = no insert rows)")
    parser.add_argument("--insert-writers", default="1,4", help="concurrent writers in the insert rows")
    parser.add_argument("--insert-total", type=int, default=8192, help="patterns stored per insert row")
    parser.add_argument("--insert-modes", default=",".join(INSERT_MODES),
                        help=f"insert rows to run (comma-separated, of {', '.join(INSERT_MODES)})")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON rows with ``--json``)."""
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError as exc:
        raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from exc
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--sizes must be positive integers, got {args.sizes!r}")
    if args.dim < 2 or args.k < 1 or args.queries < 1:
        raise ValueError("--dim must be >= 2, --k >= 1 and --queries >= 1")
    if not 0 <= args.cache_threads <= 64:
        raise ValueError(f"--cache-threads must be in [0, 64], got {args.cache_threads}")
    if not 0.0 <= args.min_reward <= 1.0:
        raise ValueError(f"--min-reward must be in [0, 1], got {args.min_reward}")
    try:
        batches = [int(s) for s in args.insert_batches.split(",") if s.strip()]
        writers = [int(s) for s in args.insert_writers.split(",") if s.strip()]
    except ValueError as exc:
        raise ValueError(f"--insert-batches/--insert-writers must be comma-separated integers ({exc})") from exc
    if batches and (min(batches) < 1 or not writers or min(writers) < 1 or args.insert_total < 1):
        raise ValueError("--insert-batches, --insert-writers and --insert-total must be positive integers")
    rows = run_bank(sizes=sizes, dim=args.dim, k=args.k, queries=args.queries, min_reward=args.min_reward,
                    hnsw_max=args.hnsw_max, local_max=args.local_max, ram=args.ram, seed=args.seed,
                    progress=not args.json, cache_threads=args.cache_threads)
    modes = [m.strip() for m in args.insert_modes.split(",") if m.strip()]
    inserts = run_inserts(total=args.insert_total, batches=batches, writers=writers, dim=args.dim, seed=args.seed,
                          progress=not args.json, modes=modes) if batches else []
    info = nk.info()

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    table = [[r["backend"], r["size"], fmt(r["p50_ms"], ".4f"), fmt(r["p99_ms"], ".4f"), fmt(r["insert_per_s"], ",.0f"),
              fmt(r["recall_at_k"], ".3f"), fmt(r["speedup_vs_numpy"], ".2f")] for r in rows]
    title = (f"bench bank: filtered top-{args.k} (min_reward {args.min_reward}), dim {args.dim}, {args.queries} "
             f"queries per size; kernels: {info['active']} ({info['isa']}); milliseconds")
    emit(rows + inserts, as_json=args.json, title=title,
         header=["backend", "size", "p50_ms", "p99_ms", "insert/s", f"recall@{args.k}", "x numpy"], rows=table)
    if inserts and not args.json:
        print()
        print_table(f"bench bank inserts: {args.insert_total} patterns per row, dim {args.dim}; p50/p99 per "
                    "store_batch call (ms) and that call's patterns/s; insert/s = patterns acknowledged per second; "
                    "drained/s = including the engine applying and flushing them (load1 "
                    f"{os.getloadavg()[0]:.2f})",
                    ["backend", "batch", "writers", "calls", "flushes", "p50_ms", "p99_ms", "rate_p50", "rate_p99",
                     "insert/s", "drained/s"],
                    [[r["backend"], r["batch"], r["writers"], r["calls"], r["flushes"], fmt(r["p50_ms"], ".2f"),
                      fmt(r["p99_ms"], ".2f"), fmt(r["rate_p50"], ",.0f"), fmt(r["rate_p99"], ",.0f"),
                      fmt(r["insert_per_s"], ",.0f"), fmt(r["drained_per_s"], ",.0f")] for r in inserts])
    return 0
