"""Training: build data and model from the config, resume or initialise, then ``Trainer.fit``.

Resume rules: ``resume_model=PATH`` wins; otherwise the newest complete checkpoint under
``<save_model_path>/<use_model>/`` (last_model, epoch_N or step_N, by global step) is resumed (model, optimiser,
scheduler, epoch, step and the position in the epoch's batches). Either must match this run's vocabulary, model
config, feature settings and normalisation statistics; learning rate, weight decay and batch settings stay the
checkpoint's (with a warning when this run sets others). ``pretrained_model=PATH`` only initialises weights, and
only when nothing is resumed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lit_asr.callbacks.checkpoint import GracefulStop, SaveFailedElsewhere, abort_on_second_interrupt, display
from lit_asr.data.augment import WaveAugmentor
from lit_asr.data.datamodule import AsrDataModule
from lit_asr.data.features import FeatureExtractor, load_mean_std
from lit_asr.data.tokenizer import load_vocabulary, tokenizer_model
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.decoding.greedy import GreedyDecoder
from lit_asr.errors import LitAsrError
from lit_asr.loggers.visualdl import VisualDLLogger
from lit_asr.models.asr_module import AsrModule
from lit_asr.models.loading import load_pretrained_weights
from lit_asr.utils.checkpoints import (LAST_MODEL, changed_settings, checkpoint_file, checkpoint_to_resume, model_dir,
                                       progress, read_checkpoint, resume_mismatch, tidy)
from lit_asr.utils.malloc import pin_mmap_threshold
from lit_asr.utils.precision import resolve_precision

if TYPE_CHECKING:
    from lit_asr.decoding.beam_search import BeamSearchDecoder

log = logging.getLogger("lit_asr")


def _plain(node) -> dict | None:
    return OmegaConf.to_container(node, resolve=True) if node else None


def build_module(cfg: DictConfig, vocabulary: Vocabulary, featurizer: FeatureExtractor) -> AsrModule:
    """A fresh AsrModule holding the vocabulary, feature settings and normalisation statistics.

    ``mean_std_path`` is read here and nowhere else in training: the module owns the statistics from then on.
    """
    mean, std = load_mean_std(cfg.mean_std_path, featurizer.config)
    return AsrModule(model=_plain(cfg.model), vocabulary=vocabulary.tokens, feature_config=featurizer.config,
                     mean=mean.tolist(), std=std.tolist(), optimizer=_plain(cfg.optimizer),
                     scheduler=_plain(cfg.get("scheduler")), tokenizer_model=tokenizer_model(vocabulary))


def build_datamodule(cfg: DictConfig, module: AsrModule) -> AsrDataModule:
    """The data module over ``module``'s vocabulary, features and statistics, with augmentation from ``augment``."""
    augment = cfg.get("augment") or {}
    wave = WaveAugmentor([hydra.utils.instantiate(p) for p in augment.get("wave") or []])
    spec = hydra.utils.instantiate(augment["spec"]) if augment.get("spec") else None
    return AsrDataModule(
        train_manifest=cfg.train_manifest, test_manifest=cfg.test_manifest, dev_manifest=cfg.get("dev_manifest"),
        model=module, min_duration=cfg.min_duration, max_duration=cfg.max_duration, batch_size=cfg.batch_size,
        max_batch_duration=cfg.max_batch_duration, num_workers=cfg.num_workers,
        wave_augment=wave if wave.perturbations else None, spec_augment=spec, seed=cfg.seed,
        sortagrad_epochs=cfg.sortagrad_epochs, duration_tolerance=cfg.get("duration_tolerance"),
        train_shards=cfg.get("train_shards"), shuffle_shards=cfg.get("shuffle_shards", 4))


def build_parts(cfg: DictConfig) -> tuple[AsrModule, AsrDataModule]:
    """The module and the data module of ``cfg``; the data module takes everything it shares with the module
    (vocabulary, features, normalisation, output length for dropping CTC-infeasible utterances) from it."""
    vocabulary = load_vocabulary(cfg.dataset_vocab, cfg.tokenizer.type)
    module = build_module(cfg, vocabulary, hydra.utils.instantiate(cfg.features))
    return module, build_datamodule(cfg, module)


def build_trainer(cfg: DictConfig, resuming: bool = False) -> pl.Trainer:
    """The Lightning Trainer with the callbacks of ``conf/callbacks`` and the configured logger.

    With ``eval_every_epoch=false`` there is no test pass, and the callbacks that watch its metrics are left out.
    """
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    extra = {}
    if not cfg.get("eval_every_epoch", True):
        extra["limit_val_batches"] = 0
        callbacks = [c for c in callbacks if not str(getattr(c, "monitor", None) or "").startswith("val/")]
    logger = hydra.utils.instantiate(cfg.logger) if cfg.get("logger") else False
    if isinstance(logger, VisualDLLogger):
        logger.resume = resuming
    if "enable_checkpointing" not in cfg.trainer:
        # Without our checkpoint callbacks Lightning would add its own, writing elsewhere.
        extra["enable_checkpointing"] = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    # Our checkpoint folder is meant to be reused across runs (that is how resuming works).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # AsrDataModule saves and restores the position in the epoch's batches itself (Lightning only asks the loader).
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    precision, why = resolve_precision(cfg.trainer.get("precision", "32-true"), cfg.trainer.get("accelerator", "auto"))
    if why:
        log.info(why)
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger, precision=precision, **extra)


