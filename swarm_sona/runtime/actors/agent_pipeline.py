"""An agent's task pipeline for one batch: embed -> retrieve -> route -> execute -> learn -> store.

1. embed the batch's texts in one call (a task may carry ``metadata["embedding"]``: a caller
   that already has embeddings skips this step; they are checked for dimension);
2. retrieve patterns for the whole batch in **one** call to the pattern store (the bank actor,
   or a Qdrant server directly), filtered to this agent's patterns unless the bank is shared;
3. in chunks of ``engine_batch`` tasks: one vectorised engine forward + routing call
   (``sona.route_batch``: caches the activations), then per task the executor with the retrieved
   patterns and a :class:`~swarm_sona.core.trajectory.Trajectory`, then the chunk's instant-loop
   steps in task order in one call (``sona.learn``; the background loop runs on the engine's
   schedule). A task is routed before the learning steps of the earlier tasks of its chunk are
   applied: the only difference from strictly per-task processing. With a concurrent executor
   (:mod:`~swarm_sona.runtime.actors.executor_shards`) the whole batch is one chunk: routed in
   ``engine_batch`` calls, executed through ``run_many``, learned in input order; with a
   streaming one (it also has ``submit``) each ``engine_batch`` chunk's calls start as soon as
   it is routed, and each chunk is learned (in input order) as soon as its outcomes are in,
   while the later calls run;
4. store the batch's novel successful trajectories as patterns in one call; the store's reply
   is the acknowledgement.

A stage that fails for one task fails that task alone (an ``error`` result with ``error_kind``
``embed``, ``retrieve``, ``execute``, ``hook`` or ``learn``). An outcome with ``error_kind`` set
(the endpoint failed, not the model) becomes an ``infra`` error result: no trajectory, nothing
learned or stored. Wall seconds per stage accumulate in :attr:`TaskPipeline.stage_s`.

Example:
    >>> from swarm_sona.engine.config import SONAConfig
    >>> from swarm_sona.engine.sona import SONA
    >>> from swarm_sona.executors.simulated import SimulatedExecutor
    >>> from swarm_sona.runtime.actors.executor_shards import ExecutorShards
    >>> ex = SimulatedExecutor(seed=0)
    >>> sona = SONA(SONAConfig.from_dict({"dim": 64, "llm_router": {"models": ex.model_specs()}}))
    >>> pipe = TaskPipeline(PipelineSettings("a"), ExecutorShards(ex), store=None)
    >>> out = pipe.run(sona, ex.tasks(5))
    >>> len(out.results), sorted(out.results[0])[:3], out.acked
    (5, ['agent_id', 'batch_id', 'batch_n'], [])
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swarm_sona.core import telemetry as telemetry_mod
from swarm_sona.core.executor import Outcome, Task
from swarm_sona.core.trajectory import Trajectory
from swarm_sona.executors.upgrade import router_cascade, run_with_upgrade
from swarm_sona.runtime.actors.calls import WarningLog, call
from swarm_sona.runtime.actors.executor_shards import ExecutorShards
from swarm_sona.runtime.actors.run_bank import RunBank, offer_run_bank

__all__ = ["PipelineSettings", "BatchOutcome", "TaskPipeline", "STAGES"]

#: the stages whose wall seconds an agent reports (``stats()["stage_s"]``)
STAGES = ("embed", "retrieve", "route", "execute", "learn", "background", "store", "push", "checkpoint", "batch")
Hits = list[list[dict[str, Any]]]


@dataclass(frozen=True)
class PipelineSettings:
    """The agent's id and what its pipeline does: patterns per task from a shared (or its own)
    bank, which trajectories are stored (reward at least ``store_min_reward``, unless the best
    retrieved pattern is ``store_novelty``-similar), tasks per vectorised engine call."""

    agent_id: str
    shared_bank: bool = True
    retrieve_k: int = 1
    store_min_reward: float = 0.5
    store_novelty: float = 0.9
    engine_batch: int = 64

    def __post_init__(self) -> None:
        eb = self.engine_batch
        if isinstance(eb, bool) or not isinstance(eb, int) or eb < 1:
            raise ValueError(f"engine_batch must be an integer >= 1, got {eb!r}")


@dataclass
class BatchOutcome:
    """One batch through the pipeline: per-task results (input order within each kind: learned,
    then failed, then infrastructure failures), the acknowledged pattern ids, the retrieval
    call's seconds."""

    results: list[dict[str, Any]]
    acked: list[str]
    retrieve_s: float


