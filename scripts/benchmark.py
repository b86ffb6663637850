#!/usr/bin/env python
"""Measure lit-asr's performance in one run and write docs/benchmarks.json + the generated part of benchmarks.md.

    python scripts/benchmark.py                      # everything (about 5 min on 2 CPU cores)
    python scripts/benchmark.py --quick              # tiny sizes, a few minutes: a smoke run
    python scripts/benchmark.py --sections training variants --checkpoint models/demo/last_model/model.ckpt
    python scripts/benchmark.py --sections decoders memory --checkpoint models/demo/best_model/model.ckpt

Sections: matmul (FLOP/s ceiling), training (step time, FLOP/s, audio s/s, memory), variants (thread count,
RNN packing, LSTM, channels-last, bf16, torch.compile), pipeline (loading + features + augmentation, data
waits in real training), padding, decoding (greedy / beam + LM real-time factor), sweep (first vs further
alpha/beta point), memory (peak and per-epoch RSS of real short training runs, trainer and loader workers).
Every figure is a median of repeats, reported with the load average: on a shared machine, check `uptime` first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = Path("models/demo/last_model/model.ckpt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    from lit_asr.benchmark import DEFAULT_SECTIONS, SECTIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a smoke run)")
    parser.add_argument("--output-dir", type=Path, default=Path("docs"), help="where benchmarks.json and "
                        "benchmarks.md go (default: %(default)s)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(DEFAULT_SECTIONS),
                        metavar="SECTION", help=f"what to measure, in order, of {', '.join(SECTIONS)} (default: "
                        f"all but decoders and memory, which train and decode for minutes)")
    parser.add_argument("--checkpoint", type=Path, help=f"trained model for decoding (default: {DEFAULT_CHECKPOINT}"
                        " if it exists, else an untrained model, which the report says)")
    parser.add_argument("--lm", type=Path, help="ARPA/KenLM model for beam search (default: a character 4-gram "
                        "built from train_manifest, as scripts/build_lm.py would)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads before measuring (default: torch's)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data, e.g. "
                        "train_manifest=... test_manifest=... dataset_vocab=... mean_std_path=...")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2."""
    import torch

    from lit_asr.benchmark import Settings, run_benchmark, write_report
    from lit_asr.errors import LitAsrError

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None)
    if checkpoint is not None and not checkpoint.is_file():
        print(f"error: checkpoint not found: {checkpoint}", file=sys.stderr)
        return 2
    make = Settings.quick_settings if args.quick else Settings
    settings = make(ROOT / "conf", overrides=args.overrides, checkpoint=checkpoint, lang_model=args.lm,
                    sections=tuple(args.sections))
    start = time.perf_counter()
    try:
        report = run_benchmark(settings)
    except LitAsrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    json_path, md_path = write_report(report, args.output_dir)
    print(f"wrote {json_path} and {md_path} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
