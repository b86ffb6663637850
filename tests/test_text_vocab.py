"""Text normalisation and the vocabulary."""

import pytest

from lit_asr.data.text import normalize_text
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError


@pytest.mark.parametrize("raw, expected", [
    ("床前明月光，疑是地上霜。", "床前明月光疑是地上霜"),
    ("你 好 世 界", "你好世界"),                       # AISHELL-style word spaces vanish
    ("ＡＢＣ１２３！", "abc123"),                     # full-width to half-width
    ("Hello,  World!", "hello world"),
    ("don't stop", "don't stop"),
    ("中文 English 混合", "中文english混合"),
    ("「引号」《书名》", "引号书名"),
    ("   ", ""),
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_vocabulary_roundtrip(tmp_path):
    vocab = Vocabulary.build(["明月光", "明天 好", "月"])
    assert vocab.tokens[:2] == ["<blank>", "<unk>"]
    assert vocab.tokens[2] in ("明", "月")  # most frequent first
    assert "<space>" in vocab.tokens
    path = tmp_path / "vocabulary.txt"
    vocab.save(path)
    again = Vocabulary.load(path)
    assert again.tokens == vocab.tokens
    ids = again.encode("明天 好")
    assert again.decode(ids) == "明天 好"
    assert again.encode("龙")[0] == Vocabulary.unk_id
    assert again.decode(again.encode("明龙")) == "明"
    assert again.count_unknown("明龙龟") == 2


def test_vocabulary_errors(tmp_path):
    with pytest.raises(LitAsrError, match="not found"):
        Vocabulary.load(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("a\nb\n")
    with pytest.raises(LitAsrError, match="starts with"):
        Vocabulary.load(tmp_path / "bad.txt")
