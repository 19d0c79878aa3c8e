"""Exposure: retention (max age, max count per task type) and redaction of what the ReasoningBank
stores and what telemetry exports.

Banks are embedded (Qdrant Edge) in tmp_path with a fake clock; a few checks also run with the
cache off (every query and every retention decision goes to the store) and on qdrant-client's
local mode (the ``qdrant`` backend's code path)."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_sona.app.run_spec import RunSpec
from swarm_sona.bank import BankInputError, ReasoningBank
from swarm_sona.bank.config import ReasoningBankConfig, RetentionConfig
from swarm_sona.bank.pattern import pattern_id
from swarm_sona.core import redaction
from swarm_sona.core.config import ConfigError
from swarm_sona.core.telemetry import Telemetry, TelemetryConfig
from swarm_sona.embedding.embedders import HashingEmbedder

DAY = 86400.0
SECRET_KEY = "sk-proj-Zx81Qm4TsecretVALUE0042"
SECRET_PW = "hunter2-Pa55w0rd"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


class Clock:
    """A settable time source."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _bank(tmp_path, clock: Clock | None = None, *, mode: str = "edge", **cfg) -> ReasoningBank:
    if mode == "qdrant":
        base = {"backend": "qdrant", "url": ":memory:"}
        return ReasoningBank({**base, **cfg}, embedder=HashingEmbedder(64), clock=clock)
    if mode == "edge-nocache":
        cfg = {"cache_size": 0, **cfg}
    return ReasoningBank(cfg, path=tmp_path / "bank", embedder=HashingEmbedder(64), clock=clock)


def _stored_ids(bank: ReasoningBank) -> set[str]:
    """Every point in the store (expired or not), read past the bank's filters."""
    return {p.id for batch in bank.backend.scroll(with_vectors=False) for p in batch}


MODES = ["edge", "edge-nocache", "qdrant"]


# ---- retention: count per task type ----------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_count_cap_per_task_type_drops_oldest_then_lowest_reward(tmp_path, mode):
    clock = Clock()
    with _bank(tmp_path, clock, mode=mode, retention={"maxPerTaskType": 2}) as bank:
        deleted: list[str] = []
        bank.delete_listeners.append(deleted.extend)
        ids = {}
        for name, t, reward, tt in [("a-old-low", 0, 0.1, "a"), ("a-old-high", 0, 0.9, "a"), ("a-mid", 1, 0.2, "a"),
                                    ("b-0", 0, 0.5, "b"), ("b-1", 1, 0.5, "b"), ("none-0", 0, 0.5, None),
                                    ("none-1", 1, 0.5, None), ("none-2", 2, 0.5, None)]:
            clock.t = 1_000_000.0 + t
            ids[name] = bank.store_pattern(f"task {name}", "", f"out {name}", reward, True, task_type=tt)
        # a: 3 > 2, the two oldest tie on time: the lower reward goes; b: at the cap; no type: oldest goes
        assert _stored_ids(bank) == {ids[n] for n in ("a-old-high", "a-mid", "b-0", "b-1", "none-1", "none-2")}
        assert bank.count(task_type="a") == 2 and bank.count() == 6
        clock.t += 10
        ids["a-new"] = bank.store_pattern("task a-new", "", "x", 0.0, False, task_type="a")
        assert {p.id for p in bank.retrieve_patterns("task a", k=10, task_type="a", similarity_threshold=-1)} == \
            {ids["a-mid"], ids["a-new"]}
        st = bank.stats()["retention"]
        assert st["pruned_over_cap"] == 3 and st["max_per_task_type"] == 2
        assert sorted(deleted) == sorted([ids["a-old-low"], ids["a-old-high"], ids["none-0"]])


def test_a_batch_over_the_cap_keeps_the_best_and_prune_applies_a_lowered_cap(tmp_path):
    clock = Clock()
    items = [{"task": f"t{i}", "output": "o", "reward": i / 10, "success": True, "task_type": "x"} for i in range(5)]
    with _bank(tmp_path, clock) as bank:
        bank.store_many(items)
    with _bank(tmp_path, clock, retention={"maxPerTaskType": 2}) as bank:   # a cap set later: enforced at open
        assert sorted(p.reward for p in bank.retrieve_patterns("t", k=10, similarity_threshold=-1)) == [0.3, 0.4]
        assert bank.stats()["retention"]["pruned_over_cap"] == 3
        # one call storing more than the cap: equally old, so the lowest rewards go at once
        bank.store_many([{**it, "task": f"u{i}", "task_type": "y"} for i, it in enumerate(items)])
        assert sorted(p.reward for p in bank.retrieve_patterns("u", k=10, task_type="y",
                                                               similarity_threshold=-1)) == [0.3, 0.4]
        assert bank.prune() == {"expired": 0, "over_cap": 0}


