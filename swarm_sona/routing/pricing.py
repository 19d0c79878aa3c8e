"""What a model costs for a task and how fast it is: prices, token estimates, spend, speeds.

Estimates. ``cost_unit='1m_tokens'`` (the default, the guide's published prices):
``cost * tokens / 1e6`` with ``tokens = ceil(len(task text) / chars_per_token)`` input tokens
plus the model's ``expected_output_tokens`` (default: the router's ``output_tokens``, 256)
(:func:`estimate_tokens`); a task routed by its embedding alone (no text) counts the output
tokens only. ``cost_unit='call'``: the cost itself.

Spend (:meth:`Pricing.spend`): what an executor's outcome reports (``cost_usd``); when it reports
nothing, a token-priced model's ``usage`` (``prompt_tokens`` + ``completion_tokens`` of the
response, in ``Outcome.metadata["usage"]``) at the model's price. :meth:`Pricing.price` gives an
outcome with that spend as its ``cost_usd``: the one way every attempt is priced (the engine's
cascade, :mod:`~swarm_sona.routing.cascade`, and the swarm's retry path,
:func:`~swarm_sona.executors.upgrade.run_with_upgrade`'s ``price``).

Speed: ``speed`` when given, else ``fastest latency / latency_s`` over the models that give a
latency, else 0.5 (unknown).

Example:
    >>> from swarm_sona.routing.config import LLMRouterConfig
    >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "a", "cost": 2.0},
    ...     {"name": "b", "cost": 0.5, "costUnit": "call"}], "output_tokens": 0})
    >>> Pricing(cfg).costs("x" * 400)
    [0.0002, 0.5]
    >>> Pricing(cfg).spend(0, 0.0, {"prompt_tokens": 1000, "completion_tokens": 500})
    0.003
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from swarm_sona.core.executor import Outcome
from swarm_sona.routing.config import LLMRouterConfig, ModelSpec

__all__ = ["estimate_tokens", "usage_tokens", "Pricing", "model_speeds", "format_usd"]


def estimate_tokens(text: str, *, chars_per_token: float = 4.0, output_tokens: int = 0) -> int:
    """Token estimate used with per-1M-token prices: ``ceil(len(text) / chars_per_token) + output_tokens``.

    Example:
        >>> estimate_tokens("x" * 10, chars_per_token=4.0, output_tokens=1)
        4
    """
    return int(math.ceil(len(text) / chars_per_token)) + int(output_tokens)


def usage_tokens(usage: Mapping[str, Any] | None) -> int | None:
    """Tokens of a response's ``usage`` (``prompt_tokens + completion_tokens``, or
    ``total_tokens``); None when it holds no usable count.

    Example:
        >>> usage_tokens({"prompt_tokens": 12, "completion_tokens": 30}), usage_tokens({"total_tokens": "x"})
        (42, None)
    """
    if not isinstance(usage, Mapping):
        return None
    counts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
    if not any(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        counts = [usage.get("total_tokens")]
    good = [c for c in counts if isinstance(c, int) and not isinstance(c, bool) and c >= 0]
    return sum(good) if good else None


def format_usd(v: float) -> str:
    """A cost for a message: ``$`` and four significant digits.

    Example:
        >>> format_usd(0.0123456)
        '$0.01235'
    """
    return f"${v:.4g}"


def model_speeds(models: Sequence[ModelSpec]) -> list[float]:
    """Each model's relative speed in (0, 1]: ``speed``, else fastest latency / its latency, else 0.5.

    Example:
        >>> model_speeds([ModelSpec(name="a", latency_s=1.0), ModelSpec(name="b", latency_s=4.0),
        ...               ModelSpec(name="c"), ModelSpec(name="d", speed=0.9)])
        [1.0, 0.25, 0.5, 0.9]
    """
    known = [m.latency_s for m in models if m.latency_s is not None]
    fastest = min(known) if known else None
    out = []
    for m in models:
        if m.speed is not None:
            out.append(float(m.speed))
        elif m.latency_s is not None and fastest is not None:
            out.append(float(fastest / m.latency_s))
        else:
            out.append(0.5)
    return out


class Pricing:
    """Per-task cost estimates of every model (config order) from a router config, and spend.

    Example:
        >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "a", "cost": 0.25, "costUnit": "call"}]})
        >>> p = Pricing(cfg); p.token_priced, p.costs(None)
        (False, [0.25])
        >>> guide = Pricing(LLMRouterConfig.from_dict({"models": [{"name": "s", "cost": 3.0}]}))
        >>> guide.costs("x" * 3744)      # 936 input + 256 output tokens at $3 per 1M
        [0.003576]
    """

    def __init__(self, config: LLMRouterConfig) -> None:
        self.per_call: list[float] = [float(m.cost) if m.cost_unit == "call" else 0.0 for m in config.models]
        self.per_mtok: list[float] = [float(m.cost) if m.cost_unit == "1m_tokens" else 0.0 for m in config.models]
        self.token_priced = any(c > 0 for c in self.per_mtok)
        self.chars_per_token = float(config.chars_per_token)
        self.output_tokens = int(config.output_tokens)
        self.model_output_tokens: list[int] = [
            self.output_tokens if m.expected_output_tokens is None else int(m.expected_output_tokens)
            for m in config.models]

    def input_tokens(self, text: str) -> int:
        """Estimated input tokens of a task text: ``ceil(len(text) / chars_per_token)``."""
        return estimate_tokens(text, chars_per_token=self.chars_per_token)

    def costs(self, text: str | None) -> list[float]:
        """Estimated USD cost of ``text`` on each model (a new list); ``text`` None (a task given
        by its embedding alone): the expected output tokens only, input tokens unknown."""
        if not self.token_priced:
            return list(self.per_call)
        tin = 0 if text is None else self.input_tokens(text)
        return [c + m * (tin + out) / 1e6
                for c, m, out in zip(self.per_call, self.per_mtok, self.model_output_tokens, strict=True)]

    def spend(self, index: int, cost_usd: float, usage: Mapping[str, Any] | None = None) -> float:
        """USD an attempt on model ``index`` spent: ``cost_usd`` when the executor reports one
        (> 0), else the response ``usage``'s tokens at a token-priced model's price, else 0."""
        if cost_usd > 0 or self.per_mtok[index] <= 0:
            return float(cost_usd)
        tokens = usage_tokens(usage)
        return 0.0 if tokens is None else self.per_mtok[index] * tokens / 1e6

    def price(self, index: int, outcome: Outcome) -> Outcome:
        """``outcome`` of an attempt on model ``index`` with its spend (:meth:`spend`, the usage
        read from ``outcome.metadata["usage"]``) as ``cost_usd``: the same object when that is
        what it reports, else a copy.

        Example:
            >>> p = Pricing(LLMRouterConfig.from_dict({"models": [{"name": "m", "cost": 2.0}]}))
            >>> p.price(0, Outcome("", 1.0, True, metadata={"usage": {"total_tokens": 500}})).cost_usd
            0.001
        """
        usage = outcome.metadata.get("usage") if isinstance(outcome.metadata, Mapping) else None
        spent = self.spend(index, outcome.cost_usd, usage)
        return outcome if spent == outcome.cost_usd else dataclasses.replace(outcome, cost_usd=spent)
