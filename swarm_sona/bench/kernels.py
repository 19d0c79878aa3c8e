"""``swarm-sona bench kernels``: the native C kernels against the numpy reference, same run.

For each kernel and size: median and p99 wall time per call of the native backend (the
wrapper users call, argument checks included) and of the plain numpy reference
(:mod:`swarm_sona.kernels.reference` on inputs that are already float32 and
contiguous, i.e. without the checks), and ``speedup = numpy median / native median``.
float32, dim 256 unless the size says otherwise. The native column is empty when the
extension is not built or ``SWARM_SONA_NATIVE=0``.

JSON (``--json``): ``{"benchmark": "kernels", "machine": .., "native": info(), "rows": [{"kernel",
"size", "native_us", "native_p99_us", "numpy_us", "numpy_p99_us", "speedup"}, ..]}``.

Example:
    >>> rows = run_kernels(quick=True, only=["micro_apply"])  # doctest: +SKIP
    >>> rows[0]["kernel"]  # doctest: +SKIP
    'micro_apply'
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from swarm_sona import kernels as nk
from swarm_sona.bench.timing import emit, machine_info, time_call
from swarm_sona.kernels import reference as ref

__all__ = ["add_arguments", "run", "run_kernels", "CASES"]

F32 = np.float32
_TEXT_1KB = ("Refactor the retry loop in the HTTP client so that timeouts back off exponentially; "
             "add unit tests for the jitter, document the new max_delay option, and check that "
             "the integration suite still passes on Python 3.11 and 3.12. ") * 5


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(F32)


def _instant(r: int, M: int) -> Callable[[Any, np.random.Generator], tuple[Callable[[], Any], Callable[[], Any]]]:
    def make(b: Any, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[], Any]]:
        d = 256
        h = _rand(rng, d)
        base: dict[str, np.ndarray] = dict(A=_rand(rng, r, d) * 0.05, B=np.zeros((d, r), F32), wv=_rand(rng, d) * 0.05,
                    bv=np.zeros(1, F32), Wr=_rand(rng, M, d) * 0.05, br=np.zeros(M, F32))
        p, q = ({k: v.copy() for k, v in base.items()} for _ in range(2))

        def step(fn: Any, s: dict[str, np.ndarray]) -> Callable[[], Any]:
            return lambda: fn(h, s["A"], s["B"], 0.5, s["wv"], s["bv"], s["Wr"], s["br"], 1, 0.8, 1.0, 1e-3,
                              False, 1.0)

        return step(b.instant_step, p), step(ref.instant_step, q)
    return make


def _pair(name: str, *make_args: Callable[[np.random.Generator], Any],
          **kw: Any) -> Callable[[Any, np.random.Generator], tuple[Callable[[], Any], Callable[[], Any]]]:
    """Cases whose native and numpy calls take the same (already valid) arguments."""
    def make(b: Any, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[], Any]]:
        args = tuple(m(rng) for m in make_args)
        fb, fr = getattr(b, name), getattr(ref, name)
        return (lambda: fb(*args, **kw)), (lambda: fr(*args, **kw))
    return make


def _bank(n: int) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: _rand(rng, n, 256)


def _topk_int8(n: int):
    def make(b: Any, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[], Any]]:
        q, s = ref.quantize_int8(_rand(rng, n, 256))
        query, values = _rand(rng, 256), rng.random(n).astype(F32)
        return (lambda: b.topk_int8(q, s, query, 5, values=values, min_value=0.5),
                lambda: ref.topk_int8(q, s, query, 5, values=values, min_value=0.5))
    return make


def _topk_rerank(n: int, bits: int, candidates: int):
    def make(b: Any, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[], Any]]:
        M = _rand(rng, n, 256)
        M /= np.linalg.norm(M, axis=1, keepdims=True)
        q, s = ref.quantize_int8(M) if bits == 8 else ref.quantize_int4(M)
        query, values = M[0] + 0.05 * _rand(rng, 256), rng.random(n)
        fb, fr = getattr(b, f"topk_int{bits}_rerank"), getattr(ref, f"topk_int{bits}_rerank")
        return (lambda: fb(q, s, M, query, 5, candidates, values=values, min_value=0.5),
                lambda: fr(q, s, M, query, 5, candidates, values=values, min_value=0.5))
    return make


def _topk(n: int):
    def make(b: Any, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[], Any]]:
        M, query, values = _rand(rng, n, 256), _rand(rng, 256), rng.random(n).astype(F32)
        return (lambda: b.topk(M, query, 5, values=values, min_value=0.5),
                lambda: ref.topk(M, query, 5, values=values, min_value=0.5))
    return make


def _fisher(n: int):
    def make(b: Any, rng: np.random.Generator) -> tuple[Callable[[], Any], Callable[[], Any]]:
        F1, F2, g = np.abs(_rand(rng, n)), np.abs(_rand(rng, n)), np.abs(_rand(rng, n))
        return (lambda: b.fisher_update(F1, g, 0.1)), (lambda: ref.fisher_update(F2, g, 0.1))
    return make


# (kernel, size, factory(backend, rng) -> (native call, numpy call), repeats)
CASES: list[tuple[str, str, Any, int]] = [
    ("micro_apply", "1 x 256, r=2", _pair("micro_apply", lambda g: _rand(g, 256), lambda g: _rand(g, 2, 256),
                                          lambda g: _rand(g, 256, 2), lambda g: 0.5), 5000),
    ("micro_apply", "1024 x 256, r=2", _pair("micro_apply", _bank(1024), lambda g: _rand(g, 2, 256),
                                             lambda g: _rand(g, 256, 2), lambda g: 0.5), 300),
    ("instant_step", "d=256, r=1, M=2", _instant(1, 2), 5000),
    ("instant_step", "d=256, r=2, M=8", _instant(2, 8), 5000),
    ("lora_delta", "64 x 256 -> 256, r=8", _pair("lora_delta", _bank(64), lambda g: _rand(g, 8, 256),
                                                lambda g: _rand(g, 256, 8), lambda g: 2.0), 1000),
    ("lora_grad", "64 x 256 -> 256, r=8", _pair("lora_grad", _bank(64), _bank(64), lambda g: _rand(g, 8, 256),
                                               lambda g: _rand(g, 256, 8), lambda g: 2.0), 1000),
    ("fisher_update", "100k params", _fisher(100_000), 300),
    ("ewc_penalty_grad", "100k params", _pair("ewc_penalty_grad", *[lambda g: _rand(g, 100_000)] * 3,
                                              lambda g: 100.0), 300),
    ("topk", "k=5, 1k x 256, min_value", _topk(1_000), 1000),
    ("topk", "k=5, 10k x 256, min_value", _topk(10_000), 200),
    ("topk", "k=5, 100k x 256, min_value", _topk(100_000), 30),
    ("topk_int8", "k=5, 100k x 256, min_value", _topk_int8(100_000), 30),
    ("topk_int8_rerank", "k=5, 64 re-ranked, 10k x 256, min_value", _topk_rerank(10_000, 8, 64), 200),
    ("topk_int8_rerank", "k=5, 64 re-ranked, 100k x 256, min_value", _topk_rerank(100_000, 8, 64), 30),
    ("topk_int4_rerank", "k=5, 256 re-ranked, 100k x 256, min_value", _topk_rerank(100_000, 4, 256), 30),
    ("quantize_int8", "10k x 256", _pair("quantize_int8", _bank(10_000)), 30),
    ("kmeans_assign", "1k x 256, k=16", _pair("kmeans_assign", _bank(1_000), lambda g: _rand(g, 16, 256)), 100),
    ("hash_embed", "1 text of 1 KB, dim 256", _pair("hash_embed", lambda g: [_TEXT_1KB[:1024]], lambda g: 256),
     200),
]


def _native_backend() -> Any:
    return nk.backend() if nk.info()["active"] == "native" else None


def run_kernels(*, quick: bool = False, only: Sequence[str] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Time every case (or those whose kernel is in ``only``); one row per case."""
    native = _native_backend()
    rows: list[dict[str, Any]] = []
    for kernel, size, factory, repeat in CASES:
        if only and kernel not in only:
            continue
        rep = max(5, repeat // 10) if quick else repeat
        rng = np.random.default_rng(seed)
        fast, slow = factory(native or nk.backend(), rng)
        numpy_t = time_call(slow, repeat=max(5, rep // 10) if kernel == "hash_embed" else rep, warmup=3)
        row: dict[str, Any] = {"kernel": kernel, "size": size, "native_us": None, "native_p99_us": None,
                               "numpy_us": numpy_t["p50"], "numpy_p99_us": numpy_t["p99"], "speedup": None}
        if native is not None:
            native_t = time_call(fast, repeat=rep, warmup=min(100, rep))
            row.update(native_us=native_t["p50"], native_p99_us=native_t["p99"],
                       speedup=numpy_t["p50"] / native_t["p50"] if native_t["p50"] > 0 else None)
        rows.append(row)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``swarm-sona bench kernels``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="10x fewer repetitions (a smoke run)")
    parser.add_argument("--kernel", action="append", default=None, metavar="NAME",
                        help="only this kernel (repeatable), e.g. --kernel instant_step")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON with ``--json``)."""
    known = {c[0] for c in CASES}
    unknown = sorted(set(args.kernel or ()) - known)
    if unknown:
        raise ValueError(f"unknown kernel(s) {unknown}; known: {sorted(known)}")
    rows = run_kernels(quick=args.quick, only=args.kernel, seed=args.seed)
    info = nk.info()
    res = {"benchmark": "kernels", "machine": machine_info(), "native": info, "rows": rows}

    def us(v: float | None) -> Any:
        return "-" if v is None else v

    table = [[r["kernel"], r["size"], us(r["native_us"]), us(r["native_p99_us"]), r["numpy_us"], r["numpy_p99_us"],
              "-" if r["speedup"] is None else f"{r['speedup']:.1f}x"] for r in rows]
    title = (f"bench kernels: native ({info['active']}: {info['reason']}; isa {info['isa']}) vs numpy reference, "
             "microseconds per call")
    emit(res, as_json=args.json, title=title,
         header=["kernel", "size", "native_p50", "native_p99", "numpy_p50", "numpy_p99", "speedup"], rows=table)
    return 0