# ---- retention: age --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_expired_patterns_are_never_returned_even_before_pruning(tmp_path, mode):
    clock = Clock()
    with _bank(tmp_path, clock, mode=mode, retention={"maxAge": "1d", "pruneEvery": 0}) as bank:
        old = bank.store_pattern("parse a csv file", "", "csv.DictReader", 0.9, True, metadata={"lang": "py"},
                                 task_type="io")
        clock.t += 0.5 * DAY
        new = bank.store_pattern("parse a csv file quickly", "", "pandas", 0.8, True, metadata={"lang": "py"},
                                 task_type="io")
        clock.t += 0.75 * DAY                                    # old is 1.25 days old, new 0.75
        assert _stored_ids(bank) == {old, new}                   # not pruned yet
        assert [p.id for p in bank.retrieve_patterns("parse a csv file", k=5)] == [new]
        assert [p.id for p in bank.retrieve_patterns("parse a csv file", k=5, metadata={"lang": "py"})] == [new]
        assert [p.id for p in bank.retrieve_patterns("parse a csv file", k=5, mmr=0.5)] == [new]
        assert bank.count() == 1 and bank.count(metadata={"lang": "py"}) == 1 and bank.count(task_type="io") == 1
        assert bank.get(old) is None and bank.get(new) is not None
        st = bank.stats()
        assert st["count"] == 2 and st["retention"]["pruned_expired"] == 0
        assert st["retention"]["expired_pending"] == (None if mode == "edge-nocache" else 1)
        assert bank.prune() == {"expired": 1, "over_cap": 0}
        assert _stored_ids(bank) == {new}
        st = bank.stats()["retention"]
        assert st["pruned_expired"] == 1 and st["prune_runs"] >= 1 and st["last_prune_at"] == clock.t
        assert st["max_age_s"] == DAY


def test_an_expired_pattern_is_not_exported_and_storing_it_again_starts_afresh(tmp_path):
    clock = Clock()
    with _bank(tmp_path, clock, retention={"maxAge": 100, "pruneEvery": 0}) as bank:
        pid = bank.store_pattern("rotate the logs", "", "logrotate", 0.7, True)
        bank.mark_used(pid, success=True)
        keep = bank.store_pattern("other", "", "x", 0.7, True)
        clock.t += 50
        bank.mark_used(keep)
        clock.t += 60                                            # pid is 110 s old, keep 110 s too
        keep2 = bank.store_pattern("fresh", "", "y", 0.7, True)
        assert bank.snapshot(tmp_path / "s.ckpt") == 1           # only the fresh one is exported
        assert bank.store_pattern("rotate the logs", "", "logrotate", 0.9, True) == pid
        p = bank.get(pid)
        assert p is not None and p.created_at == clock.t and p.use_count == 0 and p.reward == 0.9
        assert {q.id for q in bank.retrieve_patterns("rotate the logs", k=5, similarity_threshold=-1)} == {pid, keep2}


def test_age_prune_runs_every_n_stores_on_flush_and_at_open(tmp_path):
    clock = Clock()
    cfg = {"retention": {"maxAge": 3600, "pruneEvery": 3}}
    with _bank(tmp_path, clock, **cfg) as bank:
        first = bank.store_pattern("old one", "", "x", 1.0, True)
        clock.t += 7200
        bank.store_pattern("second", "", "x", 1.0, True)
        assert first in _stored_ids(bank)                        # 2 stores: no prune yet
        bank.store_pattern("third", "", "x", 1.0, True)          # the 3rd store prunes
        assert first not in _stored_ids(bank) and bank.stats()["retention"]["pruned_expired"] == 1
        clock.t += 7200
        bank.flush()                                             # flush prunes too
        assert _stored_ids(bank) == set()
    with _bank(tmp_path, clock) as bank:                         # no retention: kept
        kept = bank.store_pattern("kept a while", "", "x", 1.0, True)
    clock.t += 7200
    with _bank(tmp_path, clock, **cfg) as bank:                  # opening prunes
        assert kept not in _stored_ids(bank) and bank.stats()["retention"]["pruned_expired"] == 1


