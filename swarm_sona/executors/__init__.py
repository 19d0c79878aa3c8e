"""Executors: what running a task on a model means (see :mod:`swarm_sona.core.executor`).

One module per concept:

* ``simulated``: the zero-latency simulator; ``table``: RouteLLM-style recorded outcomes
  (``TableExecutor``, ``load_routing_table``).
* ``openai_chat``: ``OpenAIChatExecutor`` on any OpenAI-compatible chat-completions endpoint,
  composed of ``prompts`` (request building, the untrusted patterns block), ``errors`` (error
  kinds, HTTP classification), ``retry`` (what is retried, jittered backoff, Retry-After),
  ``usage`` (token pricing, the executor's counters), ``http_pool`` (pooled clients, the I/O
  thread) and ``attempts`` (one call's attempts through the limiter and the retry policy).
* ``limits``: rate limits per model (rpm/tpm token buckets of ``buckets``, leased shares,
  cool-downs by the ``breaker``, fallbacks); ``tokens``: token counts of chat texts.
* ``upgrade``: ``run_with_upgrade``, retry on the next better model of a cascade over a batch.
* ``verifiers/``: reward verifiers, one family per module behind ``verifiers.registry``.
* ``replay/``: the replay endpoint (config, answers, faults, ledger, server).

Example:
    >>> from swarm_sona.executors import Outcome
    >>> Outcome("4", 1.0, True).error_kind is None
    True
"""

from swarm_sona.core.executor import Executor, Outcome, OutcomeError, Task

__all__ = ["Executor", "Outcome", "OutcomeError", "Task"]
