"""What a model costs for a task and how fast it is: prices, token estimates, speeds.

Costs. ``cost_unit='call'``: the cost. ``cost_unit='1m_tokens'``: ``cost * tokens / 1e6`` with
``tokens = ceil(len(text) / chars_per_token) + output_tokens`` (:func:`estimate_tokens`).
Speed: ``speed`` when given, else ``fastest latency / latency_s`` over the models that give a
latency, else 0.5 (unknown).

Example:
    >>> from swarm_sona.routing.config import LLMRouterConfig
    >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "a", "cost": 2.0, "cost_unit": "1m_tokens"},
    ...     {"name": "b", "cost": 0.5}], "output_tokens": 0})
    >>> Pricing(cfg).costs("x" * 400)
    [0.0002, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from swarm_sona.routing.config import LLMRouterConfig, ModelSpec
from swarm_sona.routing.errors import RouterError

__all__ = ["estimate_tokens", "Pricing", "model_speeds", "format_usd"]


def estimate_tokens(text: str, *, chars_per_token: float = 4.0, output_tokens: int = 0) -> int:
    """Token estimate used with per-1M-token prices: ``ceil(len(text) / chars_per_token) + output_tokens``.

    Example:
        >>> estimate_tokens("x" * 10, chars_per_token=4.0, output_tokens=1)
        4
    """
    return int(math.ceil(len(text) / chars_per_token)) + int(output_tokens)


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
    """Per-task cost estimates of every model (config order) from a router config.

    Example:
        >>> cfg = LLMRouterConfig.from_dict({"models": [{"name": "a", "cost": 0.25}]})
        >>> p = Pricing(cfg); p.token_priced, p.costs(None)
        (False, [0.25])
    """

    def __init__(self, config: LLMRouterConfig) -> None:
        self.per_call: list[float] = [float(m.cost) if m.cost_unit == "call" else 0.0 for m in config.models]
        self.per_mtok: list[float] = [float(m.cost) if m.cost_unit == "1m_tokens" else 0.0 for m in config.models]
        self.token_priced = any(c > 0 for c in self.per_mtok)
        self.chars_per_token = float(config.chars_per_token)
        self.output_tokens = int(config.output_tokens)

    def costs(self, text: str | None) -> list[float]:
        """Estimated USD cost of ``text`` on each model (a new list)."""
        if not self.token_priced:
            return list(self.per_call)
        if text is None:
            raise RouterError("per-1M-token prices need the task text to estimate tokens")
        mtok = estimate_tokens(text, chars_per_token=self.chars_per_token, output_tokens=self.output_tokens) / 1e6
        return [c + m * mtok for c, m in zip(self.per_call, self.per_mtok, strict=True)]
