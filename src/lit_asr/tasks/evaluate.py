"""Evaluation: CER of a checkpoint on ``test_manifest`` with the configured decoder.

The model's log-probabilities are cached per (checkpoint, manifest), so a Hydra multirun over decoder
settings (alpha, beta, beam size) pays for the network once and for decoding at each point.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from torchmetrics.functional.text import char_error_rate

from lit_asr.data.dataset import AsrDataset, collate
from lit_asr.data.manifest import read_manifest
from lit_asr.data.sampler import DurationBatchSampler
from lit_asr.models.asr_module import AsrModule
from lit_asr.models.loading import compute_log_probs, load_module
from lit_asr.utils.checkpoints import checkpoint_to_evaluate

log = logging.getLogger("lit_asr")


def _fingerprint(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def test_log_probs(module: AsrModule, checkpoint: Path, cfg: DictConfig) -> tuple[list[torch.Tensor], list[str], float]:
    """Log-probs, references and loss on the test manifest, from the cache when checkpoint and data are unchanged."""
    manifest = Path(cfg.test_manifest)
    key = _fingerprint(checkpoint, manifest, extra=f"{cfg.min_duration}|{cfg.max_duration}")
    cache = Path(cfg.task.cache_dir) / f"{key}.pt" if cfg.task.get("cache_dir") else None
    if cache is not None and cache.is_file():
        data = torch.load(cache, weights_only=True)
        log.info("using cached log-probabilities %s", cache)
        return data["log_probs"], data["texts"], data["loss"]
    entries, _ = read_manifest(manifest, cfg.min_duration, cfg.max_duration)
    dataset = AsrDataset(entries, module.vocabulary, module.featurizer, module.normalizer)
    sampler = DurationBatchSampler([e.duration for e in entries], cfg.task.batch_size,
                                   cfg.get("max_batch_duration"), shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers)
    log_probs, texts, loss = compute_log_probs(module, loader)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"log_probs": log_probs, "texts": texts, "loss": loss}, tmp)
        tmp.replace(cache)  # atomic: a killed run never leaves a half-written cache entry
    return log_probs, texts, loss


def run(cfg: DictConfig) -> float:
    """Print ``Test ... loss, cer`` for the checkpoint and write ``result.json`` to the run directory."""
    checkpoint = checkpoint_to_evaluate(cfg)
    module = load_module(checkpoint)
    t0 = time.monotonic()
    log_probs, texts, loss = test_log_probs(module, checkpoint, cfg)
    t_model = time.monotonic() - t0
    decoder = hydra.utils.instantiate(cfg.decoder, labels=module.vocabulary.labels())
    t1 = time.monotonic()
    try:
        hyps = decoder.decode_batch([lp.numpy() for lp in log_probs])
    finally:
        decoder.close()
    t_decode = time.monotonic() - t1
    cer = float(char_error_rate(hyps, texts))
    log.info("Test checkpoint: %s, utterances: %d, loss: %.5f, cer: %.5f (corpus-level), "
             "model time: %.2fs, decode time: %.2fs", checkpoint, len(texts), loss, cer, t_model, t_decode)
    for ref, hyp in list(zip(texts, hyps))[:5]:
        log.info("  ref: %s\n  hyp: %s", ref, hyp)
    decoder_cfg = OmegaConf.to_container(cfg.decoder, resolve=True)
    result = {"checkpoint": str(checkpoint), "manifest": str(cfg.test_manifest), "utterances": len(texts),
              "loss": loss, "cer": cer, "decoder": decoder_cfg, "model_seconds": t_model,
              "decode_seconds": t_decode}
    if HydraConfig.initialized():
        Path(HydraConfig.get().runtime.output_dir, "result.json").write_text(json.dumps(result, indent=2))
    return cer
