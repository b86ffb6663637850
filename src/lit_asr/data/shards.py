"""Sharded corpora: the checked train split as WebDataset tar shards, streamed shard by shard in training.

Writing (``prepare_data.py ... --shards DIR --shard-size N``): members ``<key>.<ext>`` (the audio file's bytes as
they are) and ``<key>.json`` (text, duration, source path), plus ``index.json`` (per shard: file, utterance count,
total duration) and ``durations.npy`` (every utterance's duration, in shard order).

Reading (``train_shards=DIR``): every epoch the shards are shuffled (seed + epoch) and dealt to ranks so their audio
totals balance, then to loader workers. A shard is the bucketing unit: its utterances are sorted by duration and
cut into batches bounded by ``batch_size`` and ``max_batch_duration``. Because the index holds every duration, each
rank knows, before reading any audio, how many batches every rank will make; ranks with fewer repeat some of
their own batches at the end, so all ranks take the same number of steps (DDP needs that) and every utterance is
seen exactly once per epoch apart from those repeats. Batch order is shuffled within a window of shards (the
shuffle buffer). A member that cannot be decoded is skipped and counted; its batch shrinks (an empty batch is a
zero-weight step), so step counts never change.
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Sampler

from lit_asr.data.dataset import AsrDataset, collate
from lit_asr.data.manifest import ManifestEntry
from lit_asr.errors import LitAsrError, first_line

log = logging.getLogger(__name__)

INDEX = "index.json"
DURATIONS = "durations.npy"


@dataclass(frozen=True)
class Shard:
    """One tar file of the index and the durations of its members, in order."""

    path: Path
    durations: tuple[float, ...]

    @property
    def seconds(self) -> float:
        return float(sum(self.durations))


def write_shards(entries: Sequence[ManifestEntry], out_dir: str | Path, shard_size: int) -> list[Shard]:
    """Write ``entries`` as tar shards of at most ``shard_size`` utterances, with the index; returns the shards."""
    import webdataset as wds

    if shard_size < 1:
        raise LitAsrError(f"--shard-size must be at least 1, not {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards, durations = [], []
    for start in range(0, len(entries), shard_size):
        part = entries[start:start + shard_size]
        path = out / f"shard-{start // shard_size:06d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for i, e in enumerate(part, start):
                ext = Path(e.audio_filepath).suffix.lstrip(".").lower() or "wav"
                sink.write({"__key__": f"{i:09d}", ext: Path(e.audio_filepath).read_bytes(),
                            "json": {"text": e.text, "duration": e.duration, "source": e.audio_filepath}})
        shards.append({"file": path.name, "utterances": len(part), "duration": round(sum(e.duration for e in part), 3)})
        durations += [e.duration for e in part]
    (out / INDEX).write_text(json.dumps({"shards": shards, "utterances": len(entries)}, indent=1), encoding="utf-8")
    np.save(out / DURATIONS, np.asarray(durations, dtype=np.float32))
    return read_index(out)


def read_index(shard_dir: str | Path) -> list[Shard]:
    """The shards of ``shard_dir`` with their members' durations; a one-line error when the index is missing or off."""
    root = Path(shard_dir)
    if not (root / INDEX).is_file() or not (root / DURATIONS).is_file():
        raise LitAsrError(f"no shard index in {root} (write one with prepare_data.py ... --shards {root})")
    try:
        index = json.loads((root / INDEX).read_text(encoding="utf-8"))
        durations = np.load(root / DURATIONS, allow_pickle=False)
        counts = [int(s["utterances"]) for s in index["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LitAsrError(f"cannot read the shard index of {root}: {first_line(exc)}") from None
    if sum(counts) != len(durations):
        raise LitAsrError(f"shard index of {root} lists {sum(counts)} utterances but {len(durations)} durations")
    shards, offset = [], 0
    for spec, n in zip(index["shards"], counts):
        path = root / spec["file"]
        if not path.is_file():
            raise LitAsrError(f"shard listed in {root / INDEX} not found: {path}")
        shards.append(Shard(path, tuple(float(d) for d in durations[offset:offset + n])))
        offset += n
    return shards


def shard_batches(durations: Sequence[float], batch_size: int, max_batch_duration: float | None) -> list[list[int]]:
    """Member positions of one shard, sorted by duration and cut into bounded batches (count and padded audio)."""
    limit = max_batch_duration or float("inf")
    batches, current, longest = [], [], 0.0
    for i in sorted(range(len(durations)), key=lambda k: durations[k]):
        if current and (len(current) >= batch_size or max(longest, durations[i]) * (len(current) + 1) > limit):
            batches.append(current)
            current, longest = [], 0.0
        current.append(i)
        longest = max(longest, durations[i])
    return batches + ([current] if current else [])


def deal_shards(shards: Sequence[Shard], world: int, seed: int) -> list[list[int]]:
    """Shard indices per rank: shuffled by ``seed``, then each to the rank with the least audio so far."""
    order = list(range(len(shards)))
    random.Random(seed).shuffle(order)
    loads, ranks = [0.0] * world, [[] for _ in range(world)]
    for i in order:
        r = min(range(world), key=lambda k: (loads[k], len(ranks[k]), k))
        ranks[r].append(i)
        loads[r] += shards[i].seconds
    return ranks


class ShardedBatches(Dataset):
    """Padded training batches read from tar shards (see the module docstring), indexed by (epoch, step).

    Map-style so the loader's workers take steps round-robin and the epoch travels with each index (persistent
    workers never see a stale epoch); a worker keeps the shards of the current shuffle window in memory.
    """

    def __init__(self, shards: Sequence[Shard], items: AsrDataset, batch_size: int,
                 max_batch_duration: float | None, seed: int = 0, world: int = 1, rank: int = 0,
                 shuffle_shards: int = 4):
        super().__init__()
        if len(shards) < world:
            raise LitAsrError(f"{len(shards)} shards cannot feed {world} ranks: write smaller shards (--shard-size)")
        self.shards, self.items = list(shards), items
        self.seed, self.world, self.rank = seed, world, rank
        self.shuffle_shards = shuffle_shards
        self.skipped = 0
        self._batches = [shard_batches(s.durations, batch_size, max_batch_duration) for s in self.shards]
        self._plans: dict[int, list[tuple[int, int, list[int]]]] = {}
        self._cache: dict[int, list] = {}
        self._window: tuple[int, int] | None = None

    def steps(self, epoch: int) -> int:
        """Steps per epoch, the same on every rank: the largest rank's batch count."""
        return max(sum(len(self._batches[i]) for i in mine) for mine in deal_shards(self.shards, self.world,
                                                                                      self.seed + epoch))

    def plan(self, epoch: int) -> list[tuple[int, int, list[int]]]:
        """(window, shard, member positions) of every batch of this rank in ``epoch``; repeats (window -1) last."""
        if epoch not in self._plans:
            mine = deal_shards(self.shards, self.world, self.seed + epoch)[self.rank]
            rng = random.Random(f"{self.seed}/{epoch}/{self.rank}")
            plan: list[tuple[int, int, list[int]]] = []
            # The shuffle buffer: batches of a window of shards are mixed, so one shard's lengths do not come in a run.
            for start in range(0, len(mine), self.shuffle_shards):
                window = [(start, i, b) for i in mine[start:start + self.shuffle_shards] for b in self._batches[i]]
                rng.shuffle(window)
                plan += window
            repeats = [(-1, i, b) for _, i, b in (plan[k % len(plan)] for k in range(self.steps(epoch) - len(plan)))]
            self._plans = {epoch: plan + repeats}  # one epoch's plan at a time
        return self._plans[epoch]

    def __len__(self) -> int:
        return self.steps(0)

    def _members(self, shard: Shard) -> list[tuple[bytes, dict] | None]:
        """Every member of a shard in order: (audio bytes, metadata), None where it cannot be read."""
        import webdataset as wds

        out: list[tuple[bytes, dict] | None] = []
        for sample in wds.WebDataset(str(shard.path), shardshuffle=False, nodesplitter=None, workersplitter=None,
                                     handler=wds.warn_and_continue, empty_check=False):
            audio = [k for k in sample if not k.startswith("__") and k != "json"]
            try:
                out.append((sample[audio[0]], json.loads(sample["json"])))
            except (KeyError, IndexError, ValueError):
                out.append(None)
        return out

    def _item(self, member: tuple[bytes, dict] | None, where: str) -> dict | None:
        if member is None:
            return None
        data, meta = member
        source = io.BytesIO(data)
        source.name = meta.get("source", where)  # error messages name the original file
        try:
            return self.items.make_item(source, meta["text"], source.name, meta.get("duration"))
        except (LitAsrError, KeyError) as exc:
            log.warning("skipping shard member %s: %s", where, first_line(exc))
            return None

    def __getitem__(self, index: tuple[int, int]) -> dict:
        epoch, step = index
        window, shard_index, positions = self.plan(epoch)[step]
        if (epoch, window) != self._window:
            self._cache.clear()  # at most one window of shards in memory per worker
            self._window = (epoch, window)
        if shard_index not in self._cache:
            self._cache[shard_index] = self._members(self.shards[shard_index])
        members = self._cache[shard_index]
        shard = self.shards[shard_index]
        items = [self._item(members[p] if p < len(members) else None, f"{shard.path}#{p}") for p in positions]
        bad = sum(1 for it in items if it is None)
        if bad:
            self.skipped += bad
            log.warning("%d utterance(s) of %s could not be read and were skipped (%d so far in this worker)",
                        bad, shard.path.name, self.skipped)
        return collate(items)


class StepSampler(Sampler[tuple[int, int]]):
    """Yields (epoch, step) for every step of the epoch Lightning set (through ``set_epoch``)."""

    def __init__(self, dataset: ShardedBatches):
        super().__init__()
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch (the loader's ``sampler``)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, step) for step in range(self.dataset.steps(self.epoch))])

    def __len__(self) -> int:
        return self.dataset.steps(self.epoch)


def identity(batch: dict) -> dict:
    """The loader's collate step: batches are padded already."""
    return batch
