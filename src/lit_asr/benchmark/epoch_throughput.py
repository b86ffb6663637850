"""Throughput of the first training epoch of a real ``run.py`` run, written as JSON (scripts/compare_masr.sh).

Added to a run as an extra callback:
``+callbacks.epoch_throughput._target_=lit_asr.benchmark.epoch_throughput.EpochThroughput
+callbacks.epoch_throughput.output=FILE``.

The clock starts when the first epoch starts and stops at the end of its last training batch, so start-up, the
test pass and checkpointing are outside it, and so is the loader workers' start (Lightning creates the loader's
iterator just before the epoch starts); the waits for batches are inside, as in any epoch.
Audio seconds are counted as feature frames x frame shift, the same rule MASR's side of the comparison uses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


class EpochThroughput(pl.Callback):
    """Times the first training epoch and writes its size, duration and throughput to ``output`` (JSON)."""

    def __init__(self, output: str):
        self.output = Path(output)
        self.parameters = 0
        self.batches = self.utterances = self.frames = 0
        self.wait_s = 0.0
        self._start = self._last_end = None
        self._done = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.parameters = sum(p.numel() for p in pl_module.parameters())

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._start is None:
            self._start = self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict,
                             batch_idx: int) -> None:
        if not self._done:
            self.wait_s += time.perf_counter() - self._last_end

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch: dict,
                           batch_idx: int) -> None:
        if self._done:
            return
        self.batches += 1
        self.utterances += int(batch["feats"].shape[0])
        self.frames += int(batch["feat_lengths"].sum())
        self._last_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._done or self._start is None:
            return
        self._done = True
        featurizer = pl_module.featurizer
        seconds = self._last_end - self._start
        audio_s = self.frames * featurizer.hop_length / featurizer.sample_rate
        result = {
            "framework": "lit-asr", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": str(pl_module.device), "precision": str(trainer.precision),
            "parameters": self.parameters, "batches": self.batches, "utterances": self.utterances,
            "audio_seconds": audio_s, "train_seconds": seconds, "data_wait_seconds": self.wait_s,
            "utterances_per_second": self.utterances / seconds, "audio_seconds_per_second": audio_s / seconds,
        }
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(result, indent=1) + "\n")