def test_restored_snapshot_and_distilled_patterns_follow_retention(tmp_path):
    from swarm_sona.core.trajectory import Trajectory

    clock = Clock()
    with _bank(tmp_path, clock) as bank:
        bank.store_pattern("ancient", "", "x", 1.0, True)
        n = bank.snapshot(tmp_path / "snap.ckpt")
    assert n == 1
    clock.t += 10 * DAY
    with ReasoningBank({"persist_to_disk": False, "retention": {"maxAge": "1d", "maxPerTaskType": 1}},
                       embedder=HashingEmbedder(64), clock=clock) as bank:
        assert bank.restore(tmp_path / "snap.ckpt") == 1 and bank.count() == 0 and _stored_ids(bank) == set()
        rng = np.random.default_rng(0)
        trajs = [Trajectory.from_dict({"task": f"sort list {i}", "embedding": rng.normal(size=64).tolist(),
                                       "output": "sorted()", "reward": 0.5 + i / 20, "success": True,
                                       "task_type": "sort"}) for i in range(6)]
        out = bank.distill(trajs, k=3, merge_threshold=1.0)
        assert len(out["created"]) == 3 and bank.count(task_type="sort") == 1


# ---- retention: config -----------------------------------------------------------------------
def test_retention_config_durations_and_errors():
    assert RetentionConfig(max_age="12h").max_age == 43200.0 and RetentionConfig(max_age=90).max_age == 90.0
    assert RetentionConfig.from_dict({"maxAge": "2w"}).max_age == 14 * DAY
    assert not RetentionConfig().active and RetentionConfig(max_per_task_type=5).active
    cfg = ReasoningBankConfig.from_dict({"retention": {"maxAge": "30d", "maxPerTaskType": 100}})
    assert ReasoningBankConfig.from_dict(cfg.to_dict()) == cfg and cfg.retention.max_age == 30 * DAY
    for bad, field in [({"maxAge": "30 days"}, "max_age"), ({"maxAge": 0}, "max_age"),
                       ({"maxPerTaskType": 0}, "max_per_task_type"), ({"pruneEvery": -1}, "prune_every"),
                       ({"maxAgo": 1}, "maxAgo")]:
        with pytest.raises(ConfigError, match=field):
            ReasoningBankConfig.from_dict({"retention": bad})
    spec = RunSpec.from_dict({"bank": {"retention": {"maxAge": "7d"}, "redact": "secrets"}})
    assert spec.bank.retention.max_age == 7 * DAY and spec.bank.redact == "secrets"


# ---- redaction: the bank ---------------------------------------------------------------------
def _on_disk(root, needles: list[str]) -> set[str]:
    """The needles found in any file under ``root`` (the engine preallocates ~170 MB of mostly empty
    segment and WAL files: mmap + find, not read). Without redaction the secrets of the test below
    are in the WAL and in the payload pages in plain text."""
    import mmap

    hits = set()
    for p in root.rglob("*"):
        if p.is_file() and p.stat().st_size:
            with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                hits |= {n for n in needles if m.find(n.encode()) >= 0}
    return hits


def test_a_secret_never_reaches_the_stored_payload_nor_the_disk(tmp_path):
    task = f"call the API with key {SECRET_KEY}"
    output = f"curl -u admin --data password={SECRET_PW} https://x"
    with _bank(tmp_path, redact="secrets") as bank:
        pid = bank.store_pattern(task, f"AWS_ACCESS_KEY_ID={AWS_KEY}", output, 0.9, True,
                                 metadata={"note": f"token: {SECRET_PW}", "n": 3}, description=f"used {SECRET_KEY}",
                                 task_type="api")
        bank.store_many([{"task": f"again {SECRET_KEY}", "output": "ok", "reward": 1.0, "success": True}])
        (point,) = bank.backend.retrieve([pid])
        text = repr([p.payload for batch in bank.backend.scroll(with_vectors=False) for p in batch])
        for s in (SECRET_KEY, SECRET_PW, AWS_KEY):
            assert s not in text
        assert point.payload["task"] == "call the API with key [REDACTED:api-key]"
        assert point.payload["metadata"] == {"note": "token: [REDACTED:credential]", "n": 3}
        # the id is derived from the redacted content: it does not fingerprint the secret either
        assert pid != pattern_id(task, f"AWS_ACCESS_KEY_ID={AWS_KEY}", output)
        hit = bank.retrieve_patterns(task, k=1)[0]
        assert hit.id == pid and SECRET_KEY not in hit.guidance()
        assert bank.stats()["redact"] == "secrets"
        bank.flush()
    assert _on_disk(tmp_path / "bank", [SECRET_KEY, SECRET_PW, AWS_KEY]) == set()   # segments, WAL, indexes


