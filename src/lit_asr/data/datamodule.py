"""LightningDataModule: manifests -> validated utterances -> duration-bucketed batches."""

from __future__ import annotations

import logging
import signal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.combined_loader import _shutdown_workers_and_reset_iterator
from torch.utils.data import DataLoader

from lit_asr.data.augment import SpecAugment, WaveAugmentor
from lit_asr.data.dataset import AsrDataset, collate
from lit_asr.data.features import FeatureExtractor, Normalizer
from lit_asr.data.manifest import ManifestEntry, read_manifest
from lit_asr.data.sampler import DurationBatchSampler
from lit_asr.data.shards import ShardedBatches, StepSampler, identity, read_index
from lit_asr.errors import LitAsrError

if TYPE_CHECKING:  # the model imports nothing from here; only its type is needed
    from lit_asr.models.asr_module import AsrModule

log = logging.getLogger(__name__)


def ctc_feasible(tokens: list[int], output_frames: int) -> bool:
    """CTC needs one frame per token plus a blank between each pair of equal neighbours."""
    repeats = sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    return len(tokens) + repeats <= output_frames


def init_loader_worker(worker_id: int, rank: int) -> None:
    """A loader worker ignores SIGINT/SIGTERM and is seeded as Lightning seeds workers.

    Ctrl-C and ``kill -TERM -- -PGID`` reach every process of the group; a worker that died of them would end the
    run with "DataLoader worker ... is killed by signal" before the main process could save. The main process
    decides (GracefulStop) and shuts its workers down itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Lightning adds its seeding worker_init_fn only to loaders without one, so this one must do it too.
    pl_worker_init_function(worker_id, rank)


class PrestartedLoader(DataLoader):
    """A DataLoader whose (persistent) workers start when it is made; its first iteration is the one they began,
    so the batches they prefetched are used, not fetched again."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started = super().__iter__() if self.num_workers > 0 else None

    def __iter__(self):
        started, self._started = self._started, None
        return started if started is not None else super().__iter__()

    def shutdown(self) -> None:
        """Stop its workers, whether or not an iteration has taken the one they began."""
        self._started = None
        _shutdown_workers_and_reset_iterator(self)  # what Lightning's own teardown calls


