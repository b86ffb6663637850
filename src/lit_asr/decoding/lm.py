"""N-gram language models in ARPA format, built with interpolated modified Kneser-Ney smoothing.

This follows KenLM's ``lmplz`` (Chen & Goodman's modified Kneser-Ney, interpolated, no pruning), so that a
model can be built without compiling KenLM; ``kenlm.Model`` (and pyctcdecode) load the ``.arpa`` directly:

* each sentence is ``<s> w1 .. wk </s>``; the highest order keeps raw counts, a lower-order n-gram gets its
  continuation count (how many distinct words precede it) unless it starts with ``<s>``, which nothing can
  precede, so it keeps its raw count;
* per order, discounts D1, D2, D3+ come from the counts-of-counts n1..n4 of those adjusted counts
  (Chen & Goodman eq. 26). Small corpora may have some n1..n3 equal to zero or give a discount outside
  [0, k]; that order then uses lmplz's ``--discount_fallback`` values D1=0.5, D2=1, D3+=1.5;
* p(w | h) = (a(hw) - D(a(hw))) / sum_v a(hv) + gamma(h) * p(w | h minus its first word), and unigrams
  interpolate with the uniform distribution over the vocabulary without ``<s>`` (``<unk>`` included, so it
  gets the left-over mass); the ARPA backoff of context h is gamma(h); ``<s>`` has probability 1 (log 0),
  as lmplz writes it, since it is never predicted.

Empty sentences are skipped (lmplz would count ``<s> </s>``), and orders that no sentence is long enough
for are left out, so the model's order can be lower than asked. Against lmplz 0.3 on corpora of up to 640k
n-grams, log10 probabilities agree within 4e-6 and backoffs within 5e-7 (lmplz computes in float32).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from lit_asr.data.text import is_cjk
from lit_asr.errors import LitAsrError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback defaults

Ngram = tuple[str, ...]


def tokenize_for_lm(text: str) -> list[str]:
    """LM tokens of normalised text: each CJK character is a token, other space-separated runs are words."""
    tokens = []
    for run in text.split():
        word = ""
        for ch in run:
            if is_cjk(ch):
                tokens += [word, ch] if word else [ch]
                word = ""
            else:
                word += ch
        if word:
            tokens.append(word)
    return tokens


def build_arpa(sentences: Iterable[list[str]], order: int, path: str | Path) -> list[int]:
    """Write an interpolated modified Kneser-Ney ARPA model of ``order``; returns the n-gram count per order."""
    if order < 1:
        raise LitAsrError(f"the LM order must be at least 1, got {order}")
    raw = _count(sentences, order)
    if not raw:
        raise LitAsrError("no text to build a language model from")
    adjusted = _adjust(raw)
    discounts = [_discounts(a) for a in adjusted]
    probs, backoffs = _interpolate(adjusted, discounts)
    _write_arpa(Path(path), probs, backoffs)
    return [len(p) for p in probs]


def _count(sentences: Iterable[list[str]], order: int) -> list[Counter[Ngram]]:
    counts: list[Counter[Ngram]] = [Counter() for _ in range(order)]
    for words in sentences:
        words = [w for w in words if w not in (BOS, EOS, UNK)]  # lmplz reads these as whitespace too
        if not words:
            continue
        seq = (BOS, *words, EOS)
        for n in range(1, order + 1):
            counts[n - 1].update(zip(*(seq[i:] for i in range(n))))
    del counts[0][(BOS,)]
    return [c for c in counts if c]  # orders no sentence is long enough for carry nothing


def _adjust(raw: list[Counter[Ngram]]) -> list[dict[Ngram, int]]:
    adjusted: list[dict[Ngram, int]] = []
    for n, counts in enumerate(raw[:-1]):
        left_extensions = Counter(g[1:] for g in raw[n + 1])
        adjusted.append({g: c if g[0] == BOS else left_extensions[g] for g, c in counts.items()})
    adjusted.append(dict(raw[-1]))
    adjusted[0][(UNK,)] = 0
    adjusted[0][(BOS,)] = 0
    return adjusted


def _discounts(adjusted: dict[Ngram, int]) -> tuple[float, float, float]:
    n = Counter(min(c, 5) for c in adjusted.values())
    if not all(n[k] for k in (1, 2, 3)):
        return FALLBACK_DISCOUNTS
    y = n[1] / (n[1] + 2 * n[2])
    d = tuple(k - (k + 1) * y * n[k + 1] / n[k] for k in (1, 2, 3))
    if any(not 0.0 <= dk <= k for k, dk in zip((1, 2, 3), d)):
        return FALLBACK_DISCOUNTS
    return d  # type: ignore[return-value]


def _interpolate(
    adjusted: list[dict[Ngram, int]], discounts: list[tuple[float, float, float]]
) -> tuple[list[dict[Ngram, float]], list[dict[Ngram, float]]]:
    """log10 probabilities per order and log10 backoffs of the orders below the highest."""
    gammas: list[dict[Ngram, float]] = []
    probs: list[dict[Ngram, float]] = []
    lower: dict[Ngram, float] = {}
    uniform = 1.0 / (len(adjusted[0]) - 1)  # every word but <s>
    for n, (counts, d) in enumerate(zip(adjusted, discounts)):
        discount = (0.0, *d)
        denominator: dict[Ngram, int] = defaultdict(int)
        mass: dict[Ngram, float] = defaultdict(float)
        for g, c in counts.items():
            denominator[g[:-1]] += c
            if c:
                mass[g[:-1]] += discount[min(c, 3)]
        gamma = {h: mass[h] / denominator[h] for h in denominator}
        prob = {}
        for g, c in counts.items():
            lower_p = uniform if n == 0 else lower[g[1:]]
            prob[g] = (c - discount[min(c, 3)]) / denominator[g[:-1]] + gamma[g[:-1]] * lower_p
        if n == 0:
            prob[(BOS,)] = 1.0
        gammas.append(gamma)
        probs.append(prob)
        lower = prob
    log_probs = [{g: min(0.0, math.log10(p)) for g, p in prob.items()} for prob in probs]
    # the backoff of n-gram g is the gamma of g as a context; n-grams ending in </s> or <unk> never are one
    log_backoffs = [
        {g: math.log10(gammas[n + 1][g]) if g in gammas[n + 1] else 0.0 for g in probs[n]}
        for n in range(len(probs) - 1)
    ]
    return log_probs, log_backoffs


def _write_arpa(path: Path, probs: list[dict[Ngram, float]], backoffs: list[dict[Ngram, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n, prob in enumerate(probs, start=1):
            f.write(f"ngram {n}={len(prob)}\n")
        for n, prob in enumerate(probs):
            f.write(f"\n\\{n + 1}-grams:\n")
            backoff = backoffs[n] if n < len(backoffs) else None
            for g in sorted(prob):
                line = f"{prob[g]:.7g}\t{' '.join(g)}"
                f.write(f"{line}\t{backoff[g]:.7g}\n" if backoff is not None else line + "\n")
        f.write("\n\\end\\\n")


def read_arpa_unigrams(path: str | Path) -> list[str]:
    """Words of an ARPA file's 1-gram section, without ``<s>``, ``</s>`` and ``<unk>``."""
    words: list[str] = []
    in_unigrams = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and line.startswith("\\"):
                break
            elif in_unigrams and line:
                word = line.split("\t")[1]
                if word not in (BOS, EOS, UNK):
                    words.append(word)
    return words
