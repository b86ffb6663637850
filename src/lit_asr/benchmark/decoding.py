"""Decoding: real-time factor of greedy and beam search (+LM), and the cost of a decoder sweep's points."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torchmetrics.functional.text import char_error_rate

from lit_asr.benchmark.common import time_repeats
from lit_asr.data.manifest import ManifestEntry, read_manifest, write_manifest
from lit_asr.data.vocabulary import Vocabulary
from lit_asr.models.asr_module import AsrModule


def build_char_lm(manifest: str | Path, output: Path, order: int = 4) -> Path:
    """An n-gram LM of a manifest's transcripts, built as scripts/build_lm.py does (characters for Mandarin)."""
    from lit_asr.data.text import normalize_text
    from lit_asr.decoding.lm import build_arpa, tokenize_for_lm

    entries, _ = read_manifest(manifest, check_files=False)
    build_arpa([s for s in (tokenize_for_lm(normalize_text(e.text)) for e in entries) if s], order, output)
    return output


def acoustic_model(cfg: DictConfig, checkpoint: Path | None, workdir: Path) -> tuple[AsrModule, Path, bool]:
    """(module in eval mode, checkpoint path for the log-prob cache, trained?): the checkpoint's model, or an
    untrained one of ``cfg`` saved to ``workdir`` so the evaluation cache has a file to fingerprint."""
    if checkpoint is not None:
        from lit_asr.models.loading import load_module

        return load_module(checkpoint), checkpoint, True
    from lit_asr.tasks.train import build_module

    module = build_module(cfg, Vocabulary.load(cfg.dataset_vocab), hydra.utils.instantiate(cfg.features)).eval()
    path = workdir / "untrained.ckpt"
    torch.save(module.state_dict(), path)
    return module, path, False


def describe_checkpoint(path: Path) -> str:
    """``path (epoch E, step S)`` from the checkpoint's own counters."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return f"{path} (trained {ckpt.get('epoch', -1) + 1} epoch(s), step {ckpt.get('global_step', '?')})"


def eval_config(cfg: DictConfig, entries: list[ManifestEntry], workdir: Path) -> DictConfig:
    """``cfg`` evaluating ``entries`` (written as a manifest under ``workdir``), log-probs cached there."""
    cfg = copy.deepcopy(cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / "decode.test"
    write_manifest(manifest, entries)
    cfg.test_manifest = str(manifest)
    cfg.task.cache_dir = str(workdir / "logprobs")
    return cfg


def timed_test_set_log_probs(module: AsrModule, checkpoint: Path, cfg: DictConfig) -> tuple[list, list[str], float]:
    """The eval task's (cached) log-probs, references and the seconds it took."""
    from lit_asr.tasks.evaluate import test_set_log_probs

    t0 = time.perf_counter()
    log_probs, texts, _ = test_set_log_probs(module, checkpoint, cfg)
    return log_probs, texts, time.perf_counter() - t0


