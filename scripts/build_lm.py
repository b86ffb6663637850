#!/usr/bin/env python
"""Build an n-gram language model (ARPA, interpolated modified Kneser-Ney, as KenLM's lmplz) for beam search.

    python scripts/build_lm.py                                    # transcripts of dataset/manifest.train
    python scripts/build_lm.py --text corpus.txt --order 5 --output dataset/lm5.arpa

Text is normalised like the transcripts; each CJK character is one LM token and other space-separated runs
are words, so Mandarin gets a character LM and English a word LM. kenlm and the beam search decoder load the
.arpa directly. Loading a large .arpa is slow; KenLM's ``build_binary`` (not part of the pip package)
can turn it into a binary file that loads faster, and the decoder accepts that too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lit_asr.errors import LitAsrError
from lit_asr.utils.cli import run_cli

KENLM_MAX_ORDER = 6  # KENLM_MAX_ORDER of the kenlm wheels on PyPI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", help="a text file, one sentence per line")
    source.add_argument("--manifest", default="dataset/manifest.train",
                        help="take the transcripts of this manifest (default: %(default)s)")
    parser.add_argument("--order", type=int, default=4, help="n-gram order, at most 6 (default: %(default)s)")
    parser.add_argument("--output", default="dataset/lm.arpa", help="ARPA file to write (default: %(default)s)")
    return parser.parse_args(argv)


def read_sentences(args: argparse.Namespace) -> list[str]:
    """Raw sentences from --text or the manifest's transcripts."""
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise LitAsrError(f"text file not found: {path}")
        try:
            return path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise LitAsrError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    from lit_asr.data.manifest import read_manifest

    entries, _ = read_manifest(args.manifest, check_files=False)
    return [e.text for e in entries]


def run(args: argparse.Namespace) -> None:
    """Normalise, tokenise, build and report."""
    from lit_asr.data.text import normalize_text
    from lit_asr.decoding.lm import build_arpa, tokenize_for_lm

    if not 1 <= args.order <= KENLM_MAX_ORDER:
        raise LitAsrError(f"--order must be 1..{KENLM_MAX_ORDER} (the most kenlm loads), got {args.order}")
    sentences = [tokenize_for_lm(normalize_text(line)) for line in read_sentences(args)]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise LitAsrError("no text left after normalisation")
    counts = build_arpa(sentences, args.order, args.output)
    tokens = sum(len(s) for s in sentences)
    print(f"read {len(sentences)} sentences, {tokens} tokens")
    for n, count in enumerate(counts, start=1):
        print(f"  {n}-grams: {count}")
    if len(counts) < args.order:
        print(f"  (no sentence is long enough for {len(counts) + 1}-grams: the model has order {len(counts)})")
    print(f"wrote {args.output}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2."""
    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
