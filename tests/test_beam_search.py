"""CTC beam search: agrees with greedy without an LM, and an n-gram LM changes the choice between homophones."""

from __future__ import annotations

import numpy as np
import pytest

from lit_asr.data.text import normalize_text
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.decoding.beam_search import BeamSearchDecoder, is_character_vocabulary
from lit_asr.decoding.lm import build_arpa, tokenize_for_lm
from lit_asr.errors import LitAsrError

pytest.importorskip("kenlm")
pytest.importorskip("pyctcdecode")

MANDARIN = Vocabulary(["<blank>", "<unk>", "明", "名", "月", "天", "亮", "字", "今", "晚", "的", "很"])
ENGLISH = Vocabulary(["<blank>", "<unk>", "<space>", *"abcdefghijklmnopqrstuvwxyz'"])


def frames(vocab: Vocabulary, *columns: dict[str, float]) -> np.ndarray:
    """Log-probs with the given probabilities per frame ('' is blank) and a little mass everywhere else."""
    labels = vocab.labels()
    probs = np.full((len(columns), len(labels)), 1e-4)
    for t, column in enumerate(columns):
        for token, p in column.items():
            probs[t, labels.index(token)] = p
    return np.log(probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def spell(vocab: Vocabulary, text: str, ambiguous: dict[int, dict[str, float]] | None = None) -> np.ndarray:
    """Each character for one frame followed by a blank frame; position i may instead get a mixed column."""
    columns = []
    for i, ch in enumerate(text):
        columns += [(ambiguous or {}).get(i, {ch: 0.9}), {"": 0.9}]
    return frames(vocab, *columns)


def decoder(vocab: Vocabulary, lm: str | None = None, **kw) -> BeamSearchDecoder:
    args = dict(alpha=1.0, beta=0.0, beam_size=20, cutoff_prob=1.0, cutoff_top_n=40, num_proc_bsearch=1)
    return BeamSearchDecoder(vocab.labels(), lm, **{**args, **kw})


def greedy(vocab: Vocabulary, log_probs: np.ndarray) -> str:
    best = log_probs.argmax(axis=1)
    keep = np.r_[True, best[1:] != best[:-1]]
    return normalize_text(vocab.decode(best[keep]))


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """Character LMs that know only 明月 or only 名月, and an English word LM."""
    root = tmp_path_factory.mktemp("lms")
    corpora = {
        "ming": ["今晚的明月很亮", "明月很亮", "明天", "今晚明月", "明月"],
        "name": ["今晚的名月很亮", "名月很亮", "名字", "今晚名月", "名月"],
        "english": ["hello world", "hello there world", "the world says hello", "hello"],
    }
    paths = {}
    for name, sentences in corpora.items():
        paths[name] = str(root / f"{name}.arpa")
        build_arpa([tokenize_for_lm(s) for s in sentences], 3, paths[name])
    return paths


def test_vocabulary_mode():
    assert is_character_vocabulary(MANDARIN.labels())
    assert not is_character_vocabulary(ENGLISH.labels())


@pytest.mark.parametrize("vocab", [MANDARIN, ENGLISH], ids=["characters", "letters"])
def test_without_lm_beam_equals_greedy_on_peaked_input(vocab):
    rng = np.random.default_rng(0)
    batch = []
    for _ in range(8):
        ids = rng.integers(0, len(vocab), size=rng.integers(1, 30))
        probs = rng.uniform(0, 0.05, size=(len(ids), len(vocab)))
        probs[np.arange(len(ids)), ids] = 0.8  # includes blank, repeats and <unk>
        batch.append(np.log(probs / probs.sum(axis=1, keepdims=True)))
    got = decoder(vocab).decode_batch(batch)
    assert got == [greedy(vocab, lp) for lp in batch]
    assert any(lp.argmax(axis=1).tolist().count(1) for lp in batch)  # <unk> was in there, and dropped


@pytest.mark.parametrize("lm, expected", [(None, "今晚名月"), ("ming", "今晚明月"), ("name", "今晚名月")])
def test_character_lm_picks_the_homophone_it_knows(lms, lm, expected):
    # acoustics slightly prefer 名 over 明 at the third character
    x = spell(MANDARIN, "今晚X月", {2: {"明": 0.44, "名": 0.46}})
    assert decoder(MANDARIN, lms.get(lm)).decode_batch([x]) == [expected]


def test_character_lm_overrules_the_acoustic_favourite_both_ways(lms):
    favours_name = spell(MANDARIN, "X月", {0: {"明": 0.4, "名": 0.5}})
    favours_ming = spell(MANDARIN, "X月", {0: {"明": 0.5, "名": 0.4}})
    assert decoder(MANDARIN, lms["ming"]).decode_batch([favours_name]) == ["明月"]
    assert decoder(MANDARIN, lms["name"]).decode_batch([favours_ming]) == ["名月"]
    assert decoder(MANDARIN).decode_batch([favours_name, favours_ming]) == ["名月", "明月"]


def test_english_word_lm(lms):
    x = spell(ENGLISH, "hXllo world", {1: {"a": 0.47, "e": 0.43}})
    assert decoder(ENGLISH).decode_batch([x]) == ["hallo world"]
    assert decoder(ENGLISH, lms["english"]).decode_batch([x]) == ["hello world"]
    assert decoder(ENGLISH, lms["english"], alpha=0.0).decode_batch([x]) == ["hallo world"]


def test_mixed_mandarin_english_keeps_english_words_whole(tmp_path):
    texts = ["我用iphone pro拍照", "我用手机拍照", "iphone pro很好", "今天天气很好"]
    vocab = Vocabulary.build(texts)
    lm = tmp_path / "mixed.arpa"
    build_arpa([tokenize_for_lm(t) for t in texts], 3, lm)
    target = "我用iphone pro拍照"
    rng = np.random.default_rng(0)
    probs = np.full((2 * len(target), len(vocab)), 1e-3)
    for t, token in enumerate(vocab.encode(target)):
        probs[2 * t, [token, 0, rng.integers(2, len(vocab))]] += [0.6, 0.2, 0.2]  # a rival at every character
        probs[2 * t + 1, [0, token]] += [0.9, 0.1]
    x = np.log(probs / probs.sum(axis=1, keepdims=True))
    assert decoder(vocab).character_mode
    assert decoder(vocab, beam_size=50).decode_batch([x]) == [target]
    assert decoder(vocab, str(lm), beam_size=50).decode_batch([x]) == [target]


def test_parallel_decoding_matches_sequential(lms):
    rng = np.random.default_rng(1)
    batch = [np.log(rng.dirichlet(np.full(len(MANDARIN), 0.3), size=n)) for n in (5, 40, 17, 0, 33, 8)]
    sequential = decoder(MANDARIN, lms["ming"], beam_size=8).decode_batch(batch)
    with decoder(MANDARIN, lms["ming"], beam_size=8, num_proc_bsearch=2) as parallel:
        assert parallel.decode_batch(batch) == sequential
        assert parallel._pool is not None
        assert parallel.decode_batch(batch[:2]) == sequential[:2]
    assert parallel._pool is None
    assert sequential[3] == ""


def test_cutoffs_mask_like_deepspeech2():
    d = decoder(MANDARIN, cutoff_prob=0.9, cutoff_top_n=3)
    probs = np.array([[0.5, 0.3, 0.15, 0.05] + [0.0] * 8, [0.95, 0.05] + [0.0] * 10]) + 1e-9
    kept = d._prune(np.log(probs)) > -1e3
    assert kept[0].tolist() == [True, True, True] + [False] * 9  # 0.5, 0.8, then 0.95 crosses 0.9
    assert kept[1].tolist() == [True] + [False] * 11
    assert (decoder(MANDARIN, cutoff_top_n=2)._prune(np.log(probs)) > -1e3).sum(axis=1).tolist() == [2, 2]


def test_errors(tmp_path):
    with pytest.raises(LitAsrError, match="language model not found"):
        decoder(MANDARIN, str(tmp_path / "missing.arpa"))
    with pytest.raises(LitAsrError, match="cutoff_prob"):
        decoder(MANDARIN, cutoff_prob=0.0)
    with pytest.raises(LitAsrError, match="log-probs"):
        decoder(MANDARIN).decode_batch([np.zeros((3, 5))])
