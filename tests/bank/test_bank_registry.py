"""Bank backends behind a registry (swarm_sona.bank.backend): a backend registered from outside the
package (here: this test module) opens a bank, by name, by URL scheme and by import path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from swarm_sona.bank import ReasoningBank
from swarm_sona.bank.backend import (
    BackendSpec,
    StoredPoint,
    UnknownBackendError,
    backend_spec,
    register_backend,
    registered_backends,
    unregister_backend,
)
from swarm_sona.bank.config import ReasoningBankConfig
from swarm_sona.bank.errors import BankInputError
from swarm_sona.bank.filters import Condition
from swarm_sona.bank.location import bank_config, parse_bank_location
from swarm_sona.core.config import ConfigError


def _meets(payload: dict[str, Any], conditions: Sequence[Condition]) -> bool:
    for c in conditions:
        v = payload.get(c.key)
        if c.kind == "match" and v != c.value:
            return False
        if c.kind == "any" and v not in c.value:
            return False
        if c.kind == "range":
            if v is None:
                return False
            lo, hi = c.value.get("gte"), c.value.get("lte")
            if (lo is not None and v < lo) or (hi is not None and v > hi) \
                    or ("gt" in c.value and not v > c.value["gt"]) or ("lt" in c.value and not v < c.value["lt"]):
                return False
    return True


class DictBackend:
    """A tiny in-memory bank backend: points in a dict, exact cosine search."""

    kind = "dict"
    opened: list[str] = []   # class-level: what the registry built (observed by the tests)

    def __init__(self, name: str) -> None:
        self.location = f"mem://{name}"
        self.points: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self.meta: dict[str, Any] | None = None
        DictBackend.opened.append(self.location)

    def read_meta(self) -> dict[str, Any] | None:
        return self.meta

    def open(self, meta: dict[str, Any]) -> None:
        self.meta = self.meta or dict(meta)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        for i, pid in enumerate(ids):
            self.points[pid] = (np.asarray(vectors[i], np.float32).copy(), dict(payloads[i]))

    def set_payload(self, ids: Sequence[str], fields: dict[str, Any]) -> None:
        for pid in ids:
            if pid in self.points:
                self.points[pid][1].update(fields)

    def delete(self, ids: Sequence[str]) -> None:
        for pid in ids:
            self.points.pop(pid, None)

    def _pt(self, pid: str, with_vectors: bool, score: float | None = None) -> StoredPoint:
        v, pl = self.points[pid]
        return StoredPoint(pid, dict(pl), v.copy() if with_vectors else None, score)

    def retrieve(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[StoredPoint]:
        return [self._pt(i, with_vectors) for i in ids if i in self.points]

    def search(self, vector: np.ndarray, limit: int, conditions: Sequence[Condition], *,
               with_vectors: bool = False, exact: bool = False) -> list[StoredPoint]:
        hits = [(float(v @ vector), pid) for pid, (v, pl) in self.points.items() if _meets(pl, conditions)]
        hits.sort(key=lambda h: -h[0])
        return [self._pt(pid, with_vectors, s) for s, pid in hits[:limit]]

    def scroll(self, *, batch: int = 1024, with_vectors: bool = True) -> Iterator[list[StoredPoint]]:
        ids = sorted(self.points)
        for lo in range(0, len(ids), batch):
            yield [self._pt(i, with_vectors) for i in ids[lo:lo + batch]]

    def count(self, conditions: Sequence[Condition] = ()) -> int:
        return sum(1 for _, pl in self.points.values() if _meets(pl, conditions))

    def clear(self) -> None:
        self.points.clear()

    def optimize(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def dict_factory(cfg: Any, client: Any = None) -> DictBackend:
    """The registry factory: one in-memory store per config url (or 'default')."""
    return DictBackend((cfg.url or "mem://default").split("://", 1)[-1])


dict_factory.single_owner = False   # type: ignore[attr-defined]   # read when named by import path

DICT_SPEC = BackendSpec("dict", dict_factory, single_owner=True, schemes=("mem",),
                        description="in-memory dict (tests)")


@pytest.fixture
def dict_backend() -> Iterator[BackendSpec]:
    spec = register_backend(DICT_SPEC)
    try:
        yield spec
    finally:
        unregister_backend("dict")


def test_a_backend_registered_outside_the_package_opens_a_bank(dict_backend):
    DictBackend.opened.clear()
    with ReasoningBank({"backend": "dict", "cache_size": 0}, embedder="hashing-v1-32") as bank:
        pid = bank.store_pattern("parse a csv file", "", "csv.DictReader", 0.9, True, task_type="data")
        bank.store_pattern("bake bread", "", "oven", 0.4, False)
        assert isinstance(bank.backend, DictBackend) and DictBackend.opened == ["mem://default"]
        assert bank.stats()["backend"] == "dict" and bank.count() == 2
        assert [p.id for p in bank.retrieve_patterns("parse the csv", k=1, task_type="data")] == [pid]
        assert bank.count(min_reward=0.5) == 1
    assert "dict" in registered_backends()


def test_a_url_scheme_maps_to_the_registered_backend(dict_backend):
    loc = parse_bank_location("mem://shared")
    assert (loc.backend, loc.url, loc.path) == ("dict", "mem://shared", None)
    cfg = bank_config("mem://shared")
    assert (cfg.backend, cfg.url) == ("dict", "mem://shared")
    assert bank_config({"url": "mem://x"}).backend == "dict"   # a url without backend: the scheme's
    DictBackend.opened.clear()
    with ReasoningBank(cfg, embedder="hashing-v1-16") as bank:
        assert bank.backend.location == "mem://shared"
    assert backend_spec("dict").single_owner is True


def test_without_the_registration_the_scheme_is_refused():
    with pytest.raises(BankInputError, match="scheme 'mem' names no registered bank backend"):
        parse_bank_location("mem://shared")


def test_an_unknown_backend_name_lists_the_registered_ones(dict_backend):
    with pytest.raises(UnknownBackendError, match=r"unknown bank backend 'dikt' \(did you mean 'dict'\?\); "
                                                  r"registered: edge, qdrant, dict"):
        backend_spec("dikt")
    with pytest.raises(ConfigError, match=r"reasoning_bank.backend: unknown bank backend 'qdrnt'.*registered: edge, "
                                          r"qdrant, dict"):
        ReasoningBankConfig(backend="qdrnt")


def test_a_backend_by_import_path_resolves_in_any_process():
    """'package.module:Factory' in a config: a Ray worker imports it itself; single_owner from the factory."""
    ref = f"{__name__}:dict_factory"
    try:
        cfg = ReasoningBankConfig(backend=ref, cache_size=0)
        spec = backend_spec(ref)
        assert spec.single_owner is False and ref in registered_backends()
        with ReasoningBank(cfg, embedder="hashing-v1-16") as bank:
            bank.store_pattern("t", "", "o", 1.0, True)
            assert isinstance(bank.backend, DictBackend) and bank.count() == 1
    finally:
        unregister_backend(ref)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_pkg_xyz.mod'"):
        ReasoningBankConfig(backend="no_such_pkg_xyz.mod:Factory")
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        ReasoningBankConfig(backend=f"{__name__}:missing")


def test_registry_guards_built_ins_names_and_schemes(dict_backend):
    with pytest.raises(BankInputError, match="built in"):
        register_backend("edge", dict_factory)
    with pytest.raises(BankInputError, match="already registered"):
        register_backend(DICT_SPEC)
    with pytest.raises(BankInputError, match=r"scheme\(s\) \['mem'\] already name another backend"):
        register_backend("dict2", dict_factory, schemes=["mem"])
    with pytest.raises(BankInputError, match="directory paths already name backend 'edge'"):
        register_backend("dict3", dict_factory, takes_path=True)
    with pytest.raises(BankInputError, match="client= is only for a backend that accepts one"):
        ReasoningBank({"backend": "dict"}, embedder="hashing-v1-16", client=object())
    with pytest.raises(BankInputError, match="built in and cannot be removed"):
        unregister_backend("qdrant")
