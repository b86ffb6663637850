"""Streaming latency: the model's look-ahead and the compute time of each chunk through ``RecognizerStream``."""

from __future__ import annotations

import time

import torch

from lit_asr.benchmark.common import load_average, summarise, sync
from lit_asr.inference.recognizer import Recognizer


def lookahead(recognizer: Recognizer) -> dict[str, float]:
    """The algorithmic latency of the streaming model, in feature frames and milliseconds."""
    featurizer = recognizer.module.featurizer
    hop_ms = 1000 * featurizer.hop_length / featurizer.sample_rate
    frames = recognizer.module.net.lookahead_frames
    return {"lookahead_frames": frames, "lookahead_ms": frames * hop_ms,
            # a frame's window reaches this far past its hop: audio a frame needs beyond its own 10 ms
            "window_overhang_ms": 1000 * (featurizer.win_length - featurizer.hop_length) / featurizer.sample_rate,
            "output_frame_ms": 1000 * recognizer.frame_seconds}


def chunk_compute(recognizer: Recognizer, waves: list[torch.Tensor], chunk_ms: float) -> dict:
    """Wall-clock milliseconds of ``accept`` per ``chunk_ms`` chunk (features, model, greedy partial) and of
    ``finish`` (flush + the configured decoder), over every chunk of ``waves`` (1-D, at the model's rate)."""
    step = int(round(recognizer.sample_rate * chunk_ms / 1000))
    accept_ms, finish_ms = [], []
    warm = recognizer.stream()  # first calls pay for lazy initialisation; not what a running stream sees
    warm.accept(waves[0][:step])
    warm.finish()
    for wave in waves:
        stream = recognizer.stream()
        for start in range(0, len(wave), step):
            t0 = time.perf_counter()
            stream.accept(wave[start:start + step])
            sync(recognizer.device)
            accept_ms.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        stream.finish()
        finish_ms.append(1000 * (time.perf_counter() - t0))
    per_chunk = summarise(accept_ms)
    return {"chunk_ms": chunk_ms, "chunks": len(accept_ms), "accept_ms": per_chunk,
            "real_time_factor": per_chunk["median"] / chunk_ms, "finish_ms": summarise(finish_ms),
            "threads": torch.get_num_threads(), "load_average": load_average()}
