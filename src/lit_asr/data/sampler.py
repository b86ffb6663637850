"""Batches of similar duration, bounded by count and by total padded audio, sharded across ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class DurationBatchSampler(Sampler[list[int]]):
    """Sort by duration (with jitter when shuffling), cut into batches, shuffle the batch order.

    A batch holds at most ``batch_size`` utterances and at most ``max_batch_duration`` seconds of padded audio
    (longest utterance x count), so one long utterance cannot blow up memory. With several ranks every rank
    gets the same number of batches (the list is padded by repeating batches), as DDP requires.
    For the first ``sortagrad_epochs`` epochs batches come shortest first (SortaGrad, DeepSpeech2 paper):
    short utterances teach CTC its alignments sooner and keep early gradients tame.
    An epoch's order depends only on the seed, the epoch and the durations, so a resumed run can continue an epoch
    with its next unseen batch (``resume_at``).
    """

    def __init__(self, durations: Sequence[float], batch_size: int, max_batch_duration: float | None = None,
                 shuffle: bool = True, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 pad_to_replicas: bool = True, sortagrad_epochs: int = 0):
        super().__init__()
        self.durations = list(durations)
        self.batch_size = batch_size
        self.max_batch_duration = max_batch_duration or float("inf")
        self.shuffle, self.seed = shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.pad_to_replicas = pad_to_replicas
        self.sortagrad_epochs = sortagrad_epochs
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches of it already trained on)

    @property
    def sampler(self) -> DurationBatchSampler:
        """Lightning sets each epoch through ``loader.batch_sampler.sampler.set_epoch`` (torch's BatchSampler layout);
        without this it would never reach ``set_epoch`` and every epoch would repeat the first one's order."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this each epoch so every epoch batches differently."""
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Start at ``epoch``, and let its first iteration leave out the ``batches_done`` batches already trained on.

        Lightning creates a resumed run's first iterator before it sets the epoch, so the epoch is set here too.
        The length stays the whole epoch's: Lightning counts the batches done as part of the epoch.
        """
        self.epoch = epoch
        self._skip = (epoch, batches_done)

    def _batches(self, indices: list[int]) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        keys = torch.tensor([self.durations[i] for i in indices], dtype=torch.float64)
        if self.shuffle:
            # Jitter of +-5% mixes utterances of nearly equal length between epochs at little padding cost.
            keys = keys * (1 + 0.1 * (torch.rand(len(keys), generator=g, dtype=torch.float64) - 0.5))
        order = [indices[i] for i in torch.argsort(keys).tolist()]
        batches, current, longest = [], [], 0.0
        for idx in order:
            dur = self.durations[idx]
            if current and (len(current) >= self.batch_size
                            or max(longest, dur) * (len(current) + 1) > self.max_batch_duration):
                batches.append(current)
                current, longest = [], 0.0
            current.append(idx)
            longest = max(longest, dur)
        if current:
            batches.append(current)
        if self.shuffle and self.epoch >= self.sortagrad_epochs:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def _rank_batches(self) -> list[list[int]]:
        everything = list(range(len(self.durations)))
        if self.num_replicas == 1:
            return self._batches(everything)
        if not self.pad_to_replicas:
            # Evaluation: deal utterances (not batches) round-robin by length, so every rank gets work even
            # when the test set has fewer batches than ranks, and each utterance is seen exactly once.
            by_length = sorted(everything, key=lambda i: self.durations[i])
            return self._batches(by_length[self.rank::self.num_replicas])
        batches = self._batches(everything)
        total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
        batches = batches + batches[: total - len(batches)]
        return batches[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches()
        if self._skip is not None and self._skip[0] <= self.epoch:
            if self._skip[0] == self.epoch:
                batches = batches[self._skip[1]:]
            self._skip = None
        return iter(batches)

    def __len__(self) -> int:
        return len(self._rank_batches())
