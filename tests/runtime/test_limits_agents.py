"""Leased rate-limit shares across a swarm's agents, in process (AgentActor without Ray).

Each agent gets its own pickled copy of the executor, as a Ray actor does, and so its own
limiter: with ``lease_limits(n)`` each of n agents holds 1/n of the per-model budget and
together they stay within what the replay server enforces; without the lease each holds the
whole budget and together they run over it.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from swarm_sona.executors.openai_chat import OpenAIChatExecutor
from swarm_sona.executors.replay import LedgerDict, ReplayConfig, ReplayServer, replay_tasks
from swarm_sona.executors.table import ROUTELLM_PRICES, TableExecutor, load_routing_table
from swarm_sona.runtime.actors.agent import AgentActor

DATA = Path(__file__).parents[1] / "data" / "routellm_slice"
TABLE = load_routing_table(DATA)
TASKS = replay_tasks(TABLE)
PRICES = {m: (p, p) for m, p in ROUTELLM_PRICES.items()}
SPECS = TableExecutor(TABLE).model_specs()


def run_agents(lease: bool) -> tuple[LedgerDict, list[dict[str, Any]], list[dict[str, Any]]]:
    srv = ReplayServer(ReplayConfig(data=str(DATA), latency_median_s=0.0, latency_p99_s=0.0,
                                    rate_limit_rpm=1200, rate_burst=4), table=TABLE)   # 20/s per model
    srv.start()
    try:
        ex = OpenAIChatExecutor(srv.base_url, api_key_env=None, prices=PRICES, max_concurrency=16, seed=0,
                                backoff_s=0.02, limits={"default": {"rpm": 1200}, "headroom": 0.9, "burst_s": 0.2})
        if lease:
            ex.lease_limits(2)
        agents = [AgentActor(f"a{i}", {"dim": 32, "mlp_hidden": 16, "llm_router": {"models": SPECS}},
                             pickle.loads(pickle.dumps(ex)), max_concurrency=16) for i in range(2)]
        batches = [TASKS[:30], TASKS[30:60]]
        with ThreadPoolExecutor(2) as pool:
            outs = list(pool.map(lambda j: agents[j].run_batch(batches[j]), range(2)))
        return srv.ledger(), [r for o in outs for r in o["results"]], [a.stats()["executor"] for a in agents]
    finally:
        srv.stop()


def test_leased_shares_keep_the_agents_together_within_the_servers_limit() -> None:
    led, results, stats = run_agents(lease=True)
    assert len(results) == 60 and not any("error_kind" in r for r in results)
    assert led["rate_limited"] == 0 and led["ok"] == 60
    assert all(s["limiter_waits"] > 0 for s in stats)
    whole, results2, stats2 = run_agents(lease=False)   # each agent holds the whole budget: twice the pace
    assert whole["rate_limited"] > 0 and sum(s["rate_limited"] for s in stats2) > 0