@dataclass
class _Chunk:
    """What a chunk's execution produced: learned outcomes and trajectories (with their tasks
    and hits), failed tasks and infrastructure failures."""

    tasks: list[Task]
    hits: Hits
    outs: list[Any] = field(default_factory=list)
    trajs: list[Trajectory] = field(default_factory=list)
    failed: list[tuple[Task, str | None, str, str]] = field(default_factory=list)
    infra: list[tuple[Task, str, Any]] = field(default_factory=list)


class _ChunkSpans:
    """Per-task spans for a chunk that is routed and learned in batched calls (tracing on only).

    Every task gets a ``task`` span (the root of its own trace, linked to the batch span; one
    trace per run with ``telemetry.taskTraces`` off); its ``route`` and
    ``learn`` children cover the batched call that routed / learned it (attribute
    ``batch_n``), its ``execute`` child its own executor call.
    """

    def __init__(self, tel: Any, trace: Mapping[str, str] | None, tasks: Sequence[Task], agent_id: str) -> None:
        self.tel = tel
        self.tasks = [tel.begin_task(parent=trace, attributes={"agent": agent_id, "task.id": t.id}) for t in tasks]
        self.ctx = [tel.inject(span=s) for s in self.tasks]
        self.open: list[Any] = []

    def begin(self, name: str) -> None:
        self.open = [self.tel.begin(name, parent=c, attributes={"batch_n": len(self.ctx)}) for c in self.ctx]

    def end(self, flag: Sequence[int] = ()) -> None:
        for i in flag:   # this task's learning step also ran the background loop
            if self.open[i].is_recording():
                self.open[i].set_attribute("background", True)
        for s in self.open:
            s.end()
        self.open = []

    def execute(self, i: int, model: str) -> Any:
        return self.tel.span("execute", parent=self.ctx[i], attributes={"model": model})

    def close(self) -> None:
        self.end()
        for s in self.tasks:
            s.end()


