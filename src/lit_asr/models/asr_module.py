"""LightningModule: DeepSpeech2 + CTC loss, optimiser and schedule from config, CER on the test set."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import hydra
import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric
from torchmetrics.text import CharErrorRate

from lit_asr.data.features import FeatureExtractor, Normalizer
from lit_asr.data.text import normalize_text
from lit_asr.data.tokenizer import vocabulary_from_checkpoint
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.decoding.greedy import greedy_decode

if TYPE_CHECKING:  # pyctcdecode is imported only when a beam-search decoder is configured
    from lit_asr.decoding.beam_search import BeamSearchDecoder

log = logging.getLogger(__name__)


class AsrModule(pl.LightningModule):
    """Holds everything inference needs (vocabulary, feature settings, normalisation, model config).

    All constructor arguments are plain data so a checkpoint rebuilds the module with no files beside it.
    """

    def __init__(
        self,
        model: dict,
        vocabulary: list[str],
        feature_config: dict,
        mean: list[float],
        std: list[float],
        optimizer: dict,
        scheduler: dict | None = None,
        num_val_examples: int = 5,
        tokenizer_model: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.vocabulary = vocabulary_from_checkpoint(vocabulary, tokenizer_model)
        self.featurizer = FeatureExtractor(**feature_config)
        self.normalizer = Normalizer(torch.tensor(mean), torch.tensor(std))
        self.net = hydra.utils.instantiate(model, input_dim=self.featurizer.dim, vocab_size=len(self.vocabulary))
        self.ctc = torch.nn.CTCLoss(blank=Vocabulary.blank_id, zero_infinity=True)
        self.val_loss = MeanMetric()
        self.val_cer = CharErrorRate()
        self.val_cer_greedy = CharErrorRate()
        # The per-epoch test's decoder (set by the training task; None: greedy). It is no hyperparameter: a
        # checkpoint is decoded with whatever decoder evaluation or inference configures.
        self.decoder: BeamSearchDecoder | None = None
        self._decoding: list[tuple[Callable[[], list[str]], list[str]]] = []
        self.val_examples: list[tuple[str, str]] = []
        self.skipped_steps = 0
        self.empty_batches = 0
        self._buffers_before_step: list[torch.Tensor] = []

    def output_frames(self, input_frames: int) -> int:
        """Model output frames for ``input_frames`` feature frames (used to drop CTC-infeasible utterances)."""
        return int(self.net.output_lengths(torch.tensor([input_frames]))[0])

    def forward(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(feats, feat_lengths)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean CTC loss, log-probs, output lengths) of a padded batch."""
        log_probs, out_lengths = self(batch["feats"], batch["feat_lengths"])
        # CTC in float32: under mixed precision the log-sum-exp over long paths loses too much.
        loss = self.ctc(log_probs.float().transpose(0, 1), batch["tokens"], out_lengths, batch["token_lengths"])
        return loss, log_probs, out_lengths

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        if batch["feats"].shape[0] == 0:
            return self._empty_batch_step()
        loss, _, _ = self.compute_loss(batch)
        n = batch["feats"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=n)
        return loss

    def _empty_batch_step(self) -> torch.Tensor | None:
        """Every utterance of the batch failed to load (each was reported): no update from it, counted.

        Alone, the step is skipped. Under DDP every rank must take part in every step (Lightning refuses a skipped
        one and the peers' all-reduce would wait for this rank), so the rank contributes zero gradients: a loss of
        0 x the sum of all weights reaches every parameter and so every all-reduce bucket.
        """
        self.empty_batches += 1
        log.warning("training batch %d: no utterance could be loaded (see above); it contributes nothing (%d such "
                    "batches so far)", self.global_step, self.empty_batches)
        if self.trainer.world_size == 1:
            return None
        return 0.0 * sum(p.sum() for p in self.parameters() if p.requires_grad)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # The forward pass updates BatchNorm's running statistics; keep a copy so a skipped step can undo that too.
        if batch_idx % self.trainer.accumulate_grad_batches == 0:
            self._buffers_before_step = [b.detach().clone() for b in self.buffers()]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # A non-finite gradient would poison the weights for good: drop it so the optimiser skips this step.
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.abs().sum() for g in grads]).sum()):
            for p in self.parameters():
                p.grad = None
            with torch.no_grad():  # the same batch left NaN in BatchNorm's running mean/var
                for buffer, saved in zip(self.buffers(), self._buffers_before_step):
                    buffer.copy_(saved)
            self.skipped_steps += 1
            log.warning("non-finite loss or gradient at step %d: update skipped (%d so far)",
                        self.global_step, self.skipped_steps)
        self.log("train/skipped_steps", float(self.skipped_steps), batch_size=1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["skipped_steps"] = self.skipped_steps  # the counts go on across a resume
        checkpoint["empty_batches"] = self.empty_batches
        # task=average ranks epoch checkpoints by the test metrics of the validation they were saved after
        metrics = self._trainer.callback_metrics if self._trainer is not None else {}
        checkpoint["val_metrics"] = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_steps = int(checkpoint.get("skipped_steps", 0))
        self.empty_batches = int(checkpoint.get("empty_batches", 0))

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Greedy transcripts of a padded batch, normalised like the references they are scored against."""
        return [normalize_text(self.vocabulary.decode(ids)) for ids in greedy_decode(log_probs, lengths)]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if batch["feats"].shape[0] == 0:
            return
        loss, log_probs, out_lengths = self.compute_loss(batch)
        hyps = self.decode(log_probs, out_lengths)
        self.val_loss.update(loss, weight=batch["feats"].shape[0])
        if self.decoder is None:
            self._score(hyps, batch["texts"])
            return
        self.val_cer_greedy.update(hyps, batch["texts"])
        # The decoder's workers search while the network runs on the next batches; the epoch end collects.
        arrays = [log_probs[i, : out_lengths[i]].float().cpu().numpy() for i in range(len(hyps))]
        self._decoding.append((self.decoder.submit(arrays), batch["texts"]))

    def _score(self, hyps: list[str], refs: list[str]) -> None:
        self.val_cer.update(hyps, refs)
        if len(self.val_examples) < self.hparams.num_val_examples:
            self.val_examples.extend(zip(refs, hyps))

    def on_validation_epoch_start(self) -> None:
        self.val_examples = []
        self._decoding = []

    def on_validation_epoch_end(self) -> None:
        for result, refs in self._decoding:
            self._score(result(), refs)
        self._decoding = []
        # Logging the metric objects lets torchmetrics gather them across ranks, then compute and reset.
        self.log("val/loss", self.val_loss)
        self.log("val/cer", self.val_cer, prog_bar=True)
        if self.decoder is not None:
            self.log("val/cer_greedy", self.val_cer_greedy)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def on_test_epoch_end(self) -> None:
        self.on_validation_epoch_end()

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = hydra.utils.instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            return {"optimizer": optimizer}
        extra = {}
        if "total_steps" in self.hparams.scheduler and self.hparams.scheduler["total_steps"] is None:
            # Schedules over the whole run (OneCycle) learn its length from the trainer, not from the user.
            extra["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = hydra.utils.instantiate(self.hparams.scheduler, optimizer=optimizer, **extra)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @torch.no_grad()
    def transcribe(self, waves: list[torch.Tensor]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """Greedy transcripts (and log-probs, lengths) of raw 1-D waveforms at the model's sample rate."""
        feats = [self.normalizer(self.featurizer(w.to(self.device))) for w in waves]
        lengths = torch.tensor([f.shape[0] for f in feats], device=self.device)
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        log_probs, out_lengths = self(padded, lengths)
        return self.decode(log_probs, out_lengths), log_probs, out_lengths