def test_distilled_and_restored_patterns_are_redacted(tmp_path):
    from swarm_sona.core.trajectory import Trajectory

    with _bank(tmp_path) as plain:                               # written before redaction was on
        plain.store_pattern(f"old task with {SECRET_KEY}", "", "x", 1.0, True)
        plain.snapshot(tmp_path / "snap.ckpt")
    with ReasoningBank({"persist_to_disk": False, "redact": "secrets"}, embedder=HashingEmbedder(64)) as bank:
        bank.restore(tmp_path / "snap.ckpt")
        rng = np.random.default_rng(1)
        trajs = [Trajectory.from_dict({"task": f"login with password={SECRET_PW}", "output": f"used {SECRET_KEY}",
                                       "embedding": rng.normal(size=64).tolist(), "reward": 0.8, "success": True})
                 for _ in range(3)]
        assert bank.distill(trajs, k=1)["created"]
        text = repr([p.payload for batch in bank.backend.scroll(with_vectors=False) for p in batch])
        assert SECRET_KEY not in text and SECRET_PW not in text and "[REDACTED:" in text


def test_the_vector_embeds_the_original_text_unless_embed_redacted(tmp_path):
    emb = HashingEmbedder(64)
    task = f"deploy with key {SECRET_KEY}"
    orig = emb.embed([task])[0]
    orig /= np.linalg.norm(orig)
    for embed_redacted in (False, True):
        with ReasoningBank({"persist_to_disk": False, "redact": "secrets", "embed_redacted": embed_redacted},
                           embedder=emb) as bank:
            pid = bank.store_pattern(task, "", "ok", 1.0, True)
            v = bank.get(pid).vector
            assert np.allclose(v, orig, atol=1e-6) != embed_redacted


def test_a_callable_and_a_user_registered_redactor(tmp_path):
    def corp(text: str) -> str:
        return text.replace("ACME-INTERNAL", "[corp]")

    redaction.register_redactor("test-corp", corp)
    try:
        cfg = ReasoningBankConfig.from_dict({"redact": "test-corp+secrets"})
        with _bank(tmp_path, redact=cfg.redact) as bank:
            pid = bank.store_pattern(f"ACME-INTERNAL job {SECRET_KEY}", "", "ok", 1.0, True)
            assert bank.get(pid).task == "[corp] job [REDACTED:api-key]"
            assert bank.stats()["redact"] == "test-corp+secrets"
        tel = Telemetry(TelemetryConfig(traces_exporter="memory", redact="test-corp"))
        with tel.span("task", attributes={"task.text": "ACME-INTERNAL plan"}):
            pass
        assert tel.memory_spans()[0].attributes["task.text"] == "[corp] plan"
        tel.shutdown()
    finally:
        redaction.unregister_redactor("test-corp")
    with pytest.raises(ConfigError, match="test-corp"):          # gone again
        ReasoningBankConfig.from_dict({"redact": "test-corp"})
    # a callable, in Python
    with ReasoningBank({"persist_to_disk": False, "redact": str.lower}, embedder=HashingEmbedder(64)) as bank:
        assert bank.get(bank.store_pattern("MiXeD Case", "", "OUT", 1.0, True)).output == "out"


def test_a_failing_redactor_stores_nothing(tmp_path):
    def broken(text: str) -> str:
        if "boom" in text:
            raise RuntimeError(f"cannot handle {text}")
        return text

    with ReasoningBank({"persist_to_disk": False, "redact": broken}, embedder=HashingEmbedder(64)) as bank:
        with pytest.raises(BankInputError, match="item 1: the redactor .* raised RuntimeError on output") as ei:
            bank.store_many([{"task": "fine", "reward": 1.0, "success": True},
                             {"task": "also fine", "output": f"boom {SECRET_PW}", "reward": 1.0, "success": True}])
        assert SECRET_PW not in str(ei.value) and bank.count() == 0


