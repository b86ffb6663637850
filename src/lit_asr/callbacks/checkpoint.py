"""Checkpoint callbacks: folders under ``<save_model_path>/<use_model>/`` and stopping cleanly on a signal.

- ``FolderCheckpoint``: Lightning's ModelCheckpoint (triggers, keep-the-newest-k bookkeeping, state that survives
  a resume, rank-zero writes), except that every checkpoint is a folder (``epoch_N/``, ``step_N/``,
  ``best_model/``, ``last_model/``) holding ``model.ckpt``, written and replaced atomically
  (utils.checkpoints.commit), and that epoch folders count from 1 like the console.
- ``GracefulStop``: SIGTERM / Ctrl-C end training between batches, after which ``last_model/`` is written.
- ``ScheduleLengthCheck``: a resume cannot outrun its restored learning-rate schedule.
- ``LastBatchResume``: resuming from a checkpoint taken after an epoch's last batch loses no epoch.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from weakref import proxy

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lit_asr.errors import LitAsrError
from lit_asr.utils.checkpoints import CHECKPOINT_FILE, LAST_MODEL, commit, remove, staging_dir

log = logging.getLogger("lit_asr")


def display(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies below it (log lines stay short)."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


class SaveFailedElsewhere(LitAsrError):
    """Another rank (rank zero, which writes) could not save a checkpoint and reports why; this rank stops too."""


class FolderCheckpoint(ModelCheckpoint):
    """ModelCheckpoint writing ``<dirpath>/<filename>/model.ckpt`` atomically; ``{epoch_number}`` counts from 1.

    With ``save_last=True`` it also refreshes ``last_model/`` after each of its saves, and with
    ``save_last_on_signal=True`` also when a signal stops training (see GracefulStop). The overridden private
    hooks (``_monitor_candidates``, ``_save_checkpoint``, ``_remove_checkpoint``) are checked against Lightning 2.6.
    In DDP, a save that fails on rank zero stops every rank (``SaveFailedElsewhere`` on the others).
    """

    CHECKPOINT_NAME_LAST = LAST_MODEL

    def __init__(self, dirpath: str, filename: str, save_last_on_signal: bool = False, **kwargs):
        # Fixed folder names replace their predecessor (best_model, last_model) instead of growing "-v1" copies.
        super().__init__(dirpath=dirpath, filename=filename, auto_insert_metric_name=False,
                         enable_version_counter=False, **kwargs)
        self.save_last_on_signal = save_last_on_signal
        self._save_at_epoch_end = False

    def _monitor_candidates(self, trainer: pl.Trainer) -> dict[str, torch.Tensor]:
        candidates = super()._monitor_candidates(trainer)
        candidates["epoch_number"] = torch.tensor(trainer.current_epoch + 1)
        return candidates

    def format_checkpoint_name(self, metrics: dict[str, torch.Tensor], filename: str | None = None,
                               ver: int | None = None, prefix: str | None = None) -> str:
        """``<dirpath>/<formatted filename>/model.ckpt``."""
        flat = Path(super().format_checkpoint_name(metrics, filename, ver, prefix))
        return str(flat.with_name(flat.name[: -len(self.FILE_EXTENSION)]) / CHECKPOINT_FILE)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        # Trainer.save_checkpoint and ModelCheckpoint._save_checkpoint (Lightning 2.6) unrolled, so that every rank
        # learns whether rank zero's write worked: there, a failed write raised before the barrier that the other
        # ranks wait at (for the 30-minute collective timeout).
        folder = Path(filepath).parent
        staged = folder
        error: Exception | None = None
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)
        try:
            staged = staging_dir(folder) if trainer.is_global_zero else folder
            trainer.strategy.save_checkpoint(checkpoint, str(staged / CHECKPOINT_FILE))  # writes on rank zero only
            if trainer.is_global_zero:
                commit(staged, folder)
        except Exception as exc:  # re-raised below, once every rank knows
            error = exc
            if staged != folder:
                shutil.rmtree(staged, ignore_errors=True)
        failed = trainer.strategy.reduce_boolean_decision(error is not None, all=False)
        if isinstance(error, OSError):  # full disk, quota, a folder made read-only or replaced by a file
            # Raising also keeps Lightning from deleting the checkpoint this one was to replace (save_top_k).
            raise LitAsrError(
                f"cannot save checkpoint {display(folder)}: {error.strerror or error}; the checkpoints already in "
                f"{display(folder.parent)} are kept: free space or fix the folder, then run the same command to "
                "resume") from None
        if error is not None:
            raise error
        if failed:
            raise SaveFailedElsewhere(f"rank zero could not save {display(folder)}")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))
            log.info("saved %s (step %d)", display(folder), trainer.global_step)

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if trainer.is_global_zero and remove(Path(filepath).parent):
            log.info("removed %s", display(Path(filepath).parent))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        # A step checkpoint due at an epoch's last batch waits for the epoch's end, after validation: saved
        # between the two, it resumes as an epoch whose end never ran (no validation, no epoch_N/), and a kill
        # during the final epoch's validation then left a run that, resumed, ended without either.
        if self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0 and \
                trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._save_at_epoch_end = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._save_at_epoch_end:
            self._save_at_epoch_end = False
            if not self._should_skip_saving_checkpoint(trainer):
                candidates = self._monitor_candidates(trainer)
                self._save_topk_checkpoint(trainer, candidates)
                self._save_last_checkpoint(trainer, candidates)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning would write last_model again here if this instance never saved, though a sibling just did.
        if not any(isinstance(c, FolderCheckpoint) and c.save_last and c._last_global_step_saved == trainer.global_step
                   for c in trainer.checkpoint_callbacks):
            super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Lightning raises SIGTERMException only between batches (on every rank), so the state here is consistent;
        # other exceptions may strike mid-update, and the last periodic last_model is the safer one to keep.
        if self.save_last_on_signal and isinstance(exception, SIGTERMException) and not trainer.sanity_checking:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def abort_on_second_interrupt(line: bytes = b"") -> None:
    """Exit at once with status 130 (128 + SIGINT), writing ``line`` to stderr: what a second Ctrl-C does."""
    if line:
        os.write(2, line)
    os._exit(128 + signal.SIGINT)


class ScheduleLengthCheck(pl.Callback):
    """Stops a resume whose restored learning-rate schedule is shorter than the run (e.g. num_epoch was raised).

    Whole-run schedules (OneCycleLR) fix their length when first built and a resume restores it; stepping past
    its end fails deep inside PyTorch, so say so up front in terms of the config.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        needed = trainer.estimated_stepping_batches
        for config in trainer.lr_scheduler_configs:
            planned = getattr(config.scheduler, "total_steps", None)
            if config.interval == "step" and planned is not None and planned < needed:
                raise LitAsrError(
                    f"the resumed learning-rate schedule covers {planned} steps but this run needs {needed} "
                    "(was num_epoch raised?): resume with the original num_epoch, or start a new run from its "
                    "weights with pretrained_model=PATH")


