"""ReasoningBank: patterns on Qdrant (embedded Qdrant Edge by default, a Qdrant server at scale).

Modules: :mod:`.bank` (the :class:`ReasoningBank`), :mod:`.pattern` (records, ids, payload
checks), :mod:`.filters`, :mod:`.scoring` (recency/reliability, MMR), :mod:`.cache` (hot-path
cache), :mod:`.loading` (filling it, in the background for a large bank), :mod:`.distill`
(k-means distillation), :mod:`.backend` (the backend interface and registry: a user's backend is
:func:`register_backend`), :mod:`.edge_backend` and :mod:`.qdrant_backend`, :mod:`.metadata` and
:mod:`.migrate` (schema versions of ``bank.json``/``manifest.json``), :mod:`.durability` (when a
write is acknowledged), :mod:`.wal` and :mod:`.logged_backend` (the bank's write-ahead log in front
of the embedded engine), :mod:`.commit` (group commit, manifests).

Example:
    >>> from swarm_sona.bank import ReasoningBank
    >>> with ReasoningBank({"persist_to_disk": False}, embedder="hashing-v1-32") as bank:
    ...     _ = bank.store_pattern("write a unit test", "", "pytest + fixtures", 0.8, True)
    ...     bank.retrieve_patterns("write unit tests")[0].output
    'pytest + fixtures'
"""

from swarm_sona.bank.backend import BackendSpec, register_backend, registered_backends, unregister_backend
from swarm_sona.bank.bank import ReasoningBank
from swarm_sona.bank.edge_backend import default_bank_path
from swarm_sona.bank.errors import (
    BankClosedError,
    BankDimensionError,
    BankError,
    BankInputError,
    BankLockedError,
    BankUnavailableError,
)
from swarm_sona.bank.filters import PatternFilter
from swarm_sona.bank.pattern import Pattern, pattern_id
from swarm_sona.bank.scoring import ScoreWeights

__all__ = [
    "ReasoningBank",
    "BackendSpec",
    "register_backend",
    "unregister_backend",
    "registered_backends",
    "Pattern",
    "PatternFilter",
    "ScoreWeights",
    "pattern_id",
    "default_bank_path",
    "BankError",
    "BankInputError",
    "BankDimensionError",
    "BankLockedError",
    "BankUnavailableError",
    "BankClosedError",
]
