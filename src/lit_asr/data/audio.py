"""Reading audio files into mono float waveforms at the model's sample rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from lit_asr.errors import LitAsrError


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) of an audio file, read from its header only."""
    try:
        info = soundfile.info(str(path))
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise LitAsrError(f"cannot read audio {path}: {str(exc).splitlines()[0]}") from None
    return info.frames, info.samplerate, info.channels


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """1-D float32 waveform in [-1, 1], channels averaged, resampled to ``sample_rate``."""
    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise LitAsrError(f"cannot read audio {path}: {str(exc).splitlines()[0]}") from None
    if data.shape[0] == 0:
        raise LitAsrError(f"audio {path} holds no samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if sr != sample_rate:
        wave = AF.resample(wave, sr, sample_rate)
    return wave
