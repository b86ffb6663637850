"""The ARPA builder: a proper distribution for every context, readable by KenLM, and a useful character LM."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from lit_asr.decoding.lm import build_arpa, read_arpa_unigrams, tokenize_for_lm

kenlm = pytest.importorskip("kenlm")

REPO = Path(__file__).resolve().parent.parent
CORPUS = [
    "the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the cat saw the dog",
    "on the mat sat a cat", "the log", "dog", "a dog saw a cat on the log", "the the cat",
]


def read_arpa(path: Path) -> tuple[dict, dict, int]:
    """log10 probabilities and backoffs by n-gram tuple, and the order."""
    probs, backoffs, order = {}, {}, 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.endswith("-grams:"):
            order = int(line[1:].split("-")[0])
        elif order and line and not line.startswith("\\"):
            fields = line.split("\t")
            gram = tuple(fields[1].split())
            probs[gram] = float(fields[0])
            if len(fields) == 3:
                backoffs[gram] = float(fields[2])
    return probs, backoffs, order


def log10_prob(model: tuple[dict, dict, int], history: tuple, word: str) -> float:
    """The ARPA backoff formula: the longest known n-gram, plus the backoffs of the longer contexts."""
    probs, backoffs, order = model
    history = tuple(history)[len(history) - (order - 1):] if order > 1 else ()
    for start in range(len(history) + 1):
        if history[start:] + (word,) in probs:
            break
    else:
        return probs[("<unk>",)] + sum(backoffs.get(history[s:], 0.0) for s in range(len(history)))
    return probs[history[start:] + (word,)] + sum(backoffs.get(history[s:], 0.0) for s in range(start))


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "words.arpa"
    build_arpa((s.split() for s in CORPUS), 3, path)
    return path


def test_tokenize_for_lm_splits_cjk_characters_and_keeps_words():
    assert tokenize_for_lm("今天天气") == ["今", "天", "天", "气"]
    assert tokenize_for_lm("don't stop") == ["don't", "stop"]
    assert tokenize_for_lm("我用iphone 12拍照") == ["我", "用", "iphone", "12", "拍", "照"]
    assert tokenize_for_lm("") == []


def test_every_context_is_a_distribution(word_lm):
    model = read_arpa(word_lm)
    probs, _, order = model
    vocab = [g[0] for g in probs if len(g) == 1 and g[0] != "<s>"]
    contexts = [()] + [g for g in probs if len(g) < order and g[-1] not in ("</s>", "<unk>")]
    contexts += [("cat", "mat"), ("zebra",)]  # an unseen bigram context and an unknown word
    assert {len(c) for c in contexts} == {0, 1, 2}
    for context in contexts:
        total = sum(10 ** log10_prob(model, context, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), context


def test_kenlm_reads_it_and_agrees_with_the_backoff_formula(word_lm):
    model = read_arpa(word_lm)
    lm = kenlm.Model(str(word_lm))
    assert lm.order == 3
    for sentence in CORPUS + ["the zebra sat on a cat", "log the on"]:
        history = ("<s>",)
        words = sentence.split() + ["</s>"]
        scores = list(lm.full_scores(sentence))
        assert len(scores) == len(words)
        for (score, _, _), word in zip(scores, words):
            assert score == pytest.approx(log10_prob(model, history, word), abs=1e-4), (sentence, word)
            history += (word,)


def test_character_lm_prefers_seen_word_order(tmp_path):
    sentences = ["今天天气很好", "明天天气不好", "今天我们去公园", "天气很好我们去公园", "明月几时有"]
    path = tmp_path / "chars.arpa"
    counts = build_arpa([tokenize_for_lm(s) for s in sentences], 4, path)
    assert len(counts) == 4 and all(counts)
    lm = kenlm.Model(str(path))
    rng = random.Random(0)
    for sentence in sentences:
        chars = list(sentence)
        shuffled = chars[:]
        while shuffled == chars:
            rng.shuffle(shuffled)
        assert lm.score(" ".join(chars)) > lm.score(" ".join(shuffled))
    assert set(read_arpa_unigrams(path)) == set("".join(sentences))


def test_tiny_corpus_uses_fallback_discounts(tmp_path):
    # one sentence: no count-of-counts for n2/n3, where lmplz needs --discount_fallback
    path = tmp_path / "tiny.arpa"
    assert build_arpa([["a", "b"]], 3, path) == [5, 3, 2]
    model = read_arpa(path)
    for context in [(), ("a",), ("<s>", "a")]:
        total = sum(10 ** log10_prob(model, context, w) for w in ["a", "b", "</s>", "<unk>"])
        assert total == pytest.approx(1, abs=1e-4)
    kenlm.Model(str(path))


def test_build_lm_script(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("今天天气很好。\n\nHello, World!\n", encoding="utf-8")
    out = tmp_path / "lm.arpa"
    script = str(REPO / "scripts" / "build_lm.py")
    ok = subprocess.run([sys.executable, script, "--text", str(text), "--order", "3", "--output", str(out)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "3-grams" in ok.stdout and out.is_file()
    assert {"今", "hello", "world"} <= set(read_arpa_unigrams(out))
    bad = subprocess.run([sys.executable, script, "--text", str(tmp_path / "missing.txt")],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
