"""The router's exceptions: bad input, no feasible model, exhausted budgets.

Example:
    >>> from swarm_sona.routing.errors import NoModelError
    >>> NoModelError("nothing fits", {"big": ["max_cost: estimated $5 > $1"]}).exclusions
    {'big': ['max_cost: estimated $5 > $1']}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["RouterError", "NoModelError", "BudgetExhaustedError"]


class RouterError(ValueError):
    """The router was built or called with invalid input; the message names what was wrong."""


class NoModelError(RouterError):
    """No model satisfies the constraints (and no fallback may be used).

    ``exclusions`` maps each model to the constraints that excluded it.
    """

    def __init__(self, message: str, exclusions: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(message)
        self.exclusions: dict[str, list[str]] = {k: list(v) for k, v in (exclusions or {}).items()}


class BudgetExhaustedError(NoModelError):
    """The per-task or run budget cannot pay for any model, the fallback included."""
