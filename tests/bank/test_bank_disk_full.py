"""A full disk in the bank's write path, injected: ENOSPC from the log's os.write / os.fsync and
a statvfs reporting little space give the bank's own error (naming the path, "no space left on
device"), and the bank reopens with every write acknowledged before."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from swarm_sona.bank import ReasoningBank, edge_backend, wal
from swarm_sona.bank.errors import BankError, BankFullError


def _items(tag: str, n: int) -> list[dict]:
    return [{"task": f"{tag} task {i}", "output": "o", "reward": 0.9, "success": True} for i in range(n)]


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _open(path):
    return ReasoningBank({"path": str(path)}, embedder="hashing-v1-16")


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_enospc_in_the_log_raises_bank_full_error_and_loses_nothing_acknowledged(tmp_path, monkeypatch, call):
    path = tmp_path / "bank"
    bank = _open(path)
    acked = bank.store_many(_items("before", 20), durable=True)
    with monkeypatch.context() as m:
        m.setattr(wal.os, call, _enospc)
        with pytest.raises(BankFullError) as err:
            bank.store_many(_items("full", 5), durable=True)
    assert isinstance(err.value, BankError) and err.value.errno == errno.ENOSPC
    assert "no space left on device" in str(err.value) and str(path.absolute()) in str(err.value)
    assert all(bank.get(p) is not None for p in acked)
    more = bank.store_many(_items("after", 5), durable=True)      # space back: takes writes again
    bank.close()
    again = _open(path)
    assert all(again.get(p) is not None for p in acked + more)
    again.close()


def test_a_partial_log_write_is_cut_off_so_later_records_stay_readable(tmp_path, monkeypatch):
    path = tmp_path / "bank"
    bank = _open(path)
    real = os.write

    def half(fd, data):   # writes part of the record, then the disk is full
        real(fd, bytes(data[:7]))
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(wal.os, "write", half)
        with pytest.raises(BankFullError):
            bank.store_many(_items("full", 3), durable=True)
    later = bank.store_many(_items("later", 4), durable=True)
    # a crash: the bank is not closed, so only the log holds `later`
    bank.backend.stop()
    bank.backend.log.close()
    bank.backend.engine.close()
    again = _open(path)
    assert all(again.get(p) is not None for p in later)
    assert again.stats()["recovery"]["wal"]["damage"] == []
    again.close()


def test_little_free_space_refuses_engine_writes_before_the_engine_can_crash(tmp_path, monkeypatch):
    path = tmp_path / "bank"
    bank = _open(path)
    acked = bank.store_many(_items("before", 10), durable=True)
    bank.flush()
    real = os.statvfs
    with monkeypatch.context() as m:
        m.setattr(edge_backend.os, "statvfs",
                  lambda p: SimpleNamespace(**{**{k: getattr(real(p), k) for k in ("f_frsize", "f_blocks")},
                                              "f_bavail": 1}))
        with pytest.raises(BankFullError, match="no space left on device") as err:
            bank.backend.engine.upsert(["6f1ed002-ab5d-5c6a-8e6b-4e2b1d3a5e21"], [[1.0] + [0.0] * 15], [{}])
        assert str(path.absolute()) in str(err.value) and "min_free_mb" in str(err.value)
        with pytest.raises(BankFullError):
            bank.flush()
        assert bank.count() == 10
        bank.close()                      # refuses the engine flush, loses nothing (the log keeps it)
        with pytest.raises(BankFullError, match="no space left on device"):
            _open(path)
    again = _open(path)
    assert again.count() == 10 and all(again.get(p) is not None for p in acked)
    again.close()


def test_min_free_mb_is_a_config_field(tmp_path):
    with ReasoningBank({"path": str(tmp_path / "b"), "min_free_mb": 0}, embedder="hashing-v1-16") as bank:
        assert bank.backend.engine.min_free_bytes == 0
