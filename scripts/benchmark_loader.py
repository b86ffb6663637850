#!/usr/bin/env python
"""Training-loader throughput from a manifest of files and from tar shards of the same utterances.

    python scripts/benchmark_loader.py --manifest dataset/manifest.train --shards /tmp/shards --utterances 2000

Writes the shards (if the folder has none), then reads one epoch of each loader with the demo's batching
(batch 16, no augmentation) and prints audio seconds per wall second. Both include feature extraction.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lit_asr.data.dataset import AsrDataset, collate
from lit_asr.data.features import FeatureExtractor, Normalizer, load_mean_std
from lit_asr.data.manifest import read_manifest
from lit_asr.data.sampler import DurationBatchSampler
from lit_asr.data.shards import ShardedBatches, StepSampler, identity, read_index, write_shards
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.utils.cli import run_cli


def _epoch_seconds(loader: DataLoader) -> tuple[float, float]:
    start, audio = time.perf_counter(), 0.0
    for batch in loader:
        audio += float(batch["feat_lengths"].sum()) / 100.0  # 10 ms frames
    return time.perf_counter() - start, audio


def run(args: argparse.Namespace) -> None:
    """Time both loaders and print the figures."""
    entries, _ = read_manifest(args.manifest)
    entries = entries[: args.utterances]
    folder = Path(args.manifest).parent
    featurizer = FeatureExtractor()
    mean, std = load_mean_std(folder / "mean_std.npz")
    items = AsrDataset(entries, Vocabulary.load(folder / "vocabulary.txt"), featurizer,
                       Normalizer(torch.from_numpy(mean), torch.from_numpy(std)))
    shard_dir = Path(args.shards)
    if not (shard_dir / "index.json").is_file():
        write_shards(entries, shard_dir, args.shard_size)
    files = DataLoader(items, batch_sampler=DurationBatchSampler([e.duration for e in entries], args.batch_size),
                       collate_fn=collate, num_workers=args.workers)
    sharded = ShardedBatches(read_index(shard_dir), items, args.batch_size, None)
    shards = DataLoader(sharded, sampler=StepSampler(sharded), batch_size=None, collate_fn=identity,
                        num_workers=args.workers)
    for name, loader in (("files", files), ("shards", shards)):
        seconds, audio = _epoch_seconds(loader)
        print(f"{name:<7} {len(entries)} utterances, {audio / 3600:.2f} h of audio in {seconds:.1f} s: "
              f"{audio / seconds:.0f} audio-s/s ({args.workers} workers)")


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="dataset/manifest.train")
    parser.add_argument("--shards", required=True, help="shard folder (written when it has no index)")
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
