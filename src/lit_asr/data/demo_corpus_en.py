"""An embedded English demo corpus: real English text from the ``fortunes`` package, spoken by espeak-ng.

It proves the subword path (``--tokenizer bpe``) on a language whose words are separated by spaces. Synthesis,
reuse of existing wavs and the LM text are the Mandarin demo's (``demo_corpus``); only the text differs.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from lit_asr.data.demo_corpus import FORTUNE_DIR
from lit_asr.data.text import normalize_text
from lit_asr.errors import LitAsrError

FORTUNE_FILES = tuple(FORTUNE_DIR / name for name in (
    "fortunes", "wisdom", "people", "work", "science", "education", "literature", "politics", "food", "love",
    "men-women", "platitudes", "miscellaneous", "humorists", "law", "medicine", "pets", "sports", "kids"))
VOICE = "en"
PROBE_TEXT = "hello"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SENTENCE_BREAK = re.compile(r"[.!?;:()\"\[\]]+|--|\s-\s")
_SPEAKABLE = re.compile(r"[a-z' ]+")


def read_sentences(files: Iterable[str | Path] = FORTUNE_FILES) -> list[str]:
    """Normalised sentences of English fortune files, in file order, without attributions ("-- Author")."""
    sentences = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            continue  # the fortunes package's file list varies a little between releases
        text = _ANSI.sub("", path.read_text(encoding="utf-8", errors="replace"))
        for fortune in text.split("\n%\n"):
            lines = [line.strip() for line in fortune.splitlines() if not line.strip().startswith("--")]
            for sentence in _SENTENCE_BREAK.split(" ".join(lines)):
                sentence = normalize_text(sentence)
                if sentence:
                    sentences.append(sentence)
    if not sentences:
        raise LitAsrError(f"no English fortune text under {FORTUNE_DIR} (apt-get install fortunes)")
    return sentences


def select_sentences(
    sentences: Sequence[str],
    num_train: int,
    num_test: int,
    *,
    min_words: int = 3,
    max_words: int = 10,
    wordset_size: int = 3000,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Disjoint train and test sentences of plain lower-case words, within the length range and common words."""
    candidates = list(dict.fromkeys(
        s for s in sentences if _SPEAKABLE.fullmatch(s) and min_words <= len(s.split()) <= max_words))
    counts = Counter(w for s in candidates for w in s.split())
    words = {w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:wordset_size]}
    candidates = [s for s in candidates if set(s.split()) <= words]
    random.Random(seed).shuffle(candidates)
    if len(candidates) < num_train + num_test:
        raise LitAsrError(f"only {len(candidates)} distinct English sentences fit --min-words {min_words} "
                          f"--max-words {max_words} --wordset-size {wordset_size}; ask for fewer or widen those")
    return candidates[num_test:num_test + num_train], candidates[:num_test]
