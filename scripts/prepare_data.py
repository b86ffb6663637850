#!/usr/bin/env python
"""Build the dataset folder (manifests, vocabulary, mean/std) from the demo corpus, AISHELL-1 or list files.

    python scripts/prepare_data.py demo                       # synthesised Mandarin, no download
    python scripts/prepare_data.py demo --language en --out dataset_en --tokenizer bpe --vocab-size 300
    python scripts/prepare_data.py aishell --root /data/aishell
    python scripts/prepare_data.py list --train-list train.tsv --test-list test.tsv
    python scripts/prepare_data.py masr --train-manifest masr/dataset/manifest.train --test-manifest masr/dataset/manifest.test

Each writes manifest.train, manifest.dev (held out from train, or AISHELL-1's own dev set; alpha/beta and
checkpoints are chosen on it) and manifest.test; the demo also writes manifest.test_degraded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lit_asr.errors import LitAsrError
from lit_asr.utils.cli import run_cli

REPO = Path(__file__).resolve().parent.parent


def _common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("dataset folder")
    g.add_argument("--out", default="dataset", help="output folder (default: %(default)s)")
    g.add_argument("--features", default="conf/features/fbank.yaml",
                   help="feature config the mean/std is computed for (default: %(default)s)")
    g.add_argument("--num-samples", type=int, default=2000, help="train utterances sampled for mean/std")
    g.add_argument("--min-count", type=int, default=1, help="keep characters seen at least this often in train")
    g.add_argument("--tokenizer", choices=["char", "bpe", "unigram"], default="char",
                   help="char: vocabulary.txt of characters; bpe/unigram: a sentencepiece tokenizer.model "
                        "(CJK characters stay one token each) (default: %(default)s)")
    g.add_argument("--vocab-size", type=int, default=500, help="at most this many sentencepiece pieces")
    g.add_argument("--min-duration", type=float, default=0.5, help="seconds (default: %(default)s)")
    g.add_argument("--max-duration", type=float, default=20.0, help="seconds (default: %(default)s)")
    g.add_argument("--resample", action=argparse.BooleanOptionalAction, default=True,
                   help="accept other sample rates (training resamples on load); --no-resample rejects them")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--shards", help="also write the checked train split as WebDataset tar shards in this folder")
    g.add_argument("--shard-size", type=int, default=1000, help="utterances per shard (default: %(default)s)")
    g.add_argument("--dev-fraction", type=float, default=0.05,
                   help="share of train held out as dev, sentences disjoint from train and test; 0: no dev split "
                        "(default: %(default)s; aishell uses its own dev set)")
    g.add_argument("--jobs", type=int, default=os.cpu_count(), help="parallel processes (default: all cores)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the four sources."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    common = _common_options()

    demo = sub.add_parser("demo", parents=[common], help="synthesise a Mandarin (or English) corpus with espeak-ng")
    demo.add_argument("--language", choices=["zh", "en"], default="zh",
                      help="zh: Chinese fortunes-zh text; en: English text of the fortunes package")
    demo.add_argument("--corpus-dir", help="where wavs and train/test.tsv go (default: demo_data, demo_data_en)")
    demo.add_argument("--num-train", type=int, default=8000)
    demo.add_argument("--num-test", type=int, default=400)
    demo.add_argument("--min-chars", type=int, default=4)
    demo.add_argument("--max-chars", type=int, default=16)
    demo.add_argument("--charset-size", type=int, default=1000, help="use only the N most frequent characters")
    demo.add_argument("--min-words", type=int, default=3, help="--language en: shortest sentence in words")
    demo.add_argument("--max-words", type=int, default=10, help="--language en: longest sentence in words")
    demo.add_argument("--wordset-size", type=int, default=3000, help="--language en: use only the N most "
                                                                      "frequent words")
    demo.add_argument("--degraded-channel", default="conf/augment/degraded_test.yaml",
                      help="augment config of the channel for manifest.test_degraded ('' for none; default: "
                           "%(default)s)")

    aishell = sub.add_parser("aishell", parents=[common], help="AISHELL-1 (data_aishell/wav + transcript)")
    aishell.add_argument("--root", required=True, help="folder holding data_aishell/")
    aishell.add_argument("--dev-as", choices=["dev", "train", "test", "skip"], default="dev",
                         help="where AISHELL-1's dev set goes (default: %(default)s, i.e. manifest.dev)")

    lst = sub.add_parser("list", parents=[common], help="audio<TAB>transcript list files")
    lst.add_argument("--train-list", required=True)
    lst.add_argument("--test-list", help="a separate test list, or use --test-fraction")
    lst.add_argument("--test-fraction", type=float, help="split --train-list into train and test")
    lst.add_argument("--dev-list", help="a separate dev list (instead of --dev-fraction of train)")

    masr = sub.add_parser("masr", parents=[common], help="MASR's JSON-lines manifests (re-checked, new vocabulary "
                                                         "and mean/std; dev held out from train)")
    masr.add_argument("--train-manifest", required=True)
    masr.add_argument("--test-manifest", required=True)
    args = parser.parse_args(argv)
    if args.source == "list" and (args.test_list is None) == (args.test_fraction is None):
        parser.error("list needs exactly one of --test-list and --test-fraction")
    return args


def _config_path(path: str) -> Path:
    """``path``, or the same relative path in the repository when it is not found from here."""
    config = Path(path)
    if not config.is_file() and not config.is_absolute() and (REPO / config).is_file():
        config = REPO / config
    return config


def load_extractor(path: str):
    """Instantiate the feature extractor from a Hydra feature config (relative paths also tried from the repo)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config = _config_path(path)
    if not config.is_file():
        raise LitAsrError(f"feature config not found: {path}")
    return instantiate(OmegaConf.load(config))


