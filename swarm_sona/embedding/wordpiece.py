"""BERT WordPiece tokenisation in pure Python (what ``BertTokenizer`` of an uncased model does).

Two stages, as in BERT:

1. Basic tokenisation: drop control characters, NUL and U+FFFD, turn every whitespace
   character into a space, surround each CJK ideograph with spaces, lower-case and strip
   accents (NFD, combining marks removed) when ``lowercase``, split on whitespace, then split
   every punctuation character (ASCII symbols and Unicode categories ``P*``) off as its own
   token.
2. WordPiece: each token is cut greedily longest-match-first into vocabulary pieces,
   continuation pieces prefixed with ``##``; a token that cannot be cut, or that is longer
   than ``max_chars_per_word`` characters, becomes ``[UNK]``.

:meth:`WordPieceTokenizer.encode` adds ``[CLS]`` and ``[SEP]`` and truncates to
``max_length`` ids (special tokens included); :meth:`~WordPieceTokenizer.encode_batch`
pads a batch to its longest row and returns the attention mask beside the ids.

Example:
    >>> tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "un", "##aff", "##able", "!"])
    >>> tok.tokenize("Héllo, unaffable WORLD!")
    ['hello', '[UNK]', 'un', '##aff', '##able', 'world', '!']
    >>> tok.encode("hello world")
    [2, 4, 5, 3]
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["WordPieceTokenizer", "TokenizerError", "BatchEncoding", "basic_tokenize"]


class TokenizerError(ValueError):
    """A tokenizer cannot be built from what it was given, or was given bad input."""


@dataclass(frozen=True)
class BatchEncoding:
    """A padded batch: ``ids`` and ``mask`` are int64 ``(n, length)``; ``mask`` is 1 on real tokens."""

    ids: np.ndarray
    mask: np.ndarray


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _clean(text: str) -> str:
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(" " if _is_whitespace(ch) else ch)
    return "".join(out)


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_punctuation(word: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    for ch in word:
        if _is_punctuation(ch):
            if current:
                pieces.append("".join(current))
                current = []
            pieces.append(ch)
        else:
            current.append(ch)
    if current:
        pieces.append("".join(current))
    return pieces


def basic_tokenize(text: str, *, lowercase: bool = True, strip_accents: bool | None = None) -> list[str]:
    """BERT's basic tokenisation of ``text`` (stage 1 of the module docs).

    ``strip_accents`` None follows ``lowercase`` (as BERT's uncased models do).

    Example:
        >>> basic_tokenize("Don't  panic: Ünïcode 中文!")
        ['don', "'", 't', 'panic', ':', 'unicode', '中', '文', '!']
    """
    if not isinstance(text, str):
        raise TokenizerError(f"text must be a str, got {type(text).__name__}")
    strip = lowercase if strip_accents is None else strip_accents
    out: list[str] = []
    for word in _clean(text).split():
        if lowercase:
            word = word.lower()
        if strip:
            word = _strip_accents(word)
        out.extend(_split_punctuation(word))
    return out


class WordPieceTokenizer:
    """BERT WordPiece tokenizer over a vocabulary (token list in id order, or token -> id).

    Build it from a BERT ``vocab.txt`` (:meth:`from_vocab_file`) or from the ``model.vocab`` of a
    Hugging Face ``tokenizer.json`` (:meth:`from_tokenizer_json`). The vocabulary must hold
    ``[UNK]``, ``[CLS]``, ``[SEP]`` and ``[PAD]``. Memoises the pieces of each word it has seen
    (bounded), so repeated words cost a dictionary look-up.

    Example:
        >>> tok = WordPieceTokenizer({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "##b": 5}, max_length=4)
        >>> tok.encode("ab a a")  # truncated to 4 ids, [SEP] kept
        [2, 4, 5, 3]
        >>> b = tok.encode_batch(["a", "ab"]); b.ids.tolist(), b.mask.tolist()
        ([[2, 4, 3, 0], [2, 4, 5, 3]], [[1, 1, 1, 0], [1, 1, 1, 1]])
    """

    _MEMO_MAX = 200_000

    def __init__(self, vocab: Mapping[str, int] | Sequence[str], *, lowercase: bool = True,
                 strip_accents: bool | None = None, max_length: int = 256, max_chars_per_word: int = 100) -> None:
        if isinstance(vocab, Mapping):
            self.vocab = {str(k): int(v) for k, v in vocab.items()}
        elif isinstance(vocab, Sequence) and not isinstance(vocab, str):
            self.vocab = {str(t): i for i, t in enumerate(vocab)}
        else:
            raise TokenizerError(f"vocab must be a token list or a token -> id mapping, got {type(vocab).__name__}")
        missing = [t for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]") if t not in self.vocab]
        if missing:
            raise TokenizerError(f"vocabulary lacks the special token(s) {missing}")
        for name, v in (("max_length", max_length), ("max_chars_per_word", max_chars_per_word)):
            if isinstance(v, bool) or not isinstance(v, int) or v < (3 if name == "max_length" else 1):
                raise TokenizerError(f"{name} must be an integer >= {3 if name == 'max_length' else 1}, got {v!r}")
        self.lowercase = bool(lowercase)
        self.strip_accents = strip_accents
        self.max_length = max_length
        self.max_chars_per_word = max_chars_per_word
        self.unk_id, self.cls_id = self.vocab["[UNK]"], self.vocab["[CLS]"]
        self.sep_id, self.pad_id = self.vocab["[SEP]"], self.vocab["[PAD]"]
        self._memo: dict[str, list[int]] = {}
        self._inv: dict[int, str] | None = None

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kw: object) -> WordPieceTokenizer:
        """A tokenizer from a BERT ``vocab.txt`` (one token per line, line number = id)."""
        p = Path(path)
        if not p.is_file():
            raise TokenizerError(f"vocab file {p} does not exist")
        tokens = p.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        return cls(tokens, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_tokenizer_json(cls, data: bytes | str | Path, **kw: object) -> WordPieceTokenizer:
        """A tokenizer from a Hugging Face ``tokenizer.json`` (its bytes or its path) of a WordPiece model;
        lower-casing, accent stripping and the per-word limit follow the file unless given."""
        raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
        try:
            doc = json.loads(raw)
            model = doc["model"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenizerError(f"not a tokenizer.json with a 'model' section: {exc}") from exc
        if model.get("type") != "WordPiece":
            raise TokenizerError(f"tokenizer.json model is {model.get('type')!r}, expected 'WordPiece'")
        norm = doc.get("normalizer") or {}
        kw.setdefault("lowercase", bool(norm.get("lowercase", True)))
        kw.setdefault("strip_accents", norm.get("strip_accents"))
        kw.setdefault("max_chars_per_word", int(model.get("max_input_chars_per_word", 100)))
        return cls(model["vocab"], **kw)  # type: ignore[arg-type]

    def _word_ids(self, word: str) -> list[int]:
        hit = self._memo.get(word)
        if hit is not None:
            return hit
        ids: list[int] = []
        if len(word) > self.max_chars_per_word:
            ids = [self.unk_id]
        else:
            start, n = 0, len(word)
            while start < n:
                end, found = n, -1
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    found = self.vocab.get(piece, -1)
                    if found >= 0:
                        break
                    end -= 1
                if found < 0:
                    ids = [self.unk_id]
                    break
                ids.append(found)
                start = end
        if len(self._memo) < self._MEMO_MAX:
            self._memo[word] = ids
        return ids

    def token_ids(self, text: str) -> list[int]:
        """The WordPiece ids of ``text`` without special tokens and without truncation."""
        out: list[int] = []
        for w in basic_tokenize(text, lowercase=self.lowercase, strip_accents=self.strip_accents):
            out.extend(self._word_ids(w))
        return out

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` (strings, no special tokens)."""
        if self._inv is None:
            self._inv = {v: k for k, v in self.vocab.items()}
        return [self._inv[i] for i in self.token_ids(text)]

    def encode(self, text: str) -> list[int]:
        """``[CLS] ids [SEP]``, the ids truncated so that the whole is at most ``max_length`` long."""
        ids = self.token_ids(text)[: self.max_length - 2]
        return [self.cls_id, *ids, self.sep_id]

    def encode_batch(self, texts: Sequence[str]) -> BatchEncoding:
        """Encode ``texts`` and pad them with ``[PAD]`` to the longest (ids + attention mask)."""
        if isinstance(texts, str):
            raise TokenizerError("encode_batch() takes a list of texts, not a single string")
        rows = [self.encode(t) for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return BatchEncoding(ids, mask)
