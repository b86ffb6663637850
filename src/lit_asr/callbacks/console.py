"""MASR-style console lines: ``Train epoch: [e/E], batch: [b/B], loss, learning rate, eta`` and ``Test epoch``."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger("lit_asr")


def _fmt(seconds: float, fraction: bool = False) -> str:
    text = str(timedelta(seconds=round(seconds, 2) if fraction else int(seconds)))
    return text[:-4] if fraction and "." in text else text


class ConsoleLogger(pl.Callback):
    """Prints training progress every ``log_interval`` batches and a summary after each test pass."""

    def __init__(self, log_interval: int = 100):
        self.log_interval = log_interval
        self._fit_start = 0.0
        self._epoch_start = 0.0
        self._steps_at_start = 0

    @rank_zero_only
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.monotonic()
        self._epoch_start = self._fit_start  # a mid-epoch resume starts no new epoch
        self._steps_at_start = trainer.global_step

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    @rank_zero_only
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % self.log_interval and batch_idx + 1 != trainer.num_training_batches:
            return
        metrics = trainer.callback_metrics
        loss = float(metrics.get("train/loss", float("nan")))
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        done = trainer.global_step - self._steps_at_start
        per_step = (time.monotonic() - self._fit_start) / max(1, done)
        total = trainer.estimated_stepping_batches
        eta = per_step * max(0, total - trainer.global_step)
        log.info("Train epoch: [%d/%d], batch: [%d/%d], loss: %.5f, learning rate: %.8f, eta: %s",
                 trainer.current_epoch + 1, trainer.max_epochs, batch_idx + 1, trainer.num_training_batches,
                 loss, lr, _fmt(eta))

    # The *_end hooks run after the module's epoch-end hooks have logged val/loss and val/cer.
    @rank_zero_only
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._report(trainer)

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: pl.Trainer) -> None:
        metrics = trainer.callback_metrics
        elapsed = time.monotonic() - self._epoch_start if self._epoch_start else 0.0
        # cer is the configured decoder's; with a beam search, greedy decoding's follows for comparison.
        greedy = f", cer_greedy: {float(metrics['val/cer_greedy']):.5f}" if "val/cer_greedy" in metrics else ""
        log.info("Test epoch: %d, time/epoch: %s, loss: %.5f, cer: %.5f%s", trainer.current_epoch + 1,
                 _fmt(elapsed, fraction=True), float(metrics.get("val/loss", float("nan"))),
                 float(metrics.get("val/cer", float("nan"))), greedy)
