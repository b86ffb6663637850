#!/usr/bin/env python
"""Streaming latency of a streaming model: look-ahead (frames, ms) and compute time per chunk on this machine.

    python scripts/benchmark_streaming.py --checkpoint models/demo_streaming/last_model test_manifest=...
    python scripts/benchmark_streaming.py model=deepspeech2_streaming_small    # untrained weights: same compute

Feeds the first --utterances of test_manifest through Recognizer.stream() in chunks of each --chunk-ms and prints
the median / p90 milliseconds of accept() (features + model + greedy partial) and of finish() (the configured
decoder: add decoder=beam_search for beam + LM). Other jobs on the machine change the figures: check `uptime`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="trained streaming model (folder or file); default: an "
                        "untrained model of the config's `model` (same compute, meaningless text)")
    parser.add_argument("--chunk-ms", type=float, nargs="+", default=[100.0, 200.0, 600.0])
    parser.add_argument("--utterances", type=int, default=20, help="how many test utterances to stream")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s: a "
                        "100 ms chunk is too small to split, and a server runs one stream per core; 0: torch's)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=... test_manifest=... decoder=...")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    """Measure and print one JSON line per chunk size."""
    import hydra
    import torch

    from lit_asr.benchmark.common import compose_config, hardware
    from lit_asr.benchmark.streaming import chunk_compute, lookahead
    from lit_asr.data.audio import load_audio
    from lit_asr.data.manifest import read_manifest
    from lit_asr.data.vocabulary import Vocabulary
    from lit_asr.inference.recognizer import Recognizer
    from lit_asr.tasks.train import build_module

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config(ROOT / "conf", list(args.overrides))
    if args.checkpoint:
        recognizer = Recognizer.from_config(cfg, args.checkpoint)
    else:
        module = build_module(cfg, Vocabulary.load(cfg.dataset_vocab), hydra.utils.instantiate(cfg.features))
        recognizer = Recognizer(module, decoder=cfg.decoder, device=cfg.device)
    recognizer.stream()  # a bidirectional model stops here with its one-line error
    entries, _ = read_manifest(cfg.test_manifest)
    waves = [load_audio(e.audio_filepath, recognizer.sample_rate) for e in entries[:args.utterances]]
    print(json.dumps({"hardware": hardware(recognizer.device), **lookahead(recognizer),
                      "audio_s": round(sum(len(w) for w in waves) / recognizer.sample_rate, 1)}))
    with recognizer:
        for chunk_ms in args.chunk_ms:
            print(json.dumps(chunk_compute(recognizer, waves, chunk_ms)))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2."""
    from lit_asr.utils.cli import run_cli

    args = parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
