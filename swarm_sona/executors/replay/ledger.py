"""The replay server's own ledger: requests, tokens, spend, 429s, 5xx and 401s per model.

Example:
    >>> from swarm_sona.executors.replay.ledger import Ledger
    >>> led = Ledger()
    >>> led.of("m").requests += 1
    >>> led.to_dict(cap=8)["requests"], led.to_dict(cap=8)["max_concurrency"]
    (1, 8)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

__all__ = ["ModelLedger", "LedgerDict", "Ledger"]


@dataclass
class ModelLedger:
    """What the server did for one model (or in total).

    Example:
        >>> ModelLedger().rate_limited
        0
    """

    requests: int = 0            # chat-completion requests naming this model, whatever their answer
    ok: int = 0                  # answered 200
    prompt_tokens: int = 0       # of the 200 answers
    completion_tokens: int = 0
    cost_usd: float = 0.0        # tokens * price / 1e6 of the 200 answers
    rate_limited: int = 0        # 429 (concurrency cap or requests/min)
    server_errors: int = 0       # 503
    unauthorized: int = 0        # 401
    unknown_prompts: int = 0     # 200 answers to prompts not in the table


class LedgerDict(TypedDict):
    """``GET /ledger``: totals, per-model ledgers (:class:`ModelLedger` fields) and concurrency."""

    requests: int
    ok: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    rate_limited: int
    server_errors: int
    unauthorized: int
    unknown_prompts: int
    bad_requests: int
    in_flight: int
    max_in_flight: int
    max_concurrency: int
    models: dict[str, dict[str, Any]]


@dataclass
class Ledger:
    """Per-model ledgers, bad requests and the concurrency seen (the server guards it with its lock)."""

    models: dict[str, ModelLedger] = field(default_factory=dict)
    bad_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def of(self, model: str) -> ModelLedger:
        """The ledger of ``model`` (made on first use)."""
        return self.models.setdefault(model, ModelLedger())

    def to_dict(self, cap: int) -> LedgerDict:
        """Totals over the models, the per-model ledgers and the concurrency figures."""
        tot = ModelLedger()
        for m in self.models.values():
            for k, v in asdict(m).items():
                setattr(tot, k, getattr(tot, k) + v)
        d: dict[str, Any] = asdict(tot)
        d.update(bad_requests=self.bad_requests, in_flight=self.in_flight, max_in_flight=self.max_in_flight,
                 max_concurrency=cap, models={k: asdict(v) for k, v in sorted(self.models.items())})
        return LedgerDict(**d)  # type: ignore[typeddict-item]