def run(args: argparse.Namespace) -> None:
    """Gather candidates from the chosen source and write the dataset folder."""
    from lit_asr.data import prepare

    extractor = load_extractor(args.features)
    pre_skipped: list = []
    if args.source == "demo":
        from lit_asr.data import demo_corpus, demo_corpus_en

        args.corpus_dir = args.corpus_dir or ("demo_data_en" if args.language == "en" else "demo_data")
        if args.language == "en":
            clauses = demo_corpus_en.read_sentences()
            train_texts, test_texts = demo_corpus_en.select_sentences(
                clauses, args.num_train, args.num_test, min_words=args.min_words, max_words=args.max_words,
                wordset_size=args.wordset_size, seed=args.seed)
            voice = {"voice": demo_corpus_en.VOICE, "probe_text": demo_corpus_en.PROBE_TEXT}
        else:
            clauses = demo_corpus.read_clauses()
            train_texts, test_texts = demo_corpus.select_sentences(
                clauses, args.num_train, args.num_test, min_chars=args.min_chars,
                max_chars=args.max_chars, charset_size=args.charset_size, seed=args.seed)
            voice = {}
        Path(args.corpus_dir).mkdir(parents=True, exist_ok=True)
        train_list, test_list = demo_corpus.build_demo_corpus(
            args.corpus_dir, train_texts, test_texts, seed=args.seed, jobs=args.jobs, **voice)
        args.train_list, args.test_list, args.test_fraction, args.dev_list = train_list, test_list, None, None
    if args.source == "aishell":
        candidates, pre_skipped = prepare.aishell_candidates(args.root, args.dev_as)
    elif args.source == "masr":
        candidates = {}
        for split, manifest in (("train", args.train_manifest), ("test", args.test_manifest)):
            candidates[split], bad = prepare.read_masr_manifest(manifest, split)
            pre_skipped += bad
        candidates["train"], candidates["dev"] = prepare.hold_out_dev(candidates["train"], candidates["test"],
                                                                      args.dev_fraction, args.seed)
    else:
        candidates, pre_skipped = list_candidates(args)
    if args.source == "demo":
        # The LM may read all fortune text but no dev or test sentence: alpha/beta tuned on dev stay honest.
        held_out = [c.text for c in candidates["dev"] + candidates["test"]]
        lm_text = Path(args.corpus_dir) / "lm_text.txt"
        count = demo_corpus.write_lm_text(clauses, held_out, lm_text)
        print(f"wrote {lm_text}: {count} clauses of fortune text without the dev and test sentences "
              "(for build_lm.py)")
    policy = prepare.Policy(sample_rate=extractor.sample_rate, min_duration=args.min_duration,
                            max_duration=args.max_duration, resample=args.resample)
    prepare.prepare_dataset(candidates, args.out, extractor, policy=policy, pre_skipped=pre_skipped,
                            num_samples=args.num_samples, min_count=args.min_count, seed=args.seed, jobs=args.jobs,
                            tokenizer=args.tokenizer, vocab_size=args.vocab_size)
    if args.shards:
        from lit_asr.data.manifest import read_manifest
        from lit_asr.data.shards import write_shards

        entries, _ = read_manifest(Path(args.out) / "manifest.train")
        shards = write_shards(entries, args.shards, args.shard_size)
        print(f"  shards          {len(shards):>7} tar files of up to {args.shard_size} utterances in {args.shards}/ "
              f"(train_shards={args.shards})")
    if args.source == "demo" and args.degraded_channel:
        write_degraded_test(args, extractor.sample_rate)


def list_candidates(args: argparse.Namespace) -> tuple[dict[str, list], list]:
    """Train, dev and test candidates of the list source (and of the demo, which writes lists)."""
    from lit_asr.data import prepare

    train, pre_skipped = prepare.read_list(args.train_list, "train")
    if args.test_fraction is not None:
        train, test = prepare.split_by_text(train, args.test_fraction, args.seed)
    else:
        test, bad = prepare.read_list(args.test_list, "test")
        pre_skipped += bad
    if args.dev_list:
        dev, bad = prepare.read_list(args.dev_list, "dev")
        pre_skipped += bad
    else:
        train, dev = prepare.hold_out_dev(train, test, args.dev_fraction, args.seed)
    return {"train": train, "dev": dev, "test": test}, pre_skipped


def write_degraded_test(args: argparse.Namespace, sample_rate: int) -> None:
    """manifest.test_degraded: the test split through a fixed channel, its audio beside the corpus."""
    from lit_asr.data.degraded import degrade, load_channel
    from lit_asr.data.manifest import read_manifest, write_manifest

    channel = load_channel(_config_path(args.degraded_channel))
    entries, _ = read_manifest(Path(args.out) / "manifest.test")
    wav_dir = Path(args.corpus_dir) / "wav" / "test_degraded"
    degraded = degrade(entries, channel, wav_dir, seed=args.seed, sample_rate=sample_rate)
    write_manifest(Path(args.out) / "manifest.test_degraded", degraded)
    names = ", ".join(type(p).__name__ for p in channel.perturbations)
    print(f"  manifest.test_degraded {len(degraded):>4} utterances through {names} ({args.degraded_channel}, "
          f"seed {args.seed}); audio in {wav_dir}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2."""
    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