@pytest.mark.parametrize("make", [
    lambda v: ReasoningBankConfig.from_dict({"redact": v}),
    lambda v: TelemetryConfig.from_dict({"redact": v}),
    lambda v: RunSpec.from_dict({"bank": {"redact": v}}),
])
def test_an_unknown_redactor_name_is_a_config_error_naming_it(make):
    with pytest.raises(ConfigError, match=r"redact: unknown redactor 'no-such-redactor'.*registered: .*secrets"):
        make("no-such-redactor")
    with pytest.raises(ConfigError, match="secrest.*did you mean 'secrets'"):
        make("secrets+secrest")
    with pytest.raises(ConfigError, match="redactor 'no_such_module_xyz:fn': cannot import module"):
        make("no_such_module_xyz:fn")


def test_secrets_redactor_catches_the_documented_formats():
    r = redaction.redact_secrets
    cases = {
        f"key {SECRET_KEY} end": "key [REDACTED:api-key] end",
        "Authorization: Bearer abcdefghijklmnop1234": "Authorization: [REDACTED:credential]",
        "header Bearer abcdefghijklmnop1234": "header Bearer [REDACTED:token]",
        f"id {AWS_KEY}": "id [REDACTED:aws-access-key-id]",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY": "AWS_SECRET_ACCESS_KEY=[REDACTED:credential]",
        f"password={SECRET_PW}&user=ann": "password=[REDACTED:credential]&user=ann",
        '{"api_key": "abc", "x": 1}': '{"api_key": "[REDACTED:credential]", "x": 1}',
        "postgres://ann:s3cret@db:5432/x": "postgres://ann:[REDACTED:password]@db:5432/x",
        "ghp_" + "a" * 36: "[REDACTED:github-token]",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sflKxwRJSMeKKF2QT4fw": "[REDACTED:jwt]",
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----": "[REDACTED:private-key]",
    }
    for text, want in cases.items():
        assert r(text) == want, text
    for clean in ("sort [3, 1, 2] ascending", "max_tokens: 256", "the bearer of news", "use sk-learn-style names",
                  "mail ann@example.com"):
        assert r(clean) == clean
    assert redaction.resolve_redactor("secrets+email")("mail ann@example.com") == "mail [REDACTED:email]"
    assert r(r(f"token={SECRET_PW}")) == r(f"token={SECRET_PW}")   # idempotent


# ---- redaction: telemetry --------------------------------------------------------------------
def test_a_secret_never_reaches_a_span_attribute_event_or_status():
    tel = Telemetry(TelemetryConfig(traces_exporter="memory", redact="secrets"))
    with pytest.raises(RuntimeError):
        with tel.span("task", attributes={"task.text": f"use {SECRET_KEY}", "tasks": 3}) as sp:
            sp.set_attribute("output", f"password={SECRET_PW}")
            sp.set_attribute("tags", ["plain", AWS_KEY])
            raise RuntimeError(f"executor failed on prompt 'use {SECRET_KEY}'")
    span = tel.begin("execute", attributes={"prompt": f"Bearer {SECRET_PW}-0123456789"})
    span.end()
    spans = tel.memory_spans()
    dump = repr([(dict(s.attributes), [dict(e.attributes) for e in s.events], s.status.description) for s in spans])
    for s in (SECRET_KEY, SECRET_PW, AWS_KEY):
        assert s not in dump
    task = next(s for s in spans if s.name == "task")
    assert task.attributes["tasks"] == 3 and task.attributes["tags"] == ("plain", "[REDACTED:aws-access-key-id]")
    assert "[REDACTED:api-key]" in task.events[0].attributes["exception.message"]
    tel.shutdown()
    # actors: spans are redacted before they are relayed to the driver
    relay = Telemetry(TelemetryConfig(traces_exporter="memory", redact="secrets"), relay=True)
    with relay.span("task", attributes={"task.text": f"use {SECRET_KEY}"}):
        pass
    (d,) = relay.relay_drain()
    assert d["attributes"]["task.text"] == "use [REDACTED:api-key]"
    relay.shutdown()


def test_telemetry_without_redaction_exports_attributes_unchanged():
    tel = Telemetry(TelemetryConfig(traces_exporter="memory"))
    assert TelemetryConfig().redact == "none"
    with tel.span("task", attributes={"task.text": f"use {SECRET_KEY}"}):
        pass
    assert tel.memory_spans()[0].attributes["task.text"] == f"use {SECRET_KEY}"
    tel.shutdown()