def peaky_log_probs(texts: list[str], frames: list[int], vocabulary: Vocabulary, seed: int = 0
                    ) -> list[torch.Tensor]:
    """Posteriors shaped like a converged CTC model's, for timing beam search without one: blank from about
    0.9 to 0.99998 on most frames; on one frame per reference character that character (about 0.75) and a
    random rival (about 0.17)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for text, n in zip(texts, frames):
        ids = torch.tensor(vocabulary.encode(text), dtype=torch.long)[: max(1, n // 2)]
        logits = torch.randn(n, len(vocabulary), generator=g)
        logits[:, vocabulary.blank_id] += 11.0 + 6.0 * torch.rand(n, generator=g)
        at = torch.linspace(0, n - 1, len(ids) + 2)[1:-1].round().long()
        rivals = torch.randint(2, len(vocabulary), (len(ids),), generator=g)
        logits[at, vocabulary.blank_id] = 0.0
        logits[at, ids] += 12.0
        logits[at, rivals] += 10.5
        out.append(logits.log_softmax(-1))
    return out


def decode_rtf(cfg: DictConfig, labels: list[str], log_probs: list[torch.Tensor], texts: list[str],
               audio_seconds: float, repeats: int, **decoder_args) -> dict:
    """Real-time factor (decode seconds / audio seconds) of ``cfg.decoder`` changed by ``decoder_args``."""
    t0 = time.perf_counter()
    decoder = hydra.utils.instantiate(cfg.decoder, labels=labels, **decoder_args)
    build_s = time.perf_counter() - t0
    arrays = [lp.numpy() for lp in log_probs]
    try:
        if getattr(decoder, "num_proc", 1) > 1:
            decoder.decode_batch(arrays[:2])  # start the worker pool outside the timing
        hyps: list[str] = []
        timing = time_repeats(lambda: hyps.__setitem__(slice(None), decoder.decode_batch(arrays)), repeats,
                              warmup=0)
    finally:
        decoder.close()
    return {"decoder": cfg.decoder._target_.rsplit(".", 1)[-1], **decoder_args, "build_s": build_s,
            "utterances": len(arrays), "audio_seconds": audio_seconds, **timing,
            "rtf": timing["median_s"] / audio_seconds, "cer": float(char_error_rate(hyps, texts))}


def decoder_config(config, lm: str, variant: str) -> DictConfig:
    """Eval config with ``variant``: ``beam_search`` or ``beam_search_fast``, ``+skip`` / ``-skip`` switching
    blank-frame skipping (at 0.999) on or off; otherwise the decoder's own defaults."""
    name, _, skip = variant.partition("+") if "+" in variant else variant.partition("-")
    extra = {"+": ["decoder.blank_skip_prob=0.999"], "-": ["decoder.blank_skip_prob=null"]}.get(
        variant[len(name)] if skip else "", [])
    return config("experiment=demo", "task=eval", f"decoder={name}", f"decoder.lang_model_path={lm}", *extra)


def blank_share(log_probs: list[torch.Tensor], blank_prob: float) -> float:
    """Share of frames whose blank probability is at least ``blank_prob`` (what blank skipping can drop)."""
    frames = torch.cat([lp[:, 0] for lp in log_probs])
    return float((frames >= torch.log(torch.tensor(blank_prob))).float().mean())


def sweep_cost(module: AsrModule, checkpoint: Path, cfg: DictConfig, points: list[tuple[float, float]],
               audio_seconds: float) -> dict:
    """Seconds of the first (alpha, beta) point (network + cache write + decoder) and of each further one
    (cache read + decoder), in this process: the eval task's work without process start-up and imports."""
    rows = []
    for alpha, beta in points:
        log_probs, texts, network_s = timed_test_set_log_probs(module, checkpoint, cfg)
        t0 = time.perf_counter()
        decoder = hydra.utils.instantiate(cfg.decoder, labels=module.vocabulary.labels(), alpha=alpha, beta=beta)
        build_s = time.perf_counter() - t0
        try:
            t1 = time.perf_counter()
            hyps = decoder.decode_batch([lp.numpy() for lp in log_probs])
            decode_s = time.perf_counter() - t1
        finally:
            decoder.close()
        rows.append({"alpha": alpha, "beta": beta, "log_probs_s": network_s, "decoder_build_s": build_s,
                     "decode_s": decode_s, "total_s": network_s + build_s + decode_s,
                     "cer": float(char_error_rate(hyps, texts))})
    further = sorted(r["total_s"] for r in rows[1:]) or [float("nan")]
    return {"points": rows, "audio_seconds": audio_seconds, "first_point_s": rows[0]["total_s"],
            "further_point_s": further[len(further) // 2], "beam_size": cfg.decoder.get("beam_size"),
            "num_proc_bsearch": cfg.decoder.get("num_proc_bsearch")}
