#!/usr/bin/env python
"""What a perfect syllable recogniser would score on the espeak-ng demo: the floor homophones put under its CER.

    python scripts/homophone_floor.py                                   # dataset/ manifests and dataset/lm.arpa
    python scripts/homophone_floor.py --predictions outputs/demo/eval_beam/predictions.jsonl

espeak-ng reads each demo character as one toned pinyin syllable (with tone sandhi, in context). Characters
spoken as the same syllable sound exactly the same, so no acoustic model can tell them apart; only what it
learns of the language can. This script asks espeak-ng for the syllables it spoke, then scores two recognisers
that hear every syllable perfectly:

* context-free: each syllable becomes the training text's most frequent character for it (what a greedy CTC
  model with no sense of the neighbouring characters would do at best);
* beam + LM: a beam search over each syllable's characters, scored by the n-gram LM only (what beam search with
  that LM would do at best, given a perfect acoustic model).

Both CERs are corpus-level, substitutions only (the syllable count is known). With ``--predictions`` it also
says how many of an eval's substituted characters are homophones of the reference.
"""

from __future__ import annotations

import argparse
import difflib
import json
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

from lit_asr.errors import LitAsrError
from lit_asr.utils.cli import run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="dataset/manifest.train", help="text the recognisers learn from")
    parser.add_argument("--test", default="dataset/manifest.test", help="text they are scored on")
    parser.add_argument("--lm", default="dataset/lm.arpa", help="the n-gram LM of the beam + LM floor")
    parser.add_argument("--beam", type=int, default=300, help="beam size of the LM search (default: %(default)s)")
    parser.add_argument("--predictions", help="an eval's predictions.jsonl, to classify its substitutions")
    return parser.parse_args(argv)


def spoken_syllables(texts: list[str]) -> list[list[str] | None]:
    """espeak-ng's syllables for each text (one per character), or None where they do not pair up."""
    from lit_asr.data.demo_corpus import VOICE, check_espeak

    check_espeak(VOICE)
    # one clause per line: "。" ends it, so tone sandhi never crosses sentences
    out = subprocess.run(["espeak-ng", "-v", VOICE, "-q", "-x"], input="".join(t + "。\n" for t in texts),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    lines = [line.split() for line in out if line.strip()]
    if len(lines) != len(texts):
        raise LitAsrError(f"espeak-ng gave {len(lines)} phoneme lines for {len(texts)} sentences")
    return [sylls if len(sylls) == len(text) else None for text, sylls in zip(texts, lines)]


def read_texts(path: str) -> list[str]:
    """Transcripts of a manifest."""
    from lit_asr.data.manifest import read_manifest

    entries, _ = read_manifest(path, check_files=False)
    if not entries:
        raise LitAsrError(f"no utterances in {path}")
    return [e.text for e in entries]


def beam_lm_choice(model, syllables: list[str], homophones: dict[str, Counter], beam: int) -> str:
    """The character sequence the LM likes best among each syllable's homophones (unknown syllable: '?')."""
    import kenlm

    start = kenlm.State()
    model.BeginSentenceWrite(start)
    hyps = [(0.0, "", start)]
    for syllable in syllables:
        choices = list(homophones.get(syllable, ())) or ["?"]
        grown = []
        for score, text, state in hyps:
            for char in choices:
                out = kenlm.State()
                step = model.BaseScore(state, char, out) if char != "?" else 0.0
                grown.append((score + step, text + char, out if char != "?" else state))
        hyps = sorted(grown, key=lambda h: h[0], reverse=True)[:beam]
    end = kenlm.State()
    return max(hyps, key=lambda h: h[0] + model.BaseScore(h[2], "</s>", end))[1]


def substitution_pairs(reference: str, hypothesis: str) -> list[tuple[int, str]]:
    """(position in the reference, hypothesis character) of each one-for-one substitution."""
    pairs = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=reference, b=hypothesis, autojunk=False).get_opcodes():
        if op == "replace" and i2 - i1 == j2 - j1:
            pairs += [(i, hypothesis[j1 + k]) for k, i in enumerate(range(i1, i2))]
    return pairs


def run(args: argparse.Namespace) -> None:
    """Syllabify, build the homophone sets from train, score both floors on test, classify predictions."""
    import kenlm

    if not Path(args.lm).is_file():
        raise LitAsrError(f"language model not found: {args.lm} (make lm)")
    train, test = read_texts(args.train), read_texts(args.test)
    print(f"asking espeak-ng for the syllables of {len(train)} + {len(test)} sentences ...")
    homophones: dict[str, Counter] = defaultdict(Counter)
    readings: dict[str, set[str]] = defaultdict(set)
    train_sylls = spoken_syllables(train)
    for text, sylls in zip(train, train_sylls):
        for char, syllable in zip(text, sylls or ()):
            homophones[syllable][char] += 1
            readings[char].add(syllable)
    test_sylls = spoken_syllables(test)
    kept = [(t, s) for t, s in zip(test, test_sylls) if s is not None]
    chars = sum(len(t) for t, _ in kept)
    print(f"paired characters with syllables in {sum(s is not None for s in train_sylls)}/{len(train)} train "
          f"and {len(kept)}/{len(test)} test sentences ({chars} test characters)")
    sizes = [len(homophones.get(s, ())) for _, sylls in kept for s in sylls]
    print(f"train: {len(homophones)} distinct syllables for {len(readings)} characters; a test character's syllable "
          f"has {sum(sizes) / len(sizes):.1f} training characters on average, more than one for "
          f"{sum(n > 1 for n in sizes) / len(sizes):.1%} of them, none for {sum(n == 0 for n in sizes) / len(sizes):.1%}")

    model = kenlm.Model(args.lm)
    free_errors = lm_errors = 0
    for text, sylls in kept:
        free = [homophones[s].most_common(1)[0][0] if homophones.get(s) else "?" for s in sylls]
        free_errors += sum(a != b for a, b in zip(text, free))
        lm_errors += sum(a != b for a, b in zip(text, beam_lm_choice(model, sylls, homophones, args.beam)))
    print(f"perfect syllables, context-free choice: CER {free_errors / chars:.3f}")
    print(f"perfect syllables, beam {args.beam} + {args.lm}: CER {lm_errors / chars:.3f}")

    if args.predictions:
        syll_of = {t: s for t, s in kept}
        subs = homophone_subs = ref_chars = errors = 0
        for line in Path(args.predictions).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            ref, hyp = row["reference"], row["hypothesis"]
            if ref not in syll_of:
                continue
            ref_chars += len(ref)
            errors += round(row["cer"] * len(ref))
            for i, char in substitution_pairs(ref, hyp):
                subs += 1
                homophone_subs += syll_of[ref][i] in readings.get(char, ())
        print(f"{args.predictions}: {errors} character errors in {ref_chars} reference characters; "
              f"{subs} one-for-one substitutions, {homophone_subs} ({homophone_subs / max(subs, 1):.0%}) of them "
              f"a homophone of the reference ({homophone_subs / max(ref_chars, 1):.3f} of the CER)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2."""
    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
