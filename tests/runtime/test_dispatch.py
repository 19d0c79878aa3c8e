"""The dispatch pool without Ray: fake actor handles whose calls finish when the test says so.

Shows: the least-loaded agent gets the next batch (ties by id), no agent ever has more than
``max_in_flight`` batches, a batch whose agent died is retried once on another agent and lost
on a second death, the exclusion is lifted when no other agent is left, any other error of a
call is raised, and the run-level accounting (tally, infra streak) on top of it.
"""

import pytest

from swarm_sona.core.executor import Task
from swarm_sona.runtime.dispatch import Batch, DispatchPool, Finished, ReadyFutures
from swarm_sona.runtime.infra import InfraGuard


class Died(Exception):
    """What the fake futures raise for a call whose actor died."""


class Ref:
    def __init__(self, agent, batch):
        self.agent, self.batch = agent, batch
        self.done, self.value, self.error = False, None, None

    def finish(self, value=None, error=None):
        self.done, self.value, self.error = True, value, error


class FakeFutures:
    lost = (Died,)

    def wait(self, refs, timeout):
        return [r for r in refs if r.done]

    def get(self, ref):
        if ref.error is not None:
            raise ref.error
        return ref.value


class FakeAgent:
    """A fake actor handle: ``run_batch.remote(tasks)`` returns a ref the test finishes."""

    def __init__(self, name, log):
        self.name, self.log = name, log
        self.run_batch = self

    def remote(self, tasks, batch_id):
        ref = Ref(self.name, batch_id)
        self.log.append(ref)
        return ref


def make_pool(names, *, cap=2, futures=None):
    sent = []
    agents = {n: FakeAgent(n, sent) for n in names}

    def submit(agent, batch):
        return agents[agent].run_batch.remote(batch.tasks, batch_id=batch.batch_id), f"note-{batch.batch_id}"

    return DispatchPool(agents, submit, max_in_flight=cap, futures=futures or FakeFutures()), sent


def batches(n, size=2):
    return [Batch(i, [Task(text=f"t{i}-{j}") for j in range(size)]) for i in range(n)]


def test_least_loaded_agent_gets_each_batch_and_ties_go_by_id():
    pool, sent = make_pool(["b", "a", "c"], cap=2)
    pool.extend(batches(4))
    assert pool.fill() == 4
    assert [r.agent for r in sent] == ["a", "b", "c", "a"]   # a, b, c at 0; then a (1) over b (1) by id
    assert pool.load == {"b": 1, "a": 2, "c": 1}
    sent[1].finish({"ok": 1})                                 # b's batch ends: b is the least loaded now
    [fin] = pool.collect()
    assert (fin.kind, fin.agent_id, fin.batch.batch_id, fin.note) == ("done", "b", 1, "note-1")
    pool.extend(batches(1))
    pool.fill()
    assert sent[-1].agent == "b"


def test_no_agent_exceeds_the_in_flight_cap():
    pool, sent = make_pool(["a", "b"], cap=2)
    pool.extend(batches(7))
    assert pool.fill() == 4 and len(pool.queue) == 3          # 2 agents x cap 2: the rest waits
    assert max(pool.load.values()) == 2 and pool.fill() == 0
    seen = 0
    while pool.busy:
        for r in [r for r in sent if not r.done]:
            r.finish("x")
        seen += len(pool.collect())
        pool.fill()
        assert max(pool.load.values()) <= 2
    assert seen == 7 and sum(pool.load.values()) == 0


def test_cap_changes_what_is_in_flight():
    for cap, expect in ((1, 2), (3, 6)):
        pool, _ = make_pool(["a", "b"], cap=cap)
        pool.extend(batches(10))
        assert pool.fill() == expect


def test_a_batch_lost_with_its_agent_is_retried_once_elsewhere_then_lost():
    pool, sent = make_pool(["a", "b", "c"], cap=1)
    pool.extend(batches(1))
    pool.fill()
    sent[0].finish(error=Died("a died"))
    [fin] = pool.collect()
    assert fin.kind == "retry" and fin.agent_id == "a" and isinstance(fin.error, Died)
    assert pool.queue[0].attempt == 1 and pool.queue[0].exclude == {"a"}
    pool.fill()
    assert sent[1].agent == "b"                               # not the agent it died with
    sent[1].finish(error=Died("b died"))
    [fin] = pool.collect()
    assert fin.kind == "lost" and fin.agent_id == "b" and len(fin.batch.tasks) == 2 and not pool.busy


