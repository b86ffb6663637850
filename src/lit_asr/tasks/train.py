"""Training: build data and model from the config, then ``Trainer.fit``."""

from __future__ import annotations

import logging

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from lit_asr.data.augment import WaveAugmentor
from lit_asr.data.datamodule import AsrDataModule
from lit_asr.data.features import FeatureExtractor, load_mean_std
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.models.asr_module import AsrModule

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
        seed=cfg.seed)


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """The Lightning Trainer with the configured callbacks and logger."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    logger = hydra.utils.instantiate(cfg.logger) if cfg.get("logger") else False
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)


def run(cfg: DictConfig) -> float | None:
    """Train; returns the last ``val/cer`` so sweepers can optimise it."""
    pl.seed_everything(cfg.seed, workers=True)
    vocabulary = Vocabulary.load(cfg.dataset_vocab)
    featurizer = hydra.utils.instantiate(cfg.features)
    module = build_module(cfg, vocabulary, featurizer)
    datamodule = build_datamodule(cfg, vocabulary, featurizer)
    datamodule.output_frames = module.output_frames
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume_model or None)
    cer = trainer.callback_metrics.get("val/cer")
    return float(cer) if cer is not None else None
