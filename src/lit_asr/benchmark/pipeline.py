"""Input pipeline: per-utterance loading/feature/augmentation cost, data waits in real training, padding."""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from lit_asr.benchmark.common import summarise, time_repeats, torch_threads
from lit_asr.data.audio import load_audio
from lit_asr.data.dataset import AsrDataset
from lit_asr.data.features import FeatureExtractor
from lit_asr.data.manifest import ManifestEntry, read_manifest, write_manifest
from lit_asr.data.sampler import DurationBatchSampler
from lit_asr.data.vocabulary import Vocabulary


def training_dataset(cfg: DictConfig, entries: list[ManifestEntry]) -> AsrDataset:
    """The training dataset of ``cfg`` (its augmentation included) over ``entries``."""
    from lit_asr.tasks.train import build_parts

    _, dm = build_parts(cfg)
    return AsrDataset(entries, dm.vocabulary, dm.featurizer, dm.normalizer(), dm.wave_augment, dm.spec_augment)


def item_throughput(dataset: AsrDataset, repeats: int) -> dict:
    """Utterances and audio seconds per second of ``dataset[i]`` on one thread, as in a loader worker."""
    seconds = sum(e.duration for e in dataset.entries)
    with torch_threads(1):  # DataLoader workers run torch with one thread
        timing = time_repeats(lambda: [dataset[i] for i in range(len(dataset))], repeats, warmup=0)
    median = timing["median_s"]
    return {"utterances": len(dataset), "audio_seconds": seconds, **timing,
            "utterances_per_second": len(dataset) / median, "audio_seconds_per_second": seconds / median,
            "ms_per_utterance": 1000 * median / len(dataset)}


@torch_threads(1)
def stage_costs(dataset: AsrDataset) -> dict[str, float]:
    """Milliseconds per utterance (one thread) of each stage: read, wave augmentation, features, normalise,
    SpecAugment."""
    costs = dict.fromkeys(("read", "wave_augment", "features", "normalise", "spec_augment"), 0.0)
    sr = dataset.featurizer.sample_rate
    for entry in dataset.entries:
        t0 = time.perf_counter()
        wave = load_audio(entry.audio_filepath, sr)
        t1 = time.perf_counter()
        wave = dataset.wave_augment(wave, sr) if dataset.wave_augment else wave
        t2 = time.perf_counter()
        feats = dataset.featurizer(wave)
        t3 = time.perf_counter()
        feats = dataset.normalizer(feats)
        t4 = time.perf_counter()
        if dataset.spec_augment:
            dataset.spec_augment(feats)
        t5 = time.perf_counter()
        for key, dt in zip(costs, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            costs[key] += dt
    return {k: 1000 * v / max(1, len(dataset)) for k, v in costs.items()}


class LoopTimer(pl.Callback):
    """Seconds the loop spends between batches (waiting on the data loader) and inside each batch."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.steps: list[float] = []
        self._start = self._end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._end is not None:
            self.waits.append(now - self._end)
        self._start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = time.perf_counter()
        self.steps.append(self._end - self._start)


def data_wait(cfg: DictConfig, entries: list[ManifestEntry], workdir: Path, num_batches: int,
              skip: int = 2, threads: int | None = None) -> dict:
    """Train ``cfg``'s model for ``skip + num_batches`` batches with ``cfg.num_workers`` loader workers and
    compare the time spent waiting for batches with the time spent in them (first ``skip`` batches dropped)."""
    from lit_asr.tasks.train import build_datamodule, build_module

    manifest = workdir / f"data_wait_{cfg.num_workers}.train"
    write_manifest(manifest, entries)
    vocabulary = Vocabulary.load(cfg.dataset_vocab)
    featurizer = hydra.utils.instantiate(cfg.features)
    module = build_module(cfg, vocabulary, featurizer)
    cfg = copy.deepcopy(cfg)
    cfg.train_manifest = str(manifest)
    dm = build_datamodule(cfg, module)
    timer = LoopTimer()
    trainer = pl.Trainer(max_steps=skip + num_batches, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer], gradient_clip_val=400.0, devices=1, default_root_dir=str(workdir))
    with torch_threads(threads):
        try:
            trainer.fit(module, datamodule=dm)
        finally:
            dm.close_workers()
        used = torch.get_num_threads()
    waits, steps = timer.waits[skip - 1:], timer.steps[skip:]
    return {"num_workers": cfg.num_workers, "threads": used, "batch_size": cfg.batch_size,
            "batches": len(steps), "wait_s": summarise(waits), "step_s": summarise(steps),
            "data_to_step_ratio": sum(waits) / sum(steps)}


def padding(durations: list[float], batch_size: int, max_batch_duration: float | None,
            featurizer: FeatureExtractor, seed: int = 0) -> dict:
    """Fraction of padded feature frames over one epoch: duration-bucketed vs random batches of the same size."""
    sr = featurizer.sample_rate
    frames = [featurizer.num_frames(int(d * sr)) for d in durations]
    bucketed = list(DurationBatchSampler(durations, batch_size, max_batch_duration, shuffle=True, seed=seed))
    order = list(range(len(durations)))
    random.Random(seed).shuffle(order)
    random_batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def fraction(batches: list[list[int]]) -> float:
        real = sum(frames[i] for b in batches for i in b)
        padded = sum(max(frames[i] for i in b) * len(b) for b in batches)
        return 1 - real / padded

    return {"utterances": len(durations), "batch_size": batch_size, "max_batch_duration": max_batch_duration,
            "bucketed_batches": len(bucketed), "bucketed_padding": fraction(bucketed),
            "random_padding": fraction(random_batches)}


def read_entries(path: str | Path, limit: int, seed: int = 0) -> list[ManifestEntry]:
    """Up to ``limit`` utterances of a manifest, sampled at random with a fixed seed."""
    entries, _ = read_manifest(path, check_files=False)
    return random.Random(seed).sample(entries, min(limit, len(entries)))
