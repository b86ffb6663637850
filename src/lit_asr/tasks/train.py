"""Training: build data and model from the config, resume or initialise, then ``Trainer.fit``.

Resume rules: ``resume_model=PATH`` wins; otherwise an existing ``<save_model_path>/<use_model>/last_model/`` is
resumed (model, optimiser, scheduler, epoch and step). Either must match this run's vocabulary, model config and
feature settings. ``pretrained_model=PATH`` only initialises weights, and only when nothing is resumed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lit_asr.callbacks.checkpoint import GracefulStop, LastBatchResume, ScheduleLengthCheck, display
from lit_asr.data.augment import WaveAugmentor
from lit_asr.data.datamodule import AsrDataModule
from lit_asr.data.features import FeatureExtractor, load_mean_std
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.errors import LitAsrError
from lit_asr.loggers.visualdl import VisualDLLogger
from lit_asr.models.asr_module import AsrModule
from lit_asr.models.loading import load_pretrained_weights
from lit_asr.utils.checkpoints import (LAST_MODEL, checkpoint_file, checkpoint_to_resume, model_dir, progress,
                                       read_checkpoint, resume_mismatch, tidy)
from lit_asr.utils.malloc import pin_mmap_threshold

log = logging.getLogger("lit_asr")


def _plain(node) -> dict | None:
    return OmegaConf.to_container(node, resolve=True) if node else None


def build_module(cfg: DictConfig, vocabulary: Vocabulary, featurizer: FeatureExtractor) -> AsrModule:
    """A fresh AsrModule holding the vocabulary, feature settings and normalisation statistics."""
    mean, std = load_mean_std(cfg.mean_std_path, featurizer.config)
    return AsrModule(model=_plain(cfg.model), vocabulary=vocabulary.tokens, feature_config=featurizer.config,
                     mean=mean.tolist(), std=std.tolist(), optimizer=_plain(cfg.optimizer),
                     scheduler=_plain(cfg.get("scheduler")))


def build_datamodule(cfg: DictConfig, vocabulary: Vocabulary, featurizer: FeatureExtractor) -> AsrDataModule:
    """The data module with augmentation from the ``augment`` group (training batches only)."""
    augment = cfg.get("augment") or {}
    wave = WaveAugmentor([hydra.utils.instantiate(p) for p in augment.get("wave") or []])
    spec = hydra.utils.instantiate(augment["spec"]) if augment.get("spec") else None
    return AsrDataModule(
        train_manifest=cfg.train_manifest, test_manifest=cfg.test_manifest, vocabulary=vocabulary,
        featurizer=featurizer, mean_std_path=cfg.mean_std_path, min_duration=cfg.min_duration,
        max_duration=cfg.max_duration, batch_size=cfg.batch_size, max_batch_duration=cfg.max_batch_duration,
        num_workers=cfg.num_workers, wave_augment=wave if wave.perturbations else None, spec_augment=spec,
        seed=cfg.seed, sortagrad_epochs=cfg.sortagrad_epochs)


def build_parts(cfg: DictConfig) -> tuple[AsrModule, AsrDataModule]:
    """The module and the data module of ``cfg``, wired so the data module drops CTC-infeasible utterances."""
    vocabulary = Vocabulary.load(cfg.dataset_vocab)
    featurizer = hydra.utils.instantiate(cfg.features)
    module = build_module(cfg, vocabulary, featurizer)
    datamodule = build_datamodule(cfg, vocabulary, featurizer)
    datamodule.output_frames = module.output_frames
    return module, datamodule


def build_trainer(cfg: DictConfig, resuming: bool = False) -> pl.Trainer:
    """The Lightning Trainer with the configured callbacks and logger, plus the checks of callbacks/checkpoint.py."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks += [ScheduleLengthCheck(), LastBatchResume(), GracefulStop()]
    logger = hydra.utils.instantiate(cfg.logger) if cfg.get("logger") else False
    if isinstance(logger, VisualDLLogger):
        logger.resume = resuming
    extra = {}
    if "enable_checkpointing" not in cfg.trainer:
        # Without our checkpoint callbacks Lightning would add its own, writing elsewhere.
        extra["enable_checkpointing"] = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    # Our checkpoint folder is meant to be reused across runs (that is how resuming works).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger, **extra)


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
        if cfg.pretrained_model:
            log.info("pretrained_model ignored: resuming restores all weights")
    return path


def initialise_from(module: AsrModule, pretrained: str) -> None:
    """Weights from ``pretrained`` where shapes match; fresh optimiser, schedule and counters."""
    copied, skipped = load_pretrained_weights(module, checkpoint_file(pretrained))
    if rank_zero_only.rank == 0:
        log.info("pretrained_model: initialised %d tensors from %s%s", copied, pretrained,
                 f"; skipped (shape differs): {', '.join(skipped)}" if skipped else "")


def run(cfg: DictConfig) -> float | None:
    """Train; returns the last ``val/cer`` so sweepers can optimise it."""
    pin_mmap_threshold(cfg.get("malloc_mmap_threshold"))  # before any tensor and before workers fork
    pl.seed_everything(cfg.seed, workers=True)
    module, datamodule = build_parts(cfg)
    resume = resume_checkpoint(cfg, module)
    if resume is None and cfg.pretrained_model:
        initialise_from(module, cfg.pretrained_model)
    trainer = build_trainer(cfg, resuming=resume is not None)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:
        if not trainer.is_global_zero:
            # Rank zero reports the status; a non-zero child status would make Lightning's launcher SIGKILL
            # rank zero, possibly while it is still writing last_model.
            sys.exit(0)
        stop = next((c for c in trainer.callbacks if isinstance(c, GracefulStop)), None)
        signum = (stop.signum if stop else None) or signal.SIGTERM
        log.warning("training stopped by %s; %s holds the state: run the same command to resume",
                    signal.Signals(signum).name, display(model_dir(cfg) / LAST_MODEL))
        sys.exit(128 + signum)
    cer = trainer.callback_metrics.get("val/cer")
    return float(cer) if cer is not None else None