class LastBatchResume(pl.Callback):
    """Resuming from a checkpoint written after the last batch of an epoch, before its end, must start the next
    epoch like any other. lit-asr no longer writes such checkpoints (step checkpoints and signal stops that fall
    on a last batch wait for the epoch's end), but earlier versions did, and ``Trainer.save_checkpoint`` may.

    Lightning 2.6 counts that epoch as finished on resume, but then also treats the next epoch as the one it restarted
    in the middle of: it skips that epoch's start (its progress counters and ``on_train_epoch_start``), so every later
    end-of-epoch checkpoint is one epoch behind, and resuming from one of those silently skips a whole epoch.
    Checkpoints already written with counters one behind are repaired when loaded.
    """

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Runs before Lightning restores its loops from checkpoint["loops"].
        epochs = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
        for counts in (epochs.get("total"), epochs.get("current")):
            if counts and counts["ready"] == counts["started"] == counts["processed"] - 1 == counts["completed"]:
                counts["ready"] = counts["started"] = counts["processed"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        # The same condition under which Lightning's FitLoop.reset counts the restarted epoch as finished.
        if loop.restarted_mid_epoch and loop.epoch_loop.restarted_on_train_batch_end and \
                loop.epoch_loop.batch_progress.is_last_batch:
            loop.reset_restart_stage()


class GracefulStop(pl.Callback):
    """SIGTERM or Ctrl-C: every rank finishes its current training batch, then training stops (SIGTERMException).

    Replaces Lightning's SIGTERM handler, which runs a collective inside the signal handler and so deadlocks DDP
    ranks caught in a gradient all-reduce. Here the handler only records the signal; the ranks agree on it with
    one tiny all-reduce after each training batch and at each epoch's end, points every rank reaches equally often
    (validation batches are not, so a signal during validation, or during an epoch's last batch, takes effect
    after the validation and the epoch's checkpoints).
    Loader workers ignore both signals (data.datamodule.init_loader_worker). A second Ctrl-C aborts at once,
    without saving: one line on stderr, exit status 130.
    """

    def __init__(self, folder: str | Path = "") -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self.abort_line = (f"aborted by a second Ctrl-C, without saving; the checkpoints already in "
                            f"{display(folder)} are kept: run the same command to resume\n").encode()
        self._report = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning installs its handler just before training starts; this hook runs after that.
        self._report = trainer.is_global_zero
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        # No logging here: a handler that writes through Python's buffers can interrupt a write of the main thread
        # and fail re-entrantly; os.write goes straight to the file descriptor.
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            abort_on_second_interrupt(self.abort_line if self._report else b"")
        self.signum = signum

    def _ranks_agree_to_stop(self, trainer: pl.Trainer) -> bool:
        stop = self.signum is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self.signum = self.signum or signal.SIGTERM  # another rank's signal stops this rank too
            if trainer.is_global_zero:
                log.warning("%s received: stopping after step %d", signal.Signals(self.signum).name,
                            trainer.global_step)
        return stop

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        # Stopping after an epoch's last batch would leave a checkpoint whose epoch end (validation, epoch_N/)
        # never runs on resume; the check at the epoch's end, after validation, takes that signal instead.
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        if self._ranks_agree_to_stop(trainer):
            raise SIGTERMException()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A signal that came during the epoch's validation ends the run as an early stop does, so the epoch's
        # checkpoints (Lightning runs checkpoint callbacks after this one) are written as usual; train.run then
        # reports the signal and its exit status.
        if self._ranks_agree_to_stop(trainer):
            trainer.should_stop = True

    def _restore(self) -> None:
        # Before Lightning's own teardown, which then puts back what it found before training.
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore()
