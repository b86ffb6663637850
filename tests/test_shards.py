"""Sharded corpora: WebDataset tar shards written by prepare_data, streamed in training with every utterance seen
exactly once per epoch across ranks and workers, equal steps on every rank, bad members skipped and counted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from lit_asr.data.dataset import AsrDataset
from lit_asr.data.features import FeatureExtractor, Normalizer, load_mean_std
from lit_asr.data.manifest import read_manifest
from lit_asr.data.shards import ShardedBatches, StepSampler, deal_shards, identity, read_index, write_shards
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError
from test_checkpoints import ROOT, shared_tiny
from tiny_data import overrides

pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return shared_tiny(tmp_path_factory)


def _items(tiny) -> AsrDataset:
    featurizer = FeatureExtractor()
    mean, std = load_mean_std(tiny["mean_std_path"])
    return AsrDataset([], Vocabulary.load(tiny["dataset_vocab"]), featurizer,
                      Normalizer(torch.from_numpy(mean), torch.from_numpy(std)))


def _sources(loader) -> list[list[str]]:
    return [list(batch["audio"]) for batch in loader]


def test_index_lists_every_utterance_in_shards_of_the_given_size(tiny, tmp_path):
    entries, _ = read_manifest(tiny["train_manifest"])
    shards = write_shards(entries, tmp_path / "shards", shard_size=3)
    assert [len(s.durations) for s in shards] == [3] * (len(entries) // 3) + ([len(entries) % 3] if len(entries) % 3 else [])
    assert [d for s in shards for d in s.durations] == pytest.approx([e.duration for e in entries], abs=1e-4)
    again = read_index(tmp_path / "shards")
    assert [s.path for s in again] == [s.path for s in shards]
    with pytest.raises(LitAsrError, match="no shard index"):
        read_index(tmp_path)


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_see_every_utterance_exactly_once_per_epoch_with_equal_steps(tiny, tmp_path, workers):
    entries, _ = read_manifest(tiny["train_manifest"])
    shards = write_shards(entries, tmp_path / "shards", shard_size=2)
    ranks = [ShardedBatches(shards, _items(tiny), batch_size=2, max_batch_duration=None, seed=3, world=2, rank=r,
                            shuffle_shards=2) for r in range(2)]
    for epoch in (0, 1):
        seen, steps = Counter(), []
        for dataset in ranks:
            sampler = StepSampler(dataset)
            sampler.set_epoch(epoch)
            loader = DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=identity, num_workers=workers)
            batches = _sources(loader)
            plan = dataset.plan(epoch)
            assert len(batches) == len(plan) == dataset.steps(epoch)
            steps.append(len(batches))
            for (window, _, _), batch in zip(plan, batches):
                if window != -1:  # the repeats that equalise step counts come last and are marked
                    seen.update(batch)
        assert steps[0] == steps[1]
        assert seen == Counter(e.audio_filepath for e in entries), f"epoch {epoch}"
    assert deal_shards(shards, 2, 3) != deal_shards(shards, 2, 4)  # every epoch deals anew


def test_batches_respect_max_batch_duration(tiny, tmp_path):
    entries, _ = read_manifest(tiny["train_manifest"])
    shards = write_shards(entries, tmp_path / "shards", shard_size=8)
    longest = max(e.duration for e in entries)
    dataset = ShardedBatches(shards, _items(tiny), batch_size=8, max_batch_duration=2 * longest)
    by_source = {e.audio_filepath: e.duration for e in entries}
    for batch in _sources(DataLoader(dataset, sampler=StepSampler(dataset), batch_size=None, collate_fn=identity)):
        assert max(by_source[a] for a in batch) * len(batch) <= 2 * longest + 1e-6


def test_a_bad_member_is_skipped_and_counted_without_changing_the_steps(tiny, tmp_path, caplog):
    entries, _ = read_manifest(tiny["train_manifest"])
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(200))
    entries = [entries[0].__class__(**{**entries[0].__dict__, "audio_filepath": str(broken)})] + entries[1:]
    shards = write_shards(entries, tmp_path / "shards", shard_size=4)
    dataset = ShardedBatches(shards, _items(tiny), batch_size=4, max_batch_duration=None)
    with caplog.at_level("WARNING"):
        batches = list(DataLoader(dataset, sampler=StepSampler(dataset), batch_size=None, collate_fn=identity))
    assert len(batches) == dataset.steps(0)
    assert sum(len(b["audio"]) for b in batches) == len(entries) - 1 and dataset.skipped == 1
    assert "broken.wav" in caplog.text and "skipped" in caplog.text


def test_prepare_data_writes_shards_and_training_reads_them(tiny, tmp_path):
    train = [json.loads(line) for line in Path(tiny["train_manifest"]).read_text(encoding="utf-8").splitlines()]
    test = [json.loads(line) for line in Path(tiny["test_manifest"]).read_text(encoding="utf-8").splitlines()]
    for name, rows in (("train.tsv", train), ("test.tsv", test)):
        (tmp_path / name).write_text("".join(f"{r['audio_filepath']}\t{r['text']}\n" for r in rows), encoding="utf-8")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "list", "--train-list",
                           str(tmp_path / "train.tsv"), "--test-list", str(tmp_path / "test.tsv"), "--out",
                           str(tmp_path / "dataset"), "--shards", str(tmp_path / "shards"), "--shard-size", "4",
                           "--jobs", "1"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tar files of up to 4 utterances" in proc.stdout
    paths = {k: tmp_path / "dataset" / v for k, v in (("train_manifest", "manifest.train"),
                                                      ("test_manifest", "manifest.test"),
                                                      ("dataset_vocab", "vocabulary.txt"),
                                                      ("mean_std_path", "mean_std.npz"))}
    paths["train_manifest"] = tmp_path / "missing.manifest"  # shards replace it
    fast = {"model.rnn_size": 32, "model.num_rnn_layers": 1, "model.conv_channels": "[8,8]", "augment": "none",
            "logger": "none", "num_epoch": 1, "train_shards": str(tmp_path / "shards"), "batch_size": 4}
    run = subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides(paths, tmp_path, **fast)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    log = run.stdout + run.stderr
    steps = ShardedBatches(read_index(tmp_path / "shards"), _items(tiny), 4, None).steps(0)
    assert f"train: {len(read_index(tmp_path / 'shards'))} shards from" in log
    assert f"batch: [{steps}/{steps}]" in log
