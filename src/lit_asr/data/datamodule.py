"""LightningDataModule: manifests -> validated utterances -> duration-bucketed batches."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lit_asr.data.augment import SpecAugment, WaveAugmentor
from lit_asr.data.dataset import AsrDataset, collate
from lit_asr.data.features import FeatureExtractor, Normalizer
from lit_asr.data.manifest import ManifestEntry, read_manifest
from lit_asr.data.sampler import DurationBatchSampler
from lit_asr.errors import LitAsrError

if TYPE_CHECKING:  # the model imports nothing from here; only its type is needed
    from lit_asr.models.asr_module import AsrModule

log = logging.getLogger(__name__)


def ctc_feasible(tokens: list[int], output_frames: int) -> bool:
    """CTC needs one frame per token plus a blank between each pair of equal neighbours."""
    repeats = sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    return len(tokens) + repeats <= output_frames


class AsrDataModule(pl.LightningDataModule):
    """Reads train/test manifests, filters them, and serves padded batches (augmented for training only).

    The vocabulary, the feature settings and the normalisation statistics come from ``model`` (the AsrModule,
    which saves them in its checkpoints), never from files of their own: training batches are normalised exactly
    as evaluation, inference and export normalise. The statistics are copied from the model's buffers whenever a
    loader is made, i.e. after Lightning has restored a checkpoint into the model.
    """

    def __init__(
        self,
        train_manifest: str,
        test_manifest: str,
        model: AsrModule,
        min_duration: float = 0.5,
        max_duration: float = 20.0,
        batch_size: int = 32,
        max_batch_duration: float | None = None,
        num_workers: int = 2,
        wave_augment: WaveAugmentor | None = None,
        spec_augment: SpecAugment | None = None,
        seed: int = 0,
        sortagrad_epochs: int = 0,
        duration_tolerance: float | None = None,
    ):
        super().__init__()
        self.train_manifest, self.test_manifest = train_manifest, test_manifest
        self.model = model
        self.vocabulary = model.vocabulary
        # A copy on the CPU for the loader workers: the model's own moves to the accelerator with it.
        self.featurizer = FeatureExtractor(**model.hparams.feature_config)
        self.min_duration, self.max_duration = min_duration, max_duration
        self.duration_tolerance = duration_tolerance
        self.batch_size, self.max_batch_duration = batch_size, max_batch_duration
        self.num_workers = num_workers
        self.wave_augment, self.spec_augment = wave_augment, spec_augment
        self.seed = seed
        self.sortagrad_epochs = sortagrad_epochs
        self.train_set: AsrDataset | None = None
        self.test_set: AsrDataset | None = None

    def normalizer(self) -> Normalizer:
        """A CPU copy of the model's normaliser, as it is now."""
        return Normalizer(self.model.normalizer.mean.detach().cpu().clone(),
                          self.model.normalizer.std.detach().cpu().clone())

    def _load(self, path: str, split: str) -> list[ManifestEntry]:
        entries, _ = read_manifest(path, self.min_duration, self.max_duration,
                                   duration_tolerance=self.duration_tolerance)
        unknown = [e for e in entries if self.vocabulary.count_unknown(e.text)]
        if unknown:
            chars = sorted({ch for e in unknown for ch in e.text if ch not in self.vocabulary})
            log.warning("%s: %d utterances have characters outside the vocabulary, mapped to <unk> (%d distinct, "
                        "e.g. %s)", split, len(unknown), len(chars), " ".join(repr(c) for c in chars[:5]))
        if split == "train":
            # Only training drops them (their loss would be infinite); the test pass scores every utterance, as
            # task=eval does, so both CERs are computed on the same utterances.
            entries = self._ctc_feasible(entries, split)
        if not entries:
            raise LitAsrError(f"{split}: no utterances left in {path} after the checks above")
        return entries

    def _ctc_feasible(self, entries: list[ManifestEntry], split: str) -> list[ManifestEntry]:
        sr = self.featurizer.sample_rate
        feasible = [ctc_feasible(self.vocabulary.encode(e.text),
                                 self.model.output_frames(self.featurizer.num_frames(int(e.duration * sr))))
                    for e in entries]
        kept = [e for e, ok in zip(entries, feasible) if ok]
        if len(kept) < len(entries):
            first = entries[feasible.index(False)]
            log.warning("%s: skipped %d utterances too short for their transcript (CTC needs at least one "
                        "output frame per character), e.g. %s: %d characters in %.2f s", split,
                        len(entries) - len(kept), first.audio_filepath, len(first.text), first.duration)
        return kept

    def _dataset(self, entries: list[ManifestEntry], augment: bool) -> AsrDataset:
        return AsrDataset(entries, self.vocabulary, self.featurizer, self.normalizer(),
                          self.wave_augment if augment else None, self.spec_augment if augment else None,
                          duration_tolerance=self.duration_tolerance)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset(self._load(self.train_manifest, "train"), augment=True)
        if self.test_set is None:
            self.test_set = self._dataset(self._load(self.test_manifest, "test"), augment=False)

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, dataset: AsrDataset, shuffle: bool) -> DataLoader:
        world, rank = self._ranks()
        dataset.normalizer = self.normalizer()  # a resumed checkpoint's statistics, restored after setup()
        sampler = DurationBatchSampler(
            [e.duration for e in dataset.entries], self.batch_size, self.max_batch_duration, shuffle=shuffle,
            seed=self.seed, num_replicas=world, rank=rank, pad_to_replicas=shuffle,
            sortagrad_epochs=self.sortagrad_epochs if shuffle else 0)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
