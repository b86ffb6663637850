"""Duration-bucketed batching."""

import random

from lightning_fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from lit_asr.data.sampler import DurationBatchSampler


def _durations(n=500, seed=0):
    rng = random.Random(seed)
    return [rng.uniform(1.0, 12.0) for _ in range(n)]


def test_batches_cover_everything_within_bounds():
    durs = _durations()
    sampler = DurationBatchSampler(durs, batch_size=16, max_batch_duration=60.0, shuffle=True, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(durs)))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or max(durs[i] for i in b) * len(b) <= 60.0
    padded = sum(max(durs[i] for i in b) * len(b) for b in batches)
    assert 1 - sum(durs) / padded < 0.10  # bucketing keeps padding under 10%


def test_epochs_differ_and_are_reproducible():
    durs = _durations()
    a = DurationBatchSampler(durs, 16, shuffle=True, seed=3)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first


def test_ranks_get_disjoint_equal_shards():
    durs = _durations(101)
    shards = [list(DurationBatchSampler(durs, 8, shuffle=True, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    covered = {i for shard in shards for b in shard for i in b}
    assert covered == set(range(101))
    val = [list(DurationBatchSampler(durs, 8, shuffle=False, num_replicas=2, rank=r, pad_to_replicas=False))
           for r in (0, 1)]
    flat = [i for shard in val for b in shard for i in b]
    assert sorted(flat) == list(range(101))  # evaluation sees every utterance exactly once


def test_sortagrad_goes_shortest_first_then_shuffles():
    durs = _durations(200)
    sampler = DurationBatchSampler(durs, 10, shuffle=True, seed=0, sortagrad_epochs=1)
    longest = [max(durs[i] for i in b) for b in sampler]
    assert longest == sorted(longest)  # epoch 0: ascending
    sampler.set_epoch(1)
    longest = [max(durs[i] for i in b) for b in sampler]
    assert longest != sorted(longest)


def test_lightning_reaches_set_epoch_through_the_loader():
    """Lightning sets the epoch on ``loader.batch_sampler.sampler``; before this was wired every epoch repeated epoch
    0's batch order (and SortaGrad never ended)."""
    durs = _durations(200)
    sampler = DurationBatchSampler(durs, 10, shuffle=True, seed=0, sortagrad_epochs=1)
    loader = DataLoader(list(range(200)), batch_sampler=sampler, collate_fn=lambda items: items)
    first = list(loader)
    _set_sampler_epoch(loader, 1)
    assert sampler.epoch == 1 and list(loader) != first


def test_resume_at_continues_an_epoch_with_its_next_unseen_batch():
    durs = _durations(200)
    whole = DurationBatchSampler(durs, 10, shuffle=True, seed=5)
    whole.set_epoch(3)
    expected = list(whole)
    resumed = DurationBatchSampler(durs, 10, shuffle=True, seed=5)
    resumed.resume_at(3, 7)
    assert len(resumed) == len(expected)  # Lightning counts the 7 batches done as part of the epoch
    assert list(resumed) == expected[7:]
    assert list(resumed) == expected  # only the resumed epoch's first pass leaves batches out
    later = DurationBatchSampler(durs, 10, shuffle=True, seed=5)
    later.resume_at(3, 7)
    later.set_epoch(4)  # an epoch after the resumed one starts whole
    whole.set_epoch(4)
    assert list(later) == list(whole)
