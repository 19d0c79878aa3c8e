"""The error the model raises on invalid input, parameter state or head.

Example:
    >>> from swarm_sona.learning.errors import ModelError
    >>> issubclass(ModelError, ValueError)
    True
"""

from __future__ import annotations

__all__ = ["ModelError"]


class ModelError(ValueError):
    """Invalid model input, parameter state or head (the message names what)."""