class TaskPipeline:
    """One agent's pipeline (module docs). ``store``: the pattern store peer (see
    :func:`~swarm_sona.runtime.actors.calls.call`), None = no retrieval and nothing stored;
    ``background_s``: the engine hook's list of background-cycle seconds (subtracted from the
    learning time); ``warnings`` / ``error_kinds``: the agent's (a failed store is reported
    there). The store is offered to the executor as a :class:`~swarm_sona.runtime.actors.run_bank.RunBank`
    (for the built-in hook actions of agent definitions)."""

    def __init__(self, settings: PipelineSettings, executors: ExecutorShards, store: Any, *, tel: Any = None,
                 background_s: list[float] | None = None, warnings: WarningLog | None = None,
                 error_kinds: dict[str, int] | None = None) -> None:
        self.settings = settings
        self.executors = executors
        self.store = store
        self.tel = tel if tel is not None else telemetry_mod.current()
        self.background_s = background_s if background_s is not None else []
        self.warnings = warnings
        self.error_kinds = error_kinds if error_kinds is not None else {}
        self.stage_s: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        if store is not None:   # executors that act on the run's bank themselves (hook actions) get it
            for ex in executors.copies:
                offer_run_bank(ex, RunBank(store, agent_id=settings.agent_id, shared=settings.shared_bank))

    # ---- the batch ------------------------------------------------------------------------------
    def run(self, sona: Any, tasks: Sequence[Task], *, trace: Mapping[str, str] | None = None,
            batch_id: int | None = None) -> BatchOutcome:
        """Run a batch through every stage (module docs). Each result carries ``learn_s`` (its
        share of its chunk's ``sona.learn`` call minus the background cycles inside it),
        ``retrieve_s`` (the batch's retrieval call), ``batch_id`` and ``batch_n``."""
        clock, stage, sid = time.perf_counter, self.stage_s, self.settings.agent_id
        t_e = clock()
        errors: dict[int, tuple[str, str]] = {}   # task index -> (stage, reason): isolated, not fatal
        E = self._isolated_embeddings(sona, tasks, errors)
        t_r = clock()
        stage["embed"] += t_r - t_e
        with self.tel.span("retrieve", parent=trace, attributes={"agent": sid, "tasks": len(tasks)}):
            hits = self._isolated_retrieve(E, [i for i in range(len(tasks)) if i not in errors], errors)
        retrieve_s = clock() - t_r
        stage["retrieve"] += retrieve_s
        common = {"retrieve_s": retrieve_s, "batch_id": batch_id, "batch_n": len(tasks)}
        results: list[dict[str, Any]] = []
        to_store: list[Trajectory] = []
        ok = [i for i in range(len(tasks)) if i not in errors]
        if self.executors.streaming and not _upgrades(sona):   # calls started as routed, learned as they arrive
            self._run_streaming(sona, [tasks[i] for i in ok], E[ok], [hits[i] for i in ok], trace, common,
                                results, to_store)
            ok = []
        c = max(1, len(ok)) if self.executors.concurrent else self.settings.engine_batch   # concurrent: one chunk
        for s in range(0, len(ok), c):
            idx = ok[s:s + c]
            self._run_chunk(sona, [tasks[i] for i in idx], E[idx], [hits[i] for i in idx], trace, common,
                            results, to_store)
        for r in results:
            if "error_kind" in r:
                self.error_kinds[r["error_kind"]] = self.error_kinds.get(r["error_kind"], 0) + 1
        for i, (kind, reason) in errors.items():
            t = tasks[i]
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            results.append({"task_id": t.id, "agent_id": sid, "model": None, "success": False, "reward": 0.0,
                            "cost_usd": 0.0, "patterns": 0, "task_type": t.task_type, "learn_s": 0.0,
                            "error": reason[:500], "error_kind": kind, **common})
        t_s = clock()
        acked = self._store(to_store)
        stage["store"] += clock() - t_s
        return BatchOutcome(results, acked, retrieve_s)

    # ---- embed and retrieve ---------------------------------------------------------------------
    @staticmethod
    def embeddings(sona: Any, tasks: Sequence[Task]) -> np.ndarray:
        """The tasks' embeddings: ``metadata["embedding"]`` where given (checked for dimension),
        the engine's embedder (one call) for the rest."""
        dim = sona.config.dim
        E = np.empty((len(tasks), dim), np.float32)
        todo = []
        for i, t in enumerate(tasks):
            e = t.metadata.get("embedding") if t.metadata else None
            if e is None:
                todo.append(i)
                continue
            e = np.asarray(e, np.float32)
            if e.shape != (dim,):
                raise ValueError(f"task {t.id}: embedding has shape {e.shape}, expected ({dim},)")
            E[i] = e
        if todo:
            E[todo] = sona.embedder.embed([tasks[i].text for i in todo])
        return E

    def _isolated_embeddings(self, sona: Any, tasks: Sequence[Task], errors: dict[int, tuple[str, str]]) -> np.ndarray:
        """:meth:`embeddings` for the batch; when that raises, task by task: a task whose
        embedding fails gets a zero vector and an ``embed`` error (it is not run)."""
        try:
            return self.embeddings(sona, tasks)
        except Exception:
            E = np.zeros((len(tasks), sona.config.dim), np.float32)
            for i, t in enumerate(tasks):
                try:
                    E[i] = self.embeddings(sona, [t])[0]
                except Exception as exc:
                    errors[i] = ("embed", f"{type(exc).__name__}: {exc}")
            return E

    def _isolated_retrieve(self, E: np.ndarray, ok: Sequence[int], errors: dict[int, tuple[str, str]]) -> Hits:
        """One retrieval call for the tasks in ``ok``; when it raises, one call per task (a task
        whose retrieval fails gets a ``retrieve`` error)."""
        hits: Hits = [[] for _ in range(len(E))]
        if not ok:
            return hits
        try:
            for i, h in zip(ok, self.retrieve(E[list(ok)]), strict=True):
                hits[i] = h
        except Exception:
            for i in ok:
                try:
                    hits[i] = self.retrieve(E[i:i + 1])[0]
                except Exception as exc:
                    errors[i] = ("retrieve", f"{type(exc).__name__}: {exc}")
        return hits

    def retrieve(self, E: np.ndarray) -> Hits:
        """Patterns for each embedding, in one call to the store (this agent's only, unless the
        bank is shared)."""
        st = self.settings
        if self.store is None or st.retrieve_k <= 0:
            return [[] for _ in range(len(E))]
        agents = None if st.shared_bank else [st.agent_id]
        return call(self.store, "search_batch", E, st.retrieve_k, agents=agents, timeout=120)

    # ---- route, execute, learn ------------------------------------------------------------------
    def _run_chunk(self, sona: Any, tasks: list[Task], E: np.ndarray, hits: Hits, trace: Mapping[str, str] | None,
                   common: dict[str, Any], results: list[dict[str, Any]], to_store: list[Trajectory]) -> None:
        """Route the chunk (in ``engine_batch`` calls), execute it (per task, or concurrently
        through ``run_many``), learn its trajectories in input order in one call."""
        clock, stage = time.perf_counter, self.stage_s
        spans = _ChunkSpans(self.tel, trace, tasks, self.settings.agent_id) if self.tel.tracing else None
        try:
            if spans:
                spans.begin("route")
            t_a = clock()
            eb = self.settings.engine_batch
            models = [m for s in range(0, len(tasks), eb) for m in _route(sona, tasks[s:s + eb], E[s:s + eb])]
            t_b = clock()
            if spans:
                spans.end()
            chunk = self._execute(sona, tasks, E, hits, models, spans)
            t_l = clock()
            stage["route"] += t_b - t_a
            stage["execute"] += t_l - t_b
            learn_s = self._timed_learn(sona, chunk, spans, t_l)
        finally:
            if spans:
                spans.close()
        self._chunk_results(chunk, learn_s, common, results, to_store)

    def _run_streaming(self, sona: Any, tasks: list[Task], E: np.ndarray, hits: Hits,
                       trace: Mapping[str, str] | None, common: dict[str, Any], results: list[dict[str, Any]],
                       to_store: list[Trajectory]) -> None:
        """A streaming executor's batch: route it in ``engine_batch`` chunks, each chunk's calls
        submitted as soon as it is routed; then, chunk by chunk in input order, wait for the
        chunk's outcomes and learn them in one call while the later calls run. The router sees
        the same states as with one chunk (everything is routed before anything is learned) and
        learning keeps input order, so the outcome does not depend on which call returns first."""
        clock, stage, eb, n = time.perf_counter, self.stage_s, self.settings.engine_batch, len(tasks)
        bounds = [(s, min(n, s + eb)) for s in range(0, n, eb)]
        futs: list[Any] = []
        models: list[str] = []
        spans: list[_ChunkSpans | None] = []
        try:
            for a, b in bounds:
                sp = _ChunkSpans(self.tel, trace, tasks[a:b], self.settings.agent_id) if self.tel.tracing else None
                spans.append(sp)
                t_a = clock()
                if sp:
                    sp.begin("route")
                ms = _route(sona, tasks[a:b], E[a:b])
                if sp:
                    sp.end()
                    sp.begin("execute")
                futs += self.executors.submit(tasks[a:b], ms, hits[a:b])
                stage["route"] += clock() - t_a
                models += ms
        except BaseException:   # the batch fails as a whole, as when one chunk's routing fails
            for sp in spans:
                if sp:
                    sp.close()
            raise
        for (a, b), sp in zip(bounds, spans, strict=True):
            try:
                t_w = clock()
                ran = [f.result() for f in futs[a:b]]
                t_l = clock()
                if sp:
                    sp.end()
                chunk = self._execute(sona, tasks[a:b], E[a:b], hits[a:b], models[a:b], sp, ran=ran)
                learn_s = self._timed_learn(sona, chunk, sp, t_l)
                stage["execute"] += t_l - t_w
            finally:
                if sp:
                    sp.close()
            self._chunk_results(chunk, learn_s, common, results, to_store)

    def _timed_learn(self, sona: Any, chunk: _Chunk, spans: _ChunkSpans | None, t_l: float) -> float:
        """Learn the chunk (:meth:`_learn`), its wall time counted as ``learn`` minus the
        background cycles inside it (counted as ``background``); returns the seconds per task."""
        n_bg = len(self.background_s)
        res = self._learn(sona, chunk, spans)
        t_d = time.perf_counter()
        bg = sum(self.background_s[n_bg:])   # background cycles that ran inside this call
        self.stage_s["learn"] += t_d - t_l - bg
        self.stage_s["background"] += bg
        if spans:
            at = res.get("background_at", ()) if isinstance(res, Mapping) else ()
            spans.end(flag=[int(i) for i in at] if isinstance(at, (list, tuple)) else ())
        return max(0.0, t_d - t_l - bg) / max(1, len(chunk.trajs))

    def _execute(self, sona: Any, tasks: list[Task], E: np.ndarray, hits: Hits, models: list[str],
                 spans: _ChunkSpans | None, ran: Sequence[Any] | None = None) -> _Chunk:
        """The chunk's outcomes (``ran``: given, one per task; else run here: upgrading, through
        ``run_many`` or one call at a time) as learned trajectories, failures and
        infrastructure failures."""
        executor = self.executors.executor
        upgraded = None if ran is not None else self._run_upgrading(sona, tasks, E, hits, models, spans)
        if upgraded is not None:
            ran, models = upgraded
        elif ran is None:
            ran = self._run_many(tasks, models, hits, spans) if self.executors.concurrent else ()
        given = upgraded is not None or self.executors.concurrent
        # each outcome's spend as the router prices it (cost_usd, else its usage tokens at the model's
        # per-1M price); the upgrade path priced its attempts already
        price = _router_price(getattr(sona, "router", None)) if upgraded is None else None
        failed: list[tuple[Task, str | None, str, str]] = []
        infra: list[tuple[Task, str, Any]] = []
        outs: list[Any] = []
        trajs: list[Trajectory] = []
        for i, (t, e, pats, model) in enumerate(zip(tasks, E, hits, models, strict=True)):
            try:
                if given:
                    out = ran[i]
                    if isinstance(out, BaseException):
                        raise out
                elif spans:
                    with spans.execute(i, model):
                        out = executor(t, model, pats)
                else:
                    out = executor(t, model, pats)
                if getattr(out, "error_kind", None):   # the endpoint failed, not the model: nothing learned
                    infra.append((t, model, out))
                    continue
                if price is not None and isinstance(out, Outcome):
                    out = price(model, out)
                traj = Trajectory(task=t.text, embedding=e, model=model, reward=out.reward, success=out.success,
                                  cost_usd=out.cost_usd, latency_s=out.latency_s, agent_id=self.settings.agent_id,
                                  task_type=t.task_type, output=out.output, id=t.id)
            except Exception as exc:   # this task fails alone; the rest of the batch goes on
                kind = "hook" if type(exc).__name__.startswith("Hook") else "execute"
                failed.append((t, model, kind, f"{type(exc).__name__}: {exc}"))
                continue
            outs.append(out)
            trajs.append(traj)
        gone = {id(f[0]) for f in failed} | {id(x[0]) for x in infra}
        keep = [i for i, t in enumerate(tasks) if id(t) not in gone]
        return _Chunk([tasks[i] for i in keep], [hits[i] for i in keep], outs, trajs, failed, infra)

    def _run_upgrading(self, sona: Any, tasks: list[Task], E: np.ndarray, hits: Hits, models: list[str],
                       spans: _ChunkSpans | None) -> tuple[list[Any], list[str]] | None:
        """With ``llm_router.retry_with_upgrade``: the chunk through :func:`run_with_upgrade` (a
        failed task retried on the router's next better model within ``max_cost_per_task``, every
        attempt paid: priced by the router's :meth:`~swarm_sona.routing.pricing.Pricing.price`,
        so an outcome reporting only token ``usage`` costs its tokens at the model's price, as in
        the engine's cascade); the router learns each earlier attempt's failure at that cost, the
        trajectory is the last attempt's, its outcome carries ``attempts`` and ``total_cost_usd``
        (the priced sum). None without it."""
        if not _upgrades(sona):
            return None
        r = sona.router
        if spans:
            spans.begin("execute")
        try:
            ups = run_with_upgrade(self.executors.executor, tasks, models,
                                   router_cascade(r, {t.id: e for t, e in zip(tasks, E, strict=True)}),
                                   r.config.max_cost_per_task, patterns=hits, estimate_cost=r.estimate_cost,
                                   run_batch=self.executors.run if self.executors.concurrent else None,
                                   price=_router_price(r))
        finally:
            if spans:
                spans.end()
        ran: list[Any] = []
        for u, e in zip(ups, E, strict=True):
            for a in u.attempts[:-1]:   # paid failures: the router learns them like any outcome
                r.feedback(u.task, a.model, a.outcome.success, a.outcome.reward, a.outcome.cost_usd,
                           a.outcome.latency_s, embedding=e)
            if not u.attempts:
                ran.append(u.error)
                continue
            meta = {**(u.outcome.metadata or {}), "attempts": [a.model for a in u.attempts],
                    "total_cost_usd": u.total_cost}
            ran.append(dataclasses.replace(u.outcome, metadata=meta))
        return ran, [u.model if u.attempts else m for u, m in zip(ups, models, strict=True)]

    def _run_many(self, tasks: Sequence[Task], models: Sequence[str], hits: Hits,
                  spans: _ChunkSpans | None) -> list[Any]:
        if spans:
            spans.begin("execute")
        try:
            return self.executors.run(tasks, models, hits)
        finally:
            if spans:
                spans.end()

    def _learn(self, sona: Any, chunk: _Chunk, spans: _ChunkSpans | None) -> Any:
        """The chunk's instant-loop steps in one call; when it raises, one trajectory at a time
        (the one that raises fails alone, with a ``learn`` error)."""
        if spans:
            spans.begin("learn")
        try:
            return sona.learn(chunk.trajs) if chunk.trajs else None
        except Exception:
            for j in range(len(chunk.trajs) - 1, -1, -1):
                try:
                    sona.learn([chunk.trajs[j]])
                except Exception as exc:
                    chunk.failed.append((chunk.tasks[j], chunk.trajs[j].model, "learn", f"{type(exc).__name__}: {exc}"))
                    del chunk.tasks[j], chunk.hits[j], chunk.outs[j], chunk.trajs[j]
            return None

    def _chunk_results(self, chunk: _Chunk, learn_s: float, common: dict[str, Any], results: list[dict[str, Any]],
                       to_store: list[Trajectory]) -> None:
        sid, min_r, novelty = self.settings.agent_id, self.settings.store_min_reward, self.settings.store_novelty
        for t, pats, out, traj in zip(chunk.tasks, chunk.hits, chunk.outs, chunk.trajs, strict=True):
            if out.reward >= min_r and (not pats or pats[0].get("score", 0.0) < novelty):
                to_store.append(traj)
            meta = out.metadata or {}
            r = {"task_id": t.id, "agent_id": sid, "model": traj.model, "success": out.success,
                 "reward": out.reward, "cost_usd": float(meta.get("total_cost_usd", out.cost_usd)),
                 "patterns": len(pats), "task_type": t.task_type, "learn_s": learn_s, "latency_s": out.latency_s,
                 **common}
            if "attempts" in meta:   # retry_with_upgrade: every model tried, in order
                r["attempts"] = list(meta["attempts"])
            if out.metadata and out.metadata.get("hook_errors"):   # agent_defs.HookedExecutor
                r["hook_errors"] = list(out.metadata["hook_errors"])
            results.append(r)
        for t, model, kind, reason in chunk.failed:
            results.append({"task_id": t.id, "agent_id": sid, "model": model, "success": False, "reward": 0.0,
                            "cost_usd": 0.0, "patterns": 0, "task_type": t.task_type, "learn_s": 0.0,
                            "error": reason[:500], "error_kind": kind, **common})
        for t, model, out in chunk.infra:
            meta = out.metadata or {}
            results.append({"task_id": t.id, "agent_id": sid, "model": model, "success": False, "reward": 0.0,
                            "cost_usd": float(meta.get("total_cost_usd", out.cost_usd)), "patterns": 0,
                            "task_type": t.task_type,
                            "learn_s": 0.0, "latency_s": float(out.latency_s),
                            "error": str(meta.get("error") or out.error_kind)[:500],
                            "error_kind": str(out.error_kind), "infra": True, **common})

    # ---- store ----------------------------------------------------------------------------------
    def _store(self, to_store: list[Trajectory]) -> list[str]:
        """Store the batch's patterns in one call; the reply is the acknowledgement. A failed
        call acknowledges nothing (the batch's work stands)."""
        if not to_store or self.store is None:
            return []
        try:
            return list(call(self.store, "store_batch", [tr.to_dict() for tr in to_store], timeout=120))
        except Exception as exc:
            self.error_kinds["store"] = self.error_kinds.get("store", 0) + 1
            if self.warnings is not None:
                self.warnings.warn(f"storing {len(to_store)} pattern(s) failed, none acknowledged: "
                                   f"{type(exc).__name__}: {exc}")
            return []


def _route(sona: Any, tasks: Sequence[Task], E: np.ndarray) -> list[str]:
    """The model the engine routes each task to, in one ``route_batch`` call."""
    return [d["model"] if isinstance(d, Mapping) else str(d)
            for d in sona.route_batch([t.text for t in tasks], embeddings=E)]


def _upgrades(sona: Any) -> bool:
    """True when the engine's router retries a failed task on a better model (``retry_with_upgrade``)."""
    r = getattr(sona, "router", None)
    return r is not None and bool(getattr(r.config, "retry_with_upgrade", False))


def _router_price(router: Any) -> Callable[[str, Outcome], Outcome] | None:
    """``price(model, outcome)`` for :func:`run_with_upgrade`: the router's own pricing of an
    attempt (:meth:`~swarm_sona.routing.pricing.Pricing.price`; a model it does not know, or a
    router without pricing: the outcome as reported)."""
    pricing, index = getattr(router, "pricing", None), getattr(router, "index", None)
    if pricing is None or not isinstance(index, Mapping):
        return None

    def price(model: str, outcome: Outcome) -> Outcome:
        i = index.get(model)
        return outcome if i is None else pricing.price(i, outcome)
    return price
