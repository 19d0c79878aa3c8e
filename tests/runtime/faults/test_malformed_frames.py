"""Malformed frames sent to the coordinator and agent actors on a real local Ray.

Pushes (``delta`` frames to :meth:`CoordinatorActor.submit`) and merged versions (``merged``
frames to :meth:`AgentActor.install`, and riding on a batch as the driver hands them out) that
are truncated, corrupt, garbage, of a wrong schema version or kind, not bytes, with NaN/inf
arrays, wrong shapes or names, forged weights: each is refused with an error naming what was
wrong (a merged frame riding on a batch is skipped with a warning instead, the batch runs),
the actor stays alive (the same process), and consensus goes on with the honest agents: the
next sync merges every agent's push and every agent installs it.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from swarm_sona.consensus.messages import MERGED_KIND, MESSAGE_SCHEMA  # noqa: E402
from swarm_sona.consensus.topologies import disagreement  # noqa: E402
from swarm_sona.core import codec  # noqa: E402
from swarm_sona.core.codec.frames import MAGIC, open_envelope  # noqa: E402
from swarm_sona.executors.simulated import SimulatedExecutor  # noqa: E402
from swarm_sona.runtime.swarm import SwarmSONA  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

Edit = Callable[[dict[str, Any]], Any]


def _reframe(good: bytes, edit: Edit, *, kind: str | None = None, version: int = MESSAGE_SCHEMA) -> bytes:
    """``good``'s body changed by ``edit`` (which returns the new body), framed again (valid CRC)."""
    k, _, body = open_envelope(good)
    return codec.pack_frame(kind or k, edit(body), version=version)


def _params(edit: Callable[[np.ndarray], np.ndarray], key: str = "params", name: str = "/B") -> Edit:
    def go(body: dict[str, Any]) -> dict[str, Any]:
        first = sorted(k for k in body[key] if name in k)[0]
        return {**body, key: {**body[key], first: edit(body[key][first])}}
    return go


