"""Evaluation: CER of a checkpoint on ``test_manifest`` with the configured decoder.

The model's log-probabilities are cached per (checkpoint, manifest) together with the vocabulary labels, so a
Hydra multirun over decoder settings (alpha, beta, beam size) loads and runs the network once and afterwards
pays only for reading the cache and decoding. The model runs through the :class:`Recognizer` (on ``device``) and
the texts come from its decoder, so eval, infer and serving share one inference path. Besides ``result.json``,
``predictions.jsonl`` holds every utterance's audio, reference, hypothesis and CER, for error analysis.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from torchmetrics.functional.text import char_error_rate, word_error_rate

from lit_asr.data.dataset import AsrDataset, collate
from lit_asr.data.manifest import read_manifest
from lit_asr.data.sampler import DurationBatchSampler
from lit_asr.decoding.greedy import GreedyDecoder
from lit_asr.errors import first_line
from lit_asr.models.asr_module import AsrModule
from lit_asr.inference.recognizer import Recognizer, build_decoder
from lit_asr.models.loading import load_module
from lit_asr.utils.checkpoints import checkpoint_to_evaluate

log = logging.getLogger("lit_asr")

CACHE_VERSION = "5"  # bump when the cached entry's contents change, so old entries are not misread


def _fingerprint(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def cache_file(checkpoint: Path, cfg: DictConfig) -> Path | None:
    """Where the log-probs of this checkpoint on ``test_manifest`` are cached (None: caching is off).

    The key covers the checkpoint's and the manifest's path, size and modification time, so re-saving either
    (e.g. a newer ``best_model``) starts a new entry; audio files changed behind an unchanged manifest are not seen.
    """
    if not cfg.task.get("cache_dir"):
        return None
    extra = f"{CACHE_VERSION}|{cfg.min_duration}|{cfg.max_duration}|{cfg.get('duration_tolerance')}"
    return Path(cfg.task.cache_dir) / f"{_fingerprint(checkpoint, Path(cfg.test_manifest), extra=extra)}.pt"


def _compute(module: AsrModule, cfg: DictConfig) -> dict[str, Any]:
    recognizer = Recognizer(module, device=cfg.get("device", "auto"))
    # The same reading as the training task's test pass (data/datamodule.py), so both score the same utterances.
    entries, _ = read_manifest(cfg.test_manifest, cfg.min_duration, cfg.max_duration,
                               duration_tolerance=cfg.get("duration_tolerance"))
    dataset = AsrDataset(entries, module.vocabulary, module.featurizer, module.normalizer)
    sampler = DurationBatchSampler([e.duration for e in entries], cfg.task.batch_size,
                                   cfg.get("max_batch_duration"), shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers)
    log_probs, texts, audio, loss = recognizer.score_batches(loader)
    log.info("model ran on %s", recognizer.device)
    return {"log_probs": log_probs, "texts": texts, "audio": audio, "loss": loss, "labels": recognizer.labels,
            "audio_seconds": float(sum(e.duration for e in entries))}


def load_log_probs(checkpoint: Path, cfg: DictConfig,
                   get_module: Callable[[], AsrModule] | None = None) -> tuple[dict[str, Any], bool]:
    """(log_probs, texts, loss, labels) of the test set, and whether they came from the cache.

    The model is loaded (``get_module``, default: from ``checkpoint``) only when the cache has no entry.
    """
    cache = cache_file(checkpoint, cfg)
    if cache is not None and cache.is_file():
        try:
            data = torch.load(cache, weights_only=True)
            log.info("using cached log-probabilities %s", cache)
            return data, True
        except Exception as exc:  # noqa: BLE001 - truncated, foreign or pickled: recompute and overwrite it
            log.warning("ignoring unreadable cache entry %s (%s); computing the log-probabilities again",
                        cache, first_line(exc)[:200])
    data = _compute(get_module() if get_module else load_module(checkpoint), cfg)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        torch.save(data, tmp)
        tmp.replace(cache)  # atomic: a killed or concurrent run never leaves a half-written entry
        log.info("cached log-probabilities in %s", cache)
    return data, False


def test_set_log_probs(module: AsrModule, checkpoint: Path, cfg: DictConfig
                      ) -> tuple[list[torch.Tensor], list[str], float]:
    """Log-probs, references and loss on the test manifest, from the cache when checkpoint and data are unchanged."""
    data, _ = load_log_probs(checkpoint, cfg, lambda: module)
    return data["log_probs"], data["texts"], data["loss"]


def run(cfg: DictConfig) -> float:
    """Print ``Test ... loss, cer`` for the checkpoint; write ``result.json`` and ``predictions.jsonl`` to the run dir."""
    checkpoint = checkpoint_to_evaluate(cfg)
    t0 = time.monotonic()
    data, cached = load_log_probs(checkpoint, cfg)
    log_probs, texts, loss, labels = data["log_probs"], data["texts"], data["loss"], data["labels"]
    arrays = [lp.numpy() for lp in log_probs]
    t1 = time.monotonic()
    decoder = build_decoder(cfg.decoder, labels)  # the Recognizer's decoder; loads the LM, if any
    t2 = time.monotonic()
    try:
        hyps = decoder.decode_batch(arrays)
    finally:
        decoder.close()
    t3 = time.monotonic()
    t_model, t_setup, t_decode = t1 - t0, t2 - t1, t3 - t2
    cer = float(char_error_rate(hyps, texts))
    # WER means something only where words are separated by spaces (English), not for Mandarin characters.
    wer = float(word_error_rate(hyps, texts)) if any(" " in t for t in texts) else None
    # Greedy CER on the same log-probs is what the decoder's settings are judged against (and costs little).
    greedy_cer = cer if isinstance(decoder, GreedyDecoder) else float(
        char_error_rate(GreedyDecoder(labels).decode_batch(arrays), texts))
    log.info("Test checkpoint: %s, utterances: %d, loss: %.5f, cer: %.5f (corpus-level; greedy: %.5f)%s, "
             "model time: %.2fs%s, decoder setup: %.2fs, decode time: %.2fs", checkpoint, len(texts), loss, cer,
             greedy_cer, "" if wer is None else f", wer: {wer:.5f}", t_model, " (cached)" if cached else "",
             t_setup, t_decode)
    for ref, hyp in list(zip(texts, hyps))[:5]:
        log.info("  ref: %s\n  hyp: %s", ref, hyp)
    result = {"checkpoint": str(checkpoint), "manifest": str(cfg.test_manifest), "utterances": len(texts),
              "loss": loss, "cer": cer, "greedy_cer": greedy_cer, "wer": wer,
              "decoder": OmegaConf.to_container(cfg.decoder, resolve=True), "cached": cached,
              "model_seconds": t_model, "decoder_setup_seconds": t_setup, "decode_seconds": t_decode,
              "audio_seconds": data["audio_seconds"], "decode_rtf": t_decode / max(data["audio_seconds"], 1e-9)}
    if HydraConfig.initialized():
        out = Path(HydraConfig.get().runtime.output_dir)
        (out / "result.json").write_text(json.dumps(result, indent=2))
        write_predictions(out / "predictions.jsonl", data.get("audio") or [""] * len(texts), texts, hyps)
    return cer


def write_predictions(path: Path, audio: list[str], references: list[str], hypotheses: list[str]) -> None:
    """One JSON line per utterance: audio, reference, hypothesis and its own CER (worst first is a sort away)."""
    with path.open("w", encoding="utf-8") as f:
        for wav, ref, hyp in zip(audio, references, hypotheses):
            line = {"audio": wav, "reference": ref, "hypothesis": hyp, "cer": float(char_error_rate(hyp, ref))}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