def test_a_retry_avoids_every_agent_that_just_died_until_it_answers_again():
    # agents a and b die with their node at once: b's batch retries elsewhere than b, and it must
    # not go to a (which died too, the lowest id and least loaded): it goes to c
    pool, sent = make_pool(["a", "b", "c", "d"], cap=1)
    pool.extend(batches(2))
    pool.fill()                                                # batch 0 -> a, batch 1 -> b
    sent[0].finish(error=Died("a died"))
    sent[1].finish(error=Died("b died"))
    assert [f.kind for f in pool.collect()] == ["retry", "retry"]
    pool.fill()
    assert {r.agent for r in sent[2:]} == {"c", "d"}            # neither a nor b
    for r in sent[2:]:
        r.finish(value="ok")
    pool.collect()
    pool.extend(batches(1))
    pool.fill()
    assert sent[-1].agent == "c"                               # a still suspect: c (least loaded, free)
    pool.extend(batches(2))
    pool.fill()                                                # d takes one; c and d are then full
    assert sent[-1].agent == "d" and len(pool.queue) == 1      # the other waits: a and b just died
    clock = [0.0]
    fresh, log = make_pool(["a", "b"], cap=1)
    fresh.clock = lambda: clock[0]
    fresh.extend(batches(1))
    fresh.fill()
    log[0].finish(error=Died("a died"))
    fresh.collect()
    clock[0] = 11.0                                            # past suspect_s (10 s): a is picked again
    fresh.extend(batches(1))
    fresh.queue.rotate(1)                                      # the new batch (no exclusion) first
    fresh.fill()
    assert log[1].agent == "a"


def test_a_retry_goes_back_to_the_same_agent_when_no_other_is_left():
    pool, sent = make_pool(["solo"], cap=1)
    pool.extend(batches(1))
    pool.fill()
    sent[0].finish(error=Died("restarting"))
    assert pool.collect()[0].kind == "retry"
    assert pool.fill() == 1 and sent[1].agent == "solo"      # exclusion lifted: nothing else to try
    sent[1].finish("ok")
    [fin] = pool.collect()
    assert (fin.kind, fin.output, fin.batch.attempt) == ("done", "ok", 1)


def test_a_retry_waits_for_another_agent_while_one_is_busy():
    pool, sent = make_pool(["a", "b"], cap=1)
    pool.extend(batches(2))
    pool.fill()                                               # 0 -> a, 1 -> b
    sent[0].finish(error=Died("a died"))
    pool.collect()
    assert pool.fill() == 0 and pool.queue[0].exclude == {"a"}   # a is free but excluded; b is at its cap
    sent[1].finish("ok")
    pool.collect()
    assert pool.fill() == 1 and sent[2].agent == "b"


def test_other_errors_of_a_call_are_raised():
    pool, sent = make_pool(["a"], cap=1)
    pool.extend(batches(1))
    pool.fill()
    sent[0].finish(error=KeyError("bug"))
    with pytest.raises(KeyError):
        pool.collect()


def test_drop_queued_counts_the_tasks_never_sent():
    pool, _ = make_pool(["a"], cap=1)
    pool.extend(batches(4, size=3))
    pool.fill()
    assert pool.drop_queued() == 9 and not pool.queue and pool.busy


def test_bad_pools_are_refused():
    with pytest.raises(ValueError, match="max_in_flight"):
        DispatchPool(["a"], lambda a, b: (None, None), max_in_flight=0)
    with pytest.raises(ValueError, match="at least one agent"):
        DispatchPool([], lambda a, b: (None, None), futures=ReadyFutures())


def test_infra_guard_stops_after_the_limit_and_other_results_end_the_streak():
    g = InfraGuard(limit=3)
    for kind in ("auth", "auth", None, "auth", "execute", "auth"):
        g.see({"error_kind": kind} if kind else {})
    assert g.stop is None and g.streak == 2                  # the success reset it; "execute" did not
    stop = g.see({"error_kind": "rate_limit", "error": "HTTP 429"})
    assert stop is g.stop and (stop.kind, stop.count) == ("rate_limit", 3)
    with pytest.raises(ValueError, match="limit"):
        InfraGuard(limit=-1)


def test_tally_accounts_done_retried_and_lost_batches():
    from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
    from swarm_sona.runtime.metering import RunMeter
    from swarm_sona.runtime.tally import RunTally

    class Span:
        ended = 0

        def end(self):
            Span.ended += 1

    tel = Telemetry(TelemetryConfig())
    counters = dict.fromkeys(("tasks", "successes", "batches", "retried_batches", "failed_tasks"), 0)
    counters["cost_usd"] = 0.0
    kinds: dict = {}
    acked: list = []
    tally = RunTally(counters, RunMeter(tel), tel, relay=lambda w: None, acked=acked.extend, error_kinds=kinds,
                     guard=InfraGuard(2))
    b = Batch(0, [Task(text="x"), Task(text="y")])
    out = {"results": [{"task_id": "x", "success": True, "cost_usd": 0.5},
                       {"task_id": "y", "success": False, "cost_usd": 0.0, "error_kind": "execute"}], "acked": ["p"]}
    assert len(list(tally.results(Finished("done", "a", b, output=out, note=Span())))) == 2
    assert list(tally.results(Finished("retry", "a", b, error=Died(), note=Span()))) == []
    lost = list(tally.results(Finished("lost", "b", b, error=Died(), note=Span())))
    assert [r["error"] for r in lost] == ["lost twice: Died"] * 2
    assert counters == {"tasks": 2, "successes": 1, "batches": 1, "retried_batches": 1, "failed_tasks": 2,
                        "cost_usd": 0.5}
    assert kinds == {"execute": 1} and acked == ["p"] and Span.ended == 3
    tel.shutdown()