def _nan(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flat[0] = np.nan
    return a


def _inf(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flat[-1] = np.inf
    return a


def _garbage_payload(n: int, rng: random.Random) -> bytes:
    payload = bytes(rng.randrange(256) for _ in range(n))
    return MAGIC + zlib.crc32(payload).to_bytes(4, "little") + n.to_bytes(8, "little") + payload


def _flip(blob: bytes, at: int) -> bytes:
    b = bytearray(blob)
    b[at] ^= 0x40
    return bytes(b)


def bad_deltas(honest: bytes, rng: random.Random) -> list[tuple[str, Any, str]]:
    """(what, frame, a phrase the refusal must contain) for one honest ``delta`` frame (made the
    agent's next push, so that each would be taken if it were well-formed, not ignored as a retry)."""
    good = _reframe(honest, lambda b: {**b, "seq": b["seq"] + 1})
    return [
        ("truncated", good[:-7], "truncated frame"),
        ("cut to its header", good[:16], "truncated frame"),
        ("flipped byte", _flip(good, len(good) // 2), "checksum"),
        ("garbage bytes", bytes(rng.randrange(256) for _ in range(300)), "bad magic"),
        ("garbage msgpack, valid checksum", _garbage_payload(200, rng), "malformed"),
        ("not bytes", {"agent_id": "agent-0"}, "expected bytes"),
        ("newer schema version", _reframe(good, lambda b: b, version=MESSAGE_SCHEMA + 1), "schema version"),
        ("wrong kind", _reframe(good, lambda b: b, kind=MERGED_KIND), "expected a 'delta' message"),
        ("body not a mapping", _reframe(good, lambda b: [1, 2, 3]), "body must be a mapping"),
        ("missing fields", _reframe(good, lambda b: {"agent_id": b["agent_id"]}), "missing fields"),
        ("NaN in params", _reframe(good, _params(_nan)), "NaN or inf"),
        ("inf in the Fisher", _reframe(good, lambda b: {**b, "fisher": {k: _inf(v) for k, v in b["params"].items()}}),
         "NaN or inf"),
        ("int8 params", _reframe(good, _params(lambda a: a.astype(np.int8))), "float array"),
        # (an adapter of another shape is another LoRA rank, merged apart: a head's shape is fixed)
        ("wrong shape", _reframe(good, _params(lambda a: a.ravel()[:-1].copy(), name="heads/")), "has shape"),
        ("negative seq", _reframe(good, lambda b: {**b, "seq": -1}), "'seq'"),
        ("forged weight 1e300", _reframe(good, lambda b: {**b, "n_trajectories": 1e300}), "weight"),
        ("forged weight NaN", _reframe(good, lambda b: {**b, "n_trajectories": float("nan")}), "finite"),
        ("forged weight 2.5", _reframe(good, lambda b: {**b, "n_trajectories": 2.5}), "weight"),
        ("forged weight -1", _reframe(good, lambda b: {**b, "n_trajectories": -1}), "n_trajectories"),
    ]


def bad_merged(good: bytes, delta: bytes, rng: random.Random) -> list[tuple[str, Any, str]]:
    """(what, frame, phrase) for one valid ``merged`` frame (``delta``: a push, the wrong kind)."""
    newer: Edit = lambda b: {**b, "version": b["version"] + 1}   # noqa: E731 - would be installed if valid
    return [
        ("truncated", good[:-3], "truncated frame"),
        ("garbage bytes", bytes(rng.randrange(256) for _ in range(100)), "bad magic"),
        ("wrong kind", delta, "expected a 'merged' message"),
        ("newer schema version", _reframe(good, newer, version=MESSAGE_SCHEMA + 7), "schema version"),
        ("NaN in params", _reframe(good, lambda b: _params(_nan)(newer(b))), "NaN or inf"),
        ("wrong shape", _reframe(good, lambda b: _params(lambda a: np.ones(1, a.dtype))(newer(b))),
         "shapes differ"),
        ("wrong names", _reframe(good, lambda b: {**newer(b), "params": {"x/B": np.zeros(2, np.float32)}}),
         "names differ"),
    ]


def _pids(sw: SwarmSONA) -> dict[str, int]:
    actors = {**sw.agents, **sw.coordinators}
    return dict(zip(actors, ray.get([h.ping.remote() for h in actors.values()]), strict=True))


def test_malformed_frames_are_refused_the_actors_live_and_consensus_goes_on(fault_case):
    fault_case.fault = "malformed frames (Ray: coordinator pushes, agent merged versions)"
    rng = random.Random(31)
    ex = SimulatedExecutor(seed=31)
    agents = [{"id": f"agent-{i}", "type": "worker"} for i in range(3)]
    with SwarmSONA(agents=agents, executor=ex, sync_every=10**6, batch_size=50, bank={"enabled": False},
                   sona={"background_every": 10**6}) as sw:
        list(sw.run(ex.tasks(300, seed=32), progress=False))
        assert sw.sync(wait=True)["version"] == 1
        pids = _pids(sw)
        coord, a0 = sw.coordinators["coordinator"], sw.agents["agent-0"]
        good_delta = ray.get(a0.export_frame.remote())
        good_merged = ray.get(coord.latest.remote())
        rejected0 = ray.get(coord.stats.remote())["rejected"]

        deltas = bad_deltas(good_delta, rng)
        for what, frame, phrase in deltas:                          # pushes: each refused, by name
            with pytest.raises(ray.exceptions.RayTaskError) as err:
                ray.get(coord.submit.remote(frame))
            assert phrase in str(err.value), (what, str(err.value)[-600:])
            assert "ValueError" in str(err.value) or "Error" in type(err.value.cause).__name__, what
        st = ray.get(coord.stats.remote())
        assert st["rejected"] - rejected0 == len(deltas) and st["pending"] == []   # counted, nothing pending

        merged = bad_merged(good_merged, good_delta, rng)
        v0 = ray.get(a0.stats.remote())["version"]
        for what, frame, phrase in merged:                          # merged versions: each refused, by name
            with pytest.raises(ray.exceptions.RayTaskError) as err:
                ray.get(a0.install.remote(frame))
            assert phrase in str(err.value), (what, str(err.value)[-600:])
        assert ray.get(a0.stats.remote())["version"] == v0
        params_before = ray.get(a0.params.remote())
        # the same frames riding on a batch, as the driver hands merged versions out: skipped, warned
        out = ray.get(a0.run_batch.remote(ex.tasks(20, seed=33), merged=[f for _, f, _ in merged if
                                                                         isinstance(f, bytes)]))
        assert len(out["results"]) == 20 and not any("error" in r for r in out["results"])
        refused = [w for w in out["warnings"] if "merged frame refused" in w]
        assert len(refused) == len(merged) and out["version"] == v0
        assert {k: v.shape for k, v in ray.get(a0.params.remote()).items()} == \
            {k: v.shape for k, v in params_before.items()}

        assert _pids(sw) == pids                                    # every actor alive, the same process
        list(sw.run(ex.tasks(300, seed=34), progress=False))        # consensus goes on with everyone
        sync = sw.sync(wait=True)
        assert sync["version"] == 2
        seqs = open_envelope(ray.get(coord.latest.remote()))[2]["extra"]["seqs"]
        assert set(seqs) == set(sw.agents) and all(s >= 2 for s in seqs.values())
        assert disagreement(sw.agent_params(), sw.merged_params()) <= 1e-3
        assert _pids(sw) == pids
    fault_case.bad_inputs = len(deltas) + 2 * len(merged)
    fault_case.refused = len(deltas) + len(merged) + len(refused)
    fault_case.acknowledged = fault_case.found = len(seqs)      # the honest agents' pushes in the next merge
    fault_case.notes.append(f"delta kinds={len(deltas)} merged kinds={len(merged)}")
