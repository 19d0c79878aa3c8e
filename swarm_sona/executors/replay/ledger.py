"""The replay server's own ledger: requests, tokens, spend, 429s, 5xx and 401s per model, and
(with ``record_in_flight``) a timeline of the requests in flight, summarised by
:func:`in_flight_profile` (where the server's slots were idle: the ramp-up, the steady part and
the drain of a run).

Example:
    >>> from swarm_sona.executors.replay.ledger import Ledger
    >>> led = Ledger()
    >>> led.of("m").requests += 1
    >>> led.to_dict(cap=8)["requests"], led.to_dict(cap=8)["max_concurrency"]
    (1, 8)
    >>> prof = in_flight_profile([(0.0, 1), (0.0, 2), (1.0, 1), (2.0, 0)], cap=2)
    >>> prof.slot_s, prof.span_s, prof.mean_in_flight, prof.utilisation
    (3.0, 2.0, 1.5, 0.75)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

__all__ = ["ModelLedger", "LedgerDict", "Ledger", "InFlightProfile", "in_flight_profile"]


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
    rate_limited: int = 0        # 429 (concurrency cap, requests/min or tokens/min)
    tokens_limited: int = 0      # of those: 429 for tokens/min
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
    tokens_limited: int
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
    timeline: list[tuple[float, int]] | None = None   # (monotonic time, in flight after the change)

    def change(self, delta: int, now: float) -> None:
        """A request admitted (+1) or finished (-1) at ``now``; recorded when there is a timeline."""
        self.in_flight += delta
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.timeline is not None:
            self.timeline.append((now, self.in_flight))

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


@dataclass(frozen=True)
class InFlightProfile:
    """How full the server's ``cap`` slots were over a window (from a ledger's timeline).

    ``start_s`` / ``end_s``: the window (monotonic seconds; by default the first admission to the
    last completion); ``slot_s``: request-seconds served in it; ``utilisation``: ``slot_s /
    (cap * span_s)``; ``ramp_s``: from the window's start until ``full`` x cap first were in
    flight; ``drain_s``: from the last time that many were in flight to the window's end;
    ``steady_in_flight``: the mean in flight between the two; ``first_s``: from the window's start
    to its first event (e.g. dispatch to the first request); ``after_last_s``: from its last
    event to its end (e.g. the last answer to the run's last result); ``bins``: mean in flight
    per ``bin_s`` seconds.

    Example:
        >>> in_flight_profile([(0.0, 1), (1.0, 0)], cap=4, bin_s=0.5).bins
        [1.0, 1.0]
    """

    cap: int
    start_s: float
    end_s: float
    span_s: float
    slot_s: float
    mean_in_flight: float
    utilisation: float
    ramp_s: float
    drain_s: float
    steady_in_flight: float
    first_s: float
    after_last_s: float
    bin_s: float
    bins: list[float]


def _area(events: Sequence[tuple[float, int]], a: float, b: float, level0: int) -> float:
    """The integral of the in-flight step function over [a, b] (``level0`` in flight before the first event)."""
    area, level, t = 0.0, level0, a
    for at, n in events:
        if at > b:
            break
        if at > t:
            area += level * (at - t)
            t = at
        level = n
    return area + level * max(0.0, b - t)


def in_flight_profile(events: Sequence[tuple[float, int]], cap: int, *, start: float | None = None,
                      end: float | None = None, bin_s: float = 0.25, full: float = 0.9) -> InFlightProfile:
    """Summarise a timeline of ``(time, in flight after the change)`` (see :class:`InFlightProfile`).

    Example:
        >>> p = in_flight_profile([(0.0, 1), (0.5, 2), (1.5, 1), (2.0, 0)], cap=2, bin_s=1.0)
        >>> p.ramp_s, p.drain_s, p.bins
        (0.5, 0.5, [1.5, 1.5])
    """
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"in_flight_profile: cap must be an integer >= 1, got {cap!r}")
    if not (isinstance(bin_s, (int, float)) and math.isfinite(bin_s) and bin_s > 0):
        raise ValueError(f"in_flight_profile: bin_s must be a positive number, got {bin_s!r}")
    if not events:
        return InFlightProfile(cap, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, float(bin_s), [])
    ev = sorted(events, key=lambda e: e[0])
    a = ev[0][0] if start is None else float(start)
    b = ev[-1][0] if end is None else float(end)
    before = [n for t, n in ev if t < a]
    level0 = before[-1] if before else 0
    inside = [(t, n) for t, n in ev if a <= t <= b]
    span = max(0.0, b - a)
    slot = _area(inside, a, b, level0)
    need = full * cap
    at_full = [t for t, n in inside if n >= need]
    t_full0 = at_full[0] if at_full else b
    t_full1 = at_full[-1] if at_full else b
    if at_full:   # the last full moment lasts until the next event
        later = [t for t, _ in inside if t > t_full1]
        t_full1 = later[0] if later else b
    steady_span = max(0.0, t_full1 - t_full0)
    steady = _area(inside, t_full0, t_full1, _level_at(ev, t_full0, level0)) / steady_span if steady_span else 0.0
    edges = [a + i * bin_s for i in range(max(1, math.ceil(span / bin_s)) + 1)]
    bins = [round(_area(inside, lo, min(hi, b), _level_at(ev, lo, level0)) / max(1e-12, min(hi, b) - lo), 3)
            for lo, hi in zip(edges, edges[1:], strict=False) if min(hi, b) > lo]
    return InFlightProfile(cap, a, b, round(span, 6), round(slot, 6), round(slot / span, 4) if span else 0.0,
                           round(slot / (cap * span), 4) if span else 0.0, round(t_full0 - a, 6),
                           round(b - t_full1, 6), round(steady, 3),
                           round(inside[0][0] - a, 6) if inside else round(span, 6),
                           round(b - inside[-1][0], 6) if inside else round(span, 6), float(bin_s), bins)


def _level_at(events: Sequence[tuple[float, int]], t: float, level0: int) -> int:
    """In flight just before time ``t`` (events at ``t`` not yet applied)."""
    level = level0
    for at, n in events:
        if at >= t:
            break
        level = n
    return level