class AsrDataModule(pl.LightningDataModule):
    """Reads train/dev/test manifests, filters them, and serves padded batches (augmented for training only).

    Validation reads ``dev_manifest`` (None: ``manifest.dev`` beside ``test_manifest``); when that file does not
    exist (a dataset folder from before dev splits) it reads ``test_manifest`` and says so once.

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
        train_shards: str | None = None,
        shuffle_shards: int = 4,
        dev_manifest: str | None = None,
        duration_tolerance: float | None = None,
    ):
        super().__init__()
        self.train_shards, self.shuffle_shards = train_shards, shuffle_shards
        self.train_manifest, self.test_manifest = train_manifest, test_manifest
        self.dev_manifest = dev_manifest
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
        self.train_set: AsrDataset | ShardedBatches | None = None
        self.test_set: AsrDataset | None = None
        self.val_set: AsrDataset | None = None
        self.train_sampler: DurationBatchSampler | None = None
        self._val_loader: DataLoader | None = None
        self._resume_position: dict | None = None  # from a checkpoint: where the training batches go on

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

    def _sharded_train_set(self) -> ShardedBatches:
        # Transcripts live inside the shards: the CTC-feasibility filter cannot run up front; CTC's zero_infinity
        # gives an infeasible utterance zero loss instead.
        world, rank = self._ranks()
        items = self._dataset([], augment=True)
        dataset = ShardedBatches(read_index(self.train_shards), items, self.batch_size, self.max_batch_duration,
                                 seed=self.seed, world=world, rank=rank, shuffle_shards=self.shuffle_shards)
        log.info("train: %d shards from %s, %d steps per epoch on each of %d rank(s)", len(dataset.shards),
                 self.train_shards, len(dataset), world)
        return dataset

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None and self.train_shards:
            self.train_set = self._sharded_train_set()
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset(self._load(self.train_manifest, "train"), augment=True)
        if self.test_set is None:
            self.test_set = self._dataset(self._load(self.test_manifest, "test"), augment=False)
        if stage in (None, "fit", "validate") and self.val_set is None:
            path, split = self.validation_manifest()
            self.val_set = self.test_set if split == "test" else self._dataset(self._load(path, split), augment=False)

    def validation_manifest(self) -> tuple[str, str]:
        """(path, split name) validation reads: the dev manifest, or test when there is none."""
        dev = Path(self.dev_manifest) if self.dev_manifest else Path(self.test_manifest).with_name("manifest.dev")
        if dev.is_file():
            return str(dev), "dev"
        log.warning("no dev manifest (%s): validating on test_manifest %s; re-run scripts/prepare_data.py for a "
                    "dev split", dev, self.test_manifest)
        return self.test_manifest, "test"

    def _ranks(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, dataset: AsrDataset, shuffle: bool, loader_class: type[DataLoader] = DataLoader) -> DataLoader:
        world, rank = self._ranks()
        dataset.normalizer = self.normalizer()  # a resumed checkpoint's statistics, restored after setup()
        sampler = DurationBatchSampler(
            [e.duration for e in dataset.entries], self.batch_size, self.max_batch_duration, shuffle=shuffle,
            seed=self.seed, num_replicas=world, rank=rank, pad_to_replicas=shuffle,
            sortagrad_epochs=self.sortagrad_epochs if shuffle else 0)
        return loader_class(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                            persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
                            worker_init_fn=partial(init_loader_worker, rank=rank))

    def train_dataloader(self) -> DataLoader:
        if isinstance(self.train_set, ShardedBatches):
            self.train_set.items.normalizer = self.normalizer()
            return DataLoader(self.train_set, sampler=StepSampler(self.train_set), batch_size=None,
                              collate_fn=identity, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available(),
                              worker_init_fn=partial(init_loader_worker, rank=self._ranks()[1]))
        loader = self._loader(self.train_set, shuffle=True)
        self.train_sampler = loader.batch_sampler
        position, self._resume_position = self._resume_position, None
        if position is not None:
            if position["utterances"] == len(self.train_set) and position["seed"] == self.seed:
                self.train_sampler.resume_at(position["epoch"], position["batches_done"])
            else:
                log.warning("the training set or seed differs from the checkpoint's (%d utterances, seed %d; now %d, "
                            "%d): the resumed epoch's batches are drawn afresh, some seen twice and some not at all",
                            position["utterances"], position["seed"], len(self.train_set), self.seed)
        return loader

    def state_dict(self) -> dict:
        """Where the training batches stand (saved in checkpoints): the next epoch and the batches done in it.

        A checkpoint taken mid-epoch resumes with the epoch's next unseen batch, so an interrupted run trains on
        exactly the batches an uninterrupted one does. The batch settings are kept with it: the order depends on them.
        """
        trainer = self.trainer
        if trainer is None or self.train_sampler is None or trainer.state.fn != TrainerFn.FITTING:
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        epoch, done = epochs.processed, 0
        if epochs.started > epochs.processed:  # an epoch is under way (its batch counters are current)
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if done >= len(self.train_sampler):
                epoch, done = epoch + 1, 0
        return {"train_position": {"epoch": epoch, "batches_done": done, "seed": self.seed,
                                   "utterances": len(self.train_set), "batch_size": self.batch_size,
                                   "max_batch_duration": self.max_batch_duration}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume the training batches where the checkpoint left them, with the checkpoint's batch settings."""
        position = state_dict.get("train_position")
        if position:
            self._resume_position = position
            self.batch_size, self.max_batch_duration = position["batch_size"], position["max_batch_duration"]

    def val_dataloader(self) -> DataLoader:
        # Workers forked now, before training, not at the first validation: forked after an epoch, a worker's
        # allocations land in pages the trainer's allocator keeps cached, each write a copy-on-write copy (demo:
        # 420 MB private per worker instead of 36).
        self._val_loader = self._loader(self.val_set, shuffle=False, loader_class=PrestartedLoader)
        return self._val_loader

    def close_workers(self) -> None:
        """Shut down the validation workers forked by val_dataloader(), if Lightning has not (it does only after a
        validation ran): at exit multiprocessing would SIGTERM and wait for them, and they ignore SIGTERM."""
        loader, self._val_loader = self._val_loader, None
        if loader is not None:
            loader.shutdown()

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
