"""Sentencepiece tokenizers: CJK characters stay tokens, Latin words become pieces, the checkpoint carries the
model, and training, evaluation and beam search (pyctcdecode's BPE mode, with a word LM) work with them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lit_asr.data.text import normalize_text, space_cjk
from lit_asr.data.tokenizer import SentencePieceVocabulary, load_vocabulary, tokenizer_model, vocabulary_from_checkpoint
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.decoding.beam_search import BeamSearchDecoder
from lit_asr.decoding.greedy import GreedyDecoder
from lit_asr.decoding.lm import build_arpa, tokenize_for_lm
from lit_asr.errors import LitAsrError
from tiny_data import make_tiny_dataset, overrides

ROOT = Path(__file__).resolve().parents[1]
MIXED = ["我用iphone拍照", "the phone is new", "我的 phone 很新", "new photos of the moon", "今晚的月亮很亮",
         "phones and photos", "the moon is bright tonight", "他买了新的iphone"] * 5


@pytest.fixture(scope="module")
def bpe() -> SentencePieceVocabulary:
    return SentencePieceVocabulary.train([normalize_text(t) for t in MIXED], "bpe", 60)


def test_space_cjk_makes_each_cjk_character_a_word():
    assert space_cjk("我用iphone拍照") == "我 用 iphone 拍 照"
    assert space_cjk("the moon") == "the moon"


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_cjk_characters_stay_single_tokens_and_latin_words_become_pieces(model_type):
    vocab = SentencePieceVocabulary.train([normalize_text(t) for t in MIXED], model_type, 60)
    assert vocab.tokens[:2] == ["<blank>", "<unk>"]
    for text in ("我用iphone拍照", "the phone is new", "他买了新的iphone"):
        ids = vocab.encode(normalize_text(text))
        pieces = [vocab.tokens[i] for i in ids]
        cjk_pieces = [p.lstrip("\u2581") for p in pieces if any("\u4e00" <= ch <= "\u9fff" for ch in p)]
        assert all(len(p) == 1 for p in cjk_pieces), pieces
        assert normalize_text(vocab.decode(ids)) == normalize_text(text)
    assert any(len(p.lstrip("\u2581")) > 1 for p in vocab.tokens[2:]), "no multi-letter piece was learnt"
    assert vocab.count_unknown("月亮") == 0 and vocab.count_unknown("龍") == 1


def test_greedy_text_of_pieces_is_the_normalised_text(bpe):
    text = "我的 phone 很新"
    ids = bpe.encode(normalize_text(text))
    log_probs = np.full((2 * len(ids), len(bpe)), -20.0, dtype=np.float32)
    for t, i in enumerate(ids):
        log_probs[2 * t, i] = 0.0
        log_probs[2 * t + 1, bpe.blank_id] = 0.0
    assert GreedyDecoder(bpe.labels()).decode_batch([log_probs]) == [normalize_text(text)]


def test_beam_search_with_pieces_agrees_with_greedy_and_a_word_lm_flips_an_ambiguous_word(bpe, tmp_path):
    ids = bpe.encode("the moon is new")
    labels = bpe.labels()
    assert labels[ids[-1]] == "\u2581new" and "\u2581phone" in labels
    log_probs = np.full((2 * len(ids), len(labels)), np.log(1e-4), dtype=np.float32)
    for t, i in enumerate(ids):
        log_probs[2 * t, i] = np.log(0.9)
        log_probs[2 * t + 1, 0] = np.log(0.9)
    # The last word sounds more like "phone" than "new" to the acoustic model.
    log_probs[-2, ids[-1]] = np.log(0.4)
    log_probs[-2, labels.index("\u2581phone")] = np.log(0.5)
    log_probs -= np.logaddexp.reduce(log_probs, axis=1, keepdims=True)
    args = dict(alpha=1.0, beta=0.0, beam_size=20, cutoff_prob=1.0, cutoff_top_n=40, num_proc_bsearch=1)
    with BeamSearchDecoder(labels, None, **args) as plain:
        assert plain.decode_batch([log_probs]) == ["the moon is phone"]
    assert GreedyDecoder(labels).decode_batch([log_probs]) == ["the moon is phone"]
    lm = tmp_path / "words.arpa"
    build_arpa([tokenize_for_lm(t) for t in ["the moon is new", "the phone is new", "the moon"]], 2, lm)
    with BeamSearchDecoder(labels, str(lm), **args) as with_lm:
        assert with_lm.decode_batch([log_probs]) == ["the moon is new"]


def test_checkpoint_carries_the_tokenizer_model(bpe):
    again = vocabulary_from_checkpoint(bpe.tokens, tokenizer_model(bpe))
    assert isinstance(again, SentencePieceVocabulary) and again.encode("我用iphone") == bpe.encode("我用iphone")
    assert tokenizer_model(Vocabulary(["<blank>", "<unk>", "a"])) is None
    with pytest.raises(LitAsrError, match="disagree"):
        vocabulary_from_checkpoint(bpe.tokens[:-1], tokenizer_model(bpe))


def test_load_vocabulary_checks_the_tokenizer_setting(bpe, tmp_path):
    bpe.save(tmp_path / "tokenizer.model")
    assert isinstance(load_vocabulary(tmp_path / "tokenizer.model", "bpe"), SentencePieceVocabulary)
    with pytest.raises(LitAsrError, match="set tokenizer=bpe"):
        load_vocabulary(tmp_path / "tokenizer.model", "char")
    (tmp_path / "broken.model").write_bytes(b"not a model")
    with pytest.raises(LitAsrError, match="not a sentencepiece model"):
        load_vocabulary(tmp_path / "broken.model")


def test_train_and_evaluate_with_a_bpe_tokenizer(tmp_path):
    paths = make_tiny_dataset(tmp_path / "data")
    texts = [json.loads(line)["text"] for line in paths["train_manifest"].read_text(encoding="utf-8").splitlines()]
    SentencePieceVocabulary.train(texts, "bpe", 200).save(tmp_path / "data" / "tokenizer.model")
    paths["dataset_vocab"] = tmp_path / "data" / "tokenizer.model"
    fast = {"model.rnn_size": 32, "model.num_rnn_layers": 1, "model.conv_channels": "[8,8]", "augment": "none",
            "logger": "none", "tokenizer": "bpe", "num_epoch": 1}
    cmd = [sys.executable, str(ROOT / "run.py")]
    train = subprocess.run(cmd + overrides(paths, tmp_path, **fast), capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "cer:" in train.stderr + train.stdout
    # Evaluation needs no tokenizer file: the checkpoint carries it.
    paths["dataset_vocab"] = tmp_path / "gone.model"
    ev = subprocess.run(cmd + overrides(paths, tmp_path, **fast, task="eval", **{"hydra.run.dir": tmp_path / "ev"}),
                        capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    result = json.loads((tmp_path / "ev" / "result.json").read_text())
    assert 0.0 <= result["cer"] and result["utterances"] > 0