def build_test_decoder(cfg: DictConfig, module: AsrModule) -> BeamSearchDecoder | None:
    """The configured decoder for the per-epoch test pass, or None when it is greedy (the module's own)."""
    if not cfg.get("eval_every_epoch", True) or not cfg.get("decoder"):
        return None
    decoder = hydra.utils.instantiate(cfg.decoder, labels=module.vocabulary.labels())
    if isinstance(decoder, GreedyDecoder):
        return None
    return decoder


def _is_sole_process() -> bool:
    # Lightning's launcher starts the other ranks later, inside fit; torchrun or SLURM start them all at once.
    return rank_zero_only.rank == 0 and int(os.environ.get("WORLD_SIZE", "1")) == 1


def resume_checkpoint(cfg: DictConfig, module: AsrModule) -> Path | None:
    """The checkpoint to resume from (see the module docstring), checked against this run; None starts afresh."""
    if _is_sole_process():
        for line in tidy(model_dir(cfg)):
            log.info("%s: %s", display(model_dir(cfg)), line)
    path = checkpoint_to_resume(cfg)
    if path is None:
        return None
    checkpoint = read_checkpoint(path)
    problem = resume_mismatch(checkpoint.get("hyper_parameters", {}), dict(module.hparams))
    if problem:
        advice = (f"set resume_model to a matching checkpoint, or pretrained_model={path.parent} to start from its "
                  "weights" if cfg.resume_model else
                  f"delete {display(path.parent)} to start afresh, or set resume_model=PATH")
        raise LitAsrError(f"cannot resume from {display(path.parent)}: {problem}; {advice}")
    if rank_zero_only.rank == 0:
        log.info("resuming from %s (%s)", display(path.parent), progress(checkpoint))
        if not cfg.resume_model and path.parent.name.split(".")[0] != LAST_MODEL:
            log.info("%s is the newest complete checkpoint (%s is older or missing)", display(path.parent),
                     LAST_MODEL)
        changed = changed_settings(checkpoint, cfg)
        if changed:
            log.warning("resuming keeps the checkpoint's %s (this run sets %s): a resume continues the saved run; to "
                        "train with the new values start a new run from its weights: use_model=NEW pretrained_model=%s",
                        ", ".join(f"{k}={old}" for k, (old, _) in changed.items()),
                        ", ".join(f"{k}={new}" for k, (_, new) in changed.items()), display(path.parent))
        if cfg.pretrained_model:
            log.info("pretrained_model ignored: resuming restores all weights")
    return path


def initialise_from(module: AsrModule, pretrained: str) -> None:
    """Weights from ``pretrained`` (matched by token where the vocabularies differ); fresh optimiser and counters."""
    init = load_pretrained_weights(module, checkpoint_file(pretrained))
    if rank_zero_only.rank == 0:
        remapped = (f"; {', '.join(init.remapped)} matched by token: {init.shared_tokens} tokens copied, "
                    f"{init.new_tokens} new tokens initialised" if init.remapped else "")
        log.info("pretrained_model: initialised %d tensors from %s%s%s", init.copied, pretrained, remapped,
                 f"; skipped (shape differs): {', '.join(init.skipped)}" if init.skipped else "")


def _exit_stopped(cfg: DictConfig, trainer: pl.Trainer, stop: GracefulStop | None) -> None:
    """End a run that a signal stopped: 128 + the signal number, as a shell reports a process killed by it."""
    if not trainer.is_global_zero:
        # Rank zero reports the status; a non-zero child status would make Lightning's launcher SIGKILL
        # rank zero, possibly while it is still writing last_model.
        sys.exit(0)
    signum = (stop.signum if stop else None) or signal.SIGTERM
    log.warning("training stopped by %s; %s holds the state: run the same command to resume",
                signal.Signals(signum).name, display(model_dir(cfg) / LAST_MODEL))
    sys.exit(128 + signum)


def run(cfg: DictConfig) -> float | None:
    """Train; returns the last ``val/cer`` so sweepers can optimise it."""
    pin_mmap_threshold(cfg.get("malloc_mmap_threshold"))  # before any tensor and before workers fork
    pl.seed_everything(cfg.seed, workers=True)
    module, datamodule = build_parts(cfg)
    resume = resume_checkpoint(cfg, module)
    if resume is None and cfg.pretrained_model:
        initialise_from(module, cfg.pretrained_model)
    trainer = build_trainer(cfg, resuming=resume is not None)
    stop = next((c for c in trainer.callbacks if isinstance(c, GracefulStop)), None)
    module.decoder = build_test_decoder(cfg, module)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except KeyboardInterrupt:
        # A second Ctrl-C after Lightning put Python's own handler back (while the first one's stop was saving or
        # tearing down): the same one line and status as GracefulStop's, never a traceback.
        abort_on_second_interrupt(stop.abort_line if stop and trainer.is_global_zero else b"")
    except SIGTERMException:
        _exit_stopped(cfg, trainer, stop)
    except SaveFailedElsewhere:
        # Rank zero prints why; a non-zero status here would make Lightning's launcher SIGKILL rank zero first.
        sys.exit(0)
    finally:
        datamodule.close_workers()
        if module.decoder is not None:
            module.decoder.close()
    if stop is not None and stop.signum is not None:  # stopped at an epoch's end (see GracefulStop)
        _exit_stopped(cfg, trainer, stop)
    cer = trainer.callback_metrics.get("val/cer")
    return float(cer) if cer is not None else None
