"""A replay endpoint: an OpenAI-compatible chat-completions server answering from recorded outcomes.

``swarm-sona replay-server`` (and :class:`ReplayServer` in tests and benchmarks) binds
127.0.0.1 only and speaks the parts of the OpenAI protocol an executor uses:
``POST /v1/chat/completions`` and ``GET /v1/models``; ``GET /ledger`` returns the server's own
count of what it served (``POST /ledger/reset`` zeroes it), so a benchmark can compare the
client's tokens and spend with an independent count.

Answers (:mod:`~swarm_sona.executors.replay.answers`): the last user message is looked up in a
RouteLLM-style table ("did model M solve prompt P"); the reply is the recorded text where the
table has one, else an answer that is right or wrong as recorded (a multiple-choice letter in
prose, keyed by :func:`answer_key`); a judge request is graded against the same key.

``usage`` counts tokens of the actual texts (:mod:`~swarm_sona.executors.tokens`): close to,
not equal to, a real BPE count.

Traffic shaping (:mod:`~swarm_sona.executors.replay.faults`). Latency is lognormal with the
configured median and p99 (``sigma = ln(p99 / median) / 2.326``). At most ``max_concurrency``
requests are served at once; one more is answered ``429`` with ``Retry-After`` at once. With
``rate_limit_rpm`` each model admits that many requests per minute (a token bucket of
``rate_burst``), else ``429`` with ``Retry-After`` = when one would be admitted; with
``rate_limit_tpm`` each model admits that many tokens per minute (prompt + ``max_tokens`` charged
at admission, corrected by the completion's tokens), else ``429`` the same way. A share
``error_rate`` of the admitted requests (``model_error_rates`` per model, 1 = a model that is
down) is answered ``503`` after their latency. With a key configured, a request
without ``Authorization: Bearer <key>`` gets ``401``.

Example:
    >>> import json, urllib.request
    >>> from swarm_sona.executors.replay import ReplayConfig, ReplayServer
    >>> cfg = ReplayConfig(data="tests/data/routellm_slice", latency_median_s=0.01, latency_p99_s=0.02)
    >>> with ReplayServer(cfg) as srv:  # doctest: +SKIP
    ...     models = json.load(urllib.request.urlopen(srv.base_url + "/models"))
    ...     srv.ledger()["requests"]
    0
"""

from __future__ import annotations

from swarm_sona.executors.replay.answers import ReplayAnswers, answer_key, replay_tasks
from swarm_sona.executors.replay.config import ReplayConfig, lognormal_sigma
from swarm_sona.executors.replay.faults import TrafficShaper
from swarm_sona.executors.replay.ledger import InFlightProfile, LedgerDict, ModelLedger, in_flight_profile
from swarm_sona.executors.replay.server import ReplayServer

__all__ = ["ReplayConfig", "ReplayServer", "ReplayAnswers", "TrafficShaper", "ModelLedger", "LedgerDict",
           "answer_key", "replay_tasks", "lognormal_sigma", "InFlightProfile", "in_flight_profile"]
