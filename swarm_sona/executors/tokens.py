"""Token counts of chat texts, close to (not equal to) a real BPE count.

:func:`count_tokens` splits text into GPT-style pre-tokenizer pieces and counts one more token
per 6 characters of a long piece; :func:`count_chat_tokens` adds 4 tokens of overhead per
message plus 3 per reply, as OpenAI's cookbook counts chat messages. The replay endpoint reports
these counts in ``usage``; the rate limiter estimates a request's tokens with them before it is
sent (tokens/min budgets).

Example:
    >>> from swarm_sona.executors.tokens import count_tokens
    >>> count_tokens("The answer is (B) Glomerulus.")
    9
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["count_tokens", "count_chat_tokens"]

_PIECE = re.compile(r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]+|\s+(?!\S)|\s+""", re.UNICODE)


def count_tokens(text: str) -> int:
    """Approximate BPE token count of ``text``: GPT-style pieces, one more token per 6 characters of a long piece.

    Example:
        >>> count_tokens("The answer is (B) Glomerulus."), count_tokens("")
        (9, 0)
    """
    return sum(1 + (len(p.strip() or p) - 1) // 6 for p in _PIECE.findall(text))


def count_chat_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens of chat ``messages``: each message's content + 4, plus 3 for the reply's start.

    Example:
        >>> count_chat_tokens([{"role": "user", "content": "Hi there"}])
        9
    """
    total = 3
    for m in messages:
        content = m.get("content", "")
        total += 4 + count_tokens(content if isinstance(content, str) else json.dumps(content))
    return total
